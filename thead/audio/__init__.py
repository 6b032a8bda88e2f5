"""Speech audio to face motion, offline and weight-free by default (trainable on a person's own clips).

Pipeline: ``io`` (any ffmpeg-readable file to 16 kHz mono) -> ``features`` (per-frame loudness, onsets, F0,
voicing, voice activity, log-mel) -> ``phonemes`` (pocketsphinx forced alignment or phone loop, else the
acoustic path) -> ``visemes`` (mouth units with coarticulation) + ``blinks`` + ``head_motion`` -> ``motion``
(``audio_motion``: TargetParams for the engines) -> ``motion_file`` (save / load). ``train`` fits per-person
models (viseme gains and lead, a mel-to-mouth network, a pose model).
"""

from thead.audio.blinks import BlinkConfig, BlinkTrack, blink_track
from thead.audio.features import AudioFeatures, FeatureConfig, frame_features, hop_features
from thead.audio.head_motion import POSE_MODES, HeadMotionConfig, HeadStyle, builtin_head_style, head_motion
from thead.audio.io import AudioTrack, load_audio, num_frames_for
from thead.audio.motion import AudioDriveOptions, audio_motion, compose_targets
from thead.audio.motion_file import MotionFile, load_motion, save_motion
from thead.audio.phonemes import Phone, PhonemeConfig, PhoneTrack, recognize_phonemes
from thead.audio.visemes import MOUTH_UNITS, MouthTrack, VisemeConfig, acoustic_mouth, phones_to_mouth

__all__ = ["AudioDriveOptions", "AudioFeatures", "AudioTrack", "BlinkConfig", "BlinkTrack", "FeatureConfig",
           "HeadMotionConfig", "HeadStyle", "MOUTH_UNITS", "MotionFile", "MouthTrack", "POSE_MODES", "Phone",
           "PhoneTrack", "PhonemeConfig", "VisemeConfig", "acoustic_mouth", "audio_motion", "blink_track",
           "builtin_head_style", "compose_targets", "frame_features", "head_motion", "hop_features",
           "load_audio", "load_motion", "num_frames_for", "phones_to_mouth", "recognize_phonemes",
           "save_motion"]

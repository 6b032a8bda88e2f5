"""Reading speech audio for audio-driven motion: any file ffmpeg reads, to 16 kHz mono float32.

Accepted: wav, mp3, m4a/aac, flac, ogg/opus, ... and videos, whose first audio stream is used; any channel count
(mixed down by ffmpeg) and any source rate from ``MIN_SOURCE_RATE`` Hz up (resampled by ffmpeg).

Frame rule (``num_frames_for``): audio of D seconds drives ``N = floor(D * fps + 0.5)`` video frames (the
duration rounded to the nearest whole frame), so the video's length N / fps is within half a frame of the
audio's. Frame t stands for the audio interval [t / fps, (t + 1) / fps); the last frame's interval may reach
up to half a frame past the audio's end (read as silence) or the audio's last half frame gets no frame of its
own. Audio shorter than one frame (D * fps < 1) is refused.
"""

from __future__ import annotations

import re
import subprocess
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from thead.errors import InputError
from thead.io.ffmpeg import ffmpeg_exe

#: Sample rate (Hz) everything in ``thead.audio`` works at (pocketsphinx's acoustic model is 16 kHz).
SAMPLE_RATE = 16000
#: Lowest source sample rate accepted (Hz): below it speech has lost the band the analysis needs.
MIN_SOURCE_RATE = 8000
#: Peak amplitude (full scale 1.0) below which a track counts as silent (about -80 dBFS).
SILENCE_PEAK = 1e-4

_STREAM_RE = re.compile(r"Stream #\d+:\d+.*?: Audio: (?P<codec>[^,]+), (?P<rate>\d+) Hz, (?P<layout>[^,]+)")


@dataclass(frozen=True)
class AudioTrack:
    """Decoded audio: ``samples`` [S] float32 mono at ``sample_rate`` Hz (full scale 1.0).

    source_rate / source_channels / codec describe the file's audio stream before conversion (0 / "" when ffmpeg
    did not say). ``silent``: peak below ``SILENCE_PEAK`` (about -80 dBFS).
    """

    path: str
    samples: np.ndarray
    sample_rate: int
    source_rate: int
    source_channels: str
    codec: str

    @property
    def duration(self) -> float:
        """Length in seconds."""
        return len(self.samples) / float(self.sample_rate)

    @property
    def silent(self) -> bool:
        return float(np.abs(self.samples).max(initial=0.0)) < SILENCE_PEAK


def num_frames_for(duration_s: float, fps: float, path: str | Path | None = None) -> int:
    """Video frames N = floor(duration_s * fps + 0.5) that audio of ``duration_s`` seconds drives at ``fps``.

    Raises ``InputError`` (naming ``path``) when the audio is shorter than one frame (duration_s * fps < 1).
    """
    if fps <= 0 or not np.isfinite(fps):
        raise ValueError(f"fps must be positive, got {fps}")
    if duration_s * fps < 1.0:
        raise InputError(path, f"audio of {duration_s * 1000:.0f} ms is shorter than one frame at {fps:g} fps")
    return int(np.floor(duration_s * fps + 0.5))


def _last_line(text: str) -> str:
    lines = [ln.strip() for ln in text.strip().splitlines() if ln.strip()]
    return lines[-1] if lines else ""


def load_audio(path: str | Path, sample_rate: int = SAMPLE_RATE) -> AudioTrack:
    """Decode the first audio stream of ``path`` to mono float32 at ``sample_rate`` Hz.

    Parameters
    ----------
    path : audio file or video with an audio track (anything ffmpeg reads).
    sample_rate : output rate in Hz (default 16000).

    Returns
    -------
    AudioTrack with ``samples`` [S] float32 (full scale 1.0; ffmpeg's stereo downmix may exceed it slightly).
    A silent track is returned (``track.silent``), not refused: a silent drive is a still, blinking face.

    Raises
    ------
    InputError naming the file: missing, unreadable, no audio stream (a video-only file), no samples, non-finite
    samples, or a source rate below ``MIN_SOURCE_RATE``.
    """
    path = Path(path)
    if not path.is_file():
        raise InputError(path, "file not found")
    if sample_rate <= 0:
        raise ValueError(f"sample_rate must be positive, got {sample_rate}")
    cmd = [ffmpeg_exe(), "-hide_banner", "-nostdin", "-i", str(path), "-map", "0:a:0", "-vn", "-sn", "-dn",
           "-ac", "1", "-ar", str(int(sample_rate)), "-f", "f32le", "-acodec", "pcm_f32le", "-"]
    res = subprocess.run(cmd, capture_output=True)
    err = res.stderr.decode("utf8", "replace")
    if res.returncode != 0:
        if "matches no streams" in err or "does not contain any stream" in err:
            raise InputError(path, "no audio stream (a video-only or empty file)")
        if "Invalid data found" in err:
            raise InputError(path, "not a readable audio or video file")
        raise InputError(path, f"audio could not be decoded ({_last_line(err) or f'ffmpeg exit {res.returncode}'})")
    m = _STREAM_RE.search(err)
    source_rate = int(m.group("rate")) if m else 0
    if m and source_rate < MIN_SOURCE_RATE:
        raise InputError(path, f"sample rate {source_rate} Hz is below {MIN_SOURCE_RATE} Hz: too low for speech")
    samples = np.frombuffer(res.stdout, dtype="<f4").astype(np.float32)
    if samples.size == 0:
        raise InputError(path, "the audio stream holds no samples")
    if not np.isfinite(samples).all():
        raise InputError(path, "audio decoded to non-finite samples")
    return AudioTrack(path=str(path), samples=samples, sample_rate=int(sample_rate), source_rate=source_rate,
                      source_channels=(m.group("layout").strip() if m else ""),
                      codec=(m.group("codec").strip() if m else ""))


__all__ = ["AudioTrack", "MIN_SOURCE_RATE", "SAMPLE_RATE", "SILENCE_PEAK", "load_audio", "num_frames_for"]

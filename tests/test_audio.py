"""thead.audio: audio reading, features, phonemes against espeak-ng's own timings, visemes, blinks, head motion,
audio_motion and motion files. No shared media needed; espeak-ng tests skip when it is absent."""

from __future__ import annotations

import subprocess
from dataclasses import replace

import numpy as np
import pytest

from test_audio_helpers import espeak_available, espeak_speech, source_fit, write_wav
from thead.audio import features as F
from thead.audio.blinks import BlinkConfig, blink_track, lid_profile
from thead.audio.head_motion import (HeadMotionConfig, builtin_head_style, copy_motion, head_motion,
                                     keyframe_curve, pingpong_indices, stationary_std)
from thead.audio.io import load_audio, num_frames_for
from thead.audio.motion import AudioDriveOptions, audio_motion
from thead.audio.motion_file import load_motion, save_motion
from thead.audio.phonemes import PhonemeConfig, letters_to_phones, normalize_transcript, recognize_phonemes
from thead.audio.visemes import VisemeConfig, phones_to_mouth, silence_envelope
from thead.errors import InputError
from thead.io.ffmpeg import ffmpeg_exe

needs_espeak = pytest.mark.skipif(not espeak_available(), reason="espeak-ng (binary and libespeak-ng) not installed")

SENTENCE = "Bob made a map of the moon before the big boat moved."
MOUTH = ("jaw_open", "lips_part", "pucker", "lip_stretch", "chin_raise")


@pytest.fixture(scope="module")
def speech(tmp_path_factory):
    """espeak-ng speech of SENTENCE with 0.6 s of quiet noise (-65 dBFS) after it, as a 22050 Hz wav."""
    sp = espeak_speech(SENTENCE)
    rng = np.random.default_rng(0)
    quiet = (rng.normal(0, 10 ** (-65 / 20), int(0.6 * sp.rate)) * 32767).astype(np.int16)
    samples = np.concatenate([sp.samples, quiet])
    path = write_wav(tmp_path_factory.mktemp("speech") / "bob.wav", samples, sp.rate)
    return sp, path


@pytest.fixture(scope="module")
def aligned(speech):
    sp, path = speech
    return audio_motion(path, source_fit(), 0, 25.0, AudioDriveOptions(transcript=SENTENCE, seed=3))


# ------------------------------------------------------------------------------------------------ reading
def test_frame_rule_and_short_audio():
    assert num_frames_for(8.0, 25) == 200
    assert num_frames_for(1.23, 25) == 31  # 30.75 -> 31
    assert num_frames_for(1.21, 25) == 30  # 30.25 -> 30
    assert num_frames_for(0.04, 25) == 1
    with pytest.raises(InputError, match="shorter than one frame"):
        num_frames_for(0.03, 25, "x.wav")


def test_bad_audio_gives_input_error(tmp_path):
    with pytest.raises(InputError, match="missing.wav: file not found"):
        load_audio(tmp_path / "missing.wav")
    junk = tmp_path / "junk.wav"
    junk.write_bytes(b"RIFF not really a wave file at all" * 10)
    with pytest.raises(InputError, match="junk.wav"):
        load_audio(junk)
    video = tmp_path / "video_only.mp4"
    subprocess.run([ffmpeg_exe(), "-v", "error", "-f", "lavfi", "-i", "color=c=gray:s=64x64:d=0.4", "-c:v",
                    "libx264", "-pix_fmt", "yuv420p", str(video)], check=True)
    with pytest.raises(InputError, match="video_only.mp4: no audio stream"):
        load_audio(video)
    low = write_wav(tmp_path / "low_rate.wav", np.zeros(4000), 4000)
    with pytest.raises(InputError, match="below 8000 Hz"):
        load_audio(low)
    short = write_wav(tmp_path / "short.wav", np.full(160, 0.1), 16000)  # 10 ms
    with pytest.raises(InputError, match="short.wav: audio of 10 ms is shorter than one frame"):
        audio_motion(short, source_fit(), 0, 25.0)


def test_stereo_and_rate_conversion(tmp_path):
    t = np.arange(44100) / 44100.0
    stereo = np.stack([0.3 * np.sin(2 * np.pi * 220 * t), 0.3 * np.sin(2 * np.pi * 220 * t)], 1)
    path = tmp_path / "stereo.wav"
    pcm = (stereo * 32767).astype(np.int16)
    import wave

    with wave.open(str(path), "wb") as w:
        w.setnchannels(2)
        w.setsampwidth(2)
        w.setframerate(44100)
        w.writeframes(pcm.tobytes())
    track = load_audio(path)
    assert track.sample_rate == 16000 and track.source_rate == 44100 and track.source_channels == "stereo"
    assert abs(track.duration - 1.0) < 1e-3


# ------------------------------------------------------------------------------------------------ features
def test_yin_and_features_on_a_tone():
    sr = 16000
    t = np.arange(sr) / sr
    x = np.concatenate([0.3 * np.sign(np.sin(2 * np.pi * 200 * t)) * 0.5 + 0.2 * np.sin(2 * np.pi * 200 * t),
                        np.zeros(sr // 2)])
    f0, trough = F.yin(x, sr)
    voiced = trough < 0.2
    assert voiced[10:90].all() and not voiced[-30:].any()
    assert np.median(np.abs(f0[10:90] - 200.0)) < 1.0
    feats = F.frame_features(x, 25.0, 38)
    assert feats.log_mel.shape == (38, 80) and feats.rms_db.shape == (38,)
    assert np.nanmedian(feats.f0_hz[2:22]) == pytest.approx(200.0, abs=1.5)
    assert feats.voice_activity[2:22].all() and not feats.voice_activity[-8:].any()
    assert np.isnan(feats.f0_hz[-8:]).all()


def test_transcript_text():
    assert normalize_transcript("Hello, World! It's 42.") == ["hello", "world", "it's", "forty", "two"]
    assert letters_to_phones("bamm") == "B AE M"
    assert letters_to_phones("cicely").split()[0] == "S"


# ------------------------------------------------------------------------------------------------ phonemes
@needs_espeak
def test_alignment_matches_espeak_timing(speech):
    sp, path = speech
    track = load_audio(path)
    hops = F.hop_features(track.samples)
    phones = recognize_phonemes(track.samples, hops, SENTENCE)
    assert phones.path == "alignment"
    words = [w for w in phones.words]
    # espeak's word events, matched in order by text
    errors = []
    k = 0
    for text, onset in sp.words:
        text = text.strip(" .,").lower()
        for j in range(k, len(words)):
            if words[j].text == text:
                errors.append(abs(words[j].start - onset))
                k = j + 1
                break
    assert len(errors) >= len(sp.words) - 1
    assert np.median(errors) < 0.04, errors
    # bilabial onsets: espeak's m/p/b against the nearest aligned M/P/B
    ours = np.array([p.start for p in phones.phones if p.label in ("M", "P", "B")])
    truth = [t for name, t in sp.phones if name in ("m", "p", "b")]
    assert len(ours) == len(truth)
    err = [np.min(np.abs(ours - t)) for t in truth]
    assert np.median(err) < 0.04, err


@needs_espeak
def test_phone_loop_without_transcript(speech):
    sp, path = speech
    track = load_audio(path)
    phones = recognize_phonemes(track.samples, F.hop_features(track.samples), None)
    assert phones.path == "phone_loop"
    assert len(phones.speech_phones) >= 15
    assert phones.phones[-1].label == "SIL" and phones.phones[-1].end == pytest.approx(track.duration, abs=0.02)


# ------------------------------------------------------------------------------------------------ mouth
@needs_espeak
def test_bilabials_close_the_mouth(speech, aligned):
    sp, _ = speech
    targets, report = aligned
    assert report["phoneme_path"] == "alignment"
    jaw, lips = targets.expression_of("jaw_open"), targets.expression_of("lips_part")
    lead = VisemeConfig().lead_s
    # (the first mouth_ease_s ease from the source's own mouth: "Bob" at 0.01 s does not press the lips there)
    onsets = [t for name, t in sp.phones if name in ("m", "p", "b") and t - lead > AudioDriveOptions().mouth_ease_s]
    assert len(onsets) >= 3
    for t in onsets:
        frames = np.arange(int((t - lead) * 25) - 2, int((t - lead) * 25) + 4)
        frames = frames[(frames >= 0) & (frames < len(jaw))]
        shut = (lips[frames] <= VisemeConfig().close_lips + 1e-6) & (jaw[frames] <= VisemeConfig().close_jaw + 1e-6)
        assert shut.sum() >= 2, (t, lips[frames], jaw[frames])
    # vowels open it: the mouth is clearly open somewhere in each word
    assert jaw.max() > 0.2 and lips.max() > 0.3


@needs_espeak
def test_mouth_scale_zero_is_a_still_mouth(speech):
    """--mouth-scale 0 keeps the mouth at rest on bilabials too (they pulled the lips shut to close_lips
    whatever the scale: a "still mouth" baseline that moved); 0.5 still closes them at least half way."""
    _, path = speech
    opts = dict(transcript=SENTENCE, seed=3, still=True)
    still, _ = audio_motion(path, source_fit(), 0, 25.0, AudioDriveOptions(mouth_scale=0.0, **opts))
    for unit in ("jaw_open", "lips_part", "pucker", "lip_stretch", "chin_raise"):
        assert np.ptp(still.expression_of(unit)) == 0.0, unit
    half, _ = audio_motion(path, source_fit(), 0, 25.0, AudioDriveOptions(mouth_scale=0.5, **opts))
    assert half.expression_of("lips_part").min() <= 0.5 * VisemeConfig().close_lips + 1e-6


@needs_espeak
def test_silence_holds_the_mouth_still(speech, aligned):
    sp, _ = speech
    targets, report = aligned
    n = targets.num_frames
    quiet = np.arange(n) / 25.0 > sp.duration + 0.25  # the noise tail, beyond the closing ramp
    assert quiet.sum() >= 5
    for unit in MOUTH:
        values = targets.expression_of(unit)[quiet]
        assert np.ptp(values) == 0.0, unit  # no jitter at all
        assert values[0] == 0.0  # the source's rest
    assert report["silence_fraction"] > 0.1


def test_silent_track_is_a_still_blinking_face(tmp_path):
    path = write_wav(tmp_path / "silent.wav", np.zeros(16000 * 4), 16000)
    targets, report = audio_motion(path, source_fit(), 0, 25.0, AudioDriveOptions(blink_rate=30, seed=1))
    assert report["phoneme_path"] == "silence" and report["pose_mode"] == "still"
    assert targets.num_frames == 100
    assert np.ptp(targets.pose, axis=0).max() == 0.0
    for unit in MOUTH:
        assert np.ptp(targets.expression_of(unit)) == 0.0
    assert targets.expression_of("blink_left").max() > 0.8  # blinks kept
    assert np.array_equal(targets.expression_of("blink_left"), targets.expression_of("blink_right"))


def test_silence_envelope_is_exactly_zero_far_from_speech():
    speech = np.zeros(50, bool)
    speech[10:20] = True
    env = silence_envelope(speech, 25.0, 0.12)
    assert (env[10:20] == 1).all() and (env[:7] == 0).all() and (env[23:] == 0).all()
    assert 0 < env[21] < 1


# ------------------------------------------------------------------------------------------------ motion
@needs_espeak
def test_same_seed_same_output_and_length(speech):
    sp, path = speech
    track = load_audio(path)
    opts = AudioDriveOptions(seed=7)
    a, rep = audio_motion(track, source_fit(), 0, 30.0, opts)
    b, _ = audio_motion(track, source_fit(), 0, 30.0, AudioDriveOptions(seed=7))
    c, _ = audio_motion(track, source_fit(), 0, 30.0, AudioDriveOptions(seed=8))
    assert a.num_frames == int(np.floor(track.duration * 30 + 0.5)) == rep["num_frames"]
    for name in ("pose", "depth_offset", "expression", "gaze", "residual"):
        assert np.array_equal(getattr(a, name), getattr(b, name)), name
    assert not np.array_equal(a.pose, c.pose)
    assert rep["phoneme_path"] == "phone_loop" and rep["pose_mode"] == "style"
    assert rep["phones_found"] > 10 and rep["analysis_s"] > 0
    # the head moves, smoothly: no jumps, and frame-to-frame changes vary slowly (no jitter)
    angles = np.degrees(a.pose[:, :3].astype(np.float64))
    assert np.ptp(angles[:, 0]) > 1.0 and np.abs(np.diff(angles, axis=0)).max() < 4.0
    jerk = np.sqrt((np.diff(angles, 2, axis=0) ** 2).mean(0)) / np.sqrt((np.diff(angles, axis=0) ** 2).mean(0))
    assert (jerk < 0.8).all(), jerk  # a real talking clip (WDA) measures 0.35-0.63; white jitter 1.7


def test_blinks_rate_profile_and_pauses():
    cfg = BlinkConfig(rate_per_min=17)
    counts = [blink_track(25 * 600, 25.0, seed, config=cfg).count for seed in range(3)]
    assert all(140 <= c <= 200 for c in counts), counts  # 17/min over 10 min
    t = (np.arange(12)[:, None] + (np.arange(4)[None] + 0.5) / 4) / 25.0
    prof = lid_profile(t).mean(1)
    assert 6 <= int((prof > 0.02).sum()) <= 8  # ~7 frames at 25 fps
    peak = int(np.argmax(prof))
    assert peak <= 3 and (prof > 0.02).sum() - peak > peak  # closes faster than it opens
    rng = np.random.default_rng(5)
    speech = np.ones(25 * 300, bool)
    t = 0
    while t < len(speech):  # pauses of 0.3-1 s after 1.6-4.8 s of speech: 15 % of the time
        t += int(rng.uniform(40, 120))
        speech[t:t + int(rng.uniform(8, 25))] = False
        t += 25
    track = blink_track(len(speech), 25.0, 0, speech, cfg)
    in_pause = [not speech[min(int(o * 25 + 0.5) + 3, len(speech) - 1)] for o in track.onsets_s]
    assert np.mean(in_pause) > 0.35  # more than twice the pauses' share of time
    assert blink_track(250, 25.0, 0, config=BlinkConfig(rate_per_min=0)).count == 0


def test_head_modes():
    ref = np.zeros((30, 3))
    ref[:, 0] = np.linspace(0, 6, 30)
    ref[:, 1] = np.sin(np.linspace(0, 3, 30))
    out = copy_motion(ref, 25.0, 100, 25.0)
    assert np.allclose(out[0], 0) and np.abs(np.diff(out, axis=0)).max() <= np.abs(np.diff(ref, axis=0)).max() + 1e-9
    assert list(pingpong_indices(4, 9)) == [0, 1, 2, 3, 2, 1, 0, 1, 2]
    still = head_motion(50, 25.0, HeadMotionConfig(mode="still", yaw=(0.0, 10.0)))
    assert np.allclose(still.offsets_deg[:, 0], np.linspace(0, 10, 50)) and np.allclose(still.offsets_deg[:, 1:], 0)
    assert np.allclose(keyframe_curve([5.0], 4), 5.0)
    style = builtin_head_style()
    assert np.all(stationary_std(style.coefs, style.noise_cov) > 0)
    long = head_motion(25 * 200, 25.0, HeadMotionConfig(mode="style", calibrate=False), 0)
    assert np.allclose(long.offsets_deg.std(0), style.std_deg, rtol=0.35)
    wide = (1e3, 1e3, 1e3)  # the soft limit far away: scaling is then linear
    scaled = head_motion(25 * 20, 25.0, HeadMotionConfig(mode="style", head_scale=0.5, max_deg=wide), 0)
    full = head_motion(25 * 20, 25.0, HeadMotionConfig(mode="style", max_deg=wide), 0)
    assert np.allclose(scaled.offsets_deg, 0.5 * full.offsets_deg, atol=0.02)
    with pytest.raises(ValueError):
        head_motion(10, 25.0, HeadMotionConfig(mode="copy"))


def test_mouth_from_phones_scale_and_closures():
    from thead.audio.phonemes import Phone

    phones = [Phone("SIL", 0.0, 0.3), Phone("M", 0.3, 0.36), Phone("AA", 0.36, 0.6), Phone("P", 0.6, 0.63),
              Phone("AA", 0.63, 0.9), Phone("SIL", 0.9, 1.6)]
    x = np.random.default_rng(0).normal(0, 0.1, 16000 * 16 // 10)
    feats = F.frame_features(x, 25.0, 40)
    m1 = phones_to_mouth(phones, feats, VisemeConfig())
    m2 = phones_to_mouth(phones, feats, VisemeConfig(mouth_scale=2.0))
    assert np.allclose(m2.delta, 2 * m1.delta, atol=1e-6)
    # the 30 ms P still closes at least two frames
    closed = np.flatnonzero(m1.closed)
    assert len(closed) >= 4 and np.any(np.diff(closed) > 1)
    assert (m1.delta[np.arange(8, 15), 0] > 0.1).any()


# ------------------------------------------------------------------------------------------------ files
def test_motion_file_round_trip(tmp_path):
    from thead.engines.motion import TargetParams

    fit = source_fit(3)
    rng = np.random.default_rng(0)
    fit.pose[:, :3] = rng.normal(0, 0.2, (3, 3))
    fit.expression[:] = rng.uniform(0, 1, fit.expression.shape)
    fit.residual[:] = rng.normal(0, 0.01, fit.residual.shape)
    targets = TargetParams.from_fit(fit)
    targets.held[1] = True
    path = save_motion(tmp_path / "m" / "clip.safetensors", targets, 25.0, {"audio": "a.wav", "seed": 3})
    back = load_motion(path)
    assert back.kind == "motion" and back.fps == 25.0 and back.meta == {"audio": "a.wav", "seed": 3}
    for name in ("pose", "depth_offset", "expression", "gaze", "residual", "held"):
        assert np.allclose(getattr(back.targets, name), getattr(targets, name), atol=1e-6), name
    assert back.targets.expression_names == targets.expression_names
    # the same motion and meta give the same bytes (safetensors' own writer orders the metadata at random)
    for k in range(4):
        again = save_motion(tmp_path / f"again{k}.safetensors", targets, 25.0, {"audio": "a.wav", "seed": 3})
        assert again.read_bytes() == path.read_bytes()
    from safetensors.numpy import load_file

    assert np.array_equal(load_file(str(path))["expression"], targets.expression)
    # a motion file drives another face relative to its first frame
    from thead.engines.motion import transfer_motion

    other = source_fit()
    moved = transfer_motion(other, back.as_fit())
    assert moved.num_frames == 3 and np.allclose(moved.pose[0], other.pose[0], atol=1e-5)
    # a constant residual is stored once
    still = targets[[0, 0, 0, 0]]
    p2 = save_motion(tmp_path / "still.safetensors", still, 30.0)
    assert np.allclose(load_motion(p2).targets.residual, still.residual)
    assert p2.stat().st_size < path.stat().st_size
    # a fit's own safetensors reads too
    folder = fit.save(tmp_path / "fit")
    as_motion = load_motion(folder / "fit.safetensors")
    assert as_motion.kind == "fit" and np.allclose(as_motion.targets.pose, fit.pose, atol=1e-6)
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(b"\x00" * 20)
    with pytest.raises(InputError, match="bad.safetensors"):
        load_motion(bad)


@needs_espeak
def test_export_of_audio_motion_round_trips(aligned, tmp_path):
    targets, report = aligned
    path = save_motion(tmp_path / "speech.safetensors", targets, 25.0, report)
    back = load_motion(path)
    assert back.targets.num_frames == targets.num_frames
    assert np.allclose(back.targets.pose, targets.pose, atol=1e-6)
    assert back.meta["phoneme_path"] == "alignment"


def test_options_resolve_pose_mode():
    assert AudioDriveOptions().pose_mode() == "style"
    assert AudioDriveOptions(still=True, pose="copy").pose_mode() == "still"
    with pytest.raises(ValueError):
        AudioDriveOptions(pose="dance").pose_mode()
    with pytest.raises(ValueError, match="reference"):
        head_motion(5, 25.0, HeadMotionConfig(mode="copy"))


def test_open_mouth_source_rests_closed(tmp_path):
    fit = source_fit()
    fit.expression[0, list(fit.expression_names).index("jaw_open")] = 0.6
    path = write_wav(tmp_path / "silent.wav", np.zeros(8000), 16000)
    still, _ = audio_motion(path, fit, 0, 25.0)  # silence: the source's own mouth, as it is
    assert np.allclose(still.expression_of("jaw_open"), 0.6)
    hum = np.zeros(40000)  # 2.5 s: a 0.5 s hum after 1 s of silence
    hum[16000:24000] = 0.3 * np.sin(np.arange(8000) * 2 * np.pi * 150 / 16000)
    track = load_audio(write_wav(tmp_path / "hum.wav", hum, 16000))
    opts = AudioDriveOptions(phonemes=PhonemeConfig(phone_loop=False), blink_rate=0)  # sound: the acoustic path
    capped, report = audio_motion(track, fit, 0, 25.0, opts)
    jaw = capped.expression_of("jaw_open")
    # the first frame is the source's own mouth, which eases to the capped rest over mouth_ease_s (4 frames)
    assert jaw[0] == pytest.approx(0.6) and 0.1 < jaw[2] < 0.6 and np.allclose(jaw[4:15], 0.1)
    assert jaw.max() > 0.3 and np.allclose(jaw[-5:], 0.1) and any("rest" in n for n in report["notes"])
    snapped, _ = audio_motion(track, fit, 0, 25.0, replace(opts, mouth_ease_s=0.0))
    assert np.allclose(snapped.expression_of("jaw_open")[:15], 0.1)
    kept, _ = audio_motion(track, fit, 0, 25.0, replace(opts, mouth_rest_max=None))
    assert np.allclose(kept.expression_of("jaw_open")[-5:], 0.6)


# ------------------------------------------------------------------------------------------------ own style
def _talking_video_fit(seconds: float = 10.0, fps: float = 25.0, yaw_std: float = 2.0, blinks: int = 10):
    """A source VIDEO fit: a calm head (smooth yaw / pitch of about ``yaw_std`` / half that degrees), ``blinks``
    lid closures spread over the clip, a mouth open on frame 0 (mid-word) and closed on a quarter of frames."""
    n = int(seconds * fps)
    fit = source_fit(n)
    fit.fps = fps
    rng = np.random.default_rng(4)
    from scipy.ndimage import gaussian_filter1d

    walk = gaussian_filter1d(rng.normal(0, 1, (n, 3)), 0.4 * fps, axis=0)
    walk = (walk - walk.mean(0)) / walk.std(0) * np.array([yaw_std, yaw_std / 2, yaw_std / 3])
    fit.pose[:, :3] += np.radians(walk).astype(np.float32)
    names = list(fit.expression_names)
    expr = fit.expression
    for k, t in enumerate(np.linspace(0.5 * fps, n - 0.5 * fps, blinks).astype(int)):
        expr[t - 1:t + 2, names.index("blink_left")] = [0.5, 0.9, 0.5]
        expr[t - 1:t + 2, names.index("blink_right")] = [0.4, 0.8, 0.4]
    expr[:, names.index("jaw_open")] = np.where(np.arange(n) % 4 == 0, -0.02, 0.2)
    expr[:, names.index("lips_part")] = np.where(np.arange(n) % 4 == 0, -0.2, 0.4)
    expr[0, names.index("jaw_open")], expr[0, names.index("lips_part")] = 0.6, 0.9
    fit.identity = _mean_face_cm()
    fit.residual[0, 14, 1] += 0.4  # the first frame's lower lip further down than its units say
    fit.residual[0, 10, 1] += 0.3  # and something on the forehead
    return fit


def _mean_face_cm() -> np.ndarray:
    from thead.facemodel import load_face_model

    return np.asarray(load_face_model().mean_shape, np.float32)


def test_fitted_blink_rate_counts_each_closure_once():
    from thead.audio.blinks import count_blinks, fitted_blink_rate

    lid = np.array([0, 0.2, 0.7, 0.9, 0.5, 0.65, 0.2, 0.0, 0.62, 0.1])  # 0.65 before reopening: same blink
    assert count_blinks(lid) == 2
    assert fitted_blink_rate(lid * 0.8, lid, 10.0) == pytest.approx(120.0)  # the more closed lid counts
    assert fitted_blink_rate(lid, lid, 10.0, np.zeros(10, bool)) == 0.0


def test_high_blink_rates_are_reached_in_speech_with_pauses():
    rng = np.random.default_rng(2)
    speech = np.ones(25 * 600, bool)
    for t in rng.integers(0, len(speech) - 10, 300):
        speech[t:t + 6] = False
    for rate in (17.0, 68.0):
        count = blink_track(len(speech), 25.0, 0, speech, BlinkConfig(rate_per_min=rate)).count / 10.0
        assert 0.8 * rate <= count <= 1.15 * rate, (rate, count)


def test_style_draw_shows_the_asked_std():
    """A short draw's own std matches the style's (the stationary scaling alone gave 0.5-2x on 8 s clips)."""
    style = builtin_head_style()
    wide = (1e3, 1e3, 1e3)
    ratios = np.stack([head_motion(200, 25.0, HeadMotionConfig(mode="style", calibrate=False, max_deg=wide),
                                   seed).offsets_deg.std(0) / style.std_deg for seed in range(8)])
    assert np.median(np.abs(ratios - 1.0)) < 0.02 and 0.6 < ratios.min() and ratios.max() < 1.1, ratios


def test_head_follows_speech_loudness():
    from thead.audio.head_motion import speech_gain

    speech = np.r_[np.zeros(25, bool), np.ones(100, bool)]
    db = np.r_[np.full(25, -80.0), np.full(50, -30.0), np.full(50, -10.0)]
    g = speech_gain(speech, 25.0, 0.2, db, energy_gain=0.5, smooth_s=0.0)
    assert g[:25] == pytest.approx(0.2) and g[100] > g[40] > g[10]


@needs_espeak
def test_video_source_is_its_own_style(speech):
    """A source video with no reference: its own head std (after the render gain), its own blink rate and its
    own closed mouth as the rest; a photo keeps the built-in style and 17 blinks a minute."""
    from thead.audio.head_motion import RENDER_POSE_GAIN, relative_angles

    sp, path = speech
    track = load_audio(write_wav(path.parent / "bob3.wav", np.tile(sp.samples, 3), sp.rate))  # 10 s of talk
    video = _talking_video_fit()
    targets, report = audio_motion(track, video, 0, 25.0, AudioDriveOptions(seed=2))
    ref_std = relative_angles(video.pose, video.valid)[:, :2].std(0)
    shown = np.degrees(targets.pose[:, :2].astype(np.float64)).std(0) * np.asarray(RENDER_POSE_GAIN[:2])
    assert np.allclose(shown, ref_std, rtol=0.2), (shown, ref_std)
    assert report["head_style"] == "the source video's own"
    assert any("blink rate 60/min" in n for n in report["notes"]), report["notes"]
    jaw = targets.expression_of("jaw_open")
    assert jaw.min() == pytest.approx(-0.02, abs=1e-4)  # the video's closed mouth, not frame 0's 0.6
    res = targets.residual - targets.residual[:1]  # (the pose corrective's change aside)
    closed = np.flatnonzero(jaw[4:] <= -0.02 + 1e-4) + 4  # past the ease from frame 0's own mouth
    assert len(closed) and np.abs(targets.residual[closed, 14, 1]).max() < 0.05
    assert targets.residual[0, 14, 1] == pytest.approx(0.4, abs=0.05)  # frame 0: the source's own lips
    assert targets.residual[0, 10, 1] == pytest.approx(0.3, abs=0.05)
    assert np.abs(res).max() < 0.5
    photo, rep = audio_motion(track, source_fit(), 0, 25.0, AudioDriveOptions(seed=2))
    assert rep["head_style"].startswith("builtin") and not any("blink rate" in n for n in rep["notes"])
    own_off, _ = audio_motion(track, video, 0, 25.0, AudioDriveOptions(seed=2, own_style=False))
    assert np.degrees(own_off.pose[:, 0].astype(np.float64)).std() > 2.0 * shown[0]


def test_mouth_residual_model_recovers_a_linear_lip_shape():
    """The mouth region's residual regressed on the units: slope recovered, rest at the closed frames, units
    clipped to what the video showed (no extrapolation)."""
    from thead.audio.motion import video_mouth_residual_model

    fit = _talking_video_fit()
    names = list(fit.expression_names)
    rng = np.random.default_rng(1)
    fit.expression[:, names.index("lips_part")] += rng.normal(0, 0.1, fit.num_frames)  # not collinear with jaw
    jaw = fit.expression[:, names.index("jaw_open")].astype(np.float64)
    fit.residual[:] = 0.0
    fit.residual[:, 14, 1] = 0.3 * jaw  # lower lip further down the more the jaw opens (cm per unit)
    model = video_mouth_residual_model(fit)
    k = model.units.index("jaw_open")
    values = np.repeat(model.rest_units[None], 2, 0)
    values[1, k] += 0.1
    change = model.residual(values)[1] - model.residual(values)[0]
    assert change[14, 1] == pytest.approx(0.03, rel=0.15)
    assert np.abs(np.delete(change, 14, axis=0)).max() < 1e-3
    assert model.rest[14, 1] == pytest.approx(0.3 * -0.02, abs=1e-3)  # the closed frames' residual
    far = np.repeat(model.rest_units[None], 1, 0)
    far[0, k] = 5.0  # beyond anything the video showed: held at its 99th percentile
    assert model.residual(far)[0, 14, 1] == pytest.approx(0.3 * 0.2, abs=0.01)


@needs_espeak
def test_video_source_lips_follow_the_mouth_units(speech):
    """With a source video, the mouth region's residual follows the generated mouth units as it followed the
    fitted units in the video (before: the closed-mouth residual on every frame); off: constant."""
    sp, path = speech
    video = _talking_video_fit()
    names = list(video.expression_names)
    video.residual[0, 14, 1] = 0.0  # (no mid-word outlier on frame 0 here)
    video.residual[:, 14, 1] += 0.3 * video.expression[:, names.index("jaw_open")]
    targets, report = audio_motion(path, video, 0, 25.0, AudioDriveOptions(seed=2, still=True))
    jaw = targets.expression_of("jaw_open").astype(np.float64)
    lip = targets.residual[:, 14, 1].astype(np.float64)
    seen = np.clip(jaw, -0.02, 0.2)[4:]  # the video's jaw ranged over [-0.02, 0.2]: the model does not extrapolate
    lip = lip[4:]  # (frames 0-3 ease from frame 0's own residual, not the model's)
    assert seen.std() > 0.03 and np.corrcoef(seen, lip)[0, 1] > 0.9
    assert np.ptp(lip) == pytest.approx(0.3 * 0.22, rel=0.25)
    assert np.ptp(targets.residual[:, 10, 1]) < 1e-6  # the forehead is not the mouth
    assert any("lip shapes" in n for n in report["notes"])
    off, _ = audio_motion(path, video, 0, 25.0, AudioDriveOptions(seed=2, still=True, mouth_residual=False))
    assert np.ptp(off.residual[4:, 14, 1]) < 1e-6


@needs_espeak
def test_video_source_head_settles_where_the_speaker_looks(speech):
    """The first frame of a video turned 10 degrees away from the clip's usual pose: the generated head turns
    back to the clip's mean pose (as the renderer shows it) within the ease time, starting from frame 0's."""
    from thead.audio.head_motion import RENDER_POSE_GAIN

    sp, path = speech
    track = load_audio(write_wav(path.parent / "bob3c.wav", np.tile(sp.samples, 3), sp.rate))
    video = _talking_video_fit()
    video.pose[0, 0] -= np.radians(10.0)
    targets, _ = audio_motion(track, video, 0, 25.0, AudioDriveOptions(seed=2))
    yaw = np.degrees(targets.pose[:, 0].astype(np.float64) - video.pose[0, 0])
    assert abs(yaw[0]) < 1e-3
    shown = yaw[50:].mean() * RENDER_POSE_GAIN[0]
    assert 7.0 < shown < 13.0, shown
    assert np.abs(np.diff(yaw)).max() < 2.0  # eased, no jump


def test_reference_style_slows_in_pauses():
    """A style fitted to a reference clip moves the head less in pauses than in speech (the built-in style's
    measured pause/speech ratio; the 0.5 default kept the head nearly as busy in pauses)."""
    rng = np.random.default_rng(1)
    from scipy.ndimage import gaussian_filter1d

    ref = gaussian_filter1d(rng.normal(0, 1, (500, 3)), 8, axis=0) * 40
    speech = (np.arange(1000) // 50) % 2 == 0  # 2 s of speech, 2 s of pause, ...
    ratios = []
    for seed in range(4):
        off = head_motion(1000, 25.0, HeadMotionConfig(mode="style"), seed, speech=speech,
                          reference_deg=ref, reference_fps=25.0).offsets_deg
        speed = np.linalg.norm(np.diff(off, axis=0), axis=1)
        ratios.append(speed[~speech[1:]].mean() / speed[speech[1:]].mean())
    assert np.mean(ratios) < 0.45, ratios

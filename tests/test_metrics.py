"""Known-value tests of thead.metrics: pixel, landmark, face-model, temporal, audio-visual and aggregation."""

from __future__ import annotations

import subprocess
import wave
from pathlib import Path

import numpy as np
import pytest
import torch

from thead.errors import InputError
from thead.face.topology import MP_TO_IBUG68
from thead.metrics import (
    aed,
    aggregate,
    aggregate_video,
    akd,
    align_lengths,
    au_agreement,
    audio_rms_envelope,
    audio_visual_sync,
    av_sync,
    gaze_distance,
    identity_shape_distance,
    l1,
    landmark_jitter,
    lmd,
    luminance_flicker,
    mouth_opening,
    ms_ssim,
    pixel_metrics,
    pose_distance,
    psnr,
    read_audio,
    relative_flicker,
    rotation_distance,
    ssim,
    to_ibug68,
)
from thead.metrics.pixel import ms_ssim_scales, psnr_from_sigma


@pytest.fixture(scope="module")
def face256(astronaut: np.ndarray) -> np.ndarray:
    """The astronaut portrait's face region resized to 256x256, uint8."""
    import cv2

    return cv2.resize(astronaut[0:300, 100:400], (256, 256), interpolation=cv2.INTER_AREA)


# ------------------------------------------------------------------------------------------------------ pixel

def test_identical_frames(face256: np.ndarray) -> None:
    frames = np.stack([face256, face256[::-1]])
    assert np.all(l1(frames, frames) == 0)
    assert np.allclose(ssim(frames, frames), 1.0, atol=1e-6)
    assert np.allclose(ms_ssim(frames, frames), 1.0, atol=1e-6)
    assert np.all(np.isinf(psnr(frames, frames)))
    both = pixel_metrics(frames, frames)
    assert set(both) == {"l1", "psnr", "ssim", "ms_ssim"} and np.allclose(both["ssim"], 1.0, atol=1e-6)


def test_psnr_matches_gaussian_noise_theory() -> None:
    rng = np.random.default_rng(0)
    clean = rng.uniform(0.3, 0.7, size=(3, 256, 256, 3))  # float HWC in [0, 1]; 10 sigma from either bound
    for sigma in (0.01, 0.02):
        noisy = clean + rng.normal(0.0, sigma, clean.shape)
        assert noisy.min() > 0 and noisy.max() < 1
        values = psnr(noisy, clean)
        assert np.allclose(values, psnr_from_sigma(sigma), atol=0.2), (values, psnr_from_sigma(sigma))


def test_ssim_agrees_with_skimage(face256: np.ndarray) -> None:
    from skimage.metrics import structural_similarity

    rng = np.random.default_rng(1)
    noisy = np.clip(face256 + rng.normal(0, 25, face256.shape), 0, 255).astype(np.uint8)
    shifted = np.roll(face256, 3, axis=1)
    ours = ssim(np.stack([noisy, shifted]), np.stack([face256, face256]))
    for value, other in zip(ours, (noisy, shifted)):
        ref = structural_similarity(other / 255.0, face256 / 255.0, gaussian_weights=True, sigma=1.5,
                                    use_sample_covariance=False, data_range=1, channel_axis=-1)
        assert abs(value - ref) < 1e-3, (value, ref)


def test_tensor_and_uint8_inputs_agree(face256: np.ndarray) -> None:
    rng = np.random.default_rng(2)
    other = np.clip(face256 + rng.normal(0, 10, face256.shape), 0, 255).astype(np.uint8)
    as_tensor = lambda a: torch.from_numpy(a).permute(2, 0, 1)[None].float() / 255.0  # noqa: E731
    assert np.allclose(ssim(as_tensor(other), as_tensor(face256)), ssim(other, face256), atol=1e-6)
    assert np.allclose(l1(as_tensor(other), as_tensor(face256)), l1(other, face256), atol=1e-7)


def test_ms_ssim_sizes(face256: np.ndarray) -> None:
    assert ms_ssim_scales(256, 256) == 5 and ms_ssim_scales(128, 128) == 4
    rng = np.random.default_rng(3)
    noisy = np.clip(face256 + rng.normal(0, 20, face256.shape), 0, 255).astype(np.uint8)
    full = ms_ssim(noisy, face256)[0]
    assert 0 < full < 1 and np.isfinite(full)
    small = ms_ssim(noisy[::2, ::2], face256[::2, ::2])[0]  # 128x128: 4 scales, renormalised weights
    assert 0 < small < 1
    with pytest.raises(ValueError):
        ms_ssim(face256[:16, :16], face256[:16, :16])


def test_pixel_length_mismatch_raises(face256: np.ndarray) -> None:
    with pytest.raises(ValueError, match="align"):
        l1(np.stack([face256] * 3), np.stack([face256] * 2))


# -------------------------------------------------------------------------------------------------- landmarks

def _random_landmarks(n: int, k: int = 68, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).uniform(40, 220, size=(n, k, 2))


def test_akd_shift_gives_five() -> None:
    pts = _random_landmarks(4)
    assert np.allclose(akd(pts, pts), 0)
    assert np.allclose(akd(pts + np.array([3.0, 4.0]), pts), 5.0)
    assert np.allclose(lmd(pts + np.array([3.0, 4.0]), pts), 5.0)
    assert np.allclose(lmd(pts + np.array([3.0, 4.0]), pts, center=True), 0.0, atol=1e-9)


def test_akd_rescales_to_evaluation_size() -> None:
    pts = _random_landmarks(2) * 2  # measured on 512x512 frames
    shifted = pts + np.array([6.0, 8.0])
    assert np.allclose(akd(shifted, pts, image_size=512), 5.0)  # 10 px at 512 = 5 px at 256


def test_akd_accepts_mediapipe_478() -> None:
    mesh = np.random.default_rng(4).uniform(0, 256, size=(3, 478, 3))
    assert to_ibug68(mesh).shape == (3, 68, 2)
    assert np.allclose(to_ibug68(mesh), mesh[:, MP_TO_IBUG68, :2])
    assert np.allclose(akd(mesh + np.array([3.0, 4.0, 7.0]), mesh), 5.0)  # z ignored


def test_akd_nan_frame_is_nan_not_dropped() -> None:
    pts = _random_landmarks(3)
    gen = pts.copy()
    gen[1] = np.nan
    values = akd(gen, pts)
    assert np.isnan(values[1]) and np.allclose(values[[0, 2]], 0)
    summary = aggregate(values)
    assert (summary.measured, summary.skipped, summary.total) == (2, 1, 3)


# ------------------------------------------------------------------------------------------------- face model

def test_aed_definitions() -> None:
    a = np.zeros((2, 4))
    b = np.array([[1.0, -1.0, 1.0, -1.0], [0.0, 0.0, 3.0, 4.0]])
    assert np.allclose(aed(a, a), 0)
    assert np.allclose(aed(a, b), [1.0, 1.75])
    assert np.allclose(aed(a, b, norm="l2"), [2.0, 5.0])


def test_pose_distance_wraps_angles() -> None:
    gen = np.array([[179.0, 10.0, 0.0], [0.0, 0.0, 0.0]])
    ref = np.array([[-179.0, 4.0, 3.0], [0.0, 0.0, 0.0]])
    d = pose_distance(gen, ref, np.array([[0, 0, 0], [3, 4, 0.0]]), np.zeros((2, 3)))
    assert np.allclose(d.yaw, [2, 0]) and np.allclose(d.pitch, [6, 0]) and np.allclose(d.roll, [3, 0])
    assert np.allclose(d.apd, [11 / 3, 0]) and np.allclose(d.translation, [0, 5])


def test_rotation_and_gaze_distance() -> None:
    def rot_z(deg: float) -> np.ndarray:
        c, s = np.cos(np.radians(deg)), np.sin(np.radians(deg))
        return np.array([[c, -s, 0], [s, c, 0], [0, 0, 1.0]])

    assert np.allclose(rotation_distance(np.stack([rot_z(30), rot_z(0)]), np.stack([rot_z(0), rot_z(0)])),
                       [30, 0], atol=1e-6)
    assert np.allclose(gaze_distance(np.array([[0, 0, -1.0]]), np.array([[0, 1.0, -1.0]])), 45)
    assert np.allclose(gaze_distance(np.array([[10.0, 0.0]]), np.array([[0.0, 0.0]])), 10)


def test_au_agreement() -> None:
    rng = np.random.default_rng(5)
    names = ["AU01", "AU02", "AU04", "AU06", "AU12", "AU25"]
    probs = rng.uniform(0, 1, size=(10, 6))
    same = au_agreement(probs, probs, units=names)
    assert np.allclose(same.accuracy, 1) and np.allclose(same.hamming, 0)
    flipped = probs.copy()
    flipped[:, 0] = 1 - flipped[:, 0]  # AU01 presence flips in every frame (no value sits exactly at 0.5)
    res = au_agreement(flipped, probs, units=names)
    assert np.allclose(res.hamming, 1 / 6) and res.per_unit["AU01"] == 0 and res.per_unit["AU12"] == 1
    as_dict = au_agreement({n: probs[:, i] for i, n in enumerate(names)},
                           {n: probs[:, i] for i, n in enumerate(names)}, units=["AU12", "AU25"])
    assert as_dict.units == ("AU12", "AU25") and np.allclose(as_dict.accuracy, 1)
    probs_nan = probs.copy()
    probs_nan[3, 2] = np.nan
    assert np.isnan(au_agreement(probs_nan, probs, units=names).accuracy[3])


def test_unit_correlation_follows_each_unit_and_averages_the_moving_ones() -> None:
    from thead.metrics import unit_correlation

    t = np.linspace(0, 4 * np.pi, 60)
    ref = np.stack([0.5 + 0.4 * np.sin(t), 0.3 + 0.2 * np.cos(t), np.full(60, 0.1) + 0.001 * np.sin(3 * t)], 1)
    gen = ref.copy()
    gen[:, 1] = 0.3 - 0.2 * np.cos(t)  # the second unit goes the wrong way
    gen[5] = np.nan  # an unmeasured frame is left out
    res = unit_correlation(gen, ref, units=["a", "b", "still"])
    assert np.isclose(res.per_unit["a"], 1.0) and np.isclose(res.per_unit["b"], -1.0)
    assert res.moving == ("a", "b") and np.isclose(res.mean, 0.0)  # "still" (std .0007) is not averaged
    damped = unit_correlation(0.2 * ref, ref, units=["a", "b", "still"])
    assert np.isclose(damped.mean, 1.0)  # correlation is about following, not amplitude
    assert np.isnan(unit_correlation(np.ones((10, 1)), np.arange(10.0)[:, None]).per_unit["U0"])


def test_identity_shape_distance_removes_similarity_transform() -> None:
    rng = np.random.default_rng(6)
    shape = rng.normal(0, 50, size=(478, 3))
    shape[33], shape[263] = [-40, 0, 0], [40, 0, 0]  # inter-ocular distance 80
    q = np.linalg.qr(rng.normal(size=(3, 3)))[0]
    rot = q * np.sign(np.linalg.det(q))
    moved = 1.7 * shape @ rot.T + np.array([5.0, -3.0, 2.0])
    assert identity_shape_distance(moved, shape)[0] < 1e-9
    bumped = shape.copy()
    bumped[:, 2] += rng.normal(0, 2.0, 478)  # a different identity, same pose
    d = identity_shape_distance(bumped, shape)[0]
    assert 0.005 < d < 0.05


# --------------------------------------------------------------------------------------------------- temporal

def test_landmark_jitter() -> None:
    t = np.arange(30, dtype=np.float64)
    base = _random_landmarks(1)[0]
    smooth = base[None] + (2.0 * t)[:, None, None]  # constant velocity
    assert np.allclose(landmark_jitter(smooth), 0)
    shaky = smooth + (np.where(t % 2 == 0, 1.0, -1.0) * 0.5)[:, None, None] * np.array([1.0, 0.0])
    acc = landmark_jitter(shaky)
    assert acc.shape == (28,) and np.allclose(acc, 2.0)  # +-0.5 alternating: |0.5 - 2(-0.5) + 0.5| = 2
    hp = landmark_jitter(shaky, method="highpass")
    assert hp.shape == (30,) and hp.mean() > 0.3 and landmark_jitter(smooth, "highpass").max() < 1e-6


def test_flicker() -> None:
    rng = np.random.default_rng(7)
    steady = np.tile(rng.integers(0, 255, size=(1, 64, 64, 3), dtype=np.uint8), (6, 1, 1, 1))
    flick = steady.astype(np.int16)
    flick[1::2] += 10
    flick = np.clip(flick, 0, 255).astype(np.uint8)
    assert np.allclose(luminance_flicker(steady), 0)
    assert luminance_flicker(flick, region=(8, 8, 56, 56)).mean() > 0.03
    comp = relative_flicker(flick, steady)
    assert comp.excess > 0.03 and np.isinf(comp.ratio)
    assert relative_flicker(steady, steady).ratio == 1.0
    mask = np.zeros((64, 64), dtype=bool)
    mask[10:20, 10:20] = True
    assert luminance_flicker(iter(list(flick)), region=mask).shape == (5,)


# ------------------------------------------------------------------------------------------------ audio-visual

def _mouth_landmarks(opening: np.ndarray) -> np.ndarray:
    """68-point landmarks whose inner-lip gap / inter-ocular distance equals ``opening`` (IOD 100 px)."""
    pts = np.tile(_random_landmarks(1, seed=8), (len(opening), 1, 1))
    pts[:, 36], pts[:, 45] = [78.0, 100.0], [178.0, 100.0]
    for up, low in ((61, 67), (62, 66), (63, 65)):
        pts[:, up] = [128.0, 180.0]
        pts[:, low, 0] = 128.0
        pts[:, low, 1] = 180.0 + 100.0 * opening
    return pts


def _envelope(n: int, seed: int) -> np.ndarray:
    from scipy.ndimage import gaussian_filter1d

    raw = np.random.default_rng(seed).uniform(0, 1, n)
    env = gaussian_filter1d(raw, 2.0)
    return (env - env.min()) / (env.max() - env.min())


@pytest.mark.parametrize("lag", [0, 3, -2])
def test_av_sync_recovers_known_lag(lag: int) -> None:
    env = _envelope(300, seed=9)
    mouth = np.roll(env, lag) * 0.4 + np.random.default_rng(10).normal(0, 0.01, 300)
    res = av_sync(env, mouth, max_lag=6)
    assert res.best_lag == lag and res.best_correlation > 0.9
    assert np.allclose(mouth_opening(_mouth_landmarks(np.array([0.0, 0.25]))), [0.0, 0.25])


def _write_wav(path: Path, samples: np.ndarray, rate: int) -> None:
    pcm = (np.clip(samples, -1, 1) * 32767).astype("<i2")
    with wave.open(str(path), "wb") as wf:
        wf.setnchannels(1)
        wf.setsampwidth(2)
        wf.setframerate(rate)
        wf.writeframes(pcm.tobytes())


def test_audio_visual_sync_end_to_end(tmp_path: Path) -> None:
    fps, rate, frames, lag = 25, 16000, 150, 2
    env = _envelope(frames, seed=11)
    per_sample = np.repeat(0.05 + 0.6 * env, rate // fps)
    audio = per_sample * np.random.default_rng(12).uniform(-1, 1, per_sample.size)  # noise carrier
    wav = tmp_path / "speech.wav"
    _write_wav(wav, audio, rate)
    samples = read_audio(wav, sample_rate=rate)
    assert samples.dtype == np.float32 and abs(len(samples) - frames * rate // fps) < 10
    rms = audio_rms_envelope(samples, rate, fps, num_frames=frames)
    assert np.corrcoef(rms[:-1], env[:-1])[0, 1] > 0.95
    mouth = np.concatenate([np.zeros(lag), env[:-lag]]) * 0.4  # the mouth follows the audio by 2 frames
    res = audio_visual_sync(wav, _mouth_landmarks(mouth), fps=fps, max_lag=5, sample_rate=rate)
    assert res.best_lag == lag and res.best_correlation > 0.8


def test_read_audio_errors(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="not found"):
        read_audio(tmp_path / "missing.wav")
    silent = tmp_path / "silent.wav"
    _write_wav(silent, np.zeros(16000), 16000)
    with pytest.raises(InputError, match="silent"):
        read_audio(silent)
    assert read_audio(silent, allow_silent=True).shape == (16000,)
    from thead.io.ffmpeg import ffmpeg_exe

    video = tmp_path / "mute.mp4"
    subprocess.run([ffmpeg_exe(), "-v", "error", "-f", "lavfi", "-i", "color=c=gray:s=64x64:d=0.2", "-c:v",
                    "libx264", "-pix_fmt", "yuv420p", str(video)], check=True)
    with pytest.raises(InputError, match="no audio"):
        read_audio(video)


# -------------------------------------------------------------------------------------------------- aggregation

def test_aggregate_counts_nan_frames() -> None:
    values = np.array([1.0, np.nan, 3.0, np.nan])
    s = aggregate(values)
    assert (s.mean, s.std, s.measured, s.skipped, s.total) == (2.0, 1.0, 2, 2, 4)
    none = aggregate(np.array([np.nan, np.nan]))
    assert np.isnan(none.mean) and none.measured == 0 and none.to_dict()["mean"] is None


def test_mismatched_lengths_refused_unless_truncating() -> None:
    per_frame = {"ssim": np.ones(10), "csim": np.r_[np.full(7, 0.9), np.nan]}
    with pytest.raises(ValueError, match="truncate"):
        aggregate_video(per_frame)
    report = aggregate_video(per_frame, how="truncate")
    assert report.alignment.length == 8 and report.alignment.truncated == ("ssim",)
    assert report.summaries["ssim"].total == 8 and report.summaries["csim"].skipped == 1
    assert any("truncated" in n for n in report.notes) and any("csim: 1 of 8" in n for n in report.notes)
    aligned, info = align_lengths({"a": np.arange(3), "b": np.arange(3)})
    assert info.truncated == () and info.message == ""


@pytest.mark.shared_data
def test_av_sync_on_real_talking_clip(shared_data: Path) -> None:
    """A real speech clip: mouth opening correlates with loudness; the same track desynchronised does not."""
    import cv2

    from thead.io import iter_frames
    from thead.metrics.identity import DlibFaceLandmarker

    clip = shared_data / "videos" / "WDA_AlexandriaOcasioCortez_000.mp4"  # 25 fps, 8 s, speech
    finder = DlibFaceLandmarker(upsample=0)
    found = [finder.landmarks(cv2.resize(f, (256, 256), interpolation=cv2.INTER_AREA)) for f in iter_frames(clip)]
    landmarks = np.stack([p if p is not None else np.full((68, 2), np.nan) for p in found])
    synced = audio_visual_sync(clip, landmarks, fps=25, max_lag=5)
    assert synced.frames_used >= 190 and abs(synced.best_lag) <= 4
    env = audio_rms_envelope(read_audio(clip), 16000, 25, num_frames=len(landmarks))
    mouth = mouth_opening(landmarks)
    shifted = av_sync(env, np.roll(mouth, 40), max_lag=5)  # video 1.6 s off: outside the lag window
    reversed_ = av_sync(env, mouth[::-1], max_lag=5)
    assert synced.best_correlation > 0.25
    assert synced.best_correlation > max(shifted.best_correlation, reversed_.best_correlation) + 0.15
    with pytest.raises(InputError, match="silent"):  # d3.mp4 carries an all-zero audio track
        read_audio(shared_data / "videos" / "d3.mp4")

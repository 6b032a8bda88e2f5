"""Fitting: synthetic ground truth (pose, identity, expression, gaze), smoothing, bad input, files, real faces."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from thead.errors import InputError
from thead.face import topology as topo
from thead.facemodel import load_face_model
from thead.facemodel.expressions import MeshOperators
from thead.fitting import FitResult, fit_image, fit_sequence
from thead.fitting.smoothing import adaptive_smooth, cutoff_to_lambda, whittaker_smooth

SIZE = 256
NOISE_PX = 0.5


def identity_offset(model, rng: np.random.Generator, rms_cm: float = 0.5) -> np.ndarray:
    """A smooth random neutral-shape change [478, 3] (cm) outside the pose and expression directions."""
    n = topo.NUM_SURFACE_POINTS
    ops = MeshOperators(model.mean_shape)
    _, vecs = np.linalg.eigh(ops.laplacian.toarray())
    off = vecs[:, 1:20] @ rng.normal(size=(19, 3))
    mean = model.mean_shape[:n].astype(np.float64)
    centred = mean - mean.mean(0)
    pose_dirs = [np.eye(3)[k][None].repeat(n, 0) for k in range(3)]
    pose_dirs += [np.cross(np.eye(3)[k], centred) for k in range(3)] + [centred]
    span = np.stack([d.reshape(-1) for d in pose_dirs] + [f[:n].reshape(-1) for f in model.expression_fields]).T
    q, _ = np.linalg.qr(span)
    flat = off.reshape(-1)
    flat = flat - q @ (q.T @ flat)
    out = np.zeros((478, 3))
    out[:n] = flat.reshape(n, 3) * rms_cm / np.sqrt((flat ** 2).sum() / n)
    return out


def neutral_with_irises(model, offset: np.ndarray) -> np.ndarray:
    ident = (model.mean_shape + offset).astype(np.float32)
    mean = torch.as_tensor(model.mean_shape)
    shift = (model.iris_rest(torch.as_tensor(ident)) - model.iris_rest(mean)).numpy()
    ident[topo.RIGHT_IRIS] = model.mean_shape[topo.RIGHT_IRIS] + shift[0]
    ident[topo.LEFT_IRIS] = model.mean_shape[topo.LEFT_IRIS] + shift[1]
    return ident


def expression_tracks(model, frames: int, fps: float, rng: np.random.Generator) -> np.ndarray:
    """Smooth, bursty unit activations [T, E] within bounds; antagonist units never overlap."""
    t = np.arange(frames) / fps
    e = model.num_expressions
    freq = rng.uniform(0.2, 1.2, e)
    phase = rng.uniform(0, 2 * np.pi, e)
    expr = np.clip(1.3 * np.sin(2 * np.pi * freq * t[:, None] + phase), 0, 1) ** 1.5
    names = list(model.expression_names)
    for a, b in (("smile_left", "frown"), ("smile_right", "frown"), ("pucker", "lip_stretch"),
                 ("brow_raise_left", "brow_lower"), ("brow_raise_right", "brow_lower"), ("blink_left", "eye_wide"),
                 ("blink_right", "eye_wide")):
        ia, ib = names.index(a), names.index(b)
        expr[expr[:, ia] > 0, ib] = 0.0
    return np.clip(expr, model.expression_lower, model.expression_upper).astype(np.float32)


def synthetic_clip(frames: int = 150, fps: float = 25.0, seed: int = 0, noise: float = NOISE_PX) -> dict:
    """Landmarks of a known face in a 256 px crop, with ground truth."""
    model = load_face_model()
    rng = np.random.default_rng(seed)
    ident = neutral_with_irises(model, identity_offset(model, rng))
    expr = expression_tracks(model, frames, fps, rng)
    t = np.arange(frames) / fps
    pose = np.stack([np.radians(30) * np.sin(2 * np.pi * 0.3 * t), np.radians(15) * np.sin(2 * np.pi * 0.2 * t + 1),
                     np.radians(10) * np.sin(2 * np.pi * 0.25 * t + 2), 128 + 6 * np.sin(t), 132 + 4 * np.cos(t),
                     np.full(frames, 11.0)], 1).astype(np.float32)
    gaze = np.radians(np.stack([15 * np.sin(2 * np.pi * 0.4 * t), 10 * np.sin(2 * np.pi * 0.3 * t)] * 2, 1)
                      ).astype(np.float32)
    clean = model.posed(pose, ident, expr, None, gaze, np.full(frames, 5.0, np.float32))
    landmarks = clean + rng.normal(0, noise, clean.shape).astype(np.float32)
    return {"landmarks": landmarks, "clean": clean, "pose": pose, "expression": expr, "gaze": gaze,
            "identity": ident, "fps": fps}


@pytest.fixture(scope="module")
def clip() -> dict:
    return synthetic_clip()


def angle_error_deg(fit: FitResult, truth: dict) -> np.ndarray:
    return np.degrees(np.abs(fit.pose[:, :3] - truth["pose"][:, :3]))


# ------------------------------------------------------------------------------------------------ synthetic truth
@pytest.mark.parametrize("smooth", [False, True])
def test_synthetic_clip_is_recovered(clip, smooth):
    fit = fit_sequence(clip["landmarks"], None, SIZE, smooth=smooth, fps=clip["fps"], device="cpu")
    assert fit.pose.shape == (150, 6) and fit.expression.shape == (150, len(fit.expression_names))
    err = angle_error_deg(fit, clip)
    assert err.mean() < 0.3 and err.max() < 1.0, err.max(0)
    assert np.abs(fit.pose[:, 3:5] - clip["pose"][:, 3:5]).mean() < 0.5  # pixels
    assert np.abs(fit.pose[:, 5] / clip["pose"][:, 5] - 1).max() < 0.01
    per_unit = np.abs(fit.expression - clip["expression"]).mean(0)
    assert per_unit.max() < 0.05, dict(zip(fit.expression_names, per_unit.round(3)))
    assert np.degrees(np.abs(fit.gaze - clip["gaze"])).mean() < 2.0  # degrees (radians in memory)
    assert fit.fit_error.mean() < 1.0  # pixels at 256 x 256
    ident_err = np.linalg.norm(fit.identity - clip["identity"], axis=1)[: topo.NUM_SURFACE_POINTS].mean()
    assert ident_err < 0.05  # cm
    # The full model (with residual) gives the landmarks back.
    model = load_face_model()
    rebuilt = model.posed(fit.pose, fit.identity, fit.expression, fit.residual, fit.gaze, fit.depth_offset)
    target = clip["clean"] if smooth else clip["landmarks"]
    assert np.abs(rebuilt[..., :2] - target[..., :2]).mean() < (0.5 if smooth else 1e-3)


def test_smoothing_removes_jitter_without_lag():
    clean = synthetic_clip(frames=150, noise=0.0, seed=4)
    noisy = synthetic_clip(frames=150, noise=1.0, seed=4)
    raw = fit_sequence(noisy["landmarks"], None, SIZE, smooth=False, device="cpu")
    smooth = fit_sequence(noisy["landmarks"], None, SIZE, smooth=True, fps=25.0, device="cpu")
    truth = clean["pose"][:, :3]

    def jitter(a: np.ndarray) -> float:
        return float(np.abs(np.diff(a, 2, axis=0)).mean())

    assert jitter(smooth.pose[:, :3]) < 0.5 * jitter(raw.pose[:, :3])
    assert np.abs(smooth.pose[:, :3] - truth).mean() < np.abs(raw.pose[:, :3] - truth).mean()
    # No lag: the error is not correlated with the motion's velocity.
    velocity = np.gradient(truth[:, 0])
    lag_error = smooth.pose[:, 0] - truth[:, 0]
    assert abs(np.corrcoef(velocity, lag_error)[0, 1]) < 0.3


def test_adaptive_smoother_follows_fast_steps_and_flattens_noise():
    rng = np.random.default_rng(0)
    t = np.arange(300)
    signal = np.where(t < 150, 0.0, 1.0) + 0.5 * (t > 200) * np.sin(2 * np.pi * 3 * t / 25)  # step + 3 Hz burst
    noisy = signal + rng.normal(0, 0.01, len(t))
    lam = cutoff_to_lambda(4.0, 25.0)
    out = adaptive_smooth(noisy[:, None], lam, None, 0.005, 0.05)[:, 0]
    plain = whittaker_smooth(noisy, lam)
    assert np.abs(out - signal).max() < 0.1 < np.abs(plain - signal).max()
    assert np.abs(np.diff(out[:140], 2)).mean() < 0.3 * np.abs(np.diff(noisy[:140], 2)).mean()


def test_single_image_fit(clip):
    frame = clip["landmarks"][40]
    fit = fit_image(frame, SIZE, device="cpu")
    assert fit.num_frames == 1 and fit.extra["smoothing_strength"] == 0.0
    assert angle_error_deg(fit, {"pose": clip["pose"][40:41]}).max() < 1.0
    assert np.abs(fit.expression[0] - clip["expression"][40]).mean() < 0.05
    assert fit.fit_error[0] < 1.0


def test_outlier_landmarks_do_not_pull_the_pose(clip):
    rng = np.random.default_rng(1)
    corrupted = clip["landmarks"].copy()
    frames = rng.choice(150, 30, replace=False)
    for f in frames:
        pts = rng.choice(topo.NUM_SURFACE_POINTS, 25, replace=False)
        corrupted[f, pts, :2] += rng.normal(0, 25, (25, 2))
    fit = fit_sequence(corrupted, None, SIZE, smooth=False, device="cpu")
    assert angle_error_deg(fit, clip)[frames].mean() < 0.5
    assert np.abs(fit.expression - clip["expression"])[frames].mean() < 0.05


def test_invalid_frames_are_interpolated_and_flagged(clip):
    landmarks = clip["landmarks"].copy()
    valid = np.ones(150, bool)
    valid[[0, 1, 60, 61, 62, 149]] = False
    landmarks[~valid] = np.nan
    fit = fit_sequence(landmarks, valid, SIZE, smooth=True, device="cpu")
    assert fit.num_frames == 150 and np.array_equal(fit.valid, valid)
    assert np.isfinite(fit.pose).all() and np.isfinite(fit.expression).all() and np.isfinite(fit.residual).all()
    assert np.isnan(fit.fit_error[~valid]).all() and np.isfinite(fit.fit_error[valid]).all()
    assert angle_error_deg(fit, clip)[60:63].max() < 2.0  # filled between neighbours
    # NaN frames without a valid mask are simply invalid.
    assert not fit_sequence(landmarks, None, SIZE, device="cpu").valid[60]


def test_torch_input_and_strength(clip):
    lm = torch.as_tensor(clip["landmarks"][:30])
    fit = fit_sequence(lm, torch.ones(30, dtype=torch.bool), SIZE, smooth=3.0, device=torch.device("cpu"))
    assert fit.extra["smoothing_strength"] == 3.0 and fit.pose.dtype == np.float32


@pytest.mark.parametrize("landmarks, valid, match", [
    (np.full((4, 478, 3), np.nan, np.float32), None, "no valid frames"),
    (np.zeros((3, 478, 3), np.float32), np.zeros(3, bool), "no valid frames"),
    (np.zeros((3, 68, 2), np.float32), None, r"shape \[T, 478, 3\]"),
    (np.zeros((0, 478, 3), np.float32), None, "no frames"),
    ("text", None, "numeric|shape"),
])
def test_bad_input_raises_input_error(landmarks, valid, match):
    with pytest.raises(InputError, match=match):
        fit_sequence(landmarks, valid, SIZE, device="cpu")


def test_bad_input_messages(clip):
    lm = clip["landmarks"][:5].copy()
    lm[2, 7, 0] = np.nan
    with pytest.raises(InputError, match="marked valid hold NaN"):
        fit_sequence(lm, np.ones(5, bool), SIZE, device="cpu")
    with pytest.raises(InputError, match="5 frames"):
        fit_sequence(clip["landmarks"][:5], np.ones(4, bool), SIZE, device="cpu")
    with pytest.raises(InputError, match="normalised"):
        fit_sequence(clip["landmarks"][:5] / SIZE, None, SIZE, device="cpu")
    with pytest.raises(InputError, match="image_size"):
        fit_sequence(clip["landmarks"][:5], None, 0, device="cpu")
    with pytest.raises(InputError, match="at one point"):
        fit_sequence(np.full((2, 478, 3), 100.0, np.float32), None, SIZE, device="cpu")


def test_save_load_round_trip(clip, tmp_path):
    valid = np.ones(150, bool)
    valid[10] = False
    lm = clip["landmarks"].copy()
    lm[10] = np.nan
    fit = fit_sequence(lm, valid, SIZE, fps=25.0, device="cpu")
    folder = fit.save(tmp_path / "fit")
    assert sorted(p.name for p in folder.iterdir()) == ["fit.json", "fit.safetensors"]
    meta = json.loads((folder / "fit.json").read_text())
    assert meta["pose"]["names"] == ["yaw", "pitch", "roll", "tx", "ty", "scale"]
    assert meta["pose"]["units"][:3] == ["deg", "deg", "deg"] and meta["gaze"]["units"] == "deg"
    assert meta["expression"]["names"] == fit.expression_names and "orthographic" in meta["camera_model"]
    from safetensors.numpy import load_file

    raw = load_file(str(folder / "fit.safetensors"))
    assert np.allclose(raw["pose"][:, 0], np.degrees(fit.pose[:, 0]), atol=1e-4)  # degrees on disk
    assert np.allclose(raw["gaze"], np.degrees(fit.gaze), atol=1e-4)  # gaze too (radians in memory)
    back = FitResult.load(folder)
    for name in ("pose", "depth_offset", "expression", "gaze", "identity", "residual", "valid"):
        assert np.allclose(getattr(back, name), getattr(fit, name), atol=1e-5, equal_nan=True), name
    assert np.isnan(back.fit_error[10]) and back.expression_names == fit.expression_names
    assert back.fps == 25.0 and back.image_size == SIZE and not back.valid[10]
    with pytest.raises(InputError):
        FitResult.load(tmp_path / "nothing")


# ------------------------------------------------------------------------------------------------ real faces
def _ear(landmarks: np.ndarray, lids: np.ndarray, corners: np.ndarray) -> np.ndarray:
    """Eye opening / eye width per frame from raw landmarks."""
    return (np.linalg.norm(landmarks[:, lids[0], :2] - landmarks[:, lids[1], :2], axis=-1)
            / np.linalg.norm(landmarks[:, corners[0], :2] - landmarks[:, corners[1], :2], axis=-1))


def _iod(landmarks: np.ndarray) -> np.ndarray:
    return np.linalg.norm(landmarks[:, 33, :2] - landmarks[:, 263, :2], axis=-1)


@pytest.fixture(scope="module")
def real(shared_data, astronaut) -> dict:
    """MediaPipe landmarks of the shared photos and two videos (computed once per test run)."""
    from thead.face.landmarks import detect_landmarks
    from thead.io import probe_video, read_frames, read_image

    out = {}
    for name in ("happy.png", "people_0.png", "s0.jpg", "s1.jpg"):
        image = read_image(shared_data / "images" / name)
        lm, valid = detect_landmarks([image], static=True)
        assert valid.all(), name
        out[name] = (lm, max(image.shape[:2]))
    lm, _ = detect_landmarks([astronaut], static=True)
    out["astronaut"] = (lm, 512)
    for name in ("d3.mp4", "d0.mp4", "WDA_AlexandriaOcasioCortez_000.mp4"):
        path = shared_data / "videos" / name
        lm, valid = detect_landmarks(read_frames(path), static=False)
        out[name] = (lm, valid, probe_video(path).fps)
    return out


@pytest.mark.shared_data
def test_real_reprojection_error_is_small(real):
    ratios = []
    for name in ("happy.png", "people_0.png", "s0.jpg", "s1.jpg", "astronaut"):
        lm, size = real[name]
        fit = fit_image(lm[0], size, device="cpu")
        ratios.append(fit.fit_error[0] / _iod(lm)[0])
    for name in ("d3.mp4", "d0.mp4", "WDA_AlexandriaOcasioCortez_000.mp4"):
        lm, valid, fps = real[name]
        fit = fit_sequence(lm, valid, 512, fps=fps, device="cpu")
        ratios.append(np.nanmean(fit.fit_error[valid] / _iod(lm[valid])))
    ratios = np.array(ratios)
    assert ratios.mean() < 0.02 and ratios.max() < 0.03, ratios.round(4)


@pytest.mark.shared_data
def test_real_smile_reads_high_on_smiling_photos(real):
    def smile(name: str) -> float:
        lm, size = real[name]
        fit = fit_image(lm[0], size, device="cpu")
        return float(fit.expression_of("smile_left")[0] + fit.expression_of("smile_right")[0]) / 2

    neutral = max(smile("people_0.png"), smile("s0.jpg"))
    happy = smile("happy.png")
    assert neutral < 0.35
    assert happy > 0.4 and happy > neutral + 0.15
    assert smile("astronaut") > 0.8 and smile("s1.jpg") > 0.6  # broad, toothy smiles


@pytest.mark.shared_data
def test_real_jaw_open_follows_the_mouth(real):
    lm, valid, fps = real["d3.mp4"]
    fit = fit_sequence(lm, valid, 512, fps=fps, device="cpu")
    jaw = fit.expression_of("jaw_open")
    gap = np.linalg.norm(lm[:, 13, :2] - lm[:, 14, :2], axis=-1) / _iod(lm)
    assert np.corrcoef(jaw[valid], gap[valid])[0, 1] > 0.85
    wide = gap > 0.15  # the surprised, wide-open mouth at the end of the clip
    closed = gap < 0.01
    assert wide.sum() > 10 and closed.sum() > 10
    assert jaw[wide].mean() > 0.4 and jaw[closed].mean() < 0.05


@pytest.mark.shared_data
@pytest.mark.parametrize("video", ["d3.mp4", "WDA_AlexandriaOcasioCortez_000.mp4"])
def test_real_blink_peaks_on_closed_eyes(real, video):
    lm, valid, fps = real[video]
    fit = fit_sequence(lm, valid, 512, fps=fps, device="cpu")
    for side, lids, corners in (("left", topo.LEFT_EYE_LIDS, topo.LEFT_EYE_CORNERS),
                                ("right", topo.RIGHT_EYE_LIDS, topo.RIGHT_EYE_CORNERS)):
        opening = _ear(lm, lids, corners)
        blink = fit.expression_of(f"blink_{side}")
        closed = opening < 0.5 * np.median(opening)
        open_ = opening > 0.9 * np.median(opening)
        assert closed.sum() >= 5, side
        assert blink[closed].mean() > 0.5 and blink[open_].mean() < 0.2, side
        assert np.corrcoef(blink, -opening)[0, 1] > 0.8, side
        # The strongest blink frames are closed-eye frames.
        top = np.argsort(blink)[-5:]
        assert (opening[top] < 0.6 * np.median(opening)).all(), side


@pytest.mark.shared_data
def test_real_still_head_jitter_is_reduced(real):
    lm, valid, fps = real["d0.mp4"]  # a nearly still head
    model = load_face_model()
    fit = fit_sequence(lm, valid, 512, fps=fps, device="cpu")
    posed = model.posed(fit.pose, fit.identity, fit.expression, None, fit.gaze, fit.depth_offset)

    def jitter(points: np.ndarray) -> float:
        d2 = points[2:, :topo.NUM_SURFACE_POINTS, :2] - 2 * points[1:-1, :topo.NUM_SURFACE_POINTS, :2] \
            + points[:-2, :topo.NUM_SURFACE_POINTS, :2]
        return float(np.median(np.linalg.norm(d2, axis=-1)))

    assert jitter(posed) < 0.5 * jitter(lm)
    # Head-pose jitter in particular: the smoothed angles wobble far less than per-frame fits.
    raw_fit = fit_sequence(lm, valid, 512, smooth=False, device="cpu")
    wobble = np.degrees(np.abs(np.diff(fit.pose[:, :3], 2, axis=0))).mean()
    raw_wobble = np.degrees(np.abs(np.diff(raw_fit.pose[:, :3], 2, axis=0))).mean()
    assert wobble < 0.6 * raw_wobble and wobble < 0.1


def test_known_identity_is_kept(clip):
    fit = fit_sequence(clip["landmarks"][:40], None, SIZE, device="cpu", identity=clip["identity"])
    surface = slice(0, topo.NUM_SURFACE_POINTS)
    assert np.allclose(fit.identity[surface], clip["identity"][surface], atol=1e-5)
    assert angle_error_deg(fit, {"pose": clip["pose"][:40]}).max() < 1.0
    assert np.abs(fit.expression - clip["expression"][:40]).mean() < 0.05
    with pytest.raises(InputError, match="identity"):
        fit_sequence(clip["landmarks"][:5], None, SIZE, device="cpu", identity=np.zeros((68, 3)))


# ----------------------------------------------------------------------------------------------- spec cache
def _small_pca(seed: int):
    """A PCA model on the 478 mesh points (thead's frame, cm), random bases: cheap to make and to spec."""
    from thead.facemodel import PCAFaceModel

    rng = np.random.default_rng(seed)
    mean = load_face_model().mean_shape.astype(np.float64) + rng.normal(0.0, 0.1, (478, 3))
    ids = np.arange(478)
    return PCAFaceModel(mean, rng.normal(0.0, 0.1, (478, 3, 4)), rng.normal(0.0, 0.1, (478, 3, 3)), ids, ids,
                        landmark_scheme="mediapipe478", frame="y_down")


def test_spec_cache_never_gives_a_model_another_model_s_spec(monkeypatch):
    """Specs were cached by id(model): a model that got a freed model's id was fitted with the freed model's spec.
    Every object gets the same id() here, which makes that reuse certain."""
    from thead.fitting import fit

    monkeypatch.setattr(fit, "id", lambda obj: 1, raising=False)
    cpu = torch.device("cpu")
    a, b = _small_pca(0), _small_pca(1)
    spec_a, spec_b = fit.fitting_spec(a, cpu), fit.fitting_spec(b, cpu)
    assert spec_b is not spec_a
    assert torch.equal(spec_b.mean, torch.as_tensor(b.mean_shape))
    assert fit.fitting_spec(a, cpu) is spec_a  # still cached per model


def test_spec_cache_lets_go_of_freed_models():
    import gc
    import weakref

    from thead.fitting import fit

    model = _small_pca(2)
    fit.fitting_spec(model, torch.device("cpu"))
    alive, before = weakref.ref(model), len(fit._SPEC_CACHE)
    del model
    gc.collect()
    assert alive() is None and len(fit._SPEC_CACHE) == before - 1

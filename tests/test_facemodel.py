"""The 478-point face model: packaged mean shape, camera conventions, expression units, gaze, PCA models."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from thead.errors import InputError
from thead.face import topology as topo
from thead.facemodel import (EXPRESSION_NAMES, PCAFaceModel, euler_to_matrix, load_face_model, load_pca_model,
                             matrix_to_euler, project)
from thead.facemodel.expressions import MeshOperators
from thead.fitting import fit_sequence

REQUIRED_UNITS = ("jaw_open", "smile_left", "smile_right", "frown", "pucker", "lip_stretch", "lips_part",
                  "brow_raise_left", "brow_raise_right", "brow_lower", "blink_left", "blink_right", "eye_wide")


@pytest.fixture(scope="module")
def model():
    return load_face_model()


def field(model, name: str) -> np.ndarray:
    return model.expression_fields[model.expression_names.index(name)]


# ------------------------------------------------------------------------------------------------ mean shape
def test_mean_shape_is_a_symmetric_upright_face_in_centimetres(model):
    mean = model.mean_shape
    assert mean.shape == (478, 3) and np.isfinite(mean).all()
    assert np.linalg.norm(mean[33] - mean[263]) == pytest.approx(9.0, abs=1e-3)  # outer eye corners, cm
    assert mean[topo.FOREHEAD, 1] < mean[topo.NOSE_TIP, 1] < mean[topo.CHIN, 1]  # Y points down
    assert mean[topo.NOSE_TIP, 2] < mean[topo.FACE_OVAL, 2].min()  # nose nearest the camera (smallest Z)
    assert mean[topo.LEFT_EYE, 0].mean() > 0 > mean[topo.RIGHT_EYE, 0].mean()  # subject's left = +X
    mirror = model.mirror
    assert np.array_equal(mirror[mirror], np.arange(478))
    assert mirror[33] == 263 and mirror[61] == 291 and mirror[468] == 473 and mirror[topo.NOSE_TIP] == topo.NOSE_TIP
    mirrored = mean[mirror] * np.array([-1.0, 1.0, 1.0])
    assert np.abs(mirrored - mean).max() < 1e-4
    assert np.abs(mean[: topo.NUM_SURFACE_POINTS].mean(0)).max() < 1e-4  # origin at the surface centroid
    assert 14.0 < mean[topo.CHIN, 1] - mean[topo.FOREHEAD, 1] < 19.0  # plausible face height (cm)


def test_mean_face_file_is_package_data():
    path = Path(__file__).resolve().parents[1] / "thead" / "facemodel" / "data" / "mean_face.npz"
    with np.load(path) as data:
        assert {"mean_shape", "mirror", "sources"} <= set(data.files)
        assert len(data["sources"]) >= 3


# ------------------------------------------------------------------------------------------------ camera
def test_euler_round_trip_and_sign_conventions():
    angles = torch.tensor([[0.3, -0.2, 0.1], [-0.7, 0.4, -1.2], [0.0, 0.0, 0.0]])
    rot = euler_to_matrix(angles)
    assert torch.allclose(rot @ rot.transpose(-1, -2), torch.eye(3).expand(3, 3, 3), atol=1e-6)
    assert torch.allclose(matrix_to_euler(rot), angles, atol=1e-5)
    nose = torch.tensor([0.0, 0.0, -1.0])  # the nose points at the camera (-Z)
    assert (euler_to_matrix(torch.tensor([0.3, 0.0, 0.0])) @ nose)[0] > 0.25  # +yaw: nose to image +x
    assert (euler_to_matrix(torch.tensor([0.0, 0.3, 0.0])) @ nose)[1] < -0.25  # +pitch: nose up
    right = euler_to_matrix(torch.tensor([0.0, 0.0, 0.3])) @ torch.tensor([1.0, 0.0, 0.0])
    assert right[1] > 0.25  # +roll: +x axis turns towards +y (clockwise on screen)


def test_project_is_scaled_orthographic(model):
    pose = np.array([[0.2, -0.1, 0.05, 120.0, 130.0, 9.0]], np.float32)
    pts = project(model.mean_shape, pose, np.array([7.0], np.float32))
    rot = euler_to_matrix(torch.as_tensor(pose[:, :3]))[0].numpy()
    expected = 9.0 * model.mean_shape @ rot.T + np.array([120.0, 130.0, 7.0])
    assert isinstance(pts, np.ndarray) and pts.shape == (1, 478, 3)
    assert np.allclose(pts[0], expected, atol=1e-3)
    posed = model.posed(torch.as_tensor(pose))
    assert isinstance(posed, torch.Tensor) and posed.shape == (1, 478, 3)


# ------------------------------------------------------------------------------------------------ expressions
def test_expression_units_are_named_bounded_and_shaped(model):
    assert set(REQUIRED_UNITS) <= set(EXPRESSION_NAMES)
    assert model.expression_fields.shape == (len(EXPRESSION_NAMES), 478, 3)
    assert (model.expression_lower <= 0).all() and (model.expression_upper == 1).all()
    assert (model.expression_lower >= -0.3).all()
    assert np.abs(model.expression_fields[:, topo.NUM_SURFACE_POINTS:]).max() == 0  # irises never move


def test_jaw_open_lowers_the_chin_and_opens_the_mouth_only(model):
    jaw = field(model, "jaw_open")
    assert 1.5 < jaw[topo.CHIN, 1] < 3.0  # chin down by ~2 cm
    gap = (jaw[14, 1] - jaw[13, 1])
    assert gap > 1.5  # inner lips part
    upper_face = model.mean_shape[: topo.NUM_SURFACE_POINTS, 1] < model.mean_shape[topo.NOSE_TIP, 1]
    assert np.abs(jaw[: topo.NUM_SURFACE_POINTS][upper_face]).max() < 1e-6


def test_blink_closes_one_eye(model):
    for side, eye, other in (("left", topo.LEFT_EYE_LIDS, topo.RIGHT_EYE_LIDS),
                             ("right", topo.RIGHT_EYE_LIDS, topo.LEFT_EYE_LIDS)):
        shape = model.mean_shape + field(model, f"blink_{side}")
        before = np.linalg.norm(model.mean_shape[eye[0]] - model.mean_shape[eye[1]])
        after = np.linalg.norm(shape[eye[0]] - shape[eye[1]])
        assert after < 0.05 * before
        assert np.abs(field(model, f"blink_{side}")[other]).max() < 1e-6


def test_smile_raises_its_own_corner_and_units_mirror(model):
    smile_left, smile_right = field(model, "smile_left"), field(model, "smile_right")
    assert smile_left[291, 1] < -0.6 and smile_left[291, 0] > 0.4  # subject's left corner up and out
    assert np.abs(smile_left[61]).max() < 1e-6
    mirrored = smile_left[model.mirror] * np.array([-1.0, 1.0, 1.0])
    assert np.allclose(mirrored, smile_right, atol=1e-5)
    brow_left, brow_right = field(model, "brow_raise_left"), field(model, "brow_raise_right")
    assert brow_left[topo.LEFT_BROW, 1].max() < -0.5 and np.abs(brow_left[topo.RIGHT_BROW]).max() < 1e-6
    assert np.allclose(brow_left[model.mirror] * np.array([-1.0, 1.0, 1.0]), brow_right, atol=1e-5)
    frown = field(model, "frown")
    assert frown[61, 1] > 0.3 and frown[291, 1] > 0.3  # corners down
    pucker = field(model, "pucker")
    assert pucker[0, 2] < -0.4 and pucker[291, 0] < -0.3 < 0.3 < pucker[61, 0]  # forward and narrower


def test_expression_fields_are_smooth(model):
    ops = MeshOperators(model.mean_shape)
    for name in EXPRESSION_NAMES:
        f = field(model, name)[: topo.NUM_SURFACE_POINTS]
        rough = np.abs(ops.laplacian @ f).max() / ops.degree.max()
        assert rough < 0.5 * np.abs(f).max() + 1e-9, name


# ------------------------------------------------------------------------------------------------ shape, gaze
def test_shape_adds_identity_expression_residual(model):
    expr = np.zeros((2, model.num_expressions), np.float32)
    expr[1, EXPRESSION_NAMES.index("jaw_open")] = 0.5
    residual = np.zeros((2, 478, 3), np.float32)
    residual[:, 10] = 0.3
    out = model.shape(model.mean_shape, expr, residual)
    assert isinstance(out, np.ndarray) and out.shape == (2, 478, 3)
    assert np.allclose(out[0, 10], model.mean_shape[10] + 0.3, atol=1e-5)
    assert np.allclose(out[1] - out[0], 0.5 * field(model, "jaw_open"), atol=1e-5)
    out_t = model.shape(torch.as_tensor(model.mean_shape), torch.as_tensor(expr))
    assert isinstance(out_t, torch.Tensor) and torch.allclose(out_t, torch.as_tensor(out - residual), atol=1e-5)


def test_gaze_turns_the_irises_and_reads_back(model):
    gaze = np.radians(np.array([[20.0, 0.0, 20.0, 0.0], [0.0, 15.0, -10.0, -5.0]], np.float32))  # radians in memory
    verts = model.shape(model.mean_shape, None, None, gaze)
    assert verts.shape == (2, 478, 3)
    assert np.allclose(verts[:, : topo.NUM_SURFACE_POINTS], model.mean_shape[: topo.NUM_SURFACE_POINTS])
    assert verts[0, 468, 0] > model.mean_shape[468, 0] + 0.3  # looks towards +X
    assert verts[1, 468, 1] < model.mean_shape[468, 1] - 0.2  # looks up
    read = model.gaze_from_iris(torch.as_tensor(verts[:, [468, 473]]), torch.as_tensor(model.mean_shape))
    assert np.allclose(np.degrees(read.numpy()), np.degrees(gaze), atol=0.05)
    at_rest = model.shape(model.mean_shape, None, None, np.zeros((1, 4), np.float32))
    assert np.allclose(at_rest[0], model.mean_shape, atol=1e-5)


# ------------------------------------------------------------------------------------------------ PCA models
def _synthetic_pca(tmp_path: Path, scheme: str, rng: np.random.Generator) -> tuple[Path, np.ndarray]:
    """A small PCA model on the 478 mesh points, in millimetres and Basel's y-up frame."""
    mesh = load_face_model()
    mean = mesh.mean_shape.astype(np.float64) * np.array([1.0, -1.0, -1.0]) * 10.0
    ops = MeshOperators(mesh.mean_shape)
    _, vecs = np.linalg.eigh(ops.laplacian.toarray())

    def basis(k: int, amp: float) -> np.ndarray:
        out = np.zeros((478, 3, k))
        out[:468] = np.einsum("nm,mck->nck", vecs[:, 1:31], rng.normal(size=(30, 3, k))) * amp
        return out

    if scheme == "ibug68":
        vertices, ids = topo.MP_TO_IBUG68, np.arange(68)
    else:
        vertices, ids = np.arange(468), np.arange(468)
    path = tmp_path / f"pca_{scheme}.npz"
    np.savez(path, mean=mean, id_basis=basis(8, 3.0), exp_basis=basis(6, 2.0), landmark_vertices=vertices,
             landmark_ids=ids, landmark_scheme=np.array([scheme]))
    return path, mean


@pytest.mark.parametrize("scheme", ["ibug68", "mediapipe478"])
def test_pca_model_fit_recovers_coefficients(tmp_path, scheme):
    rng = np.random.default_rng(3)
    path, _ = _synthetic_pca(tmp_path, scheme, rng)
    pca = load_pca_model(path)
    assert isinstance(pca, PCAFaceModel) and pca.landmark_scheme == scheme
    assert pca.num_identity == 8 and pca.num_expressions == 6 and pca.expression_names[0] == "exp_00"
    frames = 50
    ident = rng.normal(size=8).astype(np.float32)
    expr = rng.normal(size=(frames, 6)).astype(np.float32)
    t = np.arange(frames) / 25.0
    pose = np.stack([0.4 * np.sin(t), 0.2 * np.sin(2 * t), 0.1 * np.cos(t), 128 + 3 * t, np.full(frames, 130.0),
                     np.full(frames, 1.1)], 1).astype(np.float32)
    verts = pca.shape(ident, expr)
    assert verts.shape == (frames, 478, 3)
    landmarks = pca.project(verts, pose) + rng.normal(0, 0.3, (frames, 478, 3)).astype(np.float32)
    res = fit_sequence(landmarks, None, 256, smooth=False, model=pca, device="cpu")
    assert np.degrees(np.abs(res.pose[:, :3] - pose[:, :3])).max() < 0.5
    assert np.abs(res.pose[:, 5] - 1.1).max() < 0.01
    assert np.abs(res.expression - expr).mean() < 0.08
    assert np.abs(res.identity - ident).mean() < 0.05
    assert res.identity.shape == (8,) and res.residual.shape == (frames, len(pca.landmark_ids), 3)
    assert res.fit_error.mean() < 0.6
    assert res.model == f"pca:{path.name}"
    fixed = fit_sequence(landmarks, None, 256, smooth=False, model=pca, device="cpu", identity=ident)
    assert np.allclose(fixed.identity, ident) and np.abs(fixed.expression - expr).mean() < 0.08


def test_pca_model_file_errors(tmp_path):
    with pytest.raises(InputError, match="not found"):
        load_pca_model(tmp_path / "missing.npz")
    bad = tmp_path / "bad.npz"
    np.savez(bad, mean=np.zeros((10, 3)), id_basis=np.zeros((10, 3, 2)))
    with pytest.raises(InputError, match="lacks"):
        load_pca_model(bad)
    wrong = tmp_path / "wrong.npz"
    np.savez(wrong, mean=np.zeros((10, 3)), id_basis=np.zeros((10, 3, 2)), exp_basis=np.zeros((9, 3, 2)),
             landmark_vertices=np.arange(5), landmark_ids=np.arange(5))
    with pytest.raises(InputError, match="exp_basis"):
        load_pca_model(wrong)
    junk = tmp_path / "junk.npz"
    junk.write_text(json.dumps({"not": "npz"}))
    with pytest.raises(InputError):
        load_pca_model(junk)

"""thead.geometry: Affine2D (one pixel convention, converted at OpenCV), boxes, rotations; crops and landmarks agree
to a small fraction of a pixel."""

from __future__ import annotations

from types import SimpleNamespace

import cv2
import numpy as np
import pytest
import torch

from thead.face.crop import crop_frame, picture_mask
from thead.geometry import Affine2D, box_iou, landmark_box
from thead.geometry.rotation import apply_pose, euler_to_matrix, matrix_to_euler, rotation_power


def blob_frame(height: int, width: int, centre: np.ndarray, sigma: float = 3.0) -> np.ndarray:
    """uint8 RGB frame, black but for a Gaussian spot whose centre is at the continuous position ``centre``."""
    ys, xs = np.mgrid[0:height, 0:width] + 0.5  # pixel centres
    spot = np.exp(-((xs - centre[0]) ** 2 + (ys - centre[1]) ** 2) / (2 * sigma ** 2))
    return np.repeat(np.round(255 * spot).astype(np.uint8)[..., None], 3, axis=2)


def spot_centre(image: np.ndarray) -> np.ndarray:
    """Intensity-weighted centroid (x, y) of an image's first channel, continuous pixels."""
    g = image[..., 0].astype(np.float64)
    ys, xs = np.mgrid[0:g.shape[0], 0:g.shape[1]] + 0.5
    return np.array([(g * xs).sum(), (g * ys).sum()]) / g.sum()


# ------------------------------------------------------------------------------------------------ Affine2D
def test_apply_compose_invert_and_depth():
    a = Affine2D.similarity(2.0, np.pi / 2, (10.0, 20.0))
    b = Affine2D([[1.0, 0.0, 3.0], [0.0, 1.0, -4.0]])
    p = np.array([[1.0, 2.0, 5.0], [-3.0, 0.5, -1.0]])
    # Rotating (1, 2) by +90 degrees (clockwise on screen, y down) gives (-2, 1); times 2 plus the shift.
    assert np.allclose(a.apply(p), [[6.0, 22.0, 10.0], [9.0, 14.0, -2.0]])
    assert np.allclose(a(p), a.apply(p))
    assert np.allclose((a @ b).apply(p), a.apply(b.apply(p)))  # b first, then a
    assert np.allclose(a.compose(b).matrix, (a @ b).matrix)
    assert np.allclose(a.inverse.apply(a.apply(p)), p)
    assert np.allclose(a.invert().matrix, a.inverse.matrix)
    assert float(a.scale) == pytest.approx(2.0)
    assert np.allclose(a.homogeneous @ np.linalg.inv(a.homogeneous), np.eye(3))
    assert np.allclose(Affine2D(a.homogeneous).matrix, a.matrix)
    assert np.allclose(a.linear, [[0.0, -2.0], [2.0, 0.0]]) and np.allclose(a.translation, [10.0, 20.0])
    assert np.allclose(Affine2D.identity().apply(p), p)
    with pytest.raises(ValueError, match=r"\(2, 3\)"):
        Affine2D(np.eye(2))


def test_batches_index_and_broadcast():
    maps = Affine2D.similarity(np.array([1.0, 2.0, 0.5]), np.array([0.0, 0.3, -0.2]), np.array([[0, 0], [5, 1],
                                                                                                 [-2, 3.0]]))
    assert maps.batch_shape == (3,) and len(maps) == 3 and maps.matrix.shape == (3, 2, 3)
    pts = np.random.default_rng(0).uniform(0, 100, (3, 7, 3)).astype(np.float32)
    out = maps.apply(pts)
    assert out.dtype == np.float32 and out.shape == (3, 7, 3)
    for t, m in enumerate(maps):  # frame t by map t
        assert np.allclose(out[t], m.apply(pts[t]), atol=1e-4)
        assert np.allclose(maps[t].matrix, m.matrix)
    assert maps[1:].batch_shape == (2,)
    assert maps.apply(pts[0]).shape == (3, 7, 3)  # one point set through every map
    assert np.allclose(maps.scale, [1.0, 2.0, 0.5])
    with pytest.raises(TypeError):
        Affine2D.identity()[0]


def test_numpy_and_torch_agree():
    m = Affine2D.similarity(np.array([1.3, 0.7]), np.array([0.2, -0.4]), np.array([[3.0, -2.0], [10.0, 4.0]]))
    pts = np.random.default_rng(1).uniform(0, 50, (2, 5, 3))
    t = m.to_torch(dtype=torch.float64)
    assert t.is_torch and not m.is_torch
    got = t.apply(torch.as_tensor(pts))
    assert isinstance(got, torch.Tensor) and torch.allclose(got, torch.as_tensor(m.apply(pts)))
    assert isinstance(m.apply(torch.as_tensor(pts)), torch.Tensor)  # numpy maps on tensors give tensors
    assert np.allclose(t.inverse.matrix.numpy(), m.inverse.matrix)
    assert np.allclose((t @ m).matrix.numpy(), (m @ m).matrix)
    assert np.allclose(t.to_opencv(), m.to_opencv()) and isinstance(t.to_opencv(), np.ndarray)
    assert np.allclose(t.scale.numpy(), m.scale)


def test_opencv_conversion_matches_opencv_pixel_centres():
    m = Affine2D.similarity(1.7, 0.4, (12.25, -3.5))
    assert np.allclose(Affine2D.from_opencv(m.to_opencv()).matrix, m.matrix)
    # A point at OpenCV's integer pixel centre (i, j) is the package's (i + 0.5, j + 0.5), on both sides.
    p_cv = np.array([[3.0, 7.0], [40.0, 2.0]])
    q_cv = cv2.transform(p_cv[None], m.to_opencv())[0]
    assert np.allclose(q_cv + 0.5, m.apply(p_cv + 0.5))
    # getAffineTransform on integer-centred points gives an OpenCV matrix; from_opencv brings it home.
    src = np.float32([[0, 0], [10, 0], [0, 10]])
    dst = np.float32(cv2.transform(src[None], m.to_opencv())[0])
    assert np.allclose(Affine2D.from_opencv(cv2.getAffineTransform(src, dst)).matrix, m.matrix, atol=1e-4)
    # A translation is the same in both conventions; a scale about the origin is not.
    shift = Affine2D([[1.0, 0.0, 4.0], [0.0, 1.0, -2.0]])
    assert np.allclose(shift.to_opencv(), shift.matrix)
    assert np.allclose(Affine2D.similarity(2.0).to_opencv()[:, 2], [0.5, 0.5])


# ------------------------------------------------------------------------------------------------ crops
@pytest.mark.parametrize("scale", [0.3, 0.6, 2.0])
@pytest.mark.parametrize("angle", [0.0, 0.3])
def test_crop_pixels_agree_with_mapped_points_to_a_twentieth_of_a_pixel(scale, angle):
    """Regression (issue 11): crops were cut with the package's matrices handed to OpenCV as they were, so the
    picture sat 0.5 (1 - s) px off the mapped landmarks (+0.2 px at s = 0.6, -0.5 px at s = 2, more rotated)."""
    spot = np.array([203.37, 151.81])
    frame = blob_frame(320, 400, spot, sigma=4.0)
    at = Affine2D.similarity(scale, angle).apply(spot[None])[0]
    to_crop = Affine2D.similarity(scale, angle, 64.0 - at + np.array([0.23, -0.41]))  # off the crop's centre
    crop = crop_frame(frame, to_crop.matrix, 128)
    err = spot_centre(crop) - to_crop.apply(spot[None])[0]
    assert np.abs(err).max() < 0.05, err
    # With a margin the crop sits at [margin:margin + size] of a larger picture, still in agreement.
    wide = crop_frame(frame, to_crop, 128, margin=16)
    assert np.abs(spot_centre(wide) - 16.0 - to_crop.apply(spot[None])[0]).max() < 0.05


def test_opencv_and_torch_crops_agree():
    """crop_frame (OpenCV) and crop_with_affine (grid_sample) cut the same crop from the same matrix."""
    from thead.render import crop_with_affine, frames_to_tensor, tensor_to_frames

    rng = np.random.default_rng(2)
    frame = cv2.GaussianBlur(rng.integers(0, 256, (200, 240, 3), dtype=np.uint8), (0, 0), 2.0)
    to_crop = Affine2D.similarity(1.4, 0.25, (-60.0, -30.0))
    ours = crop_frame(frame, to_crop.matrix, 96).astype(np.float64)
    theirs = tensor_to_frames(crop_with_affine(frames_to_tensor(frame[None]), to_crop.to_torch().matrix[None], (96, 96)))[0]
    inside = picture_mask(frame.shape, to_crop.matrix, 96) > 0.999
    inside[:2], inside[-2:], inside[:, :2], inside[:, -2:] = False, False, False, False
    assert inside.mean() > 0.5
    # Only OpenCV's 1/32 px interpolation steps and rounding differ (0.04); with the old offset 0.75.
    assert np.abs(ours - theirs)[inside].mean() < 0.15


def test_mediapipe_region_points_come_back_to_the_frame_exactly():
    """Regression (issue 11): landmarks found in the resampled face region were mapped back without the
    half-pixel conversion (0.5 (1 - 1/s) px off: -0.5 px for a 512 px region). A stand-in mesh reports the spot
    it sees in the region image, as MediaPipe reports normalised points; it must come back where the spot is."""
    from thead.face.landmarks import MediaPipeLandmarker

    class SpotMesh:
        def process(self, image: np.ndarray):
            x, y = spot_centre(image) / image.shape[1]
            return SimpleNamespace(multi_face_landmarks=[SimpleNamespace(landmark=[SimpleNamespace(x=x, y=y, z=0.1)])])

    spot = np.array([301.3, 260.7])
    frame = blob_frame(600, 640, spot, sigma=7.0)
    finder = MediaPipeLandmarker.__new__(MediaPipeLandmarker)  # only the region mapping; no MediaPipe models
    for side in (512.0, 128.0):
        (found,) = finder._mesh_in_roi(SpotMesh(), frame, (spot[0] - 0.4 * side, spot[1] - 0.55 * side, side))
        assert np.abs(found[0, :2] - spot).max() < 0.05, (side, found[0])
        assert found[0, 2] == pytest.approx(0.1 * side, rel=1e-5)  # depth in frame pixels


def test_arcface_chip_of_points_on_the_template_is_the_frame_itself():
    """Five points exactly on the (112 px) template, in the package's convention: the chip is the frame's corner."""
    from thead.metrics.identity import ARCFACE_TEMPLATE_112, align_arcface

    frame = cv2.GaussianBlur(np.random.default_rng(3).integers(0, 256, (150, 150, 3), dtype=np.uint8), (0, 0), 1.5)
    chip = align_arcface(frame, ARCFACE_TEMPLATE_112 + 0.5, 112)
    assert np.abs(chip.astype(int) - frame[:112, :112]).max() <= 1


# ------------------------------------------------------------------------------------------------ boxes
def test_landmark_box_and_iou():
    pts = np.array([[[1.0, 2.0, 9.0], [4.0, -1.0, 0.0], [2.0, 5.0, 1.0]]])
    assert np.allclose(landmark_box(pts), [[1.0, -1.0, 4.0, 5.0]])
    a, b = np.array([0.0, 0.0, 2.0, 2.0]), np.array([1.0, 0.0, 3.0, 2.0])
    assert box_iou(a, b) == pytest.approx(1 / 3)
    assert box_iou(a, np.array([5.0, 5.0, 6.0, 6.0])) == 0.0


# ------------------------------------------------------------------------------------------------ rotations
def test_rotations_numpy_and_torch_and_fractional_turns():
    angles = np.array([[0.3, -0.2, 0.1], [-0.7, 0.4, -1.2]])
    rot = euler_to_matrix(angles)
    assert isinstance(rot, np.ndarray) and rot.dtype == np.float64 and rot.shape == (2, 3, 3)
    assert np.allclose(rot, euler_to_matrix(torch.as_tensor(angles)).numpy())
    assert np.allclose(matrix_to_euler(rot), angles)
    half = rotation_power(rot, 0.5)
    assert np.allclose(half @ half, rot)
    assert rotation_power(rot, 1.0) is rot
    assert np.allclose(rotation_power(rot, 0.0), np.eye(3))
    pose = torch.tensor([[0.3, -0.2, 0.1, 50.0, 60.0, 4.0]], dtype=torch.float64)
    pts = torch.tensor([[[1.0, 2.0, 3.0]]], dtype=torch.float64)
    expected = 4.0 * pts[0] @ torch.as_tensor(rot[0]).T + torch.tensor([50.0, 60.0, 7.0], dtype=torch.float64)
    assert torch.allclose(apply_pose(pts, pose, torch.tensor([7.0], dtype=torch.float64))[0], expected)

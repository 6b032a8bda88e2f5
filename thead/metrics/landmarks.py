"""Landmark metrics: AKD (all 68 points) and LMD (mouth points), in pixels at the evaluation resolution.

Landmarks are pixel coordinates ``(x, y)`` (a third coordinate, if present, is ignored), either 478-point
MediaPipe face-mesh arrays ``(N, 478, 2|3)`` (mapped to the 68 iBUG points with ``MP_TO_IBUG68``) or 68-point
iBUG/dlib arrays ``(N, 68, 2|3)``. A frame whose landmarks could not be found should hold NaN; its metric is
NaN (count it with ``thead.metrics.aggregate``), never silently dropped.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from thead.face.topology import IBUG68_MOUTH, MP_TO_IBUG68, NUM_POINTS
from thead.metrics._inputs import as_float_array, check_same_length

#: Default evaluation resolution (square side, pixels) of AKD/LMD, as in the FOMM/PECHead protocol.
EVAL_SIZE = 256


def to_ibug68(landmarks: np.ndarray) -> np.ndarray:
    """68-point iBUG landmarks ``(..., 68, 2)`` from 478-point MediaPipe or 68-point arrays (x, y only)."""
    pts = as_float_array(landmarks, "landmarks")
    if pts.ndim < 2 or pts.shape[-1] not in (2, 3):
        raise ValueError(f"landmarks must be (..., K, 2|3), got shape {pts.shape}")
    if pts.shape[-2] == NUM_POINTS:
        pts = pts[..., MP_TO_IBUG68, :]
    elif pts.shape[-2] != 68:
        raise ValueError(f"landmarks must have 478 (MediaPipe) or 68 (iBUG) points, got {pts.shape[-2]}")
    return pts[..., :2]


def rescale_landmarks(landmarks: np.ndarray, image_size: Sequence[int] | int | None,
                      eval_size: Sequence[int] | int | None = EVAL_SIZE) -> np.ndarray:
    """Pixel coordinates measured on ``image_size`` frames rescaled to ``eval_size`` frames.

    Sizes are ``(height, width)`` or one int for a square. ``image_size=None`` means the landmarks are already at
    the evaluation resolution (returned unchanged). ``(..., K, 2)`` in, ``(..., K, 2)`` out.
    """
    pts = np.array(landmarks, dtype=np.float64)
    if image_size is None or eval_size is None:
        return pts
    ih, iw = (image_size, image_size) if isinstance(image_size, (int, np.integer)) else image_size
    eh, ew = (eval_size, eval_size) if isinstance(eval_size, (int, np.integer)) else eval_size
    pts[..., 0] *= ew / float(iw)
    pts[..., 1] *= eh / float(ih)
    return pts


def _per_frame(pts: np.ndarray) -> np.ndarray:
    return pts if pts.ndim == 3 else pts[None]


def keypoint_distance(generated: np.ndarray, reference: np.ndarray, points: np.ndarray | None = None,
                      image_size: Sequence[int] | int | None = None,
                      eval_size: Sequence[int] | int | None = EVAL_SIZE, center: bool = False) -> np.ndarray:
    """Mean Euclidean distance between corresponding landmarks, per frame, in pixels at ``eval_size``.

    ``generated``/``reference``: ``(N, 478|68, 2|3)`` or one frame ``(478|68, 2|3)``. ``points``: indices into
    the 68 iBUG points to use (default all). ``center``: subtract each frame's centroid of the used points first
    (removes a global shift; off by default). Returns ``(N,)`` float64, NaN where a frame has NaN landmarks.
    """
    g = _per_frame(rescale_landmarks(to_ibug68(generated), image_size, eval_size))
    r = _per_frame(rescale_landmarks(to_ibug68(reference), image_size, eval_size))
    check_same_length("landmark distance", len(g), len(r))
    if points is not None:
        g, r = g[:, points], r[:, points]
    if center:
        g = g - g.mean(axis=1, keepdims=True)
        r = r - r.mean(axis=1, keepdims=True)
    return np.linalg.norm(g - r, axis=-1).mean(axis=1)


def akd(generated: np.ndarray, reference: np.ndarray, image_size: Sequence[int] | int | None = None,
        eval_size: Sequence[int] | int | None = EVAL_SIZE) -> np.ndarray:
    """Average keypoint distance per frame: mean Euclidean distance of the 68 iBUG landmarks, in pixels.

    ``AKD = mean_{k=1..68} ||p_k^gen - p_k^ref||_2`` with both sets detected by the same landmark detector on the
    generated and the reference (driving) frame, measured at the evaluation resolution ``eval_size`` (default
    256x256; give ``image_size`` when the landmarks were found on frames of another size). 0 for identical
    landmarks; a uniform shift by (3, 4) px gives 5. Used by PECHead (after FOMM) for same-identity
    reconstruction. Returns ``(N,)`` float64 pixels; NaN where a frame has NaN landmarks.
    """
    return keypoint_distance(generated, reference, None, image_size, eval_size)


def lmd(generated: np.ndarray, reference: np.ndarray, image_size: Sequence[int] | int | None = None,
        eval_size: Sequence[int] | int | None = EVAL_SIZE, center: bool = False) -> np.ndarray:
    """Landmark distance on the mouth: mean Euclidean distance of iBUG points 48-67 (outer + inner lip), in pixels.

    ``LMD = mean_{k=48..67} ||p_k^gen - p_k^ref||_2`` at the evaluation resolution (default 256x256). With
    ``center=True`` each frame's mouth centroid is subtracted first, so only mouth shape counts, not head
    position. Used for lip-sync accuracy by the rhythmic-head-motion paper (Chen et al. 2020, after Chen et al.
    2018). Returns ``(N,)`` float64 pixels; NaN where a frame has NaN landmarks.
    """
    return keypoint_distance(generated, reference, IBUG68_MOUTH, image_size, eval_size, center)

"""Axis-aligned boxes ``(x0, y0, x1, y1)`` in pixels (continuous convention, see ``thead.geometry.affine``)."""

from __future__ import annotations

import numpy as np

__all__ = ["box_iou", "landmark_box"]


def landmark_box(points: np.ndarray) -> np.ndarray:
    """Bounding box of landmarks.

    Parameters
    ----------
    points : ndarray, shape (..., N, 2+)
        Pixels (x, y[, ...]); further columns are ignored.

    Returns
    -------
    ndarray, shape (..., 4)
        ``(x0, y0, x1, y1)`` pixels: the smallest and largest x and y.
    """
    xy = points[..., :2]
    return np.concatenate([xy.min(axis=-2), xy.max(axis=-2)], axis=-1)


def box_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Intersection over union of boxes.

    Parameters
    ----------
    a, b : ndarray, shape (..., 4)
        ``(x0, y0, x1, y1)`` pixels; the leading shapes broadcast.

    Returns
    -------
    ndarray, shape (...)
        Intersection area over union area, in [0, 1] (0 for disjoint or empty boxes).
    """
    x0 = np.maximum(a[..., 0], b[..., 0])
    y0 = np.maximum(a[..., 1], b[..., 1])
    x1 = np.minimum(a[..., 2], b[..., 2])
    y1 = np.minimum(a[..., 3], b[..., 3])
    inter = np.clip(x1 - x0, 0, None) * np.clip(y1 - y0, 0, None)
    area_a = (a[..., 2] - a[..., 0]) * (a[..., 3] - a[..., 1])
    area_b = (b[..., 2] - b[..., 0]) * (b[..., 3] - b[..., 1])
    return inter / np.maximum(area_a + area_b - inter, 1e-9)

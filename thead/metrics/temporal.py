"""Temporal-stability metrics: landmark jitter and luminance flicker.

Talking-head generators often look fine per frame but shake or flicker over time (PECHead attributes
flicker to landmarks that are inconsistent between adjacent frames). These measures compare a generated video
with the real reference: a generated video should be no more jittery / flickery than the real one.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable, Sequence

import numpy as np
from scipy.ndimage import gaussian_filter1d

from thead.metrics._inputs import FrameInput, iter_uint8_frames
from thead.metrics.landmarks import EVAL_SIZE, rescale_landmarks, to_ibug68

# ITU-R BT.601 luma weights (R, G, B).
_LUMA = np.array([0.299, 0.587, 0.114])


def _smooth_odd_reflect(x: np.ndarray, sigma: float) -> np.ndarray:
    """Gaussian smoothing along axis 0 with point-symmetric (odd) edge extension, so linear motion is kept."""
    if len(x) < 2:
        return x.copy()
    r = min(int(4.0 * sigma + 0.5), len(x) - 1)
    head = 2.0 * x[:1] - x[r:0:-1]
    tail = 2.0 * x[-1:] - x[-2:-r - 2:-1]
    padded = np.concatenate([head, x, tail])
    return gaussian_filter1d(padded, sigma, axis=0, mode="nearest")[r:r + len(x)]


def landmark_jitter(landmarks: np.ndarray, method: str = "acceleration", sigma: float = 2.0,
                    image_size: Sequence[int] | int | None = None,
                    eval_size: Sequence[int] | int | None = EVAL_SIZE) -> np.ndarray:
    """Frame-to-frame landmark jitter, in pixels at the evaluation resolution.

    ``landmarks``: ``(T, 478|68, 2|3)`` (478-point mesh mapped to 68 iBUG points; x, y used). Methods:

    * ``"acceleration"`` (default): ``mean_k ||p_k(t+1) - 2 p_k(t) + p_k(t-1)||_2`` for t = 1..T-2, the
      second temporal difference. Smooth motion (constant velocity) scores 0; jitter of amplitude a around a
      still position scores up to about 4a for alternating offsets. Returns ``(T-2,)``.
    * ``"highpass"``: ``mean_k ||p_k(t) - G_sigma * p_k(t)||_2``, the residual after Gaussian temporal smoothing
      (``sigma`` frames; edges extended point-symmetrically so steady motion scores 0 there too). Returns ``(T,)``.

    Frames with NaN landmarks give NaN at the positions that use them. Compare generated vs reference values
    with ``thead.metrics.aggregate``.
    """
    pts = rescale_landmarks(to_ibug68(landmarks), image_size, eval_size)
    if pts.ndim != 3:
        raise ValueError(f"landmark_jitter: expected (T, K, 2|3) landmarks, got shape {pts.shape}")
    if method == "acceleration":
        if len(pts) < 3:
            raise ValueError("landmark_jitter: 'acceleration' needs at least 3 frames")
        acc = pts[2:] - 2.0 * pts[1:-1] + pts[:-2]
        return np.linalg.norm(acc, axis=-1).mean(axis=1)
    if method == "highpass":
        finite = np.isfinite(pts).all(axis=(1, 2))
        smooth = np.full_like(pts, np.nan)
        start = None
        for t in range(len(pts) + 1):  # smooth each run of measured frames separately: NaN frames do not spread
            ok = t < len(pts) and finite[t]
            if ok and start is None:
                start = t
            elif not ok and start is not None:
                smooth[start:t] = _smooth_odd_reflect(pts[start:t], sigma)
                start = None
        return np.linalg.norm(pts - smooth, axis=-1).mean(axis=1)
    raise ValueError(f"landmark_jitter: method must be 'acceleration' or 'highpass', got {method!r}")


def _region_mask(region: np.ndarray | tuple[int, int, int, int] | None, height: int, width: int) -> np.ndarray | None:
    if region is None:
        return None
    if isinstance(region, np.ndarray) and region.dtype == bool:
        if region.shape != (height, width):
            raise ValueError(f"flicker: region mask {region.shape} does not match frames {(height, width)}")
        if not region.any():
            raise ValueError("flicker: region mask is empty")
        return region
    x0, y0, x1, y1 = (int(round(v)) for v in region)
    x0, y0, x1, y1 = max(0, x0), max(0, y0), min(width, x1), min(height, y1)
    if x1 <= x0 or y1 <= y0:
        raise ValueError(f"flicker: region box {tuple(region)} is empty inside {width}x{height} frames")
    mask = np.zeros((height, width), dtype=bool)
    mask[y0:y1, x0:x1] = True
    return mask


def region_luminance(frames: FrameInput | Iterable[np.ndarray],
                     region: np.ndarray | tuple[int, int, int, int] | None = None) -> np.ndarray:
    """Mean BT.601 luma of a region in each frame, in [0, 1].

    ``frames``: anything ``as_nchw`` accepts, or an iterator of ``uint8 (H, W, 3)`` frames (e.g.
    ``thead.io.iter_frames``: the video is streamed, never held whole). ``region``: a boolean ``(H, W)`` mask or a
    pixel box ``(x0, y0, x1, y1)`` (default: whole frame). Returns ``(T,)`` float64.
    """
    values = []
    mask = None
    for frame in iter_uint8_frames(frames):
        if mask is None and region is not None:
            mask = _region_mask(region, frame.shape[0], frame.shape[1])
        pixels = frame[mask] if mask is not None else frame.reshape(-1, 3)
        values.append(float(pixels.reshape(-1, 3).mean(axis=0) @ _LUMA) / 255.0)
    return np.asarray(values, dtype=np.float64)


def luminance_flicker(frames: FrameInput | Iterable[np.ndarray],
                      region: np.ndarray | tuple[int, int, int, int] | None = None) -> np.ndarray:
    """Frame-to-frame change of the region's mean luma: ``|Y(t+1) - Y(t)|`` for t = 0..T-2, in [0, 1] units.

    Measures brightness flicker (not motion: it uses the region mean, so a moving face with steady lighting
    scores near 0). Multiply by 255 for 8-bit levels. Returns ``(T-1,)`` float64.
    """
    lum = region_luminance(frames, region)
    if len(lum) < 2:
        raise ValueError("luminance_flicker: needs at least 2 frames")
    return np.abs(np.diff(lum))


@dataclass(frozen=True)
class FlickerComparison:
    """Flicker of a generated video against its reference.

    Attributes:
        generated, reference: mean ``|dY|`` per frame transition (luma in [0, 1]) of each video.
        excess: ``generated - reference`` (> 0: the generated video flickers more than the real one).
        ratio: ``generated / reference`` (inf when the reference is perfectly steady and the generated is not).
        generated_per_transition, reference_per_transition: the ``(T-1,)`` series.
    """

    generated: float
    reference: float
    excess: float
    ratio: float
    generated_per_transition: np.ndarray
    reference_per_transition: np.ndarray


def relative_flicker(generated: FrameInput | Iterable[np.ndarray], reference: FrameInput | Iterable[np.ndarray],
                     region: np.ndarray | tuple[int, int, int, int] | None = None,
                     reference_region: np.ndarray | tuple[int, int, int, int] | None = None) -> FlickerComparison:
    """Luminance flicker of ``generated`` compared with ``reference`` (``luminance_flicker`` of each).

    ``reference_region`` defaults to ``region``. The videos may differ in length (each is averaged over its
    own transitions).
    """
    g = luminance_flicker(generated, region)
    r = luminance_flicker(reference, reference_region if reference_region is not None else region)
    gm, rm = float(g.mean()), float(r.mean())
    ratio = gm / rm if rm > 0 else (float("inf") if gm > 0 else 1.0)
    return FlickerComparison(gm, rm, gm - rm, ratio, g, r)

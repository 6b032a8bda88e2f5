"""Zero-phase temporal smoothing and gap filling of per-frame parameters.

The smoother is Whittaker-Henderson (penalised second differences): it solves ``(W + lam * D'D) z = W y`` with a
banded Cholesky, so it has no lag, costs O(T) and fills frames of zero weight by smooth interpolation. Its gain at
frequency f (Hz) is ``1 / (1 + 16 lam sin(pi f / fps)^4)``; ``cutoff_to_lambda`` picks ``lam`` for a gain of 1/2
at a cut-off frequency, so the same setting behaves the same at any frame rate.
"""

from __future__ import annotations

import numpy as np
from scipy.linalg import solveh_banded


def cutoff_to_lambda(cutoff_hz: float, fps: float) -> float:
    """Whittaker ``lam`` whose gain is 1/2 at ``cutoff_hz`` for a signal sampled at ``fps``."""
    x = np.sin(np.pi * min(cutoff_hz / fps, 0.5))
    return float(1.0 / (16.0 * x ** 4))


def whittaker_smooth(values: np.ndarray, lam: float | np.ndarray, weights: np.ndarray | None = None) -> np.ndarray:
    """Smooth values [T, K] along T with strength ``lam`` (scalar or [K]); weights [T] (0 = fill in)."""
    y = np.asarray(values, np.float64)
    squeeze = y.ndim == 1
    y = y[:, None] if squeeze else y.reshape(len(y), -1)
    t = len(y)
    w = np.ones(t) if weights is None else np.asarray(weights, np.float64)
    lams = np.broadcast_to(np.asarray(lam, np.float64), (y.shape[1],))
    if t < 3 or not np.any(lams > 0):
        return y[:, 0].copy() if squeeze else y.reshape(np.shape(values)).copy()
    out = np.empty_like(y)
    diag = np.full(t, 6.0)
    diag[[0, -1]] = 1.0
    diag[[1, -2]] = 5.0 if t > 3 else 2.0
    if t == 3:
        diag[:] = [1.0, 4.0, 1.0]
    off1 = np.full(t - 1, -4.0)
    off1[[0, -1]] = -2.0
    off2 = np.ones(t - 2)
    for value in np.unique(lams):
        cols = np.flatnonzero(lams == value)
        if value <= 0:
            out[:, cols] = y[:, cols]
            continue
        ab = np.zeros((3, t))
        ab[0, 2:] = value * off2
        ab[1, 1:] = value * off1
        ab[2] = value * diag + w + 1e-9
        out[:, cols] = solveh_banded(ab, w[:, None] * y[:, cols], lower=False, check_finite=False)
    out = out[:, 0] if squeeze else out.reshape(np.shape(values))
    return out


def interpolate_gaps(values: np.ndarray, known: np.ndarray) -> np.ndarray:
    """values [T, ...] with rows where ``known`` is False replaced by linear interpolation (held at the ends)."""
    v = np.asarray(values)
    known = np.asarray(known, bool)
    if known.all() or not known.any():
        return v.copy()
    flat = v.reshape(len(v), -1).astype(np.float64)
    idx = np.flatnonzero(known)
    filled = flat.copy()
    missing = np.flatnonzero(~known)
    # Vectorised over columns: interpolate with the neighbouring known frames.
    right = np.searchsorted(idx, missing).clip(1, len(idx) - 1)
    left = right - 1
    if len(idx) == 1:
        filled[missing] = flat[idx[0]]
    else:
        t0, t1 = idx[left], idx[right]
        frac = np.clip((missing - t0) / np.maximum(t1 - t0, 1), 0.0, 1.0)[:, None]
        filled[missing] = (1 - frac) * flat[t0] + frac * flat[t1]
    return filled.reshape(v.shape).astype(v.dtype)


def robust_noise_level(values: np.ndarray, weights: np.ndarray | None = None, floor: float = 1e-6) -> np.ndarray:
    """Per-column noise std [K] of values [T, K] from the median absolute second difference (jitter only)."""
    y = np.asarray(values, np.float64).reshape(len(values), -1)
    keep = np.ones(len(y), bool) if weights is None else np.asarray(weights) >= 0.5
    y = y[keep]
    if len(y) < 3:
        return np.full(y.shape[1], floor)
    d2 = y[2:] - 2 * y[1:-1] + y[:-2]
    mad = np.median(np.abs(d2 - np.median(d2, 0)), 0)
    return np.maximum(1.4826 * mad / np.sqrt(6.0), floor)


def adaptive_smooth(values: np.ndarray, lam: float | np.ndarray, weights: np.ndarray | None = None,
                    floor: float | np.ndarray = 1e-6, cap: float | np.ndarray = np.inf, threshold: float = 2.0,
                    iterations: int = 4) -> np.ndarray:
    """Zero-phase smoothing that removes jitter but follows fast motion. values [T, K], lam scalar or [K].

    Starts from ``whittaker_smooth``; then, per column, frames where the smoothed curve departs from the data by
    more than ``threshold`` jitter std get a larger data weight ``1 + excess^2`` (weights only grow over the
    ``iterations`` rounds) and the column is smoothed again.
    The jitter std is estimated from second differences and clipped to [floor, cap] (per column): the cap keeps
    constant fast motion (a shaking camera) from passing for jitter. Small jitter stays smoothed, real fast motion
    (blinks, head turns) is followed without lag or overshoot.
    """
    y = np.asarray(values, np.float64)
    shape = y.shape
    y = y.reshape(len(y), -1)
    w = np.ones(len(y)) if weights is None else np.asarray(weights, np.float64)
    lams = np.broadcast_to(np.asarray(lam, np.float64), (y.shape[1],))
    z = whittaker_smooth(y, lams, w)
    if len(y) < 3:
        return z.reshape(shape)
    sigma = robust_noise_level(y, w, 0.0)
    sigma = np.clip(sigma, np.broadcast_to(np.asarray(floor, np.float64), sigma.shape),
                    np.broadcast_to(np.asarray(cap, np.float64), sigma.shape))
    adapt = np.repeat(w[:, None], y.shape[1], 1)
    for _ in range(iterations):
        excess = np.maximum(np.abs(y - z) / sigma - threshold, 0.0)
        grown = np.maximum(adapt, w[:, None] * (1.0 + excess ** 2))  # weights only grow: converges
        changed = np.flatnonzero((grown > adapt * 1.01).any(0))
        adapt = grown
        for k in changed:
            z[:, k] = whittaker_smooth(y[:, k], lams[k], adapt[:, k])
        if not len(changed):
            break
    return z.reshape(shape)

"""Blinks from landmarks: eye-aspect ratio, blink detection with hysteresis, rate per minute and duration.

The eye-aspect ratio (EAR, Soukupova & Cech 2016) of iBUG eye points p1..p6 is
``(|p2 - p6| + |p3 - p5|) / (2 |p1 - p4|)``: about 0.25-0.35 for an open eye, near 0 closed. Thresholds are
relative to the clip's own open-eye level around each frame (the widest the eye is within 0.4 s before and
within 0.4 s after it, the smaller of the two), so narrow eyes, face size, squints and closures held longer
than that do not count; a still face, open-eyed, has no blinks.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np

from thead.metrics.landmarks import to_ibug68

# iBUG points of each eye in EAR order p1..p6: outer corner, two upper lid, inner corner, two lower lid.
_RIGHT_EYE = np.array([36, 37, 38, 39, 40, 41])
_LEFT_EYE = np.array([45, 44, 43, 42, 47, 46])


def eye_aspect_ratio(landmarks: np.ndarray, per_eye: bool = False) -> np.ndarray:
    """Eye-aspect ratio per frame (unitless): the mean of both eyes, or each eye.

    Parameters
    ----------
    landmarks : (T, 478|68, 2|3) pixels (the 478-point mesh is mapped to iBUG 68; x, y used).
    per_eye : return both eyes (subject's right = iBUG 36-41, left = 42-47) instead of their mean.

    Returns
    -------
    (T,) float64, or (T, 2) with ``per_eye``; NaN where the landmarks are NaN or an eye has zero width.
    """
    pts = to_ibug68(landmarks)
    if pts.ndim == 2:
        pts = pts[None]

    def ear(idx: np.ndarray) -> np.ndarray:
        e = pts[:, idx]
        vertical = np.linalg.norm(e[:, 1] - e[:, 5], axis=-1) + np.linalg.norm(e[:, 2] - e[:, 4], axis=-1)
        width = np.linalg.norm(e[:, 0] - e[:, 3], axis=-1)
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(width > 0, vertical / (2.0 * width), np.nan)

    both = np.stack([ear(_RIGHT_EYE), ear(_LEFT_EYE)], axis=1)
    return both if per_eye else both.mean(axis=1)


@dataclass(frozen=True)
class BlinkConfig:
    """Blink detection settings.

    Attributes:
        window_s: how far before and after a frame the open eye is looked for (``open_eye_level``), seconds.
        close_ratio: EAR / open level below which the eye counts as closed (a blink is triggered); 0.6 because
            landmark trackers (and their temporal smoothing) rarely close the lids fully on a fast blink.
        reopen_ratio: EAR / open level the eye must fall below / come back above to start / end the blink
            (hysteresis: the blink is the run of frames below ``reopen_ratio`` that holds a closed frame).
        max_duration_s: longer runs are eyes kept closed or a look down, not blinks.
        min_open_fraction: the open level around a blink must be at least this fraction of the clip's open eye
            (90th percentile of its EAR): a flicker of the lids of eyes held shut is not a blink.
        wink_ratio: with both eyes given, the less-closed eye must close (1 - openness) at least this fraction as
            much as the other on a closed frame.
    """

    window_s: float = 0.4
    close_ratio: float = 0.6
    reopen_ratio: float = 0.8
    max_duration_s: float = 0.6
    min_open_fraction: float = 0.3
    wink_ratio: float = 0.5


@dataclass(frozen=True)
class Blinks:
    """Blinks found in a clip.

    Attributes:
        count: number of blinks.
        rate_per_min: blinks per minute of measured frames.
        mean_duration_frames, mean_duration_s: mean blink length (frames below ``reopen_ratio``), over blinks
            that do not touch the clip's ends (NaN when there is none).
        starts, durations: (K,) first frame and length in frames of each blink.
        openness: (T,) EAR / open-eye level per frame (1 = as open as just before and after).
        measured_s: seconds of frames with a finite EAR.
    """

    count: int
    rate_per_min: float
    mean_duration_frames: float
    mean_duration_s: float
    starts: np.ndarray
    durations: np.ndarray
    openness: np.ndarray
    measured_s: float


def open_eye_level(ear: np.ndarray, fps: float, window_s: float = 0.4) -> np.ndarray:
    """The open-eye level around each frame: the eye must be open both before and after a blink.

    ``level[t] = min(max EAR over frames t-w..t-1, max EAR over frames t+1..t+w)`` with ``w = window_s * fps``
    (only one side at the clip's ends; NaN frames left out). A short dip with an open eye on both sides keeps a
    high level (a blink); a squint or closure held longer than ``w`` lowers it (not a blink). Returns ``(T,)``
    float64, NaN where both sides are unmeasured.
    """
    x = np.asarray(ear, dtype=np.float64).reshape(-1)
    w = max(1, int(round(window_s * fps)))
    padded = np.pad(x, w, constant_values=np.nan)
    windows = np.lib.stride_tricks.sliding_window_view(padded, 2 * w + 1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN sides give NaN, handled below
        before = np.nanmax(windows[:, :w], axis=1)
        after = np.nanmax(windows[:, w + 1:], axis=1)
    return np.where(np.isnan(before), after, np.where(np.isnan(after), before, np.minimum(before, after)))


def detect_blinks(ear: np.ndarray, fps: float, config: BlinkConfig = BlinkConfig()) -> Blinks:
    """Blinks in an eye-aspect-ratio curve, with hysteresis thresholds relative to the open-eye level around them.

    Each eye's openness is its EAR over its ``open_eye_level``; a frame's openness is the mean of the eyes given.
    A blink is a run of frames with openness below ``reopen_ratio`` that lasts at most ``max_duration_s`` and
    holds a closed frame: openness below ``close_ratio``, both eyes closing alike (``BlinkConfig.wink_ratio``: a
    wink, even with the other eye squeezed, is not a blink), and the eyes open around it
    (``BlinkConfig.min_open_fraction``).

    Parameters
    ----------
    ear : (T,) or (T, 2) eye-aspect ratio per frame (``eye_aspect_ratio``, ``per_eye=True`` for both eyes);
        NaN frames end a blink and are not measured.
    fps : frame rate.
    config : thresholds (``BlinkConfig``).

    Returns
    -------
    Blinks.
    """
    if fps <= 0:
        raise ValueError("fps must be positive")
    x = np.asarray(ear, dtype=np.float64)
    x = x.reshape(len(x), -1) if x.ndim else x.reshape(1, 1)
    n = len(x)
    openness = np.empty_like(x)
    open_around = np.empty(x.shape, dtype=bool)
    for i in range(x.shape[1]):
        e = x[:, i]
        level = open_eye_level(e, fps, config.window_s)
        with np.errstate(invalid="ignore", divide="ignore"):
            openness[:, i] = np.where(level > 0, e / level, np.nan)
        clip_open = float(np.nanquantile(e, 0.9)) if np.isfinite(e).any() else np.nan
        with np.errstate(invalid="ignore"):
            open_around[:, i] = level >= config.min_open_fraction * clip_open
    with np.errstate(invalid="ignore"):
        closure = 1.0 - np.nan_to_num(openness, nan=1.0)
        both_close = closure.min(axis=1) >= config.wink_ratio * closure.max(axis=1)  # not a wink
        openness = openness.mean(axis=1)  # NaN when an eye is NaN
    closed = (np.nan_to_num(openness, nan=np.inf) < config.close_ratio) & open_around.all(axis=1) & both_close
    below = np.nan_to_num(openness, nan=np.inf) < config.reopen_ratio
    max_len = max(1, int(round(config.max_duration_s * fps)))
    starts, durations, inner = [], [], []
    t = 0
    while t < n:
        if not below[t]:
            t += 1
            continue
        end = t
        while end < n and below[end]:
            end += 1
        if closed[t:end].any() and end - t <= max_len:
            starts.append(t)
            durations.append(end - t)
            inner.append(t > 0 and end < n)
        t = end
    measured_s = float(np.isfinite(x).all(axis=1).sum()) / fps
    count = len(starts)
    rate = count / measured_s * 60.0 if measured_s > 0 else float("nan")
    full = [d for d, ok in zip(durations, inner) if ok]
    mean_frames = float(np.mean(full)) if full else float("nan")
    return Blinks(count, rate, mean_frames, mean_frames / fps, np.asarray(starts, np.int64),
                  np.asarray(durations, np.int64), openness, measured_s)


def blinks_from_landmarks(landmarks: np.ndarray, fps: float, config: BlinkConfig = BlinkConfig()) -> Blinks:
    """``detect_blinks`` of both eyes' ``eye_aspect_ratio`` for ``(T, 478|68, 2|3)`` landmarks."""
    return detect_blinks(eye_aspect_ratio(landmarks, per_eye=True), fps, config)

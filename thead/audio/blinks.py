"""Eye blinks for a talking face: a renewal process that prefers pauses, independent of the head.

Blink onsets form a renewal process: gaps between blinks are ``min_gap_s`` plus a gamma variate (shape
``gap_shape``) whose mean makes ``rate_per_min`` blinks a minute on average (adults at rest and in conversation:
about 15-20). A blink drawn within ``pause_pull_s`` of a pause (a frame outside speech) moves into that pause:
people blink at phrase boundaries more than mid-word. The lid profile is asymmetric, as measured blinks are: a
fast closing (``close_s``, raised-cosine), a short hold, a slower opening (``open_s``, exponential-like ease-out),
about 0.28 s or 7 frames at 25 fps. Both lids move together. Nothing here looks at the head pose, and the head
motion never looks at the blinks (a head that dips on every blink is a known artefact of learned models).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class BlinkConfig:
    """Blink settings (seconds unless said).

    rate_per_min: mean blinks per minute (0 = none). gap_shape: gamma shape of the gaps (higher = more
    regular). min_gap_s: refractory time after a blink ends (shortened at high rates: onsets are at least
    0.6 of the mean gap apart). close_s / hold_s / open_s: lid profile phases.
    amplitude: (low, high) range of the peak closure (1 = lids shut), drawn per blink. pause_pull_s: how far a
    blink may move to land in a pause.
    """

    rate_per_min: float = 17.0
    gap_shape: float = 3.0
    min_gap_s: float = 0.6
    close_s: float = 0.08
    hold_s: float = 0.04
    open_s: float = 0.16
    amplitude: tuple[float, float] = (0.9, 1.0)
    pause_pull_s: float = 0.7


@dataclass
class BlinkTrack:
    """closure [T] in [0, 1] per frame (1 = shut) and the blink onsets ``onsets_s`` (seconds)."""

    closure: np.ndarray
    onsets_s: np.ndarray

    @property
    def count(self) -> int:
        return int(len(self.onsets_s))


def lid_profile(t: np.ndarray, config: BlinkConfig = BlinkConfig()) -> np.ndarray:
    """Closure in [0, 1] at times ``t`` (s) after a blink's onset: 0 before it and after it ends."""
    t = np.asarray(t, np.float64)
    c, h, o = config.close_s, config.hold_s, config.open_s
    closing = 0.5 * (1.0 - np.cos(np.pi * np.clip(t / c, 0, 1)))
    u = np.clip((t - c - h) / o, 0, 1)
    opening = (1.0 - u) ** 2  # quick first release, long tail (an exponential-like reopening)
    out = np.where(t < c, closing, np.where(t < c + h, 1.0, opening))
    return np.where((t < 0) | (t >= c + h + o), 0.0, out)


def blink_onsets(duration_s: float, rng: np.random.Generator, speech: np.ndarray | None = None,
                 fps: float = 25.0, config: BlinkConfig = BlinkConfig()) -> np.ndarray:
    """Blink onset times (s) over ``duration_s``: renewal process, moved into pauses (``speech`` [T] bool per
    frame at ``fps``, True = speaking) when one is within ``pause_pull_s``."""
    if config.rate_per_min <= 0 or duration_s <= 0:
        return np.zeros(0)
    mean_gap = 60.0 / config.rate_per_min
    length = config.close_s + config.hold_s + config.open_s
    # Onset to onset at least a blink and the refractory time, but at most 0.6 of the mean gap: at high rates
    # (a speaker blinking 70 times a minute, gaps of 0.5-1.1 s) a fixed 0.88 s would halve the rate.
    refractory = min(config.min_gap_s + length, 0.6 * mean_gap)
    scale = max(mean_gap - refractory, 0.05) / config.gap_shape

    def gap() -> float:
        return refractory + float(rng.gamma(config.gap_shape, scale))

    runs = np.zeros((0, 2))
    if speech is not None:
        quiet = ~np.asarray(speech, bool)
        edges = np.flatnonzero(np.diff(np.r_[0, quiet.astype(np.int8), 0]))
        runs = np.stack([edges[::2], edges[1::2]], axis=1) / fps  # [K, 2] pause (start, end) seconds
    onsets: list[float] = []
    t = float(rng.uniform(0.2, 1.0)) * gap()  # a stationary process is met at a random point of a gap
    while t < duration_s - length:
        tb = t
        if len(runs):
            dist = np.maximum(np.maximum(runs[:, 0] - t, t - runs[:, 1]), 0.0)
            j = int(np.argmin(dist))
            if dist[j] <= config.pause_pull_s:  # land inside the pause, the whole blink when it fits
                tb = float(np.clip(t, runs[j, 0], max(runs[j, 0], runs[j, 1] - length)))
        if onsets and tb - onsets[-1] < refractory:
            tb = t  # pulled too close to the previous blink: stays where it was drawn
        if not onsets or tb - onsets[-1] >= refractory:
            onsets.append(max(tb, 0.0))
        t = max(t, tb) + gap()
    return np.asarray(onsets)


def blink_track(num_frames: int, fps: float, seed: int | np.random.Generator = 0,
                speech: np.ndarray | None = None, config: BlinkConfig = BlinkConfig()) -> BlinkTrack:
    """Blinks for ``num_frames`` frames at ``fps``.

    Parameters
    ----------
    num_frames, fps : the video's frames. seed : int or Generator (same seed, same blinks).
    speech : [T] bool, True while speaking (blinks prefer the other frames); None: no preference.
    config : BlinkConfig.

    Returns
    -------
    BlinkTrack: closure [T] (each frame the mean of the lid profile over its interval, 4 samples).
    """
    rng = seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)
    onsets = blink_onsets(num_frames / fps, rng, speech, fps, config)
    amps = rng.uniform(*config.amplitude, size=len(onsets))
    t = (np.arange(num_frames)[:, None] + (np.arange(4)[None] + 0.5) / 4) / fps  # [T, 4]
    closure = np.zeros(num_frames)
    for onset, amp in zip(onsets, amps):
        closure = np.maximum(closure, amp * lid_profile(t - onset, config).mean(1))
    return BlinkTrack(closure=closure.astype(np.float32), onsets_s=onsets)


def count_blinks(blink: np.ndarray, high: float = 0.6, low: float = 0.3) -> int:
    """Blinks in a fitted lid curve ``blink`` [T] (the ``blink_left`` / ``blink_right`` unit, 1 = shut): rises
    above ``high``, each counted once until the lid is back below ``low`` (hysteresis)."""
    count, armed = 0, True
    for v in np.asarray(blink, np.float64):
        if armed and v >= high:
            count, armed = count + 1, False
        elif v < low:
            armed = True
    return count


def fitted_blink_rate(blink_left: np.ndarray, blink_right: np.ndarray, fps: float,
                      valid: np.ndarray | None = None) -> float:
    """Blinks per minute of a fitted clip: ``count_blinks`` of the more closed lid per frame (curves [T]; one
    lid's fit often stops short of shut) over its valid frames (``valid`` [T] bool, None: all). Checked on
    WDA_AlexandriaOcasioCortez_000 frame by frame: its 9 counted blinks in 8 s (67/min; 10 by eye) are real
    ones, the speaker blinks that often."""
    curve = np.maximum(np.asarray(blink_left, np.float64), np.asarray(blink_right, np.float64))
    if valid is not None:
        curve = curve[np.asarray(valid, bool)]
    if len(curve) == 0:
        return 0.0
    return 60.0 * count_blinks(curve) * float(fps) / len(curve)


__all__ = ["BlinkConfig", "BlinkTrack", "blink_onsets", "blink_track", "count_blinks", "fitted_blink_rate",
           "lid_profile"]

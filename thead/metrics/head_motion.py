"""Head-motion metrics for speech-driven heads: how much the head moves, how fast, and whether it moves with the
speech (the rhythmic head-motion paper's evaluation, made robust to a head that merely jitters).

Poses are ``(T, 3)`` (yaw, pitch, roll) in degrees per video frame (``FitResult.pose[:, :3]`` in degrees; extra
columns are ignored). Angular speed is the norm of the frame-to-frame angle change, in degrees per second.

A score that any busy motion earns (Beat Align: every audio onset finds *some* motion onset near it when the head
jitters) is only reported against its chance level: the same score with the audio circularly shifted by a random
amount (at least ``min_shift_s``), ``shifts`` times with a seeded generator. A head that moves with the speech beats
its chance level; a jittering still head does not.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np
from scipy.stats import wasserstein_distance

from thead.metrics._inputs import as_float_array
from thead.metrics.audio_features import onset_frames
from thead.metrics.avsync import lagged_correlation
from thead.metrics.facemodel import wrap_degrees

ANGLES = ("yaw", "pitch", "roll")


def _angles(pose_deg: np.ndarray, name: str = "pose") -> np.ndarray:
    p = as_float_array(pose_deg, name)
    if p.ndim != 2 or p.shape[1] < 3:
        raise ValueError(f"{name}: expected (T, 3+) yaw, pitch, roll in degrees, got shape {p.shape}")
    return p[:, :3]


def head_angle_std(pose_deg: np.ndarray) -> np.ndarray:
    """Standard deviation of each head angle over the clip, degrees.

    Parameters
    ----------
    pose_deg : (T, 3+) yaw, pitch, roll per frame, degrees; NaN rows are left out.

    Returns
    -------
    (3,) float64 std of yaw, pitch, roll (population std), degrees; NaN when no frame is measured.
    """
    p = _angles(pose_deg)
    out = np.full(3, np.nan)
    for i in range(3):
        v = p[:, i][np.isfinite(p[:, i])]
        if v.size:
            out[i] = float(np.std(v))
    return out


def angular_speed(pose_deg: np.ndarray, fps: float) -> np.ndarray:
    """Head angular speed between consecutive frames, degrees per second.

    ``speed[t] = fps * ||wrap(pose[t + 1] - pose[t])||_2`` over (yaw, pitch, roll), the change from frame t to
    t + 1 (forward difference: a head that alternates between two poses every frame is fast, not still).

    Parameters
    ----------
    pose_deg : (T, 3+) degrees.
    fps : frame rate.

    Returns
    -------
    (T - 1,) float64 deg/s; NaN where either frame is NaN.
    """
    if fps <= 0:
        raise ValueError("fps must be positive")
    p = _angles(pose_deg)
    if len(p) < 2:
        raise ValueError("angular_speed: needs at least 2 frames")
    return np.linalg.norm(wrap_degrees(np.diff(p, axis=0)), axis=1) * fps


def speed_wasserstein(generated_pose_deg: np.ndarray, reference_pose_deg: np.ndarray, fps: float,
                      reference_fps: float | None = None) -> float:
    """1-Wasserstein (earth mover's) distance between the angular-speed distributions of two clips, deg/s.

    The clips need not be aligned or equally long: each is the set of its ``angular_speed`` values (NaN left
    out), compared with ``scipy.stats.wasserstein_distance``. 0 for identical distributions; a head that moves
    too little or too much scores the typical speed difference.

    Parameters
    ----------
    generated_pose_deg, reference_pose_deg : (T, 3+) and (T', 3+) degrees.
    fps : frame rate of the generated clip; ``reference_fps`` that of the reference (default the same).

    Returns
    -------
    Distance in deg/s; NaN when either side has no measured speed.
    """
    g = angular_speed(generated_pose_deg, fps)
    r = angular_speed(reference_pose_deg, reference_fps or fps)
    g, r = g[np.isfinite(g)], r[np.isfinite(r)]
    if g.size == 0 or r.size == 0:
        return float("nan")
    return float(wasserstein_distance(g, r))


# ------------------------------------------------------------------------------------------------ chance levels

@dataclass(frozen=True)
class ChanceScore:
    """A score against its shifted-audio chance level.

    Attributes:
        score: the score with the audio as it is.
        chance_mean, chance_std: mean and std of the score over ``shifts`` circular shifts of the audio.
        excess: ``score - chance_mean`` (the reported value; about 0 for motion unrelated to the audio).
        z: ``excess / chance_std`` (NaN when the chance scores do not vary).
        shifts: how many shifted scores were computed.
        best_lag: for a lagged correlation, the lag (frames) of ``score``; else 0.
    """

    score: float
    chance_mean: float
    chance_std: float
    excess: float
    z: float
    shifts: int
    best_lag: int = 0


def shift_amounts(num_frames: int, fps: float, shifts: int = 100, seed: int = 0,
                  min_shift_s: float = 1.0) -> np.ndarray:
    """Random circular shifts (frames) for a chance level, at least ``min_shift_s`` from 0 either way.

    Parameters
    ----------
    num_frames : length of the curve that is shifted.
    fps : frame rate.
    shifts : how many.
    seed : seed of ``numpy.random.default_rng`` (same seed, same shifts).
    min_shift_s : smallest shift, seconds (reduced to a quarter of the clip for clips under 2 s).

    Returns
    -------
    (shifts,) int64 in ``[m, num_frames - m]`` with m the smallest shift in frames.
    """
    if num_frames < 3:
        raise ValueError("a chance level needs at least 3 frames")
    m = max(1, min(int(round(min_shift_s * fps)), num_frames // 4))
    return np.random.default_rng(seed).integers(m, num_frames - m + 1, size=shifts).astype(np.int64)


def against_chance(score_of_shift: Callable[[int], float], num_frames: int, fps: float, shifts: int = 100,
                   seed: int = 0, min_shift_s: float = 1.0, best_lag: int = 0) -> ChanceScore:
    """``score_of_shift(0)`` against the mean/std of ``score_of_shift(s)`` over random circular shifts ``s``.

    Parameters
    ----------
    score_of_shift : the score with the audio curve circularly shifted by ``s`` frames (``np.roll``).
    num_frames, fps, shifts, seed, min_shift_s : as ``shift_amounts``.
    best_lag : passed through to the result.

    Returns
    -------
    ChanceScore.
    """
    score = float(score_of_shift(0))
    chance = np.array([score_of_shift(int(s)) for s in shift_amounts(num_frames, fps, shifts, seed, min_shift_s)])
    chance = chance[np.isfinite(chance)]
    if chance.size == 0 or not np.isfinite(score):
        return ChanceScore(score, float("nan"), float("nan"), float("nan"), float("nan"), int(chance.size), best_lag)
    mean, std = float(chance.mean()), float(chance.std())
    excess = score - mean
    z = excess / std if std > 1e-12 else float("nan")
    return ChanceScore(score, mean, std, excess, z, int(chance.size), best_lag)


# -------------------------------------------------------------------------------------------- speed vs loudness

def speed_loudness_correlation(pose_deg: np.ndarray, loudness: np.ndarray, fps: float, max_lag: int = 10,
                               shifts: int = 100, seed: int = 0, min_shift_s: float = 1.0) -> ChanceScore:
    """Best lagged Pearson r between head angular speed and speech loudness, against its chance level.

    ``speed[t]`` (frame t to t + 1, ``angular_speed``) is paired with the mean loudness of frames t and t + 1,
    then ``lagged_correlation(loudness, speed, max_lag)``; the score is the highest r over the lags (positive
    lag: the head follows the speech). Taking the best of ``2 max_lag + 1`` lags lifts even unrelated motion
    above 0, so the chance level (the same best r with the loudness circularly shifted) is returned with it.

    Parameters
    ----------
    pose_deg : (T, 3+) degrees.
    loudness : (T,) per-frame loudness, e.g. ``speech_loudness`` in dB (the shorter length is used).
    fps : frame rate.
    max_lag : largest lag, frames.
    shifts, seed, min_shift_s : chance level, see ``shift_amounts``.

    Returns
    -------
    ChanceScore with ``score`` = best r and ``best_lag`` its lag (frames).
    """
    speed = angular_speed(pose_deg, fps)
    loud = as_float_array(loudness, "loudness").reshape(-1)
    loud = 0.5 * (loud[:-1] + loud[1:])
    n = min(len(speed), len(loud))
    speed, loud = speed[:n], loud[:n]

    def best(shift: int) -> tuple[float, int]:
        lags, corr = lagged_correlation(np.roll(loud, shift), speed, max_lag)
        if np.isnan(corr).all():
            return float("nan"), 0
        i = int(np.nanargmax(corr))
        return float(corr[i]), int(lags[i])

    lag = best(0)[1]
    return against_chance(lambda s: best(s)[0], n, fps, shifts, seed, min_shift_s, best_lag=lag)


# ------------------------------------------------------------------------------------------------- beat align

def motion_onset_strength(pose_deg: np.ndarray, fps: float) -> np.ndarray:
    """How sharply the head starts moving at each frame: the positive change of angular speed, deg/s per frame.

    ``strength[t] = max(0, speed[t] - speed[t - 1])`` for t = 1..T-2 (``angular_speed``), placed at frame t
    (where the faster motion begins); frames 0 and T-1 are 0. Returns ``(T,)`` float64, NaN counted as 0.
    """
    speed = np.nan_to_num(angular_speed(pose_deg, fps), nan=0.0)
    out = np.zeros(len(speed) + 1)
    if len(speed) >= 2:
        out[1:-1] = np.maximum(np.diff(speed), 0.0)
    return out


def beat_align_score(motion_onsets: np.ndarray, audio_onsets: np.ndarray, sigma_frames: float) -> float:
    """Beat Align score (Li et al. 2021, AIST++; Bailando's form): how close each audio onset is to a motion onset.

    ``BA = mean_a exp(-min_m (m - a)^2 / (2 sigma^2))`` over audio onsets a and motion onsets m (frames). 1 when
    every audio onset coincides with a motion onset, 0 when none is near. It rewards motion onsets everywhere
    (a jittering head scores high), so report it through ``beat_align_vs_chance``.

    Parameters
    ----------
    motion_onsets, audio_onsets : (M,), (A,) frame indices.
    sigma_frames : tolerance, frames.

    Returns
    -------
    Score in [0, 1]; NaN when there is no audio onset; 0 when there is no motion onset.
    """
    a = np.asarray(audio_onsets, dtype=np.float64).reshape(-1)
    m = np.asarray(motion_onsets, dtype=np.float64).reshape(-1)
    if a.size == 0:
        return float("nan")
    if m.size == 0:
        return 0.0
    d2 = ((a[:, None] - m[None, :]) ** 2).min(axis=1)
    return float(np.exp(-d2 / (2.0 * sigma_frames ** 2)).mean())


def beat_align_vs_chance(pose_deg: np.ndarray, audio_onsets: np.ndarray, fps: float, sigma_s: float = 0.1,
                         shifts: int = 100, seed: int = 0, min_shift_s: float = 1.0) -> ChanceScore:
    """Beat Align of head-motion onsets to audio onsets, against its circularly-shifted-audio chance level.

    Motion onsets are the peaks of ``motion_onset_strength`` (``onset_frames``: prominence relative to the
    curve's own spread, at least 0.1 s apart); the score is ``beat_align_score`` with tolerance ``sigma_s``.
    The chance level shifts the audio onsets circularly (``(a + s) mod T``) by random amounts. Report
    ``excess`` (score - chance mean): about 0 for a head that jitters or moves independently of the speech,
    positive when head-motion onsets follow the speech onsets.

    Parameters
    ----------
    pose_deg : (T, 3+) degrees.
    audio_onsets : (A,) frame indices (``onset_frames(onset_strength(...))``).
    fps : frame rate.
    sigma_s : tolerance, seconds.
    shifts, seed, min_shift_s : chance level, see ``shift_amounts``.

    Returns
    -------
    ChanceScore (score = Beat Align of the unshifted audio).
    """
    p = _angles(pose_deg)
    n = len(p)
    motion = onset_frames(motion_onset_strength(p, fps), fps)
    a = np.asarray(audio_onsets, dtype=np.int64).reshape(-1)
    a = a[(a >= 0) & (a < n)]
    sigma = sigma_s * fps
    return against_chance(lambda s: beat_align_score(motion, (a + s) % n, sigma), n, fps, shifts, seed,
                          min_shift_s)

"""Audio-visual synchrony for audio-driven output: does the mouth open when the audio is loud, and how late?

The measure is the Pearson correlation between the audio loudness envelope (RMS per video frame) and the
mouth opening (inner-lip gap over inter-ocular distance), at lags within +-N frames. A well-synchronised
video peaks at lag 0 (or within a frame of it); a constant offset between audio and video shows up as the
best lag. It is a landmark-based proxy, not SyncNet's LSE-C/LSE-D (which need SyncNet weights).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from thead.metrics._inputs import as_float_array
from thead.metrics.audio import read_audio
from thead.metrics.landmarks import to_ibug68

# iBUG inner-lip pairs (upper, lower): 61-67, 62-66, 63-65; outer eye corners 36, 45.
_INNER_LIP_UPPER = np.array([61, 62, 63])
_INNER_LIP_LOWER = np.array([67, 66, 65])
_EYE_OUTER = (36, 45)


def mouth_opening(landmarks: np.ndarray) -> np.ndarray:
    """Mouth opening per frame: mean inner-lip gap divided by the inter-ocular distance (unitless).

    ``landmarks``: ``(T, 478|68, 2|3)`` pixel coordinates (478-point mesh mapped to iBUG 68). Gap = mean
    distance of the three upper/lower inner-lip pairs (iBUG 61-67, 62-66, 63-65; mesh 82-87, 13-14, 312-317);
    face size = distance between the outer eye corners (iBUG 36-45; mesh 33-263), so the value does not
    depend on image size or face distance. About 0 closed, 0.3-0.6 wide open. Returns ``(T,)``; NaN where the
    landmarks are NaN.
    """
    pts = to_ibug68(landmarks)
    if pts.ndim == 2:
        pts = pts[None]
    gap = np.linalg.norm(pts[:, _INNER_LIP_UPPER] - pts[:, _INNER_LIP_LOWER], axis=-1).mean(axis=1)
    iod = np.linalg.norm(pts[:, _EYE_OUTER[0]] - pts[:, _EYE_OUTER[1]], axis=-1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(iod > 0, gap / iod, np.nan)


def audio_rms_envelope(samples: np.ndarray, sample_rate: int, fps: float, num_frames: int | None = None,
                       decibels: bool = False) -> np.ndarray:
    """Audio RMS per video frame: ``sqrt(mean(s^2))`` over the samples of frame t's interval [t/fps, (t+1)/fps).

    ``samples``: mono ``(S,)``. ``num_frames`` defaults to the whole frames the audio covers; frames past the
    end of the audio are NaN. ``decibels``: return ``20 log10(rms + 1e-8)`` (dBFS) instead of linear RMS.
    Returns ``(T,)`` float64.
    """
    x = np.asarray(samples, dtype=np.float64).reshape(-1)
    if fps <= 0 or sample_rate <= 0:
        raise ValueError("fps and sample_rate must be positive")
    if num_frames is None:
        num_frames = int(np.floor(len(x) * fps / sample_rate))
    edges = np.rint(np.arange(num_frames + 1) * (sample_rate / fps)).astype(np.int64)
    csum = np.concatenate([[0.0], np.cumsum(x * x)])
    start, stop = edges[:-1], edges[1:]
    valid = stop <= len(x)
    stop_c, start_c = np.minimum(stop, len(x)), np.minimum(start, len(x))
    count = np.maximum(stop_c - start_c, 1)
    rms = np.sqrt(np.maximum(csum[stop_c] - csum[start_c], 0.0) / count)
    rms = np.where(valid, rms, np.nan)
    return 20.0 * np.log10(rms + 1e-8) if decibels else rms


@dataclass(frozen=True)
class AVSync:
    """Correlation of audio envelope and mouth opening across lags.

    Attributes:
        best_lag: lag (frames) of the highest correlation; > 0 means the mouth moves that many frames *after*
            the audio (video late), < 0 before it.
        best_correlation: Pearson r at ``best_lag``.
        correlation_at_zero: Pearson r with no shift.
        lags, correlations: all lags tried (``-max_lag..max_lag``) and their r (NaN where < 3 frame pairs).
        frames_used: frame pairs measured at lag 0 (both values finite).
    """

    best_lag: int
    best_correlation: float
    correlation_at_zero: float
    lags: np.ndarray
    correlations: np.ndarray
    frames_used: int


def _pearson(a: np.ndarray, b: np.ndarray) -> float:
    ok = np.isfinite(a) & np.isfinite(b)
    if ok.sum() < 3:
        return float("nan")
    a, b = a[ok], b[ok]
    if a.min() == a.max() or b.min() == b.max():  # constant: undefined (centring would leave rounding noise)
        return float("nan")
    a, b = a - a.mean(), b - b.mean()
    denom = np.sqrt((a * a).sum() * (b * b).sum())
    return float((a * b).sum() / denom) if denom > 0 else float("nan")


def lagged_correlation(a: np.ndarray, b: np.ndarray, max_lag: int) -> tuple[np.ndarray, np.ndarray]:
    """Pearson r between ``a[t]`` and ``b[t + lag]`` for every lag in ``-max_lag..max_lag``.

    Parameters
    ----------
    a, b : (T,) float arrays, one value per video frame (the shorter length is used when they differ). NaN
        frames are left out of each correlation.
    max_lag : largest shift tried, frames.

    Returns
    -------
    lags : (2 max_lag + 1,) int, ``-max_lag..max_lag``.
    correlations : (2 max_lag + 1,) float64 Pearson r per lag; NaN where fewer than 3 frame pairs are finite or
        one side is constant over them. A positive lag pairs ``a`` with later ``b``: ``b`` follows ``a``.
    """
    a = as_float_array(a, "first series").reshape(-1)
    b = as_float_array(b, "second series").reshape(-1)
    n = min(len(a), len(b))
    a, b = a[:n], b[:n]
    lags = np.arange(-max_lag, max_lag + 1)
    corr = np.empty(len(lags))
    for i, k in enumerate(lags):
        if abs(k) >= n:  # a shift past the clip's length leaves no frame pair
            corr[i] = np.nan
        elif k >= 0:
            corr[i] = _pearson(a[: n - k], b[k:])
        else:
            corr[i] = _pearson(a[-k:], b[: n + k])
    return lags, corr


def av_sync(audio_envelope: np.ndarray, mouth: np.ndarray, max_lag: int = 5) -> AVSync:
    """Pearson correlation between ``audio_envelope[t]`` and ``mouth[t + lag]`` for lag in [-max_lag, max_lag].

    Both ``(T,)`` per video frame (``audio_rms_envelope``, ``mouth_opening``); if their lengths differ, the
    shorter length is used (the audio track of a video is often a few samples short). NaN frames are left out
    of each correlation. Positive best lag: the mouth follows the audio by that many frames.
    """
    a = as_float_array(audio_envelope, "audio envelope").reshape(-1)
    m = as_float_array(mouth, "mouth opening").reshape(-1)
    n = min(len(a), len(m))
    a, m = a[:n], m[:n]
    lags, corr = lagged_correlation(a, m, max_lag)
    if np.isnan(corr).all():
        best = 0
        best_r = float("nan")
    else:
        idx = int(np.nanargmax(corr))
        best, best_r = int(lags[idx]), float(corr[idx])
    zero = float(corr[max_lag])
    used = int((np.isfinite(a) & np.isfinite(m)).sum())
    return AVSync(best, best_r, zero, lags, corr, used)


def audio_visual_sync(audio: str | Path | np.ndarray, landmarks: np.ndarray, fps: float, max_lag: int = 5,
                      sample_rate: int = 16000) -> AVSync:
    """``av_sync`` from an audio file (or mono samples at ``sample_rate``) and per-frame landmarks ``(T, K, 2|3)``.

    The audio is decoded with ``read_audio`` (``InputError`` for missing / silent audio), reduced to an RMS
    envelope at the video's ``fps``, and correlated with ``mouth_opening(landmarks)``.
    """
    samples = read_audio(audio, sample_rate) if isinstance(audio, (str, Path)) else np.asarray(audio)
    mouth = mouth_opening(landmarks)
    env = audio_rms_envelope(samples, sample_rate, fps, num_frames=len(mouth))
    return av_sync(env, mouth, max_lag)

"""Per-video-frame audio curves for the speech metrics: speech-band loudness and onset strength / onsets.

All curves have one value per video frame: frame t covers the audio interval ``[t / fps, (t + 1) / fps)``.
Samples are mono float (full scale 1.0), e.g. from ``thead.metrics.read_audio``.
"""

from __future__ import annotations

import numpy as np
from scipy.signal import butter, find_peaks, sosfiltfilt

from thead.metrics.avsync import audio_rms_envelope

#: Speech band (Hz) of ``speech_loudness``: the formant region, where the mouth shapes the sound; it leaves out
#: rumble and hiss that do not move with the lips.
SPEECH_BAND = (300.0, 3000.0)


def _mono(samples: np.ndarray, sample_rate: int, fps: float) -> np.ndarray:
    x = np.asarray(samples, dtype=np.float64).reshape(-1)
    if x.size == 0:
        raise ValueError("audio has no samples")
    if fps <= 0 or sample_rate <= 0:
        raise ValueError("fps and sample_rate must be positive")
    return x


def speech_loudness(samples: np.ndarray, sample_rate: int, fps: float, num_frames: int | None = None,
                    band: tuple[float, float] = SPEECH_BAND, floor_db: float = 40.0) -> np.ndarray:
    """Speech-band loudness per video frame, dB (relative to full scale), floored ``floor_db`` below its peak.

    The samples are band-passed to ``band`` (4th-order Butterworth, zero phase; the upper edge is kept below
    0.45 x the sample rate), then ``20 log10(RMS)`` per frame (``audio_rms_envelope``). Values more than
    ``floor_db`` below the clip's loudest frame are raised to that floor, so digital silence (-160 dB) does
    not dominate a correlation. This is the "RMS envelope" of the speech metrics.

    Parameters
    ----------
    samples : (S,) mono samples at ``sample_rate`` Hz.
    sample_rate : Hz.
    fps : video frame rate.
    num_frames : frames to return (default: the whole frames the audio covers); frames past its end are NaN.
    band : (low, high) Hz.
    floor_db : dynamic range kept below the peak, dB.

    Returns
    -------
    (T,) float64 dBFS; NaN past the end of the audio.
    """
    x = _mono(samples, sample_rate, fps)
    low, high = band[0], min(band[1], 0.45 * sample_rate)
    if 0 < low < high and len(x) > 100:  # shorter than the filter's edge padding: left unfiltered
        sos = butter(4, [low, high], btype="bandpass", fs=sample_rate, output="sos")
        x = sosfiltfilt(sos, x)
    db = audio_rms_envelope(x, sample_rate, fps, num_frames=num_frames, decibels=True)
    if np.isfinite(db).any():
        db = np.where(np.isfinite(db), np.maximum(db, np.nanmax(db) - floor_db), np.nan)
    return db


def onset_strength(samples: np.ndarray, sample_rate: int, fps: float, num_frames: int | None = None,
                   window_s: float = 0.032, hop_s: float = 0.010, range_db: float = 80.0) -> np.ndarray:
    """Spectral-flux onset strength per video frame (how much new sound energy starts in the frame).

    Short-time spectra (Hann window ``window_s``, hop ``hop_s``) in dB, floored ``range_db`` below the clip's
    peak; the flux of a hop is the mean over frequency bins of the positive dB increase from the previous hop
    (half-wave rectified, as librosa's ``onset_strength``). A video frame takes the largest flux of the hops
    that start inside it. Speech peaks at syllable onsets; steady tones and silence give 0.

    Parameters
    ----------
    samples : (S,) mono samples at ``sample_rate`` Hz.
    sample_rate : Hz.
    fps : video frame rate.
    num_frames : frames to return (default: the whole frames the audio covers); frames past the audio are 0.
    window_s, hop_s : analysis window and hop, seconds.
    range_db : dynamic range kept below the peak, dB.

    Returns
    -------
    (T,) float64 >= 0, dB per hop.
    """
    x = _mono(samples, sample_rate, fps)
    if num_frames is None:
        num_frames = int(np.floor(len(x) * fps / sample_rate))
    win = max(8, int(round(window_s * sample_rate)))
    hop = max(1, int(round(hop_s * sample_rate)))
    if len(x) < win:
        x = np.pad(x, (0, win - len(x)))
    starts = np.arange(0, len(x) - win + 1, hop)
    frames = np.lib.stride_tricks.sliding_window_view(x, win)[starts] * np.hanning(win)
    power = np.abs(np.fft.rfft(frames, axis=1)) ** 2
    db = 10.0 * np.log10(power + 1e-12)
    db = np.maximum(db, db.max() - range_db)
    flux = np.r_[0.0, np.maximum(np.diff(db, axis=0), 0.0).mean(axis=1)]
    frame_of_hop = np.floor(starts / sample_rate * fps).astype(np.int64)
    out = np.zeros(num_frames)
    keep = frame_of_hop < num_frames
    np.maximum.at(out, frame_of_hop[keep], flux[keep])
    return out


def onset_frames(strength: np.ndarray, fps: float, min_gap_s: float = 0.1, rel_height: float = 0.3) -> np.ndarray:
    """Frames of the onsets in an onset-strength curve (``onset_strength``, or a motion curve): its peaks.

    A peak counts when it rises at least ``rel_height`` x (95th percentile - median) of the curve above its
    surroundings (scipy ``find_peaks`` prominence) and is at least ``min_gap_s`` from a stronger one. A flat
    curve has no onsets.

    Parameters
    ----------
    strength : (T,) onset strength; NaN counts as 0.
    fps : frame rate.
    min_gap_s : smallest gap between onsets, seconds.
    rel_height : prominence threshold relative to the curve's spread.

    Returns
    -------
    (K,) int64 frame indices, ascending.
    """
    s = np.nan_to_num(np.asarray(strength, dtype=np.float64).reshape(-1), nan=0.0)
    spread = float(np.percentile(s, 95) - np.median(s)) if s.size else 0.0
    if s.size < 3 or spread <= 0:
        return np.zeros(0, dtype=np.int64)
    peaks, _ = find_peaks(s, prominence=rel_height * spread, distance=max(1, int(round(min_gap_s * fps))))
    return peaks.astype(np.int64)

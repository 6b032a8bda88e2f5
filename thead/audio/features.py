"""Per-video-frame audio features: loudness, onset strength, F0 and voicing (YIN), voice activity, log-mel.

Everything is numpy/scipy (no JIT, no weights): a short-time analysis at a 10 ms hop (``FeatureConfig.hop``
samples at 16 kHz), then aggregated per video frame. Hop i stands for the instant (i + 0.5) * hop_s and its
windows are centred there; video frame t takes the hops whose instants fall in [t / fps, (t + 1) / fps) (the
nearest hop when none does, at fps above 100).

Units: dB are dBFS (20 log10 of RMS, full scale 1.0); F0 in Hz (NaN where unvoiced); onset strength is the mean
positive change of the mel spectrum in dB per hop (librosa's ``onset_strength`` recipe); log-mel is the natural
log of mel-band power (Slaney mel scale and area normalisation, as librosa's defaults).

YIN (de Cheveigne & Kawahara 2002): difference function by FFT, cumulative-mean normalisation, the first trough
below ``yin_threshold`` (else the global minimum), parabolic refinement. A hop is voiced when its trough is below
``yin_threshold`` and it is voice-active.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np

from thead.audio.io import SAMPLE_RATE


@dataclass(frozen=True)
class FeatureConfig:
    """Analysis settings (samples at ``sample_rate``).

    hop: analysis hop in samples (160 = 10 ms). n_fft / win_length: STFT size and Hann window for the mel and
    spectral features (512 / 400 = 32 / 25 ms). n_mels, fmin, fmax: the mel filterbank (Hz).
    f0_min, f0_max: YIN search range (Hz); yin_frame: YIN window in samples (must exceed sample_rate / f0_min).
    yin_threshold: cumulative-mean-normalised difference below which a trough counts as periodic.
    vad_range_db: voice activity threshold sits this far below the loud level (99th percentile of hop dB),
    but at least ``vad_above_noise_db`` over the noise floor (10th percentile) when that is lower, and never
    below ``vad_floor_db`` dBFS. vad_fill_s / vad_min_s: pauses shorter than this are bridged, bursts shorter
    than this dropped.
    """

    sample_rate: int = SAMPLE_RATE
    hop: int = 160
    n_fft: int = 512
    win_length: int = 400
    n_mels: int = 80
    fmin: float = 40.0
    fmax: float = 7600.0
    f0_min: float = 65.0
    f0_max: float = 500.0
    yin_frame: int = 1024
    yin_threshold: float = 0.2
    vad_range_db: float = 40.0
    vad_above_noise_db: float = 10.0
    vad_floor_db: float = -60.0
    vad_fill_s: float = 0.15
    vad_min_s: float = 0.05

    @property
    def hop_s(self) -> float:
        return self.hop / float(self.sample_rate)


@dataclass
class HopFeatures:
    """Short-time features at the analysis hop: H hops, hop i at time (i + 0.5) * hop_s seconds.

    rms_db [H] dBFS over the hop's own samples; power [H, n_fft/2+1] STFT power; mel_power [H, n_mels];
    onset [H] dB per hop; f0_hz [H] (NaN unvoiced); periodicity [H] = 1 - YIN trough (1 = perfectly periodic);
    voiced [H] bool; active [H] bool voice activity; centroid_hz [H] spectral centroid of 100-4000 Hz.
    """

    hop_s: float
    rms_db: np.ndarray
    mel_power: np.ndarray
    onset: np.ndarray
    f0_hz: np.ndarray
    periodicity: np.ndarray
    voiced: np.ndarray
    active: np.ndarray
    centroid_hz: np.ndarray
    low_high_db: np.ndarray

    @property
    def num_hops(self) -> int:
        return int(len(self.rms_db))

    @property
    def times(self) -> np.ndarray:
        """[H] seconds: the instant each hop stands for."""
        return (np.arange(self.num_hops) + 0.5) * self.hop_s


@dataclass
class AudioFeatures:
    """Audio features per video frame: T frames at ``fps``, frame t = audio [t / fps, (t + 1) / fps).

    rms_db [T] dBFS of the frame interval's samples (silence beyond the audio's end: -160).
    onset [T] mean onset strength (dB per hop) of the frame's hops. f0_hz [T] median F0 of its voiced hops (NaN
    when none). voicing [T] fraction of its hops voiced. voice_activity [T] bool: at least half its hops active.
    centroid_hz [T] mean spectral centroid (100-4000 Hz). low_high_db [T]: 0-1 kHz minus 1-4 kHz band level (dB).
    log_mel [T, n_mels] natural log of the mean mel power of its hops. ``hops``: the underlying HopFeatures.
    """

    fps: float
    rms_db: np.ndarray
    onset: np.ndarray
    f0_hz: np.ndarray
    voicing: np.ndarray
    voice_activity: np.ndarray
    centroid_hz: np.ndarray
    low_high_db: np.ndarray
    log_mel: np.ndarray
    hops: HopFeatures

    @property
    def num_frames(self) -> int:
        return int(len(self.rms_db))


# ------------------------------------------------------------------------------------------------ helpers
def _frames(x: np.ndarray, centres: np.ndarray, length: int) -> np.ndarray:
    """[len(centres), length] windows of x (zero padded) starting at centres - length // 2."""
    pad = length
    xp = np.concatenate([np.zeros(pad, x.dtype), x, np.zeros(pad + length, x.dtype)])
    view = np.lib.stride_tricks.sliding_window_view(xp, length)
    return view[centres - length // 2 + pad]


def _hz_to_mel(f: np.ndarray | float) -> np.ndarray:
    """Slaney mel scale: linear below 1 kHz, logarithmic above (librosa's htk=False)."""
    f = np.asarray(f, np.float64)
    f_sp, min_log_hz = 200.0 / 3, 1000.0
    min_log_mel, logstep = min_log_hz / f_sp, np.log(6.4) / 27.0
    return np.where(f >= min_log_hz, min_log_mel + np.log(np.maximum(f, 1e-9) / min_log_hz) / logstep, f / f_sp)


def _mel_to_hz(m: np.ndarray) -> np.ndarray:
    m = np.asarray(m, np.float64)
    f_sp, min_log_hz = 200.0 / 3, 1000.0
    min_log_mel, logstep = min_log_hz / f_sp, np.log(6.4) / 27.0
    return np.where(m >= min_log_mel, min_log_hz * np.exp(logstep * (m - min_log_mel)), f_sp * m)


@functools.lru_cache(maxsize=8)
def mel_filterbank(sample_rate: int, n_fft: int, n_mels: int, fmin: float, fmax: float) -> np.ndarray:
    """[n_mels, n_fft // 2 + 1] triangular Slaney-normalised mel filters (as librosa.filters.mel's defaults)."""
    freqs = np.linspace(0, sample_rate / 2, n_fft // 2 + 1)
    edges = _mel_to_hz(np.linspace(_hz_to_mel(fmin), _hz_to_mel(fmax), n_mels + 2))
    lower = (freqs[None] - edges[:-2, None]) / np.maximum(edges[1:-1, None] - edges[:-2, None], 1e-9)
    upper = (edges[2:, None] - freqs[None]) / np.maximum(edges[2:, None] - edges[1:-1, None], 1e-9)
    fb = np.maximum(0.0, np.minimum(lower, upper))
    fb *= (2.0 / (edges[2:] - edges[:-2]))[:, None]
    fb.setflags(write=False)
    return fb


def yin(samples: np.ndarray, sample_rate: int = SAMPLE_RATE, hop: int = 160, frame_length: int = 1024,
        f0_min: float = 65.0, f0_max: float = 500.0, threshold: float = 0.2,
        chunk: int = 2048) -> tuple[np.ndarray, np.ndarray]:
    """YIN F0 per hop: (f0_hz [H], trough [H]) for hops centred at (i + 0.5) * hop samples.

    Parameters
    ----------
    samples : [S] float mono.
    sample_rate : Hz. hop, frame_length : samples (frame_length > sample_rate / f0_min).
    f0_min, f0_max : search range in Hz. threshold : first trough of the normalised difference below it wins.
    chunk : hops processed per batch (bounds memory: chunk * frame_length floats).

    Returns
    -------
    f0_hz [H] float64: the period's frequency (every hop, voiced or not), trough [H] in [0, ~2]: the normalised
    difference at the chosen period (small = periodic; voiced when below ``threshold``).
    """
    x = np.asarray(samples, np.float64).reshape(-1)
    tau_max = int(np.ceil(sample_rate / f0_min))
    tau_min = max(2, int(np.floor(sample_rate / f0_max)))
    if frame_length <= tau_max + 16:
        raise ValueError(f"frame_length {frame_length} too short for f0_min {f0_min} Hz")
    n_hops = int(np.ceil(len(x) / hop))
    centres = (np.arange(n_hops) * hop + hop // 2).astype(np.int64)
    win = frame_length - tau_max
    f0 = np.empty(n_hops)
    trough = np.empty(n_hops)
    taus = np.arange(tau_max + 1)
    for a in range(0, n_hops, chunk):
        fr = _frames(x, centres[a:a + chunk], frame_length)  # [C, W]
        spec_w = np.fft.rfft(fr, frame_length)
        spec_l = np.fft.rfft(fr[:, :win], frame_length)
        acf = np.fft.irfft(np.conj(spec_l) * spec_w, frame_length)[:, :tau_max + 1]
        cs = np.concatenate([np.zeros((len(fr), 1)), np.cumsum(fr * fr, axis=1)], axis=1)
        e0 = cs[:, win][:, None]
        e_tau = cs[:, taus + win] - cs[:, taus]
        d = np.maximum(e0 + e_tau - 2.0 * acf, 0.0)
        d[:, 0] = 0.0
        cum = np.cumsum(d[:, 1:], axis=1)
        cmnd = np.ones_like(d)
        cmnd[:, 1:] = d[:, 1:] * taus[1:] / np.maximum(cum, 1e-12)
        cmnd[cum[:, -1] <= 1e-10] = 1.0  # digital silence: no periodicity
        seg = cmnd[:, tau_min - 1:tau_max + 1]  # indices tau_min-1 .. tau_max
        mid = seg[:, 1:-1]
        is_trough = (mid < threshold) & (mid <= seg[:, :-2]) & (mid <= seg[:, 2:])
        has = is_trough.any(1)
        first = np.argmax(is_trough, axis=1)
        best = np.where(has, first, np.argmin(mid, axis=1))
        tau = best + tau_min
        rows = np.arange(len(fr))
        c0, c1, c2 = cmnd[rows, tau - 1], cmnd[rows, tau], cmnd[rows, np.minimum(tau + 1, tau_max)]
        denom = c0 - 2.0 * c1 + c2
        shift = np.where(np.abs(denom) > 1e-12, 0.5 * (c0 - c2) / np.where(denom == 0, 1, denom), 0.0)
        shift = np.clip(shift, -1.0, 1.0)
        f0[a:a + chunk] = sample_rate / (tau + shift)
        trough[a:a + chunk] = c1
    return f0, trough


def voice_activity(rms_db: np.ndarray, hop_s: float, config: FeatureConfig = FeatureConfig()) -> np.ndarray:
    """[H] bool voice activity from hop levels [H] dBFS: an adaptive level threshold, short pauses bridged,
    short bursts dropped (see ``FeatureConfig``)."""
    db = np.asarray(rms_db, np.float64)
    if len(db) == 0:
        return np.zeros(0, bool)
    loud = float(np.percentile(db, 99))
    noise = float(np.percentile(db, 10))
    thr = max(min(noise + config.vad_above_noise_db, loud - 15.0), loud - config.vad_range_db, config.vad_floor_db)
    active = db > thr
    active = _fill_runs(active, False, int(round(config.vad_fill_s / hop_s)))
    return _fill_runs(active, True, int(round(config.vad_min_s / hop_s)))


def _fill_runs(mask: np.ndarray, value: bool, max_len: int) -> np.ndarray:
    """Flip interior runs of ``value`` no longer than ``max_len`` (runs touching the ends too, for True runs)."""
    out = mask.copy()
    if max_len <= 0 or len(mask) == 0:
        return out
    edges = np.flatnonzero(np.diff(np.r_[False, mask == value, False].astype(np.int8)))
    for s, e in zip(edges[::2], edges[1::2]):
        interior = s > 0 and e < len(mask)
        if e - s <= max_len and (interior or value):
            out[s:e] = not value
    return out


# ------------------------------------------------------------------------------------------------ public API
def hop_features(samples: np.ndarray, config: FeatureConfig = FeatureConfig()) -> HopFeatures:
    """Short-time features of ``samples`` [S] (mono, at ``config.sample_rate``) every ``config.hop`` samples.

    Returns
    -------
    HopFeatures with H = ceil(S / hop) hops.
    """
    x = np.asarray(samples, np.float64).reshape(-1)
    sr, hop = config.sample_rate, config.hop
    n_hops = int(np.ceil(len(x) / hop))
    padded = np.concatenate([x, np.zeros(n_hops * hop - len(x))])
    rms = np.sqrt(np.mean(padded.reshape(n_hops, hop) ** 2, axis=1))
    rms_db = 20.0 * np.log10(rms + 1e-8)

    centres = (np.arange(n_hops) * hop + hop // 2).astype(np.int64)
    window = np.zeros(config.n_fft)
    off = (config.n_fft - config.win_length) // 2
    window[off:off + config.win_length] = np.hanning(config.win_length + 2)[1:-1]
    power = np.empty((n_hops, config.n_fft // 2 + 1))
    for a in range(0, n_hops, 4096):
        power[a:a + 4096] = np.abs(np.fft.rfft(_frames(x, centres[a:a + 4096], config.n_fft) * window)) ** 2
    fb = mel_filterbank(sr, config.n_fft, config.n_mels, config.fmin, config.fmax)
    mel = power @ fb.T
    mel_db = 10.0 * np.log10(np.maximum(mel, 1e-10))
    mel_db = np.maximum(mel_db, mel_db.max(initial=-100.0) - 80.0)
    onset = np.zeros(n_hops)
    if n_hops > 1:
        onset[1:] = np.maximum(mel_db[1:] - mel_db[:-1], 0.0).mean(1)

    freqs = np.linspace(0, sr / 2, config.n_fft // 2 + 1)
    band = (freqs >= 100) & (freqs <= 4000)
    pb = power[:, band]
    centroid = (pb @ freqs[band]) / np.maximum(pb.sum(1), 1e-12)
    low = power[:, (freqs >= 50) & (freqs < 1000)].sum(1)
    high = power[:, (freqs >= 1000) & (freqs < 4000)].sum(1)
    low_high = 10.0 * np.log10((low + 1e-10) / (high + 1e-10))

    active = voice_activity(rms_db, config.hop_s, config)
    f0, trough = yin(x, sr, hop, config.yin_frame, config.f0_min, config.f0_max, config.yin_threshold)
    voiced = (trough < config.yin_threshold) & active
    return HopFeatures(hop_s=config.hop_s, rms_db=rms_db, mel_power=mel, onset=onset,
                       f0_hz=np.where(voiced, f0, np.nan), periodicity=np.clip(1.0 - trough, 0.0, 1.0),
                       voiced=voiced, active=active, centroid_hz=centroid, low_high_db=low_high)


def frame_bins(num_hops: int, hop_s: float, fps: float, num_frames: int) -> np.ndarray:
    """[num_hops] video frame of each hop (-1: beyond the last frame), hop i at (i + 0.5) * hop_s."""
    t = (np.arange(num_hops) + 0.5) * hop_s
    idx = np.floor(t * fps).astype(np.int64)
    return np.where(idx < num_frames, idx, -1)


def _per_frame(values: np.ndarray, bins: np.ndarray, num_frames: int, hop_s: float, fps: float,
               reduce: str = "mean") -> np.ndarray:
    """Aggregate hop values [H, ...] into frames [T, ...] (mean, or median ignoring NaN); empty frames take the
    nearest hop."""
    values = np.asarray(values, np.float64)
    out = np.full((num_frames,) + values.shape[1:], np.nan)
    keep = bins >= 0
    if reduce == "mean":
        sums = np.zeros((num_frames,) + values.shape[1:])
        np.add.at(sums, bins[keep], values[keep])
        counts = np.bincount(bins[keep], minlength=num_frames).astype(np.float64)
        has = counts > 0
        out[has] = sums[has] / counts[has].reshape((-1,) + (1,) * (values.ndim - 1))
    else:
        order = np.argsort(bins[keep], kind="stable")
        b, v = bins[keep][order], values[keep][order]
        starts = np.searchsorted(b, np.arange(num_frames))
        stops = np.searchsorted(b, np.arange(num_frames), side="right")
        for t in np.flatnonzero(stops > starts):
            seg = v[starts[t]:stops[t]]
            seg = seg[np.isfinite(seg)]
            if len(seg):
                out[t] = np.median(seg)
        has = stops > starts
    empty = np.flatnonzero(~has)
    if len(empty) and len(values):
        nearest = np.clip(np.round((empty + 0.5) / fps / hop_s - 0.5).astype(np.int64), 0, len(values) - 1)
        out[empty] = values[nearest]
    return out


def frame_features(samples: np.ndarray, fps: float, num_frames: int,
                   config: FeatureConfig = FeatureConfig(), hops: HopFeatures | None = None) -> AudioFeatures:
    """Features of ``samples`` [S] (mono at ``config.sample_rate``) for ``num_frames`` video frames at ``fps``.

    Parameters
    ----------
    samples : [S] float mono. fps : video frame rate. num_frames : T (``thead.audio.io.num_frames_for``).
    config : analysis settings. hops : precomputed ``hop_features(samples, config)`` (computed when None).

    Returns
    -------
    AudioFeatures with [T] (and [T, n_mels]) arrays; see its docstring for units.
    """
    x = np.asarray(samples, np.float64).reshape(-1)
    sr = config.sample_rate
    hops = hop_features(x, config) if hops is None else hops
    edges = np.rint(np.arange(num_frames + 1) * (sr / fps)).astype(np.int64)
    csum = np.concatenate([[0.0], np.cumsum(x * x)])
    a, b = np.minimum(edges[:-1], len(x)), np.minimum(edges[1:], len(x))
    width = np.maximum(edges[1:] - edges[:-1], 1)  # samples past the end count as silence
    rms_db = 20.0 * np.log10(np.sqrt(np.maximum(csum[b] - csum[a], 0.0) / width) + 1e-8)

    bins = frame_bins(hops.num_hops, hops.hop_s, fps, num_frames)
    per = functools.partial(_per_frame, bins=bins, num_frames=num_frames, hop_s=hops.hop_s, fps=fps)
    mel = per(hops.mel_power)
    voicing = per(hops.voiced.astype(np.float64))
    return AudioFeatures(
        fps=float(fps), rms_db=rms_db, onset=per(hops.onset), f0_hz=per(hops.f0_hz, reduce="median"),
        voicing=voicing, voice_activity=per(hops.active.astype(np.float64)) >= 0.5,
        centroid_hz=per(hops.centroid_hz), low_high_db=per(hops.low_high_db),
        log_mel=np.log(np.maximum(mel, 1e-10)).astype(np.float32), hops=hops)


__all__ = ["AudioFeatures", "FeatureConfig", "HopFeatures", "frame_bins", "frame_features", "hop_features",
           "mel_filterbank", "voice_activity", "yin"]

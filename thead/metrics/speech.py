"""Speech metrics for audio-driven talking heads (issue 12, "Evaluation"): lip LMD aligned on the rigid face,
mouth-opening correlation with the real clip, AV offset and confidence without SyncNet, and ``speech_metrics``,
which gathers them with the head-motion and blink metrics for ``thead evaluate``.

Landmarks are ``(T, 478|68, 2|3)`` pixels (the 478-point mesh mapped to iBUG 68); audio is a file ffmpeg reads
or mono samples; per-frame curves have one value per video frame. Lags are in frames; a positive lag means the
second signal (the generated mouth, the mouth) follows the first (the real mouth, the audio).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from thead.errors import InputError
from thead.metrics.audio import read_audio
from thead.metrics.audio_features import onset_frames, onset_strength, speech_loudness
from thead.metrics.avsync import AVSync, av_sync, lagged_correlation, mouth_opening
from thead.metrics.blinks import BlinkConfig, blinks_from_landmarks
from thead.metrics.facemodel import similarity_procrustes
from thead.metrics.head_motion import (
    ANGLES,
    ChanceScore,
    beat_align_vs_chance,
    head_angle_std,
    speed_loudness_correlation,
    speed_wasserstein,
)
from thead.metrics.landmarks import EVAL_SIZE, rescale_landmarks, to_ibug68
from thead.metrics.result import MetricResult

#: iBUG points the lips are aligned on: eye corners (36, 39, 42, 45) and the nose (bridge 27-30, nostrils 31-35),
#: the parts of the face that do not move when speaking.
RIGID_POINTS = np.array([36, 39, 42, 45, 27, 28, 29, 30, 31, 32, 33, 34, 35])
#: iBUG lip points (outer 48-59, inner 60-67).
LIP_POINTS = np.arange(48, 68)
_EYE_OUTER = (36, 45)


# -------------------------------------------------------------------------------------------------- lip LMD

@dataclass(frozen=True)
class AlignedLMD:
    """Lip landmark distance after aligning each generated frame on the reference's eyes and nose.

    Attributes:
        normalized: (T,) mean lip-point distance divided by the reference's outer-eye-corner distance
            (unitless; 0.05 is 5 % of the eye distance).
        pixels: (T,) the same distance in pixels at the evaluation resolution.
    """

    normalized: np.ndarray
    pixels: np.ndarray


def aligned_mouth_lmd(generated: np.ndarray, reference: np.ndarray, image_size: Sequence[int] | int | None = None,
                      eval_size: Sequence[int] | int | None = EVAL_SIZE) -> AlignedLMD:
    """Mouth LMD with head pose and face size taken out: lips compared after a per-frame similarity alignment.

    For each frame, the similarity transform (rotation, uniform scale, translation; Umeyama least squares) that
    maps the generated eye corners and nose points (``RIGID_POINTS``) onto the reference's is applied to the
    generated lip points (``LIP_POINTS``, iBUG 48-67); ``LMD = mean_k ||lip_k^gen,aligned - lip_k^ref||_2``.
    Reported divided by the reference's eye distance (outer corners, iBUG 36-45) and in pixels at
    ``eval_size`` (default 256; give ``image_size`` when the landmarks were found on frames of another size).
    A still head whose mouth moves differs only in the lips; one that only turns or scales scores 0.

    Parameters
    ----------
    generated, reference : (T, 478|68, 2|3) pixels, same T.
    image_size : (height, width) or side of the frames the landmarks are in; None = already at ``eval_size``.
    eval_size : evaluation resolution for the pixel figure.

    Returns
    -------
    AlignedLMD with (T,) arrays; NaN where a frame has NaN landmarks or coinciding eye corners.
    """
    g = rescale_landmarks(to_ibug68(generated), image_size, eval_size)
    r = rescale_landmarks(to_ibug68(reference), image_size, eval_size)
    g, r = (g if g.ndim == 3 else g[None]), (r if r.ndim == 3 else r[None])
    if len(g) != len(r):
        raise ValueError(f"aligned_mouth_lmd: inputs have {len(g)} and {len(r)} frames; align them first")
    norm = np.full(len(g), np.nan)
    px = np.full(len(g), np.nan)
    used = np.r_[RIGID_POINTS, LIP_POINTS]
    for t in range(len(g)):
        if not (np.isfinite(g[t, used]).all() and np.isfinite(r[t, used]).all()):
            continue
        _, scale, rot, trans = similarity_procrustes(g[t, RIGID_POINTS], r[t, RIGID_POINTS])
        lips = scale * g[t, LIP_POINTS] @ rot.T + trans
        d = float(np.linalg.norm(lips - r[t, LIP_POINTS], axis=1).mean())
        iod = float(np.linalg.norm(r[t, _EYE_OUTER[0]] - r[t, _EYE_OUTER[1]]))
        px[t] = d
        if iod > 0:
            norm[t] = d / iod
    return AlignedLMD(norm, px)


def mouth_opening_correlation(generated: np.ndarray, reference: np.ndarray, max_lag: int = 5) -> AVSync:
    """Lagged Pearson correlation of the generated mouth opening with the real clip's (``mouth_opening``).

    ``r(lag) = corr(open_ref[t], open_gen[t + lag])`` for ``|lag| <= max_lag``; the result's ``best_lag`` > 0
    means the generated mouth follows the real one by that many frames, ``best_correlation`` is its r (NaN
    when a mouth does not move at all: a correlation with a constant is undefined).

    Parameters
    ----------
    generated, reference : (T, 478|68, 2|3) pixels (the shorter length is used).
    max_lag : frames.

    Returns
    -------
    AVSync (fields named for audio: here the "envelope" is the real mouth).
    """
    return av_sync(mouth_opening(reference), mouth_opening(generated), max_lag)


# ---------------------------------------------------------------------------------------------- AV offset

@dataclass(frozen=True)
class AVOffset:
    """Audio-visual offset and confidence from the lagged correlation of mouth opening with an audio curve.

    Attributes:
        offset: lag (frames) of the highest correlation; > 0: the mouth follows the audio (video late).
        confidence: ``max r - median r`` over all lags (SyncNet's "confidence" with correlation in place of its
            embedding distance): about 0 for a mouth unrelated to the audio, 0.2-0.3 for real speech clips
            measured here, up to ~1 for a mouth that is the audio curve shifted.
        best_correlation: r at ``offset``.
        lags, correlations: all lags and their r.
        signal: the audio curve used ("loudness" or "phone").
    """

    offset: int
    confidence: float
    best_correlation: float
    lags: np.ndarray
    correlations: np.ndarray
    signal: str = "loudness"


def av_offset(audio_curve: np.ndarray, mouth: np.ndarray, max_lag: int = 15, signal: str = "loudness") -> AVOffset:
    """AV offset and confidence of a mouth-opening curve against a per-frame audio curve.

    Parameters
    ----------
    audio_curve : (T,) per video frame: ``speech_loudness`` (dB) or a phone / voicing curve (e.g. how open the
        phonemes of a transcript alignment hold the mouth, or a voicing probability).
    mouth : (T,) ``mouth_opening`` (the shorter length is used).
    max_lag : lags ``-max_lag..max_lag`` frames (SyncNet searches +-15).
    signal : name of the audio curve, kept in the result.

    Returns
    -------
    AVOffset (offset 0 and NaN confidence when no lag could be measured, e.g. a mouth that never moves).
    """
    lags, corr = lagged_correlation(audio_curve, mouth, max_lag)
    if np.isnan(corr).all():
        return AVOffset(0, float("nan"), float("nan"), lags, corr, signal)
    i = int(np.nanargmax(corr))
    return AVOffset(int(lags[i]), float(corr[i] - np.nanmedian(corr)), float(corr[i]), lags, corr, signal)


def _samples(audio: str | Path | np.ndarray, sample_rate: int) -> np.ndarray:
    return read_audio(audio, sample_rate) if isinstance(audio, (str, Path)) else np.asarray(audio, np.float64)


def av_offsets(landmarks: np.ndarray, audio: str | Path | np.ndarray, fps: float, sample_rate: int = 16000,
               phone_curve: np.ndarray | None = None, max_lag: int = 15) -> dict[str, AVOffset]:
    """AV offset and confidence of one clip against its audio's loudness, and its phone curve when given.

    Parameters
    ----------
    landmarks : (T, 478|68, 2|3) pixels.
    audio : a file ffmpeg reads (``read_audio``: ``InputError`` when missing, without audio or silent) or mono
        samples at ``sample_rate``.
    fps : video frame rate.
    sample_rate : Hz of given samples, or to decode the file at.
    phone_curve : optional (T,) per-frame phone / voicing curve.
    max_lag : frames.

    Returns
    -------
    {"loudness": AVOffset} plus {"phone": AVOffset} when ``phone_curve`` is given.
    """
    mouth = mouth_opening(landmarks)
    x = _samples(audio, sample_rate)
    out = {"loudness": av_offset(speech_loudness(x, sample_rate, fps, len(mouth)), mouth, max_lag, "loudness")}
    if phone_curve is not None:
        out["phone"] = av_offset(phone_curve, mouth, max_lag, "phone")
    return out


@dataclass(frozen=True)
class AVOffsetComparison:
    """AV offset and confidence of a generated clip beside the real clip's own (same audio curves).

    Attributes:
        generated, reference: {"loudness" | "phone": AVOffset}.
    """

    generated: dict[str, AVOffset]
    reference: dict[str, AVOffset]

    def rows(self) -> list[str]:
        """One text line per audio curve, generated beside real, e.g. for a report."""
        lines = [f"{'signal':10s} {'offset gen':>10s} {'offset real':>11s} {'conf gen':>9s} {'conf real':>9s}"]
        def offset(o: AVOffset | None) -> str:
            return str(o.offset) if o is not None and np.isfinite(o.confidence) else "-"

        def conf(o: AVOffset | None) -> str:
            return f"{o.confidence:.3f}" if o is not None and np.isfinite(o.confidence) else "-"

        for key, g in self.generated.items():
            r = self.reference.get(key)
            lines.append(f"{key:10s} {offset(g):>10s} {offset(r):>11s} {conf(g):>9s} {conf(r):>9s}")
        return lines


def av_offset_comparison(generated: np.ndarray, reference: np.ndarray, audio: str | Path | np.ndarray, fps: float,
                         sample_rate: int = 16000, phone_curve: np.ndarray | None = None,
                         max_lag: int = 15) -> AVOffsetComparison:
    """``av_offsets`` of the generated clip and of the real clip, both against the same audio (decoded once).

    Parameters are those of ``av_offsets``; ``generated`` and ``reference`` are (T, 478|68, 2|3) landmarks.
    """
    x = _samples(audio, sample_rate)
    return AVOffsetComparison(av_offsets(generated, x, fps, sample_rate, phone_curve, max_lag),
                              av_offsets(reference, x, fps, sample_rate, phone_curve, max_lag))


# ------------------------------------------------------------------------------------------- speech_metrics

@dataclass(frozen=True)
class SpeechMetricsConfig:
    """Settings of ``speech_metrics``.

    Attributes:
        sample_rate: Hz to decode the audio at (or of the given samples).
        eval_size: resolution of the pixel LMD.
        mouth_max_lag: lags of the mouth-opening correlation, frames.
        av_max_lag: lags of the AV offset, frames.
        head_max_lag: lags of the speed-loudness correlation, frames.
        beat_sigma_s: Beat Align tolerance, seconds.
        shifts, seed, min_shift_s: shifted-audio chance levels.
        blinks: blink detection settings.
    """

    sample_rate: int = 16000
    eval_size: int = EVAL_SIZE
    mouth_max_lag: int = 5
    av_max_lag: int = 15
    head_max_lag: int = 10
    beat_sigma_s: float = 0.1
    shifts: int = 100
    seed: int = 0
    min_shift_s: float = 1.0
    blinks: BlinkConfig = field(default_factory=BlinkConfig)


def _value(name: str, value: float, count: int, per_frame: np.ndarray | None = None, why_nan: str = "",
           **details: Any) -> MetricResult:
    """A result, or ``unavailable`` with ``why_nan`` (or a generic reason) when ``value`` is not finite."""
    if not np.isfinite(value):
        return MetricResult.unavailable(name, why_nan or "no frame could be measured")
    details = {k: (None if isinstance(v, float) and not np.isfinite(v) else v) for k, v in details.items()}
    return MetricResult(name, float(value), per_frame=per_frame, count=int(count), details=details)


def _chance_result(name: str, c: ChanceScore, count: int) -> MetricResult:
    why = "score undefined: the head does not move, or the audio curve is constant"
    return _value(name, c.excess, count, why_nan=why, score=c.score, chance_mean=c.chance_mean, chance_std=c.chance_std,
                  z=c.z, shifts=c.shifts, best_lag=c.best_lag)


def speech_metrics(gen_landmarks: np.ndarray, ref_landmarks: np.ndarray, audio: str | Path | np.ndarray | None,
                   fps: float, gen_pose_deg: np.ndarray | None = None, ref_pose_deg: np.ndarray | None = None,
                   *, image_size: Sequence[int] | int | None = None, phone_curve: np.ndarray | None = None,
                   config: SpeechMetricsConfig = SpeechMetricsConfig()) -> dict[str, MetricResult]:
    """The speech, head-motion and blink metrics of a generated talking clip against the real clip.

    Paired metrics (LMD, mouth-opening r) use the first ``min(T, T')`` frames; per-clip metrics are given for
    both sides, ``*_generated`` beside ``*_reference``, so a report prints the real clip's own value next to the
    generated one. A metric that cannot be computed (no audio, silent audio, no pose, too few frames) is a
    ``MetricResult.unavailable`` with the reason; never a made-up number.

    Keys (units):
        mouth_lmd (eye distances; per_frame), mouth_lmd_px (pixels at ``config.eval_size``; per_frame):
            ``aligned_mouth_lmd``.
        mouth_open_r (Pearson r at the best lag), mouth_open_lag (frames; > 0: generated mouth late):
            ``mouth_opening_correlation``.
        av_offset_{generated,reference} (frames), av_confidence_{generated,reference} (r): ``av_offsets``
            with the speech loudness; ``av_phone_offset_*`` / ``av_phone_confidence_*`` with ``phone_curve``.
        head_std_{yaw,pitch,roll}_{generated,reference} (deg): ``head_angle_std``.
        head_speed_w1 (deg/s): ``speed_wasserstein``.
        head_speed_loudness_{generated,reference}: best lagged r of speed and loudness minus its
            shifted-audio chance level (details: score, chance_mean, chance_std, z, best_lag).
        head_beat_align_{generated,reference}: Beat Align minus its shifted-audio chance level (details as above).
        blink_rate_{generated,reference} (per minute), blink_duration_{generated,reference} (seconds;
            details: frames).

    Parameters
    ----------
    gen_landmarks, ref_landmarks : (T, 478|68, 2|3) and (T', 478|68, 2|3) pixels, in frames of ``image_size``.
    audio : the speech both clips go with: a file ffmpeg reads, mono samples at ``config.sample_rate``, or None.
    fps : frame rate of both clips.
    gen_pose_deg, ref_pose_deg : (T, 3+) and (T', 3+) yaw, pitch, roll in degrees (e.g. the fits' poses), or None.
    image_size : (height, width) or side of the landmark frames; None = already at ``config.eval_size``.
    phone_curve : optional (T,) per-frame phone / voicing curve of the audio.
    config : SpeechMetricsConfig.

    Returns
    -------
    {key: MetricResult}.
    """
    if fps <= 0:
        raise ValueError("fps must be positive")
    out: dict[str, MetricResult] = {}
    gen = to_ibug68(gen_landmarks)
    ref = to_ibug68(ref_landmarks)
    gen, ref = (gen if gen.ndim == 3 else gen[None]), (ref if ref.ndim == 3 else ref[None])
    n = min(len(gen), len(ref))
    note = {} if len(gen) == len(ref) else {"note": f"frames differ: generated {len(gen)}, reference {len(ref)}; "
                                                    f"paired metrics use the first {n}"}

    lmd = aligned_mouth_lmd(gen[:n], ref[:n], image_size, config.eval_size)
    ok = np.isfinite(lmd.normalized)
    out["mouth_lmd"] = _value("mouth_lmd", np.nanmean(lmd.normalized) if ok.any() else np.nan, ok.sum(),
                              lmd.normalized, **note)
    out["mouth_lmd_px"] = _value("mouth_lmd_px", np.nanmean(lmd.pixels) if ok.any() else np.nan, ok.sum(),
                                 lmd.pixels, eval_size=config.eval_size, **note)
    mo = mouth_opening_correlation(gen[:n], ref[:n], config.mouth_max_lag)
    if np.isfinite(mo.best_correlation):
        out["mouth_open_r"] = _value("mouth_open_r", mo.best_correlation, mo.frames_used, best_lag=mo.best_lag,
                                     r_at_zero=mo.correlation_at_zero, max_lag=config.mouth_max_lag, **note)
        out["mouth_open_lag"] = _value("mouth_open_lag", mo.best_lag, mo.frames_used, **note)
    else:
        reason = "mouth opening is constant on one side (a correlation with a still mouth is undefined)"
        out["mouth_open_r"] = MetricResult.unavailable("mouth_open_r", reason)
        out["mouth_open_lag"] = MetricResult.unavailable("mouth_open_lag", reason)

    sides = {"generated": gen, "reference": ref}
    for side, lm in sides.items():
        b = blinks_from_landmarks(lm, fps, config.blinks)
        out[f"blink_rate_{side}"] = _value(f"blink_rate_{side}", b.rate_per_min, len(lm), count_blinks=b.count,
                                           measured_s=b.measured_s)
        out[f"blink_duration_{side}"] = _value(f"blink_duration_{side}", b.mean_duration_s, b.count,
                                               why_nan=f"no complete blink in the {side} clip",
                                               frames=b.mean_duration_frames)

    samples, audio_reason = None, "no audio given"
    if audio is not None:
        try:
            samples = _samples(audio, config.sample_rate)
        except InputError as exc:
            audio_reason = str(exc)
    audio_keys = [f"av_{m}_{s}" for m in ("offset", "confidence") for s in sides]
    if phone_curve is not None:
        audio_keys += [f"av_phone_{m}_{s}" for m in ("offset", "confidence") for s in sides]
    if samples is None:
        for key in audio_keys:
            out[key] = MetricResult.unavailable(key, audio_reason)
    else:
        for side, lm in sides.items():
            for sig, res in av_offsets(lm, samples, fps, config.sample_rate, phone_curve, config.av_max_lag).items():
                prefix = "av" if sig == "loudness" else "av_phone"
                why = f"no lag measurable: the {side} mouth or the audio {sig} curve is constant"
                offset = res.offset if np.isfinite(res.confidence) else np.nan
                out[f"{prefix}_offset_{side}"] = _value(f"{prefix}_offset_{side}", offset, len(lm), why_nan=why,
                                                        best_correlation=res.best_correlation)
                out[f"{prefix}_confidence_{side}"] = _value(f"{prefix}_confidence_{side}", res.confidence, len(lm),
                                                            why_nan=why)

    poses = {"generated": gen_pose_deg, "reference": ref_pose_deg}
    for side, pose in poses.items():
        audio_led = (f"head_speed_loudness_{side}", f"head_beat_align_{side}")
        if pose is None:
            for key in [f"head_std_{a}_{side}" for a in ANGLES] + list(audio_led) + ["head_speed_w1"]:
                out[key] = MetricResult.unavailable(key, f"no head pose of the {side} clip given")
            continue
        pose = np.asarray(pose, dtype=np.float64)
        for a, v in zip(ANGLES, head_angle_std(pose)):
            out[f"head_std_{a}_{side}"] = _value(f"head_std_{a}_{side}", v, len(pose))
        if samples is None or len(pose) < 8:
            why = audio_reason if samples is None else f"{len(pose)} frames: too short for a chance level"
            for key in audio_led:
                out[key] = MetricResult.unavailable(key, why)
            continue
        loud = speech_loudness(samples, config.sample_rate, fps, len(pose))
        sl = speed_loudness_correlation(pose, loud, fps, config.head_max_lag, config.shifts, config.seed,
                                        config.min_shift_s)
        out[audio_led[0]] = _chance_result(audio_led[0], sl, len(pose))
        onsets = onset_frames(onset_strength(samples, config.sample_rate, fps, len(pose)), fps)
        ba = beat_align_vs_chance(pose, onsets, fps, config.beat_sigma_s, config.shifts, config.seed,
                                  config.min_shift_s)
        out[audio_led[1]] = _chance_result(audio_led[1], ba, len(pose))
    if gen_pose_deg is not None and ref_pose_deg is not None:
        if min(len(gen_pose_deg), len(ref_pose_deg)) < 2:
            out["head_speed_w1"] = MetricResult.unavailable("head_speed_w1", "a clip has fewer than 2 frames")
        else:
            out["head_speed_w1"] = _value("head_speed_w1", speed_wasserstein(gen_pose_deg, ref_pose_deg, fps),
                                          min(len(gen_pose_deg), len(ref_pose_deg)))
    return out

"""Metrics for talking-head videos, as reported by the seed papers (PECHead, HeadGAN, HiDe-NeRF, rhythmic head
motion, HifiHead): plain functions, batched in torch where it pays.

Conventions: frames are torch float ``(N, C, H, W)`` in [0, 1] or numpy ``uint8`` ``(N, H, W, 3)`` / ``(H, W, 3)``;
landmarks are pixel coordinates ``(N, 478|68, 2|3)``. Per-frame metrics return numpy ``float64`` arrays ``(N,)``
with NaN where a frame could not be measured; ``aggregate`` / ``aggregate_video`` summarise them and count the
skipped frames. Metrics that need network weights thead cannot ship (LPIPS, FID) and CSIM return a
``MetricResult`` that is either a value or ``available=False`` with the reason.

Groups:
    pixel       l1, mse, psnr, ssim, ms_ssim, pixel_metrics
    landmarks   akd, lmd, keypoint_distance, to_ibug68, rescale_landmarks
    facemodel   aed, pose_distance, rotation_distance, gaze_distance, au_agreement, unit_correlation,
                identity_shape_distance
    identity    csim, DlibFaceEmbedder, ArcFaceOnnxEmbedder, cosine_similarity, embedding_distance
    lpips / fid lpips, fid, fvd (unavailable), frechet_distance, frechet_distance_from_features
    temporal    landmark_jitter, luminance_flicker, relative_flicker
    avsync      read_audio, audio_rms_envelope, mouth_opening, av_sync, audio_visual_sync, lagged_correlation
    speech      aligned_mouth_lmd, mouth_opening_correlation, av_offset, av_offsets, av_offset_comparison,
                speech_metrics (speech, head-motion and blink metrics of a talking clip, for thead evaluate)
    audio_features  speech_loudness, onset_strength, onset_frames
    head_motion head_angle_std, angular_speed, speed_wasserstein, speed_loudness_correlation,
                beat_align_score, beat_align_vs_chance (scores a busy head wins: against shifted-audio chance)
    blinks      eye_aspect_ratio, detect_blinks, blinks_from_landmarks
    aggregate   aggregate, aggregate_video, align_lengths
"""

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from thead.metrics.aggregate import Alignment, Summary, VideoReport, aggregate, aggregate_video, align_lengths
    from thead.metrics.audio import read_audio
    from thead.metrics.audio_features import onset_frames, onset_strength, speech_loudness
    from thead.metrics.avsync import (
        AVSync,
        audio_rms_envelope,
        audio_visual_sync,
        av_sync,
        lagged_correlation,
        mouth_opening,
    )
    from thead.metrics.blinks import BlinkConfig, Blinks, blinks_from_landmarks, detect_blinks, eye_aspect_ratio
    from thead.metrics.facemodel import (
        AUAgreement,
        PoseDistance,
        aed,
        au_agreement,
        gaze_distance,
        identity_shape_distance,
        pose_distance,
        rotation_distance,
        similarity_procrustes,
        unit_correlation,
    )
    from thead.metrics.head_motion import (
        ChanceScore,
        angular_speed,
        beat_align_score,
        beat_align_vs_chance,
        head_angle_std,
        speed_loudness_correlation,
        speed_wasserstein,
    )
    from thead.metrics.fid import (
        feature_statistics,
        fid,
        frechet_distance,
        frechet_distance_from_features,
        fvd,
        inception_features,
        load_inception,
    )
    from thead.metrics.identity import (
        ArcFaceOnnxEmbedder,
        DlibFaceEmbedder,
        Embeddings,
        cosine_similarity,
        csim,
        embedding_distance,
    )
    from thead.metrics.landmarks import EVAL_SIZE, akd, keypoint_distance, lmd, rescale_landmarks, to_ibug68
    from thead.metrics.lpips import load_lpips, lpips
    from thead.metrics.pixel import l1, ms_ssim, mse, pixel_metrics, psnr, ssim
    from thead.metrics.result import MetricResult
    from thead.metrics.speech import (
        AlignedLMD,
        AVOffset,
        AVOffsetComparison,
        SpeechMetricsConfig,
        aligned_mouth_lmd,
        av_offset,
        av_offset_comparison,
        av_offsets,
        mouth_opening_correlation,
        speech_metrics,
    )
    from thead.metrics.temporal import FlickerComparison, landmark_jitter, luminance_flicker, relative_flicker

# Each public name -> its module: the modules (and the scipy and torch they import) load on first use, so a job
# that needs one function (``avsync.mouth_opening`` in ``thead edit``) does not pay for all of them.
_MODULES = {
    "aggregate": ('Alignment', 'Summary', 'VideoReport', 'aggregate', 'aggregate_video', 'align_lengths'),
    "audio": ('read_audio',),
    "audio_features": ('onset_frames', 'onset_strength', 'speech_loudness'),
    "avsync": ('AVSync', 'audio_rms_envelope', 'audio_visual_sync', 'av_sync', 'lagged_correlation', 'mouth_opening'),
    "blinks": ('BlinkConfig', 'Blinks', 'blinks_from_landmarks', 'detect_blinks', 'eye_aspect_ratio'),
    "facemodel": ('AUAgreement', 'PoseDistance', 'aed', 'au_agreement', 'gaze_distance', 'identity_shape_distance', 'pose_distance', 'rotation_distance', 'similarity_procrustes', 'unit_correlation'),
    "head_motion": ('ChanceScore', 'angular_speed', 'beat_align_score', 'beat_align_vs_chance', 'head_angle_std', 'speed_loudness_correlation', 'speed_wasserstein'),
    "fid": ('feature_statistics', 'fid', 'frechet_distance', 'frechet_distance_from_features', 'fvd', 'inception_features', 'load_inception'),
    "identity": ('ArcFaceOnnxEmbedder', 'DlibFaceEmbedder', 'Embeddings', 'cosine_similarity', 'csim', 'embedding_distance'),
    "landmarks": ('EVAL_SIZE', 'akd', 'keypoint_distance', 'lmd', 'rescale_landmarks', 'to_ibug68'),
    "lpips": ('load_lpips', 'lpips'),
    "pixel": ('l1', 'ms_ssim', 'mse', 'pixel_metrics', 'psnr', 'ssim'),
    "result": ('MetricResult',),
    "speech": ('AlignedLMD', 'AVOffset', 'AVOffsetComparison', 'SpeechMetricsConfig', 'aligned_mouth_lmd', 'av_offset', 'av_offset_comparison', 'av_offsets', 'mouth_opening_correlation', 'speech_metrics'),
    "temporal": ('FlickerComparison', 'landmark_jitter', 'luminance_flicker', 'relative_flicker'),
}
_WHERE = {name: module for module, names in _MODULES.items() for name in names}


# Functions named like their modules are bound now, as an import of the module would otherwise leave the package
# attribute the module (these modules import nothing heavy).
from thead.metrics.aggregate import aggregate  # noqa: E402
from thead.metrics.fid import fid  # noqa: E402
from thead.metrics.lpips import lpips  # noqa: E402


def __getattr__(name: str) -> Any:
    if name not in _WHERE:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"thead.metrics.{_WHERE[name]}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_WHERE))


__all__ = [
    "AVOffset", "AVOffsetComparison", "AlignedLMD", "BlinkConfig", "Blinks", "ChanceScore", "SpeechMetricsConfig",
    "aligned_mouth_lmd", "angular_speed", "av_offset", "av_offset_comparison", "av_offsets", "beat_align_score",
    "beat_align_vs_chance", "blinks_from_landmarks", "detect_blinks", "eye_aspect_ratio", "head_angle_std",
    "lagged_correlation", "mouth_opening_correlation", "onset_frames", "onset_strength", "speech_loudness",
    "speech_metrics", "speed_loudness_correlation", "speed_wasserstein",
    "AUAgreement", "AVSync", "Alignment", "ArcFaceOnnxEmbedder", "DlibFaceEmbedder", "EVAL_SIZE", "Embeddings",
    "FlickerComparison", "MetricResult", "PoseDistance", "Summary", "VideoReport", "aed", "aggregate",
    "aggregate_video", "akd", "align_lengths", "au_agreement", "unit_correlation", "audio_rms_envelope", "audio_visual_sync", "av_sync",
    "cosine_similarity", "csim", "embedding_distance", "feature_statistics", "fid", "frechet_distance",
    "frechet_distance_from_features", "fvd", "gaze_distance", "identity_shape_distance", "inception_features",
    "keypoint_distance", "l1", "landmark_jitter", "lmd", "load_inception", "load_lpips", "lpips",
    "luminance_flicker", "mouth_opening", "ms_ssim", "mse", "pixel_metrics", "pose_distance", "psnr", "read_audio",
    "relative_flicker", "rescale_landmarks", "rotation_distance", "similarity_procrustes", "ssim", "to_ibug68",
]

"""Where an audio-driven clip's mouth LMD comes from: render a talking clip's first frame with its own audio and
with parts of the motion swapped for the clip's own fitted values, and measure each render as ``thead evaluate``
measures an audio-drive output against the real clip (``aligned_mouth_lmd`` and ``mouth_opening_correlation`` on
the landmarks of both videos, found by the same preprocessing, in the real clip's evaluation crop at 256).

    python tools/decompose_mouth_lmd.py ../shared/data/videos/WDA_AlexandriaOcasioCortez_000.mp4 --work /tmp/w
    python tools/decompose_mouth_lmd.py Megamind.avi --source-frame 20 --work /tmp/w

Variants (each one JSON line: mouth LMD, mouth-open r and lag, the inner-lip gap's mean / std in eye distances,
generated and real, and the LMD left once the lips' mean offset and each frame's lip translation are taken out):

* ``generated``: ``audio_motion`` with default options (what ``thead audio-drive CLIP CLIP`` renders);
* ``still``: the same with ``mouth_scale=0`` (the quality bar's still mouth);
* ``real_units``: generated, but the mouth units (``MOUTH_UNITS``) are the clip's fitted ones, frame by frame
  (and the mouth residual the ``MouthResidualModel``'s at them);
* ``real_units_residual``: and the mouth region's residual is the clip's fitted one too;
* ``real_pose``: generated, but the head pose is the clip's fitted one (the mouth as generated);
* ``real_all``: the clip's whole fitted motion (pose, expression, gaze, residual): the renderer's and the
  landmark detector's floor.

``pose_leak`` is the LMD between the ``real_all`` and the ``real_units_residual`` renders: the same mouth on two
head motions, i.e. what the similarity alignment on eyes and nose leaves of a head-pose difference.
Maintenance script: not imported by the package.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from thead.audio import AudioDriveOptions, audio_motion, load_audio  # noqa: E402
from thead.audio.motion import RESIDUAL_REGION, own_reference, video_mouth_residual_model  # noqa: E402
from thead.engines.motion import mouth_region_weight  # noqa: E402
from thead.audio.motion_file import as_stored  # noqa: E402
from thead.audio.visemes import MOUTH_UNITS  # noqa: E402
from thead.engines.motion import TargetParams  # noqa: E402
from thead.jobs.evaluate import PREPROCESS_PARAMS, _eval_transforms, _landmarks_in  # noqa: E402
from thead.jobs.reenact import prepare_source  # noqa: E402
from thead.jobs.render import RenderOptions, make_engine, write_frames  # noqa: E402
from thead.metrics.facemodel import similarity_procrustes  # noqa: E402
from thead.metrics.landmarks import to_ibug68  # noqa: E402
from thead.metrics.speech import (_EYE_OUTER, LIP_POINTS, RIGID_POINTS, aligned_mouth_lmd,  # noqa: E402
                                  mouth_opening_correlation)
from thead.stages import FitParams, InputItem, ensure  # noqa: E402


def _copy(t: TargetParams, n: int) -> TargetParams:
    return TargetParams(pose=t.pose[:n].copy(), depth_offset=t.depth_offset[:n].copy(),
                        expression=t.expression[:n].copy(), residual=t.residual[:n].copy(), gaze=t.gaze[:n].copy(),
                        held=t.held[:n].copy(), expression_names=t.expression_names)


def variants(clip: Path, work: Path, source_frame: int) -> tuple[dict[str, TargetParams], float]:
    """The targets of each variant (see the module docstring) and the clip's fps."""
    src = ensure(InputItem(clip, clip.stem), work, PREPROCESS_PARAMS, FitParams())
    fit, fps = src.fit, float(src.fps)
    track = load_audio(clip)
    made, _ = audio_motion(track, fit, source_frame, fps, AudioDriveOptions())
    still, _ = audio_motion(track, fit, source_frame, fps, AudioDriveOptions(mouth_scale=0.0))
    n = min(made.num_frames, fit.num_frames)
    names = list(made.expression_names)
    mouth = [names.index(u) for u in MOUTH_UNITS]
    w = mouth_region_weight(np.asarray(fit.identity, np.float64), RESIDUAL_REGION)[None, :, None]
    out = {"generated": _copy(made, n), "still": _copy(still, n)}
    units = _copy(made, n)
    units.expression[:, mouth] = fit.expression[:n][:, mouth]
    if own_reference(fit) is not None:  # the mouth residual follows the units (MouthResidualModel): swap it too
        model = video_mouth_residual_model(fit)
        change = model.residual(units.expression[:, mouth]) - model.residual(made.expression[:n][:, mouth])
        units.residual = (units.residual + w * change).astype(np.float32)
    out["real_units"] = units
    both = _copy(units, n)
    both.residual = (both.residual + w * (fit.residual[:n] - both.residual)).astype(np.float32)
    out["real_units_residual"] = both
    pose = _copy(made, n)
    pose.pose = np.asarray(fit.pose[:n], np.float32).copy()
    pose.depth_offset = np.asarray(fit.depth_offset[:n], np.float32).copy()
    out["real_pose"] = pose
    full = replace(_copy(pose, n), expression=np.asarray(fit.expression[:n], np.float32).copy(),
                   residual=np.asarray(fit.residual[:n], np.float32).copy(),
                   gaze=np.asarray(fit.gaze[:n], np.float32).copy())
    out["real_all"] = full
    return out, fps


def render(clip: Path, work: Path, source_frame: int, targets: TargetParams, fps: float, out: Path) -> Path:
    src = ensure(InputItem(clip, clip.stem), work, PREPROCESS_PARAMS, FitParams())
    engine = make_engine(RenderOptions())
    prepared = prepare_source(engine, src, source_frame)
    stored = as_stored(targets)
    write_frames(out, engine.render_frames(prepared, stored, None), fps, 18, clip, None, len(stored))
    return out


def landmarks(video: Path, clip: Path, work: Path, size: int = 256) -> tuple[np.ndarray, np.ndarray]:
    """iBUG-68 landmarks (T, 68, 2) of ``video`` and of the real ``clip``, both in the clip's evaluation crop."""
    ref = ensure(InputItem(clip, clip.stem), work, PREPROCESS_PARAMS, FitParams())
    gen = ensure(InputItem(video, video.stem), work, PREPROCESS_PARAMS, FitParams())
    tr = _eval_transforms(ref, size)
    g, r = to_ibug68(_landmarks_in(gen, tr)), to_ibug68(_landmarks_in(ref, tr))
    n = min(len(g), len(r))
    return g[:n, :, :2], r[:n, :, :2]


def decompose(g: np.ndarray, r: np.ndarray) -> dict:
    """LMD and its parts for generated / real iBUG-68 landmarks (T, 68, 2) in the same crop."""
    lmd = aligned_mouth_lmd(g, r).normalized
    mo = mouth_opening_correlation(g, r)
    ok = np.isfinite(lmd)
    lips = np.full((len(g), len(LIP_POINTS), 2), np.nan)
    for t in np.flatnonzero(ok):
        _, s, rot, tr = similarity_procrustes(g[t, RIGID_POINTS], r[t, RIGID_POINTS])
        lips[t] = s * g[t, LIP_POINTS] @ rot.T + tr
    iod = np.linalg.norm(r[:, _EYE_OUTER[0]] - r[:, _EYE_OUTER[1]], axis=1)
    err = (lips - r[:, LIP_POINTS])[ok]
    static = err.mean(0)
    per_frame = err.mean(1, keepdims=True)

    def gap(p: np.ndarray) -> np.ndarray:  # inner lips 61-63 against 67-65, eye distances
        return np.linalg.norm(p[:, [13, 14, 15]] - p[:, [19, 18, 17]], axis=2).mean(1) / iod[ok]

    gg, rg = gap(lips[ok]), gap(r[ok][:, LIP_POINTS])
    return {"mouth_lmd": round(float(lmd[ok].mean()), 4), "mouth_open_r": round(float(mo.best_correlation), 3),
            "lag": int(mo.best_lag),
            "lmd_without_static_offset": round(float((np.linalg.norm(err - static, axis=2).mean(1)
                                                      / iod[ok]).mean()), 4),
            "lmd_without_frame_translation": round(float((np.linalg.norm(err - per_frame, axis=2).mean(1)
                                                          / iod[ok]).mean()), 4),
            "static_offset": round(float(np.linalg.norm(static, axis=1).mean() / iod[ok].mean()), 4),
            "gap_mean_std": [round(float(gg.mean()), 4), round(float(gg.std()), 4)],
            "real_gap_mean_std": [round(float(rg.mean()), 4), round(float(rg.std()), 4)]}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("clip", type=Path, help="a talking video with its audio")
    ap.add_argument("--work", type=Path, required=True, help="work directory (stage caches and the renders)")
    ap.add_argument("--source-frame", type=int, default=0)
    ap.add_argument("--only", nargs="*", help="variants to run (default: all)")
    args = ap.parse_args(argv)
    targets, fps = variants(args.clip, args.work, args.source_frame)
    videos = {}
    for name, t in targets.items():
        if args.only and name not in args.only:
            continue
        out = args.work / "decompose" / f"{args.clip.stem}__{name}.mp4"
        out.parent.mkdir(parents=True, exist_ok=True)
        videos[name] = render(args.clip, args.work, args.source_frame, t, fps, out)
        g, r = landmarks(videos[name], args.clip, args.work)
        print(json.dumps({"clip": args.clip.stem, "variant": name, **decompose(g, r)}), flush=True)
    if "real_all" in videos and "real_units_residual" in videos:
        a, _ = landmarks(videos["real_all"], args.clip, args.work)
        b, _ = landmarks(videos["real_units_residual"], args.clip, args.work)
        leak = aligned_mouth_lmd(b, a).normalized
        print(json.dumps({"clip": args.clip.stem, "variant": "pose_leak",
                          "mouth_lmd": round(float(np.nanmean(leak)), 4)}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

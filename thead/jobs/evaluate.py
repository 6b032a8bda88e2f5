"""Evaluation of generated videos against references, the way the seed papers report it.

Protocols: ``self`` (same-identity reconstruction: generated vs the real driving frames, frame by frame) and
``cross`` (cross-identity reenactment: identity against the source image, motion against the driver). Every
input is a ``Face`` record (``thead.stages.ensure``) under the item ids ``thead reenact`` gives the same files
(``eval_pairs``), so a driver or source reenact already preprocessed is reused as it is. Both sides are compared
in one crop: when the generated video has the reference's frame size, the reference's crop transforms are applied
to both sides; otherwise each side uses its own crop. Frames are cut from each input's original file, decoded
once, and compared at ``size`` pixels (default 256).
"""

from __future__ import annotations

import csv
import math
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Sequence

import cv2
import numpy as np

from thead.errors import InputError, path_problem
from thead.face import topology
from thead.face.crop import crop_frame
from thead.geometry import Affine2D
from thead.fitting import fit_sequence
from thead.io import IMAGE_SUFFIXES, VIDEO_SUFFIXES
from thead.metrics import (
    aed,
    aggregate,
    akd,
    au_agreement,
    audio_visual_sync,
    csim,
    gaze_distance,
    identity_shape_distance,
    landmark_jitter,
    lmd,
    lpips,
    pixel_metrics,
    pose_distance,
    relative_flicker,
    unit_correlation,
)
from thead.metrics.fid import (
    WEIGHTS_NAME as FID_WEIGHTS,
    fid,
    frechet_distance_from_features,
    fvd,
    inception_features,
    load_inception,
)
from thead.metrics.result import MetricResult
from thead.jobs.items import merge_item_groups
from thead.jobs.pairs import csv_lines, row_failure
from thead.progress import ProgressFn
from thead.stages import Face, FitParams, InputItem, ItemResult, PreprocessParams, ensure, item_id_for
from thead.weights import find_weights

MEDIA_SUFFIXES = IMAGE_SUFFIXES | VIDEO_SUFFIXES
# The stages' parameters evaluate uses: the defaults thead reenact uses (so their caches are shared), without the
# crop files (frames are cut from the originals at the evaluation size).
PREPROCESS_PARAMS = PreprocessParams(write_crop=False)


@dataclass(frozen=True)
class EvalPair:
    """A generated video, its reference (the driver) and, for cross-identity, the source image, as input items
    (``eval_pairs`` names them)."""

    generated: InputItem
    reference: InputItem
    source: InputItem | None = None

    @property
    def name(self) -> str:
        return self.generated.path.stem


def eval_pairs(rows: Sequence[tuple[Path, Path, Path | None]], roots: tuple[Path | None, Path | None] = (None, None)
               ) -> list[EvalPair]:
    """``EvalPair`` records for (generated, reference, source) paths, named as ``thead reenact`` names the same
    files: sources, then references (its drivers), then generated files through ``merge_item_groups``, each id
    the file's stem (or its path relative to ``roots`` = (generated root, reference root) for directories)."""
    gen_root, ref_root = roots
    sources = [InputItem(s, item_id_for(s)) for _, _, s in rows if s is not None]
    references = [InputItem(r, item_id_for(r, ref_root)) for _, r, _ in rows]
    generated = [InputItem(g, item_id_for(g, gen_root)) for g, _, _ in rows]
    src_items, ref_items, gen_items = merge_item_groups(sources, references, generated)
    by_source = iter(src_items)
    return [EvalPair(g, r, next(by_source) if row[2] is not None else None)
            for g, r, row in zip(gen_items, ref_items, rows)]


@dataclass(frozen=True)
class EvalParams:
    size: int = 256  # evaluation resolution, pixels
    protocol: str = "auto"  # "self", "cross" or "auto" (cross when a source is given and differs from the driver)
    align: str = "raise"  # "raise" on different frame counts, or "truncate" to the shorter (reported)
    csim_frames: int = 32  # frames sampled evenly for CSIM (dlib runs ~10 frames/s); 0 = all
    identity: bool = True  # compute CSIM
    arcface: str | None = None  # ArcFace ONNX file for CSIM instead of dlib
    network_metrics: bool = True  # LPIPS when its weights are on disk (else reported unavailable)
    device: str | None = None
    face_index: int | None = None  # which of several faces to follow (PreprocessParams.face_index)
    face_box: tuple[float, float, float, float] | None = None  # or the face nearest this box (pixels)


@dataclass
class PairReport:
    """Per-frame metrics (``per_frame``: name -> (T,) with NaN where unmeasured), per-video scalars, notes."""

    name: str
    generated: str
    reference: str
    source: str | None
    protocol: str
    frames: int
    fps: float
    per_frame: dict[str, np.ndarray] = field(default_factory=dict)
    scalars: dict[str, float | None] = field(default_factory=dict)
    unavailable: dict[str, str] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    features: dict[str, np.ndarray] = field(default_factory=dict)  # Inception pool3 per side, for set-level FID

    def summary(self) -> dict[str, dict]:
        return {k: aggregate(v).to_dict() for k, v in self.per_frame.items()}

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "generated": self.generated, "reference": self.reference, "source": self.source,
                "protocol": self.protocol, "frames": self.frames, "fps": self.fps, "metrics": self.summary(),
                "scalars": {k: _json_float(v) for k, v in self.scalars.items()}, "unavailable": self.unavailable,
                "notes": self.notes}


def _json_float(v: float | None) -> float | None:
    return None if v is None or (isinstance(v, float) and math.isnan(v)) else float(v)


# ----------------------------------------------------------------------------------------------------- pairing
def pairs_from_dirs(generated: Path, reference: Path) -> tuple[list[EvalPair], list[ItemResult]]:
    """Match files of two directories by relative path without suffix (``gen/a/x.mp4`` <-> ``ref/a/x.mov``);
    returns the pairs and a failure for each generated file without a reference."""
    def index(root: Path) -> dict[str, Path]:
        return {str(p.relative_to(root).with_suffix("")): p for p in sorted(root.rglob("*"))
                if p.is_file() and p.suffix.lower() in MEDIA_SUFFIXES}

    gen, ref = index(generated), index(reference)
    pairs = eval_pairs([(gen[k], ref[k], None) for k in gen if k in ref], (generated, reference))
    failures = [ItemResult(str(gen[k]), k, "failed", message=f"{gen[k]}: no reference named '{k}' in {reference}")
                for k in gen if k not in ref]
    if not gen:
        failures.append(ItemResult(str(generated), "", "failed", message=f"{generated}: no videos or images"))
    return pairs, failures


def pairs_from_csv(path: Path) -> tuple[list[EvalPair], list[ItemResult]]:
    """Rows ``generated,reference[,source]`` (header optional; relative paths from the CSV's folder). Also reads
    the manifest ``thead reenact`` writes (columns generated, source, driver, status).

    Returns the pairs of the good rows and one failed ``ItemResult`` per bad row (too few cells, an empty cell, a
    malformed line) naming the file and line; raises ``InputError`` when the file is unreadable or has no rows."""
    if not path.is_file():
        raise InputError(path, path_problem(path) or "file not found")
    lines = list(csv_lines(path))
    if not lines:
        raise InputError(path, "no rows")
    resolve = lambda c: (Path(c) if Path(c).is_absolute() else path.parent / c) if c else None  # noqa: E731
    pairs: list[tuple[Path, Path, Path | None]] = []
    failures: list[ItemResult] = []
    first = lines[0][1]
    header = [c.lower() for c in first] if isinstance(first, list) else []
    if "generated" in header:
        col = {name: header.index(name) for name in header}
        ref_col = col.get("reference", col.get("driver"))
        if ref_col is None:
            raise InputError(path, "needs a 'reference' or 'driver' column")
        gen_col = col["generated"]
        for number, r in lines[1:]:
            if isinstance(r, str):
                failures.append(row_failure(path, number, r))
                continue
            if "status" in col and col["status"] < len(r) and r[col["status"]] not in ("done", "skipped"):
                continue
            if max(gen_col, ref_col) >= len(r):
                failures.append(row_failure(path, number, f"expected {len(header)} cells, found {len(r)}"))
                continue
            if not r[gen_col] or not r[ref_col]:
                failures.append(row_failure(path, number, "empty generated or reference cell"))
                continue
            src = resolve(r[col["source"]]) if "source" in col and col["source"] < len(r) else None
            pairs.append((resolve(r[gen_col]), resolve(r[ref_col]), src))
        return eval_pairs(pairs), failures
    for number, r in lines:
        if isinstance(r, str):
            failures.append(row_failure(path, number, r))
            continue
        if len(r) < 2:
            failures.append(row_failure(path, number, "expected generated,reference[,source]"))
            continue
        if not r[0] or not r[1]:
            failures.append(row_failure(path, number, "empty generated or reference cell"))
            continue
        pairs.append((resolve(r[0]), resolve(r[1]), resolve(r[2]) if len(r) > 2 else None))
    return eval_pairs(pairs), failures


# ------------------------------------------------------------------------------------------------ preparation
def _eval_transforms(face: Face, size: int) -> np.ndarray:
    """The face's crop transforms (T, 2, 3), rescaled to map original pixels to a ``size`` evaluation crop."""
    return (face.transforms * (size / float(face.crop_size))).astype(np.float32)


def _frames(face: Face, transforms: np.ndarray, size: int) -> np.ndarray:
    """Crops (T, size, size, 3) uint8: the original frames of ``face`` (streamed once) cut with ``transforms``
    (original -> evaluation crop; the last one is reused past its end)."""
    last = len(transforms) - 1
    return np.stack([crop_frame(f, transforms[min(t, last)], size) for t, f in enumerate(face.originals())])


def _landmarks_in(face: Face, transforms: np.ndarray) -> np.ndarray:
    """Landmarks (T, N, 3) mapped into the evaluation crop by ``transforms``; NaN on frames where the face was
    not detected."""
    n = len(face.landmarks)
    tr = np.stack([transforms[min(t, len(transforms) - 1)] for t in range(n)])
    lm = Affine2D(tr).apply(face.landmarks).astype(np.float64)
    lm[~face.detected] = np.nan
    return lm


def _fit(landmarks: np.ndarray, size: int, fps: float, device: str | None):
    ok = np.isfinite(landmarks).all(axis=(1, 2))
    if landmarks.shape[1] != topology.NUM_POINTS or not ok.any():
        return None
    filled = np.where(ok[:, None, None], landmarks, np.nanmean(landmarks[ok], axis=0))
    return fit_sequence(filled.astype(np.float32), ok, size, smooth=len(ok) > 1, device=device, fps=fps)


# ------------------------------------------------------------------------------------------------- evaluation
def evaluate_pair(pair: EvalPair, params: EvalParams, workdir: Path, progress: ProgressFn | None = None,
                  grid_path: Path | None = None) -> PairReport:
    """All metrics for one pair; raises ``InputError`` for unreadable files, missing faces, or mismatched
    frame counts / rates (unless ``params.align == "truncate"``, which cuts to the shorter and says so).
    ``grid_path``: also write a side-by-side video there (source | driver | generated)."""
    for item in (pair.generated, pair.reference) + ((pair.source,) if pair.source else ()):
        if not item.path.is_file():
            raise InputError(item.path, "file not found")
    protocol = params.protocol
    if protocol == "auto":
        protocol = "cross" if pair.source is not None and pair.source.path.resolve() != \
            pair.reference.path.resolve() else "self"
    size = params.size
    step = lambda i: progress(i, 6) if progress else None  # noqa: E731
    faces: dict[InputItem, Face] = {}

    def face(item: InputItem) -> Face:
        if item not in faces:
            pre = replace(PREPROCESS_PARAMS, face_index=params.face_index, face_box=params.face_box)
            faces[item] = ensure(item, workdir, pre, FitParams(device=params.device))
        return faces[item]

    if pair.reference.path.suffix.lower() not in VIDEO_SUFFIXES | IMAGE_SUFFIXES:
        return _evaluate_audio_driven(pair, params, face(pair.generated), step)
    ref = face(pair.reference)
    step(1)
    gen = face(pair.generated)
    step(2)
    notes: list[str] = []
    fps_g, fps_r = gen.fps, ref.fps
    if abs(fps_g - fps_r) > 0.01:
        msg = f"frame rates differ: generated {fps_g:g} fps, reference {fps_r:g} fps"
        if params.align != "truncate":
            raise InputError(pair.generated, msg + " (resample one side, or pass --align truncate)")
        notes.append(msg + "; compared frame by frame")
    same_frame = gen.frame_size == ref.frame_size
    ref_tr = _eval_transforms(ref, size)
    if same_frame and protocol == "self":
        gen_tr = ref_tr
    else:  # each side in its own crop
        gen_tr = _eval_transforms(gen, size)
        if protocol == "self":
            notes.append("frame sizes differ: each side cropped around its own face")
    # Both sides are cut from their original frames (not the H.264 crop videos), so identical inputs compare
    # as identical.
    ref_frames = _frames(ref, ref_tr, size)
    gen_frames = ref_frames if gen is ref and gen_tr is ref_tr else _frames(gen, gen_tr, size)
    ref_lm = _landmarks_in(ref, ref_tr)
    gen_lm = _landmarks_in(gen, gen_tr)
    n_g, n_r = len(gen_frames), len(ref_frames)
    if n_g != n_r:
        msg = f"frame counts differ: generated {n_g}, reference {n_r}"
        if params.align != "truncate":
            raise InputError(pair.generated, msg + " (pass --align truncate to compare the first frames)")
        notes.append(msg + f"; truncated to {min(n_g, n_r)}")
    n = min(n_g, n_r)
    gen_frames, ref_frames, gen_lm, ref_lm = gen_frames[:n], ref_frames[:n], gen_lm[:n], ref_lm[:n]
    report = PairReport(pair.name, str(pair.generated.path), str(pair.reference.path),
                        str(pair.source.path) if pair.source else None, protocol, n, fps_g, notes=notes)
    pf = report.per_frame
    if protocol == "self":
        pf.update(pixel_metrics(gen_frames, ref_frames, device=params.device))
        pf["akd"] = akd(gen_lm, ref_lm, image_size=size, eval_size=size)
        pf["lmd"] = lmd(gen_lm, ref_lm, image_size=size, eval_size=size)
    step(3)
    fit_g = _fit(gen_lm, size, fps_g or 25.0, params.device)
    fit_r = _fit(ref_lm, size, fps_r or 25.0, params.device)
    if fit_g is not None and fit_r is not None:
        ok = np.isfinite(gen_lm).all(axis=(1, 2)) & np.isfinite(ref_lm).all(axis=(1, 2))
        nan_rows = lambda a: np.where(ok.reshape(-1, *([1] * (a.ndim - 1))), a, np.nan)  # noqa: E731
        pf["aed"] = nan_rows(aed(fit_g.expression[:n], fit_r.expression[:n]))
        pose = pose_distance(np.degrees(fit_g.pose[:n, :3]), np.degrees(fit_r.pose[:n, :3]))
        pf["apd"], pf["yaw_err"], pf["pitch_err"], pf["roll_err"] = (nan_rows(pose.apd), nan_rows(pose.yaw),
                                                                       nan_rows(pose.pitch), nan_rows(pose.roll))
        gz = lambda g: np.stack([g[:, [1, 0]], g[:, [3, 2]]], axis=1)  # (pitch, yaw) per eye  # noqa: E731
        pf["gaze_err"] = nan_rows(gaze_distance(gz(fit_g.gaze[:n]), gz(fit_r.gaze[:n]), degrees=False))
        au = au_agreement(fit_g.expression[:n], fit_r.expression[:n])
        pf["au_hamming"] = nan_rows(au.hamming)
        # How each unit follows the reference over time (Pearson r), and the mean over the units it moves.
        corr = unit_correlation(np.where(ok[:, None], fit_g.expression[:n], np.nan), fit_r.expression[:n],
                                units=list(fit_r.expression_names))
        report.scalars["unit_r_mean"] = corr.mean
        report.scalars.update({f"unit_r_{name}": r for name, r in corr.per_unit.items()})
        if protocol == "self":
            report.scalars["avd"] = float(np.mean(identity_shape_distance(fit_g.identity, fit_r.identity)))
    else:
        report.unavailable["face_model"] = "no face found in the frames of one side"
    step(4)
    jitter_g = landmark_jitter(np.nan_to_num(gen_lm), image_size=size, eval_size=size) if n > 2 else None
    jitter_r = landmark_jitter(np.nan_to_num(ref_lm), image_size=size, eval_size=size) if n > 2 else None
    if jitter_g is not None and jitter_r is not None:
        report.scalars["jitter_generated"] = float(np.nanmean(jitter_g))
        report.scalars["jitter_reference"] = float(np.nanmean(jitter_r))
    if n > 1:
        flick = relative_flicker(gen_frames, ref_frames)
        report.scalars["flicker_generated"] = float(flick.generated)
        report.scalars["flicker_reference"] = float(flick.reference)
    if params.identity:
        source = face(pair.source).original(0) if protocol == "cross" and pair.source is not None else None
        _identity(report, gen_frames, ref_frames, source, params)
    step(5)
    if params.network_metrics and protocol == "self":
        res = lpips(gen_frames, ref_frames, device=params.device)
        _take(report, res)
    if params.network_metrics and find_weights(FID_WEIGHTS) is not None:
        model = load_inception(params.device or "cpu")
        report.features = {"generated": inception_features(gen_frames, model),
                           "reference": inception_features(ref_frames, model)}
    if gen.has_audio and n > 8:
        try:
            sync = audio_visual_sync(gen.path, np.nan_to_num(gen.landmarks[:n]), fps_g or 25.0)
            report.scalars["av_correlation"] = float(sync.best_correlation)
            report.scalars["av_lag_frames"] = float(sync.best_lag)
        except InputError as exc:
            report.unavailable["av_sync"] = str(exc)
    if (gen.has_audio or ref.has_audio) and n > 8:
        _speech(report, gen_lm, ref_lm, ref.path if ref.has_audio else gen.path, fps_g or 25.0,
                np.degrees(gen.fit.pose[:n, :3]), np.degrees(ref.fit.pose[:n, :3]), size)
    if grid_path is not None:
        source_crop = ref_frames[0]
        if pair.source is not None and protocol == "cross":
            src = face(pair.source)
            source_crop = crop_frame(src.original(0), _eval_transforms(src, size)[0], size)
        write_grid(grid_path, source_crop, ref_frames, gen_frames, fps_g or 25.0)
    step(6)
    return report


def label(image: np.ndarray, text: str, scale: float = 0.5, origin: tuple[int, int] = (6, 18)) -> np.ndarray:
    """A copy of a uint8 image [H, W, 3] with ``text`` written at ``origin`` (x, y of the baseline's start, pixels;
    black on a white outline), the font ``scale`` times OpenCV's simplex size."""
    out = image.copy()
    for colour, thickness in (((255, 255, 255), 2), ((0, 0, 0), 1)):
        cv2.putText(out, text, origin, cv2.FONT_HERSHEY_SIMPLEX, scale, colour, thickness, cv2.LINE_AA)
    return out


def write_grid(path: Path, source: np.ndarray, driver: np.ndarray, generated: np.ndarray, fps: float) -> None:
    """A video of labelled columns source | driver | generated, each (size, size)."""
    from thead.io import VideoWriter

    src = label(source, "source")
    with VideoWriter(path, fps) as writer:
        for d, g in zip(driver, generated):
            writer.write(np.concatenate([src, label(d, "driver"), label(g, "generated")], axis=1))


MAIN_METRICS = ("l1", "psnr", "ssim", "ms_ssim", "lpips", "akd", "lmd", "aed", "apd", "gaze_err", "au_hamming",
                "csim")


def plot_report(report: PairReport, path: Path) -> None:
    """PNG of per-frame curves of the main metrics of one video."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = [k for k in MAIN_METRICS if k in report.per_frame and np.isfinite(report.per_frame[k]).any()]
    if not names:
        return
    cols = 3
    rows = (len(names) + cols - 1) // cols
    fig, axes = plt.subplots(rows, cols, figsize=(4 * cols, 2.4 * rows), squeeze=False)
    for ax, name in zip(axes.flat, names):
        v = report.per_frame[name]
        t = np.arange(len(v))
        ok = np.isfinite(v)
        ax.plot(t[ok], v[ok], lw=1, marker="." if ok.sum() < 40 else None)
        ax.set_title(f"{name}  (mean {np.nanmean(np.where(np.isinf(v), np.nan, v)):.3g})", fontsize=9)
        ax.set_xlabel("frame", fontsize=8)
        ax.tick_params(labelsize=7)
    for ax in list(axes.flat)[len(names):]:
        ax.axis("off")
    fig.suptitle(f"{report.name} ({report.protocol})", fontsize=10)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=90)
    plt.close(fig)


def reports_csv_text(reports: list[PairReport]) -> str:
    """The CSV report as text, one row per video: name, protocol, frames, then the mean of every metric and every
    scalar."""
    import io

    keys: list[str] = []
    for r in reports:
        for k in list(r.per_frame) + list(r.scalars):
            if k not in keys:
                keys.append(k)
    fh = io.StringIO(newline="")
    w = csv.writer(fh)
    w.writerow(["name", "protocol", "frames", "generated", "reference", "source"] + keys)
    for r in reports:
        summary = r.summary()
        row = [r.name, r.protocol, r.frames, r.generated, r.reference, r.source or ""]
        for k in keys:
            v = summary[k]["mean"] if k in summary else _json_float(r.scalars.get(k))
            row.append("" if v is None else f"{v:.6g}")
        w.writerow(row)
    return fh.getvalue()


def write_reports_csv(path: Path, reports: list[PairReport]) -> None:
    """Write ``reports_csv_text(reports)`` to ``path`` atomically."""
    import os

    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    with open(tmp, "w", newline="", encoding="utf8") as fh:
        fh.write(reports_csv_text(reports))
    os.replace(tmp, path)


def _speech(report: PairReport, gen_lm: np.ndarray, ref_lm: np.ndarray, audio: Path, fps: float,
            gen_pose_deg: np.ndarray, ref_pose_deg: np.ndarray, size: int, sides: tuple[str, ...] = ()) -> None:
    """The speech metrics (``thead.metrics.speech.speech_metrics``: mouth LMD, mouth-open r, AV offset and
    confidence, head std / speed / speed-loudness / Beat Align excess, blinks) into ``report``; landmarks (T, N, 3)
    in the ``size`` evaluation crop (NaN rows: no face), poses (T, 3) degrees. ``sides``: keep only the keys of
    these sides (e.g. ("generated",) when there is no reference face)."""
    from thead.metrics.speech import speech_metrics

    results = speech_metrics(gen_lm, ref_lm, audio, fps, gen_pose_deg, ref_pose_deg, image_size=size)
    for key, res in results.items():
        if sides and not any(key.endswith(f"_{side}") for side in sides):
            continue
        _take(report, res)


def _evaluate_audio_driven(pair: EvalPair, params: EvalParams, gen: Face, step) -> PairReport:
    """A generated clip whose "reference" is the audio it was driven by (``thead audio-drive``'s manifest): no
    reference face, so only the generated side's speech metrics (AV offset and confidence, head motion, blinks)."""
    size = params.size
    tr = _eval_transforms(gen, size)
    lm = _landmarks_in(gen, tr)
    n = len(lm)
    report = PairReport(pair.name, str(pair.generated.path), str(pair.reference.path),
                        str(pair.source.path) if pair.source else None, "audio", n, gen.fps,
                        notes=["reference is an audio file: the generated clip's speech metrics only"])
    step(3)
    if n > 8:
        pose = np.degrees(gen.fit.pose[:, :3])
        _speech(report, lm, lm, pair.reference.path, gen.fps or 25.0, pose, pose, size, sides=("generated",))
    else:
        report.unavailable["speech"] = f"{n} frames: too short for the speech metrics"
    step(6)
    return report


def _take(report: PairReport, res: MetricResult) -> None:
    if res.available and res.per_frame is not None:
        report.per_frame[res.name] = np.asarray(res.per_frame, np.float64)
    elif res.available:
        report.scalars[res.name] = res.value
    else:
        report.unavailable[res.name] = res.reason


def _identity(report: PairReport, gen_frames: np.ndarray, ref_frames: np.ndarray, source: np.ndarray | None,
              params: EvalParams) -> None:
    """CSIM on up to ``params.csim_frames`` sampled frames: against ``source`` (the source picture, uint8
    (H, W, 3), cross-identity; also ``csim_driver`` against the reference) or against the reference frames."""
    from thead.metrics import ArcFaceOnnxEmbedder

    n = len(gen_frames)
    idx = np.arange(n) if params.csim_frames <= 0 or n <= params.csim_frames else \
        np.unique(np.linspace(0, n - 1, params.csim_frames).round().astype(int))
    embedder = ArcFaceOnnxEmbedder(params.arcface) if params.arcface else None
    if source is not None:
        res = csim(gen_frames[idx], source[None], embedder=embedder)
        res_driver = csim(gen_frames[idx], ref_frames[idx], embedder=embedder)
        if res_driver.available:
            report.scalars["csim_driver"] = res_driver.value
    else:
        res = csim(gen_frames[idx], ref_frames[idx], embedder=embedder)
    if res.available:
        per = np.full(n, np.nan)
        per[idx] = res.per_frame
        report.per_frame["csim"] = per
        if res.details.get("skipped"):
            report.notes.append(f"csim: {res.details['skipped']} sampled frame(s) without a detectable face")
    else:
        report.unavailable["csim"] = res.reason


def distribution_metrics(reports: list[PairReport]) -> dict[str, MetricResult]:
    """Set-level metrics over all frames of all pairs: FID (when its weights are on disk, else unavailable with
    the reason) and FVD (unavailable: no I3D port)."""
    out = {"fvd": fvd()}
    if find_weights(FID_WEIGHTS) is None:
        out["fid"] = fid(np.zeros((0, 8, 8, 3), np.uint8), np.zeros((0, 8, 8, 3), np.uint8))  # the reason
        return out
    gen = [r.features["generated"] for r in reports if r.features]
    ref = [r.features["reference"] for r in reports if r.features]
    if not gen or sum(len(g) for g in gen) < 2:
        out["fid"] = MetricResult.unavailable("fid", "FID needs at least 2 evaluated frames")
        return out
    fg, fr = np.concatenate(gen), np.concatenate(ref)
    out["fid"] = MetricResult("fid", frechet_distance_from_features(fg, fr), count=len(fg),
                              details={"generated_frames": len(fg), "reference_frames": len(fr)})
    return out


def aggregate_reports(reports: list[PairReport]) -> dict[str, dict[str, float | int | None]]:
    """Across videos: mean and std of the per-video means of every metric and scalar, and how many videos."""
    values: dict[str, list[float]] = {}
    for r in reports:
        for k, s in r.summary().items():
            if s["mean"] is not None and not math.isnan(s["mean"]):
                values.setdefault(k, []).append(s["mean"])
        for k, v in r.scalars.items():
            if v is not None and math.isfinite(v):
                values.setdefault(k, []).append(float(v))
    with np.errstate(invalid="ignore"):  # std of an all-inf PSNR column is NaN, reported as such
        return {k: {"mean": float(np.mean(v)), "std": float(np.std(v)), "videos": len(v)} for k, v in values.items()}


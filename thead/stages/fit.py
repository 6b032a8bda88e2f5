"""The fit-3dmm stage: the 3D face model fitted to every frame of a preprocess result.

Writes ``<workdir>/<item>/fit3dmm/``: ``fit.safetensors`` + ``fit.json`` (see ``thead.fitting.FitResult``:
pose [T, 6] (yaw, pitch, roll degrees on disk, tx, ty px, scale px/cm), expression [T, E] with unit names,
gaze [T, 4] degrees, identity, residual, per-frame fit error), ``overlay.mp4`` with ``--overlay``, and
``meta.json`` (``FitMeta``). The stage is current while the preprocess result it was fitted to and its parameters
are unchanged.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

import cv2
import numpy as np

from thead.errors import InputError
from thead.face import topology
from thead.fitting import FitResult, fit_sequence, fit_sequences
from thead.io import VideoInfo, VideoWriter, iter_frames, read_image, write_image
from thead.progress import ProgressFn
from thead.stages.item import ItemResult
from thead.stages.preprocess import STAGE as PREPROCESS, PreprocessResult, load_preprocess
from thead.stages.store import StageInfo, StageMeta, file_digest, item_lock, stage_key, stamp, write_stage

STAGE = StageInfo("fit3dmm", 1)


@dataclass(frozen=True)
class FitParams:
    """Parameters that define a fit (all enter the cache key except ``overlay`` and ``device``)."""

    smooth: float = 1.0  # temporal smoothing strength (0 = off); single images are never smoothed
    iterations: int = 8
    model: str | None = None  # path of a PCA morphable model .npz; None = the built-in 478-point model
    overlay: bool = False
    device: str | None = None


@dataclass(frozen=True, kw_only=True)
class FitMeta(StageMeta):
    """``fit3dmm/meta.json``. ``source``: where the input was when it was preprocessed (a record, never used to
    find it). ``preprocess_key``: the key of the preprocess result this fit was made from."""

    STAGE = STAGE

    source: str
    preprocess_key: str
    params: FitParams
    num_frames: int
    fps: float
    crop_size: int
    kind: str
    mean_fit_error_px: float
    mean_fit_error_iod: float
    expression_names: tuple[str, ...]
    warnings: tuple[str, ...] = ()


def _load_model(params: FitParams):
    if params.model is None:
        return None
    from thead.facemodel import load_pca_model

    return load_pca_model(params.model)


def fit_key(pre: PreprocessResult, params: FitParams) -> str:
    """The cache key of fitting ``params`` to ``pre``."""
    key_params = {k: v for k, v in asdict(params).items() if k not in ("overlay", "device")}
    if params.model is not None:
        key_params["model"] = file_digest(params.model) if Path(params.model).is_file() else params.model
    return stage_key(STAGE, {PREPROCESS.name: pre.meta.key}, key_params)


def fit_item(
    preprocess_dir: Path,
    params: FitParams,
    force: bool = False,
    progress: ProgressFn | None = None,
) -> ItemResult:
    """Fit the face model to one preprocess result; writes the sibling ``fit3dmm`` folder.

    Parameters
    ----------
    preprocess_dir : a finished ``<workdir>/<item>/preprocess`` folder.
    params : the fit's parameters (``overlay`` and ``device`` do not enter the key).
    force : redo a current fit.
    progress : called with (steps done, steps total).

    Returns
    -------
    ItemResult with status "done" or "skipped" and ``output`` = the fit3dmm folder; raises ``InputError`` when the
    preprocess result is missing or holds nothing to fit. Holds the item folder's lock (``item_lock``).
    """
    with item_lock(Path(preprocess_dir).parent):
        return _fit_item(Path(preprocess_dir), params, force, progress)


@dataclass
class _FitJob:
    """One item's fit to make: its preprocess result, key, and the fit's inputs (``_plan_fit``)."""

    preprocess_dir: Path
    pre: PreprocessResult
    key: str
    smooth: float | bool
    fps: float


def _plan_fit(preprocess_dir: Path, params: FitParams, force: bool) -> ItemResult | _FitJob:
    """The "skipped" result of a current fit, or the job of making it; InputError for what cannot be fitted.
    Call with the item's lock held."""
    pre = load_preprocess(preprocess_dir)
    item_dir = preprocess_dir.parent
    stage_dir = item_dir / STAGE.name
    key = fit_key(pre, params)
    is_image = pre.meta.kind == "image"
    wants_overlay = params.overlay and not (stage_dir / ("overlay.png" if is_image else "overlay.mp4")).is_file()
    current = FitMeta.read(stage_dir)
    if not force and not wants_overlay and current is not None and current.key == key and _loads(item_dir):
        return ItemResult(pre.meta.source, item_dir.name, "skipped", str(stage_dir), "cache current")
    if params.overlay and pre.crop_path is None:
        raise InputError(preprocess_dir, "--overlay draws on the crops, and this preprocess result was made without "
                         "them (run thead preprocess on the input)")
    if pre.crop_landmarks.ndim != 3 or pre.crop_landmarks.shape[0] == 0:
        raise InputError(preprocess_dir, "preprocess result holds no landmarks")
    if params.model is None and pre.crop_landmarks.shape[1] != topology.NUM_POINTS:
        raise InputError(preprocess_dir, f"the built-in face model needs 478-point landmarks, this cache has "
                         f"{pre.crop_landmarks.shape[1]} (use --model with a PCA model for 68-point caches)")
    if not pre.valid.any():
        raise InputError(preprocess_dir, "no frame with a face to fit")
    is_video = pre.meta.kind == "video" and len(pre.valid) > 1
    return _FitJob(preprocess_dir, pre, key, params.smooth if is_video else False, pre.meta.fps or 25.0)


def _fit_item(preprocess_dir: Path, params: FitParams, force: bool, progress: ProgressFn | None) -> ItemResult:
    """``fit_item`` with the item's lock held."""
    job = _plan_fit(preprocess_dir, params, force)
    if isinstance(job, ItemResult):
        return job
    pre = job.pre
    fit = fit_sequence(pre.crop_landmarks, pre.valid, pre.meta.crop_size, smooth=job.smooth, device=params.device,
                       fps=job.fps, model=_load_model(params), iterations=params.iterations)
    return _write_fit(job, fit, params, progress)


def _write_fit(job: _FitJob, fit: FitResult, params: FitParams, progress: ProgressFn | None) -> ItemResult:
    """Write ``fit`` as the item's fit3dmm stage (with the overlay when asked). Call with the item's lock held."""
    pre, key = job.pre, job.key
    item_dir = job.preprocess_dir.parent
    stage_dir = item_dir / STAGE.name
    source = pre.meta.source
    size = pre.meta.crop_size
    fps = job.fps
    if progress:
        progress(1, 2 if params.overlay else 1)
    warnings = []
    if (~pre.valid).any():
        warnings.append(f"{int((~pre.valid).sum())} frame(s) without a face were filled by interpolation")
    iod = _inter_ocular(pre.crop_landmarks)
    err_rel = float(np.nanmean(fit.fit_error / np.maximum(iod, 1e-6)))
    written: dict = {}
    with write_stage(stage_dir, STAGE, key, written) as tmp:
        fit.save(tmp)
        if params.overlay:
            write_overlay(pre, fit, tmp, params, progress)
        meta = FitMeta(**stamp(STAGE, key), source=source, preprocess_key=pre.meta.key, params=params,
                       num_frames=fit.num_frames, fps=fps, crop_size=size, kind=pre.meta.kind,
                       mean_fit_error_px=float(np.nanmean(fit.fit_error)), mean_fit_error_iod=err_rel,
                       expression_names=tuple(fit.expression_names), warnings=tuple(warnings))
        written.update(meta.to_json())
    return ItemResult(source, item_dir.name, "done", str(stage_dir), warnings=warnings,
                      info={"frames": fit.num_frames, "fit_error_px": round(float(np.nanmean(fit.fit_error)), 3),
                            "fit_error_iod": round(err_rel, 4)})


class FitBatcher:
    """Fits items a group at a time, several items' frames in each solver step (``fit_sequences``): the way to fit
    a dataset of short clips or photos on a GPU, where one clip's frames leave most of the device idle.

    Called like ``fit_item`` for each item in the order given: the call for the first item of a group plans the
    next ``group_size`` items (skipping current caches and reporting bad ones as they would fail alone), fits
    them in one solve and writes each item's stage under its own lock; the later items' calls return their
    results. A group whose joint solve fails is fitted item by item, so one bad item fails alone.

    Parameters
    ----------
    preprocess_dirs : the items' preprocess folders, in the order the calls will come.
    params, force : as ``fit_item``.
    group_size : most items per solve.
    max_frames : most frames per solve (a group ends early at this many).
    """

    def __init__(self, preprocess_dirs: list[Path], params: FitParams, force: bool = False, group_size: int = 16,
                 max_frames: int = 50_000) -> None:
        self.order = [Path(d) for d in preprocess_dirs]
        self.params, self.force = params, force
        self.group_size, self.max_frames = max(1, int(group_size)), max(1, int(max_frames))
        self._results: dict[Path, ItemResult | Exception] = {}
        self._planned: set[Path] = set()

    def __call__(self, preprocess_dir: Path, progress: ProgressFn | None = None) -> ItemResult:
        d = Path(preprocess_dir)
        if d not in self._results:
            self._run_group(d, progress)
        out = self._results.pop(d)
        if isinstance(out, Exception):
            raise out
        return out

    def _group(self, first: Path) -> list[Path]:
        start = self.order.index(first) if first in self.order else len(self.order)
        group = [first]
        for d in self.order[start + 1:]:
            if len(group) >= self.group_size:
                break
            if d not in self._planned and d not in self._results and d not in group:
                group.append(d)
        return group

    def _run_group(self, first: Path, progress: ProgressFn | None) -> None:
        jobs: list[_FitJob] = []
        frames = 0
        for d in self._group(first):
            if d != first and frames >= self.max_frames:
                break
            self._planned.add(d)
            try:
                with item_lock(d.parent):
                    job = _plan_fit(d, self.params, self.force)
            except Exception as exc:  # noqa: BLE001 - reported by that item's own call
                self._results[d] = exc
                continue
            if isinstance(job, ItemResult):
                self._results[d] = job
            else:
                jobs.append(job)
                frames += len(job.pre.valid)
        if not jobs:
            return
        try:
            fits = fit_sequences([(j.pre.crop_landmarks, j.pre.valid) for j in jobs],
                                 [j.pre.meta.crop_size for j in jobs], [j.smooth for j in jobs],
                                 self.params.device, fps=[j.fps for j in jobs], model=_load_model(self.params),
                                 iterations=self.params.iterations)
        except Exception:  # noqa: BLE001 - one at a time, so that only a bad item fails
            fits = [None] * len(jobs)
        for job, fit in zip(jobs, fits):
            d = job.preprocess_dir
            try:
                with item_lock(d.parent):
                    if fit is None:
                        self._results[d] = _fit_item(d, self.params, self.force, progress if d == first else None)
                        continue
                    again = _plan_fit(d, self.params, self.force)  # another process may have written it meanwhile
                    self._results[d] = again if isinstance(again, ItemResult) and not self.force else \
                        _write_fit(job, fit, self.params, progress if d == first else None)
            except Exception as exc:  # noqa: BLE001
                self._results[d] = exc


def _inter_ocular(landmarks: np.ndarray) -> np.ndarray:
    """Inter-ocular distance (T,) px of 478-point landmarks (T, 478, 3): between the outer eye corners, the
    normalisation of the 300-W landmark benchmark."""
    if landmarks.shape[1] != topology.NUM_POINTS:
        return np.full(len(landmarks), np.nan)
    right = landmarks[:, topology.RIGHT_EYE_CORNERS[0], :2]
    left = landmarks[:, topology.LEFT_EYE_CORNERS[0], :2]
    return np.linalg.norm(right - left, axis=1)


def fitted_landmarks(fit: FitResult, with_residual: bool = False) -> np.ndarray:
    """Model landmarks (T, N, 3) px projected from a fit (without the residual: what the model explains)."""
    from thead.facemodel import load_face_model

    model = load_face_model()
    return model.posed(fit.pose, fit.identity, fit.expression, fit.residual if with_residual else None,
                       fit.gaze, fit.depth_offset)


_FEATURE_LOOPS = (topology.FACE_OVAL, topology.RIGHT_EYE, topology.LEFT_EYE, topology.LIPS_OUTER,
                  topology.LIPS_INNER)
_FEATURE_LINES = (topology.RIGHT_BROW[:5], topology.LEFT_BROW[:5])


def draw_fit(frame: np.ndarray, points: np.ndarray, fit_row: dict[str, float]) -> np.ndarray:
    """Draw the fitted mesh (faint edges, bright feature contours), irises and a pose readout on an RGB frame."""
    # OpenCV draws with pixel centres at the integers: shift from the package convention (centres at i + 0.5).
    xy = np.round((points[:, :2] - 0.5) * 4).astype(np.int32)  # 2 bits of sub-pixel precision
    edges = topology.mesh_edges()
    mesh = frame.copy()
    cv2.polylines(mesh, list(np.stack([xy[edges[:, 0]], xy[edges[:, 1]]], axis=1)), False, (80, 255, 120), 1,
                  cv2.LINE_AA, shift=2)
    out = cv2.addWeighted(frame, 0.75, mesh, 0.25, 0)
    cv2.polylines(out, [xy[i] for i in _FEATURE_LOOPS], True, (80, 255, 120), 1, cv2.LINE_AA, shift=2)
    cv2.polylines(out, [xy[i] for i in _FEATURE_LINES], False, (80, 255, 120), 1, cv2.LINE_AA, shift=2)
    for iris in (topology.RIGHT_IRIS, topology.LEFT_IRIS):
        r = int(np.linalg.norm(points[iris[1], :2] - points[iris[3], :2]) * 2)
        cv2.circle(out, tuple(xy[iris[0]]), max(r, 4), (255, 200, 0), 1, cv2.LINE_AA, shift=2)
    text = "yaw {yaw:+.0f} pitch {pitch:+.0f} roll {roll:+.0f}  jaw {jaw_open:.2f} smile {smile:.2f}".format(**fit_row)
    scale = out.shape[1] / 512
    cv2.putText(out, text, (4, int(16 * scale) + 4), cv2.FONT_HERSHEY_SIMPLEX, 0.45 * scale, (255, 255, 0), 1,
                cv2.LINE_AA)
    return out


def write_overlay(pre: PreprocessResult, fit: FitResult, folder: Path, params: FitParams,
                  progress: ProgressFn | None) -> None:
    """``overlay.mp4`` (videos) or ``overlay.png`` (images): the fitted mesh drawn over the crops."""
    points = fitted_landmarks(fit) if params.model is None else pre.crop_landmarks
    angles = np.degrees(fit.pose[:, :3])
    names = list(fit.expression_names)

    def row(t: int) -> dict[str, float]:
        e = fit.expression[t]
        smile = np.mean([e[names.index(n)] for n in ("smile_left", "smile_right") if n in names] or [0.0])
        return {"yaw": angles[t, 0], "pitch": angles[t, 1], "roll": angles[t, 2], "smile": smile,
                "jaw_open": e[names.index("jaw_open")] if "jaw_open" in names else 0.0}

    crop_path = pre.crop_path
    assert crop_path is not None
    if pre.meta.kind == "image":
        write_image(folder / "overlay.png", draw_fit(read_image(crop_path), points[0], row(0)))
        return
    size = pre.meta.crop_size
    info = VideoInfo(size, size, pre.meta.fps, pre.meta.num_frames, pre.meta.duration, False)  # no probe needed
    with VideoWriter(folder / "overlay.mp4", pre.meta.fps) as writer:
        for t, frame in enumerate(iter_frames(crop_path, info)):
            if t >= len(points):
                break
            writer.write(draw_fit(frame, points[t], row(t)))
            if progress:
                progress(len(points) + t + 1, 2 * len(points))


def _loads(item_dir: Path) -> bool:
    """Whether a finished fit's files can be read (a damaged fit.safetensors or fit.json makes it stale)."""
    try:
        load_fit(item_dir)
    except Exception:  # noqa: BLE001 - SafetensorError, a JSON error, a missing key: all mean "make it again"
        return False
    return True


def load_fit(item_dir: str | Path) -> FitResult:
    """The fit of an item folder (``<workdir>/<item>``); raises ``InputError`` when it has none."""
    stage_dir = Path(item_dir) / STAGE.name
    if FitMeta.read(stage_dir) is None:
        raise InputError(item_dir, "no finished fit-3dmm result here (run thead fit-3dmm)")
    try:
        return FitResult.load(stage_dir)
    except InputError:
        raise
    except Exception as exc:  # noqa: BLE001 - a damaged fit.safetensors (SafetensorError), fit.json, a missing key
        raise InputError(stage_dir, f"damaged fit-3dmm result ({type(exc).__name__}: {exc})") from exc

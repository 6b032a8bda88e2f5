"""The reenact job: a source face performs a driver's head motion and expressions.

Both inputs become ``Face`` records (``thead.stages.ensure``: preprocess and fit, cached); the source frame, its
surroundings and, with ``paste_back``, its full picture are cut from the source's original file, the driver's inner
mouth from the driver's original frames, and the audio comes from the driver's file: always the paths the job was
given, wherever the caches were made from.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
import itertools
from typing import Iterable, Iterator

import numpy as np

from thead.errors import InputError
from thead.io import write_image
from thead.jobs.pairs import Pair
from thead.jobs.render import (Paster, RenderOptions, encoder_queue_frames, engine_key, make_engine, output_file,
                               output_is_current, output_key, timed, write_frames, write_sidecar)
from thead.progress import ProgressFn
from thead.runtime import phase, prefetch
from thead.stages import Face, FitParams, ItemResult, PreprocessParams, ensure


@dataclass(frozen=True)
class ReenactParams:
    """Motion transfer options (see ``thead.engines.motion.transfer_motion``)."""

    mode: str = "relative"
    expression_scale: float = 1.0
    pose_scale: float = 1.0
    use_pose: bool = True
    use_expression: bool = True
    source_frame: int = 0
    mouth: str = "driver"  # "driver": the driver's inner mouth; "synth": synthesised cavity and teeth


def source_frame(face: Face, frame: int) -> int:
    """``frame`` checked as a source frame of ``face`` (a photo: 0): inside the clip, with a detected face."""
    if not face.is_video:
        return 0
    if not 0 <= frame < face.num_frames:
        raise InputError(face.path, f"--source-frame {frame} is outside the clip's {face.num_frames} frames")
    if not face.detected[frame]:
        raise InputError(face.path, f"no face detected in source frame {frame}; choose another with --source-frame")
    return frame


MATTE_CACHE = "source_matte"  # <item folder>/source_matte.npz: the engine's person matte of a source frame


def matte_key(engine, face: Face, frame: int) -> str:
    """Key of the cached person matte of frame ``frame`` of ``face``: the face's key (its file and stages), the
    frame, the canvas pad and the engine's settings (``MeshConfig`` digest)."""
    return output_key("person_matte", face.key, int(frame), engine.canvas_pad(face.crop_size), engine.key)


def held_mouth_frames(crops: Iterable[np.ndarray], landmarks: np.ndarray, valid: np.ndarray
                      ) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """The driver's (crop, crop landmarks) per frame for the inner mouth, with frames where the driver's face was
    lost held at the last frame that had one (frames before the first valid one take that first valid frame), so
    the mouth interior never becomes the picture of a faceless frame.

    Parameters
    ----------
    crops : the driver's crops, uint8 (S, S, 3) each, in frame order.
    landmarks : (T, N, 2) crop landmarks, pixels.
    valid : (T,) bool, whether frame t had a detected (or short-gap interpolated) face.

    Returns
    -------
    Iterator of (crop, landmarks) pairs, one per frame; all frames unchanged when none is valid.
    """
    valid = np.asarray(valid, bool)
    if valid.all() or not valid.any():
        yield from zip(crops, landmarks)
        return
    first = int(np.argmax(valid))
    waiting: list[int] = []
    last: tuple[np.ndarray, np.ndarray] | None = None
    for t, crop in enumerate(crops):
        if t >= len(valid):
            break
        if valid[t]:
            last = (crop, landmarks[t])
            for _ in waiting:  # the frames before the first valid one
                yield last
            waiting.clear()
            yield last
        elif last is None:
            waiting.append(t)
        else:
            yield last
    if waiting:  # the stream ended before the first valid frame (cannot happen when valid has one)
        raise InputError(None, f"driver frames ended before frame {first}")


MOUTH_CACHE = "mouth_patches"  # <item folder>/mouth_patches.npz: the driver's crops cut to its mouth
MOUTH_PATCH_MAX_FRAMES = 4500  # longer clips stream their crops each time (a cache of ~140 MB at most)
_MOUTH_MARGIN = 0.03  # of the crop side, around the mouth and the skin its colours are read from


def mouth_boxes(crop_landmarks: np.ndarray, valid: np.ndarray, size: int) -> tuple[np.ndarray, tuple[int, int]]:
    """Where each frame's crop holds what the render reads of the driver's mouth: one box size for the clip, a
    corner per frame.

    A frame's box holds the lips (``LIPS_OUTER``, ``LIPS_INNER``) and the skin around them that
    ``mouth_colour_stats`` samples (three times as far beyond each outer lip point as its inner point lies inside
    it), widened by ``_MOUTH_MARGIN`` of the crop side plus 3 pixels (the mouth map's stretch, the samples' blur);
    the clip's box size is the largest frame's, each frame's box centred on its own mouth and kept inside the crop.

    Parameters
    ----------
    crop_landmarks : (T, 478, >=2) crop landmarks, pixels.
    valid : (T,) bool, frames with a face.
    size : the crop side S (pixels).

    Returns
    -------
    corners : (T, 2) int64, each frame's box's (left, top) pixel; frames without a face get the crop's centre box.
    (h, w) : the box size, at most (S, S); the whole crop when no frame is valid.
    """
    from thead.face.topology import LIPS_INNER, LIPS_OUTER

    lm = np.asarray(crop_landmarks, np.float64)[..., :2]
    T = len(lm)
    ok = np.asarray(valid, bool)[:T] & np.isfinite(lm[:, LIPS_OUTER]).all((1, 2)) & np.isfinite(
        lm[:, LIPS_INNER]).all((1, 2))
    if not ok.any():
        return np.zeros((T, 2), np.int64), (size, size)
    outer, inner = lm[:, LIPS_OUTER], lm[:, LIPS_INNER]
    points = np.concatenate([outer, inner, 3.0 * outer - 2.0 * inner], 1)  # [T, 60, 2]
    lo, hi = points.min(1), points.max(1)
    margin = _MOUTH_MARGIN * size + 3.0
    w, h = (np.ceil((hi - lo)[ok].max(0) + 2.0 * margin).astype(int) + 1).clip(1, size)
    centre = np.where(ok[:, None], (lo + hi) / 2.0, size / 2.0)
    corners = np.floor(centre - np.array([w, h]) / 2.0).astype(np.int64)
    corners = np.clip(corners, 0, np.array([size - w, size - h]))
    return corners, (int(h), int(w))


def driver_mouth_frames(face: Face, shape: tuple[int, int] | None = None) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """The driver's mouth pictures for the render: ``held_mouth_frames`` of the crops cut to ``mouth_boxes``, with
    the landmarks moved into each cut's pixels (the render reads the same pixels as from the whole crops).
    ``shape`` (h, w): pad the cuts (edge pixels, below and right) to this size, at least their own (the drivers
    of one stream of batches must give pictures of one size).

    The cuts are kept in the driver's item folder (``MOUTH_CACHE``, keyed by the face's key and the box size; about
    30 KB a frame at 256) the first time the clip drives a render, as they stream by, so a later render (another
    source, other options, a rerun) decodes nothing of the driver: about 8 % of a warm ``thead reenact``. Clips
    over ``MOUTH_PATCH_MAX_FRAMES`` frames stream their crops every time."""
    from thead.stages.store import read_keyed_arrays, write_keyed_arrays

    corners, (h, w) = mouth_boxes(face.crop_landmarks, face.valid, face.crop_size)
    landmarks = np.array(face.crop_landmarks, np.float32)  # [T, N, 2 or 3]: x, y into each cut's pixels
    landmarks[..., :2] -= corners[:, None, :].astype(np.float32)
    path = face.item_dir / f"{MOUTH_CACHE}.npz"
    key = output_key("mouth_patches", face.key, h, w, _MOUTH_MARGIN, "2")
    pad = ((0, 0), (0, 0), (0, 0)) if shape is None else ((0, max(0, shape[0] - h)), (0, max(0, shape[1] - w)), (0, 0))

    def padded(patches: Iterable[np.ndarray]) -> Iterator[np.ndarray]:
        return iter(patches) if not any(a for _, a in pad) else (np.pad(p, pad, mode="edge") for p in patches)

    found = read_keyed_arrays(path, key)
    if found is not None and found["patches"].shape[:3] == (face.num_frames, h, w):
        yield from held_mouth_frames(padded(found["patches"]), landmarks, face.valid)
        return
    keep = face.num_frames <= MOUTH_PATCH_MAX_FRAMES

    def cut() -> Iterator[np.ndarray]:
        patches = []
        for t, crop in zip(range(face.num_frames), face.crops()):
            x, y = corners[t]
            patch = np.ascontiguousarray(crop[y:y + h, x:x + w])
            if keep:
                patches.append(patch)
                if len(patches) == face.num_frames:  # written before the last is handed on: nobody asks past it
                    try:
                        write_keyed_arrays(path, key, {"patches": np.stack(patches)})
                    except OSError:  # a folder that cannot be written costs only the cache
                        pass
            yield patch

    yield from held_mouth_frames(padded(cut()), landmarks, face.valid)


def prepare_source(engine, face: Face, frame: int):
    """``engine.prepare`` frame ``frame`` of ``face``: its crop with the picture around it (so hair and background
    beyond the crop come in from the picture when the head moves), all cut from the original.

    The engine's person matte (the segmentation: most of a prepare) is cached in the face's item folder
    (``Face.cached_arrays``, keyed by ``matte_key``), so a later job on the same source skips it; the prepared
    source is the same either way."""
    with phase("prepare"):
        crop = face.crop(frame)
        surroundings, picture = face.surroundings(frame, engine.canvas_pad(face.crop_size))
        matte = None
        if getattr(engine.config, "background", None) == "still":
            with phase("segment"):
                arrays = face.cached_arrays(MATTE_CACHE, matte_key(engine, face, frame),
                                            lambda: {"matte": engine.person_matte(crop, surroundings)})
            matte = arrays["matte"]
        return engine.prepare(crop, face.crop_landmarks[frame], face.fit, frame=frame, surroundings=surroundings,
                              picture=picture, matte=matte)


MOTION_SUFFIX = ".safetensors"


def is_motion_file(path: Path) -> bool:
    """True for a driver that is a motion file (``thead.audio.motion_file``) or a fit's ``fit.safetensors``."""
    return Path(path).suffix.lower() == MOTION_SUFFIX


def reenact_motion_file(pair: Pair, src: Face, out_dir: Path, params: ReenactParams, options: RenderOptions,
                        force: bool = False, progress: ProgressFn | None = None) -> ItemResult:
    """Render the motion file ``pair.driver`` (no preprocessing: its per-frame parameters are the motion) on the
    source face, relative to the motion's first frame (``MotionFile.as_fit``) or absolute (``params.mode``); a
    motion made for this very face and source frame (its meta's ``source_key``) with default transfer options is
    rendered exactly as it was made.
    Writes ``out_dir/<source>__<motion>.mp4`` at the motion's fps (25 when it has none), with the audio the motion
    was made from when its meta names an existing file."""
    from thead.audio.motion_file import load_motion
    from thead.engines.motion import READ_GAINS, TRANSFER_REVISION, transfer_motion
    from thead.jobs.audio_drive import file_digest

    motion = load_motion(pair.driver.path)
    fps = float(motion.fps or 25.0)
    audio = motion.meta.get("audio")
    audio = Path(audio) if audio and Path(audio).is_file() else None
    out = out_dir / f"{pair.name}.mp4"
    key = output_key("reenact-motion", src.key, file_digest(pair.driver.path), asdict(params), options.paste_back,
                     options.crf, engine_key(options), str(audio) if audio else "", sorted(READ_GAINS.items()),
                     TRANSFER_REVISION)
    label = str(pair.source.path)
    if not force and output_is_current(out, key):
        return ItemResult(label, pair.name, "skipped", str(out), "output current",
                          info={"driver": str(pair.driver.path)})
    frame = source_frame(src, params.source_frame)
    made_for_source = (motion.kind == "motion" and motion.meta.get("source_key") == src.key
                       and motion.meta.get("source_frame", 0) == frame and params == ReenactParams(
                           source_frame=params.source_frame, mouth=params.mouth))
    if made_for_source:  # the motion was made for this very face: rendered as it was made
        targets = motion.targets
    else:
        try:
            targets = transfer_motion(src.fit, motion.as_fit(src.crop_size), params.mode, params.expression_scale,
                                      params.pose_scale, params.use_pose, params.use_expression, source_frame=frame)
        except ValueError as exc:
            raise InputError(pair.driver.path, f"motion does not fit the source ({exc})") from exc
    warnings = [f"source: {w}" for w in src.warnings]
    engine = make_engine(options)
    prepared = prepare_source(engine, src, frame)
    if options.paste_back:
        paster = Paster(engine.device)
        original, to_crop = src.original(frame), src.transforms[frame]
        batches = (paster(b.frames, original, to_crop, b.changed, b.margin)
                   for b in engine.render_stream(engine.for_paste_back(prepared), targets))
    else:
        batches = engine.render_frames(prepared, targets, None)
    total = len(targets)
    write_frames(out, batches, fps, options.crf, audio, progress, total)
    write_sidecar(out, {"key": key, "source": str(pair.source.path), "driver": str(pair.driver.path),
                        "motion_kind": motion.kind, "as_made": made_for_source, "engine": engine.name, "params": asdict(params),
                        "paste_back": options.paste_back, "audio": str(audio) if audio else None,
                        "warnings": warnings})
    return ItemResult(label, pair.name, "done", str(out), warnings=warnings,
                      info={"driver": str(pair.driver.path), "frames": total, "motion_kind": motion.kind})


@dataclass
class _PairPlan:
    """One pair's render to make (``_plan_pair``): its faces, output, key, targets and warnings."""

    pair: Pair
    src: Face
    drv: Face
    out: Path
    key: str
    frame: int
    targets: object  # TargetParams
    held: np.ndarray
    warnings: list


def _plan_pair(pair: Pair, src: Face, workdir: Path, out_dir: Path, pre_params: PreprocessParams,
               fit_params: FitParams, params: ReenactParams, options: RenderOptions, force: bool,
               out_file: Path | None) -> ItemResult | _PairPlan:
    """The "skipped" result of a current output, or the plan of making it (driver a clip or a photo)."""
    from thead.engines.motion import READ_GAINS, TRANSFER_REVISION, transfer_motion

    drv = src if pair.driver == pair.source else ensure(pair.driver, workdir, pre_params, fit_params)
    out = output_file(out_file, out_dir, pair.name, not drv.is_video, pair.driver.path)
    key = output_key("reenact", src.key, drv.key, asdict(params), options.paste_back, options.crf,
                     engine_key(options), sorted(READ_GAINS.items()), TRANSFER_REVISION)
    if not force and output_is_current(out, key):
        return ItemResult(str(pair.source.path), pair.name, "skipped", str(out), "output current",
                          info={"driver": str(pair.driver.path)})
    warnings = [f"source: {w}" for w in src.warnings] + [f"driver: {w}" for w in drv.warnings]
    if src.crop_size != drv.crop_size:
        raise InputError(pair.driver.path, f"crop size {drv.crop_size} differs from the source's {src.crop_size}; "
                         "preprocess both with the same --size")
    frame = source_frame(src, params.source_frame)
    targets = transfer_motion(src.fit, drv.fit, params.mode, params.expression_scale, params.pose_scale,
                              params.use_pose, params.use_expression, source_frame=frame)
    held = np.flatnonzero(targets.held)
    if held.size:
        warnings.append(f"driver face lost in {held.size} frame(s) (first {held[0]}): last pose held")
    return _PairPlan(pair, src, drv, out, key, frame, targets, held, warnings)


def _finish_pair(plan: _PairPlan, engine, params: ReenactParams, options: RenderOptions) -> ItemResult:
    """The sidecar and result of a written output."""
    write_sidecar(plan.out, {"key": plan.key, "source": str(plan.pair.source.path),
                             "driver": str(plan.pair.driver.path), "engine": engine.name, "params": asdict(params),
                             "paste_back": options.paste_back, "held_frames": plan.held.tolist(),
                             "warnings": plan.warnings})
    return ItemResult(str(plan.pair.source.path), plan.pair.name, "done", str(plan.out), warnings=plan.warnings,
                      info={"driver": str(plan.pair.driver.path), "frames": len(plan.targets)})


def _render_clips(plans: list[_PairPlan], engine, prepared, params: ReenactParams, options: RenderOptions,
                  progress: ProgressFn | None) -> list[ItemResult]:
    """Render the video-driver plans of one source and source frame as one stream of target batches (a batch may
    hold the end of one pair and the start of the next: what fills a GPU when the clips are short), each frame
    going to its own pair's encoder, fed by a thread (``VideoWriter(queue_frames=...)``) while the next batch
    renders."""
    from contextlib import ExitStack

    from thead.engines.motion import TargetParams
    from thead.io import VideoWriter

    src, frame = plans[0].src, plans[0].frame
    paster = Paster(engine.device) if options.paste_back else None
    original, to_crop = (src.original(frame), src.transforms[frame]) if paster is not None else (None, None)
    if paster is not None:
        prepared = engine.for_paste_back(prepared)
    targets = plans[0].targets if len(plans) == 1 else TargetParams.concatenate([p.targets for p in plans])
    mouth = None
    if params.mouth == "driver":
        # The drivers' mouths (cut from their crops, decoded in a background thread while the engine renders the
        # first time, cached after that); frames where a driver's face was lost hold its last good mouth.
        sizes = [mouth_boxes(p.drv.crop_landmarks, p.drv.valid, p.drv.crop_size)[1] for p in plans]
        shape = (max(h for h, _ in sizes), max(w for _, w in sizes))
        streams = (driver_mouth_frames(p.drv, shape) for p in plans)
        mouth = prefetch(itertools.chain.from_iterable(streams), depth=2 * engine.batch_size)
    if paster is None:
        batches = timed(engine.render_frames(prepared, targets, mouth), "render")
    else:  # only what the render changed goes into the original picture
        batches = (paster(b.frames, original, to_crop, b.changed, b.margin)
                   for b in timed(engine.render_stream(prepared, targets, mouth), "render"))
    owner = np.repeat(np.arange(len(plans)), [len(p.targets) for p in plans])  # pair of each frame of the stream
    queued = encoder_queue_frames(original.shape if paster is not None else (src.crop_size, src.crop_size, 3))
    total, done = len(targets), 0
    with ExitStack() as stack:
        writers = [stack.enter_context(VideoWriter(p.out, p.drv.fps, crf=options.crf, queue_frames=queued,
                                                   audio_from=p.drv.path if p.drv.has_audio else None))
                   for p in plans]
        for batch in batches:
            for f in batch:
                writers[owner[done]].write(f)
                done += 1
            if progress:
                progress(done, total)
    return [_finish_pair(p, engine, params, options) for p in plans]


def reenact_group(pairs: list[Pair], workdir: Path, out_dir: Path, pre_params: PreprocessParams,
                  fit_params: FitParams, params: ReenactParams, options: RenderOptions, force: bool = False,
                  progress: ProgressFn | None = None) -> list[ItemResult | Exception]:
    """``reenact_pair`` for pairs of one source: the source is prepared once and the video drivers' frames are
    rendered as one stream of batches (``_render_clips``), so short clips fill the engine's batches (on a GPU a
    batch of 64 renders ~1.3x the frames/s of 16 end to end, see ``thead.jobs.render.CUDA_BATCH_SIZE``).

    Parameters
    ----------
    pairs : pairs with the same source item (a ValueError otherwise).
    workdir, out_dir, pre_params, fit_params, params, options, force, progress
        As ``reenact_pair``.

    Returns
    -------
    list
        Per pair, in order, its ItemResult or the exception it failed with (a bad driver fails alone; when the
        joint render fails, each pair is rendered alone).
    """
    if not pairs:
        return []
    if any(p.source != pairs[0].source for p in pairs):
        raise ValueError("reenact_group takes pairs of one source")
    results: dict[int, ItemResult | Exception] = {}
    try:
        src = ensure(pairs[0].source, workdir, pre_params, fit_params)
    except Exception as exc:  # noqa: BLE001 - every pair of this source fails with it
        return [exc] * len(pairs)
    plans: list[tuple[int, _PairPlan]] = []
    for k, pair in enumerate(pairs):
        try:
            if is_motion_file(pair.driver.path):
                results[k] = reenact_pair(pair, workdir, out_dir, pre_params, fit_params, params, options, force)
                continue
            plan = _plan_pair(pair, src, workdir, out_dir, pre_params, fit_params, params, options, force, None)
            if isinstance(plan, ItemResult):
                results[k] = plan
            elif not plan.drv.is_video:
                results[k] = reenact_pair(pair, workdir, out_dir, pre_params, fit_params, params, options, force)
            else:
                plans.append((k, plan))
        except Exception as exc:  # noqa: BLE001 - reported by that pair's own result
            results[k] = exc
    if plans:
        engine = make_engine(options)
        try:
            prepared = prepare_source(engine, src, plans[0][1].frame)
            done = _render_clips([p for _, p in plans], engine, prepared, params, options, progress)
            results.update({k: r for (k, _), r in zip(plans, done)})
        except Exception:  # noqa: BLE001 - one pair at a time, so that only a bad pair fails
            for k, plan in plans:
                try:
                    results[k] = reenact_pair(plan.pair, workdir, out_dir, pre_params, fit_params, params, options,
                                              force)
                except Exception as exc:  # noqa: BLE001
                    results[k] = exc
    return [results[k] for k in range(len(pairs))]


class ReenactBatcher:
    """Runs ``reenact_pair`` calls a source group at a time (``reenact_group``): the call for a pair renders it
    with the next pairs of the same source (up to ``group_size``, in the order given) and keeps their results for
    their own calls.

    Parameters
    ----------
    pairs : the pairs, in the order the calls will come.
    run_group : ``pairs -> results`` (``reenact_group`` with the job's settings bound).
    group_size : most pairs per group.
    """

    def __init__(self, pairs: list[Pair], run_group, group_size: int = 8) -> None:
        self.order = list(pairs)
        self.run_group = run_group
        self.group_size = max(1, int(group_size))
        self._results: dict[str, ItemResult | Exception] = {}
        self._started: set[str] = set()

    def __call__(self, pair: Pair) -> ItemResult:
        if pair.name not in self._results:
            group = [pair]
            for other in self.order:
                if len(group) >= self.group_size:
                    break
                if (other.source == pair.source and other.name != pair.name and other.name not in self._started
                        and other.name not in self._results):
                    group.append(other)
            self._started.update(p.name for p in group)
            for p, r in zip(group, self.run_group(group)):
                self._results[p.name] = r
        out = self._results.pop(pair.name)
        if isinstance(out, Exception):
            raise out
        return out


def reenact_pair(pair: Pair, workdir: Path, out_dir: Path, pre_params: PreprocessParams, fit_params: FitParams,
                 params: ReenactParams, options: RenderOptions, force: bool = False,
                 progress: ProgressFn | None = None, out_file: Path | None = None) -> ItemResult:
    """Make the source of ``pair`` perform the driver's motion; writes ``out_dir/<source>__<driver>.mp4``
    (or ``.png`` for a still driver; ``out_file`` instead when given) with the driver's audio.

    Parameters
    ----------
    pair : the source and driver items (their paths are where pictures and audio are read).
    workdir : the work directory of the stage caches.
    out_dir : the output folder.
    pre_params, fit_params : the stages' parameters for both faces.
    params : motion transfer options.
    options : rendering options.
    force : redo a current output.
    progress : called with (frames done, frames total).

    Returns
    -------
    ItemResult ("done" or "skipped"), ``output`` the written file; raises ``InputError`` for bad inputs.
    """
    src = ensure(pair.source, workdir, pre_params, fit_params)
    if is_motion_file(pair.driver.path):
        return reenact_motion_file(pair, src, out_dir, params, options, force, progress)
    plan = _plan_pair(pair, src, workdir, out_dir, pre_params, fit_params, params, options, force, out_file)
    if isinstance(plan, ItemResult):
        return plan
    engine = make_engine(options)
    prepared = prepare_source(engine, src, plan.frame)
    if plan.drv.is_video:
        return _render_clips([plan], engine, prepared, params, options, progress)[0]
    paster = Paster(engine.device) if options.paste_back else None
    with phase("render"):
        result = engine.render_full(prepared if paster is None else engine.for_paste_back(prepared), plan.targets)
    frame_out = result.frames[0] if paster is None else \
        paster(result.frames, src.original(plan.frame), src.transforms[plan.frame], result.changed, result.margin)[0]
    write_image(plan.out, frame_out)
    return _finish_pair(plan, engine, params, options)

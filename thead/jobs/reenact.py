"""Reenactment and editing jobs: make sure the preprocess and fit caches exist, compute target parameters,
render with an engine in batches, and write videos/photos (with the driver's audio) plus a manifest.

Outputs are products, not caches, but they are skipped the same way: each output has a sidecar
``.<name>.json`` holding the key of what made it (the caches it was made from and the parameters); a current
output is not made again unless forced.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable, Iterator

import numpy as np
import torch

from thead.cache import read_meta
from thead.engines.mesh_engine import ENGINE_VERSION
from thead.errors import InputError
from thead.fitting import FitResult
from thead.io import IMAGE_SUFFIXES, VideoWriter, iter_frames, read_image, write_image
from thead.pipeline.batch import InputItem, ItemResult
from thead.pipeline.fit import FitParams, fit_item, load_fit
from thead.pipeline.pairs import Pair
from thead.pipeline.preprocess import PreprocessParams, PreprocessResult, load_preprocess, preprocess_item

ProgressFn = Callable[[int, int], None]


@dataclass(frozen=True)
class RenderOptions:
    """How outputs are rendered and written."""

    paste_back: bool = False  # paste the crop result back into the source's full frame
    crf: int = 18
    device: str | None = None
    batch_size: int = 16
    symmetry: bool = True  # fill what the source turned away from its mirror image (MeshEngine(symmetry=...))


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


@dataclass(frozen=True)
class EditParams:
    """Edits (angles in degrees as the user gives them; see ``thead.engines.motion.edit_params``)."""

    yaw: float | None = None
    pitch: float | None = None
    roll: float | None = None
    frontalize: bool = False
    neutral: bool = False
    expression: tuple[tuple[str, float], ...] = ()
    gaze_yaw: float | None = None
    gaze_pitch: float | None = None
    orbit: bool = False  # a free-view video sweeping yaw and pitch instead of one edited photo
    orbit_frames: int = 75
    orbit_yaw: float = 25.0
    orbit_pitch: float = 8.0
    calibrate: int = 2  # photos: rounds of render -> measure -> correct (0 = render the asked values as they are)


@dataclass
class Prepared:
    """A face's caches: its preprocess result, its fit, and the item folder."""

    item_dir: Path
    pre: PreprocessResult
    fit: FitResult
    key: str
    warnings: list[str] = field(default_factory=list)


def ensure_fitted(item: InputItem, workdir: Path, pre_params: PreprocessParams, fit_params: FitParams) -> Prepared:
    """Preprocess and fit ``item`` (both cached) and load them; raises ``InputError`` when either fails."""
    res = preprocess_item(item, workdir, pre_params)
    if res.failed:
        raise InputError(item.path, res.message)
    stage = Path(res.output)
    fit_res = fit_item(stage, fit_params)
    if fit_res.failed:
        raise InputError(item.path, fit_res.message)
    meta = read_meta(stage.parent / "fit3dmm") or {}
    return Prepared(stage.parent, load_preprocess(stage), load_fit(stage.parent), meta.get("key", ""),
                    list(res.warnings) + list(fit_res.warnings))


def _engine(options: RenderOptions):
    from thead.engines.mesh_engine import MeshEngine

    return MeshEngine(device=options.device, batch_size=options.batch_size, symmetry=options.symmetry)


def _source_frame(prep: Prepared, frame: int) -> tuple[np.ndarray, int]:
    """The source crop image and its frame index (image: 0)."""
    pre = prep.pre
    if pre.meta["kind"] == "image":
        return read_image(pre.crop_path), 0
    n = len(pre.valid)
    if not 0 <= frame < n:
        raise InputError(pre.meta["source"], f"--source-frame {frame} is outside the clip's {n} frames")
    if not pre.detected[frame]:
        raise InputError(pre.meta["source"], f"no face detected in source frame {frame}; choose another with "
                         "--source-frame")
    for t, img in enumerate(iter_frames(pre.crop_path)):
        if t == frame:
            return img.copy(), frame
    raise InputError(pre.meta["source"], f"could not read source frame {frame}")


def _original_frame(prep: Prepared, frame: int) -> np.ndarray:
    src = Path(prep.pre.meta["source"])
    if src.suffix.lower() in IMAGE_SUFFIXES:
        return read_image(src)
    for t, img in enumerate(iter_frames(src)):
        if t == frame:
            return img.copy()
    raise InputError(src, f"could not read frame {frame}")


def _prepare_source(engine, prep: Prepared, image: np.ndarray, frame: int, warnings: list[str] | None = None,
                    original: np.ndarray | None = None):
    """``engine.prepare`` the crop ``image`` (frame ``frame`` of ``prep``) with its surroundings cut from the
    original picture (``original``, read when None), so hair and background beyond the crop come in from the
    picture when the head moves; without the original (moved or unreadable) the crop's mirror image stands in,
    and ``warnings`` says so."""
    from thead.face.crop import crop_surroundings

    size = int(image.shape[0])
    surroundings = picture = None
    try:
        if original is None:
            original = _original_frame(prep, frame)
        surroundings, picture = crop_surroundings(original, prep.pre.transforms[frame], size, engine.canvas_pad(size))
    except (InputError, OSError, ValueError) as err:
        if warnings is not None:
            warnings.append(f"original picture not readable ({err}): the crop's border is mirrored")
    return engine.prepare(image, prep.pre.crop_landmarks[frame], prep.fit, frame=frame, surroundings=surroundings,
                          picture=picture)


def _output_key(*parts: object) -> str:
    blob = json.dumps([p if isinstance(p, (str, int, float, bool, type(None))) else repr(p) for p in parts])
    return hashlib.blake2b(blob.encode(), digest_size=16).hexdigest()


def _sidecar(path: Path) -> Path:
    return path.with_name(f".{path.name}.json")


def output_is_current(path: Path, key: str) -> bool:
    """True when ``path`` exists and its sidecar records ``key``."""
    try:
        return path.is_file() and json.loads(_sidecar(path).read_text())["key"] == key
    except (OSError, ValueError, KeyError):
        return False


def _write_sidecar(path: Path, record: dict) -> None:
    side = _sidecar(path)
    tmp = side.with_name(side.name + f".tmp-{os.getpid()}")
    tmp.write_text(json.dumps(record, indent=2, default=str))
    os.replace(tmp, side)


class _Paster:
    """Pastes crop-space frames back into one full-size source frame (feathered, only the changed region)."""

    def __init__(self, original: np.ndarray, to_crop: np.ndarray, device: torch.device) -> None:
        from thead.render import frames_to_tensor

        self.frame = frames_to_tensor(original, device)
        self.to_crop = torch.as_tensor(np.asarray(to_crop, np.float32), device=device)[None]
        self.device = device

    def __call__(self, crops: np.ndarray, changed: np.ndarray | None) -> np.ndarray:
        from thead.render import frames_to_tensor, paste_back, tensor_to_frames

        c = frames_to_tensor(crops, self.device)
        b = c.shape[0]
        mask = None if changed is None else torch.as_tensor(changed, device=self.device)[:, None].float()
        out = paste_back(c, self.frame.expand(b, -1, -1, -1), self.to_crop.expand(b, -1, -1), crop_mask=mask)
        return tensor_to_frames(out)


def _write_frames(path: Path, batches: Iterator[np.ndarray], fps: float, crf: int, audio: Path | None,
                  progress: ProgressFn | None, total: int) -> int:
    done = 0
    with VideoWriter(path, fps, crf=crf, audio_from=audio) as writer:
        for batch in batches:
            for frame in batch:
                writer.write(frame)
            done += len(batch)
            if progress:
                progress(done, total)
    return done


def reenact_pair(pair: Pair, workdir: Path, out_dir: Path, pre_params: PreprocessParams, fit_params: FitParams,
                 params: ReenactParams, options: RenderOptions, force: bool = False,
                 progress: ProgressFn | None = None) -> ItemResult:
    """Make the source of ``pair`` perform the driver's motion; writes ``out_dir/<source>__<driver>.mp4``
    (or ``.png`` for a still driver) with the driver's audio."""
    from thead.engines.motion import transfer_motion

    src = ensure_fitted(pair.source, workdir, pre_params, fit_params)
    drv = ensure_fitted(pair.driver, workdir, pre_params, fit_params)
    still = drv.pre.meta["kind"] == "image"
    out = out_dir / f"{pair.name}{'.png' if still else '.mp4'}"
    key = _output_key("reenact", src.key, drv.key, asdict(params), options.paste_back, options.crf, ENGINE_VERSION,
                      options.symmetry)
    label = str(pair.source.path)
    if not force and output_is_current(out, key):
        return ItemResult(label, pair.name, "skipped", str(out), "output current",
                          info={"driver": str(pair.driver.path)})
    warnings = [f"source: {w}" for w in src.warnings] + [f"driver: {w}" for w in drv.warnings]
    if src.pre.meta["crop_size"] != drv.pre.meta["crop_size"]:
        raise InputError(pair.driver.path, f"crop size {drv.pre.meta['crop_size']} differs from the source's "
                         f"{src.pre.meta['crop_size']}; preprocess both with the same --size")
    image, frame = _source_frame(src, params.source_frame)
    targets = transfer_motion(src.fit, drv.fit, params.mode, params.expression_scale, params.pose_scale,
                              params.use_pose, params.use_expression, source_frame=frame)
    held = np.flatnonzero(targets.held)
    if held.size:
        warnings.append(f"driver face lost in {held.size} frame(s) (first {held[0]}): last pose held")
    engine = _engine(options)
    original = _original_frame(src, frame) if options.paste_back else None
    prepared = _prepare_source(engine, src, image, frame, warnings, original)
    total = len(targets)
    use_mouth = params.mouth == "driver" and not still
    if options.paste_back:
        paster = _Paster(original, src.pre.transforms[frame], engine.device)
    if still:
        result = engine.render_full(prepared, targets)
        frame_out = result.frames[0] if not options.paste_back else paster(result.frames, result.changed)[0]
        write_image(out, frame_out)
    else:
        mouth = zip(iter_frames(drv.pre.crop_path), drv.pre.crop_landmarks) if use_mouth else None
        batches = engine.render_frames(prepared, targets, mouth)
        if options.paste_back:
            batches = (paster(b, None) for b in batches)
        audio = Path(drv.pre.meta["source"]) if drv.pre.meta.get("has_audio") else None
        _write_frames(out, batches, float(drv.pre.meta["fps"]), options.crf, audio, progress, total)
    _write_sidecar(out, {"key": key, "source": str(pair.source.path), "driver": str(pair.driver.path),
                         "engine": engine.name, "params": asdict(params), "paste_back": options.paste_back,
                         "held_frames": held.tolist(), "warnings": warnings})
    return ItemResult(label, pair.name, "done", str(out), warnings=warnings,
                      info={"driver": str(pair.driver.path), "frames": total})


def _parsed_edit(params: EditParams) -> dict:
    rad = lambda v: None if v is None else float(np.radians(v))  # noqa: E731
    return {"yaw": rad(params.yaw), "pitch": rad(params.pitch), "roll": rad(params.roll),
            "frontalize": params.frontalize, "neutral": params.neutral, "expression": dict(params.expression),
            "gaze_yaw": params.gaze_yaw, "gaze_pitch": params.gaze_pitch}


def edit_item(item: InputItem, workdir: Path, out_dir: Path, pre_params: PreprocessParams, fit_params: FitParams,
              params: EditParams, options: RenderOptions, force: bool = False,
              progress: ProgressFn | None = None) -> ItemResult:
    """Edit one photo or video; writes ``out_dir/<item>_edit.png|mp4`` (``_orbit.mp4`` for ``--orbit``)."""
    from thead.engines.motion import edit_params, orbit_params

    prep = ensure_fitted(item, workdir, pre_params, fit_params)
    is_video = prep.pre.meta["kind"] == "video"
    suffix = "_orbit.mp4" if params.orbit else ("_edit.mp4" if is_video else "_edit.png")
    out = out_dir / f"{item.item_id}{suffix}"
    key = _output_key("edit", prep.key, asdict(params), options.paste_back, options.crf, ENGINE_VERSION,
                      options.symmetry)
    if not force and output_is_current(out, key):
        return ItemResult(str(item.path), item.item_id, "skipped", str(out), "output current")
    engine = _engine(options)
    warnings = list(prep.warnings)
    info: dict = {}
    if params.orbit:
        image, frame = _source_frame(prep, int(np.argmax(prep.pre.detected)) if is_video else 0)
        edited = _fit_with(prep.fit, edit_params(prep.fit, **_parsed_edit(params)), frame)
        targets = orbit_params(edited, params.orbit_frames, (-params.orbit_yaw, params.orbit_yaw),
                               (-params.orbit_pitch, params.orbit_pitch), frame=0)
        prepared = _prepare_source(engine, prep, image, frame, warnings)
        batches = engine.render_frames(prepared, targets)
        _write_frames(out, batches, 25.0, options.crf, None, progress, len(targets))
    elif not is_video:
        from thead.engines.calibrate import calibrated_edit

        image, _ = _source_frame(prep, 0)
        original = _original_frame(prep, 0) if options.paste_back else None
        prepared = _prepare_source(engine, prep, image, 0, warnings, original)
        result, measurement = calibrated_edit(lambda t: engine.render_full(prepared, t), lambda r: r.frames[0],
                                              prep.fit, _parsed_edit(params), rounds=params.calibrate,
                                              landmarks=prep.pre.crop_landmarks[0])
        info = {"asked": measurement.asked, "measured": measurement.measured, "rounds": measurement.rounds}
        frame_out = result.frames[0]
        if options.paste_back:
            frame_out = _Paster(original, prep.pre.transforms[0], engine.device)(
                result.frames, result.changed)[0]
        write_image(out, frame_out)
    else:
        total = len(prep.pre.valid)
        targets = edit_params(prep.fit, **_parsed_edit(params))
        batches = _edit_video_batches(engine, prep, targets, options)
        audio = Path(prep.pre.meta["source"]) if prep.pre.meta.get("has_audio") else None
        _write_frames(out, batches, float(prep.pre.meta["fps"]), options.crf, audio, progress, total)
    _write_sidecar(out, {"key": key, "input": str(item.path), "engine": engine.name, "params": asdict(params),
                         "paste_back": options.paste_back, "warnings": warnings, **info})
    return ItemResult(str(item.path), item.item_id, "done", str(out), warnings=warnings, info=info)


def _fit_with(fit: FitResult, targets, frame: int) -> FitResult:
    """A one-frame fit holding ``targets`` at ``frame`` (used to orbit an edited face)."""
    from dataclasses import replace

    sl = slice(frame, frame + 1)
    return replace(fit, pose=targets.pose[sl], depth_offset=targets.depth_offset[sl],
                   expression=targets.expression[sl], gaze=targets.gaze[sl], residual=targets.residual[sl],
                   fit_error=fit.fit_error[sl], valid=fit.valid[sl])


def _edit_video_batches(engine, prep: Prepared, targets, options: RenderOptions) -> Iterator[np.ndarray]:
    """Each frame of a video rendered as its own source at its edited targets (batch per frame group)."""
    frames = iter_frames(prep.pre.crop_path)
    originals = iter_frames(Path(prep.pre.meta["source"]))
    for t, image in enumerate(frames):
        if t >= len(targets):
            break
        original = next(originals, None)
        if not prep.pre.valid[t]:
            out = image[None]  # no face in this frame: left as it is
        else:
            if original is None:
                prepared = engine.prepare(image, prep.pre.crop_landmarks[t], prep.fit, frame=t)
            else:
                prepared = _prepare_source(engine, prep, image, t, original=original)
            result = engine.render_full(prepared, targets[t:t + 1])
            out = result.frames
            if options.paste_back and original is not None:
                out = _Paster(original, prep.pre.transforms[t], engine.device)(result.frames, result.changed)
        if options.paste_back and original is not None and not prep.pre.valid[t]:
            out = original[None]
        yield out

"""The edit job: change head pose, expression and gaze of a photo or a video with numbers.

A photo is rendered at its edited parameters (calibrated: render, measure, correct). A video is one source frame
(the first with a detected face, or ``EditParams.source_frame``) prepared ONCE and rendered in batches at every
frame's edited parameters, the clip itself driving the inner mouth (as ``thead reenact`` does with its driver);
with ``paste_back`` each rendered frame goes back into its own original frame. ``orbit``: a free-view video
sweeping yaw and pitch around the edited face.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Iterator

import numpy as np

from thead.face.crop import crop_frame
from thead.fitting import FitResult
from thead.io import write_image
from thead.jobs.reenact import prepare_source, source_frame
from thead.jobs.render import (Paster, RenderOptions, engine_key, make_engine, output_file, output_is_current, output_key,
                               timed,
                               write_frames, write_sidecar)
from thead.progress import ProgressFn
from thead.runtime import phase, prefetch
from thead.stages import Face, FitParams, InputItem, ItemResult, PreprocessParams, ensure


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
    source_frame: int | None = None  # videos: the frame rendered at every frame's edit (None: first with a face)

    def engine_edit(self) -> dict:
        """The keyword arguments of ``thead.engines.motion.edit_params`` (every angle in radians: the CLI's degrees converted here, at the edge)."""
        rad = lambda v: None if v is None else float(np.radians(v))  # noqa: E731
        return {"yaw": rad(self.yaw), "pitch": rad(self.pitch), "roll": rad(self.roll),
                "frontalize": self.frontalize, "neutral": self.neutral, "expression": dict(self.expression),
                "gaze_yaw": rad(self.gaze_yaw), "gaze_pitch": rad(self.gaze_pitch)}


def edit_item(item: InputItem, workdir: Path, out_dir: Path, pre_params: PreprocessParams, fit_params: FitParams,
              params: EditParams, options: RenderOptions, force: bool = False,
              progress: ProgressFn | None = None, out_file: Path | None = None) -> ItemResult:
    """Edit one photo or video; writes ``out_dir/<item>_edit.png|mp4`` (``_orbit.mp4`` for ``--orbit``), or
    ``out_file`` when given.

    Parameters
    ----------
    item : the input (its path is where pictures and audio are read).
    workdir : the work directory of the stage caches.
    out_dir : the output folder.
    pre_params, fit_params : the stages' parameters.
    params : the edits.
    options : rendering options.
    force : redo a current output.
    progress : called with (frames done, frames total).

    Returns
    -------
    ItemResult ("done" or "skipped"), ``output`` the written file, ``info`` the asked and measured values of a
    calibrated photo edit and ``unreachable`` (asked vs reached of what reads too far from the request; then also
    a warning); raises ``InputError`` for bad inputs.
    """
    from thead.engines.motion import edit_params, orbit_params

    face = ensure(item, workdir, pre_params, fit_params)
    suffix = "_orbit.mp4" if params.orbit else ("_edit.mp4" if face.is_video else "_edit.png")
    still = not params.orbit and not face.is_video
    out = output_file(out_file, out_dir, f"{item.item_id}{suffix}"[:-4], still, item.path)
    key = output_key("edit", face.key, asdict(params), options.paste_back, options.crf,
                     engine_key(options))
    if not force and output_is_current(out, key):
        return ItemResult(str(item.path), item.item_id, "skipped", str(out), "output current")
    engine = make_engine(options)
    warnings = list(face.warnings)
    info: dict = {}
    frame = source_frame(face, params.source_frame if params.source_frame is not None
                         else int(np.argmax(face.detected)))
    if params.orbit:
        edited = _fit_with(face.fit, edit_params(face.fit, **params.engine_edit()), frame)
        targets = orbit_params(edited, params.orbit_frames, (-params.orbit_yaw, params.orbit_yaw),
                               (-params.orbit_pitch, params.orbit_pitch), frame=0)
        batches = timed(engine.render_frames(prepare_source(engine, face, frame), targets), "render")
        write_frames(out, batches, 25.0, options.crf, None, progress, len(targets))
    elif not face.is_video:
        from thead.engines.calibrate import calibrated_edit

        prepared = prepare_source(engine, face, 0)
        if options.paste_back:  # the render covers the canvas around the crop too; the crop is what is measured
            prepared = engine.for_paste_back(prepared)
        m, s = prepared.margin, face.crop_size
        with phase("render"):
            result, measurement = calibrated_edit(lambda t: engine.render_full(prepared, t),
                                                  lambda r: r.frames[0][m:m + s, m:m + s],
                                                  face.fit, params.engine_edit(), rounds=params.calibrate,
                                                  landmarks=face.crop_landmarks[0])
        info = {"asked": measurement.asked, "measured": measurement.measured, "rounds": measurement.rounds,
                "unreachable": measurement.unreachable}
        if measurement.describe_unreachable():
            warnings.append(measurement.describe_unreachable())
        frame_out = result.frames[0]
        if options.paste_back:
            frame_out = Paster(engine.device)(result.frames, face.original(0), face.transforms[0], result.changed,
                                              result.margin)[0]
        write_image(out, frame_out)
    else:
        targets = edit_params(face.fit, **params.engine_edit())
        batches = timed(edit_video_batches(engine, face, targets, frame, options.paste_back), "render")
        write_frames(out, batches, face.fps, options.crf, face.path if face.has_audio else None, progress,
                     len(targets))
    write_sidecar(out, {"key": key, "input": str(item.path), "engine": engine.name, "params": asdict(params),
                        "paste_back": options.paste_back, "warnings": warnings, **info})
    return ItemResult(str(item.path), item.item_id, "done", str(out), warnings=warnings, info=info)


def _fit_with(fit: FitResult, targets, frame: int) -> FitResult:
    """A one-frame fit holding ``targets`` at ``frame`` (used to orbit an edited face)."""
    sl = slice(frame, frame + 1)
    return replace(fit, pose=targets.pose[sl], depth_offset=targets.depth_offset[sl],
                   expression=targets.expression[sl], gaze=targets.gaze[sl], residual=targets.residual[sl],
                   fit_error=fit.fit_error[sl], valid=fit.valid[sl])


# The clip's own mouth drives a frame's inner mouth while its opening is at least this share of the edited one:
# ``mouth_map`` stretches a driver's opening by at most 1.6, and a closed mouth stretched into an opened one shows
# lips where teeth and cavity belong, so there the synthesised interior is used.
CLIP_MOUTH_SHARE = 0.7


def clip_mouth_frames(engine, prepared, targets, crop_landmarks: np.ndarray) -> np.ndarray:
    """[B] bool: the frames whose own inner mouth (``crop_landmarks`` [B, 478, 3] of the clip) can fill the edited
    mouth of ``targets`` (openings as ``thead.metrics.avsync.mouth_opening``, inner-lip gap over eye span)."""
    from thead.metrics.avsync import mouth_opening

    edited = mouth_opening(engine.target_vertices(prepared, targets).float().cpu().numpy())
    own = mouth_opening(np.asarray(crop_landmarks, np.float32))
    with np.errstate(invalid="ignore"):
        return own >= CLIP_MOUTH_SHARE * edited


def edit_video_batches(engine, face: Face, targets, frame: int, paste_back: bool) -> Iterator[np.ndarray]:
    """uint8 batches [b, S, S, 3] (or [b, H, W, 3] with ``paste_back``) of a video edit.

    Frame ``frame`` of ``face`` is prepared once and rendered at ``targets`` (T edited targets, one per frame) in
    batches of ``engine.batch_size``, each frame's own crop driving the inner mouth where its mouth is open enough
    to fill the edited one (``clip_mouth_frames``; elsewhere the interior is synthesised); frames without a face
    are left as they are. The original frames are decoded once, as the batches are made.
    """
    prepared = prepare_source(engine, face, frame)
    paster = Paster(engine.device) if paste_back else None
    if paster is not None:
        prepared = engine.for_paste_back(prepared)
    size, n = face.crop_size, min(len(targets), face.num_frames)
    side = size + 2 * prepared.margin  # the renders: the crop and the canvas around it pasted back with it
    step = engine.batch_size

    def clip_batches() -> Iterator[tuple[slice, np.ndarray, np.ndarray]]:
        originals = face.originals()
        for start in range(0, n, step):
            sl = slice(start, min(start + step, n))
            frames = np.stack([next(originals) for _ in range(sl.stop - sl.start)])
            crops = np.stack([crop_frame(f, face.transforms[t], size) for t, f in enumerate(frames, sl.start)])
            yield sl, frames, crops

    def render_batch(batch_frames: tuple[slice, np.ndarray, np.ndarray]) -> np.ndarray:
        sl, frames, crops = batch_frames
        batch, landmarks = targets[sl], face.crop_landmarks[sl]
        out = np.empty((len(crops), side, side, 3), np.uint8)
        changed = np.empty((len(crops), side, side), np.float32)
        clip_mouth = clip_mouth_frames(engine, prepared, batch, landmarks)
        for use, idx in ((True, np.flatnonzero(clip_mouth)), (False, np.flatnonzero(~clip_mouth))):
            if idx.size:
                result = engine.render_full(prepared, batch[idx], crops[idx] if use else None,
                                            landmarks[idx] if use else None)
                out[idx], changed[idx] = result.frames, result.changed
        still = ~face.valid[sl]  # no face in these frames: left as they are
        if paster is not None:
            out = paster(out, frames, face.transforms[sl], changed, prepared.margin)
            out[still] = frames[still]
        else:
            out[still] = crops[still]
        return out

    # The original frames are decoded and cut in a background thread while the engine renders; on the CPU,
    # ``engine.render_workers`` batches render (and are pasted back) at once.
    batches = -(-n // step)
    depth = 2 + engine.render_workers(batches)
    yield from engine.map_batches(prepared, render_batch, prefetch(clip_batches(), depth=depth), batches)

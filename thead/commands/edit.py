"""`thead edit`: change head pose, expression and gaze of photos and videos with numbers."""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer

from thead.commands.common import (EngineName, EngineOption, HalfOption, WeightsOption, check_engine,
                                  DeviceOption, ForceOutputsOption, JsonOutputsOption, OutputCrfOption,
                                  RenderSizeOption, SymmetryOption, face_box_option, face_index_option, finish,
                                  number_option, output_target, parse_box, run_batch, AddressOption, ExecutorOption,
                                  RetryFailedOption, ShardOption, batch_executor, retry_inputs)
from thead.engines.motion import EXPRESSION_ALIASES, MAX_ANGLES_DEG, MAX_GAZE_DEG
from thead.facemodel.expressions import EXPRESSION_NAMES, expression_bounds
from thead.jobs.edit import EditParams, edit_item
from thead.jobs.items import collect_inputs
from thead.jobs.render import RenderOptions
from thead.stages.store import clean_stale_temps
from thead.stages import INPUT_SUFFIXES, FitParams, PreprocessParams

_UNIT = "Expression unit, 0 = neutral, 1 = full."
# Angles beyond what a warp of one photo can render are refused (not clamped): the limits of the engine.
_YAW, _PITCH, _ROLL = MAX_ANGLES_DEG
_LO, _HI = (dict(zip(EXPRESSION_NAMES, map(float, b))) for b in expression_bounds())


def _unit(name: str, help: str = _UNIT) -> Optional[float]:
    """The option of expression unit ``name`` (an alias such as "smile" takes its first unit's range)."""
    unit = EXPRESSION_ALIASES.get(name, (name,))[0]
    return number_option(None, help=help, lo=_LO[unit], hi=_HI[unit])


def edit(
    inputs: Optional[List[str]] = typer.Argument(None, help="Photos, videos, directories of them, or - for stdin."),
    output: Path = typer.Option(Path("thead-out"), "--output", "-o", help="Folder for the edited files, or the "
                                "output file (out.png, out.mp4) of a single input."),
    work: Path = typer.Option(Path("thead-work"), "--work", "-w", help="Work directory of the stage caches."),
    yaw: Optional[float] = number_option(None, help="Head yaw, degrees (absolute; + turns the nose to image "
                                         "right); larger turns are refused (the engine cannot render them).",
                                         lo=-_YAW, hi=_YAW),
    pitch: Optional[float] = number_option(None, help="Head pitch, degrees (absolute; + tilts the nose up); "
                                           "larger tilts are refused.", lo=-_PITCH, hi=_PITCH),
    roll: Optional[float] = number_option(None, help="Head roll, degrees (absolute; + turns clockwise on "
                                          "screen); larger rolls are refused.", lo=-_ROLL, hi=_ROLL),
    frontalize: bool = typer.Option(False, "--frontalize", help="Yaw, pitch and roll to 0 (explicit angles win)."),
    neutral: bool = typer.Option(False, "--neutral", help="Every expression unit to 0 first."),
    smile: Optional[float] = _unit("smile", f"{_UNIT[:-1]} (both sides)."),
    smile_left: Optional[float] = _unit("smile_left"),
    smile_right: Optional[float] = _unit("smile_right"),
    jaw_open: Optional[float] = _unit("jaw_open"),
    lips_part: Optional[float] = _unit("lips_part"),
    frown: Optional[float] = _unit("frown"),
    pucker: Optional[float] = _unit("pucker"),
    lip_stretch: Optional[float] = _unit("lip_stretch"),
    brow_raise: Optional[float] = _unit("brow_raise", f"{_UNIT[:-1]} (both sides)."),
    brow_raise_left: Optional[float] = _unit("brow_raise_left"),
    brow_raise_right: Optional[float] = _unit("brow_raise_right"),
    brow_lower: Optional[float] = _unit("brow_lower"),
    blink: Optional[float] = _unit("blink", f"{_UNIT[:-1]} (both eyes; 1 = closed)."),
    blink_left: Optional[float] = _unit("blink_left"),
    blink_right: Optional[float] = _unit("blink_right"),
    eye_wide: Optional[float] = _unit("eye_wide"),
    chin_raise: Optional[float] = _unit("chin_raise"),
    gaze_yaw: Optional[float] = number_option(None, help="Eye direction, degrees, both eyes (+ = image right).",
                                              lo=-MAX_GAZE_DEG, hi=MAX_GAZE_DEG),
    gaze_pitch: Optional[float] = number_option(None, help="Eye direction, degrees, both eyes (+ = up).",
                                                lo=-MAX_GAZE_DEG, hi=MAX_GAZE_DEG),
    orbit: bool = typer.Option(False, "--orbit", help="Write a free-view video sweeping yaw and pitch around the "
                               "(edited) face instead of one edited photo."),
    orbit_frames: int = number_option(75, help="Frames of the --orbit video (25 fps).", lo=1, hi=10000),
    orbit_yaw: float = number_option(25.0, help="--orbit sweeps yaw over +-this many degrees.", lo=0, hi=_YAW),
    orbit_pitch: float = number_option(8.0, help="--orbit sweeps pitch over +-this many degrees.", lo=0,
                                       hi=_PITCH),
    calibrate: int = number_option(2, help="Photos: rounds of render -> measure (landmarks + fit) -> correct, so "
                                   "the result reads as asked (0 = render the asked values as they are).", lo=0,
                                   hi=10),
    source_frame: Optional[int] = number_option(None, help="Videos: the frame whose picture is rendered at every "
                                                "frame's edited pose and expression (default: the first with a "
                                                "face).", lo=0, hi=10_000_000),
    paste_back: bool = typer.Option(False, "--paste-back", help="Paste the result into the full original frame."),
    symmetry: SymmetryOption = True,
    engine: EngineOption = EngineName.mesh,
    weights: WeightsOption = None,
    half: HalfOption = True,
    size: RenderSizeOption = 256,
    crf: OutputCrfOption = 18,
    device: DeviceOption = None,
    face_index: Optional[int] = face_index_option(),
    face_box: Optional[str] = face_box_option(),
    force: ForceOutputsOption = False,
    json_lines: JsonOutputsOption = False,
    shard: ShardOption = None,
    executor: ExecutorOption = "local",
    address: AddressOption = None,
    retry_failed: RetryFailedOption = None,
) -> None:
    """Edit head pose, expression and gaze: OUTPUT/<item>_edit.png (photos) or _edit.mp4 (videos, every frame,
    timing and audio kept), or _orbit.mp4 with --orbit."""
    units = {"smile": smile, "smile_left": smile_left, "smile_right": smile_right, "jaw_open": jaw_open,
             "lips_part": lips_part, "frown": frown, "pucker": pucker, "lip_stretch": lip_stretch,
             "brow_raise": brow_raise, "brow_raise_left": brow_raise_left, "brow_raise_right": brow_raise_right,
             "brow_lower": brow_lower, "blink": blink, "blink_left": blink_left, "blink_right": blink_right,
             "eye_wide": eye_wide, "chin_raise": chin_raise}
    params = EditParams(yaw=yaw, pitch=pitch, roll=roll, frontalize=frontalize, neutral=neutral,
                        expression=tuple((k, float(v)) for k, v in units.items() if v is not None),
                        gaze_yaw=gaze_yaw, gaze_pitch=gaze_pitch, orbit=orbit, orbit_frames=orbit_frames,
                        orbit_yaw=orbit_yaw, orbit_pitch=orbit_pitch, calibrate=calibrate, source_frame=source_frame)
    options = RenderOptions(paste_back=paste_back, crf=crf, device=device, symmetry=symmetry, engine=engine.value,
                            weights=weights, half=half)
    check_engine(options)  # missing or refused weights: one line, exit 1, before any work
    args = list(inputs or []) + retry_inputs(retry_failed, "edit")
    if not args and retry_failed is None:
        raise typer.BadParameter("give at least one input (or --retry-failed WORK)", param_hint="INPUTS")
    items, failures = collect_inputs(args, INPUT_SUFFIXES)
    pre_params = PreprocessParams(size=size, write_crop=False, face_index=face_index,  # edit cuts crops from the
                                  face_box=parse_box(face_box))                        # originals
    out_file = output_target(output, len(items))
    out_dir = output.parent if out_file is not None else output
    clean_stale_temps(out_dir)  # what killed runs left half-written
    results = run_batch("edit", items, lambda item, report: edit_item(item, work, out_dir, pre_params,
                                                                       FitParams(device=device), params, options,
                                                                       force, report, out_file), failures, json_lines,
                        shard=shard, executor=batch_executor(executor, address, device), workdir=work)
    finish("thead edit", results)

"""`thead edit`: change head pose, expression and gaze of photos and videos with numbers."""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer

from thead.commands.common import (DeviceOption, ForceOutputsOption, JsonOutputsOption, OutputCrfOption,
                                  RenderSizeOption, SymmetryOption, finish, run_batch)
from thead.jobs.edit import EditParams, edit_item
from thead.jobs.items import collect_inputs
from thead.jobs.render import RenderOptions
from thead.stages import INPUT_SUFFIXES, FitParams, PreprocessParams

_UNIT = "Expression unit, 0 = neutral, 1 = full"


def edit(
    inputs: List[str] = typer.Argument(..., help="Photos, videos, directories of them, or - for stdin."),
    output: Path = typer.Option(Path("thead-out"), "--output", "-o", help="Folder for the edited files."),
    work: Path = typer.Option(Path("thead-work"), "--work", "-w", help="Work directory of the stage caches."),
    yaw: Optional[float] = typer.Option(None, help="Head yaw, degrees (absolute; + turns the nose to image right)."),
    pitch: Optional[float] = typer.Option(None, help="Head pitch, degrees (absolute; + tilts the nose up)."),
    roll: Optional[float] = typer.Option(None, help="Head roll, degrees (absolute; + turns clockwise on screen)."),
    frontalize: bool = typer.Option(False, "--frontalize", help="Yaw, pitch and roll to 0 (explicit angles win)."),
    neutral: bool = typer.Option(False, "--neutral", help="Every expression unit to 0 first."),
    smile: Optional[float] = typer.Option(None, help=f"{_UNIT} (both sides)."),
    smile_left: Optional[float] = typer.Option(None, help=_UNIT),
    smile_right: Optional[float] = typer.Option(None, help=_UNIT),
    jaw_open: Optional[float] = typer.Option(None, help=_UNIT),
    lips_part: Optional[float] = typer.Option(None, help=_UNIT),
    frown: Optional[float] = typer.Option(None, help=_UNIT),
    pucker: Optional[float] = typer.Option(None, help=_UNIT),
    lip_stretch: Optional[float] = typer.Option(None, help=_UNIT),
    brow_raise: Optional[float] = typer.Option(None, help=f"{_UNIT} (both sides)."),
    brow_raise_left: Optional[float] = typer.Option(None, help=_UNIT),
    brow_raise_right: Optional[float] = typer.Option(None, help=_UNIT),
    brow_lower: Optional[float] = typer.Option(None, help=_UNIT),
    blink: Optional[float] = typer.Option(None, help=f"{_UNIT} (both eyes; 1 = closed)."),
    blink_left: Optional[float] = typer.Option(None, help=_UNIT),
    blink_right: Optional[float] = typer.Option(None, help=_UNIT),
    eye_wide: Optional[float] = typer.Option(None, help=_UNIT),
    chin_raise: Optional[float] = typer.Option(None, help=_UNIT),
    gaze_yaw: Optional[float] = typer.Option(None, help="Eye direction, degrees, both eyes (+ = image right)."),
    gaze_pitch: Optional[float] = typer.Option(None, help="Eye direction, degrees, both eyes (+ = up)."),
    orbit: bool = typer.Option(False, "--orbit", help="Write a free-view video sweeping yaw and pitch around the "
                               "(edited) face instead of one edited photo."),
    orbit_frames: int = typer.Option(75, help="Frames of the --orbit video (25 fps)."),
    orbit_yaw: float = typer.Option(25.0, help="--orbit sweeps yaw over +-this many degrees."),
    orbit_pitch: float = typer.Option(8.0, help="--orbit sweeps pitch over +-this many degrees."),
    calibrate: int = typer.Option(2, help="Photos: rounds of render -> measure (landmarks + fit) -> correct, so the "
                                  "result reads as asked (0 = render the asked values as they are)."),
    source_frame: Optional[int] = typer.Option(None, help="Videos: the frame whose picture is rendered at every "
                                               "frame's edited pose and expression (default: the first with a face)."),
    paste_back: bool = typer.Option(False, "--paste-back", help="Paste the result into the full original frame."),
    symmetry: SymmetryOption = True,
    size: RenderSizeOption = 256,
    crf: OutputCrfOption = 18,
    device: DeviceOption = None,
    force: ForceOutputsOption = False,
    json_lines: JsonOutputsOption = False,
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
    options = RenderOptions(paste_back=paste_back, crf=crf, device=device, symmetry=symmetry)
    items, failures = collect_inputs(inputs, INPUT_SUFFIXES)
    pre_params = PreprocessParams(size=size, write_crop=False)  # edit cuts crops from the originals
    results = run_batch("edit", items, lambda item, report: edit_item(item, work, output, pre_params,
                                                                       FitParams(device=device), params, options,
                                                                       force, report), failures, json_lines)
    finish("thead edit", results)

"""`thead reenact`: a source face performs a driver's head motion and expressions."""

from __future__ import annotations

from enum import Enum
from pathlib import Path
from typing import Optional

import typer

from thead.commands.common import (EngineName, EngineOption, HalfOption, WeightsOption, check_engine,
                                  AddressOption, BatchSizeOption, DeviceOption, ExecutorOption, ForceOutputsOption,
                                  JsonOutputsOption, OutputCrfOption, RenderSizeOption, ShardOption, SymmetryOption,
                                  batch_executor, face_box_option, face_index_option, finish, number_option,
                                  output_target, own_shard, parse_box, run_batch, stderr_console, write_or_keep)
from thead.errors import InputError
from thead.run import parse_shard
from thead.jobs.items import InputItem, collect_inputs, merge_item_groups
from thead.jobs.pairs import ManifestRow, Pair, cross_pairs, manifest_text, read_pairs_csv



class Mode(str, Enum):
    relative = "relative"
    absolute = "absolute"


class Mouth(str, Enum):
    driver = "driver"
    synth = "synth"


def reenact(
    source: Optional[Path] = typer.Argument(None, help="Source photo or video (its --source-frame), or a directory "
                                            "of them."),
    driver: Optional[Path] = typer.Argument(None, help="Driving video or photo, a motion file (.safetensors, "
                                            "from thead audio-drive --export-motion, or a fit), or a directory."),
    pairs: Optional[Path] = typer.Option(None, "--pairs", help="CSV of source,driver rows instead of SOURCE DRIVER."),
    output: Path = typer.Option(Path("thead-out"), "--output", "-o", help="Folder for the videos and manifest.csv, "
                                "or the output file (out.mp4, out.png) of a single job."),
    work: Path = typer.Option(Path("thead-work"), "--work", "-w", help="Work directory of the stage caches."),
    mode: Mode = typer.Option(Mode.relative, help="relative: the driver's change from its first frame is applied "
                              "to the source's own pose and expression; absolute: the driver's pose and expression "
                              "as they are."),
    expression_scale: float = number_option(1.0, help="Multiply the transferred expression change.", lo=0, hi=3),
    pose_scale: float = number_option(1.0, help="Multiply the transferred head rotation and movement.", lo=0,
                                      hi=3),
    no_pose: bool = typer.Option(False, "--no-pose", help="Keep the source's head pose."),
    no_expression: bool = typer.Option(False, "--no-expression", help="Keep the source's expression."),
    source_frame: int = number_option(0, help="Frame of a source video to animate (0 = first).", lo=0),
    mouth: Mouth = typer.Option(Mouth.driver, help="Inner mouth (teeth, tongue) from the driver, or synthesised."),
    paste_back: bool = typer.Option(False, "--paste-back", help="Paste the result into the source's full frame."),
    symmetry: SymmetryOption = True,
    engine: EngineOption = EngineName.mesh,
    weights: WeightsOption = None,
    half: HalfOption = True,
    size: RenderSizeOption = 256,
    crf: OutputCrfOption = 18,
    device: DeviceOption = None,
    batch_size: BatchSizeOption = None,
    face_index: Optional[int] = face_index_option(),
    face_box: Optional[str] = face_box_option(),
    force: ForceOutputsOption = False,
    json_lines: JsonOutputsOption = False,
    shard: ShardOption = None,
    executor: ExecutorOption = "local",
    address: AddressOption = None,
    group_items: Optional[int] = number_option(None, "--group-items", help="Pairs of one source rendered as one "
                                               "stream of batches (short clips fill a GPU's batches). Default: 8 on "
                                               "CUDA, 1 on the CPU. Local executor only.", lo=1, hi=1024),
) -> None:
    """Make each source face perform each driver's motion (every source x every driver, or --pairs).

    Writes OUTPUT/<source>__<driver>.mp4 with the driver's audio and OUTPUT/manifest.csv (read by thead
    evaluate --pairs). The source keeps its identity; only the driver's motion is used.
    """
    # Imported here, not at the top: they load torch, OpenCV and SciPy, which --help and bad arguments never need.
    from thead.jobs.reenact import ReenactParams, reenact_pair
    from thead.jobs.render import RenderOptions
    from thead.stages import INPUT_SUFFIXES, FitParams, PreprocessParams
    from thead.stages.store import clean_stale_temps

    driver_suffixes = INPUT_SUFFIXES | {".safetensors"}  # a motion file (thead audio-drive --export-motion) or a fit

    if pairs is not None:
        try:
            rows, bad_rows = read_pairs_csv(pairs)
        except InputError as exc:
            stderr_console().print(f"[red]error[/red] {exc}")
            raise typer.Exit(1)
        src_items, f1 = collect_inputs([str(s) for s, _ in rows], INPUT_SUFFIXES)
        drv_items, f2 = collect_inputs([str(d) for _, d in rows], driver_suffixes)
        src_items, drv_items = merge_item_groups(src_items, drv_items)
        by_path = {i.path: i for i in src_items + drv_items}
        jobs = [Pair(by_path[s], by_path[d]) for s, d in rows if s in by_path and d in by_path]
        f1 = bad_rows + f1
    elif source is not None and driver is not None:
        src_items, f1 = collect_inputs([str(source)], INPUT_SUFFIXES)
        drv_items, f2 = collect_inputs([str(driver)], driver_suffixes)
        src_items, drv_items = merge_item_groups(src_items, drv_items)
        jobs = cross_pairs(src_items, drv_items)
    else:
        raise typer.BadParameter("give SOURCE and DRIVER, or --pairs CSV")
    failures = list({r.message: r for r in f1 + f2}.values())
    pre_params = PreprocessParams(size=size, write_crop=False, face_index=face_index, face_box=parse_box(face_box))  # reenact cuts crops from the originals
    params = ReenactParams(mode=mode.value, expression_scale=expression_scale, pose_scale=pose_scale,
                           use_pose=not no_pose, use_expression=not no_expression, source_frame=source_frame,
                           mouth=mouth.value)
    options = RenderOptions(paste_back=paste_back, crf=crf, device=device, batch_size=batch_size,
                            symmetry=symmetry, engine=engine.value,
                            weights=weights, half=half)
    check_engine(options)  # missing or refused weights: one line, exit 1, before any work
    by_name = {job.name: job for job in jobs}
    out_file = output_target(output, len(jobs))
    out_dir = output.parent if out_file is not None else output
    clean_stale_temps(out_dir)  # what killed runs left half-written
    runner = batch_executor(executor, address, device)
    stage = lambda item, report: reenact_pair(by_name[item.item_id], work, out_dir, pre_params,  # noqa: E731
                                              FitParams(device=device), params, options, force, report, out_file)
    group = group_items if group_items is not None else default_group_items(device)
    if group > 1 and runner.name == "local" and out_file is None:
        from functools import partial

        from thead.jobs.reenact import ReenactBatcher, reenact_group

        mine = own_shard(jobs, shard, key=lambda j: j.name)
        batcher = ReenactBatcher(mine, partial(reenact_group, workdir=work, out_dir=out_dir, pre_params=pre_params,
                                               fit_params=FitParams(device=device), params=params, options=options,
                                               force=force), group_size=group)
        stage = lambda item, report: batcher(by_name[item.item_id])  # noqa: E731
    results = run_batch("reenact", [InputItem(j.source.path, j.name) for j in jobs], stage, failures, json_lines,
                        shard=shard, executor=runner, workdir=work)
    rows_out = [ManifestRow(str(Path(r.output).resolve()) if r.output else "",
                            str(by_name[r.item].source.path.resolve()), str(by_name[r.item].driver.path.resolve()),
                            params.mode, r.status, r.message) for r in results if r.item in by_name]
    if rows_out and out_file is None:  # checked writable before the work; kept elsewhere on a late failure
        # each task of a job array writes its own manifest (concatenate them for evaluate --pairs)
        part = parse_shard(shard) if shard is not None else None
        name = "manifest.csv" if part is None else f"manifest.shard-{part.index}-of-{part.count}.csv"
        write_or_keep(output / name, manifest_text(rows_out), work, "manifest")
    finish("thead reenact", results)



def default_group_items(device: Optional[str]) -> int:
    """Pairs per rendering group by default: 8 on CUDA, where batches of several clips' frames pay; 1 on the CPU,
    where larger batches are no faster."""
    from thead.device import default_device

    return 8 if default_device(device).type == "cuda" else 1

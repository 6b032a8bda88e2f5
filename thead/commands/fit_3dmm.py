"""`thead fit-3dmm`: pose, expression, gaze and identity for every frame of preprocessed clips."""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer

from thead.commands.common import (AddressOption, DeviceOption, ExecutorOption, RetryFailedOption, ShardOption,
                                  batch_executor, own_shard, check_crop_size, finish, number_option, retry_inputs,
                                  run_batch)
from thead.commands.preprocess import Protocol
from thead.jobs.items import InputItem, collect_inputs, expand_stdin
from thead.stages import (INPUT_SUFFIXES, FitBatcher, FitParams, PreprocessParams, fit_item, preprocess_item,
                          split_cached)


def fit_3dmm(
    inputs: Optional[List[str]] = typer.Argument(None, help="Work directories or item folders holding preprocess results, "
                                       "or videos/images/directories (preprocessed first), or - for stdin."),
    output: Path = typer.Option(Path("thead-work"), "--output", "-o", help="Work directory for inputs that still "
                                "need preprocessing."),
    smooth: float = number_option(1.0, help="Temporal smoothing strength (0 = off; never applied to images).",
                                  lo=0, hi=100),
    iterations: int = number_option(8, help="Solver rounds.", lo=1, hi=1000),
    model: Optional[Path] = typer.Option(None, help="A PCA morphable model .npz (mean, identity and expression "
                                         "bases, landmark vertex indices) instead of the built-in face-mesh model."),
    overlay: bool = typer.Option(False, "--overlay", help="Also write overlay.mp4 / overlay.png: the fitted mesh "
                                 "drawn over the crops."),
    device: DeviceOption = None,
    size: int = typer.Option(256, help="Crop size (256 or 512) for inputs preprocessed here.", callback=check_crop_size),
    protocol: Protocol = typer.Option(Protocol.vox, help="Crop protocol for inputs preprocessed here."),
    force: bool = typer.Option(False, "--force", help="Redo fits whose cache is current."),
    json_lines: bool = typer.Option(False, "--json", help="Print one JSON object per item on stdout."),
    shard: ShardOption = None,
    executor: ExecutorOption = "local",
    address: AddressOption = None,
    retry_failed: RetryFailedOption = None,
    group_items: Optional[int] = number_option(None, "--group-items", help="Items fitted together in one solve "
                                               "(their frames share every solver step; equal to one-by-one fits to "
                                               "float rounding). Default: 32 on CUDA, 1 (each item alone, byte-for-"
                                               "byte what a Ray task makes) on the CPU. Local executor only.",
                                               lo=1, hi=4096),
) -> None:
    """Fit the 3D face model to every frame: WORKDIR/<item>/fit3dmm (pose, expression, gaze, identity).

    Pose is yaw, pitch, roll (degrees), translation and scale of a scaled-orthographic camera; expression is a
    set of named units in [0, 1] (jaw_open, smile_left, ..., blink_right), the rest kept as a residual.
    """
    # a retry redoes this command's failed fits and the inputs it (or preprocess) failed to preprocess
    args = expand_stdin(inputs or []) + retry_inputs(retry_failed, "fit-3dmm") + retry_inputs(retry_failed,
                                                                                            "preprocess")
    if not args and retry_failed is None:
        raise typer.BadParameter("give at least one input (or --retry-failed WORK)", param_hint="INPUTS")
    cached, raw = split_cached(args)
    runner = batch_executor(executor, address, device)
    results = []
    if raw:
        pre_params = PreprocessParams(protocol=protocol.value, size=size)
        items, failures = collect_inputs(raw, INPUT_SUFFIXES)
        pre_results = run_batch("preprocess", items,
                                lambda item, report: preprocess_item(item, output, pre_params, False, report),
                                failures, json_lines=False, shard=shard, executor=runner, workdir=output)
        results.extend(r for r in pre_results if r.failed)
        cached.extend(Path(r.output) for r in pre_results if not r.failed and r.output)
    params = FitParams(smooth=smooth, iterations=iterations, model=str(model) if model else None, overlay=overlay,
                       device=device)
    fit_items = [InputItem(d, d.parent.name) for d in dict.fromkeys(cached)]
    work_dirs = {item.path.parent.parent for item in fit_items}
    fit_work = work_dirs.pop() if len(work_dirs) == 1 else output  # failures logged in the one work folder
    stage = lambda item, report: fit_item(item.path, params, force, report)  # noqa: E731
    group = group_items if group_items is not None else default_group_size(device)
    if group > 1 and runner.name == "local":
        # Several items per solve: the batcher plans its groups from this shard's items in the order they will run.
        mine = own_shard(fit_items, shard)
        batcher = FitBatcher([item.path for item in mine], params, force, group_size=group)
        stage = lambda item, report: batcher(item.path, report)  # noqa: E731
    results.extend(run_batch("fit-3dmm", fit_items, stage, json_lines=json_lines, shard=shard, executor=runner,
                             workdir=fit_work))
    if json_lines:  # preprocess failures are part of this command's outcome too
        import json

        for r in results:
            if r.failed and r.item not in {i.item_id for i in fit_items}:
                print(json.dumps(r.to_json()))
    finish("thead fit-3dmm", results)


def default_group_size(device: Optional[str]) -> int:
    """Items per fitting solve by default: 32 on CUDA (kernel launches, not arithmetic, bound one clip's fit: 4x
    the items/s of one by one on an H100); 1 on the CPU, where grouping gains 1.4-1.5x on short clips but its float
    rounding would make a local run's fits differ in the last bits from a Ray task's or a shard's."""
    from thead.device import default_device

    return 32 if default_device(device).type == "cuda" else 1

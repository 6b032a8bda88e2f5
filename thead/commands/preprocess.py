"""`thead preprocess`: detect, track and crop/align faces in videos and photos into a work directory."""

from __future__ import annotations

from enum import Enum
from pathlib import Path
from typing import List, Optional

import typer

from thead.commands.common import (CRF_RANGE, AddressOption, ExecutorOption, RetryFailedOption, ShardOption,
                                  batch_executor, check_crop_size, finish, number_option, parse_box, retry_inputs,
                                  run_batch, stderr_console)
from thead.face.crop import VOX_ENLARGE
from thead.errors import InputError
from thead.jobs.items import InputItem, ItemResult, collect_inputs
from thead.jobs.recipes import cut_crop, read_crop_metadata
from thead.stages import INPUT_SUFFIXES, PreprocessParams, preprocess_item


class Protocol(str, Enum):
    vox = "vox"
    ffhq = "ffhq"


class Backend(str, Enum):
    mediapipe = "mediapipe"
    face_alignment = "face-alignment"


def preprocess(
    inputs: Optional[List[str]] = typer.Argument(None, help="Videos, images, directories (searched recursively), or - to "
                                       "read paths from stdin."),
    output: Path = typer.Option(Path("thead-work"), "--output", "-o", help="Work directory for the stage caches."),
    protocol: Protocol = typer.Option(Protocol.vox, help="Crop protocol: vox (one box per clip/segment) or ffhq "
                                      "(per-frame eye/mouth alignment, smoothed)."),
    size: int = typer.Option(256, help="Crop size in pixels: 256 or 512.", callback=check_crop_size),
    landmarks: Backend = typer.Option(Backend.mediapipe, help="Landmark backend: mediapipe (478 points, ships with "
                                      "the package) or face-alignment (68-point FAN; weights must be on disk)."),
    face_index: Optional[int] = number_option(None, help="Follow the N-th face from the left (0-based) where "
                                              "several are present.", lo=0, hi=99),
    face_box: Optional[str] = typer.Option(None, help="Follow the face nearest this box x0,y0,x1,y1 (pixels of the "
                                           "first frame)."),
    max_gap: float = number_option(0.25, help="Interpolate landmarks over lost stretches up to this many "
                                   "seconds; longer ones are reported.", lo=0, hi=60),
    smooth: float = number_option(2.0, help="ffhq: temporal smoothing of the alignment, Gaussian sigma in frames "
                                  "(0 = off).", lo=0, hi=100),
    enlarge: float = number_option(VOX_ENLARGE, help="vox: square side over the larger side of the union landmark "
                                   "box.", lo=1, hi=4),
    crf: int = number_option(18, help="H.264 quality of the crop video (lower is better; 18 is visually "
                             "lossless).", lo=CRF_RANGE[0], hi=CRF_RANGE[1]),
    png: bool = typer.Option(False, "--png", help="Also write the crops as a PNG sequence (frames/)."),
    force: bool = typer.Option(False, "--force", help="Redo items whose cache is current."),
    json_lines: bool = typer.Option(False, "--json", help="Print one JSON object per item on stdout."),
    shard: ShardOption = None,
    executor: ExecutorOption = "local",
    address: AddressOption = None,
    retry_failed: RetryFailedOption = None,
    metadata: Optional[Path] = typer.Option(None, "--metadata", metavar="FILE.csv", help="Recreate a dataset's "
                                            "published crops from its metadata (VoxCeleb vox-metadata.csv, HDTF "
                                            "crop windows, TalkingHead-1KH tubes: video_id, start, end, bbox or "
                                            "left/top/right/bottom, fps, width, height) into OUTPUT/<video_id>#"
                                            "<start>#<end>.mp4: INPUTS are the source videos; no detection."),
) -> None:
    """Detect, track and crop/align one face per input into WORKDIR/<item>/preprocess.

    Writes the cropped video (with audio) or image, landmarks in crop and original coordinates, the crop
    transforms and meta.json. Items whose cache is current are skipped.
    """
    if size not in (256, 512):
        raise typer.BadParameter("--size must be 256 or 512", param_hint="--size")
    params = PreprocessParams(protocol=protocol.value, size=size, landmarks=landmarks.value, face_index=face_index,
                              face_box=parse_box(face_box), max_gap=max_gap, smooth_sigma=smooth, enlarge=enlarge,
                              crf=crf, png=png)
    args = list(inputs or []) + retry_inputs(retry_failed, "preprocess")
    if not args and retry_failed is None:
        raise typer.BadParameter("give at least one input (or --retry-failed WORK)", param_hint="INPUTS")
    items, failures = collect_inputs(args, INPUT_SUFFIXES)
    if metadata is not None:
        _cut_published_crops(metadata, items, failures, output, size, crf, force, json_lines, shard, executor,
                             address)
    results = run_batch("preprocess", items, lambda item, report: preprocess_item(item, output, params, force,
                                                                                     report),
                        failures, json_lines, shard=shard, executor=batch_executor(executor, address),
                        workdir=output)
    finish("thead preprocess", results)


def _cut_published_crops(metadata: Path, videos: list[InputItem], failures: list[ItemResult], output: Path,
                         size: int, crf: int, force: bool, json_lines: bool, shard: Optional[str], executor: str,
                         address: Optional[str]) -> None:
    """``--metadata``: one item per CSV row, the row's video found among the inputs by its file stem."""
    try:
        specs = read_crop_metadata(metadata)
    except InputError as exc:
        stderr_console().print(f"[red]error[/red] {exc}")
        raise typer.Exit(1)
    by_stem = {v.path.stem: v.path for v in videos}
    items, by_name = [], {}
    failures = list(failures)
    for spec in specs:
        if spec.video_id not in by_stem:
            failures.append(ItemResult(str(metadata), spec.name, "failed",
                                       message=f"{metadata}: video '{spec.video_id}' is not among the inputs"))
            continue
        items.append(InputItem(by_stem[spec.video_id], spec.name))
        by_name[spec.name] = spec
    results = run_batch("preprocess", items, lambda item, report: cut_crop(item, by_name[item.item_id], output,
                                                                           size, crf, force, report),
                        failures, json_lines, shard=shard, executor=batch_executor(executor, address),
                        workdir=output)
    finish("thead preprocess --metadata", results)

"""`thead evaluate`: the seed papers' metrics for generated videos against references."""

from __future__ import annotations

import json
import math
from enum import Enum
from pathlib import Path
from typing import Optional

import typer
from rich.table import Table

from thead.commands.common import (AddressOption, DeviceOption, ExecutorOption, ShardOption, batch_executor,
                                  check_crop_size, check_output, face_box_option, face_index_option, number_option,
                                  parse_box, print_summary, run_batch, stderr_console, write_or_keep)
from thead.errors import InputError
from thead.jobs.evaluate import (
    EvalParams,
    PairReport,
    aggregate_reports,
    distribution_metrics,
    eval_pairs,
    evaluate_pair,
    pairs_from_csv,
    pairs_from_dirs,
    plot_report,
    reports_csv_text,
)
from thead.jobs.items import InputItem, ItemResult


class EvalProtocol(str, Enum):
    auto = "auto"
    self_ = "self"
    cross = "cross"


class Align(str, Enum):
    raise_ = "raise"
    truncate = "truncate"


TABLE_COLUMNS = (("l1", "L1", "{:.3f}"), ("psnr", "PSNR", "{:.2f}"), ("ssim", "SSIM", "{:.3f}"),
                 ("lpips", "LPIPS", "{:.3f}"), ("akd", "AKD", "{:.2f}"), ("aed", "AED", "{:.3f}"),
                 ("apd", "APD°", "{:.2f}"), ("au_hamming", "AU-H", "{:.3f}"), ("csim", "CSIM", "{:.3f}"))


def evaluate(
    generated: Optional[Path] = typer.Argument(None, help="A generated video/image, or a directory of them."),
    reference: Optional[Path] = typer.Argument(None, help="The reference (driver) video/image, or a directory "
                                               "whose files match the generated ones by name."),
    pairs: Optional[Path] = typer.Option(None, "--pairs", help="CSV of generated,reference[,source] rows, or the "
                                         "manifest.csv written by thead reenact."),
    source: Optional[Path] = typer.Option(None, help="Source image for cross-identity evaluation of a single pair."),
    protocol: EvalProtocol = typer.Option(EvalProtocol.auto, help="self: reconstruction vs the driving frames; "
                                          "cross: identity vs the source, motion vs the driver; auto: cross when a "
                                          "source differing from the driver is given."),
    size: int = typer.Option(256, help="Evaluation resolution (pixels) of the common face crop: 256 or 512.",
                             callback=check_crop_size),
    align: Align = typer.Option(Align.raise_, help="Different frame counts or rates: raise (report the pair as "
                                "failed) or truncate to the shorter (reported in notes)."),
    csim_frames: int = number_option(32, help="Frames sampled evenly per video for CSIM (0 = all).", lo=0),
    no_identity: bool = typer.Option(False, "--no-identity", help="Skip CSIM."),
    arcface: Optional[Path] = typer.Option(None, help="ArcFace ONNX model for CSIM instead of dlib's network "
                                           "(needs onnxruntime: pip install 'thead[arcface]')."),
    work: Path = typer.Option(Path("thead-work"), "--work", "-w", help="Work directory for the preprocess caches."),
    report_path: Optional[str] = typer.Option(None, "--report", "--json-file", help="Write the full report as JSON "
                                              "to this file ('-' for stdout)."),
    json_lines: bool = typer.Option(False, "--json", help="Print one JSON object per pair on stdout (its report)."),
    csv_path: Optional[Path] = typer.Option(None, "--csv", help="Write one row per video to this CSV file."),
    plots: Optional[Path] = typer.Option(None, help="Folder for PNG plots of per-frame metrics, one per video."),
    grid: Optional[Path] = typer.Option(None, help="Folder for side-by-side videos (source | driver | generated)."),
    device: DeviceOption = None,
    shard: ShardOption = None,
    executor: ExecutorOption = "local",
    address: AddressOption = None,
    face_index: Optional[int] = face_index_option(),
    face_box: Optional[str] = face_box_option(),
) -> None:
    """Compare generated videos with references: pixel (L1, PSNR, SSIM, MS-SSIM, LPIPS), landmark (AKD, LMD),
    face-model (AED, APD, gaze, AU agreement, AVD), identity (CSIM), temporal (jitter, flicker) and audio-visual
    (sync) metrics, per video and aggregated."""
    console = stderr_console()
    check_output(Path(report_path) if report_path else None, "--report")
    check_output(csv_path, "--csv")
    check_output(plots, "--plots", is_dir=True)
    check_output(grid, "--grid", is_dir=True)
    if report_path == "-" and json_lines:
        raise typer.BadParameter("--json prints per-pair lines on stdout; write --report to a file", param_hint="--json")
    failures: list[ItemResult] = []
    if pairs is not None:
        try:
            jobs, failures = pairs_from_csv(pairs)
        except InputError as exc:
            console.print(f"[red]error[/red] {exc}")
            raise typer.Exit(1)
    elif generated is not None and reference is not None:
        if generated.is_dir() and reference.is_dir():
            jobs, failures = pairs_from_dirs(generated, reference)
        else:
            jobs = eval_pairs([(generated, reference, source)])
    else:
        raise typer.BadParameter("give GENERATED and REFERENCE, or --pairs CSV")
    params = EvalParams(size=size, protocol=protocol.value, align=align.value, csim_frames=csim_frames,
                        identity=not no_identity, arcface=str(arcface) if arcface else None, device=device,
                        face_index=face_index, face_box=parse_box(face_box))
    reports: dict[str, PairReport] = {}
    names = [p.name for p in jobs]
    items = [InputItem(p.generated.path, p.name if names.count(p.name) == 1 else f"{p.name}#{i}")
             for i, p in enumerate(jobs)]
    by_id = {item.item_id: pair for item, pair in zip(items, jobs)}

    def stage(item: InputItem, report) -> ItemResult:
        pair = by_id[item.item_id]
        grid_file = grid / f"{pair.name}.mp4" if grid else None
        rep = evaluate_pair(pair, params, work, report, grid_file)
        if plots is not None:
            plot_report(rep, plots / f"{pair.name}.png")
        # the report travels back in the result (it may come from a Ray worker)
        return ItemResult(str(pair.generated.path), pair.name, "done", str(grid_file) if grid_file else None,
                          warnings=rep.notes, info={"report": rep, "item_id": item.item_id})

    results = run_batch("evaluate", items, stage, failures, shard=shard,
                        executor=batch_executor(executor, address, device), workdir=work)
    for res in results:
        if "report" in res.info:
            item_id = res.info.pop("item_id")
            reports[item_id] = res.info.pop("report")
            if json_lines:  # --json: one object per pair on stdout, its report included
                res.info["report"] = reports[item_id].to_json()
    if json_lines:
        for res in results:
            print(json.dumps(res.to_json(), default=str), flush=True)
    done = [reports[i.item_id] for i in items if i.item_id in reports]
    if done:
        _print_table(done)
        _print_speech(done)
    for r in done:
        for name, reason in r.unavailable.items():
            console.print(f"[yellow]unavailable[/yellow] {r.name}: {name}: {reason}")
    distribution = distribution_metrics(done) if done else {}
    for name, res in distribution.items():
        if res.available:
            console.print(f"{name.upper()} over all {res.count} generated frames: {res.value:.3f}")
        else:
            console.print(f"[yellow]unavailable[/yellow] {name}: {res.reason}")
    document = {"videos": [r.to_json() for r in done], "aggregate": aggregate_reports(done),
                "distribution": {k: {"value": v.value, "available": v.available, "reason": v.reason,
                                     "details": v.details} for k, v in distribution.items()},
                "failures": [r.message for r in results if r.failed], "params": params.__dict__}
    if report_path == "-":
        print(json.dumps(document, indent=2))
    elif report_path:  # checked before the work; a late failure keeps the report elsewhere and says where
        write_or_keep(Path(report_path), json.dumps(document, indent=2), work, "report")
    if csv_path:
        write_or_keep(csv_path, reports_csv_text(done), work, "CSV report")
    print_summary("thead evaluate", results)
    raise typer.Exit(1 if any(r.failed for r in results) else 0)


def _fmt(value: float | None, pattern: str) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    return "inf" if math.isinf(value) else pattern.format(value)


def _print_table(reports: list[PairReport]) -> None:
    console = stderr_console()
    present = [c for c in TABLE_COLUMNS if any(c[0] in r.per_frame for r in reports)]
    table = Table(title="thead evaluate (per-video mean over frames; last rows: mean and std over videos)")
    for col in ("video", "frames") + tuple(c[1] for c in present):
        table.add_column(col, justify="left" if col == "video" else "right", overflow="fold", min_width=4)
    for r in reports:
        s = r.summary()
        name = r.name if r.protocol == "self" else f"{r.name} ({r.protocol})"
        table.add_row(name, str(r.frames), *(_fmt(s[k]["mean"], f) if k in s else "-" for k, _, f in present))
    agg = aggregate_reports(reports)
    table.add_section()
    table.add_row("mean", "", *(_fmt(agg.get(k, {}).get("mean"), f) for k, _, f in present))
    table.add_row("std", "", *(_fmt(agg.get(k, {}).get("std"), f) for k, _, f in present))
    console.print(table)


# Speech metrics shown beside the real clip's own value: (title, generated key, reference key, format).
SPEECH_COLUMNS = (
    ("mouth LMD", "mouth_lmd", None, "{:.3f}"),
    ("mouth-open r", "mouth_open_r", None, "{:.2f}"),
    ("AV offset", "av_offset_generated", "av_offset_reference", "{:+.0f}"),
    ("AV conf", "av_confidence_generated", "av_confidence_reference", "{:.2f}"),
    ("yaw std", "head_std_yaw_generated", "head_std_yaw_reference", "{:.1f}"),
    ("pitch std", "head_std_pitch_generated", "head_std_pitch_reference", "{:.1f}"),
    ("roll std", "head_std_roll_generated", "head_std_roll_reference", "{:.1f}"),
    ("speed W1", "head_speed_w1", None, "{:.1f}"),
    ("blinks/min", "blink_rate_generated", "blink_rate_reference", "{:.0f}"),
)


def _print_speech(reports: list[PairReport]) -> None:
    """The speech metrics of the clips that have them: generated value / the real clip's own value."""
    rows = [r for r in reports if "blink_rate_generated" in r.scalars]
    if not rows:
        return
    table = Table(title="speech (generated / real clip; mouth LMD in eye distances, angles in degrees)")
    table.add_column("video", overflow="fold")
    for title, *_ in SPEECH_COLUMNS:
        table.add_column(title, justify="right", min_width=4)
    for r in rows:
        summary = r.summary()
        cells = []
        for _, gen_key, ref_key, pattern in SPEECH_COLUMNS:
            value = summary[gen_key]["mean"] if gen_key in summary else r.scalars.get(gen_key)
            cell = _fmt(value, pattern)
            if ref_key is not None and r.protocol != "audio":
                cell += " / " + _fmt(r.scalars.get(ref_key), pattern)
            cells.append(cell)
        table.add_row(r.name, *cells)
    stderr_console().print(table)

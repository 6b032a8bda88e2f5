"""What every batch command shares: progress bars, the summary table, JSON lines, the exit code."""

from __future__ import annotations

import json
import math
import os
import tempfile
import time
from enum import Enum
from pathlib import Path
from typing import Annotated, Any, Callable, Optional, Sequence

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from thead.errors import describe_os_error
from thead.jobs.items import InputItem, ItemResult
from thead.progress import ProgressFn
from thead.run import Executor, LocalExecutor, Shard, make_executor, parse_shard, record_failure, select_shard

ItemStage = Callable[[InputItem, ProgressFn], ItemResult]

def _fmt(x: float) -> str:
    return f"{x:g}"


def in_range(lo: float | None = None, hi: float | None = None) -> Callable[[Any], Any]:
    """A Typer option callback: the value (None passes) must be a finite number within [lo, hi] (either end open
    when None); otherwise a usage error (exit 2) naming the option: "nan is not a finite number", "400 is outside
    -50..50". Used for every numeric option, so NaN/inf never reach the library whatever Typer version parses."""

    def check(value: Any) -> Any:
        if value is None:
            return value
        if isinstance(value, float) and not math.isfinite(value):
            raise typer.BadParameter(f"{value} is not a finite number")
        if (lo is not None and value < lo) or (hi is not None and value > hi):
            raise typer.BadParameter(f"{_fmt(value)} is outside {range_text(lo, hi)}")
        return value

    return check


def range_text(lo: float | None, hi: float | None) -> str:
    """"-50..50", ">= 0" or "<= 3": how option help and messages state a range."""
    if lo is not None and hi is not None:
        return f"{_fmt(lo)}..{_fmt(hi)}"
    return f">= {_fmt(lo)}" if lo is not None else f"<= {_fmt(hi)}"


def ranged(help: str, lo: float | None = None, hi: float | None = None) -> str:
    """``help`` with its allowed range appended, e.g. "Solver rounds. Range: 1..1000."."""
    return f"{help.rstrip()} Range: {range_text(lo, hi)}."


def number_option(default: Any, *param_decls: str, help: str, lo: float | None = None, hi: float | None = None,
                  **kwargs: Any) -> Any:
    """``typer.Option`` for a number: the range is checked (``in_range``) and stated in the help."""
    return typer.Option(default, *param_decls, callback=in_range(lo, hi), help=ranged(help, lo, hi), **kwargs)


def check_crop_size(value: int) -> int:
    if value not in (256, 512):
        raise typer.BadParameter(f"{value} is not a crop size: use 256 or 512")
    return value


CRF_RANGE = (0, 51)  # H.264 quality: 0 lossless .. 51 worst

# Options that read the same in every command that takes them (declare as ``device: DeviceOption = None``).
def check_device(value: str | None) -> str | None:
    """A Typer option callback: ``value`` (None passes) must name a torch device this machine has: a misspelt
    device, ``cuda`` without CUDA or ``cuda:3`` on a two-GPU machine is a usage error (exit 2) before any work."""
    if value is None:
        return value
    import torch

    try:
        dev = torch.device(value)
    except (RuntimeError, ValueError) as exc:
        raise typer.BadParameter(f"'{value}' is not a torch device (use cpu, cuda or cuda:N)") from exc
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise typer.BadParameter(f"'{value}': CUDA is not available on this machine (use --device cpu)")
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise typer.BadParameter(f"'{value}': this machine has {torch.cuda.device_count()} CUDA device(s)")
    elif dev.type == "mps":
        if not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
            raise typer.BadParameter(f"'{value}': MPS is not available on this machine")
    elif dev.type != "cpu":
        raise typer.BadParameter(f"'{value}': thead computes on cpu, cuda or mps")
    return value


DeviceOption = Annotated[Optional[str], typer.Option(help="torch device (cpu, cuda, cuda:N); default cuda when "
                                                     "present.", callback=check_device)]
SymmetryOption = Annotated[bool, typer.Option(
    "--symmetry/--no-symmetry",
    help="Fill the side of the head the source turned away from its mirror image (off: stretch what the source "
    "shows).")]
# Options of the commands that render outputs (reenact, edit).
RenderSizeOption = Annotated[int, typer.Option(help="Crop size (256 or 512) of faces preprocessed here.",
                                               callback=check_crop_size)]
OutputCrfOption = Annotated[int, typer.Option(help=ranged("H.264 quality of the output videos (lower is better).",
                                                          *CRF_RANGE), callback=in_range(*CRF_RANGE))]
ForceOutputsOption = Annotated[bool, typer.Option("--force", help="Redo outputs that are current.")]
JsonOutputsOption = Annotated[bool, typer.Option("--json", help="Print one JSON object per output on stdout.")]
BatchSizeOption = Annotated[Optional[int], typer.Option(
    help=ranged("Frames rendered per batch (default: 16 on the CPU, 64 on CUDA).", 1, 1024),
    callback=in_range(1, 1024))]


class EngineName(str, Enum):
    mesh = "mesh"
    neural = "neural"


EngineOption = Annotated[EngineName, typer.Option(
    help="mesh: the weight-free mesh renderer; neural: a trained network over it (needs --weights).")]
WeightsOption = Annotated[Optional[str], typer.Option(
    "--weights", help="The neural engine's weights: a name `thead weights` lists or a .safetensors path (made by "
    "`thead train neural`).")]
HalfOption = Annotated[bool, typer.Option(
    "--half/--no-half", help="Neural engine on CUDA: float16 autocast (--no-half: float32). The CPU computes "
    "float32.")]


def check_engine(options: Any) -> None:
    """Load the weights a neural ``RenderOptions`` names before any work (``thead.jobs.render.load_weights``): a
    missing, tampered or unknown weights file stops the command with its one-line reason and exit code 1, no
    output written. ``--weights`` without ``--engine neural`` is refused too."""
    if options.engine != "neural":
        if options.weights:
            stderr_console().print("[red]error[/red] --weights is for --engine neural")
            raise typer.Exit(1)
        return
    from thead.errors import TheadError
    from thead.jobs.render import load_weights

    try:
        load_weights(options)
    except (TheadError, ValueError, OSError) as exc:
        stderr_console().print(f"[red]error[/red] {exc}")
        raise typer.Exit(1)


def _shard(value: Optional[str]) -> Optional[Shard]:
    try:
        return parse_shard(value)
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from exc


def own_shard(items: Sequence[Any], shard: Shard | str | None, key: Callable[[Any], str] = lambda item: item.item_id
              ) -> list:
    """The items of ``shard`` (a Shard or the ``--shard`` text; all when None), in order: what ``run_batch`` will
    run, for a stage that plans its groups ahead (``FitBatcher``, ``ReenactBatcher``)."""
    return select_shard(items, _shard(shard) if isinstance(shard, str) else shard, key=key)


# Options of every batch command (declare as ``shard: ShardOption = None`` and so on; see ``batch_executor``).
ShardOption = Annotated[Optional[str], typer.Option(
    "--shard", metavar="K/N|auto",
    help="Only the items of shard K of N (K 0-based), partitioned by a hash of the item id, so the N tasks of a "
    "job array cover every item exactly once whatever order they list the inputs in; auto: "
    "$SLURM_ARRAY_TASK_ID - $SLURM_ARRAY_TASK_MIN of $SLURM_ARRAY_TASK_COUNT.")]
ExecutorOption = Annotated[str, typer.Option(
    "--executor", metavar="local|ray",
    help="Where items run: local (this process, one after another) or ray (one Ray task per item; pip install "
    "'thead[ray]').")]
AddressOption = Annotated[Optional[str], typer.Option(
    "--address", help="--executor ray: the Ray cluster (auto, ray://HOST:10001); default: a local instance.")]
RetryFailedOption = Annotated[Optional[Path], typer.Option(
    "--retry-failed", metavar="WORK",
    help="Redo the inputs this command failed on in WORK (from WORK/.thead/failures.jsonl), besides any given.")]


def batch_executor(name: str, address: Optional[str], device: Optional[str] = None) -> Executor:
    """The executor of ``--executor``/``--address``: one CPU-thread share (``--threads``, default 1) per Ray task
    and one GPU per task when the command runs on CUDA. A usage error (exit 2) for an unknown name or missing
    Ray."""
    if name not in ("local", "ray"):
        raise typer.BadParameter(f"'{name}' is not an executor: use local or ray", param_hint="--executor")
    if name == "local":
        return LocalExecutor()
    from thead import runtime

    plan = runtime.current_plan()
    threads = plan.threads if plan is not None and plan.source in ("--threads", runtime.THREADS_ENV) else 1
    wants_cuda = device is not None and device.startswith("cuda")
    try:
        return make_executor("ray", address, threads=threads, gpus=1.0 if wants_cuda else 0.0)
    except RuntimeError as exc:
        raise typer.BadParameter(str(exc), param_hint="--executor") from exc


def retry_inputs(retry_failed: Optional[Path], command: str) -> list[str]:
    """The inputs ``command`` failed on in the work folder ``retry_failed`` (none when it is None)."""
    if retry_failed is None:
        return []
    from thead.run import failed_inputs

    found = failed_inputs(retry_failed, command)
    stderr_console().print(f"retrying {len(found)} failed input(s) of {command} from {retry_failed}")
    return found


def _writable_place(path: Path, is_dir: bool) -> str | None:
    """Why files cannot be written at ``path`` (a file, or a folder when ``is_dir``), or None when they can: its
    nearest existing ancestor must be a folder where a probe file can be created (this catches read-only file
    systems, missing permissions and a file in the way, whoever runs it, root included)."""
    path = Path(path)
    if path.exists() and path.is_dir() != is_dir:
        return "is a folder, not a file" if path.is_dir() else "is a file, not a folder"
    folder = path if is_dir else path.parent
    probe_dir = folder
    while not probe_dir.exists():
        if probe_dir.is_symlink():
            return "a part of the path is a broken symbolic link"
        if probe_dir.parent == probe_dir:
            break
        probe_dir = probe_dir.parent
    if not probe_dir.is_dir():
        return f"{probe_dir} is not a folder"
    try:
        fd, probe = tempfile.mkstemp(dir=probe_dir, prefix=".thead-probe-")
        os.close(fd)
        os.unlink(probe)
    except OSError as exc:
        return describe_os_error(exc, probe_dir)
    return None


def check_output(path: Path | None, option: str, is_dir: bool = False) -> None:
    """Usage error (exit 2) before any work when ``path`` (None passes) cannot be written; ``option`` names it."""
    if path is None or str(path) == "-":
        return
    reason = _writable_place(Path(path), is_dir)
    if reason is not None:
        raise typer.BadParameter(f"{path}: cannot write here: {reason}", param_hint=option)


def output_target(output: Path, jobs: int) -> Path | None:
    """``-o`` as the tools people know read it: a name ending in a video or picture suffix (``out.mp4``,
    ``out.png``) that is not an existing folder is the one output file (returned; a usage error when the run has
    several jobs); anything else is the output folder (None returned). Either is checked writable first."""
    from thead.jobs.render import IMAGE_OUTPUT_SUFFIXES, VIDEO_OUTPUT_SUFFIXES

    if output.suffix.lower() in VIDEO_OUTPUT_SUFFIXES | IMAGE_OUTPUT_SUFFIXES and not output.is_dir():
        if jobs > 1:
            raise typer.BadParameter(f"{output} names one file and this run makes {jobs} outputs; give a folder",
                                     param_hint="--output")
        check_output(output, "--output")
        return output
    check_output(output, "--output", is_dir=True)
    return None


def write_or_keep(path: Path, text: str, work: Path, what: str) -> Path:
    """Write ``text`` to ``path`` atomically; when that fails late (disk full, folder gone), keep it in
    ``work/.thead/`` (else the current folder, else the temporary folder) and say where on stderr, so the computed
    result is never lost. Returns where it was written."""
    path = Path(path)
    try:
        write_text_atomic(path, text)
        return path
    except OSError as exc:
        console = stderr_console()
        console.print(f"[red]error[/red] {describe_os_error(exc, path)}")
        stamp = time.strftime("%Y%m%d-%H%M%S")
        for place in (Path(work) / ".thead", Path.cwd(), Path(tempfile.gettempdir())):
            keep = place / f"{path.stem}-{stamp}-{os.getpid()}{path.suffix}"
            try:
                place.mkdir(parents=True, exist_ok=True)
                write_text_atomic(keep, text)
            except OSError:
                continue
            console.print(f"[yellow]kept[/yellow] the {what} in {keep}")
            return keep
        raise


def write_text_atomic(path: Path, text: str) -> None:
    """``text`` into ``path`` (folders made) through a temporary sibling and a rename."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        tmp.write_text(text, encoding="utf8")
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def face_index_option() -> Any:
    """``--face-index`` as preprocess reads it: which of several faces to follow."""
    return number_option(None, "--face-index", help="Follow the N-th face from the left (0-based) where several "
                         "are present.", lo=0, hi=99)


def face_box_option() -> Any:
    """``--face-box`` as preprocess reads it: the face nearest a box of the first frame."""
    return typer.Option(None, "--face-box", help="Follow the face nearest this box x0,y0,x1,y1 (pixels of the first "
                        "frame).")


def stderr_console() -> Console:
    return Console(stderr=True, highlight=False, soft_wrap=True)


def run_batch(
    title: str,
    items: Sequence[InputItem],
    stage: ItemStage,
    failures: Sequence[ItemResult] = (),
    json_lines: bool = False,
    shard: Shard | str | None = None,
    executor: Executor | None = None,
    workdir: Path | None = None,
) -> list[ItemResult]:
    """Run ``stage(item, progress)`` over ``items`` with rich progress on stderr; print JSON lines on stdout.

    Only the items of ``shard`` (a Shard or ``--shard`` text) run (all when None); ``executor`` runs them (``LocalExecutor`` when None). Each
    failed item is appended to ``workdir``'s failure log (``thead.run.record_failure``) under the command name
    ``title`` when ``workdir`` is given.
    """
    console = stderr_console()
    if isinstance(shard, str):  # the option's text (checked by its callback when the command line was parsed)
        shard = _shard(shard)
    items = own_shard(items, shard)
    executor = executor or LocalExecutor()
    results: list[ItemResult] = list(failures)
    ran: list[tuple[InputItem, ItemResult]] = []

    def emit(res: ItemResult, path: Path | str) -> None:
        if res.failed:
            log = record_failure(workdir, title, res) if workdir is not None else None
            where = f" (traceback in {log})" if log is not None and res.info.get("traceback") else ""
            console.print(f"[red]error[/red] {res.message}{where}")
        for w in res.warnings:
            console.print(f"[yellow]warning[/yellow] {path}: {w}")
        if json_lines:
            print(json.dumps(res.to_json()), flush=True)

    for res in failures:
        emit(res, res.input)
    columns = (TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    label = title if shard is None else f"{title} (shard {shard})"
    with Progress(*columns, console=console, transient=True, disable=not items) as progress:
        overall = progress.add_task(label, total=len(items))
        current = progress.add_task("", total=1, visible=False)

        def on_start(item: InputItem) -> ProgressFn:
            progress.update(current, description=item.item_id, completed=0, total=1, visible=True)

            def report(done: int, total: int) -> None:
                progress.update(current, completed=done, total=max(total, 1))

            return report

        def on_result(item: InputItem, res: ItemResult) -> None:
            ran.append((item, res))
            emit(res, item.path)
            progress.advance(overall)

        executor.run(items, stage, on_start, on_result)
        progress.update(current, visible=False)
    order = {item.item_id: i for i, item in enumerate(items)}  # listed order, whatever order results came in
    return results + [res for _, res in sorted(ran, key=lambda pair: order[pair[0].item_id])]


def print_summary(title: str, results: Sequence[ItemResult]) -> None:
    """A table of items (status, time, output) and a failure list, on stderr."""
    console = stderr_console()
    if not results:
        console.print(f"{title}: nothing to do")
        return
    table = Table(title=title, show_lines=False)
    for col in ("item", "status", "seconds", "output / reason"):
        table.add_column(col, overflow="fold")
    colour = {"done": "green", "skipped": "cyan", "failed": "red"}
    for r in results:
        detail = r.message if r.failed else (r.output or "")
        table.add_row(r.item or r.input, f"[{colour.get(r.status, 'white')}]{r.status}", f"{r.seconds:.1f}", detail)
    console.print(table)
    counts = {s: sum(r.status == s for r in results) for s in ("done", "skipped", "failed")}
    console.print(f"{counts['done']} done, {counts['skipped']} skipped (cache current), {counts['failed']} failed")
    if counts["failed"]:
        console.print("[red]failures:[/red]")
        for r in results:
            if r.failed:
                console.print(f"  {r.message}")


def exit_code(results: Sequence[ItemResult]) -> int:
    """0 when nothing failed, 1 otherwise."""
    return 1 if any(r.failed for r in results) else 0


def finish(title: str, results: Sequence[ItemResult]) -> None:
    print_summary(title, results)
    raise typer.Exit(exit_code(results))


def parse_box(text: str | None) -> tuple[float, float, float, float] | None:
    """"x0,y0,x1,y1" pixels -> tuple; None passes through."""
    if text is None:
        return None
    parts = [p for p in text.replace(" ", "").split(",") if p]
    if len(parts) != 4:
        raise typer.BadParameter("expected four numbers x0,y0,x1,y1 (pixels)")
    try:
        x0, y0, x1, y1 = (float(p) for p in parts)
    except ValueError as exc:
        raise typer.BadParameter("expected four numbers x0,y0,x1,y1 (pixels)") from exc
    if x1 <= x0 or y1 <= y0:
        raise typer.BadParameter("box needs x1 > x0 and y1 > y0")
    return (x0, y0, x1, y1)


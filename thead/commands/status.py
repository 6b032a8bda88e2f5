"""`thead status`: per stage, how many items of a work folder are current, stale, failed or missing."""

from __future__ import annotations

import json
from pathlib import Path
from typing import List, Optional

import typer
from rich.table import Table

from thead.commands.common import stderr_console
from thead.jobs.items import collect_inputs
from thead.run.status import STATES, work_status
from thead.stages import INPUT_SUFFIXES


def status(
    work: Path = typer.Argument(..., help="The work folder (thead preprocess -o / reenact --work)."),
    inputs: Optional[List[str]] = typer.Option(None, "--inputs", help="Inputs the folder should hold (files or "
                                               "directories, repeat the option): items without caches count as "
                                               "missing, and changed inputs as stale."),
    json_out: bool = typer.Option(False, "--json", help="Print the status as one JSON object on stdout."),
) -> None:
    """Per stage (preprocess, fit3dmm; output commands' failures), how many items are current, stale, failed
    (with the reasons from WORK/.thead/failures.jsonl) and missing. Redo the failed ones with
    thead <command> --retry-failed WORK."""
    if not work.is_dir():
        stderr_console().print(f"[red]error[/red] {work}: not a work folder (no such directory)")
        raise typer.Exit(1)
    items, _ = collect_inputs(inputs or [], INPUT_SUFFIXES) if inputs else ([], [])
    stages = work_status(work, [(it.item_id, it.path) for it in items])
    if json_out:
        print(json.dumps({"work": str(work), "stages": [s.to_json() for s in stages]}, indent=2))
        return
    console = stderr_console()
    table = Table(title=f"thead status {work}")
    table.add_column("stage")
    for state in STATES:
        table.add_column(state, justify="right")
    for st in stages:
        counts = st.counts()
        table.add_row(st.stage, *(str(counts[s]) for s in STATES))
    console.print(table)
    for st in stages:
        for item in st.items["failed"]:
            console.print(f"[red]failed[/red] {st.stage} {item}: {st.reasons.get(item, '')}")

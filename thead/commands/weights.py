"""`thead weights`: which model files thead can use, which are on disk (and pass their sha256), where to get the rest."""

from __future__ import annotations

import json

import typer
from rich.table import Table

from thead.commands.common import stderr_console
from thead.weights import file_status, load_manifest, weights_dir

_COLOURS = {"verified": "green", "present, UNVERIFIED": "yellow", "missing": "yellow"}


def weights(
    json_lines: bool = typer.Option(False, "--json", help="Print one JSON object per entry on stdout."),
) -> None:
    """List the weights manifest and the trained neural models (``thead train neural``; their file, sha256, config).
    The manifest: each model file, what uses it, whether it is on disk and matches its published
    sha256 ("verified"), has no published digest ("present, UNVERIFIED": used with a warning), is refused
    ("WRONG", "refused"), or is missing, and where to get it."""
    console = stderr_console()
    table = Table(title=f"weights folder: {weights_dir()}  (set THEAD_WEIGHTS to change)")
    for col in ("name", "used by", "file", "status", "url"):
        table.add_column(col, overflow="fold")
    for entry in load_manifest().values():
        row = file_status(entry)
        if json_lines:
            print(json.dumps({"name": entry.name, "file": entry.file, "present": row["present"],
                              "status": row["status"], "usable": row["usable"],
                              "path": row["path"] or str(weights_dir() / entry.file), "url": entry.url,
                              "sha256": entry.sha256, "sha256_found": row["sha256_found"],
                              "unverified": entry.unverified, "used_by": entry.used_by}))
        colour = _COLOURS.get(row["status"], "red")
        table.add_row(entry.name, entry.used_by, entry.file, f"[{colour}]{row['status']}", entry.url)
    console.print(table)
    _trained_models(json_lines, console)


def _trained_models(json_lines: bool, console) -> None:
    """The neural engine's trained models (``thead.engines.neural.store.list_neural``): a table on stderr, and one
    JSON object each (``"kind": "neural"``) on stdout with --json."""
    from thead.engines.neural.store import list_neural

    models = list_neural()
    table = Table(title="trained neural models (thead train neural; use: --engine neural --weights NAME)")
    for col in ("name", "file", "sha256", "config", "info"):
        table.add_column(col, overflow="fold")
    for entry in models:
        info = entry.get("info") or {}
        if json_lines:
            print(json.dumps({"kind": "neural", **entry}, default=str))
        text = ", ".join(f"{k}={v}" for k, v in info.items()) if isinstance(info, dict) else str(info)
        table.add_row(str(entry.get("name", "")), str(entry.get("path", "")), str(entry.get("sha256", ""))[:16],
                      str(entry.get("config_digest") or "-"), text)
    if models:
        console.print(table)
    else:
        console.print("no trained neural models (train one with `thead train neural`)")

"""`thead weights`: which model files thead can use, which are on disk, and where to put the missing ones."""

from __future__ import annotations

import json

import typer
from rich.table import Table

from thead.commands.common import stderr_console
from thead.weights import find_weights, load_manifest, weights_dir


def weights(
    json_lines: bool = typer.Option(False, "--json", help="Print one JSON object per entry on stdout."),
) -> None:
    """List the weights manifest: each model file, what uses it, whether it is on disk, and where to get it."""
    console = stderr_console()
    table = Table(title=f"weights folder: {weights_dir()}  (set THEAD_WEIGHTS to change)")
    for col in ("name", "used by", "file", "status", "url"):
        table.add_column(col, overflow="fold")
    for entry in load_manifest().values():
        path = find_weights(entry.name)
        if json_lines:
            print(json.dumps({"name": entry.name, "file": entry.file, "present": path is not None,
                              "path": str(path) if path else str(weights_dir() / entry.file), "url": entry.url,
                              "sha256": entry.sha256, "used_by": entry.used_by}))
        table.add_row(entry.name, entry.used_by, entry.file,
                      "[green]present" if path else "[yellow]missing", entry.url)
    console.print(table)

"""Finding the stage caches a command should work on, from what the user typed."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Iterable, TextIO

from thead.cache import find_stage_dirs
from thead.pipeline.preprocess import STAGE as PREPROCESS


def expand_stdin(args: Iterable[str], stdin: TextIO | None = None) -> list[str]:
    """Replace each ``-`` by the paths listed on stdin (one per line; blanks and ``#`` comments skipped)."""
    out: list[str] = []
    for arg in args:
        if arg == "-":
            text = (stdin or sys.stdin).read()
            out.extend(ln.strip() for ln in text.splitlines() if ln.strip() and not ln.strip().startswith("#"))
        else:
            out.append(arg)
    return out


def split_cached(args: Iterable[str]) -> tuple[list[Path], list[str]]:
    """Split inputs into existing preprocess folders (a work directory, an item folder or a preprocess folder
    itself) and raw inputs (videos, images, directories of them, missing paths) that must be preprocessed."""
    cached: list[Path] = []
    raw: list[str] = []
    for arg in args:
        path = Path(arg)
        found = find_stage_dirs(path, PREPROCESS.name) if path.is_dir() else []
        if not found and path.is_dir() and path.name == PREPROCESS.name and (path / "meta.json").is_file():
            found = [path]
        if found:
            cached.extend(found)
        else:
            raw.append(arg)
    return cached, raw

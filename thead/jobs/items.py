"""Input items from the command line, and running a stage or job over them, one failure never stopping the batch.

``InputItem`` (a file and its item id) and ``ItemResult`` (an item's outcome) are the stage layer's records
(``thead.stages.item``), exported here too.
"""

from __future__ import annotations

import hashlib
import sys
import time
import traceback
from pathlib import Path
from typing import Callable, Iterable, Sequence, TextIO

from thead.errors import TheadError, describe_os_error, path_problem
from thead.stages.item import InputItem, ItemResult
from thead.stages.store import item_id_for

__all__ = ["InputItem", "ItemResult", "collect_inputs", "expand_stdin", "failure_message", "merge_item_groups", "run_item"]





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


def _with_path_tag(item_id: str, resolved: Path) -> str:
    """``item_id`` with a short hash of the file's path appended, to tell apart files whose ids collide."""
    return f"{item_id}-{hashlib.blake2b(str(resolved).encode(), digest_size=3).hexdigest()}"


def _unique_ids(paths: Sequence[tuple[Path, Path | None]], taken: dict[str, Path] | None = None
                ) -> list[InputItem]:
    """Items for (path, root) pairs: a file listed twice is one item; two files whose ids collide get a short
    hash of their path appended to the later one. ``taken``: ids already in use (id -> resolved path)."""
    items: list[InputItem] = []
    used: dict[str, Path] = dict(taken or {})
    seen: set[Path] = set()
    for path, root in paths:
        resolved = path.resolve()
        if resolved in seen:
            continue
        seen.add(resolved)
        item_id = item_id_for(path, root)
        if item_id in used and used[item_id] != resolved:
            item_id = _with_path_tag(item_id, resolved)
        used[item_id] = resolved
        items.append(InputItem(path, item_id))
    return items


def merge_item_groups(*groups: Sequence[InputItem]) -> list[list[InputItem]]:
    """Give items of several groups (sources, drivers) one consistent naming: the same file is the same item,
    and different files never share an id."""
    by_path: dict[Path, InputItem] = {}
    used: dict[str, Path] = {}
    out: list[list[InputItem]] = []
    for group in groups:
        row = []
        for it in group:
            resolved = it.path.resolve()
            if resolved not in by_path:
                item_id = it.item_id
                if item_id in used:
                    item_id = _with_path_tag(item_id, resolved)
                used[item_id] = resolved
                by_path[resolved] = InputItem(it.path, item_id)
            row.append(by_path[resolved])
        out.append(row)
    return out


def collect_inputs(
    args: Iterable[str | Path],
    suffixes: set[str],
    stdin: TextIO | None = None,
) -> tuple[list[InputItem], list[ItemResult]]:
    """Expand command-line inputs into items.

    Each argument is a file, a directory (searched recursively for ``suffixes``, sorted) or ``-`` (one path per
    line read from ``stdin``; blank lines and ``#`` comments ignored). Returns the items and a failed
    ``ItemResult`` for each argument that names nothing usable (missing file, wrong type, empty directory).
    """
    found: list[tuple[Path, Path | None]] = []
    failures: list[ItemResult] = []
    queue: list[str | Path] = list(args)
    while queue:
        arg = queue.pop(0)
        if str(arg) == "-":
            stream = stdin if stdin is not None else sys.stdin
            lines = [ln.strip() for ln in stream.read().splitlines()]
            queue = [ln for ln in lines if ln and not ln.startswith("#")] + queue
            continue
        path = Path(arg)
        if path.is_dir():
            files = sorted(p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in suffixes
                           and not any(part.startswith(".") for part in p.relative_to(path).parts))
            if not files:
                failures.append(ItemResult(str(path), "", "failed", message=f"{path}: no usable files in directory"))
            found.extend((p, path) for p in files)
        elif path.is_file():
            if path.suffix.lower() not in suffixes:
                failures.append(ItemResult(str(path), "", "failed",
                                           message=f"{path}: unsupported file type '{path.suffix}'"))
            else:
                found.append((path, None))
        else:
            failures.append(ItemResult(str(path), "", "failed",
                                       message=f"{path}: {path_problem(path) or 'file not found'}"))
    return _unique_ids(found), failures


def failure_message(item: InputItem, exc: BaseException) -> str:
    """One line for a user naming the item's file and what went wrong: a ``TheadError`` as it reads, an ``OSError``
    worded by ``describe_os_error``, anything else as "<file>: <ExceptionType>: <first line of its text>"."""
    if isinstance(exc, TheadError):
        msg = str(exc)
    elif isinstance(exc, OSError):
        msg = describe_os_error(exc)
    else:
        text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        msg = f"{type(exc).__name__}: {text}" if text else type(exc).__name__
        if isinstance(exc, (ValueError, RuntimeError)) and text:
            msg = text
    if str(item.path) not in msg:
        msg = f"{item.path}: {msg}"
    return msg


def run_item(item: InputItem, stage: Callable[[InputItem], ItemResult]) -> ItemResult:
    """Run ``stage`` on one item, turning any error (every ``Exception``: a bug, a damaged file, a library's own
    error type) into a failed result with a one-line message; anything but a ``TheadError`` (a reason worded for
    users) keeps its full traceback in ``info["traceback"]``. Ctrl-C and exits still end the batch."""
    start = time.perf_counter()
    try:
        result = stage(item)
    except TheadError as exc:
        result = ItemResult(str(item.path), item.item_id, "failed", message=failure_message(item, exc))
    except Exception as exc:  # noqa: BLE001 - one bad item never ends the batch
        result = ItemResult(str(item.path), item.item_id, "failed", message=failure_message(item, exc),
                            info={"traceback": traceback.format_exc()})
    result.seconds = time.perf_counter() - start
    return result

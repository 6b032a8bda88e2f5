"""Collecting input items and running a stage over them, one failure never stopping the batch."""

from __future__ import annotations

import hashlib
import sys
import time
import traceback
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence, TextIO

from thead.cache import item_id_for
from thead.errors import TheadError


@dataclass(frozen=True)
class InputItem:
    """One input file and the name of its folder in the work directory."""

    path: Path
    item_id: str


@dataclass
class ItemResult:
    """Outcome of one item: status is "done", "skipped" (cache current) or "failed"."""

    input: str
    item: str
    status: str
    output: str | None = None
    message: str = ""
    warnings: list[str] = field(default_factory=list)
    seconds: float = 0.0
    info: dict[str, Any] = field(default_factory=dict)

    @property
    def failed(self) -> bool:
        return self.status == "failed"

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def _unique_ids(paths: Sequence[tuple[Path, Path | None]]) -> list[InputItem]:
    items: list[InputItem] = []
    seen: dict[str, int] = {}
    for path, root in paths:
        base = item_id_for(path, root)
        item_id = base
        if base in seen:
            item_id = f"{base}-{hashlib.blake2b(str(path.resolve()).encode(), digest_size=3).hexdigest()}"
        seen[base] = seen.get(base, 0) + 1
        items.append(InputItem(path, item_id))
    return items


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
            failures.append(ItemResult(str(path), "", "failed", message=f"{path}: file not found"))
    return _unique_ids(found), failures


def run_item(item: InputItem, stage: Callable[[InputItem], ItemResult]) -> ItemResult:
    """Run ``stage`` on one item, turning any error into a failed result with a one-line message."""
    start = time.perf_counter()
    try:
        result = stage(item)
    except TheadError as exc:
        result = ItemResult(str(item.path), item.item_id, "failed", message=str(exc))
    except (OSError, ValueError, RuntimeError) as exc:
        msg = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        if str(item.path) not in msg:
            msg = f"{item.path}: {msg}"
        result = ItemResult(str(item.path), item.item_id, "failed", message=msg,
                            info={"traceback": traceback.format_exc(limit=4)})
    result.seconds = time.perf_counter() - start
    return result


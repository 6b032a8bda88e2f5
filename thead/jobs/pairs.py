"""Pairing inputs: many sources x many drivers, pairs from a CSV, and the manifest reenact writes."""

from __future__ import annotations

import csv
import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Iterable, Iterator

from thead.errors import InputError, describe_os_error, path_problem
from thead.stages.item import InputItem, ItemResult


@dataclass(frozen=True)
class Pair:
    """One (source, driver) job and the name of its output."""

    source: InputItem
    driver: InputItem

    @property
    def name(self) -> str:
        return f"{self.source.item_id}__{self.driver.item_id}"


def cross_pairs(sources: Iterable[InputItem], drivers: Iterable[InputItem]) -> list[Pair]:
    """Every source with every driver, sources outermost."""
    drivers = list(drivers)
    return [Pair(s, d) for s in sources for d in drivers]


def csv_lines(path: Path) -> Iterator[tuple[int, list[str] | str]]:
    """The CSV file's rows one line at a time: (line number from 1, stripped cells) for each row with content (blank
    lines and ``#`` comments skipped), or (line number, reason) for a line that cannot be read (bad UTF-8, a stray
    quote, a NUL byte). One bad line never hides the others. Raises ``InputError`` when the file cannot be read."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise InputError(None, describe_os_error(exc, path)) from exc
    for number, raw in enumerate(data.splitlines(), 1):
        try:
            text = raw.decode("utf-8-sig" if number == 1 else "utf8")
        except UnicodeDecodeError:
            yield number, "not UTF-8 text"
            continue
        if not text.strip() or text.lstrip().startswith("#"):
            continue
        if "\x00" in text:
            yield number, "malformed CSV row (NUL byte)"
            continue
        try:
            cells = next(csv.reader([text], strict=True))
        except (csv.Error, StopIteration) as exc:
            yield number, f"malformed CSV row ({exc})"
            continue
        yield number, [c.strip() for c in cells]


def row_failure(path: Path, line: int, reason: str) -> ItemResult:
    """A failed item for one bad CSV row: its message names the file and the line."""
    return ItemResult(f"{path}:{line}", f"{path.name}:{line}", "failed", message=f"{path}: line {line}: {reason}")


def read_pairs_csv(path: str | Path) -> tuple[list[tuple[Path, Path]], list[ItemResult]]:
    """(source, driver) paths from a CSV with columns ``source,driver`` (a header row is optional); relative paths
    are taken relative to the CSV's folder.

    Returns
    -------
    The pairs of the good rows, and one failed ``ItemResult`` per bad row (too few cells, an empty cell, a
    malformed line) naming the file and line number. Raises ``InputError`` when the file is missing or unreadable
    or holds no rows at all.
    """
    path = Path(path)
    if not path.is_file():
        raise InputError(path, path_problem(path) or "file not found")
    rows: list[tuple[Path, Path]] = []
    failures: list[ItemResult] = []
    first = True
    for number, row in csv_lines(path):
        if isinstance(row, str):
            failures.append(row_failure(path, number, row))
            first = False
            continue
        if first and [c.lower() for c in row[:2]] == ["source", "driver"]:
            first = False
            continue
        first = False
        if len(row) < 2:
            failures.append(row_failure(path, number, "expected source,driver"))
            continue
        if not row[0] or not row[1]:
            failures.append(row_failure(path, number, f"empty {'source' if not row[0] else 'driver'} cell"))
            continue
        src, drv = (Path(c) if Path(c).is_absolute() else path.parent / c for c in row[:2])
        rows.append((src, drv))
    if not rows and not failures:
        raise InputError(path, "no pairs in CSV")
    return rows, failures


@dataclass
class ManifestRow:
    """One generated video: what made it and from what (read by ``thead evaluate``)."""

    generated: str
    source: str
    driver: str
    mode: str
    status: str
    message: str = ""


def manifest_text(rows: Iterable[ManifestRow]) -> str:
    """Rows as CSV text (generated, source, driver, mode, status, message), with the header."""
    import io

    fh = io.StringIO(newline="")
    writer = csv.DictWriter(fh, fieldnames=list(ManifestRow.__dataclass_fields__))
    writer.writeheader()
    for r in rows:
        writer.writerow(asdict(r))
    return fh.getvalue()


def write_manifest(path: str | Path, rows: Iterable[ManifestRow]) -> None:
    """Write rows as CSV (``manifest_text``), atomically."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    with open(tmp, "w", newline="", encoding="utf8") as fh:
        fh.write(manifest_text(rows))
    os.replace(tmp, path)

"""Pairing inputs: many sources x many drivers, pairs from a CSV, and the manifest reenact writes."""

from __future__ import annotations

import csv
import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Iterable

from thead.errors import InputError
from thead.stages.item import InputItem


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


def read_pairs_csv(path: str | Path) -> list[tuple[Path, Path]]:
    """(source, driver) paths from a CSV with columns ``source,driver`` (a header row is optional); relative paths
    are taken relative to the CSV's folder."""
    path = Path(path)
    if not path.is_file():
        raise InputError(path, "file not found")
    rows: list[tuple[Path, Path]] = []
    with open(path, newline="", encoding="utf8") as fh:
        for i, row in enumerate(csv.reader(fh)):
            row = [c.strip() for c in row]
            if not row or not any(row) or row[0].startswith("#"):
                continue
            if i == 0 and [c.lower() for c in row[:2]] == ["source", "driver"]:
                continue
            if len(row) < 2:
                raise InputError(path, f"line {i + 1}: expected source,driver")
            src, drv = (Path(c) if Path(c).is_absolute() else path.parent / c for c in row[:2])
            rows.append((src, drv))
    if not rows:
        raise InputError(path, "no pairs in CSV")
    return rows


@dataclass
class ManifestRow:
    """One generated video: what made it and from what (read by ``thead evaluate``)."""

    generated: str
    source: str
    driver: str
    mode: str
    status: str
    message: str = ""


def write_manifest(path: str | Path, rows: Iterable[ManifestRow]) -> None:
    """Write rows as CSV (generated, source, driver, mode, status, message), atomically."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    rows = list(rows)
    with open(tmp, "w", newline="", encoding="utf8") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(ManifestRow.__dataclass_fields__))
        writer.writeheader()
        for r in rows:
            writer.writerow(asdict(r))
    os.replace(tmp, path)

"""One input item (a file and the name of its folder in the work directory) and the outcome of running a stage
or a job on it. ``thead.jobs.items`` collects items from the command line and runs them in batches."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class InputItem:
    """One input file and the name of its folder in the work directory (``thead.stages.store.item_id_for``)."""

    path: Path
    item_id: str


@dataclass
class ItemResult:
    """Outcome of one item: status is "done", "skipped" (cache or output current) or "failed"."""

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

"""The executor interface and the local one: items run one after another in this process.

An executor runs ``stage(item, progress)`` over items (``thead.jobs.items.run_item``: an error becomes a failed
``ItemResult``, never an exception) and hands each result to ``on_result`` as it arrives. ``on_start(item)``
returns the per-item progress function (``(done, total)``) where the executor can report within an item.
"""

from __future__ import annotations

from typing import Callable, Protocol, Sequence

from thead.jobs.items import InputItem, ItemResult, run_item
from thead.progress import ProgressFn

ItemStage = Callable[[InputItem, ProgressFn], ItemResult]
StartFn = Callable[[InputItem], ProgressFn]
ResultFn = Callable[[InputItem, ItemResult], None]

__all__ = ["Executor", "ItemStage", "LocalExecutor"]


class Executor(Protocol):
    """Runs a stage over items; ``name`` is what ``--executor`` calls it."""

    name: str

    def run(self, items: Sequence[InputItem], stage: ItemStage, on_start: StartFn, on_result: ResultFn) -> None:
        """Run ``stage`` on every item; call ``on_result(item, result)`` once per item."""
        ...


class LocalExecutor:
    """Items one after another in this process (the default)."""

    name = "local"

    def run(self, items: Sequence[InputItem], stage: ItemStage, on_start: StartFn, on_result: ResultFn) -> None:
        for item in items:
            report = on_start(item)
            on_result(item, run_item(item, lambda it: stage(it, report)))

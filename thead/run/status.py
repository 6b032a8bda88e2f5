"""The state of a work folder, per stage: which items are current, stale, failed or missing (``thead status``).

An item is any folder of the work folder (not starting with "."), any input given (``inputs``, named as
``thead preprocess`` names them) and any item of the failure log. Per stage:

- **current**: a finished result of this stage version (``preprocess``: made from the input's present content
  when the input is given; ``fit3dmm``: fitted to the item's present preprocess result);
- **stale**: a finished result that will be made again (another stage version, changed input, re-preprocessed);
- **failed**: no current result and the failure log has a record of the stage's command for the item (the
  latest reason is kept);
- **missing**: none of these.

Outputs of reenact / edit / evaluate / audio-drive are not cached per item: for them only the failures of the
log are counted.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Iterable

from thead.run.failures import read_failures
from thead.stages.fit import STAGE as FIT, FitMeta
from thead.stages.preprocess import STAGE as PREPROCESS, PreprocessMeta
from thead.stages.store import file_digest, read_meta

__all__ = ["StageStatus", "work_status", "STAGE_COMMANDS"]

# stage folder -> the commands whose failures leave that stage unmade
STAGE_COMMANDS = {PREPROCESS.name: ("preprocess",), FIT.name: ("fit-3dmm",)}
OUTPUT_COMMANDS = ("reenact", "edit", "evaluate", "audio-drive")
STATES = ("current", "stale", "failed", "missing")


@dataclass
class StageStatus:
    """Counts and item lists of one stage (or output command); ``reasons``: item -> latest failure message."""

    stage: str
    items: dict[str, list[str]] = field(default_factory=lambda: {s: [] for s in STATES})
    reasons: dict[str, str] = field(default_factory=dict)

    def counts(self) -> dict[str, int]:
        return {s: len(v) for s, v in self.items.items()}

    def to_json(self) -> dict[str, Any]:
        out = asdict(self)
        out["counts"] = self.counts()
        return out


def _preprocess_state(item_dir: Path, source: Path | None) -> tuple[str, PreprocessMeta | None]:
    stage_dir = item_dir / PREPROCESS.name
    meta = PreprocessMeta.read(stage_dir)
    if meta is None:
        return ("stale" if read_meta(stage_dir) is not None else "missing"), None
    if source is not None and source.is_file() and file_digest(source) != meta.source_hash:
        return "stale", meta
    return "current", meta


def _fit_state(item_dir: Path, pre: PreprocessMeta | None) -> str:
    stage_dir = item_dir / FIT.name
    meta = FitMeta.read(stage_dir)
    if meta is None:
        return "stale" if read_meta(stage_dir) is not None else "missing"
    return "current" if pre is not None and meta.preprocess_key == pre.key else "stale"


def work_status(workdir: str | Path, inputs: Iterable[tuple[str, Path]] = ()) -> list[StageStatus]:
    """Per-stage status of ``workdir``.

    Parameters
    ----------
    workdir : the work folder.
    inputs : (item id, input file) of the inputs the folder should hold; their content is hashed to tell a
        current preprocess result from a stale one (without them a result of this stage version counts as
        current).

    Returns
    -------
    One ``StageStatus`` for ``preprocess`` and ``fit3dmm``, then one per output command with failures logged.
    """
    workdir = Path(workdir)
    sources = dict(inputs)
    records = read_failures(workdir)
    names: dict[str, None] = {}
    if workdir.is_dir():
        for p in sorted(workdir.iterdir()):
            if p.is_dir() and not p.name.startswith("."):
                names.setdefault(p.name, None)
    for name in sources:
        names.setdefault(name, None)
    latest: dict[tuple[str, str], str] = {}
    for rec in records:
        latest[(str(rec.get("command")), str(rec.get("item")))] = str(rec.get("message", ""))
        if rec.get("command") in ("preprocess", "fit-3dmm"):
            names.setdefault(str(rec.get("item")), None)
    pre_status, fit_status = StageStatus(PREPROCESS.name), StageStatus(FIT.name)
    for name in names:
        item_dir = workdir / name
        pre_state, pre = _preprocess_state(item_dir, sources.get(name))
        fit_state = _fit_state(item_dir, pre if pre_state == "current" else None)
        for status, state in ((pre_status, pre_state), (fit_status, fit_state)):
            if state != "current":
                for command in STAGE_COMMANDS[status.stage]:
                    if (command, name) in latest:
                        state = "failed"
                        status.reasons[name] = latest[(command, name)]
            status.items[state].append(name)
    out = [pre_status, fit_status]
    for command in OUTPUT_COMMANDS:
        failed = {item: msg for (cmd, item), msg in latest.items() if cmd == command}
        if failed:
            st = StageStatus(command)
            st.items["failed"] = sorted(failed)
            st.reasons = failed
            out.append(st)
    return out

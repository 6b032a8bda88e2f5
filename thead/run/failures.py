"""The work folder's failure log: ``WORKDIR/.thead/failures.jsonl``, one JSON object per failed item and run.

Each record has exactly the keys ``time`` (ISO 8601, UTC), ``command`` (``preprocess``, ``fit-3dmm``, ...),
``item`` (its id), ``input`` (the path as given), ``message`` (the one-line reason) and ``traceback`` (the last
frames of an unexpected error, "" for an ``InputError``). Records are appended with one ``write`` under an
exclusive ``flock``, so shards of a job array can share the file. ``thead status`` reads it; ``--retry-failed``
redoes the inputs it lists.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

from thead.stages.item import ItemResult

__all__ = ["FAILURE_LOG", "failure_log_path", "read_failures", "record_failure", "failed_inputs"]

FAILURE_LOG = Path(".thead") / "failures.jsonl"
FIELDS = ("time", "command", "item", "input", "message", "traceback")


def failure_log_path(workdir: str | Path) -> Path:
    return Path(workdir) / FAILURE_LOG


def record_failure(workdir: str | Path, command: str, result: ItemResult) -> Path | None:
    """Append ``result`` (a failed item of ``command``) to ``workdir``'s failure log: one JSON object a line with
    the keys ``time``, ``command``, ``item``, ``input``, ``message`` and ``traceback`` (the Python traceback of an
    unexpected error, "" for a reason worded for users). Returns the log's path, or None when it cannot be written
    (the failure is still on screen; logging never fails an item)."""
    record = {"time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "command": command,
              "item": result.item, "input": result.input, "message": result.message,
              "traceback": str(result.info.get("traceback", ""))}
    path = failure_log_path(workdir)
    line = (json.dumps(record) + "\n").encode("utf8")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    except OSError:
        return None
    try:
        try:
            import fcntl

            fcntl.flock(fd, fcntl.LOCK_EX)
        except (ImportError, OSError):
            pass  # no flock (Windows, some network filesystems): O_APPEND alone
        os.write(fd, line)  # one write of an O_APPEND file: lines of concurrent runs never interleave
    except OSError:
        return None
    finally:
        os.close(fd)
    return path


def read_failures(workdir: str | Path, command: str | None = None) -> list[dict[str, Any]]:
    """The records of ``workdir``'s failure log (of ``command`` only when given), oldest first; unreadable lines
    (a write cut off by a crash) are skipped."""
    path = failure_log_path(workdir)
    try:
        text = path.read_text(encoding="utf8", errors="replace")
    except OSError:
        return []
    out = []
    for line in text.splitlines():
        try:
            rec = json.loads(line)
        except ValueError:
            continue
        if isinstance(rec, dict) and (command is None or rec.get("command") == command):
            out.append(rec)
    return out


def failed_inputs(workdir: str | Path, command: str) -> list[str]:
    """The distinct inputs (paths as recorded) of ``command``'s failures in ``workdir``, in first-failed order."""
    seen: dict[str, None] = {}
    for rec in read_failures(workdir, command):
        if rec.get("input"):
            seen.setdefault(str(rec["input"]), None)
    return list(seen)

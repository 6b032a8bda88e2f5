"""Stage cache primitives: content hashing, keys, atomic stage folders, meta.json."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

import thead

META_NAME = "meta.json"


@dataclass(frozen=True)
class StageInfo:
    """Name and version of a pipeline stage; bumping ``version`` invalidates every cache of that stage."""

    name: str
    version: int


def file_digest(path: str | Path, chunk: int = 1 << 20) -> str:
    """BLAKE2b-128 hex digest of a file's content."""
    h = hashlib.blake2b(digest_size=16)
    with open(path, "rb") as fh:
        while True:
            block = fh.read(chunk)
            if not block:
                break
            h.update(block)
    return h.hexdigest()


def _canonical(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {str(k): _canonical(v) for k, v in sorted(obj.items(), key=lambda kv: str(kv[0]))}
    if isinstance(obj, (list, tuple)):
        return [_canonical(v) for v in obj]
    if isinstance(obj, Path):
        return str(obj)
    if isinstance(obj, float):
        return round(obj, 9)
    return obj


def stage_key(stage: StageInfo, input_digests: dict[str, str], params: dict[str, Any]) -> str:
    """Key of a stage result: hash of stage name/version, the inputs' content digests and the parameters."""
    blob = json.dumps(
        {"stage": stage.name, "version": stage.version, "inputs": _canonical(input_digests),
         "params": _canonical(params)},
        sort_keys=True,
    )
    return hashlib.blake2b(blob.encode(), digest_size=16).hexdigest()


def read_meta(stage_dir: str | Path) -> dict | None:
    """The stage's meta.json as a dict, or None when absent or unreadable (an unfinished write)."""
    stage_dir = Path(stage_dir)
    _recover(stage_dir)
    try:
        with open(stage_dir / META_NAME, encoding="utf8") as fh:
            meta = json.load(fh)
    except (OSError, ValueError):
        return None
    return meta if isinstance(meta, dict) else None


def stage_is_current(stage_dir: str | Path, key: str) -> bool:
    """True when ``stage_dir`` holds a finished result whose key equals ``key``."""
    meta = read_meta(stage_dir)
    return meta is not None and meta.get("key") == key


def _old_name(stage_dir: Path) -> Path:
    return stage_dir.with_name(f".{stage_dir.name}.old")


def _recover(stage_dir: Path) -> None:
    """Finish an interrupted swap: if the final folder is gone but the previous result was set aside, restore it."""
    old = _old_name(stage_dir)
    if old.is_dir() and not stage_dir.exists():
        os.replace(old, stage_dir)
    elif old.is_dir() and (stage_dir / META_NAME).is_file():
        shutil.rmtree(old, ignore_errors=True)


@contextlib.contextmanager
def write_stage(stage_dir: str | Path, stage: StageInfo, key: str, meta: dict[str, Any]) -> Iterator[Path]:
    """Context manager giving a temporary folder to write a stage's files into.

    On normal exit, ``meta.json`` (with ``meta`` plus stage, key, thead version and time) is written last and
    the folder replaces ``stage_dir``; on an exception the temporary folder is removed and any previous result
    stays untouched. The yielded dict-like ``meta`` may be updated by the caller before exit.
    """
    stage_dir = Path(stage_dir)
    stage_dir.parent.mkdir(parents=True, exist_ok=True)
    _recover(stage_dir)
    tmp = stage_dir.with_name(f".{stage_dir.name}.tmp-{os.getpid()}-{time.monotonic_ns()}")
    tmp.mkdir()
    try:
        yield tmp
        full = dict(meta)
        full.update(stage=stage.name, stage_version=stage.version, key=key, thead_version=thead.__version__,
                    created=time.strftime("%Y-%m-%dT%H:%M:%S%z"))
        meta_tmp = tmp / (META_NAME + ".tmp")
        with open(meta_tmp, "w", encoding="utf8") as fh:
            json.dump(_canonical(full), fh, indent=2)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(meta_tmp, tmp / META_NAME)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    old = _old_name(stage_dir)
    if stage_dir.exists():
        if old.exists():
            shutil.rmtree(old)
        os.replace(stage_dir, old)
    os.replace(tmp, stage_dir)
    shutil.rmtree(old, ignore_errors=True)


_SAFE = re.compile(r"[^A-Za-z0-9._-]+")


def item_id_for(path: str | Path, root: str | Path | None = None) -> str:
    """Folder name of an input item: its path relative to ``root`` without suffix, '/' turned into '__'.

    ``item_id_for("raw/id01/clip.mp4", "raw") == "id01__clip"``; with no root, the file stem.
    """
    path = Path(path)
    rel = path.relative_to(root) if root is not None and path.is_relative_to(root) else Path(path.name)
    parts = list(rel.with_suffix("").parts)
    return "__".join(_SAFE.sub("_", p) for p in parts) or "item"


def find_stage_dirs(root: str | Path, stage_name: str) -> list[Path]:
    """Every finished ``<item>/<stage_name>`` folder under ``root`` (recursively), sorted."""
    root = Path(root)
    if (root / stage_name / META_NAME).is_file():
        return [root / stage_name]
    return sorted(p.parent for p in root.rglob(f"{stage_name}/{META_NAME}") if not p.parent.name.startswith("."))

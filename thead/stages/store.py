"""Stage cache primitives: content hashing, keys, atomic stage folders, typed meta.json.

Layout (see README, "Stage cache layout")::

    WORKDIR/<item>/<stage>/meta.json   # written last; a stage folder without it is never trusted
    WORKDIR/<item>/<stage>/...         # the stage's files

A stage is *current* when its ``meta.json`` holds the key computed from (stage name, stage version, the
content hash of its inputs, its parameters). Stages are written into a temporary sibling folder and swapped
into place with renames, so a killed run leaves either the old complete result or the new one.

Only ``thead.stages`` reads and writes these folders; jobs get what they need through ``thead.stages.Face``.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import os
import re
import shutil
import time
import types
import typing
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, Self

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


@dataclass(frozen=True, kw_only=True)
class StageMeta:
    """What every stage's ``meta.json`` holds (filled in by ``write_stage``); stages subclass it with their own
    fields. ``from_json`` gives None, never an exception, for a meta.json of another stage, another stage version,
    or with missing, unknown or mistyped keys: such a cache is stale and is made again."""

    stage: str
    stage_version: int
    key: str
    thead_version: str
    created: str

    STAGE: typing.ClassVar[StageInfo]

    @classmethod
    def from_json(cls, data: Any) -> Self | None:
        """An instance of ``cls`` from a meta.json dict, or None when the dict does not describe a current result
        of ``cls.STAGE`` in exactly ``cls``'s fields (those with defaults may be absent)."""
        if not isinstance(data, dict):
            return None
        fields = {f.name: f for f in dataclasses.fields(cls)}
        if set(data) - set(fields):
            return None
        if data.get("stage") != cls.STAGE.name or data.get("stage_version") != cls.STAGE.version:
            return None
        hints = typing.get_type_hints(cls)
        values: dict[str, Any] = {}
        for name, f in fields.items():
            if name not in data:
                if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
                    return None
                continue
            value = _typed(data[name], hints[name])
            if value is _BAD:
                return None
            values[name] = value
        try:
            return cls(**values)
        except (TypeError, ValueError):
            return None

    def to_json(self) -> dict[str, Any]:
        """The meta.json dict (tuples as lists, nested parameter dataclasses as dicts)."""
        return _canonical(dataclasses.asdict(self))

    @classmethod
    def read(cls, stage_dir: str | Path) -> Self | None:
        """The typed meta of the finished result in ``stage_dir``, or None (absent, unfinished or stale)."""
        return cls.from_json(read_meta(stage_dir))


_BAD = object()


def _typed(value: Any, hint: Any) -> Any:
    """``value`` (parsed JSON) as type ``hint`` (lists become tuples, dicts become parameter dataclasses), or
    ``_BAD`` when it does not fit."""
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        for arm in typing.get_args(hint):
            out = _typed(value, arm)
            if out is not _BAD:
                return out
        return _BAD
    if hint is Any:
        return value
    if hint is type(None):
        return None if value is None else _BAD
    if hint is bool:
        return value if isinstance(value, bool) else _BAD
    if hint is int:
        return value if isinstance(value, int) and not isinstance(value, bool) else _BAD
    if hint is float:
        return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else _BAD
    if hint is str:
        return value if isinstance(value, str) else _BAD
    if dataclasses.is_dataclass(hint):
        if not isinstance(value, dict):
            return _BAD
        fields = {f.name: f for f in dataclasses.fields(hint)}
        if set(value) - set(fields):
            return _BAD
        sub = typing.get_type_hints(hint)
        kwargs = {}
        for k, v in value.items():
            kwargs[k] = _typed(v, sub[k])
            if kwargs[k] is _BAD:
                return _BAD
        try:
            return hint(**kwargs)
        except (TypeError, ValueError):
            return _BAD
    if origin in (list, tuple):
        if not isinstance(value, list):
            return _BAD
        args = typing.get_args(hint)
        if origin is tuple and args and args[-1] is not Ellipsis:
            if len(args) != len(value):
                return _BAD
            items = [_typed(v, a) for v, a in zip(value, args)]
        else:
            items = [_typed(v, args[0] if args else Any) for v in value]
        if any(i is _BAD for i in items):
            return _BAD
        return tuple(items) if origin is tuple else items
    if origin is dict or hint is dict:
        return dict(value) if isinstance(value, dict) else _BAD
    return value if isinstance(value, hint) else _BAD


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


def stamp(stage: StageInfo, key: str) -> dict[str, Any]:
    """The fields every meta.json gets (``StageMeta``'s): stage name and version, key, thead version, time."""
    return {"stage": stage.name, "stage_version": stage.version, "key": key, "thead_version": thead.__version__,
            "created": time.strftime("%Y-%m-%dT%H:%M:%S%z")}


@contextlib.contextmanager
def write_stage(stage_dir: str | Path, stage: StageInfo, key: str, meta: dict[str, Any]) -> Iterator[Path]:
    """Context manager giving a temporary folder to write a stage's files into.

    On normal exit, ``meta.json`` (``meta`` plus ``stamp(stage, key)``) is written last and the folder replaces
    ``stage_dir``; on an exception the temporary folder is removed and any previous result stays untouched. The
    ``meta`` dict may be updated by the caller inside the block (typically with a ``StageMeta.to_json()``).
    """
    stage_dir = Path(stage_dir)
    stage_dir.parent.mkdir(parents=True, exist_ok=True)
    _recover(stage_dir)
    tmp = stage_dir.with_name(f".{stage_dir.name}.tmp-{os.getpid()}-{time.monotonic_ns()}")
    tmp.mkdir()
    try:
        yield tmp
        full = dict(meta)
        full.update(stamp(stage, key))
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


LOCK_NAME = ".lock"
_held: dict[str, list] = {}  # item folder -> [open lock file, depth]: the locks this process holds
_TEMP = re.compile(r"\.tmp-(\d+)(?:-|\.|$)")


def _pid_alive(pid: int) -> bool:
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, another user's
        return True
    return True


def clean_stale_temps(folder: str | Path) -> list[Path]:
    """Remove the temporary files and folders that processes which are no longer running left in ``folder`` (not
    recursive): names with ``.tmp-<pid>`` in them (stage folders ``.<stage>.tmp-<pid>-<n>``, files
    ``.<name>.tmp-<pid>``) whose pid is not alive. A live process's temporaries are never touched. Returns what
    was removed."""
    removed: list[Path] = []
    try:
        entries = list(Path(folder).iterdir())
    except OSError:
        return removed
    for entry in entries:
        m = _TEMP.search(entry.name)
        if m is None or _pid_alive(int(m.group(1))):
            continue
        try:
            if entry.is_dir() and not entry.is_symlink():
                shutil.rmtree(entry)
            else:
                entry.unlink()
        except FileNotFoundError:
            continue  # another run cleaned it
        except OSError:
            continue
        removed.append(entry)
    return removed


@contextlib.contextmanager
def item_lock(item_dir: str | Path) -> Iterator[Path]:
    """Hold the item folder's lock (``fcntl.flock`` on ``<item_dir>/.lock``, created with the folder) while making
    or reading its stages: another process working on the same item waits here until this one is done (then finds
    the cache current). Re-entrant within a process (``ensure`` holds it around the stages, which take it too).
    On taking it, temporaries of dead processes in the folder are removed (``clean_stale_temps``); the stage
    folders' interrupted swaps are finished by ``read_meta``.

    Yields the item folder."""
    import fcntl

    item_dir = Path(item_dir)
    key = os.path.realpath(item_dir)
    if key in _held:
        _held[key][1] += 1
        try:
            yield item_dir
        finally:
            _held[key][1] -= 1
        return
    item_dir.mkdir(parents=True, exist_ok=True)
    fh = open(item_dir / LOCK_NAME, "a+b")
    try:
        fcntl.flock(fh.fileno(), fcntl.LOCK_EX)
        _held[key] = [fh, 1]
        try:
            clean_stale_temps(item_dir)
            yield item_dir
        finally:
            del _held[key]
            fcntl.flock(fh.fileno(), fcntl.LOCK_UN)
    finally:
        fh.close()


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


# ---------------------------------------------------------------------------------------------------------------
# Keyed array files: per-source work a job caches next to an item's stages (e.g. the person matte of a source)


def write_keyed_arrays(path: str | Path, key: str, arrays: dict[str, Any]) -> None:
    """Write ``arrays`` (name -> numpy array) with ``key`` to the npz file ``path``, atomically (a temporary file
    renamed into place: a killed run leaves the old file or the new one)."""
    import numpy as np

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}-{time.monotonic_ns()}")
    try:
        with open(tmp, "wb") as fh:
            np.savez(fh, __key__=np.array(key), **{k: np.asarray(v) for k, v in arrays.items()})
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def read_keyed_arrays(path: str | Path, key: str) -> dict[str, Any] | None:
    """The arrays of ``write_keyed_arrays``' file ``path`` when it holds ``key``; None when it is missing, holds
    another key (stale) or cannot be read."""
    import numpy as np

    try:
        with np.load(path, allow_pickle=False) as data:
            if "__key__" not in data.files or str(data["__key__"]) != key:
                return None
            return {k: data[k] for k in data.files if k != "__key__"}
    except (OSError, ValueError, EOFError, KeyError):
        return None

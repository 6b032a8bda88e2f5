"""The weights manifest: which model files thead can use, where they are expected, how to get them, and the
checks every weights file passes before anything reads it.

Nothing is downloaded. ``read_weights(name)`` finds the named file, resolves symbolic links (refusing loops and
broken links), reads the resolved file ONCE and checks the sha256 of exactly those bytes against the manifest:
a mismatch is refused with one line naming the file, the expected and the actual digest. An entry without a
published digest carries an ``unverified`` reason instead, and every use of such a file logs a warning naming it.
Loaders then build models from the checked bytes (never by opening the path again), e.g. ``load_torch_state``,
which unpickles with ``torch.load(weights_only=True)``: tensors only, no code.
"""

from __future__ import annotations

import functools
import hashlib
import io
import logging
import os
import re
import sys
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any, Callable

from thead.errors import BadWeightsError, MissingWeightsError, describe_os_error, path_problem

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

log = logging.getLogger("thead.weights")

_HEX64 = re.compile(r"[0-9a-f]{64}")
# torch.hub's naming convention: "<name>-<first hex digits of the sha256>.<ext>" (ext may be "pth.tar").
_NAME_PREFIX = re.compile(r"-([0-9a-f]{8,64})\.[A-Za-z][A-Za-z0-9.]*$")


@dataclass(frozen=True)
class WeightsEntry:
    """One manifest entry (``[[weights]]`` or ``[[conversion_inputs]]``).

    Exactly one of ``sha256`` (64 hex digits of the published file) and ``unverified`` (why no digest can be
    given) is set; a file name carrying a hash prefix must agree with ``sha256``.
    """

    name: str
    file: str
    url: str
    sha256: str = ""
    unverified: str = ""
    used_by: str = ""
    note: str = ""
    for_: str = ""  # conversion inputs: the weights entry they are converted into

    def __post_init__(self) -> None:
        digest = self.sha256.lower()
        object.__setattr__(self, "sha256", digest)
        if digest and not _HEX64.fullmatch(digest):
            raise ValueError(f"weights_manifest.toml: '{self.name}': sha256 must be 64 hex digits, got {digest!r}")
        if bool(digest) == bool(self.unverified.strip()):
            raise ValueError(f"weights_manifest.toml: '{self.name}' needs exactly one of sha256 (the published "
                             f"digest) and unverified (why there is none)")
        prefix = hash_prefix_of(self.file)
        if digest and prefix and not digest.startswith(prefix):
            raise ValueError(f"weights_manifest.toml: '{self.name}': sha256 {digest} disagrees with the hash "
                             f"prefix {prefix} in the file name {self.file}")

    @property
    def verified(self) -> bool:
        """True when the manifest has a digest to check the file against."""
        return bool(self.sha256)


def hash_prefix_of(file_name: str) -> str:
    """The hex sha256 prefix a torch.hub-style file name carries (``s3fd-619a316812.pth`` -> ``619a316812``), or
    "" when the name has none."""
    m = _NAME_PREFIX.search(file_name)
    return m.group(1) if m else ""


@dataclass(frozen=True)
class CheckedWeights:
    """A weights file read once and checked: load models from ``data``, never by opening ``path`` again.

    path: the resolved file (symbolic links followed). data: its bytes. sha256: their digest. verified: the
    digest matched the manifest's (False: the entry has no published digest; a warning was logged).
    """

    name: str
    path: Path
    data: bytes
    sha256: str
    verified: bool


def weights_dir() -> Path:
    """Folder searched for weight files: ``$THEAD_WEIGHTS``, else ``~/.cache/thead/weights``."""
    return Path(os.environ.get("THEAD_WEIGHTS", Path.home() / ".cache" / "thead" / "weights")).expanduser()


def _manifest_text() -> str:
    packaged = resources.files("thead").joinpath("weights_manifest.toml")
    if packaged.is_file():
        return packaged.read_text(encoding="utf8")
    # Editable/source checkout: the manifest sits at the repository root, next to the package.
    return (Path(__file__).resolve().parent.parent / "weights_manifest.toml").read_text(encoding="utf8")


def _entries(rows: list[dict[str, Any]]) -> dict[str, WeightsEntry]:
    out = {}
    for row in rows:
        row = dict(row)
        if "for" in row:
            row["for_"] = row.pop("for")
        out[row["name"]] = WeightsEntry(**row)
    return out


@functools.lru_cache(maxsize=None)
def load_manifest() -> dict[str, WeightsEntry]:
    """All run-time weights entries (``[[weights]]``) by name; raises ValueError on a malformed manifest."""
    return _entries(tomllib.loads(_manifest_text()).get("weights", []))


@functools.lru_cache(maxsize=None)
def load_conversion_inputs() -> dict[str, WeightsEntry]:
    """The published checkpoints the converters read (``[[conversion_inputs]]``), by name."""
    return _entries(tomllib.loads(_manifest_text()).get("conversion_inputs", []))


def sha256_of(path: Path) -> str:
    """Hex sha256 of a file's bytes."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def find_weights(name: str, extra_dirs: list[Path] | None = None) -> Path | None:
    """Path of the named weights file if present in the weights folder (or ``extra_dirs``), else None.

    A symbolic link counts as present even when it is broken or loops, so that ``read_weights`` reports what is
    wrong with it instead of calling the file missing.
    """
    entry = load_manifest()[name]
    for folder in [weights_dir(), *(extra_dirs or [])]:
        candidate = Path(folder) / entry.file
        if candidate.is_file() or candidate.is_symlink():
            return candidate
    return None


def resolve_weights_file(path: str | Path) -> Path:
    """``path`` with every symbolic link resolved; raises ``BadWeightsError`` for a link loop, a broken link or
    anything but a regular file (one line naming ``path``)."""
    path = Path(path)
    problem = path_problem(path)
    if problem is not None:
        raise BadWeightsError(f"{path}: {problem}")
    try:
        return path.resolve(strict=True)
    except (OSError, RuntimeError) as exc:  # RuntimeError: pathlib's "Symlink loop" (raced in after the check)
        raise BadWeightsError(f"{path}: {describe_os_error(exc, path) if isinstance(exc, OSError) else exc}")


def _missing_message(entry: WeightsEntry) -> str:
    return (f"weights '{entry.name}' ({entry.used_by}) are not on disk: download {entry.url} and save it as "
            f"{weights_dir() / entry.file} (or set THEAD_WEIGHTS to the folder holding {entry.file})")


def check_bytes(entry: WeightsEntry, data: bytes, path: Path, warn: bool = True) -> str:
    """The sha256 of ``data`` (read from ``path``) after checking it against ``entry``.

    Raises ``BadWeightsError`` on a mismatch: ``"<path>: sha256 mismatch for weights '<name>': expected <e>, got
    <g>; get the file again from <url>"``. An entry without a digest logs (``warn``) a warning naming the file.
    """
    digest = hashlib.sha256(data).hexdigest()
    if entry.verified:
        if digest != entry.sha256:
            raise BadWeightsError(f"{path}: sha256 mismatch for weights '{entry.name}': expected {entry.sha256}, "
                                  f"got {digest}; get the file again from {entry.url}")
    elif warn:
        log.warning("warning: %s: weights '%s' are UNVERIFIED (no published sha256; this file's is %s): %s",
                    path, entry.name, digest, entry.unverified)
    return digest


def read_weights(name: str, path: str | Path | None = None, extra_dirs: list[Path] | None = None,
                 entry: WeightsEntry | None = None) -> CheckedWeights:
    """Find, resolve, read and check the named weights file.

    Parameters
    ----------
    name : str
        Manifest entry (``[[weights]]``; ``entry`` may give a ``[[conversion_inputs]]`` one instead).
    path : str or Path, optional
        The file to use instead of looking in the weights folder; it is checked against ``name``'s digest too.
    extra_dirs : list of Path, optional
        Folders searched after the weights folder.

    Returns
    -------
    CheckedWeights
        The resolved path and the bytes whose digest was checked.

    Raises
    ------
    MissingWeightsError
        No such entry, or the file is not on disk (the message says what to get and where to put it).
    BadWeightsError
        A link loop, a broken link, an unreadable file, or a sha256 mismatch.
    """
    if entry is None:
        manifest = load_manifest()
        if name not in manifest:
            raise MissingWeightsError(f"unknown weights '{name}' (not in weights_manifest.toml)")
        entry = manifest[name]
    if path is None:
        path = find_weights(name, extra_dirs)
        if path is None:
            raise MissingWeightsError(_missing_message(entry))
    resolved = resolve_weights_file(path)
    try:
        data = resolved.read_bytes()
    except OSError as exc:
        raise BadWeightsError(describe_os_error(exc, resolved)) from None
    digest = check_bytes(entry, data, resolved)
    return CheckedWeights(entry.name, resolved, data, digest, entry.verified)


def require_weights(name: str, extra_dirs: list[Path] | None = None, verify: bool = True) -> Path:
    """Resolved path of the named weights file after ``read_weights``' checks (``verify=False``: only found and
    resolved). Raises ``MissingWeightsError`` saying what to get and where to put it, ``BadWeightsError`` when the
    file is refused. Prefer ``read_weights``: it hands over the checked bytes, so nothing can swap the file
    between the check and the load."""
    if verify:
        return read_weights(name, extra_dirs=extra_dirs).path
    manifest = load_manifest()
    if name not in manifest:
        raise MissingWeightsError(f"unknown weights '{name}' (not in weights_manifest.toml)")
    path = find_weights(name, extra_dirs)
    if path is None:
        raise MissingWeightsError(_missing_message(manifest[name]))
    return resolve_weights_file(path)


def load_torch_state(data: bytes, source: str | Path) -> dict[str, Any]:
    """A state dict from the bytes of a ``torch.save`` file, unpickled with ``weights_only=True``.

    Tensors, numbers, strings and containers only: a file holding any other pickled object (code to run on
    load) is refused with ``BadWeightsError``, not executed. A ``{"state_dict": ...}`` wrapper is unwrapped and
    ``module.`` prefixes (DataParallel) are dropped; non-tensor entries are dropped.
    """
    import pickle

    import torch

    try:
        state = torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise BadWeightsError(f"{source}: refused: holds pickled Python objects besides tensors, which "
                              f"torch.load(weights_only=True) does not run ({first})") from None
    except Exception as exc:  # noqa: BLE001 - any unreadable checkpoint is a bad file, named
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise BadWeightsError(f"{source}: not a readable torch checkpoint ({first})") from None
    if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
        state = state["state_dict"]
    if not isinstance(state, dict):
        raise BadWeightsError(f"{source}: not a state dict (holds a {type(state).__name__})")
    return {str(k).removeprefix("module."): v for k, v in state.items() if isinstance(v, torch.Tensor)}


def load_state_strict(model: Any, state: dict[str, Any], source: str | Path, hint: str = "") -> Any:
    """``model`` (a torch module) with ``state`` loaded: every key of the model present with its shape and a
    floating dtype where the model's is floating (extra keys, e.g. a classifier, are ignored; BatchNorm counters
    optional). Raises ``BadWeightsError`` naming ``source`` (``hint``: what to do, appended)."""
    own = model.state_dict()
    state = {**{k: v for k, v in own.items() if k.endswith("num_batches_tracked")}, **state}
    missing = [k for k in own if k not in state]
    wrong = [f"{k} {tuple(state[k].shape)} != {tuple(v.shape)}" for k, v in own.items()
             if k in state and tuple(state[k].shape) != tuple(v.shape)]
    dtypes = [f"{k} {state[k].dtype}" for k, v in own.items()
              if k in state and v.is_floating_point() and not state[k].is_floating_point()]
    if missing or wrong or dtypes:
        detail = (f"missing {missing[:3]}{'...' if len(missing) > 3 else ''}" if missing
                  else f"wrong shapes {wrong[:3]}" if wrong else f"not floating point {dtypes[:3]}")
        raise BadWeightsError(f"{source} is not a valid {type(model).__name__} weights file ({detail})"
                              + (f"; {hint}" if hint else ""))
    model.load_state_dict({k: state[k] for k in own}, strict=True)
    return model


_MODELS: dict[tuple[type, str, str], Any] = {}


def load_cached_model(cls: type, name: str, device: object = "cpu", path: str | Path | None = None):
    """``cls.from_bytes(data, device, source)`` for the checked bytes of weights ``name`` (or of ``path``).

    The file is found, resolved, read and checked on EVERY call (an unverified file logs its warning each time);
    the built model is kept per (class, sha256, device), so repeated calls only cost the read and the hash.
    Raises ``MissingWeightsError`` / ``BadWeightsError`` when the file is absent or refused (digest, keys,
    shapes or the model's own sanity check).
    """
    checked = read_weights(name, path)
    key = (cls, checked.sha256, str(device))
    if key not in _MODELS:
        _MODELS[key] = cls.from_bytes(checked.data, device, checked.path)
    return _MODELS[key]


def clear_model_cache() -> None:
    """Forget the models ``load_cached_model`` built (tests, or after replacing weights files)."""
    _MODELS.clear()


def file_status(entry: WeightsEntry, extra_dirs: list[Path] | None = None,
                digest: Callable[[Path], str] = sha256_of) -> dict[str, Any]:
    """What ``thead weights`` shows for one entry: ``status`` is "verified", "present, UNVERIFIED", "WRONG
    (sha256 mismatch)", "refused (<reason>)" or "missing"; ``usable`` says whether a load would proceed."""
    found = find_weights(entry.name, extra_dirs) if entry.name in load_manifest() else None
    row: dict[str, Any] = {"present": found is not None, "path": str(found) if found else None,
                           "sha256_found": None, "usable": False}
    if found is None:
        row["status"] = "missing"
        return row
    problem = path_problem(found)
    if problem is not None:
        row["status"] = f"refused ({problem})"
        return row
    row["sha256_found"] = actual = digest(found.resolve())
    if not entry.verified:
        row.update(status="present, UNVERIFIED", usable=True)
    elif actual == entry.sha256:
        row.update(status="verified", usable=True)
    else:
        row["status"] = "WRONG (sha256 mismatch)"
    return row

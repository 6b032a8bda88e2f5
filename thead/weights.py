"""The weights manifest: which model files thead can use, where they are expected, and how to get them.

Nothing is downloaded. ``require_weights(name)`` returns the path of a present file or raises
``MissingWeightsError`` with a message naming the file, its URL and the folder to put it in.
"""

from __future__ import annotations

import functools
import hashlib
import os
import sys
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from thead.errors import MissingWeightsError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib


@dataclass(frozen=True)
class WeightsEntry:
    """One manifest entry."""

    name: str
    file: str
    url: str
    sha256: str = ""
    used_by: str = ""
    note: str = ""


def weights_dir() -> Path:
    """Folder searched for weight files: ``$THEAD_WEIGHTS``, else ``~/.cache/thead/weights``."""
    return Path(os.environ.get("THEAD_WEIGHTS", Path.home() / ".cache" / "thead" / "weights")).expanduser()


def _manifest_text() -> str:
    packaged = resources.files("thead").joinpath("weights_manifest.toml")
    if packaged.is_file():
        return packaged.read_text(encoding="utf8")
    # Editable/source checkout: the manifest sits at the repository root, next to the package.
    return (Path(__file__).resolve().parent.parent / "weights_manifest.toml").read_text(encoding="utf8")


@functools.lru_cache(maxsize=None)
def load_manifest() -> dict[str, WeightsEntry]:
    """All manifest entries by name."""
    data = tomllib.loads(_manifest_text())
    return {w["name"]: WeightsEntry(**w) for w in data.get("weights", [])}


def sha256_of(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def find_weights(name: str, extra_dirs: list[Path] | None = None) -> Path | None:
    """Path of the named weights file if present in the weights folder (or ``extra_dirs``), else None."""
    entry = load_manifest()[name]
    for folder in [weights_dir(), *(extra_dirs or [])]:
        candidate = Path(folder) / entry.file
        if candidate.is_file():
            return candidate
    return None


def require_weights(name: str, extra_dirs: list[Path] | None = None, verify: bool = True) -> Path:
    """Path of the named weights file; raises ``MissingWeightsError`` saying what to get and where to put it."""
    manifest = load_manifest()
    if name not in manifest:
        raise MissingWeightsError(f"unknown weights '{name}' (not in weights_manifest.toml)")
    entry = manifest[name]
    path = find_weights(name, extra_dirs)
    if path is None:
        raise MissingWeightsError(
            f"weights '{name}' ({entry.used_by}) are not on disk: download {entry.url} and save it as "
            f"{weights_dir() / entry.file} (or set THEAD_WEIGHTS to the folder holding {entry.file})"
        )
    if verify and entry.sha256 and sha256_of(path) != entry.sha256.lower():
        raise MissingWeightsError(f"weights '{name}' at {path} do not match the manifest's sha256; get them again "
                                  f"from {entry.url}")
    return path


@functools.lru_cache(maxsize=8)
def _cached_model(cls: type, path: str, device: str):
    return cls.from_file(path, device)


def load_cached_model(cls: type, name: str, device: object = "cpu", path: str | Path | None = None):
    """``cls.from_file(path, device)`` with ``path`` defaulting to ``require_weights(name)``; one model per
    (class, file, device) is kept, so repeated calls cost nothing. Raises ``MissingWeightsError`` when the file is
    absent or malformed (as ``require_weights`` and ``from_file`` do)."""
    if path is None:
        path = require_weights(name)
    return _cached_model(cls, str(path), str(device))

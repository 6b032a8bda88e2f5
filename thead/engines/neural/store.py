"""Trained neural-engine weights: safetensors files with the config in their metadata, and their registry.

A model ``NAME`` lives at ``<weights folder>/neural/NAME.safetensors`` and is registered with its sha256 in
``<weights folder>/neural/registry.json`` (as ``thead train audio2motion`` registers its models). ``load_neural``
reads a file ONCE, checks the sha256 of those bytes against the registry (for registered names), rebuilds the
config from the metadata and loads the state strictly: it never returns random weights.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import struct
from pathlib import Path

import torch

from thead.engines.neural.config import NeuralConfig
from thead.engines.neural.model import NeuralGenerator
from thead.errors import BadWeightsError, MissingWeightsError

REGISTRY = "registry.json"
FORMAT = "thead-neural-1"
NAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")


def neural_dir() -> Path:
    """Folder of trained neural models: ``<weights folder>/neural``."""
    from thead.weights import weights_dir

    return weights_dir() / "neural"


def _atomic_write(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    with open(tmp, "wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


def save_neural(model: NeuralGenerator, path: Path, info: dict | None = None) -> str:
    """Write ``model``'s state to ``path`` (safetensors; metadata ``format``, ``config`` and ``info`` as JSON),
    atomically (a temporary file renamed over ``path``).

    Returns
    -------
    str : the sha256 hex of the file written.
    """
    from safetensors.torch import save

    state = {k: v.detach().to("cpu").contiguous() for k, v in model.state_dict().items()}
    meta = {"format": FORMAT, "config": json.dumps(model.config.to_dict(), sort_keys=True),
            "digest": model.config.digest(), "info": json.dumps(info or {}, sort_keys=True, default=str)}
    data = save(state, metadata=meta)
    _atomic_write(Path(path), data)
    return hashlib.sha256(data).hexdigest()


def _registry() -> dict[str, dict]:
    path = neural_dir() / REGISTRY
    try:
        return json.loads(path.read_text(encoding="utf8")) if path.is_file() else {}
    except (OSError, ValueError) as exc:
        raise BadWeightsError(f"{path}: neural model registry cannot be read ({exc})") from exc


def register_neural(name: str, path: Path, sha256: str, info: dict | None = None) -> None:
    """Record ``name`` -> (file, sha256, info) in the registry (written atomically)."""
    if not NAME_PATTERN.match(name):
        raise ValueError(f"a model name is letters, digits, '.', '_' and '-' (at most 64), got {name!r}")
    folder = neural_dir()
    reg = _registry()
    path = Path(path)
    reg[name] = {"file": path.name if path.resolve().parent == folder.resolve() else str(path.resolve()),
                 "sha256": sha256, **(info or {})}
    _atomic_write(folder / REGISTRY, json.dumps(reg, indent=2, sort_keys=True, default=str).encode("utf8"))


def _metadata(data: bytes) -> dict[str, str]:
    (n,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8:8 + n].decode("utf8"))
    return dict(header.get("__metadata__") or {})


def list_neural() -> list[dict]:
    """Registered models: [{"name", "path", "sha256", "config_digest", "exists", "info"}] sorted by name."""
    out = []
    for name, entry in sorted(_registry().items()):
        path = Path(entry["file"])
        path = path if path.is_absolute() else neural_dir() / path
        info = {k: v for k, v in entry.items() if k not in ("file", "sha256")}
        out.append({"name": name, "path": str(path), "sha256": entry.get("sha256"),
                    "config_digest": info.pop("config_digest", None), "exists": path.is_file(), "info": info})
    return out


def _missing(name: str) -> MissingWeightsError:
    return MissingWeightsError(f"no neural weights '{name}': train them with `thead train neural VIDEOS -o {name}` "
                               "(or pass --weights PATH)")


def resolve_neural(name_or_path: str | Path) -> tuple[Path, str | None, str]:
    """(file, registered sha256 or None, display name) of a registered name or a file path.

    Raises ``MissingWeightsError`` (one line) when neither exists."""
    text = str(name_or_path)
    reg = _registry()
    if text in reg:
        entry = reg[text]
        path = Path(entry["file"])
        path = path if path.is_absolute() else neural_dir() / path
        if not path.is_file():
            raise _missing(text)
        return path, entry.get("sha256"), text
    path = Path(text).expanduser()
    if path.is_file():
        return path, None, text
    raise _missing(text)


def load_neural(name_or_path: str | Path, device: torch.device | str = "cpu") -> tuple[NeuralGenerator, str]:
    """Load a trained generator by registered name or by path.

    Returns
    -------
    (model in eval mode on ``device``, sha256 hex of the file).

    Raises
    ------
    MissingWeightsError : no such name or file (one line naming what to train).
    BadWeightsError : the file's sha256 differs from the registry's, it is not a neural-engine safetensors file,
        its config does not build a model, or its tensors do not match the model's state.
    """
    from safetensors.torch import load

    path, expected, label = resolve_neural(name_or_path)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise BadWeightsError(f"{path}: neural weights cannot be read ({exc.strerror or exc})") from exc
    sha = hashlib.sha256(data).hexdigest()
    if expected and sha != expected:
        raise BadWeightsError(f"{path}: neural weights '{label}' changed since they were registered (sha256 {sha[:12]}"
                              f"... != registered {expected[:12]}...); retrain them or register the file again")
    try:
        meta = _metadata(data)
        if meta.get("format") != FORMAT:
            raise ValueError(f"format {meta.get('format')!r}, expected {FORMAT!r}")
        config = NeuralConfig.from_dict(json.loads(meta["config"]))
    except (ValueError, KeyError, TypeError, struct.error, UnicodeDecodeError) as exc:
        raise BadWeightsError(f"{path}: not a neural-engine weights file, or its config does not build a model "
                              f"({exc})") from exc
    model = NeuralGenerator(config)
    try:
        state = load(data)
        model.load_state_dict(state, strict=True)
    except (RuntimeError, ValueError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise BadWeightsError(f"{path}: neural weights do not match the model their config builds ({first})") from exc
    bad = [k for k, v in state.items() if v.is_floating_point() and not torch.isfinite(v).all()]
    if bad:
        raise BadWeightsError(f"{path}: neural weights hold non-finite values ({bad[0]})")
    return model.to(device).eval(), sha


def read_info(path: str | Path) -> dict:
    """The ``info`` metadata of a neural weights file (training summary), {} when absent."""
    with open(path, "rb") as fh:
        head = fh.read(8)
        (n,) = struct.unpack("<Q", head)
        meta = _metadata(head + fh.read(n))
    return json.loads(meta.get("info", "{}"))


__all__ = ["FORMAT", "REGISTRY", "list_neural", "load_neural", "neural_dir", "read_info", "register_neural",
           "resolve_neural", "save_neural"]

"""The train job: audio-to-motion models learned from a person's talking videos, and their registry.

Videos are preprocessed and fitted through ``thead.stages.ensure`` (cached); each fitted clip with audio becomes a
``thead.audio.train.TrainingClip``. A trained model is saved as ``<weights folder>/audio2motion/<NAME>.safetensors``
and registered with its sha256 in ``<weights folder>/audio2motion/registry.json``; ``find_motion_model(NAME)``
returns the file and the sha256 that ``load_audio2motion`` checks.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import numpy as np

from thead.errors import InputError
from thead.stages import FitParams, InputItem, PreprocessParams, ensure

REGISTRY = "registry.json"
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")


def motion_models_dir() -> Path:
    """Folder of trained audio2motion models: ``<weights folder>/audio2motion``."""
    from thead.weights import weights_dir

    return weights_dir() / "audio2motion"


def _registry() -> dict[str, dict]:
    path = motion_models_dir() / REGISTRY
    try:
        return json.loads(path.read_text(encoding="utf8")) if path.is_file() else {}
    except (OSError, ValueError) as exc:
        raise InputError(path, f"model registry cannot be read ({exc})") from exc


def register_motion_model(name: str, path: Path, sha256: str, info: dict | None = None) -> None:
    """Record ``name`` -> (file, sha256) in the registry (written atomically)."""
    folder = motion_models_dir()
    folder.mkdir(parents=True, exist_ok=True)
    reg = _registry()
    reg[name] = {"file": Path(path).name if Path(path).parent == folder else str(path), "sha256": sha256,
                 **(info or {})}
    tmp = folder / f".{REGISTRY}.tmp-{os.getpid()}"
    tmp.write_text(json.dumps(reg, indent=2, default=str), encoding="utf8")
    os.replace(tmp, folder / REGISTRY)


def find_motion_model(name: str) -> tuple[Path, str | None]:
    """(file, registered sha256) of the model ``name``: a registered name, or a path to a model file (no sha256).

    Raises ``InputError`` when neither exists."""
    reg = _registry()
    if name in reg:
        entry = reg[name]
        path = Path(entry["file"])
        return (path if path.is_absolute() else motion_models_dir() / path), entry.get("sha256")
    path = Path(name)
    if path.is_file():
        return path, None
    known = ", ".join(sorted(reg)) or "none"
    raise InputError(name, f"no trained motion model of this name (registered: {known}; train one with "
                     "thead train audio2motion)")


def training_clip(face, transcript: str | None = None):
    """A ``TrainingClip`` from a fitted video ``Face`` with audio (raises ``InputError`` otherwise)."""
    from thead.audio.train import TrainingClip

    if not face.is_video:
        raise InputError(face.path, "a training clip must be a video")
    if not face.has_audio:
        raise InputError(face.path, "the video has no audio track")
    fit = face.fit
    text = transcript
    beside = Path(face.path).with_suffix(".txt")
    if text is None and beside.is_file():
        text = beside.read_text(encoding="utf8").strip() or None
    return TrainingClip(audio=str(face.path), fps=float(face.fps), expression=np.asarray(fit.expression),
                        expression_names=list(fit.expression_names), angles=np.asarray(fit.pose)[:, :3],
                        subject=face.item_id,
                        valid=np.asarray(fit.valid, bool), transcript=text, name=str(face.path))


def train_motion_model(videos: list[InputItem], workdir: Path, name: str, pre_params: PreprocessParams,
                       fit_params: FitParams, config=None, subject: str | None = None) -> dict:
    """Train an audio2motion model on ``videos`` (preprocessed and fitted when needed) and register it as ``name``.

    Parameters
    ----------
    videos : the talking clips (with audio).
    workdir : the work directory of the stage caches.
    name : the model's name (letters, digits, ``._-``).
    pre_params, fit_params : the stages' parameters.
    config : ``thead.audio.train.TrainConfig`` (default settings when None).
    subject : one subject name for every clip (default: each clip's item id is its own subject).

    Returns
    -------
    {"name", "file", "sha256", "clips", "report"}.
    """
    from thead.audio.train import TrainConfig, train_audio2motion

    if not _NAME.match(name):
        raise InputError(name, "a model name is letters, digits, '.', '_' and '-' (at most 64)")
    clips = []
    for item in videos:
        face = ensure(item, workdir, pre_params, fit_params)
        clip = training_clip(face)
        clip.subject = subject or item.item_id
        clips.append(clip)
    if not clips:
        raise InputError(workdir, "no training clips")
    model = train_audio2motion(clips, config or TrainConfig())
    folder = motion_models_dir()
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}.safetensors"
    sha = model.save(path)
    register_motion_model(name, path, sha, {"clips": [c.name for c in clips]})
    return {"name": name, "file": str(path), "sha256": sha, "clips": [c.name for c in clips],
            "report": getattr(model, "report", {})}


__all__ = ["REGISTRY", "find_motion_model", "motion_models_dir", "register_motion_model", "train_motion_model",
           "training_clip"]

"""The stage layer: the only code that reads or writes stage caches.

``store``: keys, atomic stage folders, typed ``meta.json`` (``StageMeta``). ``preprocess``: detect, track and crop
one face per input. ``fit``: the 3D face model fitted to every frame. ``face``: ``ensure(item, workdir,
preprocess_params, fit_params) -> Face``, one input's face loaded once, with one decode of its original file.
Jobs (``thead.jobs``) take ``Face`` records and never open cache files themselves.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

# Names -> their module, imported on first use (PEP 562): ``thead.stages.item`` and ``store`` are light, while
# ``face``, ``fit`` and ``preprocess`` pull in torch, OpenCV and SciPy; a command's ``--help`` or an input error
# then answers without loading them.
_LAZY = {
    "Face": "face", "OriginalFrames": "face", "ensure": "face", "load_face": "face",
    "FitBatcher": "fit", "FitMeta": "fit", "FitParams": "fit", "fit_item": "fit", "load_fit": "fit",
    "InputItem": "item", "ItemResult": "item",
    "INPUT_SUFFIXES": "preprocess", "PreprocessMeta": "preprocess", "PreprocessParams": "preprocess",
    "PreprocessResult": "preprocess", "load_preprocess": "preprocess", "preprocess_item": "preprocess",
    "split_cached": "preprocess",
    "StageInfo": "store", "StageMeta": "store", "item_id_for": "store",
}

if TYPE_CHECKING:  # pragma: no cover
    from thead.stages.face import Face, OriginalFrames, ensure, load_face
    from thead.stages.fit import FitBatcher, FitMeta, FitParams, fit_item, load_fit
    from thead.stages.item import InputItem, ItemResult
    from thead.stages.preprocess import (INPUT_SUFFIXES, PreprocessMeta, PreprocessParams, PreprocessResult,
                                         load_preprocess, preprocess_item, split_cached)
    from thead.stages.store import StageInfo, StageMeta, item_id_for


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'thead.stages' has no attribute {name!r}")
    value = getattr(importlib.import_module(f"thead.stages.{module}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))


__all__ = [
    "INPUT_SUFFIXES",
    "Face",
    "FitBatcher",
    "FitMeta",
    "FitParams",
    "InputItem",
    "ItemResult",
    "OriginalFrames",
    "PreprocessMeta",
    "PreprocessParams",
    "PreprocessResult",
    "StageInfo",
    "StageMeta",
    "ensure",
    "fit_item",
    "item_id_for",
    "load_face",
    "load_fit",
    "load_preprocess",
    "preprocess_item",
    "split_cached",
]

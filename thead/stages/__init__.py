"""The stage layer: the only code that reads or writes stage caches.

``store``: keys, atomic stage folders, typed ``meta.json`` (``StageMeta``). ``preprocess``: detect, track and crop
one face per input. ``fit``: the 3D face model fitted to every frame. ``face``: ``ensure(item, workdir,
preprocess_params, fit_params) -> Face``, one input's face loaded once, with one decode of its original file.
Jobs (``thead.jobs``) take ``Face`` records and never open cache files themselves.
"""

from thead.stages.face import Face, OriginalFrames, ensure, load_face
from thead.stages.fit import FitMeta, FitParams, fit_item, load_fit
from thead.stages.item import InputItem, ItemResult
from thead.stages.preprocess import (INPUT_SUFFIXES, PreprocessMeta, PreprocessParams, PreprocessResult,
                                     load_preprocess, preprocess_item, split_cached)
from thead.stages.store import StageInfo, StageMeta, item_id_for

__all__ = [
    "INPUT_SUFFIXES",
    "Face",
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

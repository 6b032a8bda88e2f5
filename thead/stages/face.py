"""``Face``: one input's face, loaded once from its stage caches, with one decode of its original frames.

``ensure(item, workdir, preprocess_params, fit_params)`` makes sure the preprocess and fit-3dmm caches of an input
item are current (making them when not) and loads them into a ``Face``. Jobs (reenact, edit, evaluate) work on
``Face`` records only: they never open cache files, and they read pictures through the record, which decodes the
item's ORIGINAL file (the path the job was given; never the path a cache remembers) once and cuts crops from it
with the stored transforms (not from the lossy crop video).

Frames are uint8 (H, W, 3) RGB; crops (S, S, 3) with S = ``crop_size``; landmarks in pixels (continuous
convention: pixel i covers [i, i + 1)).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator

import numpy as np

from thead.errors import InputError, path_problem
from thead.face.crop import crop_frame, crop_surroundings
from thead.fitting import FitResult
from thead.io import VideoInfo, iter_frames, read_image
from thead.progress import ProgressFn
from thead.stages.store import item_lock
from thead.runtime import phase
from thead.stages.fit import STAGE as FIT, FitMeta, FitParams, fit_item, load_fit
from thead.stages.item import InputItem
from thead.stages.preprocess import STAGE as PREPROCESS, PreprocessMeta, PreprocessParams, load_preprocess, \
    preprocess_item
from thead.stages.store import read_keyed_arrays, write_keyed_arrays


class OriginalFrames:
    """The frames of one input file, decoded at most once for everything a job asks of them.

    A photo is read once. A video is decoded by one forward stream shared by ``frame`` (random access: the frames
    asked for are kept, the others passed over) and ``stream`` (every frame from ``start`` on, nothing kept). A
    request behind the stream's position for a frame not kept starts a new decode; ``decodes`` counts them.

    Parameters
    ----------
    path : the input file.
    info : its ``VideoInfo`` (from the preprocess meta, so no probe runs), or None for a photo.
    """

    def __init__(self, path: Path, info: VideoInfo | None) -> None:
        self.path = path
        self.info = info
        self.decodes = 0
        self._kept: dict[int, np.ndarray] = {}
        self._live: Iterator[np.ndarray] | None = None
        self._pos = 0  # index of the frame the live decoder yields next

    def _open(self) -> Iterator[np.ndarray]:
        self.decodes += 1
        if self.info is None:
            return iter([read_image(self.path)])
        return iter_frames(self.path, self.info)

    def _take_live(self, start: int) -> tuple[Iterator[np.ndarray], int]:
        """A decoder positioned at or before ``start`` (the live one when it is not past it) and its position."""
        live, pos = self._live, self._pos
        self._live, self._pos = None, 0
        if live is None or pos > start and any(t not in self._kept for t in range(start, pos)):
            close = getattr(live, "close", None)
            if close is not None:
                close()
            return self._open(), 0
        return live, pos

    def frame(self, t: int) -> np.ndarray:
        """Frame ``t`` (kept for later calls). Raises ``InputError`` when the file has no frame ``t``."""
        if t in self._kept:
            return self._kept[t]
        live, pos = self._take_live(t)
        for frame in live:
            pos += 1
            if pos - 1 == t:
                self._kept[t] = frame
                self._live, self._pos = live, pos
                return frame
        raise InputError(self.path, f"has no frame {t} (decoded {pos})")

    def stream(self, start: int = 0) -> Iterator[np.ndarray]:
        """Frames ``start``, ``start + 1``, ... to the end of the file (continuing the shared decode when it is not
        past ``start``)."""
        live, pos = self._take_live(start)
        t = start
        while t < pos:  # frames the decoder has passed: all kept (``_take_live``)
            yield self._kept[t]
            t += 1
        for frame in live:
            pos += 1
            if pos - 1 >= start:
                yield frame


@dataclass(eq=False)
class Face:
    """One input's face: its stage caches, loaded once, and its original pictures.

    path : the input file as the job was given it (pictures and audio are read from here).
    item_id, item_dir : the item's name and folder in the work directory.
    preprocess_meta, fit_meta : the typed meta of both stages.
    landmarks (T, N, 3) float32 original-frame pixels; crop_landmarks (T, N, 3) crop pixels; transforms (T, 2, 3)
    float32 original -> crop affine maps; detected, valid (T,) bool; segment (T,) int32 (see the preprocess stage).
    fit : the face-model fit of the T frames (crop pixels, radians).
    warnings : what the stages reported (lost stretches, interpolated frames).
    """

    path: Path
    item_id: str
    item_dir: Path
    preprocess_meta: PreprocessMeta
    fit_meta: FitMeta
    landmarks: np.ndarray
    crop_landmarks: np.ndarray
    transforms: np.ndarray
    detected: np.ndarray
    valid: np.ndarray
    segment: np.ndarray
    fit: FitResult
    warnings: list[str] = field(default_factory=list)
    frames: OriginalFrames = field(init=False, repr=False)

    def __post_init__(self) -> None:
        meta = self.preprocess_meta
        info = None if meta.kind == "image" else VideoInfo(meta.width, meta.height, meta.fps, meta.num_frames,
                                                           meta.duration, meta.has_audio)
        self.frames = OriginalFrames(self.path, info)

    # ------------------------------------------------------------------------------------------- facts
    @property
    def key(self) -> str:
        """Cache key of the face's fit (it covers the preprocess result and both stages' parameters)."""
        return self.fit_meta.key

    @property
    def kind(self) -> str:
        """"image" or "video"."""
        return self.preprocess_meta.kind

    @property
    def is_video(self) -> bool:
        return self.preprocess_meta.kind == "video"

    @property
    def fps(self) -> float:
        """Frames per second (0 for a photo)."""
        return self.preprocess_meta.fps

    @property
    def crop_size(self) -> int:
        """Side S of the square crops, pixels."""
        return self.preprocess_meta.crop_size

    @property
    def has_audio(self) -> bool:
        return self.preprocess_meta.has_audio

    @property
    def num_frames(self) -> int:
        """T: frames with landmarks (1 for a photo)."""
        return len(self.transforms)

    @property
    def frame_size(self) -> tuple[int, int]:
        """(width, height) of the original frames, pixels."""
        return self.preprocess_meta.width, self.preprocess_meta.height

    # ---------------------------------------------------------------------------------------- pictures
    def _check(self, t: int) -> int:
        if not 0 <= t < self.num_frames:
            raise InputError(self.path, f"frame {t} is outside the input's {self.num_frames} frame(s)")
        return int(t)

    def original(self, t: int = 0) -> np.ndarray:
        """Frame ``t`` of the original input, uint8 (H, W, 3) (the photo for t = 0)."""
        return self.frames.frame(self._check(t))

    def originals(self, start: int = 0) -> Iterator[np.ndarray]:
        """The original frames from ``start`` to the end of the file, streamed (the photo once)."""
        return self.frames.stream(self._check(start))

    def crop(self, t: int = 0) -> np.ndarray:
        """The crop of frame ``t``, uint8 (S, S, 3), cut from the original with the stored transform."""
        return crop_frame(self.original(t), self.transforms[self._check(t)], self.crop_size)

    def crops(self, start: int = 0) -> Iterator[np.ndarray]:
        """The crops of frames ``start``... (the last transform reused past the landmarks' end), streamed."""
        last = self.num_frames - 1
        for t, frame in enumerate(self.originals(start), start):
            yield crop_frame(frame, self.transforms[min(t, last)], self.crop_size)

    def surroundings(self, t: int, pad: int) -> tuple[np.ndarray, np.ndarray]:
        """(the crop of frame ``t`` with ``pad`` pixels of the picture around it, uint8 (S + 2 pad) square; where
        that shows the picture (1) rather than its mirror image past the frame's edge (0), float32), as
        ``MeshEngine.prepare`` takes them (``surroundings``, ``picture``)."""
        return crop_surroundings(self.original(t), self.transforms[self._check(t)], self.crop_size, pad)

    # ------------------------------------------------------------------------------------- per-source cache
    def cached_arrays(self, name: str, key: str,
                      make: Callable[[], dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
        """Arrays of per-source work (e.g. the engine's person matte of a source frame), made once per ``key``.

        Kept as ``<item folder>/<name>.npz`` next to the stages, holding ``key`` (which must cover everything the
        arrays depend on: the face's key, frame, settings); a file with another key is stale and replaced. The
        file is written atomically; a folder that cannot be written costs only the cache.

        Parameters
        ----------
        name : the file's name, without ``.npz``.
        key : what the arrays are of.
        make : computes the arrays (name -> array) when no current file exists.

        Returns
        -------
        dict of name -> np.ndarray.
        """
        path = self.item_dir / f"{name}.npz"
        found = read_keyed_arrays(path, key)
        if found is not None:
            return found
        arrays = make()
        try:
            write_keyed_arrays(path, key, arrays)
        except OSError:
            pass
        return arrays


def load_face(item: InputItem, item_dir: Path) -> Face:
    """The ``Face`` of ``item`` from its finished caches in ``item_dir``; raises ``InputError`` when either stage is
    missing or stale (``ensure`` makes them)."""
    pre = load_preprocess(item_dir / PREPROCESS.name)
    fit_meta = FitMeta.read(item_dir / FIT.name)
    if fit_meta is None or fit_meta.preprocess_key != pre.meta.key:
        raise InputError(item.path, f"no current fit-3dmm result in {item_dir}")
    fit = load_fit(item_dir)
    if fit.num_frames != len(pre.transforms):
        raise InputError(item.path, f"fit of {fit.num_frames} frames for {len(pre.transforms)} preprocessed ones")
    segment = pre.segment if len(pre.segment) == len(pre.transforms) else np.zeros(len(pre.transforms), np.int32)
    return Face(path=item.path, item_id=item.item_id, item_dir=item_dir, preprocess_meta=pre.meta,
                fit_meta=fit_meta, landmarks=pre.landmarks, crop_landmarks=pre.crop_landmarks,
                transforms=pre.transforms, detected=pre.detected, valid=pre.valid, segment=segment, fit=fit,
                warnings=list(pre.meta.warnings) + list(fit_meta.warnings))


def ensure(item: InputItem, workdir: Path, preprocess_params: PreprocessParams, fit_params: FitParams,
           progress: ProgressFn | None = None) -> Face:
    """Preprocess and fit ``item`` (each skipped when its cache is current) and load the result.

    Parameters
    ----------
    item : the input file as the job was given it, and its item id (its folder in ``workdir``).
    workdir : the work directory of the stage caches.
    preprocess_params, fit_params : the stages' parameters.
    progress : called with (frames done, frames total) while preprocessing.

    Returns
    -------
    Face, whose pictures come from ``item.path``. Raises ``InputError`` when a stage fails (no face, unreadable).
    """
    if not item.path.is_file():
        raise InputError(item.path, path_problem(item.path) or "not a regular file")
    with item_lock(workdir / item.item_id):  # one process makes and reads an item's stages at a time
        with phase("detect"):
            res = preprocess_item(item, workdir, preprocess_params, progress=progress)
        stage_dir = Path(res.output or workdir / item.item_id / PREPROCESS.name)
        with phase("fit"):
            fit_item(stage_dir, fit_params)
        return load_face(item, stage_dir.parent)

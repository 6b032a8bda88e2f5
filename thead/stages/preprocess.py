"""The preprocess stage: detect and follow one face, crop/align it, store crops, landmarks and transforms.

Writes ``<workdir>/<item>/preprocess/``:

- ``crop.mp4`` (videos; H.264, with the source's audio) or ``crop.png`` (images), unless the caller asks for no
  crop (``PreprocessParams.write_crop``; jobs cut crops from the original input instead),
- ``landmarks.npz``: ``landmarks`` (T, N, 3) float32 original-frame pixels; ``crop_landmarks`` (T, N, 3) crop
  pixels; ``transforms`` (T, 2, 3) float32 original -> crop affine maps; ``detected`` (T,) bool; ``valid`` (T,)
  bool (detected or filled from a short gap); ``segment`` (T,) int32 (vox segments),
- ``frames/000000.png ...`` when PNG output is asked for,
- ``meta.json`` (``PreprocessMeta``): where the input was and its content hash, fps, frame count, sizes,
  parameters, tracking report.

N is 478 for the MediaPipe face mesh (z = relative depth in pixels) and 68 for FAN.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Callable, Iterable

import numpy as np

from thead.errors import InputError
from thead.face.crop import PROTOCOLS, VOX_ENLARGE, crop_frame, crop_transforms
from thead.geometry import Affine2D
from thead.face.landmarks import make_landmarker
from thead.face.track import FaceSelector, FaceTrack, track_face
from thead.io import (IMAGE_SUFFIXES, VIDEO_SUFFIXES, VideoInfo, VideoWriter, iter_frames, probe_video, read_image,
                      write_image)
from thead.progress import ProgressFn
from thead.stages.item import InputItem, ItemResult
from thead.stages.store import (META_NAME, StageInfo, StageMeta, file_digest, find_stage_dirs, item_lock, stage_key,
                                stamp, write_stage)

STAGE = StageInfo("preprocess", 4)  # 2: vox boxes kept inside the frame, mirrored padding; 3: one pixel convention;
# 4: a clip's first frame read by the tracker (track.settle_on_track)
INPUT_SUFFIXES = IMAGE_SUFFIXES | VIDEO_SUFFIXES
LANDMARKS_FILE = "landmarks.npz"


@dataclass(frozen=True)
class PreprocessParams:
    """Parameters that define a preprocess result (all enter the cache key)."""

    protocol: str = "vox"
    size: int = 256
    landmarks: str = "mediapipe"
    face_index: int | None = None
    face_box: tuple[float, float, float, float] | None = None
    max_gap: float = 0.25  # seconds: lost stretches up to this long are interpolated
    smooth_sigma: float = 2.0  # frames, ffhq temporal smoothing
    enlarge: float = VOX_ENLARGE  # vox box size over the union landmark box
    crf: int = 18
    png: bool = False  # also write the crops as PNGs (an extra output: not in the key)
    write_crop: bool = True  # write crop.mp4 / crop.png (an extra output: not in the key)

    def validate(self) -> None:
        if self.protocol not in PROTOCOLS:
            raise ValueError(f"unknown protocol '{self.protocol}' (choose from {', '.join(PROTOCOLS)})")
        if self.size not in (256, 512):
            raise ValueError(f"--size must be 256 or 512, not {self.size}")

    @property
    def selector(self) -> FaceSelector:
        return FaceSelector(self.face_index, self.face_box)

    def key_params(self) -> dict:
        """The parameters that define the result (the extra outputs ``png`` and ``write_crop`` left out)."""
        out = asdict(self)
        out.pop("png")
        out.pop("write_crop")
        return out


@dataclass(frozen=True, kw_only=True)
class PreprocessMeta(StageMeta):
    """``preprocess/meta.json``. ``source`` is where the input was when this result was made: a record for
    people, never used to find the input again (jobs use the path they are given; the content hash is what ties
    the result to it). ``crop``: the crop file's name, or None when no crop was written."""

    STAGE = STAGE

    source: str
    source_hash: str
    params: PreprocessParams
    kind: str  # "image" or "video"
    width: int
    height: int
    fps: float  # 0 for images
    num_frames: int
    has_audio: bool
    crop_size: int
    landmark_format: str  # "mediapipe478" or "ibug68"
    faces_found: int
    crop: str | None
    duration: float = 0.0  # seconds (videos)
    detected_frames: int | None = None
    valid_frames: int | None = None
    lost_spans: tuple[tuple[int, int], ...] = ()
    segments: int = 1
    warnings: tuple[str, ...] = ()

    @property
    def is_video(self) -> bool:
        return self.kind == "video"


def _save_landmarks(folder: Path, track: FaceTrack, transforms: np.ndarray, segments: np.ndarray) -> None:
    np.savez(
        folder / LANDMARKS_FILE,
        landmarks=track.landmarks.astype(np.float32),
        crop_landmarks=Affine2D(transforms).apply(track.landmarks).astype(np.float32),
        transforms=transforms.astype(np.float32),
        detected=track.detected,
        valid=track.valid,
        segment=segments.astype(np.int32),
    )


def _image_track(path: Path, image: np.ndarray, params: PreprocessParams) -> FaceTrack:
    with make_landmarker(params.landmarks) as lm:
        faces = lm.find_faces(image)
    if not faces:
        raise InputError(path, "no face found")
    if len(faces) > 1 and not params.selector.explicit:
        raise InputError(path, f"{len(faces)} faces found; choose one with --face-index or --face-box")
    try:
        pick = faces[params.selector.choose(faces)]
    except ValueError as exc:
        raise InputError(path, str(exc)) from exc
    return FaceTrack(pick[None].astype(np.float32), np.ones(1, bool), np.ones(1, bool), [], len(faces))


def preprocess_item(
    item: InputItem,
    workdir: Path,
    params: PreprocessParams,
    force: bool = False,
    progress: ProgressFn | None = None,
) -> ItemResult:
    """Preprocess one image or video into ``workdir/<item>/preprocess``; skips when the cache is current.

    Parameters
    ----------
    item : the input file and its item id.
    workdir : the work directory holding one folder per item.
    params : what defines the result (``key_params``) and the extra outputs (PNGs, the crop file).
    force : redo a current result.
    progress : called with (frames done, frames total).

    Returns
    -------
    ItemResult with status "done" or "skipped" and ``output`` = the stage folder; raises ``InputError`` for a
    missing or unreadable file, no face, or several faces without a choice. Holds the item folder's lock
    (``item_lock``): a second process on the same item waits, then finds the cache current.
    """
    params.validate()
    path = item.path
    if not path.is_file():
        raise InputError(path, "file not found")
    with item_lock(workdir / item.item_id):
        return _preprocess_item(item, workdir, params, force, progress)


def _preprocess_item(item: InputItem, workdir: Path, params: PreprocessParams, force: bool,
                     progress: ProgressFn | None) -> ItemResult:
    """``preprocess_item`` with the item's lock held."""
    path = item.path
    stage_dir = workdir / item.item_id / STAGE.name
    digest = file_digest(path)
    key = stage_key(STAGE, {"source": digest}, params.key_params())
    current = PreprocessMeta.read(stage_dir)
    if current is not None and current.key != key:
        current = None
    if current is not None and not _loads(stage_dir):
        current = None  # a damaged cache file: stale, made again
    wants_png = params.png and not (stage_dir / "frames").is_dir()
    wants_crop = params.write_crop and current is not None and current.crop is None
    if not force and current is not None:
        if not wants_png and not wants_crop:
            return ItemResult(str(path), item.item_id, "skipped", str(stage_dir), "cache current")
        _add_crops(path, stage_dir, current, replace(params, write_crop=wants_crop, png=wants_png), progress)
        return ItemResult(str(path), item.item_id, "done", str(stage_dir), "crops added to the current result",
                          info={"frames": current.num_frames})
    written: dict = {}
    common = dict(stamp(STAGE, key), source=str(path.resolve()), source_hash=digest, params=params)
    if path.suffix.lower() in IMAGE_SUFFIXES:
        image = read_image(path)
        track = _image_track(path, image, params)
        transforms, segments = crop_transforms(params.protocol, track.landmarks, track.valid, params.size,
                                               smooth_sigma=0.0, enlarge=params.enlarge,
                                               frame_size=(image.shape[1], image.shape[0]))
        with write_stage(stage_dir, STAGE, key, written) as tmp:
            if params.write_crop or params.png:
                crop = crop_frame(image, transforms[0], params.size)
                if params.write_crop:
                    write_image(tmp / "crop.png", crop)
                if params.png:
                    write_image(tmp / "frames" / "000000.png", crop)
            _save_landmarks(tmp, track, transforms, segments)
            meta = PreprocessMeta(**common, kind="image", width=image.shape[1], height=image.shape[0], fps=0.0,
                                  num_frames=1, has_audio=False, crop_size=params.size,
                                  landmark_format=_format(track), faces_found=track.faces_in_first,
                                  crop="crop.png" if params.write_crop else None, detected_frames=1, valid_frames=1)
            written.update(meta.to_json())
        if progress:
            progress(1, 1)
        return ItemResult(str(path), item.item_id, "done", str(stage_dir), info={"frames": 1})

    if path.suffix.lower() not in VIDEO_SUFFIXES:
        raise InputError(path, f"unsupported file type '{path.suffix}'")
    info = probe_video(path)
    crops_pass = params.write_crop or params.png
    total = max(info.num_frames, 1)
    passes = 2 if crops_pass else 1

    def counted(frames):
        for i, frame in enumerate(frames, 1):
            if progress:
                progress(i, passes * total)
            yield frame

    max_gap = max(1, int(round(params.max_gap * info.fps)))
    with make_landmarker(params.landmarks) as landmarker:
        try:
            track = track_face(counted(iter_frames(path, info)), landmarker, params.selector, max_gap)
        except ValueError as exc:  # the selector's face is not there
            raise InputError(path, str(exc)) from exc
    if not track.detected.any():
        raise InputError(path, f"no face found in any of {track.num_frames} frames")
    warnings = [f"face lost in frames {a}-{b} ({(b - a + 1) / info.fps:.2f} s); landmarks held, marked invalid"
                for a, b in track.lost_spans]
    transforms, segments = crop_transforms(params.protocol, track.landmarks, track.valid, params.size,
                                           smooth_sigma=params.smooth_sigma, enlarge=params.enlarge,
                                           frame_size=(info.width, info.height))
    with write_stage(stage_dir, STAGE, key, written) as tmp:
        if crops_pass:
            _write_crops(path, info, tmp, transforms, track.num_frames, params,
                         None if progress is None else (lambda n: progress(total + n, 2 * total)))
        _save_landmarks(tmp, track, transforms, segments)
        meta = PreprocessMeta(**common, kind="video", width=info.width, height=info.height, fps=info.fps,
                              num_frames=track.num_frames, duration=track.num_frames / info.fps,
                              has_audio=info.has_audio, crop_size=params.size, landmark_format=_format(track),
                              faces_found=track.faces_in_first, detected_frames=int(track.detected.sum()),
                              valid_frames=int(track.valid.sum()),
                              lost_spans=tuple((int(a), int(b)) for a, b in track.lost_spans),
                              segments=int(segments.max()) + 1, crop="crop.mp4" if params.write_crop else None,
                              warnings=tuple(warnings))
        written.update(meta.to_json())
    return ItemResult(str(path), item.item_id, "done", str(stage_dir), warnings=warnings,
                      info={"frames": track.num_frames, "detected": int(track.detected.sum())})


def _add_crops(path: Path, stage_dir: Path, current: PreprocessMeta, extras: PreprocessParams,
               progress: ProgressFn | None) -> None:
    """Add the extra outputs ``extras`` asks for (the crop file, PNG frames) to a current result, from its stored
    transforms: the input is decoded once more, but nothing is detected or tracked again."""
    import shutil

    pre = load_preprocess(stage_dir)
    size = current.crop_size
    extras = replace(extras, size=size, crf=current.params.crf)
    written: dict = {}
    with write_stage(stage_dir, STAGE, current.key, written) as tmp:
        for entry in stage_dir.iterdir():
            if entry.name != META_NAME:
                (shutil.copytree if entry.is_dir() else shutil.copy2)(entry, tmp / entry.name)
        crop = current.crop
        if current.kind == "image":
            image = crop_frame(read_image(path), pre.transforms[0], size)
            if extras.write_crop:
                write_image(tmp / "crop.png", image)
                crop = "crop.png"
            if extras.png:
                write_image(tmp / "frames" / "000000.png", image)
        else:
            info = VideoInfo(current.width, current.height, current.fps, current.num_frames, current.duration,
                             current.has_audio)
            _write_crops(path, info, tmp, pre.transforms, current.num_frames, extras,
                         None if progress is None else (lambda n: progress(n, current.num_frames)))
            crop = "crop.mp4" if extras.write_crop else crop
        written.update(replace(current, crop=crop, **stamp(STAGE, current.key)).to_json())


def _write_crops(path: Path, info: VideoInfo, folder: Path, transforms: np.ndarray, num_frames: int, params: PreprocessParams,
                 done: Callable[[int], None] | None) -> None:
    """The second pass over a video: ``crop.mp4`` (with the input's audio) and/or ``frames/*.png``."""
    writer = VideoWriter(folder / "crop.mp4", info.fps, crf=params.crf,
                         audio_from=path if info.has_audio else None) if params.write_crop else None
    count = 0
    try:
        for t, frame in enumerate(iter_frames(path, info)):
            if t >= num_frames:
                break
            crop = crop_frame(frame, transforms[t], params.size)
            if writer is not None:
                writer.write(crop)
            if params.png:
                write_image(folder / "frames" / f"{t:06d}.png", crop)
            count += 1
            if done:
                done(count)
        if count != num_frames:
            raise InputError(path, f"decoded {count} frames on the second pass but {num_frames} on the first")
    except BaseException:
        if writer is not None:
            writer.abort()
        raise
    if writer is not None:
        writer.close()


def _format(track: FaceTrack) -> str:
    return "mediapipe478" if track.landmarks.shape[1] == 478 else "ibug68"


@dataclass
class PreprocessResult:
    """A finished preprocess folder, loaded (arrays as in ``landmarks.npz``, see the module docstring)."""

    folder: Path
    meta: PreprocessMeta
    landmarks: np.ndarray
    crop_landmarks: np.ndarray
    transforms: np.ndarray
    detected: np.ndarray
    valid: np.ndarray
    segment: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int32))

    @property
    def crop_path(self) -> Path | None:
        """The crop video or image, or None when the result was made without one."""
        return None if self.meta.crop is None else self.folder / self.meta.crop


_ARRAYS = ("landmarks", "crop_landmarks", "transforms", "detected", "valid", "segment")


def load_preprocess(stage_dir: str | Path) -> PreprocessResult:
    """Read a finished preprocess folder; raises ``InputError`` when it is absent, stale or incomplete."""
    stage_dir = Path(stage_dir)
    meta = PreprocessMeta.read(stage_dir)
    if meta is None:
        raise InputError(stage_dir, "no finished preprocess result here (run thead preprocess)")
    lm_path = stage_dir / LANDMARKS_FILE
    try:
        with np.load(lm_path) as data:
            arrays = {k: data[k] for k in _ARRAYS if k in data.files}
    except Exception as exc:  # noqa: BLE001 - a damaged zip (BadZipFile), a truncated array, an OS error
        raise InputError(stage_dir, f"preprocess result has no readable {LANDMARKS_FILE} "
                         f"({type(exc).__name__}: {exc})") from exc
    missing = [k for k in _ARRAYS[:-1] if k not in arrays]
    if missing:
        raise InputError(stage_dir, f"{LANDMARKS_FILE} lacks {', '.join(missing)}")
    return PreprocessResult(stage_dir, meta, **arrays)


def _loads(stage_dir: Path) -> bool:
    """Whether a finished preprocess folder's files can be read (a damaged landmarks.npz makes it stale)."""
    try:
        load_preprocess(stage_dir)
    except InputError:
        return False
    return True


def split_cached(args: Iterable[str]) -> tuple[list[Path], list[str]]:
    """Split inputs into existing preprocess folders (a work directory, an item folder or a preprocess folder
    itself) and raw inputs (videos, images, directories of them, missing paths) that must be preprocessed."""
    cached: list[Path] = []
    raw: list[str] = []
    for arg in args:
        path = Path(arg)
        found = find_stage_dirs(path, STAGE.name) if path.is_dir() else []
        if not found and path.is_dir() and path.name == STAGE.name and (path / META_NAME).is_file():
            found = [path]
        if found:
            cached.extend(found)
        else:
            raw.append(arg)
    return cached, raw

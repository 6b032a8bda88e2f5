"""The preprocess stage: detect and follow one face, crop/align it, store crops, landmarks and transforms.

Writes ``<workdir>/<item>/preprocess/``:

- ``crop.mp4`` (videos; H.264, with the source's audio) or ``crop.png`` (images),
- ``landmarks.npz``: ``landmarks`` (T, N, 3) float32 original-frame pixels; ``crop_landmarks`` (T, N, 3) crop
  pixels; ``transforms`` (T, 2, 3) float32 original -> crop affine maps; ``detected`` (T,) bool; ``valid`` (T,)
  bool (detected or filled from a short gap); ``segment`` (T,) int32 (vox segments),
- ``frames/000000.png ...`` when PNG output is asked for,
- ``meta.json``: source path and content hash, fps, frame count, sizes, parameters, tracking report.

N is 478 for the MediaPipe face mesh (z = relative depth in pixels) and 68 for FAN.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from thead.cache import StageInfo, file_digest, stage_is_current, stage_key, write_stage
from thead.errors import InputError
from thead.face.crop import PROTOCOLS, VOX_ENLARGE, crop_frame, crop_transforms, transform_points
from thead.face.landmarks import make_landmarker
from thead.face.track import FaceSelector, FaceTrack, track_face
from thead.io import IMAGE_SUFFIXES, VIDEO_SUFFIXES, VideoWriter, iter_frames, probe_video, read_image, write_image
from thead.pipeline.batch import InputItem, ItemResult

STAGE = StageInfo("preprocess", 2)  # 2: vox boxes kept inside the frame, mirrored padding
INPUT_SUFFIXES = IMAGE_SUFFIXES | VIDEO_SUFFIXES
LANDMARKS_FILE = "landmarks.npz"

ProgressFn = Callable[[int, int], None]  # (frames done, frames total)


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
    png: bool = False

    def validate(self) -> None:
        if self.protocol not in PROTOCOLS:
            raise ValueError(f"unknown protocol '{self.protocol}' (choose from {', '.join(PROTOCOLS)})")
        if self.size not in (256, 512):
            raise ValueError(f"--size must be 256 or 512, not {self.size}")

    @property
    def selector(self) -> FaceSelector:
        return FaceSelector(self.face_index, self.face_box)


def _save_landmarks(folder: Path, track: FaceTrack, transforms: np.ndarray, segments: np.ndarray) -> None:
    np.savez(
        folder / LANDMARKS_FILE,
        landmarks=track.landmarks.astype(np.float32),
        crop_landmarks=transform_points(track.landmarks, transforms).astype(np.float32),
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
    """Preprocess one image or video into ``workdir/<item>/preprocess``; skips when the cache is current."""
    params.validate()
    path = item.path
    if not path.is_file():
        raise InputError(path, "file not found")
    stage_dir = workdir / item.item_id / STAGE.name
    digest = file_digest(path)
    param_dict = asdict(params)
    param_dict.pop("png")  # PNG frames are an extra output, not a different result
    key = stage_key(STAGE, {"source": digest}, param_dict)
    wants_png = params.png and not (stage_dir / "frames").is_dir()
    if not force and not wants_png and stage_is_current(stage_dir, key):
        return ItemResult(str(path), item.item_id, "skipped", str(stage_dir), "cache current")
    meta: dict = {"source": str(path.resolve()), "source_hash": digest, "params": asdict(params)}
    warnings: list[str] = []
    is_image = path.suffix.lower() in IMAGE_SUFFIXES
    if is_image:
        image = read_image(path)
        track = _image_track(path, image, params)
        transforms, segments = crop_transforms(params.protocol, track.landmarks, track.valid, params.size,
                                               smooth_sigma=0.0, enlarge=params.enlarge,
                                               frame_size=(image.shape[1], image.shape[0]))
        with write_stage(stage_dir, STAGE, key, meta) as tmp:
            crop = crop_frame(image, transforms[0], params.size)
            write_image(tmp / "crop.png", crop)
            if params.png:
                write_image(tmp / "frames" / "000000.png", crop)
            _save_landmarks(tmp, track, transforms, segments)
            meta.update(kind="image", width=image.shape[1], height=image.shape[0], fps=0.0, num_frames=1,
                        has_audio=False, crop_size=params.size, landmark_format=_format(track),
                        faces_found=track.faces_in_first, crop="crop.png")
        if progress:
            progress(1, 1)
        return ItemResult(str(path), item.item_id, "done", str(stage_dir), info={"frames": 1})

    if path.suffix.lower() not in VIDEO_SUFFIXES:
        raise InputError(path, f"unsupported file type '{path.suffix}'")
    info = probe_video(path)
    total = max(info.num_frames, 1)

    def counted(frames):
        for i, frame in enumerate(frames, 1):
            if progress:
                progress(i, 2 * total)
            yield frame

    max_gap = max(1, int(round(params.max_gap * info.fps)))
    with make_landmarker(params.landmarks) as landmarker:
        try:
            track = track_face(counted(iter_frames(path, info)), landmarker, params.selector, max_gap)
        except ValueError as exc:  # the selector's face is not there
            raise InputError(path, str(exc)) from exc
    if not track.detected.any():
        raise InputError(path, f"no face found in any of {track.num_frames} frames")
    for a, b in track.lost_spans:
        warnings.append(f"face lost in frames {a}-{b} ({(b - a + 1) / info.fps:.2f} s); landmarks held, "
                        "marked invalid")
    transforms, segments = crop_transforms(params.protocol, track.landmarks, track.valid, params.size,
                                           smooth_sigma=params.smooth_sigma, enlarge=params.enlarge,
                                           frame_size=(info.width, info.height))
    with write_stage(stage_dir, STAGE, key, meta) as tmp:
        count = 0
        with VideoWriter(tmp / "crop.mp4", info.fps, crf=params.crf,
                         audio_from=path if info.has_audio else None) as writer:
            for t, frame in enumerate(iter_frames(path, info)):
                if t >= track.num_frames:
                    break
                crop = crop_frame(frame, transforms[t], params.size)
                writer.write(crop)
                if params.png:
                    write_image(tmp / "frames" / f"{t:06d}.png", crop)
                count += 1
                if progress:
                    progress(total + count, 2 * total)
        if count != track.num_frames:
            raise InputError(path, f"decoded {count} frames on the second pass but {track.num_frames} on the first")
        _save_landmarks(tmp, track, transforms, segments)
        meta.update(kind="video", width=info.width, height=info.height, fps=info.fps, num_frames=track.num_frames,
                    duration=track.num_frames / info.fps, has_audio=info.has_audio, crop_size=params.size,
                    landmark_format=_format(track), faces_found=track.faces_in_first,
                    detected_frames=int(track.detected.sum()), valid_frames=int(track.valid.sum()),
                    lost_spans=track.lost_spans, segments=int(segments.max()) + 1, crop="crop.mp4",
                    warnings=warnings)
    return ItemResult(str(path), item.item_id, "done", str(stage_dir), warnings=warnings,
                      info={"frames": track.num_frames, "detected": int(track.detected.sum())})


def _format(track: FaceTrack) -> str:
    return "mediapipe478" if track.landmarks.shape[1] == 478 else "ibug68"


@dataclass
class PreprocessResult:
    """Everything ``load_preprocess`` returns for a stage folder (arrays as in ``landmarks.npz``)."""

    folder: Path
    meta: dict
    landmarks: np.ndarray
    crop_landmarks: np.ndarray
    transforms: np.ndarray
    detected: np.ndarray
    valid: np.ndarray
    segment: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int32))

    @property
    def crop_path(self) -> Path:
        return self.folder / self.meta["crop"]


def load_preprocess(stage_dir: str | Path) -> PreprocessResult:
    """Read a finished preprocess folder; raises ``InputError`` when it is absent or incomplete."""
    from thead.cache import read_meta

    stage_dir = Path(stage_dir)
    meta = read_meta(stage_dir)
    if meta is None or meta.get("stage") != STAGE.name:
        raise InputError(stage_dir, "no finished preprocess result here (run thead preprocess)")
    lm_path = stage_dir / LANDMARKS_FILE
    if not lm_path.is_file():
        raise InputError(stage_dir, "preprocess result has no landmarks.npz")
    with np.load(lm_path) as data:
        arrays = {k: data[k] for k in data.files}
    return PreprocessResult(stage_dir, meta, **arrays)

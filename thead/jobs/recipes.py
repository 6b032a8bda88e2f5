"""Dataset recipes: a dataset's published crops cut from its source videos by its metadata, no detection
(``thead preprocess --metadata FILE.csv``), the way FOMM's video-preprocessing (``load_videos.py``) does.

The CSV has a header and one row per crop:

- ``video_id``: the source video's file stem (``<video_id>.mp4`` among the inputs);
- ``start``, ``end``: the span in frames at ``fps``, end excluded (frame ``i`` of the video, at its own rate
  ``video_fps``, is in the span when ``i * fps >= start * video_fps`` and ``i * fps < end * video_fps``);
- the box, either ``bbox`` as ``left-top-right-bottom`` (VoxCeleb's ``vox-metadata.csv``) or ``left``, ``top``,
  ``right``, ``bottom`` columns (HDTF crop windows, TalkingHead-1KH tubes written as CSV), in pixels of a
  ``width`` x ``height`` frame;
- ``fps``, ``width``, ``height``: optional; the video's own when absent.

Each crop is ``frame[top:bottom, left:right]`` after scaling the box to the video's size, resized to
``size`` x ``size`` (area interpolation), written as ``<video_id>#<start:06d>#<end:06d>.mp4`` with the
span's audio left out. FOMM resizes with scikit-image's anti-aliased resize: pixels may differ by rounding.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from thead.errors import InputError
from thead.io import VideoWriter, iter_frames, probe_video
from thead.progress import ProgressFn
from thead.stages.item import InputItem, ItemResult

__all__ = ["CropSpec", "read_crop_metadata", "cut_crop"]


@dataclass(frozen=True)
class CropSpec:
    """One published crop: frames ``start`` to ``end`` (excluded) at ``fps`` and a box in a ``width`` x ``height``
    frame (pixels; None = the video's own rate or size)."""

    video_id: str
    start: int
    end: int
    box: tuple[int, int, int, int]  # left, top, right, bottom
    fps: float | None = None
    width: int | None = None
    height: int | None = None

    @property
    def name(self) -> str:
        return f"{self.video_id}#{self.start:06d}#{self.end:06d}"


def _number(row: dict, key: str, path: Path, line: int, kind=float):
    text = (row.get(key) or "").strip()
    if not text:
        return None
    try:
        return kind(float(text))
    except ValueError:
        raise InputError(path, f"line {line}: {key} '{text}' is not a number") from None


def read_crop_metadata(path: str | Path) -> list[CropSpec]:
    """The crops listed in a metadata CSV (see the module docstring); InputError naming the file and line for a
    row that cannot be read."""
    path = Path(path)
    try:
        with open(path, newline="", encoding="utf8") as fh:
            rows = list(csv.DictReader(fh))
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise InputError(path, f"cannot read the metadata: {exc}") from exc
    specs = []
    for line, row in enumerate(rows, 2):
        row = {(k or "").strip(): v for k, v in row.items()}
        video_id = (row.get("video_id") or "").strip()
        if not video_id:
            raise InputError(path, f"line {line}: no video_id")
        start, end = _number(row, "start", path, line, int), _number(row, "end", path, line, int)
        if start is None or end is None or end <= start:
            raise InputError(path, f"line {line}: needs start < end (frames)")
        if row.get("bbox"):
            parts = row["bbox"].strip().split("-")
            if len(parts) != 4 or not all(p.strip().isdigit() for p in parts):
                raise InputError(path, f"line {line}: bbox '{row['bbox']}' is not left-top-right-bottom")
            box = tuple(int(p) for p in parts)
        else:
            values = [_number(row, k, path, line, int) for k in ("left", "top", "right", "bottom")]
            if any(v is None for v in values):
                raise InputError(path, f"line {line}: needs bbox or left, top, right, bottom")
            box = tuple(values)
        if box[2] <= box[0] or box[3] <= box[1]:
            raise InputError(path, f"line {line}: empty box {box}")
        specs.append(CropSpec(video_id, start, end, box, _number(row, "fps", path, line),
                              _number(row, "width", path, line, int), _number(row, "height", path, line, int)))
    return specs


def cut_crop(item: InputItem, spec: CropSpec, output: Path, size: int = 256, crf: int = 18,
             force: bool = False, progress: ProgressFn | None = None) -> ItemResult:
    """Cut ``spec``'s crop out of the video ``item.path`` into ``output/<spec.name>.mp4`` (``size`` x ``size``).

    Returns a "done" result (or "skipped" when the file exists and ``force`` is off); InputError when the video
    has no frame in the span.
    """
    import cv2

    out = output / f"{spec.name}.mp4"
    if out.is_file() and not force:
        return ItemResult(str(item.path), item.item_id, "skipped", str(out), "crop exists")
    info = probe_video(item.path)
    fps = spec.fps or info.fps
    sx = info.width / (spec.width or info.width)
    sy = info.height / (spec.height or info.height)
    left, top, right, bottom = (int(spec.box[0] * sx), int(spec.box[1] * sy), int(spec.box[2] * sx),
                                int(spec.box[3] * sy))
    written = 0
    total = max(1, int(round((spec.end - spec.start) * info.fps / fps)))
    with VideoWriter(out, info.fps, crf=crf) as writer:
        for i, frame in enumerate(iter_frames(item.path, info)):
            if i * fps >= spec.end * info.fps:
                break
            if i * fps < spec.start * info.fps:
                continue
            crop = np.ascontiguousarray(frame[max(top, 0):bottom, max(left, 0):right])
            if crop.size == 0:
                raise InputError(item.path, f"box {spec.box} lies outside the {info.width}x{info.height} frame")
            writer.write(cv2.resize(crop, (size, size), interpolation=cv2.INTER_AREA))
            written += 1
            if progress:
                progress(written, total)
        if written == 0:  # inside the block: the writer is aborted, nothing is left at ``out``
            raise InputError(item.path, f"no frames in {spec.start}..{spec.end} (the video has {info.num_frames})")
    return ItemResult(str(item.path), item.item_id, "done", str(out), info={"frames": written})

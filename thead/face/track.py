"""Following one face through a video and filling the frames where it is lost."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterable, Sequence

import numpy as np

from thead.geometry import box_iou, landmark_box
from thead.face.landmarks import Landmarker


@dataclass(frozen=True)
class FaceSelector:
    """Which face to follow when a frame holds several.

    ``index``: faces ordered left to right (by box centre) in the first frame with a face, 0-based.
    ``box``: (x0, y0, x1, y1) pixels of the first frame; the face with the highest IoU is taken.
    Neither: the largest face.
    """

    index: int | None = None
    box: tuple[float, float, float, float] | None = None

    @property
    def explicit(self) -> bool:
        return self.index is not None or self.box is not None

    def choose(self, faces: Sequence[np.ndarray]) -> int:
        """Index into ``faces`` of the face to follow; raises ValueError if the requested one is absent."""
        boxes = np.stack([landmark_box(f) for f in faces])
        if self.box is not None:
            ious = box_iou(boxes, np.asarray(self.box, dtype=np.float64))
            if ious.max() <= 0:
                raise ValueError(f"no face overlaps the box {self.box}")
            return int(ious.argmax())
        if self.index is not None:
            order = np.argsort((boxes[:, 0] + boxes[:, 2]) / 2)
            if not 0 <= self.index < len(faces):
                raise ValueError(f"face index {self.index} requested but {len(faces)} face(s) found")
            return int(order[self.index])
        areas = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
        return int(areas.argmax())


@dataclass
class FaceTrack:
    """One face followed through a clip.

    landmarks: (T, N, 3) float32 pixels; detected: (T,) bool, found in that frame; valid: (T,) bool, detected or
    filled by interpolation of a short gap; lost_spans: (first, last) frame ranges (inclusive) of long gaps,
    where landmarks only hold the nearest valid frame's; faces_in_first: faces seen where the face was chosen.
    """

    landmarks: np.ndarray
    detected: np.ndarray
    valid: np.ndarray
    lost_spans: list[tuple[int, int]] = field(default_factory=list)
    faces_in_first: int = 0

    @property
    def num_frames(self) -> int:
        return int(self.landmarks.shape[0])


def fill_gaps(landmarks: np.ndarray, detected: np.ndarray, max_gap: int) -> tuple[np.ndarray, np.ndarray,
                                                                                   list[tuple[int, int]]]:
    """Fill undetected frames: linear interpolation for gaps of at most ``max_gap`` frames between detections
    (a short gap at the start or end holds the nearest detection); longer gaps hold the nearest detection and
    are returned as lost spans and left invalid.

    landmarks (T, N, 3), detected (T,) -> (filled landmarks, valid (T,), lost spans [(first, last)]).
    """
    out = landmarks.astype(np.float32, copy=True)
    valid = detected.astype(bool, copy=True)
    idx = np.flatnonzero(detected)
    if idx.size == 0:
        return out, valid, [(0, len(detected) - 1)] if len(detected) else []
    spans: list[tuple[int, int]] = []
    t = 0
    n = len(detected)
    while t < n:
        if detected[t]:
            t += 1
            continue
        start = t
        while t < n and not detected[t]:
            t += 1
        end = t - 1
        before = start - 1 if start > 0 else None
        after = t if t < n else None
        length = end - start + 1
        if before is not None and after is not None:
            w = (np.arange(start, end + 1) - before) / (after - before)
            interp = (1 - w)[:, None, None] * landmarks[before] + w[:, None, None] * landmarks[after]
            if length <= max_gap:
                out[start : end + 1] = interp
                valid[start : end + 1] = True
            else:
                out[start : end + 1] = interp
                spans.append((start, end))
        else:
            out[start : end + 1] = landmarks[before if before is not None else after]
            if length <= max_gap:
                valid[start : end + 1] = True
            else:
                spans.append((start, end))
    return out, valid, spans


def settle_on_track(landmarker: Landmarker, frame: np.ndarray, found: np.ndarray, settle: int = 2,
                    average: int = 4) -> np.ndarray:
    """The landmarks of a face just found in ``frame``, as the tracker reads it there.

    A face is found by a detector and a still-image mesh and then followed by the tracker, and the two read the
    same face differently: on still videos of the shared photos MediaPipe's tracked upper lids and brows sat up to
    1.6 px (in the photo's pixels) away from its still-image reading, measured against the nose. A clip's first
    frame would differ from all the others by that offset, and every motion measured from it (a reenactment's
    reference frame) would carry it on every frame: a self-reenactment's eyes narrowed by half a pixel from frame
    1 on. The tracker also wanders by a few tenths of a pixel from pass to pass on the same picture. So the same
    frame is tracked ``settle`` times from the found face, then the mean of ``average`` further passes is the
    first frame's landmarks: the tracker's reading, with the error that a reference frame would hand to a whole
    clip averaged down. The found landmarks stand where the tracker loses the face.

    Parameters
    ----------
    landmarker : Landmarker
        Its ``track(frame, previous)`` follows the face.
    frame : np.ndarray
        uint8 [H, W, 3] RGB, the frame the face was found in.
    found : np.ndarray
        float32 [N, 3] pixels: the face as found there.
    settle, average : int
        Passes tracked before averaging, and passes averaged (>= 1).

    Returns
    -------
    np.ndarray
        float32 [N, 3] pixels.
    """
    current = found
    passes = []
    for k in range(settle + max(1, average)):
        again = landmarker.track(frame, current)
        if again is None:
            return found
        current = again
        if k >= settle:
            passes.append(again)
    return np.mean(passes, axis=0).astype(np.float32)


def track_face(
    frames: Iterable[np.ndarray],
    landmarker: Landmarker,
    selector: FaceSelector = FaceSelector(),
    max_gap: int = 6,
    num_points: int = 478,
) -> FaceTrack:
    """Follow one face through ``frames`` (RGB uint8, in order).

    Until a face is found, every frame is searched for all faces and the one to follow is chosen by
    ``selector``. Then the landmarker tracks it from frame to frame. When it has been lost for more than
    ``max_gap`` frames, frames are searched again and the face overlapping the last seen box best (else the
    nearest) is taken up.
    """
    rows: list[np.ndarray | None] = []
    last: np.ndarray | None = None  # landmarks last seen
    lost = 0
    faces_first = 0
    for frame in frames:
        found: np.ndarray | None = None
        if last is None or lost > max_gap:
            faces = landmarker.find_faces(frame)
            if faces and last is None:
                faces_first = len(faces)
                found = faces[selector.choose(faces)]
            elif faces:
                assert last is not None
                boxes = np.stack([landmark_box(f) for f in faces])
                prev = landmark_box(last)
                ious = box_iou(boxes, prev)
                if ious.max() > 0:
                    found = faces[int(ious.argmax())]
                else:
                    centres = (boxes[:, :2] + boxes[:, 2:]) / 2
                    found = faces[int(np.linalg.norm(centres - (prev[:2] + prev[2:]) / 2, axis=1).argmin())]
            if found is not None and getattr(landmarker, "tracks_differently", True):
                found = settle_on_track(landmarker, frame, found)
        else:
            found = landmarker.track(frame, last)
        rows.append(found)
        if found is None:
            lost += 1
        else:
            last, lost = found, 0
    num = len(rows)
    points = next((r.shape[0] for r in rows if r is not None), num_points)
    landmarks = np.zeros((num, points, 3), np.float32)
    detected = np.zeros(num, bool)
    for i, r in enumerate(rows):
        if r is not None:
            landmarks[i] = r
            detected[i] = True
    filled, valid, spans = fill_gaps(landmarks, detected, max_gap)
    return FaceTrack(filled, detected, valid, spans, faces_first)

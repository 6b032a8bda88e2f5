"""Crop and align protocols. Every crop is an affine map from original-frame pixels to crop pixels, stored as a
2x3 matrix ``A`` (``crop_xy = A[:, :2] @ xy + A[:, 2]``, a :class:`thead.geometry.Affine2D`) so later stages can
paste results back. Coordinates on both sides are continuous pixels (pixel i's centre at i + 0.5, as the
landmarks are); the images are cut with OpenCV through ``Affine2D.to_opencv``, so a crop's pixels and the points
mapped by the same matrix agree to a small fraction of a pixel whatever the crop's scale.

``vox``   One square, axis-aligned box per clip (or per segment when the head moves far), as in the
          FOMM-family talking-head preprocessing (first-order-model's crop-video.py): the union of the
          segment's face boxes, centred, made square and enlarged. Our face box is the landmark box, which is
          tighter than FOMM's S3FD detector box, so the default enlargement is 1.8x the union box's larger
          side (FOMM: 1.2x the detector box), with the centre raised by 10 % of the box height to keep the
          forehead and hair. A new segment starts when a frame's box overlaps the segment's first box with
          IoU < 0.25 (FOMM's ``iou_with_initial``). The crop does not move within a segment, so it does not
          jitter.
``ffhq``  Per-frame similarity alignment from eye and mouth landmarks, exactly the FFHQ dataset's recipe
          (eye-to-eye and eye-to-mouth vectors define an oriented square of side max(2*|eye_to_eye|,
          1.8*|eye_to_mouth|) * 2), with the square's centre, orientation and size smoothed over time by a
          zero-phase Gaussian (``smooth_sigma`` frames), which removes jitter without lag.
"""

from __future__ import annotations

import cv2
import numpy as np
from scipy.ndimage import gaussian_filter1d

from thead.face import topology as mp_idx
from thead.geometry import Affine2D, box_iou, landmark_box

PROTOCOLS = ("vox", "ffhq")
VOX_ENLARGE = 1.8
VOX_RAISE = 0.10
VOX_IOU_SPLIT = 0.25


def _square_transform(cx: np.ndarray, cy: np.ndarray, side: np.ndarray, size: int) -> np.ndarray:
    s = size / side
    t = np.zeros((len(cx), 2, 3), np.float64)
    t[:, 0, 0] = s
    t[:, 1, 1] = s
    t[:, 0, 2] = size / 2 - s * cx
    t[:, 1, 2] = size / 2 - s * cy
    return t


def vox_segments(boxes: np.ndarray, valid: np.ndarray, iou_split: float = VOX_IOU_SPLIT) -> np.ndarray:
    """Segment id per frame (T,) int32: a new segment starts where a valid box's IoU with the segment's first
    valid box falls below ``iou_split``. Invalid frames join the current segment."""
    seg = np.zeros(len(boxes), np.int32)
    first: np.ndarray | None = None
    current = 0
    for t in range(len(boxes)):
        if valid[t]:
            if first is None:
                first = boxes[t]
            elif box_iou(boxes[t], first) < iou_split:
                current += 1
                first = boxes[t]
        seg[t] = current
    return seg


def vox_transforms(landmarks: np.ndarray, valid: np.ndarray, size: int, enlarge: float = VOX_ENLARGE,
                   iou_split: float = VOX_IOU_SPLIT, frame_size: tuple[int, int] | None = None
                   ) -> tuple[np.ndarray, np.ndarray]:
    """``vox`` crops: landmarks (T, N, 2+) pixels, valid (T,) -> (transforms (T, 2, 3), segment ids (T,)).

    ``frame_size`` (width, height): when given, each box is moved (and if need be shrunk) to lie inside the
    frame, as FOMM clamps its boxes, so already-cropped clips are not padded with smeared borders.
    """
    boxes = landmark_box(landmarks)
    use = valid if valid.any() else np.ones_like(valid)
    seg = vox_segments(boxes, use, iou_split)
    cx = np.zeros(len(boxes))
    cy = np.zeros(len(boxes))
    side = np.zeros(len(boxes))
    for s in np.unique(seg):
        members = (seg == s) & use
        if not members.any():
            members = seg == s
        b = boxes[members]
        x0, y0, x1, y1 = b[:, 0].min(), b[:, 1].min(), b[:, 2].max(), b[:, 3].max()
        rows = seg == s
        cx[rows] = (x0 + x1) / 2
        cy[rows] = (y0 + y1) / 2 - VOX_RAISE * (y1 - y0)
        side[rows] = enlarge * max(x1 - x0, y1 - y0)
    if frame_size is not None:
        width, height = frame_size
        side = np.minimum(side, min(width, height))
        cx = np.clip(cx, side / 2, width - side / 2)
        cy = np.clip(cy, side / 2, height - side / 2)
    return _square_transform(cx, cy, side, size).astype(np.float32), seg


def _eyes_mouth(landmarks: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Image-left eye centre, image-right eye centre, image-left and image-right mouth corners, each (T, 2)."""
    xy = landmarks[..., :2].astype(np.float64)
    if xy.shape[1] == 68:
        return xy[:, 36:42].mean(1), xy[:, 42:48].mean(1), xy[:, 48], xy[:, 54]
    return (xy[:, mp_idx.RIGHT_EYE].mean(1), xy[:, mp_idx.LEFT_EYE].mean(1),
            xy[:, mp_idx.MOUTH_CORNERS[0]], xy[:, mp_idx.MOUTH_CORNERS[1]])


def ffhq_transforms(landmarks: np.ndarray, valid: np.ndarray, size: int, smooth_sigma: float = 2.0) -> np.ndarray:
    """``ffhq`` alignment: landmarks (T, N, 2+) pixels, valid (T,) -> transforms (T, 2, 3).

    ``smooth_sigma``: standard deviation in frames of the temporal Gaussian on centre, orientation and size
    (0 disables; single images are never smoothed).
    """
    eye_l, eye_r, mouth_l, mouth_r = _eyes_mouth(landmarks)
    eye_avg = (eye_l + eye_r) / 2
    eye_to_eye = eye_r - eye_l
    eye_to_mouth = (mouth_l + mouth_r) / 2 - eye_avg
    x = eye_to_eye - np.stack([-eye_to_mouth[:, 1], eye_to_mouth[:, 0]], axis=1)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    half = np.maximum(np.linalg.norm(eye_to_eye, axis=1) * 2.0, np.linalg.norm(eye_to_mouth, axis=1) * 1.8)
    angle = np.unwrap(np.arctan2(x[:, 1], x[:, 0]))
    centre = eye_avg + eye_to_mouth * 0.1
    if valid.any() and not valid.all():  # replace invalid frames by interpolation before smoothing
        t = np.arange(len(valid))
        for arr in (angle, half, centre[:, 0], centre[:, 1]):
            arr[~valid] = np.interp(t[~valid], t[valid], arr[valid])
    if smooth_sigma > 0 and len(angle) > 1:
        angle = gaussian_filter1d(angle, smooth_sigma, mode="nearest")
        half = gaussian_filter1d(half, smooth_sigma, mode="nearest")
        centre = gaussian_filter1d(centre, smooth_sigma, axis=0, mode="nearest")
    s = size / (2 * half)
    cos, sin = np.cos(angle) * s, np.sin(angle) * s
    t = np.zeros((len(angle), 2, 3), np.float64)
    t[:, 0, 0], t[:, 0, 1] = cos, sin
    t[:, 1, 0], t[:, 1, 1] = -sin, cos
    t[:, :, 2] = size / 2 - np.einsum("tij,tj->ti", t[:, :, :2], centre)
    return t.astype(np.float32)


def crop_transforms(protocol: str, landmarks: np.ndarray, valid: np.ndarray, size: int, smooth_sigma: float = 2.0,
                    enlarge: float = VOX_ENLARGE, frame_size: tuple[int, int] | None = None
                    ) -> tuple[np.ndarray, np.ndarray]:
    """Per-frame crop transforms (T, 2, 3) and segment ids (T,) for ``protocol`` ("vox" or "ffhq");
    ``frame_size`` (width, height) keeps vox boxes inside the frame."""
    if protocol == "vox":
        return vox_transforms(landmarks, valid, size, enlarge=enlarge, frame_size=frame_size)
    if protocol == "ffhq":
        return ffhq_transforms(landmarks, valid, size, smooth_sigma), np.zeros(len(landmarks), np.int32)
    raise ValueError(f"unknown crop protocol '{protocol}' (choose from {', '.join(PROTOCOLS)})")


def _warp_matrix(transform: np.ndarray | Affine2D, margin: int) -> Affine2D:
    """Frame -> output-image map of a crop with ``margin`` pixels of picture kept around it on each side."""
    return Affine2D.similarity(translation=(margin, margin)) @ Affine2D(transform)


def crop_frame(frame: np.ndarray, transform: np.ndarray | Affine2D, size: int, margin: int = 0) -> np.ndarray:
    """Cut one crop out of a frame.

    Strong downscaling is pre-filtered (area resize) so crops of large frames do not alias; outside the frame the
    picture is mirrored (as the FFHQ recipe pads), which reads better than smeared edge pixels.

    Parameters
    ----------
    frame : ndarray, shape (H, W, 3), uint8
        RGB picture.
    transform : ndarray (2, 3) or Affine2D
        Frame pixels -> crop pixels (continuous convention): the crop's pixel centre (j + 0.5, i + 0.5) shows the
        frame at ``transform.inverse`` of it.
    size : int
        Crop side, pixels.
    margin : int
        Pixels of the picture kept around the crop on each side: the output is (size + 2 margin) square, the crop
        at [margin:margin + size] in both directions (what the renderer needs when a head moves in).

    Returns
    -------
    ndarray, shape (size + 2 margin, size + 2 margin, 3), uint8
    """
    a = _warp_matrix(transform, margin)
    scale = float(a.scale)
    if scale < 0.5:
        factor = 0.5 / scale
        h, w = frame.shape[:2]
        small = cv2.resize(frame, (max(1, round(w / factor)), max(1, round(h / factor))), interpolation=cv2.INTER_AREA)
        # cv2.resize scales continuous coordinates: small pixel (x, y) shows the frame at (x * sx, y * sy).
        sx, sy = w / small.shape[1], h / small.shape[0]
        a = a @ Affine2D([[sx, 0.0, 0.0], [0.0, sy, 0.0]])
        frame = small
    side = size + 2 * margin
    return cv2.warpAffine(frame, a.to_opencv(), (side, side), flags=cv2.INTER_LINEAR,
                          borderMode=cv2.BORDER_REFLECT_101)


def picture_mask(frame_shape: tuple[int, ...], transform: np.ndarray | Affine2D, size: int, margin: int = 0
                 ) -> np.ndarray:
    """float32 [size + 2 margin] square: 1 where ``crop_frame(frame, transform, size, margin)`` samples inside
    the frame (shape (H, W, ...)), 0 where it shows the frame's mirror image past its edge, soft in between."""
    h, w = frame_shape[:2]
    side = size + 2 * margin
    return cv2.warpAffine(np.ones((h, w), np.float32), _warp_matrix(transform, margin).to_opencv(), (side, side),
                          flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT, borderValue=0.0)


def crop_surroundings(frame: np.ndarray, transform: np.ndarray | Affine2D, size: int, margin: int
                      ) -> tuple[np.ndarray, np.ndarray]:
    """(``crop_frame(frame, transform, size, margin)``, ``picture_mask(frame.shape, transform, size, margin)``):
    the crop with the picture around it, and where that is the picture rather than its mirror image past the
    frame's edge, as ``MeshEngine.prepare`` takes them (``surroundings``, ``picture``)."""
    return crop_frame(frame, transform, size, margin), picture_mask(frame.shape, transform, size, margin)

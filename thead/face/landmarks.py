"""Landmark backends.

``MediaPipeLandmarker`` (default): MediaPipe face mesh, 478 points (468 surface + 10 iris) with relative depth,
models shipped inside the ``mediapipe==0.10.21`` wheel. ``FanLandmarker``: the 68-point FAN of the
``face-alignment`` package, usable once its weights are on disk.

Both return, per face, an array (N, 3) float32 in pixel coordinates of the frame: x right, y down, z relative
depth in the same pixel scale (smaller = nearer the camera; 0 near the head centre for MediaPipe).
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path
from typing import Protocol

import cv2
import numpy as np

from thead.errors import MissingWeightsError
from thead.face.topology import NUM_POINTS
from thead.geometry import Affine2D, box_iou, landmark_box

os.environ.setdefault("GLOG_minloglevel", "2")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")


class Landmarker(Protocol):
    """What a landmark backend provides."""

    num_points: int
    format: str  # "mediapipe478" or "ibug68"
    # Whether ``track`` reads a face otherwise than ``find_faces`` (then a clip's first frame is read by the
    # tracker too: ``thead.face.track.settle_on_track``).
    tracks_differently: bool

    def find_faces(self, frame: np.ndarray) -> list[np.ndarray]:
        """All faces in an RGB uint8 (H, W, 3) frame, each (num_points, 3) float32 pixels."""
        ...

    def track(self, frame: np.ndarray, previous: np.ndarray) -> np.ndarray | None:
        """The face of ``previous`` (num_points, 3) landmarks of the preceding frame, in this frame; None if lost."""
        ...

    def close(self) -> None: ...

    def __enter__(self) -> "Landmarker": ...

    def __exit__(self, *exc: object) -> None: ...


def _silence_absl() -> None:
    """absl's Python logging to errors only, unless ``thead --verbose`` (``THEAD_VERBOSE=1``)."""
    try:
        from absl import logging as absl_logging

        absl_logging.set_verbosity(absl_logging.INFO if os.environ.get("THEAD_VERBOSE") == "1"
                                   else absl_logging.ERROR)
    except Exception:  # pragma: no cover
        pass


def square_roi(box: np.ndarray, enlarge: float) -> tuple[float, float, float]:
    """A square region centred on a box.

    Parameters
    ----------
    box : np.ndarray
        [4]: (x0, y0, x1, y1) pixels.
    enlarge : float
        The square's side over the box's larger side.

    Returns
    -------
    tuple of float
        (x0, y0, side) pixels.
    """
    cx, cy = (box[0] + box[2]) / 2, (box[1] + box[3]) / 2
    side = enlarge * max(box[2] - box[0], box[3] - box[1], 1.0)
    return cx - side / 2, cy - side / 2, side


class MediaPipeLandmarker:
    """MediaPipe face mesh with iris refinement (478 points), run on face-sized regions of the frame.

    Finding faces: MediaPipe's full-range face detector gives boxes anywhere in the frame (small faces
    included), then the mesh runs on a square region around each box. Tracking: the mesh runs in its video mode
    on a square region that follows the previous frame's landmarks, so the face fills the mesh's input whatever
    the frame size, and detection is skipped while the face is followed.
    """

    num_points = 478
    format = "mediapipe478"
    tracks_differently = True  # video-mode mesh on a region from the last landmarks vs detector + still mesh
    ROI_SIZE = 256  # pixels of the square region handed to the mesh
    FIND_ENLARGE = 2.0  # region side over the detector box side
    TRACK_ENLARGE = 1.6  # region side over the previous landmark box side

    def __init__(self, min_confidence: float = 0.5, max_faces: int = 8) -> None:
        _silence_absl()
        import mediapipe as mp

        self._mp = mp
        self.max_faces = max_faces
        self.min_confidence = min_confidence
        self._detector = mp.solutions.face_detection.FaceDetection(model_selection=1,
                                                                   min_detection_confidence=min_confidence)
        self._static = mp.solutions.face_mesh.FaceMesh(static_image_mode=True, max_num_faces=1,
                                                       refine_landmarks=True, min_detection_confidence=min_confidence)
        self._video = None

    def _mesh_in_roi(self, mesh, frame: np.ndarray, roi: tuple[float, float, float]) -> list[np.ndarray]:
        """Faces (N, 3) frame pixels found by ``mesh`` in the square region ``roi`` (x0, y0, side) of ``frame``,
        resampled to ``ROI_SIZE``; MediaPipe's normalised points times ``ROI_SIZE`` are region pixels in the
        package's convention (centres at i + 0.5), mapped back by the region map's inverse (z scaled with it)."""
        x0, y0, side = roi
        scale = self.ROI_SIZE / side
        to_roi = Affine2D.similarity(scale, 0.0, (-x0 * scale, -y0 * scale))
        crop = cv2.warpAffine(frame, to_roi.to_opencv(), (self.ROI_SIZE, self.ROI_SIZE),
                              flags=cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT)
        result = mesh.process(crop)
        faces = []
        for face in result.multi_face_landmarks or []:
            pts = np.array([(p.x, p.y, p.z) for p in face.landmark], dtype=np.float64) * self.ROI_SIZE
            faces.append(to_roi.inverse.apply(pts).astype(np.float32))
        return faces

    def find_faces(self, frame: np.ndarray) -> list[np.ndarray]:
        h, w = frame.shape[:2]
        frame = np.ascontiguousarray(frame)
        detections = self._detector.process(frame).detections or []
        faces: list[np.ndarray] = []
        for det in sorted(detections, key=lambda d: -d.score[0])[: self.max_faces]:
            r = det.location_data.relative_bounding_box
            box = np.array([r.xmin * w, r.ymin * h, (r.xmin + r.width) * w, (r.ymin + r.height) * h])
            found = self._mesh_in_roi(self._static, frame, square_roi(box, self.FIND_ENLARGE))
            if found and not any(box_iou(landmark_box(found[0]), landmark_box(f)) > 0.5 for f in faces):
                faces.append(found[0])
        return faces

    def track(self, frame: np.ndarray, previous: np.ndarray) -> np.ndarray | None:
        if self._video is None:
            self._video = self._mp.solutions.face_mesh.FaceMesh(
                static_image_mode=False, max_num_faces=1, refine_landmarks=True,
                min_detection_confidence=self.min_confidence, min_tracking_confidence=0.5)
        roi = square_roi(landmark_box(previous), self.TRACK_ENLARGE)
        found = self._mesh_in_roi(self._video, np.ascontiguousarray(frame), roi)
        return found[0] if found else None

    def close(self) -> None:
        for part in (self._detector, self._static, self._video):
            if part is not None:
                part.close()
        self._video = None

    def __enter__(self) -> "MediaPipeLandmarker":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _torch_hub_checkpoints() -> Path:
    import torch

    return Path(torch.hub.get_dir()) / "checkpoints"


def load_fan_states(extra_dirs: list[Path] | None = None) -> tuple[dict, dict]:
    """The FAN (``fan-2d-68``) and S3FD (``s3fd``) state dicts for the face-alignment backend.

    Each file is looked up in the weights folder, then ``extra_dirs`` (default: torch's hub checkpoint folder);
    symbolic links are resolved (loops and broken links refused), the resolved file is read once, its sha256
    checked against the manifest, and exactly those bytes are unpickled with ``torch.load(weights_only=True)``
    (tensors only: a file holding other pickled objects is refused, never run). Nothing is downloaded.

    Returns
    -------
    (fan_state, sfd_state) : tuple of dict
        Tensor state dicts, keys as face-alignment 1.5's ``FAN(4)`` and ``s3fd()`` modules name them.

    Raises
    ------
    MissingWeightsError
        A file is not on disk (the message says which, from where, and where to put it).
    BadWeightsError
        A file is refused (sha256 mismatch, link loop, pickled objects, not a state dict).
    """
    from thead.weights import load_torch_state, read_weights

    dirs = [_torch_hub_checkpoints()] if extra_dirs is None else list(extra_dirs)
    states = []
    for name in ("fan-2d-68", "s3fd"):
        checked = read_weights(name, extra_dirs=dirs)
        states.append(load_torch_state(checked.data, checked.path))
    return states[0], states[1]


def _checked_face_alignment(fan_state: dict, sfd_state: dict, device: str):
    """face-alignment 1.5's ``FaceAlignment`` (2-D, S3FD detector) built from state dicts loaded and checked here.

    Its own constructors fetch the files from URLs / the torch hub folder and unpickle the detector with
    torch.hub's loader; these subclasses set the same attributes (face-alignment 1.5.0) without that path.
    """
    import torch
    from face_alignment import FaceAlignment, LandmarksType
    from face_alignment.detection.core import FaceDetector
    from face_alignment.detection.sfd.net_s3fd import s3fd
    from face_alignment.detection.sfd.sfd_detector import SFDDetector
    from face_alignment.models import FAN

    from thead.weights import load_state_strict

    class CheckedSFD(SFDDetector):
        def __init__(self) -> None:  # noqa: D107 - SFDDetector.__init__ would load its own copy
            FaceDetector.__init__(self, device, False)
            self.filter_threshold = 0.5
            self.face_detector = load_state_strict(s3fd(), sfd_state, "s3fd").to(device).eval()

    class CheckedFaceAlignment(FaceAlignment):
        def __init__(self) -> None:  # noqa: D107 - FaceAlignment.__init__ would load its own copies
            self.device, self.flip_input, self.landmarks_type = device, True, LandmarksType.TWO_D
            self.verbose, self.dtype, self.max_batch_size = False, torch.float32, 1
            self.face_detector = CheckedSFD()
            self.face_alignment_net = load_state_strict(FAN(4), fan_state, "fan-2d-68").to(device).eval()

    return CheckedFaceAlignment()


class FanLandmarker:
    """68-point FAN landmarks (``face-alignment`` package) with its S3FD detector; weights must be on disk.

    Weights are looked up in the thead weights folder and in torch's hub checkpoint folder and loaded by
    ``load_fan_states`` (sha256 checked, ``weights_only`` unpickling); when absent, ``MissingWeightsError`` says
    which files to get and where to put them. Nothing is downloaded.
    """

    num_points = 68
    format = "ibug68"
    tracks_differently = False  # its track is a search: the same reading

    def __init__(self, device: str | None = None) -> None:
        fan_state, sfd_state = load_fan_states()
        try:
            import face_alignment  # noqa: F401
        except ImportError as exc:
            raise MissingWeightsError(
                "the face-alignment backend needs the 'face-alignment' package: pip install 'thead[fan]'"
            ) from exc
        import torch

        from thead.device import default_device

        device = str(default_device(device))
        self._fa = _checked_face_alignment(fan_state, sfd_state, device)

    def track(self, frame: np.ndarray, previous: np.ndarray) -> np.ndarray | None:
        faces = self.find_faces(frame)
        if not faces:
            return None
        ious = [box_iou(landmark_box(f), landmark_box(previous)) for f in faces]
        return faces[int(np.argmax(ious))] if max(ious) > 0.1 else None

    def find_faces(self, frame: np.ndarray) -> list[np.ndarray]:
        preds = self._fa.get_landmarks_from_image(frame) or []
        faces = []
        for p in preds:
            pts = np.zeros((68, 3), np.float32)
            pts[:, : p.shape[1]] = p[:, :3]
            faces.append(pts)
        return faces

    def close(self) -> None:
        pass

    def __enter__(self) -> "FanLandmarker":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def detect_landmarks(frames: Iterable[np.ndarray], static: bool) -> tuple[np.ndarray, np.ndarray]:
    """MediaPipe's 478-point face mesh on whole frames (one face per frame; no region search, no detector).

    Parameters
    ----------
    frames : iterable of np.ndarray
        RGB uint8 [H, W, 3] frames.
    static : bool
        True: every frame on its own (photos); False: tracked across consecutive frames of one clip.

    Returns
    -------
    landmarks : np.ndarray
        float32 [T, 478, 3] in pixels (x right, y down, z = relative depth x frame width; NaN where no face was
        found).
    valid : np.ndarray
        bool [T]: a face was found.
    """
    _silence_absl()
    import mediapipe as mp

    out: list[np.ndarray] = []
    valid: list[bool] = []
    with mp.solutions.face_mesh.FaceMesh(static_image_mode=static, refine_landmarks=True, max_num_faces=1,
                                         min_detection_confidence=0.5) as mesh:
        for frame in frames:
            h, w = frame.shape[:2]
            res = mesh.process(np.ascontiguousarray(frame[..., :3]))
            if res.multi_face_landmarks:
                pts = res.multi_face_landmarks[0].landmark
                out.append(np.array([[p.x * w, p.y * h, p.z * w] for p in pts], np.float32))
                valid.append(True)
            else:
                out.append(np.full((NUM_POINTS, 3), np.nan, np.float32))
                valid.append(False)
    if not out:
        return np.zeros((0, NUM_POINTS, 3), np.float32), np.zeros(0, bool)
    return np.stack(out), np.array(valid)


def make_landmarker(backend: str = "mediapipe") -> Landmarker:
    """A landmark backend by name.

    Parameters
    ----------
    backend : str
        ``"mediapipe"`` (default; 478 points) or ``"face-alignment"`` (68 points; needs its weights on disk).

    Returns
    -------
    Landmarker
        The backend (close it, or use it as a context manager).

    Raises
    ------
    ValueError
        For an unknown name.
    """
    if backend == "mediapipe":
        return MediaPipeLandmarker()
    if backend == "face-alignment":
        return FanLandmarker()
    raise ValueError(f"unknown landmark backend '{backend}' (choose mediapipe or face-alignment)")

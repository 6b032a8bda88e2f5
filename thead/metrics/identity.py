"""Identity preservation: CSIM, the cosine similarity of face-recognition embeddings.

Default embedder: dlib's 128-D face-recognition ResNet (``DlibFaceEmbedder``), whose weights ship inside the
``face-recognition-models`` wheel, with dlib's HOG face detector and 68-point shape predictor for alignment.
Papers (PECHead, HeadGAN, HiDe-NeRF, HifiHead) mostly report CSIM with ArcFace embeddings; a user with an
ArcFace ONNX file can use ``ArcFaceOnnxEmbedder(path)`` (needs the optional ``onnxruntime`` package). Values from
the two embedders are not comparable with each other: report which one was used (``MetricResult.details``).

Frames where no face is found get NaN embeddings and NaN CSIM, and are counted, never averaged in silently.
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Protocol, Sequence

import numpy as np

from thead.errors import InputError, ToolMissingError
from thead.geometry import Affine2D
from thead.metrics._inputs import FrameInput, iter_uint8_frames
from thead.metrics.facemodel import similarity_procrustes
from thead.metrics.result import MetricResult

# ArcFace (insightface) 112x112 alignment template: eye centres (subject's right, left), nose tip, mouth corners;
# pixels in OpenCV's convention (centres at integers), as insightface warps with it.
ARCFACE_TEMPLATE_112 = np.array([[38.2946, 51.6963], [73.5318, 51.5014], [56.0252, 71.7366],
                                 [41.5493, 92.3655], [70.7299, 92.2041]], dtype=np.float64)


@dataclass(frozen=True)
class Embeddings:
    """Face embeddings of a frame sequence.

    Attributes:
        vectors: ``(N, D)`` float64; rows of NaN where no face was found.
        found: ``(N,)`` bool, whether a face was found in each frame.
        embedder: name of the model that produced them.
    """

    vectors: np.ndarray
    found: np.ndarray
    embedder: str

    @property
    def missing(self) -> int:
        """Number of frames without a face."""
        return int((~self.found).sum())


class FaceEmbedder(Protocol):
    """Anything with ``name`` and ``embed(frames) -> Embeddings``."""

    name: str

    def embed(self, frames: FrameInput | Iterable[np.ndarray]) -> Embeddings: ...


def _face_recognition_models_dir() -> Path:
    """Folder of the ``face-recognition-models`` data files, found without importing the package.

    (Its ``__init__`` imports ``pkg_resources``, which recent setuptools no longer ships.)
    """
    spec = importlib.util.find_spec("face_recognition_models")
    if spec is None or not spec.submodule_search_locations:
        raise ToolMissingError("the 'face-recognition-models' package is not installed: "
                               "pip install face-recognition-models==0.3.0")
    folder = Path(list(spec.submodule_search_locations)[0]) / "models"
    if not folder.is_dir():
        raise ToolMissingError(f"face-recognition-models has no models folder at {folder}; reinstall it")
    return folder


def dlib_model_paths() -> tuple[Path, Path]:
    """Paths of dlib's face-recognition network and 68-point shape predictor (from face-recognition-models)."""
    try:  # the package's own locators, where they import
        import face_recognition_models as frm  # noqa: WPS433

        return Path(frm.face_recognition_model_location()), Path(frm.pose_predictor_model_location())
    except Exception:
        folder = _face_recognition_models_dir()
        return (folder / "dlib_face_recognition_resnet_model_v1.dat",
                folder / "shape_predictor_68_face_landmarks.dat")


def _largest(rects: Sequence) -> object | None:
    if len(rects) == 0:
        return None
    return max(rects, key=lambda r: r.width() * r.height())


class DlibFaceLandmarker:
    """dlib HOG face detector + 68-point shape predictor; the largest face of a frame."""

    def __init__(self, upsample: int = 1) -> None:
        import dlib

        self._dlib = dlib
        self.upsample = int(upsample)
        self.detector = dlib.get_frontal_face_detector()
        self.predictor = dlib.shape_predictor(str(dlib_model_paths()[1]))

    def detect(self, frame: np.ndarray):
        """``dlib.full_object_detection`` of the largest face in a uint8 RGB frame, or None.

        Tries without upsampling first (fast; faces of about 80 px and up) and upsamples up to ``upsample``
        times only when nothing was found.
        """
        for up in range(self.upsample + 1):
            rect = _largest(self.detector(frame, up))
            if rect is not None:
                return self.predictor(frame, rect)
        return None

    def landmarks(self, frame: np.ndarray) -> np.ndarray | None:
        """68 iBUG landmarks ``(68, 2)`` (pixels, the package's convention: pixel centres at i + 0.5) of the
        largest face, or None. (dlib's own points are whole pixel indices, centres at integers.)"""
        shape = self.detect(frame)
        if shape is None:
            return None
        return np.array([[p.x, p.y] for p in shape.parts()], dtype=np.float64) + 0.5


class DlibFaceEmbedder:
    """dlib's 128-D face-recognition ResNet (LFW accuracy 99.38%), weights from ``face-recognition-models``.

    Each frame: largest face by the HOG detector, aligned by the 68-point predictor into a 150x150 chip
    (dlib's own alignment, padding 0.25), embedded; frames are sent to the network in batches of
    ``batch_size``. Embeddings are returned as the network gives them (norm about 1.3-1.6; dlib's own
    same-person rule is Euclidean distance < 0.6, see ``embedding_distance``).
    """

    name = "dlib_resnet_v1"

    def __init__(self, upsample: int = 1, num_jitters: int = 0, batch_size: int = 16) -> None:
        import dlib

        self.landmarker = DlibFaceLandmarker(upsample)
        self.model = dlib.face_recognition_model_v1(str(dlib_model_paths()[0]))
        self.num_jitters = int(num_jitters)
        self.batch_size = int(batch_size)

    def embed(self, frames: FrameInput | Iterable[np.ndarray]) -> Embeddings:
        """Embeddings ``(N, 128)`` of the largest face of each frame (uint8 RGB frames or [0,1] tensors)."""
        import dlib

        vectors: list[np.ndarray] = []
        found: list[bool] = []
        pending_imgs: list[np.ndarray] = []
        pending_shapes: list = []
        pending_rows: list[int] = []

        def flush() -> None:
            if not pending_imgs:
                return
            dets = []
            for shape in pending_shapes:
                d = dlib.full_object_detections()
                d.append(shape)
                dets.append(d)
            out = self.model.compute_face_descriptor(pending_imgs, dets, self.num_jitters)
            for row, desc in zip(pending_rows, out):
                vectors[row] = np.asarray(desc[0], dtype=np.float64)
            pending_imgs.clear()
            pending_shapes.clear()
            pending_rows.clear()

        for frame in iter_uint8_frames(frames):
            shape = self.landmarker.detect(frame)
            vectors.append(np.full(128, np.nan))
            found.append(shape is not None)
            if shape is not None:
                pending_imgs.append(frame)
                pending_shapes.append(shape)
                pending_rows.append(len(vectors) - 1)
                if len(pending_imgs) >= self.batch_size:
                    flush()
        flush()
        if not vectors:
            raise ValueError("no frames given")
        return Embeddings(np.stack(vectors), np.asarray(found), self.name)


def five_points_from_68(pts68: np.ndarray) -> np.ndarray:
    """ArcFace's 5 alignment points ``(5, 2)`` from iBUG 68 landmarks: eye centres, nose tip, mouth corners."""
    p = np.asarray(pts68, dtype=np.float64)
    return np.stack([p[36:42].mean(axis=0), p[42:48].mean(axis=0), p[30], p[48], p[54]])


def align_arcface(frame: np.ndarray, five_points: np.ndarray, size: int = 112) -> np.ndarray:
    """Similarity-warp a face to the ArcFace template.

    Parameters
    ----------
    frame : ndarray, shape (H, W, 3), uint8
    five_points : ndarray, shape (5, 2)
        Eye centres, nose tip, mouth corners (``five_points_from_68``), pixels in the package's convention.
    size : int
        Chip side; the template is scaled from 112.

    Returns
    -------
    ndarray, shape (size, size, 3), uint8
        The chip, black where it reaches past the frame.
    """
    import cv2

    # insightface's template is in OpenCV's pixel convention (centres at integers): + 0.5 to ours.
    template = (ARCFACE_TEMPLATE_112 + 0.5) * (size / 112.0)
    _, scale, rot, trans = similarity_procrustes(five_points, template)
    to_chip = Affine2D(np.hstack([scale * rot, trans[:, None]]))
    return cv2.warpAffine(frame, to_chip.to_opencv(), (size, size), flags=cv2.INTER_LINEAR, borderValue=0)


class ArcFaceOnnxEmbedder:
    """An ArcFace (insightface-style) recognition network given as an ONNX file, run with ``onnxruntime``.

    Faces are found and aligned with dlib (``DlibFaceLandmarker``) to the standard 5-point 112x112 ArcFace
    template; input is RGB ``(x - input_mean) / input_std`` in NCHW (insightface defaults 127.5 / 127.5);
    the first output is the embedding (as the network gives it). Raises ``ToolMissingError`` when onnxruntime is not
    installed and ``InputError`` when the file is missing or not a loadable ONNX model.
    """

    def __init__(self, model_path: str | Path, input_mean: float = 127.5, input_std: float = 127.5,
                 bgr: bool = False, batch_size: int = 32, providers: Sequence[str] | None = None,
                 upsample: int = 1) -> None:
        try:
            import onnxruntime as ort
        except ImportError as exc:
            raise ToolMissingError("an ArcFace ONNX model needs the optional 'onnxruntime' package: "
                                   "pip install onnxruntime") from exc
        path = Path(model_path)
        if not path.is_file():
            raise InputError(path, "ArcFace ONNX model not found")
        try:
            self.session = ort.InferenceSession(str(path), providers=list(providers or ["CPUExecutionProvider"]))
        except Exception as exc:
            raise InputError(path, f"not a loadable ONNX model ({str(exc).splitlines()[0]})") from exc
        inp = self.session.get_inputs()[0]
        self.input_name = inp.name
        shape = list(inp.shape)
        self.size = int(shape[2]) if len(shape) == 4 and isinstance(shape[2], int) else 112
        self.fixed_batch = shape[0] if shape and isinstance(shape[0], int) else None
        self.input_mean, self.input_std, self.bgr = float(input_mean), float(input_std), bool(bgr)
        self.batch_size = int(batch_size) if self.fixed_batch is None else int(self.fixed_batch)
        self.landmarker = DlibFaceLandmarker(upsample)
        self.name = f"arcface_onnx:{path.name}"

    def _run(self, chips: list[np.ndarray]) -> np.ndarray:
        batch = np.stack(chips).astype(np.float32)
        if self.bgr:
            batch = batch[..., ::-1]
        batch = (batch - self.input_mean) / self.input_std
        batch = np.ascontiguousarray(batch.transpose(0, 3, 1, 2))
        outs = []
        step = self.batch_size
        for i in range(0, len(batch), step):
            part = batch[i:i + step]
            if self.fixed_batch is not None and len(part) < self.fixed_batch:  # pad a fixed-batch model
                part = np.concatenate([part, np.zeros((self.fixed_batch - len(part),) + part.shape[1:], part.dtype)])
                outs.append(self.session.run(None, {self.input_name: part})[0][: len(batch[i:i + step])])
            else:
                outs.append(self.session.run(None, {self.input_name: part})[0])
        return np.concatenate(outs).reshape(len(batch), -1).astype(np.float64)

    def embed(self, frames: FrameInput | Iterable[np.ndarray]) -> Embeddings:
        """Embeddings ``(N, D)`` of the largest face of each frame."""
        chips: list[np.ndarray] = []
        rows: list[int] = []
        found: list[bool] = []
        for i, frame in enumerate(iter_uint8_frames(frames)):
            pts = self.landmarker.landmarks(frame)
            found.append(pts is not None)
            if pts is not None:
                chips.append(align_arcface(frame, five_points_from_68(pts), self.size))
                rows.append(i)
        if not found:
            raise ValueError("no frames given")
        if chips:
            emb = self._run(chips)
            vectors = np.full((len(found), emb.shape[1]), np.nan)
            vectors[rows] = emb
        else:
            dim = self.session.get_outputs()[0].shape[-1]
            vectors = np.full((len(found), dim if isinstance(dim, int) else 512), np.nan)
        return Embeddings(vectors, np.asarray(found), self.name)


def cosine_similarity(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Row-wise cosine similarity of ``(N, D)`` and ``(N, D)`` (or ``(1, D)``, broadcast) arrays; NaN rows stay NaN."""
    a, b = _paired_rows(a, b, "cosine_similarity")
    with np.errstate(invalid="ignore", divide="ignore"):
        return (a * b).sum(axis=1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))


def embedding_distance(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Row-wise Euclidean distance of raw embeddings (``(1, D)`` broadcasts); for dlib, < 0.6 = same person."""
    a, b = _paired_rows(a, b, "embedding_distance")
    return np.linalg.norm(a - b, axis=1)


def _paired_rows(a: np.ndarray, b: np.ndarray, what: str) -> tuple[np.ndarray, np.ndarray]:
    """``a``, ``b`` as float64 ``(N, D)`` arrays whose rows pair up (equal counts, or one side a single row)."""
    a = np.atleast_2d(np.asarray(a, dtype=np.float64))
    b = np.atleast_2d(np.asarray(b, dtype=np.float64))
    if len(a) != len(b) and len(b) != 1 and len(a) != 1:
        raise ValueError(f"{what}: {len(a)} vs {len(b)} rows; align them or pass one reference row")
    return a, b


_DEFAULT_EMBEDDER: DlibFaceEmbedder | None = None


def default_embedder() -> DlibFaceEmbedder:
    """A shared ``DlibFaceEmbedder`` (loading its models takes about a second)."""
    global _DEFAULT_EMBEDDER
    if _DEFAULT_EMBEDDER is None:
        _DEFAULT_EMBEDDER = DlibFaceEmbedder()
    return _DEFAULT_EMBEDDER


def csim(generated: FrameInput | Iterable[np.ndarray] | Embeddings,
         reference: FrameInput | Iterable[np.ndarray] | Embeddings,
         embedder: FaceEmbedder | None = None) -> MetricResult:
    """CSIM: cosine similarity of face embeddings of generated frames and reference frame(s), per frame.

    ``CSIM_t = <e(g_t), e(r_t)> / (|e(g_t)| |e(r_t)|)`` in [-1, 1], higher = same identity; ``reference`` is
    either one frame per generated frame, or a single image (the source portrait) compared with every frame.
    Either side may be precomputed ``Embeddings``. Default embedder: dlib's 128-D network
    (``DlibFaceEmbedder``). dlib's descriptors share a large common component, so their cosine range is
    compressed: on the project's test media, frames of one person score 0.97-0.98 and different people
    0.77-0.94 (ArcFace spreads these far more). Compare numbers only between runs with the same embedder.

    Frames where either side has no detectable face are NaN in ``per_frame`` and counted in
    ``details`` ("no_face_generated", "no_face_reference", "skipped"); ``value`` is the mean over the measured
    frames only. If no frame could be measured, the result is unavailable with that reason.
    """
    emb = embedder
    if not isinstance(generated, Embeddings) or not isinstance(reference, Embeddings):
        emb = embedder or default_embedder()
    g = generated if isinstance(generated, Embeddings) else emb.embed(generated)  # type: ignore[union-attr]
    r = reference if isinstance(reference, Embeddings) else emb.embed(reference)  # type: ignore[union-attr]
    if g.vectors.shape[1] != r.vectors.shape[1] or g.embedder != r.embedder:
        raise ValueError(f"csim: embeddings from different models ({g.embedder} vs {r.embedder})")
    if len(r.vectors) not in (1, len(g.vectors)):
        raise ValueError(f"csim: {len(g.vectors)} generated frames vs {len(r.vectors)} reference frames; give one "
                         f"reference frame, or align lengths first (thead.metrics.align_lengths)")
    per_frame = cosine_similarity(g.vectors, r.vectors)
    measured = np.isfinite(per_frame)
    r_found = r.found if len(r.found) == len(g.found) else np.repeat(r.found, len(g.found))
    details = {
        "embedder": g.embedder,
        "frames": int(len(per_frame)),
        "no_face_generated": int((~g.found).sum()),
        "no_face_reference": int((~r_found).sum()),
        "skipped": int((~measured).sum()),
    }
    if not measured.any():
        reason = "no face found in any generated frame" if not g.found.any() else (
            "no face found in the reference" if not r.found.any() else "no frame has a face on both sides")
        return MetricResult(name="csim", value=None, available=False, reason=reason, per_frame=per_frame,
                            count=0, details=details)
    return MetricResult(name="csim", value=float(per_frame[measured].mean()), per_frame=per_frame,
                        count=int(measured.sum()), details=details)

"""A user-supplied PCA morphable model (Basel-style), so fits can use the papers' coefficient spaces.

File format (.npz)::

    mean              [N, 3]          mean shape
    id_basis          [N, 3, K_id]    identity basis (e.g. K_id = 80)
    exp_basis         [N, 3, K_exp]   expression basis (e.g. K_exp = 64)
    landmark_vertices [L] int         model vertex of each landmark
    landmark_ids      [L] int         which landmark each is, in ``landmark_scheme``
    landmark_scheme   str (optional)  "ibug68" (68-point iBUG/dlib order) or "mediapipe478"; default: ibug68 when
                                      every id is < 68, else mediapipe478
    id_std, exp_std   [K] (optional)  standard deviation of each coefficient; without them coefficients are
                                      assumed to have unit variance (bases already scaled, as in Deep3DFaceRecon)
    frame             str (optional)  "y_up" (default; Basel/OpenGL: y up, z towards the viewer) or "y_down"
                                      (thead's model frame: y down, z into the head)

Shapes are ``mean + id_basis @ identity + exp_basis @ expression`` in the file's units (pose scale is then
pixels per file unit). Expression coefficients are unbounded, with a Gaussian prior.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from thead.errors import InputError, describe_os_error, path_problem
from thead.face import topology as topo
from thead.facemodel import geometry as geo
from thead.facemodel.spec import FittingSpec, make_fitting_spec

SCHEMES = ("ibug68", "mediapipe478")
NOISE_FRACTION = 0.02  # landmark noise scale of the Gaussian priors, a fraction of the model's RMS landmark radius


class PCAFaceModel:
    """Linear morphable model: ``shape = mean + id_basis @ identity + exp_basis @ expression`` (model frame)."""

    def __init__(self, mean: np.ndarray, id_basis: np.ndarray, exp_basis: np.ndarray, landmark_vertices: np.ndarray,
                 landmark_ids: np.ndarray, landmark_scheme: str | None = None, id_std: np.ndarray | None = None,
                 exp_std: np.ndarray | None = None, frame: str = "y_up", name: str = "pca") -> None:
        mean = np.asarray(mean, np.float64)
        id_basis = np.asarray(id_basis, np.float64)
        exp_basis = np.asarray(exp_basis, np.float64)
        n = mean.shape[0]
        if mean.ndim != 2 or mean.shape[1] != 3:
            raise InputError(None, f"PCA model: mean must be [N, 3], got {list(mean.shape)}")
        for key, basis in (("id_basis", id_basis), ("exp_basis", exp_basis)):
            if basis.ndim != 3 or basis.shape[:2] != (n, 3):
                raise InputError(None, f"PCA model: {key} must be [{n}, 3, K], got {list(basis.shape)}")
        landmark_vertices = np.asarray(landmark_vertices, np.int64).reshape(-1)
        landmark_ids = np.asarray(landmark_ids, np.int64).reshape(-1)
        if landmark_vertices.shape != landmark_ids.shape or not len(landmark_ids):
            raise InputError(None, "PCA model: landmark_vertices and landmark_ids must be equally long, non-empty")
        if landmark_vertices.min() < 0 or landmark_vertices.max() >= n:
            raise InputError(None, f"PCA model: landmark_vertices out of range 0..{n - 1}")
        scheme = landmark_scheme or ("ibug68" if landmark_ids.max() < 68 else "mediapipe478")
        if scheme not in SCHEMES:
            raise InputError(None, f"PCA model: landmark_scheme must be one of {SCHEMES}, got {scheme!r}")
        limit = 68 if scheme == "ibug68" else topo.NUM_POINTS
        if landmark_ids.min() < 0 or landmark_ids.max() >= limit:
            raise InputError(None, f"PCA model: landmark_ids out of range for {scheme}")
        if frame not in ("y_up", "y_down"):
            raise InputError(None, f"PCA model: frame must be 'y_up' or 'y_down', got {frame!r}")
        if frame == "y_up":  # 180 degrees about X: (x, y, z) -> (x, -y, -z)
            flip = np.array([1.0, -1.0, -1.0])
            mean = mean * flip
            id_basis = id_basis * flip[None, :, None]
            exp_basis = exp_basis * flip[None, :, None]
        self.name = name
        self.mean_shape = mean.astype(np.float32)
        self.id_basis = id_basis.astype(np.float32)
        self.exp_basis = exp_basis.astype(np.float32)
        self.landmark_vertices = landmark_vertices
        self.landmark_ids = landmark_ids
        self.landmark_scheme = scheme
        self.id_std = None if id_std is None else np.asarray(id_std, np.float64).reshape(-1)
        self.exp_std = None if exp_std is None else np.asarray(exp_std, np.float64).reshape(-1)
        k_exp = exp_basis.shape[2]
        self.expression_names: tuple[str, ...] = tuple(f"exp_{i:02d}" for i in range(k_exp))
        self.expression_lower = np.full(k_exp, -np.inf, np.float32)
        self.expression_upper = np.full(k_exp, np.inf, np.float32)
        self.units = "file units"

    @property
    def num_points(self) -> int:
        return int(self.mean_shape.shape[0])

    @property
    def num_identity(self) -> int:
        return int(self.id_basis.shape[2])

    @property
    def num_expressions(self) -> int:
        return int(self.exp_basis.shape[2])

    @property
    def input_landmarks(self) -> np.ndarray:
        """[L] indices into 478 MediaPipe landmarks that the model's landmarks correspond to."""
        if self.landmark_scheme == "ibug68":
            return topo.MP_TO_IBUG68[self.landmark_ids]
        return self.landmark_ids

    def shape(self, identity: Any = None, expression: Any = None, residual: Any = None) -> Any:
        """The model's shape: mean + identity and expression bases + residual.

        Parameters
        ----------
        identity : array-like or None
            [K_id] or [B, K_id] identity coefficients (None: the mean identity).
        expression : array-like or None
            [K_exp] or [B, K_exp] expression coefficients (None: neutral).
        residual : array-like or None
            [N, 3] or [B, N, 3] per-vertex offsets (file units).

        Returns
        -------
        np.ndarray or torch.Tensor
            [B, N, 3] vertices (model frame, file units); numpy when the first given input is numpy, else torch
            on the inputs' device.
        """
        given = [x for x in (identity, expression, residual) if x is not None]
        is_numpy = bool(given) and not isinstance(given[0], torch.Tensor)
        device = next((x.device for x in given if isinstance(x, torch.Tensor)), torch.device("cpu"))
        out = torch.as_tensor(self.mean_shape, device=device)[None]
        if identity is not None:
            ident = geo.as_tensor(identity, device)
            ident = ident[None] if ident.dim() == 1 else ident
            out = out + torch.einsum("bk,nvk->bnv", ident, torch.as_tensor(self.id_basis, device=device))
        if expression is not None:
            expr = geo.as_tensor(expression, device)
            expr = expr[None] if expr.dim() == 1 else expr
            out = out + torch.einsum("bk,nvk->bnv", expr, torch.as_tensor(self.exp_basis, device=device))
        if residual is not None:
            res = geo.as_tensor(residual, device)
            out = out + (res[None] if res.dim() == 2 else res)
        return out.cpu().numpy() if is_numpy else out

    def landmarks(self, vertices: Any) -> Any:
        """The landmark vertices among all vertices.

        Parameters
        ----------
        vertices : np.ndarray or torch.Tensor
            [..., N, 3] vertices.

        Returns
        -------
        np.ndarray or torch.Tensor
            [..., L, 3]: those at ``landmark_vertices``.
        """
        return vertices[..., self.landmark_vertices, :]

    def project(self, vertices: Any, pose: Any, depth_offset: Any = None) -> Any:
        """Vertices in the image under a pose (scaled orthographic camera of ``thead.facemodel.geometry``).

        Parameters
        ----------
        vertices : np.ndarray or torch.Tensor
            [B, N, 3] model-frame vertices (file units).
        pose : np.ndarray or torch.Tensor
            [B, 6]: yaw, pitch, roll (radians), tx, ty (pixels), scale (pixels per file unit).
        depth_offset : np.ndarray, torch.Tensor or None
            [B] pixels added to depth.

        Returns
        -------
        np.ndarray or torch.Tensor
            [B, N, 3] pixels (x right, y down, depth: smaller = nearer); numpy when ``vertices`` is numpy.
        """
        return geo.project(vertices, pose, depth_offset)

    def fitting_spec(self, device: torch.device) -> FittingSpec:
        """The solver's view of this model: Gaussian priors, unbounded expressions.

        Parameters
        ----------
        device : torch.device
            Where the spec's tensors live.

        Returns
        -------
        FittingSpec
            The landmark vertices' mean and expression fields, the identity map of a Gaussian identity prior
            (``id_std``, else unit) under landmark noise ``NOISE_FRACTION`` of the model's RMS radius, and
            expression ridges from ``exp_std``.
        """
        lv = self.landmark_vertices
        mean = self.mean_shape[lv].astype(np.float64)
        fields = np.moveaxis(self.exp_basis[lv].astype(np.float64), 2, 0)  # [E, L, 3]
        basis = np.moveaxis(self.id_basis[lv].astype(np.float64), 2, 0).reshape(self.num_identity, -1)  # [K, L*3]
        weight = np.ones(len(lv))
        if self.landmark_scheme == "ibug68":
            weight[self.landmark_ids < 17] = 0.5  # jaw outline
        ref = float(np.sqrt(((mean - mean.mean(0)) ** 2).sum(1).mean()))
        noise2 = (NOISE_FRACTION * ref) ** 2
        id_prec = np.ones(self.num_identity) if self.id_std is None else 1.0 / np.maximum(self.id_std, 1e-12) ** 2
        exp_prec = (np.ones(self.num_expressions) if self.exp_std is None
                    else 1.0 / np.maximum(self.exp_std, 1e-12) ** 2)
        system = (basis * np.repeat(weight, 3)) @ basis.T + noise2 * np.diag(id_prec)
        id_map = np.linalg.solve(system, basis)  # coefficients = id_map @ (weighted residual sum)
        return make_fitting_spec(self.input_landmarks, mean, fields, self.expression_lower, self.expression_upper,
                                 noise2 * exp_prec, np.zeros(self.num_expressions), id_map, basis, None, weight, ref,
                                 device)


_MAGIC = ((b"\x89PNG", "a PNG image"), (b"\xff\xd8\xff", "a JPEG image"), (b"GIF8", "a GIF image"),
          (b"%PDF", "a PDF document"), (b"\x93NUMPY", "a single .npy array, not an .npz archive of arrays"),
          (b"\x80", "a Python pickle"), (b"\x1f\x8b", "a gzip file"), (b"PK\x03\x04", "a zip archive"),
          (b"PK\x05\x06", "a zip archive"))


def describe_file_kind(path: str | Path) -> str:
    """What a file looks like from its first bytes, for messages: "an empty file", "a text file", "a PNG image",
    "a single .npy array, ...", "a zip archive", or "binary data"."""
    with open(path, "rb") as fh:
        head = fh.read(4096)
    if not head:
        return "an empty file"
    for magic, kind in _MAGIC:
        if head.startswith(magic):
            return kind
    try:
        text = head.decode("utf8")
    except UnicodeDecodeError:
        text = None
    if text is not None and all(c.isprintable() or c in "\r\n\t" for c in text):
        return "a text file"
    return "binary data"


def load_pca_model(path: str | Path) -> PCAFaceModel:
    """Read a PCA morphable model.

    Parameters
    ----------
    path : str or Path
        A .npz in the format of this module's docstring.

    Returns
    -------
    PCAFaceModel
        The model, named ``pca:<file name>``.

    Raises
    ------
    InputError
        Naming the file: missing (or a link loop, a directory, unreadable); not a PCA model .npz (saying what
        the file is instead: a text file, an image, a single .npy array, a damaged zip); or an .npz without the
        model's arrays or with inconsistent shapes.
    """
    path = Path(path)
    problem = path_problem(path)
    if problem is not None:
        raise InputError(path, f"PCA model: {problem}")
    try:
        kind = describe_file_kind(path)
    except OSError as err:
        raise InputError(path, describe_os_error(err, None)) from None
    if kind != "a zip archive":  # an .npz is a zip archive of .npy arrays
        raise InputError(path, f"not a PCA model .npz ({kind})")
    try:
        data = np.load(path, allow_pickle=False)
    except Exception as err:  # noqa: BLE001 - any unreadable file is a user error
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise InputError(path, f"not a PCA model .npz (damaged archive: {first})") from None
    with data:
        missing = [k for k in ("mean", "id_basis", "exp_basis", "landmark_vertices", "landmark_ids")
                   if k not in data.files]
        if missing:
            raise InputError(path, f"PCA model lacks {', '.join(missing)}")

        def text(key: str, default: str | None) -> str | None:
            return str(data[key].item() if data[key].ndim == 0 else data[key][0]) if key in data.files else default

        try:
            return PCAFaceModel(
                data["mean"], data["id_basis"], data["exp_basis"], data["landmark_vertices"], data["landmark_ids"],
                landmark_scheme=text("landmark_scheme", None),
                id_std=data["id_std"] if "id_std" in data.files else None,
                exp_std=data["exp_std"] if "exp_std" in data.files else None,
                frame=text("frame", "y_up") or "y_up", name=f"pca:{path.name}")
        except InputError as err:
            raise InputError(path, err.reason) from None

"""2-D affine maps between pixel coordinate systems (crops, alignments, paste-back), in thead's one pixel convention.

Pixel convention (the whole package): continuous coordinates, x to the right, y down, in pixels; pixel (row i,
column j) covers ``[j, j + 1) x [i, i + 1)`` and its centre is ``(j + 0.5, i + 0.5)``. MediaPipe's landmarks
(normalised x times the width) and torch's ``grid_sample(align_corners=False)`` use it, so a point keeps its
coordinates when an image is resized by k (``x -> k x``, as ``cv2.resize`` and ``F.interpolate(align_corners=False)``
resample).

OpenCV's geometric functions (``warpAffine``, ``getAffineTransform``, ``estimateAffinePartial2D`` on integer pixel
indices, drawing with ``polylines``/``circle``/``fillPoly``) put pixel centres at the integers ``(j, i)``: a matrix
goes to them through :meth:`Affine2D.to_opencv` and comes back through :meth:`Affine2D.from_opencv`, at that call
and nowhere else. With ``S(d)`` the translation by ``(d, d)``::

    M_opencv = S(-1/2) @ M @ S(+1/2)        i.e.  t_opencv = t + (A @ [1, 1]) / 2 - 1/2

for ``M = [A | t]``. Handing ``M`` itself to ``cv2.warpAffine`` moves the picture by ``(1 - s) / 2`` pixels
against the map's points for a map of scale ``s`` (+0.2 px at s = 0.6, -0.5 px at s = 2).
"""

from __future__ import annotations

import sys
from typing import Any, Iterator

import numpy as np

__all__ = ["Affine2D"]


def _torch_module() -> Any | None:
    """torch if it is already imported (a tensor cannot exist otherwise); keeps numpy-only users free of it."""
    return sys.modules.get("torch")


def _is_tensor(x: Any) -> bool:
    torch = _torch_module()
    return torch is not None and isinstance(x, torch.Tensor)


def _as_numpy(x: Any) -> np.ndarray:
    if _is_tensor(x):
        return x.detach().cpu().numpy()
    return np.asarray(x)


class Affine2D:
    """One 2-D affine map ``p' = A p + t`` or a batch of them, e.g. one per video frame.

    The maps act on pixel coordinates in the package's continuous convention (module docstring); a crop
    transform maps original-frame pixels to crop pixels. The matrix is stored as given, a numpy array or a torch
    tensor (any device); results of :meth:`apply`, :meth:`compose` and :meth:`inverse` follow the stored kind
    (numpy arithmetic in float64, the result in the inputs' floating dtype).

    Parameters
    ----------
    matrix : array_like or torch.Tensor, shape (2, 3) or (T, 2, 3) (any leading batch shape)
        ``[A | t]`` rows: ``x' = A[0, 0] x + A[0, 1] y + t[0]``, ``y' = A[1, 0] x + A[1, 1] y + t[1]``, pixels.
        Homogeneous (..., 3, 3) matrices are accepted (their last row is dropped).

    Attributes
    ----------
    matrix : ndarray or Tensor, shape (..., 2, 3)
        The maps as stored.
    batch_shape : tuple of int
        ``()`` for one map, ``(T,)`` for T maps.

    Examples
    --------
    >>> crop = Affine2D([[0.5, 0.0, -10.0], [0.0, 0.5, -20.0]])     # frame pixels -> crop pixels
    >>> crop.apply(np.array([[40.0, 60.0, 8.0]]))                     # z scaled by the map's scale
    array([[10., 10.,  4.]])
    >>> crop.inverse.apply(np.array([[10.0, 10.0]]))
    array([[40., 60.]])
    >>> cv_matrix = crop.to_opencv()                                  # for cv2.warpAffine(frame, cv_matrix, ...)
    """

    __slots__ = ("_matrix",)

    def __init__(self, matrix: Any) -> None:
        if isinstance(matrix, Affine2D):
            matrix = matrix.matrix
        m = matrix if _is_tensor(matrix) else np.asarray(matrix)
        if m.ndim >= 2 and tuple(m.shape[-2:]) == (3, 3):
            m = m[..., :2, :]
        if m.ndim < 2 or tuple(m.shape[-2:]) != (2, 3):
            raise ValueError(f"an affine map is a (2, 3) or (T, 2, 3) matrix, got shape {tuple(m.shape)}")
        if isinstance(m, np.ndarray) and not np.issubdtype(m.dtype, np.floating):
            m = m.astype(np.float64)
        elif _is_tensor(m) and not m.is_floating_point():
            m = m.double()
        self._matrix = m

    # ------------------------------------------------------------------------------------------ constructors
    @classmethod
    def identity(cls, batch: int | None = None) -> "Affine2D":
        """The identity map (float64 numpy), one or ``batch`` copies.

        Parameters
        ----------
        batch : int or None
            Number of maps; None for a single map.

        Returns
        -------
        Affine2D
            Shape (2, 3) or (batch, 2, 3).
        """
        eye = np.eye(2, 3)
        return cls(eye if batch is None else np.repeat(eye[None], batch, axis=0))

    @classmethod
    def similarity(cls, scale: Any = 1.0, angle: Any = 0.0, translation: Any = (0.0, 0.0)) -> "Affine2D":
        """``p' = scale * R(angle) p + translation`` (float64 numpy); array arguments broadcast to a batch.

        Parameters
        ----------
        scale : float or array_like, shape (T,)
            Pixels of the output per pixel of the input.
        angle : float or array_like, shape (T,)
            Radians; ``R = [[cos, -sin], [sin, cos]]``, which turns clockwise on screen (y points down).
        translation : array_like, shape (2,) or (T, 2)
            Pixels, added after scaling and rotating.

        Returns
        -------
        Affine2D
            Shape (2, 3) when every argument is a scalar / one translation, else (T, 2, 3).
        """
        s, a = np.asarray(scale, np.float64), np.asarray(angle, np.float64)
        t = np.asarray(translation, np.float64)
        shape = np.broadcast_shapes(s.shape, a.shape, t.shape[:-1])
        cos, sin = np.broadcast_to(s * np.cos(a), shape), np.broadcast_to(s * np.sin(a), shape)
        t = np.broadcast_to(t, shape + (2,))
        m = np.empty(shape + (2, 3))
        m[..., 0, 0], m[..., 0, 1], m[..., 0, 2] = cos, -sin, t[..., 0]
        m[..., 1, 0], m[..., 1, 1], m[..., 1, 2] = sin, cos, t[..., 1]
        return cls(m)

    @classmethod
    def from_opencv(cls, matrix: Any) -> "Affine2D":
        """The map of an OpenCV matrix (integer pixel centres) in the package's convention (centres at i + 0.5).

        Parameters
        ----------
        matrix : array_like or Tensor, shape (2, 3) or (T, 2, 3)
            As ``cv2.getAffineTransform``, ``cv2.estimateAffinePartial2D`` (on integer-centred points) or
            ``cv2.getRotationMatrix2D`` give it, or as ``cv2.warpAffine`` takes it.

        Returns
        -------
        Affine2D
            ``t = t_opencv + 1/2 - (A @ [1, 1]) / 2``; A unchanged. numpy in, float64 numpy out; a tensor stays
            a tensor.
        """
        m = matrix.clone() if _is_tensor(matrix) else np.array(matrix, dtype=np.float64, copy=True)
        m[..., :, 2] = m[..., :, 2] + 0.5 - 0.5 * m[..., :, :2].sum(-1)
        return cls(m)

    # ------------------------------------------------------------------------------------------ views
    @property
    def matrix(self) -> Any:
        """(..., 2, 3) ``[A | t]`` as stored (numpy array or torch tensor; not a copy)."""
        return self._matrix

    @property
    def linear(self) -> Any:
        """(..., 2, 2) the linear part A."""
        return self._matrix[..., :, :2]

    @property
    def translation(self) -> Any:
        """(..., 2) the translation t, pixels."""
        return self._matrix[..., :, 2]

    @property
    def homogeneous(self) -> Any:
        """(..., 3, 3) ``[[A, t], [0, 0, 1]]``, same kind and dtype as :attr:`matrix`."""
        m = self._matrix
        if _is_tensor(m):
            torch = _torch_module()
            row = torch.tensor([0.0, 0.0, 1.0], dtype=m.dtype, device=m.device).expand(*m.shape[:-2], 1, 3)
            return torch.cat([m, row], dim=-2)
        row = np.broadcast_to(np.array([0.0, 0.0, 1.0], m.dtype), m.shape[:-2] + (1, 3))
        return np.concatenate([m, row], axis=-2)

    @property
    def scale(self) -> Any:
        """(...) ``sqrt(|det A|)``: the map's area scale as a length ratio (output pixels per input pixel).

        One value per map: a 0-d array / tensor for a single map, (T,) for a batch.
        """
        a = self.linear
        det = a[..., 0, 0] * a[..., 1, 1] - a[..., 0, 1] * a[..., 1, 0]
        return det.abs().sqrt() if _is_tensor(det) else np.sqrt(np.abs(det))

    @property
    def batch_shape(self) -> tuple[int, ...]:
        """``()`` for one map, ``(T,)`` for T maps."""
        return tuple(self._matrix.shape[:-2])

    @property
    def is_torch(self) -> bool:
        """Whether the matrix is a torch tensor."""
        return _is_tensor(self._matrix)

    # ------------------------------------------------------------------------------------------ algebra
    def apply(self, points: Any) -> Any:
        """Map points through the map(s).

        Parameters
        ----------
        points : ndarray or Tensor, shape (..., N, 2+)
            Pixels (x, y[, z, ...]). For a batch of T maps the leading dimensions broadcast against (T,):
            (T, N, 2+) maps frame t's points by map t, (N, 2+) maps the same points by every map. A third
            column (depth, in pixels) is multiplied by the map's :attr:`scale`; further columns are copied.
            One point is (1, 2).

        Returns
        -------
        ndarray or Tensor, shape (broadcast batch..., N, 2+)
            The same kind as ``points`` (the matrix is converted to it); numpy results in ``points``' floating
            dtype (float64 for integer points), computed in float64.
        """
        if _is_tensor(points):
            torch = _torch_module()
            dtype = points.dtype if points.is_floating_point() else torch.float32
            p = points.to(dtype)
            m = torch.as_tensor(self._matrix, dtype=dtype, device=p.device) if self.is_torch else \
                torch.as_tensor(np.asarray(self._matrix, np.float64), device=p.device).to(dtype)
            xy = p[..., :2] @ m[..., :, :2].transpose(-1, -2) + m[..., None, :, 2]
            if p.shape[-1] == 2:
                return xy
            rest = p[..., 2:].expand(*xy.shape[:-1], p.shape[-1] - 2).clone()
            rest[..., 0] = rest[..., 0] * Affine2D(m).scale[..., None]
            return torch.cat([xy, rest], dim=-1)
        p = np.asarray(points)
        dtype = p.dtype if np.issubdtype(p.dtype, np.floating) else np.float64
        m = _as_numpy(self._matrix).astype(np.float64)
        pf = p.astype(np.float64)
        xy = pf[..., :2] @ np.swapaxes(m[..., :, :2], -1, -2) + m[..., None, :, 2]
        if p.shape[-1] == 2:
            return xy.astype(dtype, copy=False)
        rest = np.broadcast_to(pf[..., 2:], xy.shape[:-1] + (p.shape[-1] - 2,)).copy()
        rest[..., 0] *= Affine2D(m).scale[..., None]
        return np.concatenate([xy, rest], axis=-1).astype(dtype, copy=False)

    __call__ = apply

    def compose(self, other: "Affine2D | Any") -> "Affine2D":
        """``self`` after ``other``: the map ``p -> self(other(p))`` (matrix product ``self @ other``).

        Parameters
        ----------
        other : Affine2D or (..., 2, 3) matrix
            Applied first; batch shapes broadcast.

        Returns
        -------
        Affine2D
            Of ``self``'s kind (numpy or torch).
        """
        other = other if isinstance(other, Affine2D) else Affine2D(other)
        if self.is_torch:
            torch = _torch_module()
            a = self._matrix
            b = torch.as_tensor(other.matrix if other.is_torch else np.asarray(other.matrix),
                                dtype=a.dtype, device=a.device)
            lin = a[..., :, :2] @ b[..., :, :2]
            t = (a[..., :, :2] @ b[..., :, 2:])[..., 0] + a[..., :, 2]
            return Affine2D(torch.cat([lin, t[..., None]], dim=-1))
        a, b = np.asarray(self._matrix), _as_numpy(other.matrix)
        dtype = np.result_type(a.dtype, b.dtype)
        a64, b64 = a.astype(np.float64), b.astype(np.float64)
        lin = a64[..., :, :2] @ b64[..., :, :2]
        t = (a64[..., :, :2] @ b64[..., :, 2:])[..., 0] + a64[..., :, 2]
        return Affine2D(np.concatenate([lin, t[..., None]], axis=-1).astype(dtype, copy=False))

    def __matmul__(self, other: "Affine2D") -> "Affine2D":
        """``a @ b`` is ``a.compose(b)``: b first, then a."""
        if not isinstance(other, Affine2D):
            return NotImplemented
        return self.compose(other)

    def invert(self) -> "Affine2D":
        """The inverse map(s): ``m.invert().apply(m.apply(p)) == p``.

        Returns
        -------
        Affine2D
            Same kind and batch shape; numpy inverted in float64, returned in the stored dtype.
        """
        m = self._matrix
        if self.is_torch:
            torch = _torch_module()
            inv = torch.linalg.inv(m[..., :, :2])
            return Affine2D(torch.cat([inv, -(inv @ m[..., :, 2:])], dim=-1))
        m64 = np.asarray(m, np.float64)
        inv = np.linalg.inv(m64[..., :, :2])
        return Affine2D(np.concatenate([inv, -(inv @ m64[..., :, 2:])], axis=-1).astype(m.dtype, copy=False))

    @property
    def inverse(self) -> "Affine2D":
        """The inverse map(s), as :meth:`invert` (scikit-image's transform objects spell it as a property)."""
        return self.invert()

    # ------------------------------------------------------------------------------------------ conversions
    def to_opencv(self) -> np.ndarray:
        """The matrix for OpenCV (pixel centres at integers): what ``cv2.warpAffine(src, M, (w, h))`` takes to
        produce the image of ``src`` under this map (a crop transform gives the crop).

        Returns
        -------
        ndarray, shape (..., 2, 3), float64
            ``t_opencv = t + (A @ [1, 1]) / 2 - 1/2``; A unchanged. Always numpy (OpenCV's kind).
        """
        m = _as_numpy(self._matrix).astype(np.float64)  # astype copies
        m[..., :, 2] += 0.5 * m[..., :, :2].sum(-1) - 0.5
        return m

    def to_numpy(self, dtype: Any = None) -> "Affine2D":
        """The same map(s) with a numpy matrix (``dtype`` default: the stored one)."""
        m = _as_numpy(self._matrix)
        return Affine2D(m if dtype is None else m.astype(dtype))

    def to_torch(self, device: Any = None, dtype: Any = None) -> "Affine2D":
        """The same map(s) with a torch matrix on ``device`` (default: where it is, CPU for numpy) in ``dtype``
        (default float32 from numpy, else the stored one)."""
        import torch

        m = self._matrix
        if _is_tensor(m):
            return Affine2D(m.to(device=device if device is not None else m.device,
                                 dtype=dtype if dtype is not None else m.dtype))
        return Affine2D(torch.as_tensor(np.asarray(m), device=device).to(dtype or torch.float32))

    # ------------------------------------------------------------------------------------------ frames
    def __len__(self) -> int:
        if not self.batch_shape:
            raise TypeError("a single Affine2D map has no length (it is not a batch)")
        return int(self.batch_shape[0])

    def __getitem__(self, index: Any) -> "Affine2D":
        """Map(s) of the batch: an int gives one (2, 3) map, a slice or index array a (k, 2, 3) batch."""
        if not self.batch_shape:
            raise TypeError("a single Affine2D map cannot be indexed (it is not a batch)")
        if isinstance(index, tuple):
            index = index + (slice(None), slice(None))
        return Affine2D(self._matrix[index])

    def __iter__(self) -> Iterator["Affine2D"]:
        for t in range(len(self)):
            yield self[t]

    def __repr__(self) -> str:
        kind = "torch" if self.is_torch else "numpy"
        if not self.batch_shape:
            return f"Affine2D({_as_numpy(self._matrix).tolist()}, {kind})"
        return f"Affine2D(batch {self.batch_shape}, {kind} {self._matrix.dtype})"

"""The 478-point face model: mean shape, identity, named expression units, gaze, and posing.

A face in model space (centimetres, X subject's left, Y down, Z into the head; see ``geometry``) is::

    vertices = identity + sum_e expression[e] * fields[e] + residual        # then the irises are turned by gaze

``identity`` is a subject's neutral shape [478, 3] (the mean shape plus a smooth, per-point offset solved by the
fitter). ``expression`` [E] holds the named units of ``thead.facemodel.expressions`` (0 neutral, 1 full).
``residual`` [478, 3] is whatever the units cannot explain. ``gaze`` [4] = (right_yaw, right_pitch, left_yaw,
left_pitch) in radians, eye directions relative to the head: each iris ring (5 points) turns about an eyeball
centre 1.2 cm behind its rest position (rest = the eye-corner midpoint plus the mean face's iris offset), with the
sign conventions of head pose (positive yaw looks towards model +X, positive pitch looks up).
"""

from __future__ import annotations

import functools
from importlib import resources
from typing import Any

import numpy as np
import torch

from thead.face import topology as topo
from thead.facemodel import geometry as geo
from thead.facemodel.expressions import EXPRESSION_NAMES, build_expression_fields, expression_bounds

EYEBALL_RADIUS_CM = 1.2
MEAN_FACE_FILE = "data/mean_face.npz"
# Eye corners (outer, inner) and iris rings (centre first) of (right, left) eyes.
EYE_CORNERS = np.stack([topo.RIGHT_EYE_CORNERS, topo.LEFT_EYE_CORNERS])
IRIS = np.stack([topo.RIGHT_IRIS, topo.LEFT_IRIS])
GAZE_NAMES = ("right_yaw", "right_pitch", "left_yaw", "left_pitch")


def gaze_angles(iris_centres: torch.Tensor, rest: torch.Tensor, radius: torch.Tensor | float) -> torch.Tensor:
    """Gaze [..., 4] radians (right yaw, pitch, left yaw, pitch) of model-frame iris centres [..., 2, 3].

    rest [..., 2, 3]: iris centres at gaze 0; radius [..., 2] or scalar: eyeball radius. The iris is taken to lie
    on the eyeball sphere; only its x, y offset from rest is used (MediaPipe's iris depth is unreliable).
    """
    r = torch.as_tensor(radius, dtype=iris_centres.dtype, device=iris_centres.device)
    v = (iris_centres[..., :2] - rest[..., :2]) / (r[..., None] if r.dim() else r)
    norm = v.norm(dim=-1, keepdim=True)
    v = v * (norm.clamp(max=0.95) / norm.clamp_min(1e-9))
    direction = torch.cat([v, -(1 - (v ** 2).sum(-1, keepdim=True)).sqrt()], -1)
    return geo.direction_to_angles(direction).flatten(-2)


class FaceModel:
    """MediaPipe-topology morphable face model (478 points: 468 surface + 2 x 5 iris), units cm.

    Attributes: ``mean_shape`` [478, 3]; ``mirror`` [478] (index of each point's mirror partner);
    ``expression_fields`` [E, 478, 3]; ``expression_names`` (E); ``expression_lower``/``expression_upper`` [E].
    """

    name = "mediapipe478"
    num_points = topo.NUM_POINTS
    units = "cm"

    def __init__(self, mean_shape: np.ndarray, mirror: np.ndarray) -> None:
        self.mean_shape = np.asarray(mean_shape, np.float32)
        self.mirror = np.asarray(mirror, np.int64)
        self.expression_names: tuple[str, ...] = EXPRESSION_NAMES
        self.expression_fields = build_expression_fields(self.mean_shape, self.mirror)
        self.expression_lower, self.expression_upper = expression_bounds()
        mid = self.mean_shape[EYE_CORNERS].mean(1)  # [2, 3]
        self.iris_offset = (self.mean_shape[IRIS[:, 0]] - mid).astype(np.float32)  # rest iris centre - corner mid
        self.eye_width = float(np.linalg.norm(self.mean_shape[EYE_CORNERS[:, 0]] - self.mean_shape[EYE_CORNERS[:, 1]],
                                              axis=-1).mean())
        self._torch_cache: dict[tuple[str, str], torch.Tensor] = {}

    @property
    def num_expressions(self) -> int:
        return len(self.expression_names)

    def tensor(self, name: str, device: torch.device | str = "cpu") -> torch.Tensor:
        """A model array (``mean_shape``, ``expression_fields``, ...) as a cached float32 tensor on ``device``."""
        key = (name, str(device))
        if key not in self._torch_cache:
            self._torch_cache[key] = torch.as_tensor(getattr(self, name), dtype=torch.float32, device=device)
        return self._torch_cache[key]

    # ----------------------------------------------------------------------------------------------- gaze
    def eyeball_radius(self, identity: torch.Tensor) -> torch.Tensor:
        """Eyeball radius [...] in model units: 1.2 cm scaled by the identity's eye width."""
        corners = identity[..., EYE_CORNERS, :]
        width = (corners[..., 0, :] - corners[..., 1, :]).norm(dim=-1).mean(-1)
        return EYEBALL_RADIUS_CM * width / self.eye_width

    def iris_rest(self, identity: torch.Tensor) -> torch.Tensor:
        """Rest (gaze 0) iris centres [..., 2, 3] (right, left) of a neutral shape [..., 478, 3]."""
        mid = identity[..., EYE_CORNERS, :].mean(-2)
        return mid + self.tensor("iris_offset", identity.device)

    def gaze_from_iris(self, iris_centres: torch.Tensor, identity: torch.Tensor) -> torch.Tensor:
        """Gaze [..., 4] degrees from iris centres [..., 2, 3] in the model frame (only x and y are used)."""
        return gaze_angles(iris_centres, self.iris_rest(identity), self.eyeball_radius(identity)[..., None])

    def _apply_gaze(self, vertices: torch.Tensor, identity: torch.Tensor, gaze: torch.Tensor | None) -> torch.Tensor:
        """Place the iris rings of ``vertices`` [B, 478, 3] at rest and turn them by gaze [B, 4] radians."""
        rest = self.iris_rest(identity)  # [B or 1, 2, 3]
        ring = identity[..., IRIS, :] - identity[..., IRIS[:, :1], :]  # [.., 2, 5, 3] relative to the centre
        radius = self.eyeball_radius(identity)  # [B or 1]
        back = torch.zeros_like(rest)
        back[..., 2] = 1.0
        centre = rest + back * radius[:, None, None]  # eyeball centres [B or 1, 2, 3]
        local = ring + (rest - centre)[..., None, :]  # iris points relative to the eyeball centre [.., 2, 5, 3]
        if gaze is not None:
            angles = gaze.reshape(*gaze.shape[:-1], 2, 2)
            rot = geo.euler_to_matrix(torch.cat([angles, torch.zeros_like(angles[..., :1])], -1))  # [B, 2, 3, 3]
            local = local @ rot.transpose(-1, -2)
        iris = (centre[..., None, :] + local).expand(vertices.shape[0], 2, 5, 3)
        out = vertices.clone()
        out[:, IRIS.reshape(-1)] = iris.reshape(vertices.shape[0], 10, 3)
        return out

    # ---------------------------------------------------------------------------------------------- shape
    def shape(self, identity: Any = None, expression: Any = None, residual: Any = None, gaze: Any = None) -> Any:
        """Model-space vertices [B, 478, 3] (cm).

        identity: neutral shape [478, 3] or [B, 478, 3] (default: the mean shape); expression [B, E] or [E]
        (default 0); residual [B, 478, 3] or None; gaze [B, 4] radians or None (irises at rest). Returns numpy when
        the first given argument is numpy, else torch.
        """
        given = [x for x in (identity, expression, residual, gaze) if x is not None]
        is_numpy = bool(given) and not isinstance(given[0], torch.Tensor)
        device = next((x.device for x in given if isinstance(x, torch.Tensor)), torch.device("cpu"))
        ident = self.tensor("mean_shape", device) if identity is None else geo.as_tensor(identity, device)
        if ident.dim() == 2:
            ident = ident[None]
        out = ident
        if expression is not None:
            expr = geo.as_tensor(expression, device)
            expr = expr[None] if expr.dim() == 1 else expr
            fields = self.tensor("expression_fields", device)
            out = out + torch.einsum("be,env->bnv", expr, fields)
        batch = max(out.shape[0], 1 if residual is None else (residual.shape[0] if np.ndim(residual) == 3 else 1),
                    1 if gaze is None else (gaze.shape[0] if np.ndim(gaze) == 2 else 1))
        out = out.expand(batch, -1, -1)
        g = None if gaze is None else geo.as_tensor(gaze, device).reshape(-1, 4)
        out = self._apply_gaze(out, ident, g)
        if residual is not None:
            res = geo.as_tensor(residual, device)
            out = out + (res[None] if res.dim() == 2 else res)
        return out.cpu().numpy() if is_numpy else out

    def project(self, vertices: Any, pose: Any, depth_offset: Any = None) -> Any:
        """Pixels [B, 478, 3] (x, y, depth) of model vertices [B, 478, 3] under pose [B, 6]; see ``geometry``."""
        return geo.project(vertices, pose, depth_offset)

    def posed(self, pose: Any, identity: Any = None, expression: Any = None, residual: Any = None,
              gaze: Any = None, depth_offset: Any = None) -> Any:
        """``project(shape(identity, expression, residual, gaze), pose)``: landmarks in pixels [B, 478, 3].

        numpy when ``pose`` is numpy, else torch.
        """
        vertices = self.shape(identity, expression, residual, gaze)
        if isinstance(vertices, torch.Tensor) and not isinstance(pose, torch.Tensor):
            vertices = vertices.cpu().numpy()
        elif isinstance(pose, torch.Tensor) and not isinstance(vertices, torch.Tensor):
            vertices = torch.as_tensor(vertices, device=pose.device)
        return self.project(vertices, pose, depth_offset)


@functools.lru_cache(maxsize=None)
def load_face_model() -> FaceModel:
    """The packaged 478-point face model (cached; mean shape from ``data/mean_face.npz``)."""
    with resources.files("thead.facemodel").joinpath(MEAN_FACE_FILE).open("rb") as fh:
        data = np.load(fh)
        return FaceModel(data["mean_shape"], data["mirror"])

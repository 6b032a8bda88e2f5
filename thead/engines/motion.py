"""Target face parameters for the engines: motion transfer from a driver, numeric edits, free-view orbits.

Every function returns :class:`TargetParams`: per output frame, the pose, expression, residual and gaze the
source face should take, in the units of :class:`~thead.fitting.FitResult` (angles in RADIANS for the head pose,
gaze in RADIANS too, translations in crop pixels, scale in pixels per cm, expressions as unit coefficients). The
source's identity (its neutral shape) is never part of a target: the engine always renders the source's own
face shape, so a driver's face shape cannot leak into the output.

Motion transfer (``transfer_motion``), per driver frame t against the driver's reference frame r:

* relative (default): the driver's *change* is applied to the source, which keeps its own shape and rest pose::

      R_t     = dR_t^k @ R_src            dR_t = R_drv[t] @ R_drv[r]^T   (camera frame; ^k: scaled rotation angle)
      s_t     = s_src * (s_drv[t] / s_drv[r])^k
      xy_t    = xy_src + k * (xy_drv[t] - xy_drv[r]) * s_src / s_drv[r]     (same for depth_offset)
      expr_t  = clip(expr_src + e * g * (expr_drv[t] - expr_drv[r]), unit bounds)
      res_t   = res_src + e * (dres_drv[t] - dC_drv[t]) + C(R_t) - C(R_src) + O_t      (model frame, cm)
      gaze_t  = gaze_src + (gaze_drv[t] - gaze_drv[r])

  with k = ``pose_scale``, e = ``expression_scale`` and g the per-unit ``READ_GAINS`` (1 for most units); the
  mouth's opening in ``expr_drv[r]`` and ``res_drv[r]`` is taken at the source's own opening (``mouth_reference``:
  between frame r's and the driver's closed mouth's), so a first frame caught mid-word does not turn the driver's
  later openings into closings;
  ``dres_drv[t] = res_drv[t] - res_drv[r]`` is the driver's
  landmark detail beyond its units (lip shapes, ...), ``C`` the pose corrective (``thead.engines.pose_corrective``:
  how landmarks of a real head move beyond a rigid turn): the driver's pose part ``dC_drv[t] = C(R_drv[t]) -
  C(R_drv[r])`` is taken out of its residual change and the target's own ``C(R_t) - C(R_src)`` put in; ``O_t``
  is the unit change the bounds cut off, along the units' fields (``unit_overflow``), so a driver's smile
  still arrives on a source already smiling at the bound;
* absolute: the driver's rotation, expressions and gaze as they are (``R_drv[t]``, ``clip(e * g * expr_drv[t])``);
  the head position and size still follow the relative rule above, i.e. the driver's motion mapped into the
  source crop, so the head stays where the source's head is (two crops from different videos need not agree).

Driver frames without a face (``valid`` False) hold the last valid frame's values (the first valid one before
it) and are flagged in ``TargetParams.held``. Resulting angles are limited to what a 2-D warp of one photo can
show (``MAX_ANGLES_DEG``), a transferred gaze only to what a fit can measure (``MAX_TRANSFER_GAZE_DEG``: a look
into the eye corner arrives; edits keep ``MAX_GAZE_DEG``). Edits and orbits that turn the head add ``C(target) - C(source)`` to the residual too.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Mapping, Sequence

import numpy as np

from thead.engines.pose_corrective import load_pose_corrective
from thead.facemodel.expressions import EXPRESSION_NAMES, expression_bounds, eye_lids
from thead.fitting.result import FitResult
from thead.geometry.rotation import (euler_to_matrix as _euler_to_matrix, matrix_to_euler as _matrix_to_euler,
                                     rotation_power as _rotation_power)

MODES = ("relative", "absolute")
# Bump when a change here changes the targets a transfer makes from the same fits (``thead reenact`` keys its
# outputs by it, whichever engine renders them). 2: the mouth measured from the driver's mouth at the source's
# opening (``mouth_reference``).
TRANSFER_REVISION = 2
# Limits of the rendered head rotation (yaw, pitch, roll), degrees: beyond them a warped photo falls apart.
MAX_ANGLES_DEG = (50.0, 35.0, 45.0)
MAX_GAZE_DEG = 35.0
MAX_GAZE_RAD = float(np.radians(MAX_GAZE_DEG))
# Limit of a transferred gaze: what a fit can measure (``thead.facemodel.model.gaze_angles`` keeps the iris within
# 0.95 eyeball radii of rest, asin(0.95) = 71.8 degrees). A driver's sideways look into the eye corner fits at
# 50-70 degrees on the shared clips; clipping it at the edit limit (35) left the iris near the middle of the eye.
MAX_TRANSFER_GAZE_DEG = 71.0
MAX_TRANSFER_GAZE_RAD = float(np.radians(MAX_TRANSFER_GAZE_DEG))
# Most unit change beyond a bound (coefficients) a relative transfer carries into the residual.
MAX_UNIT_OVERFLOW = 0.5
# Point (model frame, cm: X subject's left, Y down, Z into the head) kept still in the image when an edit or an
# orbit turns the head: near the neck's turning axis, so the face swings around it as a real head does, instead
# of turning about the face centroid (the model origin).
EDIT_PIVOT_CM = (0.0, 1.0, 5.0)
# Gain on the driver's change of the units a landmark reading under-reads. MediaPipe reads a small lift of the
# upper lids at under half its size (the source image warped, lids 1 px up, read back at 0.44, median of the 12
# shared pictures, 0.23-0.60; brows 2 px up at 0.68, down at 0.64, lower lip 0.74; a closing lid, a large move,
# arrives), so a driver's widened eyes arrived at a fraction of their size: d0's glances read back eye_wide at a
# slope of 0.2 of the real clip's. 1.5 on d0's self-reenactment (crf 8 / 10): mean unit r .897 / .914 -> .928 /
# .932, gaze error 4.39 / 4.34 -> 4.30 / 4.28 degrees, the pixels against the real crops as close as before
# (``tools/measure_reader_gain.py`` measures the reading gains). brow_lower (read at 0.64) at 1.5 too: a lowered
# brow had arrived short (WDA's frown, frames 4-38, read 0.1-0.3 under the real clip's; its brow_lower wrong in
# 13 of 200 frames -> 6), self-reenactment AU Hamming (crf 8 / 10) WDA .0318 / .0314 -> .0286 / .0279, d0 .0201
# / .0201 -> .0192 / .0174, d3 .0541 / .0567 -> .0527 / .0539, d12 .0722 / .0746 -> .0742 / .0722 (at the engine
# of mesh-20 it had moved d0, d3 and d12 the wrong way). The raise units (read at 0.68) are left as read: at 1.5
# WDA's output read its brows raised in 14 unit-frames the real clip never raises them (AU .0286 -> .0329, d0 and
# d3 worse too).
READ_GAINS: dict[str, float] = {"eye_wide": 1.5, "brow_lower": 1.5}
# How far (share of its rest opening) a driver's eye closes before the target's lids follow its ratio in full
# (``match_lid_closing``): an eye at rest wanders by a few per cent from frame to frame.
LID_MATCH_FADE = 0.2
# A relative transfer measures the mouth from the driver's reference frame; a talking clip's first frame is often
# mid-word (WDA's: lips 2.4 cm apart), and a closed-mouth source then took every later, smaller opening as a
# closing: the units stopped at shut, the residual's share went on and the lips crossed. The reference's mouth
# is taken instead at the source's own opening (``mouth_reference``), between the reference frame's and the
# driver's closed mouth: the mean of its MOUTH_REST_QUANTILE least open frames, for OPENING_UNITS and the residual
# within MOUTH_REGION (mouth widths from the lips' centre: in full, then a raised-cosine fall to none: the chin and
# the cheeks beside the mouth, not the eyes or the brows). The other way round (a source caught mid-word, a driver
# whose first frame is closed: the source's mouth never shut and gaped wider as the driver spoke), towards the
# driver's widest mouth instead: the mean of its MOUTH_REST_QUANTILE most open frames, and on along the same change
# up to MAX_OPENING_SHARE times it for a source opened wider than that.
MOUTH_REST_QUANTILE = 0.15
MAX_OPENING_SHARE = 2.0
OPENING_UNITS: tuple[str, ...] = ("jaw_open", "lips_part")
MOUTH_REGION = (0.75, 1.25)
# Inner-lip point pairs (upper, lower) whose mean gap is a mouth's opening: the middle and a third of the way out.
_INNER_LIP_PAIRS = ((13, 14), (82, 87), (312, 317))
# Names accepted by ``edit_params(expression=...)`` besides the units: each sets both sides.
EXPRESSION_ALIASES: dict[str, tuple[str, ...]] = {
    "smile": ("smile_left", "smile_right"),
    "brow_raise": ("brow_raise_left", "brow_raise_right"),
    "blink": ("blink_left", "blink_right"),
}


@dataclass
class TargetParams:
    """What the source face should do in each of B output frames (units of ``FitResult``).

    pose [B, 6] float32: yaw, pitch, roll (radians), tx, ty (crop pixels), scale (pixels per cm).
    depth_offset [B] float32 pixels. expression [B, E] float32 unit coefficients (order ``expression_names``).
    residual [B, 478, 3] float32 cm, model frame: the landmark detail the units do not explain.
    gaze [B, 4] float32 radians (right_yaw, right_pitch, left_yaw, left_pitch), relative to the head.
    held [B] bool: the driver had no face in this frame; the last valid frame's values were held.
    """

    pose: np.ndarray
    depth_offset: np.ndarray
    expression: np.ndarray
    residual: np.ndarray
    gaze: np.ndarray
    held: np.ndarray
    expression_names: tuple[str, ...] = field(default=EXPRESSION_NAMES)

    def __post_init__(self) -> None:
        b = self.pose.shape[0]
        shapes = {"pose": (b, 6), "depth_offset": (b,), "expression": (b, len(self.expression_names)),
                  "residual": (b, 478, 3), "gaze": (b, 4), "held": (b,)}
        for name, shape in shapes.items():
            if tuple(np.shape(getattr(self, name))) != shape:
                raise ValueError(f"TargetParams.{name}: shape {tuple(np.shape(getattr(self, name)))}, "
                                 f"expected {shape}")

    @property
    def num_frames(self) -> int:
        return int(self.pose.shape[0])

    def __len__(self) -> int:
        return self.num_frames

    def __getitem__(self, index: slice | np.ndarray | Sequence[int] | int) -> "TargetParams":
        """Frames ``index`` (a slice, indices or a bool mask; an int keeps a batch of 1)."""
        if isinstance(index, (int, np.integer)):
            index = [int(index)]
        return TargetParams(pose=self.pose[index], depth_offset=self.depth_offset[index],
                            expression=self.expression[index], residual=self.residual[index],
                            gaze=self.gaze[index], held=self.held[index], expression_names=self.expression_names)

    def expression_of(self, name: str) -> np.ndarray:
        """Coefficients [B] of one named unit."""
        return self.expression[:, self.expression_names.index(name)]

    @classmethod
    def concatenate(cls, parts: Sequence["TargetParams"]) -> "TargetParams":
        """Frames of several ``TargetParams`` one after another."""
        if not parts:
            raise ValueError("nothing to concatenate")
        return cls(pose=np.concatenate([p.pose for p in parts]),
                   depth_offset=np.concatenate([p.depth_offset for p in parts]),
                   expression=np.concatenate([p.expression for p in parts]),
                   residual=np.concatenate([p.residual for p in parts]),
                   gaze=np.concatenate([p.gaze for p in parts]), held=np.concatenate([p.held for p in parts]),
                   expression_names=parts[0].expression_names)

    @classmethod
    def from_fit(cls, fit: FitResult, frames: slice | Sequence[int] | int | None = None) -> "TargetParams":
        """The fit's own parameters (frames ``frames``, default all): rendering them reproduces the fitted frames."""
        sel = slice(None) if frames is None else ([int(frames)] if isinstance(frames, (int, np.integer)) else frames)
        pose = np.asarray(fit.pose, np.float32)[sel]
        return cls(pose=pose.copy(), depth_offset=np.asarray(fit.depth_offset, np.float32)[sel].copy(),
                   expression=np.asarray(fit.expression, np.float32)[sel].copy(),
                   residual=np.asarray(fit.residual, np.float32)[sel].copy(),
                   gaze=np.asarray(fit.gaze, np.float32)[sel].copy(), held=np.zeros(len(pose), bool),
                   expression_names=tuple(fit.expression_names))


def _limit_angles(angles: np.ndarray) -> np.ndarray:
    lim = np.radians(np.asarray(MAX_ANGLES_DEG))
    return np.clip(angles, -lim, lim)


def turn_about_pivot(pose: np.ndarray, depth_offset: np.ndarray, new_angles: np.ndarray,
                     pivot_cm: Sequence[float] = EDIT_PIVOT_CM) -> tuple[np.ndarray, np.ndarray]:
    """Pose [B, 6] and depth_offset [B] with the angles set to new_angles [B, 3] (radians), translated so that
    the model point ``pivot_cm`` keeps its image position and depth (a head turning on its neck)."""
    pivot = np.asarray(pivot_cm, np.float64)
    old = _euler_to_matrix(pose[:, :3]) @ pivot
    new = _euler_to_matrix(new_angles) @ pivot
    shift = pose[:, 5, None].astype(np.float64) * (old - new)  # [B, 3] pixels
    out = pose.astype(np.float64).copy()
    out[:, :3] = new_angles
    out[:, 3:5] += shift[:, :2]
    return out.astype(np.float32), (depth_offset + shift[:, 2]).astype(np.float32)


# ------------------------------------------------------------------------------------------------ helpers
def pose_residual_change(target_angles: np.ndarray, source_angles: np.ndarray) -> np.ndarray:
    """``C(target) - C(source)`` [B, 478, 3] cm for angles [B or 1, >=2] radians (zeros without the corrective)."""
    corrective = load_pose_corrective()
    t = np.asarray(target_angles, np.float64)[..., :2]
    src = np.asarray(source_angles, np.float64)[..., :2]
    n = max(len(t), len(src))
    if corrective is None:
        return np.zeros((n, 478, 3), np.float32)
    return np.broadcast_to(corrective.change(t, src), (n, 478, 3)).astype(np.float32)


def _finite(name: str, value: float | None) -> None:
    """Raise ValueError unless ``value`` (None passes) is a finite number: NaN or inf would render black."""
    if value is not None and not np.isfinite(float(value)):
        raise ValueError(f"{name} must be a finite number, got {value}")


def _check_fit(fit: FitResult, what: str) -> None:
    if not isinstance(fit, FitResult):
        raise TypeError(f"{what} must be a FitResult, got {type(fit).__name__}")
    if fit.residual.shape[1:] != (478, 3) or fit.identity.shape != (478, 3):
        raise ValueError(f"{what}: the engines need a fit of the 478-point model (model '{fit.model}')")
    if tuple(fit.expression_names) != EXPRESSION_NAMES:
        raise ValueError(f"{what}: expression units {fit.expression_names} differ from the model's")


def hold_indices(valid: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """For frames with flags valid [T]: (index [T] of the frame whose values to use, held [T] bool).

    Invalid frames use the last valid frame before them (the first valid frame when none came before).
    """
    valid = np.asarray(valid, bool)
    if not valid.any():
        raise ValueError("the driver has no frame with a face")
    t = np.arange(len(valid))
    last = np.maximum.accumulate(np.where(valid, t, -1))
    first = int(np.argmax(valid))
    return np.where(last >= 0, last, first), ~valid


def _reference_index(fit: FitResult, reference_frame: int) -> int:
    """reference_frame if it had a face, else the nearest frame that had one."""
    t = fit.num_frames
    r = int(reference_frame) % t if -t <= int(reference_frame) < t else None
    if r is None:
        raise ValueError(f"reference_frame {reference_frame} outside the driver's {t} frames")
    valid = np.flatnonzero(np.asarray(fit.valid, bool))
    if len(valid) == 0:
        raise ValueError("the driver has no frame with a face")
    return int(valid[np.argmin(np.abs(valid - r))])


def _source_frame(fit: FitResult, frame: int) -> TargetParams:
    if not -fit.num_frames <= frame < fit.num_frames:
        raise ValueError(f"source frame {frame} outside the source fit's {fit.num_frames} frames")
    return TargetParams.from_fit(fit, frame % fit.num_frames)


# ------------------------------------------------------------------------------------------------ public API
def transfer_motion(source: FitResult, driver: FitResult, mode: str = "relative", expression_scale: float = 1.0,
                    pose_scale: float = 1.0, use_pose: bool = True, use_expression: bool = True,
                    reference_frame: int = 0, *, use_gaze: bool = True, source_frame: int = 0,
                    read_gains: Mapping[str, float] | None = None) -> TargetParams:
    """Targets [T] that move ``source`` (frame ``source_frame`` of its fit) the way ``driver`` (T frames) moves.

    mode: "relative" (default; the driver's change from its frame ``reference_frame`` is applied to the source,
    which keeps its own rest pose and expression) or "absolute" (the driver's rotation, expressions and gaze as
    they are; head position and size still mapped relative to the reference frame); see the module docstring.
    expression_scale: multiplies expression and residual changes (absolute: the expressions). pose_scale:
    multiplies the rotation angle and the translation/scale changes (absolute: the angles).
    use_pose / use_expression / use_gaze: False keeps the source's pose / expression and residual / gaze.
    read_gains: {unit: gain} on the driver's unit changes (absolute: values), for what a landmark reading
    under-reads (default ``READ_GAINS``; ``{}`` takes the driver's units as read).
    Only the source's identity is ever rendered; the driver's identity and rest residual are not used.
    """
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, got '{mode}'")
    _finite("expression_scale", expression_scale)
    _finite("pose_scale", pose_scale)
    _check_fit(source, "source")
    _check_fit(driver, "driver")
    src = _source_frame(source, source_frame)
    ref = _reference_index(driver, reference_frame)
    idx, held = hold_indices(driver.valid)
    n = len(idx)
    lo, hi = expression_bounds()

    d_pose = np.asarray(driver.pose, np.float64)[idx]
    r_pose = np.asarray(driver.pose, np.float64)[ref]
    s_pose = src.pose[0].astype(np.float64)
    size_ratio = s_pose[5] / r_pose[5]  # source pixels per driver pixel of face motion

    pose = np.repeat(src.pose, n, 0).astype(np.float64)
    depth = np.repeat(src.depth_offset, n, 0).astype(np.float64)
    if use_pose:
        r_src = _euler_to_matrix(s_pose[:3])
        r_drv = _euler_to_matrix(d_pose[:, :3])
        if mode == "relative":
            delta = r_drv @ _euler_to_matrix(r_pose[:3]).T
            rot = _rotation_power(delta, float(pose_scale)) @ r_src
            angles = _matrix_to_euler(rot)
        else:
            angles = d_pose[:, :3] * float(pose_scale)
        pose[:, :3] = _limit_angles(angles)
        pose[:, 3:5] = s_pose[3:5] + pose_scale * (d_pose[:, 3:5] - r_pose[3:5]) * size_ratio
        pose[:, 5] = s_pose[5] * (d_pose[:, 5] / r_pose[5]) ** pose_scale
        d_depth = np.asarray(driver.depth_offset, np.float64)
        depth = src.depth_offset[0] + pose_scale * (d_depth[idx] - d_depth[ref]) * size_ratio

    expression = np.repeat(src.expression, n, 0).astype(np.float64)
    residual = np.repeat(src.residual, n, 0)
    if use_expression:
        d_expr = np.asarray(driver.expression, np.float64)
        d_res = np.asarray(driver.residual, np.float32)
        gain = expression_scale * _unit_gains(driver.expression_names, READ_GAINS if read_gains is None else read_gains)
        if mode == "relative":
            r_expr, r_res = mouth_reference(source.identity, src, driver, ref)
            expression = src.expression[0] + gain * (d_expr[idx] - r_expr)
        else:
            r_res = d_res[ref]
            expression = gain * d_expr[idx]
        clipped = np.clip(expression, lo, hi)
        detail = (d_res[idx] - r_res) - pose_residual_change(d_pose[:, :3], r_pose[None, :3])
        residual = (src.residual[0] + np.float32(expression_scale) * detail
                    + unit_overflow(expression - clipped)).astype(np.float32)
        expression = clipped
    if use_pose:
        residual = residual + pose_residual_change(pose[:, :3], s_pose[None, :3])
    if use_expression and mode == "relative":
        residual = match_lid_closing(residual, source.identity, src, driver, idx, ref, expression_scale)

    gaze = np.repeat(src.gaze, n, 0).astype(np.float64)
    if use_gaze:
        d_gaze = np.asarray(driver.gaze, np.float64)
        gaze = src.gaze[0] + (d_gaze[idx] - d_gaze[ref]) if mode == "relative" else d_gaze[idx]
        gaze = np.clip(gaze, -MAX_TRANSFER_GAZE_RAD, MAX_TRANSFER_GAZE_RAD)

    return TargetParams(pose=pose.astype(np.float32), depth_offset=np.asarray(depth, np.float32),
                        expression=expression.astype(np.float32), residual=residual.astype(np.float32),
                        gaze=gaze.astype(np.float32), held=held.copy())


def _unit_gains(names: Sequence[str], gains: Mapping[str, float]) -> np.ndarray:
    """[E] gain per unit of ``names`` (1 where ``gains`` names none); an unknown unit name is refused."""
    out = np.ones(len(names))
    for unit, value in gains.items():
        if unit not in EXPRESSION_NAMES:
            raise ValueError(f"read_gains: unknown expression unit '{unit}'")
        if unit in names:
            out[list(names).index(unit)] = float(value)
    return out


def _expression_overrides(overrides: Mapping[str, float] | None) -> dict[int, float]:
    """{unit index: value} of named overrides (units or ``EXPRESSION_ALIASES``), bounds checked."""
    out: dict[int, float] = {}
    lo, hi = expression_bounds()
    for name, value in (overrides or {}).items():
        units = EXPRESSION_ALIASES.get(name, (name,))
        for unit in units:
            if unit not in EXPRESSION_NAMES:
                known = ", ".join(list(EXPRESSION_NAMES) + list(EXPRESSION_ALIASES))
                raise ValueError(f"unknown expression '{name}' (known: {known})")
            i = EXPRESSION_NAMES.index(unit)
            v = float(value)
            if not np.isfinite(v) or v < lo[i] - 1e-6 or v > hi[i] + 1e-6:
                raise ValueError(f"expression '{name}' = {value} is outside [{lo[i]:g}, {hi[i]:g}]")
            out[i] = v
    return out


def lid_openings(identity: np.ndarray, expression: np.ndarray, residual: np.ndarray) -> np.ndarray:
    """How open each eye of a face shape is.

    Parameters
    ----------
    identity : np.ndarray
        [478, 3] cm, model frame: the neutral shape.
    expression : np.ndarray
        [B, E] unit coefficients (``EXPRESSION_NAMES``).
    residual : np.ndarray
        [B, 478, 3] cm, model frame.

    Returns
    -------
    np.ndarray
        float64 [B, 2] cm, the subject's right and left eye: the mean height (model Y, so a head turn does not
        change it) from the upper lid down to the lower lid over the lid points ``eye_lids`` pairs; 0 where the
        lids meet.
    """
    return np.stack([_mean_gap(identity, expression, residual, *eye_lids(side)[:2]) for side in ("right", "left")],
                    1)


def _mean_gap(identity: np.ndarray, expression: np.ndarray, residual: np.ndarray, upper: Sequence[int],
              lower: Sequence[int]) -> np.ndarray:
    """float64 [B] cm: the mean model-Y distance from the ``upper`` points down to their ``lower`` partners of
    shapes ``identity`` [478, 3] + ``expression`` [B, E] along the unit fields + ``residual`` [B, 478, 3]."""
    from thead.facemodel.model import load_face_model

    fields = load_face_model().expression_fields.astype(np.float64)
    pts = np.r_[np.asarray(upper), np.asarray(lower)]
    y = (np.asarray(identity, np.float64)[pts, 1][None] + np.asarray(expression, np.float64) @ fields[:, pts, 1]
         + np.asarray(residual, np.float64)[:, pts, 1])
    return (y[:, len(upper):] - y[:, :len(upper)]).mean(1)


def mouth_openings(identity: np.ndarray, expression: np.ndarray, residual: np.ndarray) -> np.ndarray:
    """How open a face shape's mouth is: float64 [B] cm, the mean height (model Y, pose-free) from the upper to the
    lower inner lip over ``_INNER_LIP_PAIRS``, about 0 for closed lips. The shape as in :func:`lid_openings`
    (identity [478, 3] cm, expression [B, E], residual [B, 478, 3] cm)."""
    upper, lower = zip(*_INNER_LIP_PAIRS)
    return _mean_gap(identity, expression, residual, upper, lower)


def mouth_region_weight(vertices: np.ndarray, region: tuple[float, float] = MOUTH_REGION) -> np.ndarray:
    """[N] weights in [0, 1] of the mouth region of face-mesh ``vertices`` [N, 3] (any length unit): 1 within
    ``region[0]`` mouth widths (corner to corner) of the lips' centre, a raised-cosine fall to 0 at ``region[1]``."""
    from thead.face.topology import LIPS_OUTER, MOUTH_CORNERS

    v = np.asarray(vertices, np.float64)
    centre = v[LIPS_OUTER].mean(0)
    width = float(np.linalg.norm(v[MOUTH_CORNERS[0]] - v[MOUTH_CORNERS[1]]))
    d = np.linalg.norm(v - centre[None], axis=1) / max(width, 1e-9)
    u = np.clip((d - region[0]) / max(region[1] - region[0], 1e-9), 0.0, 1.0)
    return 0.5 * (1.0 + np.cos(np.pi * u))


def mouth_reference(identity: np.ndarray, source: TargetParams, driver: FitResult, reference: int
                    ) -> tuple[np.ndarray, np.ndarray]:
    """The driver's reference expression and residual with its mouth taken at the source's own opening.

    A relative transfer applies the driver's change from its reference frame, so the reference's mouth is taken
    to be the source's. With the reference mid-word and the source's mouth closed, every opening less wide than
    the reference's arrived as a closing (the units stopped at shut, the residual's share went on: the inner lips
    crossed, drawn as a dark hole where the driver's mouth shut); with the source mid-word and the reference
    closed, the source's mouth never shut and gaped wider as the driver spoke. Here ``OPENING_UNITS`` and the
    residual of the mouth region (``mouth_region_weight`` of the driver's shape) are moved from the reference
    frame towards the driver's closed mouth (the mean of its ``MOUTH_REST_QUANTILE`` least open valid frames,
    ``mouth_openings``) when the source is less open than the reference, towards its widest (the mean of its
    ``MOUTH_REST_QUANTILE`` most open frames) when the source is more open, by the share that brings the
    reference's opening to the source's: all of it where the source is as closed as that, up to
    ``MAX_OPENING_SHARE`` of it where the source opens wider than the driver's widest mean. A
    self-reenactment from the reference frame is unchanged (the same opening). The other units (a chin raised or
    lips stretched at the reference) and the rest of the face keep the reference frame. (Closing only the
    residual's opening along the ``lips_part`` field instead kept the reference's lips stretched thin over its
    open mouth, and a closed source's lips came out as a thin slit; moving the units alone for an open source
    left its lips pouting where the driver's closed.)

    Parameters
    ----------
    identity : np.ndarray
        The source's neutral shape [478, 3] cm (other identities: the reference frame is returned as it is).
    source : TargetParams
        The source's own frame (B = 1).
    driver : FitResult
        The driver's fit; ``reference`` its reference frame.

    Returns
    -------
    expression : np.ndarray
        float64 [E]: the reference's unit coefficients, the opening units moved.
    residual : np.ndarray
        float32 [478, 3] cm, model frame: the reference's residual, the mouth region moved.
    """
    d_expr = np.asarray(driver.expression, np.float64)
    d_res = np.asarray(driver.residual, np.float32)
    ref_expr, ref_res = d_expr[reference].copy(), d_res[reference].copy()
    names = list(driver.expression_names)
    if (np.shape(identity) != (478, 3) or np.shape(driver.identity) != (478, 3) or driver.num_frames < 2
            or any(u not in names for u in OPENING_UNITS)):
        return ref_expr, ref_res
    frames = np.arange(driver.num_frames)
    if driver.valid is not None:
        frames = frames[np.asarray(driver.valid, bool)]
    if len(frames) < 2:
        return ref_expr, ref_res
    opening = mouth_openings(driver.identity, d_expr[frames], d_res[frames])
    r_open = mouth_openings(driver.identity, d_expr[[reference]], d_res[[reference]])[0]
    s_open = mouth_openings(identity, source.expression, source.residual)[0]
    if s_open < r_open:  # the driver's closed mouth
        toward = frames[opening <= np.quantile(opening, MOUTH_REST_QUANTILE)]
    else:  # its widest
        toward = frames[opening >= np.quantile(opening, 1.0 - MOUTH_REST_QUANTILE)]
    cols = [names.index(u) for u in OPENING_UNITS]
    state = ref_expr.copy()
    state[cols] = d_expr[toward][:, cols].mean(0)
    w = mouth_region_weight(np.asarray(driver.identity, np.float64))[:, None]
    state_res = ref_res + w * (d_res[toward].astype(np.float64).mean(0) - ref_res)  # the reference, mouth moved
    state_open = mouth_openings(driver.identity, state[None], state_res[None])[0]
    if abs(state_open - r_open) < 1e-3:
        return ref_expr, ref_res
    limit = 1.0 if s_open < r_open else MAX_OPENING_SHARE
    share = float(np.clip((s_open - r_open) / (state_open - r_open), 0.0, limit))
    if share == 0.0:
        return ref_expr, ref_res
    return ref_expr + share * (state - ref_expr), (ref_res + share * (state_res - ref_res)).astype(np.float32)


def match_lid_closing(residual: np.ndarray, identity: np.ndarray, source: TargetParams, driver: FitResult,
                      frames: np.ndarray, reference: int, expression_scale: float = 1.0) -> np.ndarray:
    """``residual`` [B, 478, 3] (cm) with each eye closed, relative to its own opening at rest, as far as the
    driver's eye closes relative to its opening at the reference frame.

    The blink units move the lids by the mean face's lid gap, so a unit change closes an eye that opens wider
    than the mean's by less than the driver's closed: WDA's blinks (lids 0-8 % of their rest opening apart) left
    s11.jpg's wide eyes 29-41 % open and s5.jpg's 17-31 %, a sleepy look where the driver blinked. Wherever the
    driver's eye is more closed than at its reference frame, the target's opening becomes the source's rest
    opening times the driver's ratio (``expression_scale`` scaling the change), by moving the lids along the
    blink unit's own field by what the plain unit transfer left short (in the residual: the unit coefficients
    stay the driver's, and what the read gains add stays on top). Eyes opening wider than at rest are left to
    ``eye_wide``; the correction fades in over the first ``LID_MATCH_FADE`` of closing, so an eye at rest is
    not touched. A self-reenactment is unchanged: the source's rest is the driver's reference.

    Parameters
    ----------
    residual : np.ndarray
        [B, 478, 3] cm, model frame: the targets' residual.
    identity : np.ndarray
        The source's neutral shape [478, 3] (other identities, a PCA model's coefficients, are returned as given).
    source : TargetParams
        The source's own frame (B = 1): its rest opening.
    driver : FitResult
        The driver's fit; ``frames`` [B] are its frames behind the targets, ``reference`` its reference frame.
    expression_scale : float
        Scales the driver's change of ratio (as it scales unit changes).

    Returns
    -------
    np.ndarray
        float32 [B, 478, 3].
    """
    if np.shape(identity) != (478, 3) or np.shape(driver.identity) != (478, 3):
        return residual
    from thead.facemodel.model import load_face_model

    d_expr, d_res = np.asarray(driver.expression), np.asarray(driver.residual)
    d_open = lid_openings(driver.identity, d_expr[frames], d_res[frames])
    d_rest = lid_openings(driver.identity, d_expr[[reference]], d_res[[reference]])
    s_rest = lid_openings(identity, source.expression, source.residual)
    ratio = np.divide(d_open, d_rest, out=np.ones_like(d_open), where=d_rest > 1e-3)
    ratio = 1.0 + float(expression_scale) * (ratio - 1.0)  # [B, 2]
    weight = np.clip((1.0 - ratio) / LID_MATCH_FADE, 0.0, 1.0)
    if not weight.any():
        return residual
    # Measured against the plain unit transfer (the driver's change at gain 1, within the units' bounds and what
    # they cut off carried by the residual, as ``transfer_motion`` does), so what the read gains add on top
    # (``READ_GAINS``' eye_wide) stays, and a self-reenactment is left as it was.
    e = float(expression_scale)
    lo, hi = expression_bounds()
    wanted = source.expression + e * (d_expr[frames] - d_expr[[reference]])
    units = np.clip(wanted, lo, hi)
    plain = lid_openings(identity, units, source.residual + e * (d_res[frames] - d_res[[reference]])
                         + unit_overflow(wanted - units))
    change = weight * (s_rest * np.minimum(ratio, 1.0) - plain)
    fields = load_face_model().expression_fields.astype(np.float64)
    none = (np.zeros((1, len(EXPRESSION_NAMES))), np.zeros((1, 478, 3)))
    out = np.asarray(residual, np.float64).copy()
    for k, unit in enumerate(("blink_right", "blink_left")):  # lid_openings' order: right eye, left eye
        field_ = fields[EXPRESSION_NAMES.index(unit)]  # [478, 3]
        per_unit = lid_openings(field_, *none)[0, k]  # opening (cm) one unit of the field adds (negative)
        out += (change[:, k] / per_unit)[:, None, None] * field_[None]
    return out.astype(np.float32)


def unit_overflow(excess: np.ndarray) -> np.ndarray:
    """The shape [B, 478, 3] (cm, model frame) of expression change the unit bounds cut off.

    excess [B, E]: wanted minus clipped coefficients. A relative transfer adds the driver's change to the
    source's own coefficients; where the sum passes a bound (a smiling source whose driver smiles more, a driver
    relaxing from a frown the source never made), the fit of the driver had the same motion as unit change, so what the clip cuts
    off would be lost: it goes into the residual along the units' own fields instead (as the fit puts what lies
    beyond a bound into its residual). Limited to ``MAX_UNIT_OVERFLOW`` per unit. Blinks carry none: a lid
    never closes past shut (the upper lid would cross the lower one) nor opens past open (``eye_wide`` is the unit
    for that).
    """
    from thead.facemodel.model import load_face_model

    excess = np.clip(np.asarray(excess, np.float64), -MAX_UNIT_OVERFLOW, MAX_UNIT_OVERFLOW)
    for name in ("blink_left", "blink_right"):
        excess[:, EXPRESSION_NAMES.index(name)] = 0.0
    if not np.any(excess):
        return np.zeros((len(excess), 478, 3), np.float32)
    fields = load_face_model().expression_fields.astype(np.float64)  # [E, 478, 3]
    return np.einsum("be,env->bnv", excess, fields).astype(np.float32)


def residual_without_units(residual: np.ndarray, units: Sequence[int]) -> np.ndarray:
    """residual [B, 478, 3] (cm) minus its least-squares share along the given expression units' fields.

    A fit clips each unit at its bounds and leaves what lies beyond them (e.g. a mouth pressed below neutral)
    in the residual; an edit that SETS a unit removes that share first, so the face shows the asked value.
    """
    if len(units) == 0:
        return residual
    from thead.facemodel.model import load_face_model

    n = 468
    fields = load_face_model().expression_fields[:, :n].reshape(len(EXPRESSION_NAMES), -1).astype(np.float64)
    gram = fields @ fields.T + 1e-6 * np.eye(len(fields))
    coef = np.linalg.solve(gram, fields @ residual[:, :n].reshape(len(residual), -1).T.astype(np.float64))  # [E, B]
    keep = np.zeros(len(fields), bool)
    keep[list(units)] = True
    share = (coef * keep[:, None]).T @ fields  # [B, n*3]
    out = residual.astype(np.float64).copy()
    out[:, :n] -= share.reshape(len(residual), n, 3)
    return out.astype(np.float32)


def edit_params(fit: FitResult, yaw: float | None = None, pitch: float | None = None, roll: float | None = None,
                frontalize: bool = False, expression: Mapping[str, float] | None = None, neutral: bool = False,
                gaze_yaw: float | None = None, gaze_pitch: float | None = None, *,
                relative_pose: bool = False, pivot_cm: Sequence[float] = EDIT_PIVOT_CM) -> TargetParams:
    """Targets, one per frame of ``fit`` (a photo: T = 1; a video: every frame), with the given changes.

    yaw, pitch, roll: head angles in RADIANS (the CLI converts from degrees; so does it for the gaze), absolute values set on every frame
    (``relative_pose=True``: added to each frame's own angles instead, so a video keeps its head motion).
    frontalize: yaw = pitch = roll = 0 (angles given explicitly win). The head turns about ``pivot_cm`` (a point
    near the neck's axis, which keeps its image position), with the pose corrective's landmark behaviour.
    expression: {unit or alias name: value} absolute coefficients (aliases "smile", "brow_raise", "blink" set
    both sides; e.g. {"smile": 0.8, "jaw_open": 0.3}); neutral: every unit 0 first (then ``expression``
    applies). A set unit also loses the residual's share along it (``residual_without_units``), so the face shows
    the value asked for even where the fit had clipped it. gaze_yaw, gaze_pitch: eye directions in RADIANS
    relative to the head, set for both eyes (+yaw looks to the subject's left = image right, +pitch up).
    Angles beyond the renderable limits (``MAX_ANGLES_DEG``, ``MAX_GAZE_DEG``) are clamped to them; NaN or
    infinite values raise ValueError.
    """
    for name, value in (("yaw", yaw), ("pitch", pitch), ("roll", roll), ("gaze_yaw", gaze_yaw),
                        ("gaze_pitch", gaze_pitch)):
        _finite(name, value)
    _check_fit(fit, "fit")
    base = TargetParams.from_fit(fit)
    pose, depth = base.pose, base.depth_offset
    angles = pose[:, :3].astype(np.float64).copy()
    if frontalize:
        angles[:] = 0.0
    for k, value in enumerate((yaw, pitch, roll)):
        if value is not None:
            angles[:, k] = angles[:, k] + value if relative_pose else value
    turned = not np.allclose(angles, pose[:, :3])
    if turned:
        pose, depth = turn_about_pivot(pose, depth, _limit_angles(angles), pivot_cm)
    expr = base.expression.copy()
    overrides = _expression_overrides(expression)
    if neutral:
        expr[:] = 0.0
    for i, v in overrides.items():
        expr[:, i] = v
    set_units = sorted(range(len(EXPRESSION_NAMES)) if neutral else overrides)
    residual = residual_without_units(base.residual, set_units)
    if turned:
        residual = residual + pose_residual_change(pose[:, :3], base.pose[:, :3])
    gaze = base.gaze.copy()
    if gaze_yaw is not None:
        gaze[:, [0, 2]] = float(np.clip(gaze_yaw, -MAX_GAZE_RAD, MAX_GAZE_RAD))
    if gaze_pitch is not None:
        gaze[:, [1, 3]] = float(np.clip(gaze_pitch, -MAX_GAZE_RAD, MAX_GAZE_RAD))
    return replace(base, pose=pose, depth_offset=depth, expression=expr, residual=residual, gaze=gaze)


def orbit_params(fit: FitResult, num_frames: int, yaw_range_deg: tuple[float, float] = (-25.0, 25.0),
                 pitch_range_deg: tuple[float, float] = (-8.0, 8.0), *, frame: int = 0,
                 pivot_cm: Sequence[float] = EDIT_PIVOT_CM) -> TargetParams:
    """Targets [num_frames] of a smooth, looping free-view sweep of frame ``frame`` of ``fit`` (a photo).

    The angles are offsets from the source's own pose: yaw follows one sine period over the clip through
    ``yaw_range_deg``, pitch two periods through ``pitch_range_deg`` (a figure-of-eight), both starting and
    ending at the source pose (0 offset when a range holds 0). Expression and gaze stay the source's. Angles
    are clamped to ``MAX_ANGLES_DEG``; NaN or infinite ranges raise ValueError.
    """
    if num_frames < 1:
        raise ValueError("num_frames must be >= 1")
    for name, rng in (("yaw_range_deg", yaw_range_deg), ("pitch_range_deg", pitch_range_deg)):
        for value in rng:
            _finite(name, value)
    _check_fit(fit, "fit")
    src = _source_frame(fit, frame)
    phase = 2.0 * np.pi * np.arange(num_frames) / num_frames

    def sweep(rng: tuple[float, float], periods: int) -> np.ndarray:
        lo, hi = np.radians(min(rng)), np.radians(max(rng))
        mid, half = 0.5 * (lo + hi), 0.5 * (hi - lo)
        # Starts at 0 offset when 0 lies in the range: shift the sine's phase to pass through 0 at t = 0.
        start = np.arcsin(np.clip(-mid / half, -1, 1)) if half > 0 else 0.0
        return mid + half * np.sin(periods * phase + start)

    base = src[[0] * num_frames]
    angles = base.pose[:, :3].astype(np.float64).copy()
    angles[:, 0] += sweep(yaw_range_deg, 1)
    angles[:, 1] += sweep(pitch_range_deg, 2)
    pose, depth = turn_about_pivot(base.pose, base.depth_offset, _limit_angles(angles), pivot_cm)
    residual = base.residual + pose_residual_change(pose[:, :3], base.pose[:1, :3])
    return replace(base, pose=pose, depth_offset=depth, residual=residual)


__all__ = ["EXPRESSION_ALIASES", "MAX_OPENING_SHARE", "MODES", "OPENING_UNITS", "READ_GAINS", "TRANSFER_REVISION",
           "TargetParams", "edit_params", "hold_indices", "orbit_params", "MAX_TRANSFER_GAZE_DEG", "lid_openings",
           "match_lid_closing", "mouth_openings", "mouth_reference", "mouth_region_weight", "pose_residual_change",
           "residual_without_units", "unit_overflow", "transfer_motion", "turn_about_pivot"]

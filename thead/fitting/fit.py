"""Batched fitting of the face model to landmark sequences (all frames at once, torch on CPU or CUDA).

Energy, per frame t and landmark l, in pixels (scaled-orthographic camera of ``thead.facemodel.geometry``)::

    sum_t sum_l  w_l rho( | s_t R_t X_tl + t_t - x_tl | )      X_t = identity + sum_e c_te field_e

with a Huber ``rho`` (IRLS weights), expressions ``c_t`` in their bounds (plus a small ridge and L1 cost), and one
identity shared by all frames: the mean shape plus a per-point offset with a graph bi-Laplacian smoothness prior,
kept out of the pose and expression directions so that neither can hide in it. All three landmark coordinates
are used (MediaPipe's z has the pixel scale of x and y; its offset per frame is free: ``depth_offset``).

Solver (block coordinate descent, each block exact and batched over frames; no per-frame Python loop):
1. pose of every frame: weighted 3-D similarity Procrustes between the current model shape and the landmarks
   (closed form, one batched 3x3 SVD);
2. landmarks brought into the model frame with that pose; expressions of every frame: a box-constrained
   least-squares problem of E unknowns (batched projected Newton with active sets);
3. identity: one matrix-vector product with a pre-computed inverse (shared over frames);
4. Huber weights from the per-landmark residuals.
Then, for clips, the resting expression (the 10 % quantile of each unit over frames, blended in by
T / (T + 25)) moves into the identity, so a subject's lasting brow height or lip shape is identity, not
expression; a single photo keeps the mean face as its neutral. Gaze is read from the iris centres and the
residual is what is left. With ``smooth`` on, pose, expression and gaze are smoothed by a zero-phase adaptive
Whittaker smoother (``smoothing.adaptive_smooth``): jitter is removed, fast motion is followed without lag;
the residual gets a plain Whittaker pass. Frames without landmarks are filled by interpolation and flagged.
"""

from __future__ import annotations

import weakref
from dataclasses import dataclass
from typing import Any, Callable, Sequence, TypeVar

import numpy as np
import torch

from thead.device import default_device
from thead.errors import InputError
from thead.face import topology as topo
from thead.facemodel import geometry as geo
from thead.facemodel.model import EYE_CORNERS, EYEBALL_RADIUS_CM, IRIS, FaceModel, gaze_angles, load_face_model
from thead.facemodel.spec import FittingSpec, make_fitting_spec
from thead.fitting.result import FitResult
from thead.runtime import torch_threads
from thead.fitting.smoothing import adaptive_smooth, cutoff_to_lambda, interpolate_gaps, whittaker_smooth

T = TypeVar("T")

# Smoothing cut-offs (Hz) at strength 1; strength s multiplies the smoother's lambda by s.
POSE_CUTOFF_HZ = 4.0
EXPRESSION_CUTOFF_HZ = 6.0
EYELID_CUTOFF_HZ = 8.0
GAZE_CUTOFF_HZ = 5.0
RESIDUAL_CUTOFF_HZ = 8.0
# Range (low, high) of jitter std the adaptive smoother assumes: pose = (yaw, pitch, roll rad, tx, ty, depth in
# units of the face scale (pixels per cm), log scale); expression coefficients; gaze radians. Larger
# frame-to-frame changes count as motion and are followed.
POSE_JITTER = (np.array([2e-4, 2e-4, 2e-4, 2e-3, 2e-3, 2e-3, 2e-4]),
               np.array([4e-3, 4e-3, 4e-3, 0.02, 0.02, 0.02, 3e-3]))
EXPRESSION_JITTER = (0.005, 0.03)
GAZE_JITTER = (float(np.radians(0.2)), float(np.radians(1.0)))  # 0.2 and 1 degree

IDENTITY_SMOOTHNESS = 0.05  # weight of the bi-Laplacian identity prior (per landmark, model units^2)
SPAN_PENALTY = 1e3  # keeps the identity out of the pose (similarity) and expression directions
EXPRESSION_L1 = 0.02  # linear cost per unit coefficient, times the field's squared norm: 0 when data cannot tell
# A clip's resting face: expression baselines (this quantile of each unit over frames, blended in by
# T / (T + BASELINE_FRAMES)) are moved into the identity: the least expressive frames are the neutral face.
BASELINE_FRAMES = 25.0
BASELINE_QUANTILE = 0.1
HUBER_FRACTION = 0.05  # Huber threshold as a fraction of the model's RMS landmark radius
EXPRESSION_RIDGE = 0.01  # cm^2 ridge on expression coefficients (scaled by the model size)


def _similarity_tangents(points: np.ndarray) -> np.ndarray:
    """[7, L*3]: translations, rotations and scaling of points [L, 3] to first order."""
    c = points - points.mean(0)
    out = []
    for k in range(3):
        e = np.zeros_like(c)
        e[:, k] = 1.0
        out.append(e)
    for k in range(3):
        axis = np.zeros(3)
        axis[k] = 1.0
        out.append(np.cross(axis, c))
    out.append(c)
    return np.stack([o.reshape(-1) for o in out])


def _mesh_spec(model: FaceModel, device: torch.device) -> FittingSpec:
    from thead.facemodel.expressions import MeshOperators

    n = topo.NUM_SURFACE_POINTS
    mean = model.mean_shape[:n].astype(np.float64)
    fields = model.expression_fields[:, :n].astype(np.float64)
    ops = MeshOperators(model.mean_shape)
    bilap = ops.bilaplacian.toarray()
    q, _ = np.linalg.qr(np.concatenate([_similarity_tangents(mean), fields.reshape(len(fields), -1)]).T)
    prior = IDENTITY_SMOOTHNESS * np.kron(bilap, np.eye(3)) + SPAN_PENALTY * q @ q.T + 1e-4 * np.eye(3 * n)
    weight = np.ones(n)
    weight[topo.FACE_OVAL] = 0.5  # the outline slides with the view and with hair
    system = prior + np.diag(np.repeat(weight, 3))
    id_map = np.linalg.inv(system)
    lo, hi = model.expression_lower, model.expression_upper
    ref = float(np.sqrt(((mean - mean.mean(0)) ** 2).sum(1).mean()))
    l1 = np.where(lo >= 0, EXPRESSION_L1, 0.0) * (fields ** 2).sum((1, 2))
    quantile = np.full(len(lo), BASELINE_QUANTILE)
    return make_fitting_spec(np.arange(n), mean, fields, lo, hi, np.full(len(lo), EXPRESSION_RIDGE), l1, id_map,
                             None, quantile, weight, ref, device)


# Specs per model object and device. Weakly keyed: a spec goes when its model does, and a new model that happens to
# get a freed model's id() never sees the old model's spec.
_SPEC_CACHE: weakref.WeakKeyDictionary[Any, dict[str, FittingSpec]] = weakref.WeakKeyDictionary()


def fitting_spec(model: Any, device: torch.device) -> FittingSpec:
    """The solver's view of ``model`` on ``device``, cached per model object and device.

    Parameters
    ----------
    model : FaceModel or a model with a ``fitting_spec(device)`` method (``PCAFaceModel``)
        The model to fit.
    device : torch.device
        Where the spec's tensors live.

    Returns
    -------
    FittingSpec
        Built once per (model, device) while the model lives (a model that cannot be weakly referenced is not
        cached).
    """
    try:
        per_device = _SPEC_CACHE.setdefault(model, {})
    except TypeError:  # not weakly referenceable: build it every time rather than key it by a reusable id()
        per_device = {}
    key = str(device)
    if key not in per_device:
        per_device[key] = _mesh_spec(model, device) if isinstance(model, FaceModel) else model.fitting_spec(device)
    return per_device[key]


# ------------------------------------------------------------------------------------------------ solver steps
def solve_box_qp(hess: torch.Tensor, grad_rhs: torch.Tensor, lower: torch.Tensor, upper: torch.Tensor,
                 x0: torch.Tensor | None = None, iterations: int = 6) -> torch.Tensor:
    """Batched ``argmin 0.5 x'Hx - g'x`` subject to ``lower <= x <= upper`` (projected Newton, active sets).

    Parameters
    ----------
    hess : torch.Tensor
        [B, E, E] positive definite H.
    grad_rhs : torch.Tensor
        [B, E] g.
    lower, upper : torch.Tensor
        [E] bounds (may be infinite).
    x0 : torch.Tensor or None
        [B, E] a start (default: the unconstrained solution), projected into the bounds.
    iterations : int
        Most Newton steps (stops early once no coefficient moves by 1e-3).

    Returns
    -------
    torch.Tensor
        [B, E] x within the bounds.
    """
    eye = torch.eye(hess.shape[-1], dtype=hess.dtype, device=hess.device).expand_as(hess)
    if x0 is None:
        x0 = torch.linalg.solve(hess, grad_rhs[..., None])[..., 0]
    x = torch.maximum(torch.minimum(x0, upper), lower)
    for _ in range(iterations):
        grad = (hess @ x[..., None])[..., 0] - grad_rhs
        active = ((x <= lower + 1e-6) & (grad > 0)) | ((x >= upper - 1e-6) & (grad < 0))
        free = ~active
        pair = free[..., :, None] & free[..., None, :]
        h = torch.where(pair, hess, eye)
        rhs = torch.where(free, -grad, torch.zeros_like(grad))
        step = torch.linalg.solve(h, rhs[..., None])[..., 0]
        new = torch.maximum(torch.minimum(x + step, upper), lower)
        done = bool((new - x).abs().max() < 1e-3) if new.numel() else True
        x = new
        if done:
            break
    return x


def _expression_step(spec: FittingSpec, deposed: torch.Tensor, neutral: torch.Tensor, weights: torch.Tensor,
                     x0: torch.Tensor | None) -> torch.Tensor:
    """Expression coefficients [T, E] of model-frame landmarks deposed [T, L, 3] around neutral [L, 3]."""
    e = spec.fields.shape[0]
    t = deposed.shape[0]
    hess = (weights @ spec.field_gram).reshape(t, e, e) + torch.diag(spec.ridge)
    resid = (deposed - neutral) * weights[..., None]
    rhs = resid.reshape(t, -1) @ spec.fields.reshape(e, -1).T - spec.l1
    return solve_box_qp(hess, rhs, spec.lower, spec.upper, x0, iterations=6 if x0 is None else 3)


def _huber_weights(dist: torch.Tensor, delta: float) -> torch.Tensor:
    return torch.clamp(delta / dist.clamp_min(1e-9), max=1.0)


@dataclass
class _Solution:
    scale: torch.Tensor  # [T]
    rot: torch.Tensor  # [T, 3, 3]
    trans: torch.Tensor  # [T, 3]
    expression: torch.Tensor  # [T, E]
    id_coef: torch.Tensor  # [K]
    offset: torch.Tensor  # [L, 3]
    weights: torch.Tensor  # [T, L]


CHUNK_FRAMES = 2048  # frames per block in the per-frame steps (keeps the working set in cache)


def _blocks(num_frames: int) -> list[slice]:
    return [slice(i, min(i + CHUNK_FRAMES, num_frames)) for i in range(0, num_frames, CHUNK_FRAMES)]


def _pose_expression_pass(spec: FittingSpec, obs: torch.Tensor, neutral: torch.Tensor, weights: torch.Tensor,
                          sol: _Solution, warm: bool, identity_sums: bool = False, robust_offset: torch.Tensor | None
                          = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Pose then expressions of every frame (in place in ``sol``), block by block.

    With ``identity_sums``, also returns the scale^2-weighted sum of model-frame residuals around the mean
    [L*3] and the sum of scale^2; with ``robust_offset`` (the identity offset), updates the Huber weights.
    """
    e = spec.fields.shape[0]
    l = obs.shape[1]
    fields_flat = spec.fields.reshape(e, -1)
    delta = HUBER_FRACTION * spec.ref_len
    total = torch.zeros(l * 3, dtype=obs.dtype, device=obs.device)
    s2_total = torch.zeros((), dtype=obs.dtype, device=obs.device)
    for sl in _blocks(obs.shape[0]):
        o, w = obs[sl], weights[sl]
        shape = neutral + (sol.expression[sl] @ fields_flat).reshape(-1, l, 3)
        scale, rot, trans = geo.similarity_align(shape, o, w)
        deposed = ((o - trans[:, None]) @ rot) / scale[:, None, None]
        expr = _expression_step(spec, deposed, neutral, w, sol.expression[sl] if warm else None)
        sol.scale[sl], sol.rot[sl], sol.trans[sl], sol.expression[sl] = scale, rot, trans, expr
        if identity_sums or robust_offset is not None:
            resid = deposed - spec.mean - (expr @ fields_flat).reshape(-1, l, 3)
            if identity_sums:
                s2 = scale ** 2
                total += ((s2[:, None] * spec.point_weight)[..., None] * resid).sum(0).reshape(-1)
                s2_total += s2.sum()
            if robust_offset is not None:
                weights[sl] = spec.point_weight * _huber_weights((resid - robust_offset).norm(dim=-1), delta)
    return total, s2_total


def solve_frames(spec: FittingSpec, obs: torch.Tensor, iterations: int = 8, robust: bool = True,
                 identity_coef: torch.Tensor | None = None) -> _Solution:
    """Alternating pose / expression / identity solve (the block coordinate descent of the module docstring).

    Parameters
    ----------
    spec : FittingSpec
        The model's view for the solver (``fitting_spec``).
    obs : torch.Tensor
        [T, L, 3] observed landmarks (pixels), all valid, in ``spec.obs_index`` order.
    iterations : int
        Solver rounds.
    robust : bool
        Huber weights on the landmarks (else all weights 1).
    identity_coef : torch.Tensor or None
        [K] a known identity, kept fixed; None: the identity is solved.

    Returns
    -------
    _Solution
        Per frame scale [T], rotation [T, 3, 3], translation [T, 3] (pixels), expression [T, E] and landmark weights
        [T, L]; the identity coefficients [K] and per-point offset [L, 3] (model units) shared by all frames.
    """
    t, l, _ = obs.shape
    e = spec.fields.shape[0]
    like = dict(dtype=obs.dtype, device=obs.device)
    weights = spec.point_weight.expand(t, l).clone()
    fixed_identity = identity_coef is not None
    if identity_coef is None:
        id_coef = torch.zeros(spec.id_map.shape[0], **like)
        offset = torch.zeros_like(spec.mean)
    else:
        id_coef = identity_coef.to(obs)
        offset = (id_coef if spec.id_basis is None else id_coef @ spec.id_basis).reshape(l, 3)
    sol = _Solution(torch.ones(t, **like), torch.eye(3, **like).repeat(t, 1, 1), torch.zeros(t, 3, **like),
                    torch.zeros(t, e, **like).clamp(spec.lower, spec.upper), id_coef, offset, weights)
    for it in range(iterations + 1):
        last = it == iterations
        total, s2_total = _pose_expression_pass(
            spec, obs, spec.mean + sol.offset, sol.weights, sol, warm=it > 0,
            identity_sums=not (last or fixed_identity), robust_offset=None if last or not robust else sol.offset)
        if not (last or fixed_identity):
            # Identity: scale^2-weighted mean of the frames' residuals (landmark weights without the Huber factor,
            # so that the pre-computed system stays exact), through the prior.
            sol.id_coef = spec.id_map @ (total / s2_total)
            sol.offset = (sol.id_coef if spec.id_basis is None else sol.id_coef @ spec.id_basis).reshape(l, 3)
    if not fixed_identity and spec.baseline_quantile is not None and t > 1:
        _absorb_baseline(spec, obs, sol)
    return sol


def _absorb_baseline(spec: FittingSpec, obs: torch.Tensor, sol: _Solution, iterations: int = 3) -> None:
    """Move the clip's resting expression (per-unit quantiles over frames) into the identity, then refit."""
    t, l, _ = obs.shape
    e = spec.fields.shape[0]
    ranked = sol.expression.clamp_min(0).sort(0).values  # [T, E]; negative values are the units' own range
    pos = (spec.baseline_quantile * (t - 1)).round().long()
    base = ranked.gather(0, pos[None])[0] * (t / (t + BASELINE_FRAMES))
    sol.offset = sol.offset + (base @ spec.fields.reshape(e, -1)).reshape(l, 3)
    sol.expression = (sol.expression - base).clamp(spec.lower, spec.upper)
    if spec.id_basis is None:
        sol.id_coef = sol.offset.reshape(-1)
    for _ in range(iterations):
        _pose_expression_pass(spec, obs, spec.mean + sol.offset, sol.weights, sol, warm=True)


def _grouped_pass(spec: FittingSpec, obs: torch.Tensor, groups: torch.Tensor, num_groups: int, sol: _Solution,
                  warm: bool, identity_sums: bool = False, robust: bool = False
                  ) -> tuple[torch.Tensor, torch.Tensor]:
    """``_pose_expression_pass`` for frames of several clips: frame t's neutral is ``mean + offset[groups[t]]``
    (sol.offset [G, L, 3]). With ``identity_sums``: per clip sums [G, L*3] and [G]; ``robust`` updates the Huber
    weights around each clip's own offset."""
    e = spec.fields.shape[0]
    l = obs.shape[1]
    fields_flat = spec.fields.reshape(e, -1)
    delta = HUBER_FRACTION * spec.ref_len
    total = torch.zeros(num_groups, l * 3, dtype=obs.dtype, device=obs.device)
    s2_total = torch.zeros(num_groups, dtype=obs.dtype, device=obs.device)
    for sl in _blocks(obs.shape[0]):
        o, w, g = obs[sl], sol.weights[sl], groups[sl]
        neutral = spec.mean + sol.offset[g]  # [b, L, 3]
        shape = neutral + (sol.expression[sl] @ fields_flat).reshape(-1, l, 3)
        scale, rot, trans = geo.similarity_align(shape, o, w)
        deposed = ((o - trans[:, None]) @ rot) / scale[:, None, None]
        expr = _expression_step(spec, deposed, neutral, w, sol.expression[sl] if warm else None)
        sol.scale[sl], sol.rot[sl], sol.trans[sl], sol.expression[sl] = scale, rot, trans, expr
        if identity_sums or robust:
            resid = deposed - spec.mean - (expr @ fields_flat).reshape(-1, l, 3)
            if identity_sums:
                s2 = scale ** 2
                total.index_add_(0, g, ((s2[:, None] * spec.point_weight)[..., None] * resid).reshape(len(g), -1))
                s2_total.index_add_(0, g, s2)
            if robust:
                sol.weights[sl] = spec.point_weight * _huber_weights((resid - sol.offset[g]).norm(dim=-1), delta)
    return total, s2_total


def solve_clips(spec: FittingSpec, obs: torch.Tensor, lengths: list[int], iterations: int = 8,
                robust: bool = True) -> list[_Solution]:
    """``solve_frames`` for several clips at once: their frames share every batched step (one set of kernel
    launches for all, which is what makes a GPU pay off on many short clips), each clip keeps its own identity.

    Parameters
    ----------
    spec : FittingSpec
        The model's view for the solver.
    obs : torch.Tensor
        [sum(lengths), L, 3] the clips' valid landmarks one after another (pixels), ``spec.obs_index`` order.
    lengths : list of int
        Frames of each clip (each >= 1).
    iterations, robust
        As ``solve_frames``.

    Returns
    -------
    list of _Solution
        One per clip, as ``solve_frames`` would give for that clip alone (up to float rounding).
    """
    t, l, _ = obs.shape
    if sum(lengths) != t or min(lengths, default=1) < 1:
        raise ValueError(f"clip lengths {lengths} do not split {t} frames")
    g_count = len(lengths)
    e = spec.fields.shape[0]
    like = dict(dtype=obs.dtype, device=obs.device)
    groups = torch.repeat_interleave(torch.arange(g_count, device=obs.device),
                                     torch.as_tensor(lengths, device=obs.device))
    sol = _Solution(torch.ones(t, **like), torch.eye(3, **like).repeat(t, 1, 1), torch.zeros(t, 3, **like),
                    torch.zeros(t, e, **like).clamp(spec.lower, spec.upper),
                    torch.zeros(g_count, spec.id_map.shape[0], **like), torch.zeros(g_count, l, 3, **like),
                    spec.point_weight.expand(t, l).clone())
    for it in range(iterations + 1):
        last = it == iterations
        total, s2_total = _grouped_pass(spec, obs, groups, g_count, sol, warm=it > 0, identity_sums=not last,
                                        robust=robust and not last)
        if not last:
            sol.id_coef = (total / s2_total[:, None]) @ spec.id_map.T
            sol.offset = (sol.id_coef if spec.id_basis is None else sol.id_coef @ spec.id_basis).reshape(g_count, l, 3)
    starts = np.cumsum([0] + list(lengths))
    if spec.baseline_quantile is not None:
        base = torch.zeros(g_count, e, **like)
        for k, n in enumerate(lengths):
            if n < 2:  # a photo keeps the mean face as its neutral
                continue
            ranked = sol.expression[starts[k]:starts[k + 1]].clamp_min(0).sort(0).values
            pos = (spec.baseline_quantile * (n - 1)).round().long()
            base[k] = ranked.gather(0, pos[None])[0] * (n / (n + BASELINE_FRAMES))
        sol.offset = sol.offset + (base @ spec.fields.reshape(e, -1)).reshape(g_count, l, 3)
        sol.expression = (sol.expression - base[groups]).clamp(spec.lower, spec.upper)
        if spec.id_basis is None:
            sol.id_coef = sol.offset.reshape(g_count, -1)
        if any(n > 1 for n in lengths):
            for _ in range(3):
                _grouped_pass(spec, obs, groups, g_count, sol, warm=True)
    out = []
    for k in range(g_count):
        sl = slice(int(starts[k]), int(starts[k + 1]))
        out.append(_Solution(sol.scale[sl], sol.rot[sl], sol.trans[sl], sol.expression[sl], sol.id_coef[k],
                             sol.offset[k], sol.weights[sl]))
    return out


# ------------------------------------------------------------------------------------------------ validation
def _check_input(landmarks: Any, valid: Any) -> tuple[np.ndarray, np.ndarray]:
    if isinstance(landmarks, torch.Tensor):
        landmarks = landmarks.detach().cpu().numpy()
    try:
        lm = np.asarray(landmarks, dtype=np.float32)
    except (TypeError, ValueError) as err:
        raise InputError(None, f"landmarks are not a numeric array ({err})") from None
    if lm.ndim == 2:
        lm = lm[None]
    if lm.ndim != 3 or lm.shape[1:] != (topo.NUM_POINTS, 3):
        raise InputError(None, f"landmarks must have shape [T, {topo.NUM_POINTS}, 3], got {list(np.shape(landmarks))}")
    if lm.shape[0] == 0:
        raise InputError(None, "landmarks hold no frames")
    finite = np.isfinite(lm).all(axis=(1, 2))
    if valid is None:
        ok = finite
    else:
        if isinstance(valid, torch.Tensor):
            valid = valid.detach().cpu().numpy()
        ok = np.asarray(valid).astype(bool).reshape(-1)
        if ok.shape[0] != lm.shape[0]:
            raise InputError(None, f"valid has {ok.shape[0]} entries for {lm.shape[0]} frames")
        bad = np.flatnonzero(ok & ~finite)
        if len(bad):
            raise InputError(None, f"{len(bad)} frame(s) marked valid hold NaN/inf landmarks (first: frame {bad[0]})")
    if not ok.any():
        raise InputError(None, f"no valid frames: none of the {lm.shape[0]} frames has a face's landmarks")
    spread = np.ptp(lm[ok][..., :2], axis=1).max(-1)
    if (spread < 1e-3).any():
        raise InputError(None, f"frame {np.flatnonzero(ok)[np.argmax(spread < 1e-3)]}: all landmarks at one point")
    return lm, ok


# ------------------------------------------------------------------------------------------------ public API
def fit_sequence(landmarks: Any, valid: Any = None, image_size: int = 256, smooth: bool | float = True,
                 device: str | torch.device | None = None, *, fps: float = 25.0, model: Any = None,
                 identity: Any = None, iterations: int = 8, robust: bool = True,
                 cpu_threads: int | None = 1) -> FitResult:
    """Fit the face model to a landmark sequence, all frames at once.

    Parameters
    ----------
    landmarks : array-like
        [T, 478, 3] or [478, 3] (numpy or torch): pixels of a square crop (x right, y down, z = MediaPipe depth x
        crop width).
    valid : array-like or None
        bool [T]: frames with a face (default: frames without NaN).
    image_size : int
        The crop's side in pixels (recorded, and used to sanity-check coordinates).
    smooth : bool or float
        False, True (strength 1) or a strength (> 0, multiplies the smoother's lambda); off for a single frame.
    device : str, torch.device or None
        Where to solve (``thead.device.default_device``: CUDA when available).
    fps : float
        Frame rate the smoothing cut-offs (Hz) refer to.
    model : FaceModel, PCAFaceModel or None
        The model (default: the packaged 478-point model).
    identity : array-like or None
        A known identity to keep fixed instead of solving it: a neutral shape [478, 3] cm (e.g.
        ``FitResult.identity`` of a photo) or PCA identity coefficients [K].
    iterations : int
        Solver rounds.
    robust : bool
        Huber weights on the landmarks.
    cpu_threads : int or None
        torch intra-op threads while fitting on the CPU (restored afterwards; None leaves torch's setting). One
        thread is the default: the solver runs many small operations, and on a machine whose cores are shared
        with other work, more threads mostly wait for each other.

    Returns
    -------
    FitResult
        T frames of pose (radians, pixels), expression, gaze (radians), residual (cm) and the identity; frames
        without landmarks interpolated and flagged.

    Raises
    ------
    InputError
        For malformed input (wrong shape, NaN in valid frames, no valid frame, normalised coordinates).
    """
    dev = default_device(device)
    return _with_cpu_threads(dev, cpu_threads, lambda: _fit_sequence(landmarks, valid, image_size, smooth, dev, fps,
                                                                     model, identity, iterations, robust))


def _with_cpu_threads(dev: torch.device, cpu_threads: int | None, solve: Callable[[], T]) -> T:
    """``solve()`` with torch's intra-op threads set to ``cpu_threads`` on the CPU (restored afterwards)."""
    if dev.type != "cpu" or cpu_threads is None:
        return solve()
    with torch_threads(cpu_threads):
        return solve()


def _fit_sequence(landmarks: Any, valid: Any, image_size: int, smooth: bool | float, dev: torch.device, fps: float,
                  model: Any, identity: Any, iterations: int, robust: bool) -> FitResult:
    """``fit_sequence`` on a resolved device."""
    lm, ok = _check_clip(landmarks, valid, image_size, fps)
    model = load_face_model() if model is None else model
    spec = fitting_spec(model, dev)
    strength = _strength(smooth, lm.shape[0])
    obs = torch.as_tensor(lm[ok], device=dev)[:, spec.obs_index]
    id_coef = None if identity is None else _identity_coefficients(model, spec, identity)
    sol = solve_frames(spec, obs, iterations=iterations, robust=robust, identity_coef=id_coef)
    return _finish_fit(lm, ok, sol, spec, model, dev, image_size, strength, fps, iterations, robust)


def _strength(smooth: bool | float, num_frames: int) -> float:
    """The smoothing strength of ``smooth`` (off for a single frame)."""
    strength = float(smooth) if not isinstance(smooth, bool) else (1.0 if smooth else 0.0)
    if strength < 0:
        raise InputError(None, f"smoothing strength must be >= 0, got {smooth}")
    return 0.0 if num_frames == 1 else strength


def _check_clip(landmarks: Any, valid: Any, image_size: int, fps: float) -> tuple[np.ndarray, np.ndarray]:
    """(landmarks float32 [T, 478, 3], valid bool [T]) checked as ``fit_sequence``'s input; InputError if not."""
    lm, ok = _check_input(landmarks, valid)
    if image_size <= 0:
        raise InputError(None, f"image_size must be positive, got {image_size}")
    centre = np.median(lm[ok][..., :2].reshape(-1, 2), 0)
    if image_size > 4 and np.abs(lm[ok][..., :2]).max() <= 1.5:
        raise InputError(None, "landmarks look normalised to [0, 1]; pass pixels of the crop (x * image_size)")
    if (centre < -image_size).any() or (centre > 2 * image_size).any():
        raise InputError(None, f"landmarks centred at {centre.round(1).tolist()} lie far outside the "
                               f"{image_size}x{image_size} crop")
    if fps <= 0:
        raise InputError(None, f"fps must be positive, got {fps}")
    return lm, ok


def _finish_fit(lm: np.ndarray, ok: np.ndarray, sol: _Solution, spec: FittingSpec, model: Any, dev: torch.device,
                image_size: int, strength: float, fps: float, iterations: int, robust: bool) -> FitResult:
    """The FitResult of one clip from its solver solution: gaps filled, smoothing, gaze, residual, fit error."""
    full = torch.as_tensor(lm[ok], device=dev)  # [Tv, 478, 3]
    angles = geo.matrix_to_euler(sol.rot)
    params = torch.cat([angles, sol.trans, sol.scale.log()[:, None]], -1).cpu().double().numpy()  # [Tv, 7]
    params[:, :3] = np.unwrap(params[:, :3], axis=0)
    total = lm.shape[0]
    filled = np.zeros((total, params.shape[1]))
    filled[ok] = params
    filled = interpolate_gaps(filled, ok)
    frame_w = np.where(ok, 1.0, 1e-3)
    if strength > 0:
        lam = strength * cutoff_to_lambda(POSE_CUTOFF_HZ, fps)
        face_scale = np.r_[1.0, 1.0, 1.0, np.full(3, np.exp(np.median(params[:, 6]))), 1.0]
        filled = adaptive_smooth(filled, lam, frame_w, POSE_JITTER[0] * face_scale, POSE_JITTER[1] * face_scale)
    pose_all = torch.as_tensor(filled, device=dev, dtype=torch.float32)
    rot_all = geo.euler_to_matrix(pose_all[:, :3])
    scale_all = pose_all[:, 6].exp()
    trans_all = pose_all[:, 3:6]

    # Expressions (re-solved with the final, possibly smoothed, pose), gaze and residual of the valid frames.
    deposed_full = ((full - trans_all[ok][:, None]) @ rot_all[ok]) / scale_all[ok][:, None, None]
    neutral = spec.mean + sol.offset
    expr = _expression_step(spec, deposed_full[:, spec.obs_index], neutral, sol.weights, sol.expression)
    expr_all = np.zeros((total, expr.shape[1]))
    expr_all[ok] = expr.cpu().double().numpy()
    expr_all = interpolate_gaps(expr_all, ok)
    if strength > 0:
        lam = np.array([cutoff_to_lambda(EYELID_CUTOFF_HZ if n.startswith(("blink", "eye")) else
                                         EXPRESSION_CUTOFF_HZ, fps) for n in _names(model)]) * strength
        expr_all = adaptive_smooth(expr_all, lam, frame_w, *EXPRESSION_JITTER)
        expr_all = np.clip(expr_all, spec.lower.cpu().numpy(), spec.upper.cpu().numpy())
    expr_t = torch.as_tensor(expr_all, device=dev, dtype=torch.float32)

    identity, gaze_valid = _identity_gaze_model(model, sol, deposed_full)
    gaze_all = np.zeros((total, 4))
    gaze_all[ok] = gaze_valid.cpu().double().numpy()
    gaze_all = interpolate_gaps(gaze_all, ok)
    if strength > 0:
        gaze_all = adaptive_smooth(gaze_all, strength * cutoff_to_lambda(GAZE_CUTOFF_HZ, fps), frame_w,
                                   *GAZE_JITTER)
    gaze_t = torch.as_tensor(gaze_all, device=dev, dtype=torch.float32)
    # Model without residual, for all frames (smoothed gaze), then the residual on valid frames.
    model_all = _model_points(model, spec, identity, expr_t, gaze_t)
    points_index = _points_index(model, spec)
    residual = torch.zeros_like(model_all)
    residual[torch.as_tensor(ok, device=dev)] = deposed_full[:, points_index] - model_all[ok]
    res_np = interpolate_gaps(residual.cpu().numpy(), ok)
    if strength > 0:
        lam = strength * cutoff_to_lambda(RESIDUAL_CUTOFF_HZ, fps)
        res_np = whittaker_smooth(res_np.reshape(total, -1), lam, frame_w).reshape(res_np.shape)
    pose_out = np.concatenate([filled[:, :3], filled[:, 3:5], np.exp(filled[:, 6:7])], 1).astype(np.float32)
    projected = geo.apply_pose(model_all, torch.as_tensor(pose_out, device=dev), pose_all[:, 5])
    err = (projected[..., :2] - torch.as_tensor(lm, device=dev)[:, points_index, :2]).norm(dim=-1).mean(-1)
    fit_error = err.cpu().numpy().astype(np.float32)
    fit_error[~ok] = np.nan
    return FitResult(
        pose=pose_out, depth_offset=filled[:, 5].astype(np.float32), expression=expr_all.astype(np.float32),
        expression_names=list(_names(model)), gaze=gaze_all.astype(np.float32),
        identity=identity.cpu().numpy().astype(np.float32), residual=res_np.astype(np.float32),
        fit_error=fit_error, valid=ok.copy(), image_size=int(image_size), fps=float(fps),
        model=getattr(model, "name", "mediapipe478"),
        extra={"smoothing_strength": strength, "iterations": iterations, "robust": robust})


def fit_image(landmarks: Any, image_size: int = 256, device: str | torch.device | None = None,
              model: Any = None) -> FitResult:
    """``fit_sequence`` for one face (no smoothing).

    Parameters
    ----------
    landmarks : array-like
        [478, 3] (or [1, 478, 3]) pixels of a square crop.
    image_size : int
        The crop's side in pixels.
    device : str, torch.device or None
        Where to solve (default: CUDA when available).
    model : FaceModel, PCAFaceModel or None
        The model (default: the packaged 478-point model).

    Returns
    -------
    FitResult
        The fit, T = 1.
    """
    return fit_sequence(np.asarray(landmarks)[None] if np.ndim(landmarks) == 2 else landmarks, None, image_size,
                        smooth=False, device=device, model=model)


def fit_sequences(clips: Sequence[Any], image_sizes: Sequence[int] | int = 256, smooth: Sequence[bool | float] | bool
                  | float = True, device: str | torch.device | None = None, *, fps: Sequence[float] | float = 25.0,
                  model: Any = None, iterations: int = 8, robust: bool = True,
                  cpu_threads: int | None = 1) -> list[FitResult]:
    """``fit_sequence`` of several clips in one solve: the frames of all clips go through each batched solver
    step together (one set of kernel launches instead of one per clip: what makes a GPU pay off on a dataset of
    short clips or photos), each clip with its own identity; gaps, smoothing, gaze and residual are then per clip.

    Parameters
    ----------
    clips : sequence
        Per clip, its landmarks [T, 478, 3] pixels, or a (landmarks, valid) pair with valid bool [T].
    image_sizes, smooth, fps
        Per clip, or one value for all (as ``fit_sequence``'s arguments).
    device, model, iterations, robust, cpu_threads
        As ``fit_sequence``.

    Returns
    -------
    list of FitResult
        One per clip, in order: what ``fit_sequence`` gives for that clip alone, up to float rounding (a clip
        with a single valid frame batched with longer ones gets three more solver rounds).

    Raises
    ------
    InputError
        For a malformed clip (its index in the message); check clips one by one first to keep the others.
    """
    n = len(clips)
    per = lambda v: list(v) if isinstance(v, (list, tuple)) else [v] * n  # noqa: E731
    sizes, smooths, rates = per(image_sizes), per(smooth), per(fps)
    if not (len(sizes) == len(smooths) == len(rates) == n):
        raise ValueError("image_sizes, smooth and fps need one value per clip")
    if n == 0:
        return []
    dev = default_device(device)
    return _with_cpu_threads(dev, cpu_threads,
                             lambda: _fit_sequences(clips, sizes, smooths, rates, dev, model, iterations, robust))


def _fit_sequences(clips: Sequence[Any], sizes: list, smooths: list, rates: list, dev: torch.device, model: Any,
                   iterations: int, robust: bool) -> list[FitResult]:
    """``fit_sequences`` on a resolved device."""
    checked = []
    for k, clip in enumerate(clips):
        landmarks, valid = clip if isinstance(clip, tuple) else (clip, None)
        try:
            checked.append(_check_clip(landmarks, valid, int(sizes[k]), float(rates[k])))
        except InputError as exc:
            raise InputError(exc.path, f"clip {k}: {exc.reason}") from None
    model = load_face_model() if model is None else model
    spec = fitting_spec(model, dev)
    obs = torch.cat([torch.as_tensor(lm[ok], device=dev) for lm, ok in checked])[:, spec.obs_index]
    solutions = solve_clips(spec, obs, [int(ok.sum()) for _, ok in checked], iterations=iterations, robust=robust)
    return [_finish_fit(lm, ok, sol, spec, model, dev, int(sizes[k]), _strength(smooths[k], lm.shape[0]),
                        float(rates[k]), iterations, robust)
            for k, ((lm, ok), sol) in enumerate(zip(checked, solutions))]


# ------------------------------------------------------------------------------------------------ model glue
def _identity_coefficients(model: Any, spec: FittingSpec, identity: Any) -> torch.Tensor:
    """Solver identity coefficients [K] of a user-given identity (neutral shape or PCA coefficients)."""
    ident = geo.as_tensor(identity, spec.mean.device)
    if isinstance(model, FaceModel):
        if tuple(ident.shape) != (topo.NUM_POINTS, 3) or not torch.isfinite(ident).all():
            raise InputError(None, f"identity must be a finite neutral shape [478, 3], got {list(ident.shape)}")
        return (ident[: topo.NUM_SURFACE_POINTS] - model.tensor("mean_shape", ident.device)[
            : topo.NUM_SURFACE_POINTS]).reshape(-1)
    if tuple(ident.shape) != (spec.id_map.shape[0],) or not torch.isfinite(ident).all():
        raise InputError(None, f"identity must be {spec.id_map.shape[0]} finite PCA coefficients")
    return ident


def _names(model: Any) -> tuple[str, ...]:
    return tuple(model.expression_names)


def _points_index(model: Any, spec: FittingSpec) -> torch.Tensor:
    """Input landmark indices that the model points of the result correspond to."""
    if isinstance(model, FaceModel):
        return torch.arange(topo.NUM_POINTS, device=spec.obs_index.device)
    return spec.obs_index


def _identity_gaze_model(model: Any, sol: _Solution, deposed_full: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(identity of the result, gaze [Tv, 4] radians of the valid frames)."""
    iris_centres = deposed_full[:, IRIS[:, 0]]
    mesh = model if isinstance(model, FaceModel) else load_face_model()
    if isinstance(model, FaceModel):
        mean = model.tensor("mean_shape", deposed_full.device)
        identity = mean.clone()
        identity[: topo.NUM_SURFACE_POINTS] += sol.offset
        # Irises at rest: the mean iris rings moved with the identity's eye corners.
        identity[IRIS] = mean[IRIS] + (model.iris_rest(identity) - model.iris_rest(mean))[:, None]
        return identity, model.gaze_from_iris(iris_centres, identity)
    # Other models: rest positions from the (median) model-frame eye corners of the landmarks themselves.
    corners = deposed_full[:, EYE_CORNERS].median(0).values  # [2 eyes, 2 corners, 3]
    ratio = (corners[:, 0] - corners[:, 1]).norm(dim=-1) / mesh.eye_width  # model units per cm, per eye
    rest = corners.mean(1) + mesh.tensor("iris_offset", corners.device) * ratio[:, None]
    return sol.id_coef, gaze_angles(iris_centres, rest, EYEBALL_RADIUS_CM * ratio)


def _model_points(model: Any, spec: FittingSpec, identity: torch.Tensor, expr: torch.Tensor,
                  gaze: torch.Tensor) -> torch.Tensor:
    """Model-frame points [T, P, 3] without residual (P = 478 for the mesh model, L otherwise)."""
    if isinstance(model, FaceModel):
        return model.shape(identity, expr, None, gaze)
    offset = (identity @ spec.id_basis).reshape(-1, 3) if spec.id_basis is not None else 0.0
    e = spec.fields.shape[0]
    return spec.mean + offset + (expr @ spec.fields.reshape(e, -1)).reshape(len(expr), -1, 3)

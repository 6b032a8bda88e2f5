"""The camera model and batched similarity alignment (torch, any device; numpy in, numpy out). Rotations and the
pose camera itself (``euler_to_matrix``, ``matrix_to_euler``, ``apply_pose``) live in ``thead.geometry.rotation``.

Frames. Image: x right, y down (pixels), z = depth (pixels, smaller = nearer the camera). Model: the same axes for a
frontal, upright face: X to the subject's left (image right), Y down (towards the chin), Z away from the camera
(into the head); units are centimetres (see ``tools/build_mean_face.py``).

Camera: scaled orthographic (weak perspective)::

    p = s * R(yaw, pitch, roll) @ X + (tx, ty, tz)     # p = (x_px, y_px, depth_px)

with ``R = Rz(roll) @ Ry(yaw) @ Rx(pitch)`` and the signs chosen so that, for a frontal face,
positive yaw turns the nose towards image +x (the subject's left), positive pitch tilts the nose up (image -y),
positive roll turns the face clockwise in the image (y down). ``tz`` (``depth_offset``) only shifts depth.
Pose vectors are ``[..., 6] = (yaw, pitch, roll [radians], tx, ty [pixels], s [pixels per model unit])``.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from thead.geometry.rotation import apply_pose, euler_to_matrix, matrix_to_euler


POSE_NAMES = ("yaw", "pitch", "roll", "tx", "ty", "scale")
POSE_UNITS = ("rad", "rad", "rad", "px", "px", "px/unit")


def as_tensor(x: Any, device: torch.device | str | None = None, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """numpy/torch/list to a torch tensor of ``dtype`` on ``device`` (no copy when already right)."""
    if isinstance(x, torch.Tensor):
        return x.to(device=device if device is not None else x.device, dtype=dtype)
    return torch.as_tensor(np.asarray(x), dtype=dtype, device=device)


def direction_to_angles(direction: torch.Tensor) -> torch.Tensor:
    """(yaw, pitch) radians [..., 2] of unit look directions [..., 3] (forward = (0, 0, -1) is (0, 0))."""
    d = direction / direction.norm(dim=-1, keepdim=True).clamp_min(1e-12)
    return torch.stack([torch.atan2(d[..., 0], -d[..., 2]), torch.asin((-d[..., 1]).clamp(-1.0, 1.0))], -1)


def project(vertices: Any, pose: Any, depth_offset: Any = None) -> Any:
    """Pixel positions of model points under the scaled-orthographic camera.

    vertices [B, N, 3] (or [N, 3]) model units; pose [B, 6] (or [6]) = (yaw, pitch, roll rad, tx, ty px, scale
    px/unit); depth_offset [B] px or None (depth then relative to the model origin). Returns [B, N, 3] (x, y px,
    depth px, smaller = nearer), as numpy when ``vertices`` is numpy.
    """
    is_numpy = not isinstance(vertices, torch.Tensor)
    v = as_tensor(vertices, dtype=torch.float32) if is_numpy else vertices
    p = as_tensor(pose, device=v.device, dtype=v.dtype)
    if v.dim() == 2:
        v = v[None]
    if p.dim() == 1:
        p = p[None]
    d = None if depth_offset is None else as_tensor(depth_offset, device=v.device, dtype=v.dtype).reshape(-1)
    out = apply_pose(v, p, d)
    return out.cpu().numpy() if is_numpy else out


def unproject(points: torch.Tensor, pose: torch.Tensor, depth_offset: torch.Tensor) -> torch.Tensor:
    """Model-frame points [B, N, 3] of posed points [B, N, 3] (inverse of ``apply_pose``)."""
    rot = euler_to_matrix(pose[..., :3])
    shift = torch.stack([pose[..., 3], pose[..., 4], depth_offset], -1)
    return (points - shift[..., None, :]) @ rot / pose[..., 5, None, None]


def similarity_align(src: torch.Tensor, dst: torch.Tensor, weights: torch.Tensor
                     ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Weighted least-squares similarity per batch item: dst ~ s * R @ src + t (Umeyama).

    src, dst [B, N, 3]; weights [B, N] (>= 0). Returns scale [B], rotation [B, 3, 3], translation [B, 3].
    """
    w = (weights / weights.sum(-1, keepdim=True).clamp_min(1e-12))[:, None, :]  # [B, 1, N]
    mean_src = (w @ src)[:, 0]
    mean_dst = (w @ dst)[:, 0]
    # Weighted second moments without centring copies of the point sets.
    cov = (dst.transpose(-1, -2) * w) @ src - mean_dst[:, :, None] * mean_src[:, None, :]  # [B, 3, 3]
    var = (w[:, 0] * (src * src).sum(-1)).sum(-1) - (mean_src * mean_src).sum(-1)
    u, sv, vh = torch.linalg.svd(cov.double())
    sign = torch.sign(torch.linalg.det(u @ vh))
    sign = torch.where(sign == 0, torch.ones_like(sign), sign)
    d = torch.ones_like(sv)
    d[:, 2] = sign
    rot = ((u * d[:, None, :]) @ vh).to(src.dtype)
    scale = ((sv * d).sum(-1) / var.double().clamp_min(1e-12)).to(src.dtype)
    return scale, rot, mean_dst - scale[:, None] * (rot @ mean_src[..., None])[..., 0]

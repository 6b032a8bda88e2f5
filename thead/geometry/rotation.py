"""3-D head rotations and the pose camera: Euler angles <-> matrices, fractional turns, posed points.

Frames. Image: x right, y down (pixels, continuous convention of ``thead.geometry.affine``), z = depth (pixels,
smaller = nearer the camera). Model: the same axes for a frontal, upright face: X to the subject's left (image
right), Y down (towards the chin), Z away from the camera (into the head).

Rotations: ``R = Rz(roll) @ Ry(yaw) @ Rx(pitch)`` with the signs chosen so that, for a frontal face, positive yaw
turns the nose towards image +x (the subject's left), positive pitch tilts the nose up (image -y), positive roll
turns the face clockwise in the image (y down). Angles are radians (degrees only at the CLI and on disk).

Camera: scaled orthographic (weak perspective)::

    p = s * R(yaw, pitch, roll) @ X + (tx, ty, tz)     # p = (x_px, y_px, depth_px)

with pose vectors ``[..., 6] = (yaw, pitch, roll [radians], tx, ty [pixels], s [pixels per model unit])``;
``tz`` (the depth offset) only shifts depth.

The functions take torch tensors (any device, autograd-friendly) and give tensors; the rotation conversions also
take numpy arrays and then give float64 numpy arrays.
"""

from __future__ import annotations

from typing import Any, overload

import numpy as np
import torch

__all__ = ["apply_pose", "euler_to_matrix", "matrix_to_euler", "rotation_power"]


def _euler_to_matrix(angles: torch.Tensor) -> torch.Tensor:
    yaw, pitch, roll = angles.unbind(-1)
    cy, sy = torch.cos(yaw), torch.sin(yaw)
    cp, sp = torch.cos(pitch), torch.sin(pitch)
    cr, sr = torch.cos(roll), torch.sin(roll)
    # M = Ry(yaw) @ Rx(pitch) (sign conventions in the module docstring), R = Rz(roll) @ M.
    m = torch.stack([
        torch.stack([cy, sy * sp, -sy * cp], -1),
        torch.stack([torch.zeros_like(cp), cp, sp], -1),
        torch.stack([sy, -cy * sp, cy * cp], -1),
    ], -2)
    zero, one = torch.zeros_like(cr), torch.ones_like(cr)
    rz = torch.stack([
        torch.stack([cr, -sr, zero], -1),
        torch.stack([sr, cr, zero], -1),
        torch.stack([zero, zero, one], -1),
    ], -2)
    return rz @ m


def _matrix_to_euler(rot: torch.Tensor) -> torch.Tensor:
    yaw = torch.asin(rot[..., 2, 0].clamp(-1.0, 1.0))
    pitch = torch.atan2(-rot[..., 2, 1], rot[..., 2, 2])
    roll = torch.atan2(rot[..., 1, 0], rot[..., 0, 0])
    return torch.stack([yaw, pitch, roll], -1)


@overload
def euler_to_matrix(angles: torch.Tensor) -> torch.Tensor: ...
@overload
def euler_to_matrix(angles: np.ndarray) -> np.ndarray: ...
def euler_to_matrix(angles: Any) -> Any:  # noqa: E302
    """Rotation matrices of (yaw, pitch, roll) angles.

    Parameters
    ----------
    angles : Tensor or array_like, shape (..., 3)
        (yaw, pitch, roll), radians.

    Returns
    -------
    Tensor or ndarray, shape (..., 3, 3)
        ``R = Rz(roll) @ Ry(yaw) @ Rx(pitch)`` (module docstring); a tensor for a tensor (its dtype and device),
        float64 numpy otherwise.
    """
    if isinstance(angles, torch.Tensor):
        return _euler_to_matrix(angles)
    return _euler_to_matrix(torch.as_tensor(np.asarray(angles, np.float64))).numpy()


@overload
def matrix_to_euler(rot: torch.Tensor) -> torch.Tensor: ...
@overload
def matrix_to_euler(rot: np.ndarray) -> np.ndarray: ...
def matrix_to_euler(rot: Any) -> Any:  # noqa: E302
    """(yaw, pitch, roll) of rotation matrices, the inverse of :func:`euler_to_matrix`.

    Parameters
    ----------
    rot : Tensor or array_like, shape (..., 3, 3)
        Proper rotations.

    Returns
    -------
    Tensor or ndarray, shape (..., 3)
        (yaw, pitch, roll) radians, yaw in [-pi/2, pi/2]; a tensor for a tensor, float64 numpy otherwise.
    """
    if isinstance(rot, torch.Tensor):
        return _matrix_to_euler(rot)
    return _matrix_to_euler(torch.as_tensor(np.asarray(rot, np.float64))).numpy()


def rotation_power(rot: np.ndarray, k: float) -> np.ndarray:
    """Fractional rotations ``rot^k``: the same axis, k times the angle.

    Parameters
    ----------
    rot : ndarray, shape (..., 3, 3)
        Proper rotations.
    k : float
        Angle factor (1 returns ``rot`` itself, 0 the identity, -1 the inverse).

    Returns
    -------
    ndarray, shape (..., 3, 3)
        float64 (``rot`` itself when k = 1).
    """
    if k == 1.0:
        return rot
    from scipy.spatial.transform import Rotation

    flat = np.asarray(rot, np.float64).reshape(-1, 3, 3)
    return Rotation.from_rotvec(Rotation.from_matrix(flat).as_rotvec() * k).as_matrix().reshape(np.shape(rot))


def apply_pose(points: torch.Tensor, pose: torch.Tensor, depth_offset: torch.Tensor | None = None) -> torch.Tensor:
    """Image positions of model points under a pose (the scaled-orthographic camera of the module docstring).

    Parameters
    ----------
    points : Tensor, shape (B, N, 3)
        Model-frame points, model units (cm for the face models).
    pose : Tensor, shape (B, 6)
        (yaw, pitch, roll rad, tx, ty px, s px per model unit).
    depth_offset : Tensor, shape (B,), or None
        tz, pixels; None puts the model origin at depth 0.

    Returns
    -------
    Tensor, shape (B, N, 3)
        (x px, y px, depth px; smaller depth = nearer the camera).
    """
    rot = _euler_to_matrix(pose[..., :3])
    out = pose[..., 5, None, None] * points @ rot.transpose(-1, -2)
    shift = torch.stack([pose[..., 3], pose[..., 4],
                         torch.zeros_like(pose[..., 3]) if depth_offset is None else depth_offset], -1)
    return out + shift[..., None, :]

"""Condition maps: thead's 3-D face rasterised as images the network reads (PNCC-style, as in HeadGAN/PECHead).

Channels (``COND_CHANNELS`` = 7), zero outside the mesh:
0-2: normalised coordinates: each vertex's position on the mean face scaled to [0, 1]^3 (the same code for every
     identity, so a pixel's code says which point of the face it shows);
3-5: the posed mesh's unit normals in crop space (x right, y down, z depth), in [-1, 1];
6:   coverage mask (1 on the mesh, eye and mouth openings filled).

The mean face is mirror-symmetric about x = 0 (its x extent is symmetric), so the map of a mesh mirrored left-right
(with its vertices relabelled by the face model's mirror table) is the map flipped left-right with channel 0
replaced by coverage - channel 0 and channel 3 negated: :func:`mirror_condition`.
"""

from __future__ import annotations

import functools

import numpy as np
import torch

from thead.render.mesh_topology import oriented_closed_mesh_triangles
from thead.render.rasterize import interpolate, rasterize

COND_CHANNELS = 7


@functools.lru_cache(maxsize=1)
def _codes_np() -> np.ndarray:
    """[478, 3] float32: the mean face's vertices scaled per axis to [0, 1]."""
    from thead.facemodel.model import load_face_model

    mean = np.asarray(load_face_model().mean_shape, np.float64)
    lo, hi = mean.min(0), mean.max(0)
    return ((mean - lo) / np.maximum(hi - lo, 1e-9)).astype(np.float32)


@functools.lru_cache(maxsize=1)
def _triangles_np() -> np.ndarray:
    return oriented_closed_mesh_triangles()


def vertex_normals(vertices: torch.Tensor, triangles: torch.Tensor) -> torch.Tensor:
    """Unit per-vertex normals [B, V, 3] of meshes ``vertices`` [B, V, 3] (area-weighted face normals).

    Vertices that no triangle uses get (0, 0, 0)."""
    v = vertices.float()
    a, b, c = v[:, triangles[:, 0]], v[:, triangles[:, 1]], v[:, triangles[:, 2]]
    face_n = torch.cross(b - a, c - a, dim=-1)  # [B, F, 3], length = 2 * area
    normals = torch.zeros_like(v)
    for k in range(3):
        normals.index_add_(1, triangles[:, k], face_n)
    return torch.nn.functional.normalize(normals, dim=-1, eps=1e-12)


@torch.no_grad()
def condition_maps(vertices: torch.Tensor, size: int, out_size: int) -> torch.Tensor:
    """Rasterise posed face meshes into condition maps.

    Parameters
    ----------
    vertices : torch.Tensor
        float [B, 478, 3]: crop pixels (x, y) and depth z (smaller = nearer, same units as x, y) of a crop of
        side ``size``.
    size : int
        Side of the crop the vertices are in, pixels.
    out_size : int
        Side of the maps, pixels (the vertices are scaled by ``out_size / size``).

    Returns
    -------
    torch.Tensor
        float [B, COND_CHANNELS, out_size, out_size] on ``vertices.device``: normalised coordinates (3), normals
        (3), coverage (1); zero outside the mesh.
    """
    if vertices.dim() != 3 or vertices.shape[-1] != 3:
        raise ValueError(f"vertices must be [B, V, 3], got {tuple(vertices.shape)}")
    device = vertices.device
    v = vertices.float() * (float(out_size) / float(size))
    tris = torch.as_tensor(_triangles_np(), device=device)
    codes = torch.as_tensor(_codes_np(), device=device)
    if codes.shape[0] != v.shape[1]:
        raise ValueError(f"vertices must have {codes.shape[0]} points, got {v.shape[1]}")
    normals = vertex_normals(v, tris)
    frags = rasterize(v, tris, out_size, out_size)
    attrs = torch.cat([codes.expand(v.shape[0], -1, -1), normals, torch.ones_like(v[..., :1])], dim=-1)
    maps = interpolate(frags, attrs)
    cover = (frags.tri_index >= 0).unsqueeze(1).to(maps.dtype)
    maps = maps * cover
    maps[:, 3:6] = torch.nn.functional.normalize(maps[:, 3:6], dim=1, eps=1e-12) * cover
    maps[:, 6:7] = cover
    return maps.contiguous()


def mirror_condition(maps: torch.Tensor) -> torch.Tensor:
    """The condition maps of the mirror images of the meshes that made ``maps``.

    Parameters
    ----------
    maps : torch.Tensor
        float [..., COND_CHANNELS, H, W] (:func:`condition_maps` of meshes in a crop of width W).

    Returns
    -------
    torch.Tensor
        float [..., COND_CHANNELS, H, W]: ``maps`` flipped left-right (pixel column j reads column W - 1 - j, the
        image mirrored about x = W / 2), the mean-face x code mirrored (c -> 1 - c on the mesh, 0 off it: the mean
        face spans [-X, X]) and the normals' x negated; equal, up to rasterisation ties at triangle edges, to the
        maps of the meshes mirrored about x = W / 2 with each vertex relabelled as its mirror partner.
    """
    out = maps.flip(-1).clone()
    cover = out[..., 6, :, :]
    out[..., 0, :, :] = cover - out[..., 0, :, :]
    out[..., 3, :, :] = -out[..., 3, :, :]
    return out


__all__ = ["COND_CHANNELS", "condition_maps", "mirror_condition", "vertex_normals"]

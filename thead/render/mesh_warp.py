"""Backward warps of a source image to target geometry: through the face mesh, as pixel flows and sampling grids.

Flows are *backward* and in pixels: ``flow[b, :, i, j]`` is the offset from the target pixel centre
``(j + 0.5, i + 0.5)`` to where that pixel is read from in the source. Grids are ``grid_sample`` grids
(``align_corners=False``, last dim (x, y) in [-1, 1]).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from thead.render.masks import inner_ramp
from thead.render.mesh_topology import boundary_distance_weights
from thead.render.rasterize import Fragments, as_triangles, interpolate, rasterize


def pixel_centres(height: int, width: int, device: torch.device | str | None = None,
                  dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """[2, H, W] (x, y) pixel-centre coordinates ``(j + 0.5, i + 0.5)``."""
    ys = torch.arange(height, device=device, dtype=dtype) + 0.5
    xs = torch.arange(width, device=device, dtype=dtype) + 0.5
    gy, gx = torch.meshgrid(ys, xs, indexing="ij")
    return torch.stack([gx, gy], dim=0)


@functools.lru_cache(maxsize=32)
def _centre_grid(height: int, width: int, src_h: int, src_w: int, origin: tuple[int, int], device: torch.device,
                 dtype: torch.dtype) -> torch.Tensor:
    """[1, H, W, 2] the grid of a zero flow: pixel centres (shifted by ``origin`` (x, y)) scaled into
    ``grid_sample``'s [-1, 1] of a source of (src_h, src_w) pixels (cached per size; never written to)."""
    scale = torch.tensor([2.0 / src_w, 2.0 / src_h], device=device, dtype=dtype).view(1, 2, 1, 1)
    pos = pixel_centres(height, width, device, dtype).unsqueeze(0)
    if origin != (0, 0):
        pos = pos + torch.tensor(origin, device=device, dtype=dtype).view(1, 2, 1, 1)
    return (pos * scale - 1.0).permute(0, 2, 3, 1).contiguous()


def flow_to_grid(flow: torch.Tensor, src_size: tuple[int, int] | None = None,
                 origin: tuple[int, int] = (0, 0)) -> torch.Tensor:
    """Backward flow [B, 2, H, W] (pixels) -> grid_sample grid [B, H, W, 2] into a source of ``src_size`` (H, W).

    ``src_size`` defaults to the flow's own size (source and target frames of one size). ``origin`` (x, y): the
    target pixel of the flow's top-left pixel, for a flow over a window of a larger target frame.
    """
    B, _, H, W = flow.shape
    hs, ws = (H, W) if src_size is None else src_size
    base = _centre_grid(H, W, int(hs), int(ws), (int(origin[0]), int(origin[1])), flow.device, flow.dtype)
    scale = torch.tensor([2.0 / ws, 2.0 / hs], device=flow.device, dtype=flow.dtype)
    return torch.addcmul(base, flow.permute(0, 2, 3, 1), scale)


def grid_to_flow(grid: torch.Tensor, src_size: tuple[int, int] | None = None) -> torch.Tensor:
    """Inverse of :func:`flow_to_grid`: grid [B, H, W, 2] -> backward flow [B, 2, H, W] in pixels."""
    B, H, W, _ = grid.shape
    hs, ws = (H, W) if src_size is None else src_size
    scale = torch.tensor([ws / 2.0, hs / 2.0], device=grid.device, dtype=grid.dtype).view(1, 2, 1, 1)
    pos = (grid.permute(0, 3, 1, 2) + 1.0) * scale
    return pos - pixel_centres(H, W, grid.device, grid.dtype).unsqueeze(0)


def warp_image(src: torch.Tensor, grid: torch.Tensor, padding_mode: str = "border") -> torch.Tensor:
    """Sample ``src`` [B, C, Hs, Ws] at ``grid`` [B, H, W, 2] (bilinear, align_corners=False) -> [B, C, H, W].

    A source batch of 1 is broadcast over the grid's batch.
    """
    if src.shape[0] == 1 and grid.shape[0] > 1:
        src = src.expand(grid.shape[0], -1, -1, -1)
    return F.grid_sample(src, grid.to(src.dtype), mode="bilinear", padding_mode=padding_mode, align_corners=False)


def sample_points(image: torch.Tensor, points: torch.Tensor) -> torch.Tensor:
    """``image`` [B, C, H, W] read bilinearly (border-clamped) at ``points`` [B, ..., 2] (pixels, centres at
    i + 0.5) -> [B, ..., C]."""
    H, W = image.shape[-2:]
    B = points.shape[0]
    scale = torch.tensor([2.0 / W, 2.0 / H], device=points.device, dtype=image.dtype)
    grid = points.to(image.dtype).reshape(B, 1, -1, 2) * scale - 1.0
    out = F.grid_sample(image, grid, mode="bilinear", padding_mode="border", align_corners=False)
    return out[:, :, 0].transpose(1, 2).reshape(*points.shape[:-1], image.shape[1])


@dataclass
class MeshWarp:
    """Backward maps from the target frame into the source image, through the mesh.

    grid: [B, H, W, 2] grid_sample grid (background pixels read the same pixel coordinates of the source).
    mask: [B, 1, H, W] 1 where the target mesh covers the pixel.
    flow: [B, 2, H, W] backward flow in pixels (0 on background).
    feather: [B, 1, H, W] in [0, 1]: 0 on and outside the mesh's open boundary, rising to 1 a few triangle rings
        inside (a per-vertex weight interpolated over the mesh, so it is continuous), and also ~0 on any edge of
        the covered region (silhouettes of a folded mesh).
    fragments: the rasterised target mesh.
    attributes: [B, C, H, W] the caller's extra per-vertex attributes interpolated over the target mesh, or None.
    """

    grid: torch.Tensor
    mask: torch.Tensor
    flow: torch.Tensor
    feather: torch.Tensor
    fragments: Fragments
    attributes: torch.Tensor | None = None


def mesh_warp_maps(
    src_vertices: torch.Tensor,
    dst_vertices: torch.Tensor,
    triangles: torch.Tensor | np.ndarray,
    height: int,
    width: int,
    src_size: tuple[int, int] | None = None,
    feather_rings: int = 3,
    vertex_attributes: torch.Tensor | None = None,
    origin: tuple[int, int] = (0, 0),
) -> MeshWarp:
    """Backward sampling maps that move the source mesh onto the target mesh.

    src_vertices: [B or 1, V, 2 or 3] source positions in source pixels (z ignored).
    dst_vertices: [B, V, 3] target positions in target pixels, with depth (smaller = nearer) for occlusion.
    triangles: [F, 3]; e.g. ``closed_mesh_triangles()`` (no eye/mouth holes) or ``mesh_triangles()``.
    height, width: target frame size; ``src_size`` (H, W) of the source image, default the same.
    vertex_attributes: optional [B, V, C] more per-vertex values to interpolate in the same pass.
    origin: (x, y) target pixel of the maps' top-left pixel: the maps cover the height x width window there of a
    larger target frame (dst_vertices stay in that frame's pixels; flows stay offsets from its pixel centres).
    Returns :class:`MeshWarp`; sample with ``warp_image(src, maps.grid)``.
    """
    B = dst_vertices.shape[0]
    tris = as_triangles(triangles, dst_vertices.device)
    ox, oy = int(origin[0]), int(origin[1])
    if ox or oy:
        dst_vertices = dst_vertices - torch.tensor([ox, oy, 0], device=dst_vertices.device, dtype=dst_vertices.dtype)
    frags = rasterize(dst_vertices, tris, height, width)
    src_xy = src_vertices[..., :2].to(dst_vertices.dtype)
    if src_xy.shape[0] == 1 and B > 1:
        src_xy = src_xy.expand(B, -1, -1)
    weights = torch.as_tensor(
        boundary_distance_weights(tris.cpu().numpy(), feather_rings, dst_vertices.shape[1]),
        device=dst_vertices.device, dtype=dst_vertices.dtype)
    parts = [src_xy, weights.view(1, -1, 1).expand(B, -1, 1)]
    if vertex_attributes is not None:
        parts.append(vertex_attributes.to(dst_vertices.dtype).expand(B, -1, -1))
    sampled = interpolate(frags, torch.cat(parts, dim=2))  # [B, 3 + C, H, W]
    mask = frags.mask.to(dst_vertices.dtype)
    centres = pixel_centres(height, width, dst_vertices.device, dst_vertices.dtype)
    if ox or oy:
        centres = centres + torch.tensor([ox, oy], device=centres.device, dtype=centres.dtype).view(2, 1, 1)
    flow = (sampled[:, :2] - centres) * mask
    grid = flow_to_grid(flow, src_size, (ox, oy))
    extra = sampled[:, 3:] if vertex_attributes is not None else None
    # The per-vertex weight is 0 on the mesh's open boundary; where the target mesh folds (a turned head's
    # silhouette) the visible edge is an inner edge, so also ramp down at the mask's edge in image space.
    feather = torch.minimum(sampled[:, 2:3], inner_ramp(mask)) * mask
    return MeshWarp(grid=grid, mask=mask, flow=flow, feather=feather, fragments=frags, attributes=extra)

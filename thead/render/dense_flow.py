"""Smooth dense backward flow for everything the face mesh does not cover: the rest of the head, hair, ears, neck
and background.

The sparse backward displacements at the target mesh vertices (``src - dst``, pixels) are spread over the frame
by normalised inverse-distance (Shepard) weighting ``w = 1 / (d^2 + s^2)^2`` on a coarse grid, multiplied by a
falloff that is 1 near the face and 0 beyond ``falloff * face size`` from the nearest vertex, then bilinearly
upsampled and tapered to exactly 0 at the image border. Far from the face the background stands still.
"""

from __future__ import annotations

import numpy as np
import torch

from thead.face.topology import NUM_SURFACE_POINTS
from thead.render.mesh_topology import dense_flow_points


# Elements of one block of the Shepard weights (frames x grid cells x points): 16 MB of float32 at most, so a big
# CUDA batch needs no [B, G, N] array at once (on the CPU the block size hardly matters: 4 MB to 64 MB within 10 %).
_SHEPARD_BLOCK = 1 << 22


def smoothstep(t: torch.Tensor) -> torch.Tensor:
    """C1 ramp: 0 for t <= 0, 1 for t >= 1, ``3t^2 - 2t^3`` between."""
    t = t.clamp(0.0, 1.0)
    return t * t * (3.0 - 2.0 * t)


def interp1d(xq: torch.Tensor, xp: torch.Tensor, fp: torch.Tensor) -> torch.Tensor:
    """Batched piecewise-linear interpolation.

    Parameters
    ----------
    xq : torch.Tensor
        [B, N] query positions.
    xp : torch.Tensor
        [B, K] sorted knots (K >= 2).
    fp : torch.Tensor
        [B, K] values at the knots.

    Returns
    -------
    torch.Tensor
        [B, N] values at ``xq``; beyond the end knots, the end values.
    """
    K = xp.shape[1]
    i = torch.searchsorted(xp, xq.contiguous()).clamp(1, K - 1)
    x0, x1 = xp.gather(1, i - 1), xp.gather(1, i)
    f0, f1 = fp.gather(1, i - 1), fp.gather(1, i)
    t = ((xq - x0) / (x1 - x0).clamp(min=1e-6)).clamp(0.0, 1.0)
    return f0 + t * (f1 - f0)


def flow_motion(flow: torch.Tensor) -> torch.Tensor:
    """[B, 1, H, W] ``smoothstep(|flow|)`` of a flow [B, 2, H, W] in pixels: 0 where nothing moved, 1 where a pixel
    moved by a pixel or more (the length from the squared components, cheaper than ``norm`` on CPU)."""
    fx, fy = flow[:, :1], flow[:, 1:2]
    return smoothstep(torch.addcmul(fx * fx, fy, fy).clamp_(max=1.0).sqrt_())


def face_size(vertices: torch.Tensor) -> torch.Tensor:
    """[B] face size in pixels: the larger side of the (x, y) bounding box of ``vertices`` [B, V, >=2]."""
    xy = vertices[..., :2]
    ext = xy.amax(dim=1) - xy.amin(dim=1)
    return ext.amax(dim=1).clamp(min=1.0)


def border_taper(height: int, width: int, margin_px: float, device: torch.device | str | None = None,
                 dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """[1, 1, H, W] weight that is 0 on the outermost pixel centres and rises smoothly to 1 ``margin_px`` inside."""
    ys = torch.arange(height, device=device, dtype=dtype) + 0.5
    xs = torch.arange(width, device=device, dtype=dtype) + 0.5
    dy = torch.minimum(ys, height - ys) - 0.5
    dx = torch.minimum(xs, width - xs) - 0.5
    dist = torch.minimum(dy.view(-1, 1), dx.view(1, -1))
    return smoothstep(dist / max(float(margin_px), 1e-6)).view(1, 1, height, width)


def dense_backward_flow(
    src_vertices: torch.Tensor,
    dst_vertices: torch.Tensor,
    height: int,
    width: int,
    points: np.ndarray | torch.Tensor | None = None,
    falloff: float = 0.8,
    core: float = 0.08,
    border: float = 0.05,
    softness: float = 0.06,
    coarse: int = 48,
    window: tuple[int, int, int, int] | None = None,
) -> torch.Tensor:
    """Dense backward flow [B, 2, H, W] in pixels from displacements at mesh vertices.

    src_vertices: [B or 1, V, >=2] source positions (pixels); dst_vertices: [B, V, >=2] target positions.
    points: vertex ids to use (default ``dense_flow_points()``: the face oval, two rings inside it and a sparse
        set of interior surface points; iris points move on their own).
    falloff: flow reaches 0 at this distance from the nearest vertex, in units of the target face size.
    core: within this distance (face sizes) of a vertex the falloff is exactly 1.
    border: taper width at the image border as a fraction of min(H, W); the border pixels have flow 0.
    softness: Shepard regulariser ``s`` in face sizes (larger = smoother, less exact at the vertices).
    coarse: the flow is computed on a grid whose longer side has this many cells, then upsampled.
    window: (top, left, h, w): return only that window [B, 2, h, w] of the H x W flow (the same values).
    """
    B = dst_vertices.shape[0]
    device, dtype = dst_vertices.device, torch.float32
    if points is None:
        points = dense_flow_points() if dst_vertices.shape[1] >= NUM_SURFACE_POINTS else np.arange(
            dst_vertices.shape[1])
    idx = torch.as_tensor(np.asarray(points), device=device, dtype=torch.long)
    dst = dst_vertices[:, idx, :2].to(dtype)  # [B, N, 2]
    src = src_vertices[:, idx, :2].to(dtype)
    disp = src - dst  # backward displacement at each target vertex
    size = face_size(dst)  # [B]

    gh = max(2, int(round(coarse * height / max(height, width))))
    gw = max(2, int(round(coarse * width / max(height, width))))
    ys = (torch.arange(gh, device=device, dtype=dtype) + 0.5) * (height / gh)
    xs = (torch.arange(gw, device=device, dtype=dtype) + 0.5) * (width / gw)
    gy, gx = torch.meshgrid(ys, xs, indexing="ij")
    g = torch.stack([gx.reshape(-1), gy.reshape(-1)], dim=1)  # [G, 2]

    # Shepard weights w = 1 / (d^2 + s^2)^2 over [B, G, N] (grid cells x points), a block of frames at a time:
    # d^2 + s^2 = |g|^2 + |p|^2 + s^2 - 2 g.p comes out of ONE matrix product of augmented rows
    # [gx, gy, |g|^2, 1] . [-2px, -2py, 1, |p|^2 + s^2] (no broadcast sum, no copy: half the time of forming it
    # from its terms), its minimum over the points gives the nearest vertex, and one more product the weighted
    # sums and the weights' total.
    s2 = (softness * size).pow(2)  # [B]
    g_rows = torch.cat([g, g.pow(2).sum(1, keepdim=True), torch.ones_like(g[:, :1])], 1)  # [G, 4]
    p_rows = torch.cat([-2.0 * dst, torch.ones_like(dst[..., :1]),
                        dst.pow(2).sum(2, keepdim=True) + s2.view(B, 1, 1)], 2)  # [B, N, 4]
    values = torch.cat([disp, torch.ones_like(disp[..., :1])], 2)  # [B, N, 3]
    sums = torch.empty(B, g.shape[0], 3, device=device, dtype=dtype)
    d_min = torch.empty(B, g.shape[0], device=device, dtype=dtype)
    chunk = max(1, _SHEPARD_BLOCK // max(1, g.shape[0] * dst.shape[1]))
    for b0 in range(0, B, chunk):
        b1 = min(B, b0 + chunk)
        q = torch.matmul(g_rows, p_rows[b0:b1].transpose(1, 2))  # [b, G, N] = d^2 + s^2
        q = torch.maximum(q, s2[b0:b1].view(-1, 1, 1), out=q)  # d^2 >= 0 (rounding)
        torch.amin(q, dim=2, out=d_min[b0:b1])
        torch.bmm(q.pow_(-2), values[b0:b1], out=sums[b0:b1])
    d_min = (d_min - s2.view(B, 1)).clamp_(min=0.0).sqrt_()  # [B, G]
    flow = sums[..., :2] / sums[..., 2:]  # [B, G, 2]
    r0 = (core * size).view(B, 1)
    r1 = (falloff * size).view(B, 1).clamp(min=r0 + 1e-3)
    fade = smoothstep((r1 - d_min) / (r1 - r0))
    flow = (flow * fade.unsqueeze(2)).transpose(1, 2).reshape(B, 2, gh, gw)
    top, left, h, w = (0, 0, height, width) if window is None else window
    # Bilinear upsampling (``F.interpolate(..., align_corners=False)``'s sample positions) of the window only, as
    # two small matrix products.
    rows = upsampling_matrix(gh, height, top, h, device, dtype)  # [h, gh]
    cols = upsampling_matrix(gw, width, left, w, device, dtype)  # [w, gw]
    flow = torch.matmul(torch.matmul(rows, flow), cols.t())
    taper = border_taper(height, width, border * min(height, width), device, dtype)[..., top:top + h, left:left + w]
    return (flow * taper).to(dst_vertices.dtype)


def upsampling_matrix(cells: int, size: int, start: int, count: int, device: torch.device | str | None = None,
                      dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """[count, cells]: rows ``start .. start + count - 1`` of the bilinear resampling of ``cells`` samples to
    ``size`` (the weights ``F.interpolate(mode="bilinear", align_corners=False)`` uses along one axis)."""
    pos = ((torch.arange(start, start + count, device=device, dtype=torch.float64) + 0.5) * (cells / size)
           - 0.5).clamp(min=0.0)
    lo = pos.floor().long().clamp(max=cells - 1)
    hi = (lo + 1).clamp(max=cells - 1)
    frac = pos - lo.to(torch.float64)
    matrix = torch.zeros(count, cells, device=device, dtype=torch.float64)
    matrix.scatter_add_(1, lo.view(-1, 1), (1.0 - frac).view(-1, 1))
    matrix.scatter_add_(1, hi.view(-1, 1), frac.view(-1, 1))
    return matrix.to(dtype)


def blend_flows(mesh_flow: torch.Tensor, mesh_weight: torch.Tensor, dense_flow: torch.Tensor) -> torch.Tensor:
    """``w * mesh + (1 - w) * dense`` for flows [B, 2, H, W] and a feathered mesh weight [B, 1, H, W].

    With the weight 0 on the mesh's open boundary (``MeshWarp.feather``) the result is continuous.
    """
    return torch.lerp(dense_flow, mesh_flow, mesh_weight)

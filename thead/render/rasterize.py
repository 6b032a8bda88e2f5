"""Vectorised z-buffered triangle rasteriser in torch (CPU or CUDA), batched, no per-triangle loops.

Pixel convention (used by all of ``thead.render``): continuous pixel coordinates, pixel (row i, column j) covers
``[j, j+1) x [i, i+1)`` and its centre is ``(j + 0.5, i + 0.5)``; this is MediaPipe's ``x * W, y * H`` and
``grid_sample(align_corners=False)``'s convention. Depth: smaller z is nearer the camera.

How it works: every triangle's bounding box is enumerated exactly (``repeat_interleave`` over per-triangle pixel
counts, so no padding to the largest box), barycentrics come from per-triangle affine edge functions, inside pixels
are kept, and the nearest triangle per pixel wins a ``scatter_reduce(amin)`` on an int64 key that packs quantised
depth (high bits) above the triangle id (low bits).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch


@dataclass
class Fragments:
    """What the rasteriser found at every pixel.

    tri_index: [B, H, W] long, triangle id into ``triangles`` (-1 = background).
    depth: [B, H, W] float, interpolated vertex z (``+inf`` on background).
    triangles: [F, 3] long, the triangles that were rasterised (kept for :func:`interpolate`).
    covered: [P] long flat indices (into B*H*W) of the covered pixels, or None (then derived from tri_index).
    covered_bary: [P, 3] float, the screen-space barycentrics of the covered pixels' centres (with ``covered``),
    or None (zeros; a ``depth_only`` raster).
    bary: [B, H, W, 3] float, the barycentrics at every pixel (0 on background), made from ``covered_bary`` when
    first read.
    """

    tri_index: torch.Tensor
    depth: torch.Tensor
    triangles: torch.Tensor
    covered: torch.Tensor | None = None
    covered_bary: torch.Tensor | None = None
    _bary: torch.Tensor | None = field(default=None, init=False, repr=False)

    @property
    def bary(self) -> torch.Tensor:
        """[B, H, W, 3]: barycentrics of every pixel centre (0 on background)."""
        if self._bary is None:
            self._bary = torch.zeros((*self.tri_index.shape, 3), dtype=self.depth.dtype, device=self.depth.device)
            if self.covered is not None and self.covered_bary is not None:
                self._bary.view(-1, 3)[self.covered] = self.covered_bary
        return self._bary

    @property
    def mask(self) -> torch.Tensor:
        """[B, 1, H, W] float, 1 where a triangle covers the pixel centre."""
        return (self.tri_index >= 0).unsqueeze(1).to(self.depth.dtype)


def as_triangles(triangles: torch.Tensor | np.ndarray, device: torch.device | str | None = None) -> torch.Tensor:
    """Triangles [F, 3] as a long tensor on ``device``."""
    if isinstance(triangles, torch.Tensor):
        return triangles.to(device=device, dtype=torch.long)
    return torch.as_tensor(np.asarray(triangles, dtype=np.int64), device=device)


def _edge_coefficients(tri_xyz: torch.Tensor, cull_backfaces: bool):
    """Per-triangle affine functions of pixel position.

    tri_xyz: [N, 3, 3] (vertex, xyz) in float64. Returns (coef [N, 9]: w0, w1, z as ``a*x + b*y + c``, valid [N]).
    """
    x0, y0, z0 = tri_xyz[:, 0].unbind(-1)
    x1, y1, z1 = tri_xyz[:, 1].unbind(-1)
    x2, y2, z2 = tri_xyz[:, 2].unbind(-1)
    area2 = (x1 - x0) * (y2 - y0) - (x2 - x0) * (y1 - y0)  # > 0 for CCW in image coordinates (y down)
    finite = torch.isfinite(tri_xyz).flatten(1).all(dim=1)
    valid = finite & (area2.abs() > 1e-9)
    if cull_backfaces:
        valid &= area2 > 0
    inv = torch.where(valid, 1.0 / torch.where(valid, area2, torch.ones_like(area2)), torch.zeros_like(area2))
    a0, b0, c0 = (y1 - y2) * inv, (x2 - x1) * inv, (x1 * y2 - x2 * y1) * inv
    a1, b1, c1 = (y2 - y0) * inv, (x0 - x2) * inv, (x2 * y0 - x0 * y2) * inv
    a2, b2, c2 = -a0 - a1, -b0 - b1, 1.0 - c0 - c1
    az = a0 * z0 + a1 * z1 + a2 * z2
    bz = b0 * z0 + b1 * z1 + b2 * z2
    cz = c0 * z0 + c1 * z1 + c2 * z2
    coef = torch.stack([a0, b0, c0, a1, b1, c1, az, bz, cz], dim=1)
    return torch.nan_to_num(coef), valid


@torch.no_grad()
def rasterize(
    vertices: torch.Tensor,
    triangles: torch.Tensor | np.ndarray,
    height: int,
    width: int,
    cull_backfaces: bool = False,
    depth_only: bool = False,
) -> Fragments:
    """Rasterise triangle meshes with a z-buffer.

    vertices: [B, V, 3] float, (x, y) in pixels (see module docstring) and depth z (smaller = nearer).
    triangles: [F, 3] vertex indices. Degenerate, non-finite and off-screen triangles are skipped.
    cull_backfaces: drop clockwise (in image coordinates) triangles; off by default so folds resolve by depth.
    depth_only: fill only ``depth`` and ``tri_index`` (``bary`` stays 0): a z-buffer test needs no more.
    Returns :class:`Fragments` of size [B, height, width]; a pixel is covered when its centre lies inside a
    triangle (edges inclusive; shared edges go to the nearer or, at equal depth, the lower-id triangle).
    """
    if vertices.dim() != 3 or vertices.shape[-1] != 3:
        raise ValueError(f"vertices must be [B, V, 3], got {tuple(vertices.shape)}")
    device = vertices.device
    out_dtype = vertices.dtype if vertices.dtype.is_floating_point else torch.float32
    tris = as_triangles(triangles, device)
    B, F = vertices.shape[0], tris.shape[0]
    H, W = int(height), int(width)
    tri_index = torch.full((B, H, W), -1, dtype=torch.long, device=device)
    depth = torch.full((B, H, W), float("inf"), dtype=out_dtype, device=device)
    if B == 0 or F == 0 or H == 0 or W == 0:
        return Fragments(tri_index, depth, tris)

    # Per-triangle set-up in float64 (B*F rows only: cheap, and exact enough for any image size).
    tri_xyz = vertices.double()[:, tris].reshape(B * F, 3, 3)
    coef64, valid = _edge_coefficients(tri_xyz, cull_backfaces)
    lo = tri_xyz[..., :2].amin(dim=1)
    hi = tri_xyz[..., :2].amax(dim=1)
    # Pixels whose centre c + 0.5 lies in [lo, hi]: c in [ceil(lo - 0.5), floor(hi - 0.5)], clipped to the image.
    big = float(max(H, W) + 2)
    cmin = torch.ceil((lo - 0.5).clamp(-1.0, big)).long()
    cmax = torch.floor((hi - 0.5).clamp(-2.0, big)).long()
    cmin[:, 0].clamp_(min=0)
    cmin[:, 1].clamp_(min=0)
    cmax[:, 0].clamp_(max=W - 1)
    cmax[:, 1].clamp_(max=H - 1)
    ext = (cmax - cmin + 1).clamp(min=0)
    ext = torch.where(valid.unsqueeze(1), ext, torch.zeros_like(ext))
    counts = ext[:, 0] * ext[:, 1]

    # Depth is quantised over the whole batch to ``depth_levels`` steps (exact in float32); ties go to the lower id.
    z_all = vertices[..., 2][torch.isfinite(vertices[..., 2])]
    zmin = float(z_all.min()) if z_all.numel() else 0.0
    zmax = float(z_all.max()) if z_all.numel() else 1.0
    id_bits = max(1, int(F).bit_length())
    depth_levels = float(2**23)
    zscale = depth_levels / max(zmax - zmin, 1e-12)

    live = torch.nonzero(counts > 0).squeeze(1)
    if live.numel() == 0:
        return Fragments(tri_index, depth, tris)
    # Affine functions re-based at each live triangle's bbox corner pixel centre, depth pre-scaled to levels.
    ox = cmin[live, 0].double() + 0.5
    oy = cmin[live, 1].double() + 0.5
    c = coef64[live]
    local = torch.stack(
        [c[:, 0], c[:, 1], c[:, 0] * ox + c[:, 1] * oy + c[:, 2],
         c[:, 3], c[:, 4], c[:, 3] * ox + c[:, 4] * oy + c[:, 5],
         c[:, 6] * zscale, c[:, 7] * zscale, (c[:, 6] * ox + c[:, 7] * oy + c[:, 8] - zmin) * zscale],
        dim=1).float()
    ext_live = ext[live]
    corner = (live // F) * (H * W) + cmin[live, 1] * W + cmin[live, 0]
    tid_live = live % F

    # Bucket triangles by bbox size rounded up to powers of two; each bucket is one broadcast [T, ky, kx] grid,
    # so the per-pixel work is elementwise only (no gathers), at most 4x padding.
    size_class = torch.ceil(torch.log2(ext_live.float())).long()  # [L, 2]
    bucket = size_class[:, 0] * 64 + size_class[:, 1]
    bucket_sorted, order = torch.sort(bucket)
    uniq, bucket_counts = torch.unique_consecutive(bucket_sorted, return_counts=True)
    empty = torch.iinfo(torch.long).max
    n_pix = B * H * W
    zbuf = torch.full((n_pix,), empty, dtype=torch.long, device=device)
    eps = 1e-5
    start = 0
    for code, count in zip(uniq.tolist(), bucket_counts.tolist()):
        idx = order[start:start + count]
        start += count
        kx, ky = 2 ** (code // 64), 2 ** (code % 64)
        lc = local.index_select(0, idx).t().reshape(9, count, 1, 1)
        e = ext_live.index_select(0, idx)
        dx = torch.arange(kx, device=device, dtype=torch.float32).view(1, 1, kx)
        dy = torch.arange(ky, device=device, dtype=torch.float32).view(1, ky, 1)
        w0 = lc[2] + lc[0] * dx + lc[1] * dy
        w1 = lc[5] + lc[3] * dx + lc[4] * dy
        ok = (w0 >= -eps) & (w1 >= -eps) & ((w0 + w1) <= 1.0 + eps)
        if kx > 1:
            ok &= dx < e[:, 0].view(-1, 1, 1)
        if ky > 1:
            ok &= dy < e[:, 1].view(-1, 1, 1)
        zq = (lc[8] + lc[6] * dx + lc[7] * dy).clamp_(0.0, depth_levels).long()
        key = (zq << id_bits) | tid_live.index_select(0, idx).view(-1, 1, 1)
        key = torch.where(ok, key, torch.full_like(key, empty))
        pix = corner.index_select(0, idx).view(-1, 1, 1) + (dy.long() * W + dx.long())
        zbuf.scatter_reduce_(0, pix.reshape(-1).clamp_(max=n_pix - 1), key.reshape(-1), reduce="amin")

    # Resolve: recompute barycentrics and depth of the winner at every covered pixel centre.
    covered = torch.nonzero(zbuf != empty).squeeze(1)
    tid = zbuf[covered] & ((1 << id_bits) - 1)
    b_cov = torch.div(covered, H * W, rounding_mode="floor")
    rem = covered - b_cov * (H * W)
    py = torch.div(rem, W, rounding_mode="floor")
    px = rem - py * W
    rows = coef64[:, 6:] if depth_only else coef64
    cw = rows.t().contiguous().index_select(1, b_cov * F + tid)  # [9 (or 3 for depth only), P]
    xc = px.double() + 0.5
    yc = py.double() + 0.5
    vz = cw[-3] * xc + cw[-2] * yc + cw[-1]
    tri_index.view(-1)[covered] = tid
    covered_bary = None
    if not depth_only:
        v0 = cw[0] * xc + cw[1] * yc + cw[2]
        v1 = cw[3] * xc + cw[4] * yc + cw[5]
        covered_bary = torch.stack([v0, v1, 1.0 - v0 - v1], dim=1).to(out_dtype)
    depth.view(-1)[covered] = vz.to(out_dtype)
    return Fragments(tri_index, depth, tris, covered, covered_bary)


def interpolate(fragments: Fragments, vertex_attributes: torch.Tensor) -> torch.Tensor:
    """Interpolate per-vertex attributes [B, V, C] at every pixel with the fragments' barycentrics.

    Returns [B, C, H, W]; background pixels are 0. Work is done on covered pixels only.
    """
    B, H, W = fragments.tri_index.shape
    V, C = vertex_attributes.shape[-2:]
    attrs = vertex_attributes.expand(B, V, C).reshape(B * V, C)
    pix = fragments.covered
    if pix is None:
        pix = torch.nonzero(fragments.tri_index.reshape(-1) >= 0).squeeze(1)
    tid = fragments.tri_index.reshape(-1).index_select(0, pix)
    b = torch.div(pix, H * W, rounding_mode="floor")
    rows = fragments.triangles.index_select(0, tid) + (b * V).unsqueeze(1)  # [P, 3] rows of attrs
    if fragments.covered is not None and fragments.covered_bary is not None:
        w = fragments.covered_bary.to(attrs.dtype)  # [P, 3], in the order of ``covered``
    else:
        w = fragments.bary.reshape(-1, 3).index_select(0, pix).to(attrs.dtype)  # [P, 3]
    vals = attrs.index_select(0, rows.reshape(-1)).view(-1, 3, C)
    cov = torch.addcmul(torch.addcmul(vals[:, 0] * w[:, 0:1], vals[:, 1], w[:, 1:2]), vals[:, 2], w[:, 2:3])
    out = torch.zeros(C, B * H * W, device=attrs.device, dtype=attrs.dtype)
    out.index_copy_(1, pix, cov.t())
    return out.view(C, B, H, W).permute(1, 0, 2, 3).contiguous()

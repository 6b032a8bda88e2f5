"""Symmetry fill: where the target shows a part of the head the source hid or saw edge-on (a cheek turned away),
the render uses the mirror image of the source, which saw that side squarely.

The mirror image is the source flipped left-right about the face's centre column with its landmarks relabelled
by the mirror map (:func:`mirrored_source`): a second, valid source of the same person with the head turned the
other way. How much each target vertex needs it is decided from how squarely the source and the target see the
surface there (:func:`mirror_weights`); the blend is one smooth ramp per frame across the face's midline towards
the side that needs it (:func:`fill_weight_map`), so the ear, hair and jaw line of that side come along too and
the seam sits on the nose.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from thead.face.topology import FACE_OVAL, NUM_SURFACE_POINTS, mesh_edges, mesh_triangles
from thead.render.dense_flow import smoothstep
from thead.render.masks import blur3, erode, fill_holes
from thead.render.mesh_topology import closed_mesh_triangles, oriented_mesh_triangles
from thead.render.mesh_warp import pixel_centres
from thead.render.rasterize import as_triangles, interpolate, rasterize

# A vertex is filled from its mirror partner when the source's view of it is at most this fraction of the
# target's (texture stretched by the inverse of that), fading in over the second number.
STRETCH_LIMIT = (0.75, 0.3)
# ... and shows it squarely enough: a fill reaches full strength when the target's cosine exceeds the source's by
# REVEAL (a part hidden from both gets none).
REVEAL = 0.2
# ... and only where the partner was seen this much more squarely than the vertex itself (cosine difference).
MIRROR_GAIN = (0.05, 0.2)
# The share of the mirrored render is profiled across the face: bins out to this distance from the midline (eye
# corner distances), this many of them.
PROFILE_BINS = (1.0, 8)
PROFILE_RAMP = (0.15, 0.45)
# Beyond the face surface the source's render and its mirror image's do not line up: the mirror image's ear,
# earring, hair and background lie where the flipped other side puts them, beside the source's own. There a pixel on
# the filled side takes the frame's largest share whole (ramped in across the midline over OUTER_RAMP eye-corner
# distances, so the chin does not switch sides at the midline), and the change-over from the profile's share to it
# lies FACE_INSET of the face's width inside the face's outline, where both renders put the same surface at the
# same place: no cross-fade of two copies of an ear or an earring a few pixels apart. The inset face is rasterised
# on a grid FACE_INTERIOR_STEP times coarser than the image.
OUTER_RAMP = (0.35, 0.65)
FACE_INSET = 0.08
FACE_INTERIOR_STEP = 4
# ... from the eyes' level down, where the ear lobes, earrings and jaw are (along the midline from the nose bridge,
# eye-corner distances, fading in between): at the temples and above, where the face's outline is the hairline, the
# profile alone decides (a change-over just inside the temple showed as a light strip in a child's hair).
OUTER_FROM = (0.0, 0.25)
MIDLINE_TOP, MIDLINE_BOTTOM = 168, 152  # nose bridge, chin
EYE_CORNERS = (263, 33)  # outer corners, subject's left then right
# Relighting the mirror image: the face's colour is blurred over this fraction of its width, gains are measured
# where the source saw a vertex and its partner with at least this visibility, and limited to this range.
RELIGHT_BLUR = 0.12
RELIGHT_MIN_SEEN = 0.35
RELIGHT_RANGE = (0.7, 1.4)
# Depth tolerance of the source's self-occlusion test, as a fraction of the face's width.
OCCLUSION_TOLERANCE = 0.03


def vertex_normals(vertices: torch.Tensor, triangles: torch.Tensor | np.ndarray | None = None) -> torch.Tensor:
    """Unit vertex normals [B, V, 3] of meshes [B, V, 3] (x, y pixels, y down; z depth, larger = farther):
    area-weighted means of the face normals, oriented so that a surface facing the camera has normal z > 0
    (the face-mesh winding). Vertices in no triangle get (0, 0, 1). triangles default: the face-mesh surface
    wound alike (``oriented_mesh_triangles``; as MediaPipe's edges give them, 15 of 854 ran the other way)."""
    tris = as_triangles(oriented_mesh_triangles() if triangles is None else triangles, vertices.device)
    v = vertices.float()
    p = v[:, tris]  # [B, F, 3, 3]
    n = torch.cross(p[:, :, 1] - p[:, :, 0], p[:, :, 2] - p[:, :, 0], dim=-1)  # length = 2 * area
    acc = torch.zeros_like(v).index_add_(1, tris.reshape(-1), n.repeat_interleave(3, dim=1))
    length = acc.norm(dim=-1, keepdim=True)
    default = torch.tensor([0.0, 0.0, 1.0], device=v.device).expand_as(acc)
    return torch.where(length > 1e-9, acc / length.clamp(min=1e-9), default)


def vertex_facing(vertices: torch.Tensor, triangles: torch.Tensor | np.ndarray | None = None) -> torch.Tensor:
    """[B, V] cosine between each vertex's normal and the direction to the camera (1 = seen squarely, 0 = edge
    on, < 0 = facing away), for meshes [B, V, 3] under the (scaled) orthographic camera."""
    return vertex_normals(vertices, triangles)[..., 2]


def occluded_vertices(vertices: torch.Tensor, height: int, width: int, tolerance: float | None = None) -> torch.Tensor:
    """[B, V] bool: vertices of meshes [B, V, 3] (pixels, depth) that lie behind another part of the face surface
    (z-buffer at ``height`` x ``width``; the eye and mouth openings are holes, so the irises count as seen) by more
    than ``tolerance`` pixels (default ``OCCLUSION_TOLERANCE`` of the face width). Off-image vertices count as
    visible."""
    B, V = vertices.shape[:2]
    frags = rasterize(vertices.float(), mesh_triangles(), height, width, depth_only=True)
    xy = vertices[..., :2].float()
    ix = xy[..., 0].floor().long()
    iy = xy[..., 1].floor().long()
    inside = (ix >= 0) & (ix < width) & (iy >= 0) & (iy < height)
    flat = (iy.clamp(0, height - 1) * width + ix.clamp(0, width - 1))
    zbuf = frags.depth.reshape(B, -1).gather(1, flat)
    if tolerance is None:
        span = xy.amax(1)[:, 0] - xy.amin(1)[:, 0]
        tol = OCCLUSION_TOLERANCE * span.view(B, 1)
    else:
        tol = torch.full((B, 1), float(tolerance), device=vertices.device)
    return inside & torch.isfinite(zbuf) & (vertices[..., 2].float() > zbuf + tol)


def mesh_visibility(vertices: torch.Tensor, grid: int = 96) -> torch.Tensor:
    """[B, V] how squarely the camera sees each vertex of meshes [B, V, 3] (pixels, depth): :func:`vertex_facing`
    clamped to [0, 1], and 0 where another part of the face hides it (:func:`occluded_vertices`, run on a coarse
    ``grid`` x ``grid`` raster over the meshes' extent: cheap enough for every frame, and the same for a source
    and its targets)."""
    v = vertices.float()
    lo = v[:, :468, :2].amin(1, keepdim=True)
    span = (v[:, :468, :2].amax(1, keepdim=True) - lo).amax(-1, keepdim=True).clamp(min=1e-3)
    scale = (grid - 2) / span  # [B, 1, 1]
    small = torch.cat([(v[..., :2] - lo) * scale + 1.0, v[..., 2:] * scale], -1)
    facing = vertex_facing(vertices).clamp(0.0, 1.0)
    return torch.where(occluded_vertices(small, grid, grid), torch.zeros_like(facing), facing)


def mirror_weights(visibility: torch.Tensor, target_vertices: torch.Tensor, mirror: torch.Tensor) -> torch.Tensor:
    """[B, V] share of each target vertex's colour to read at its mirror partner's source position.

    visibility: [1 or B, V] the source's (:func:`mesh_visibility`); target_vertices: [B, V, 3]; mirror: [V] long,
    each vertex's mirror partner (itself on the midline, whose weight is then 0). A vertex is filled when the
    source saw it much less squarely than the target shows it (``STRETCH_LIMIT`` on the cosines' ratio,
    ``REVEAL`` on their difference) and saw its partner better (``MIRROR_GAIN``).
    """
    src = visibility.float()
    dst = mesh_visibility(target_vertices)
    partner = src[:, mirror]
    ratio = src / dst.clamp(min=1e-3)
    stretched = smoothstep((STRETCH_LIMIT[0] - ratio) / STRETCH_LIMIT[1]) * smoothstep((dst - src) / REVEAL)
    better = smoothstep((partner - src - MIRROR_GAIN[0]) / MIRROR_GAIN[1])
    own = (mirror != torch.arange(mirror.shape[0], device=mirror.device)).float()
    return stretched * better * own


def mirror_column(vertices: torch.Tensor) -> int:
    """Twice the x of the column (pixels) the face is mirrored about, rounded to an integer so that the flip is
    an exact permutation of pixel columns: the centre of the face oval's x extent (the flipped face covers the
    same columns). vertices: [1, V, >=2] pixels."""
    x = vertices[0, torch.as_tensor(FACE_OVAL, device=vertices.device), 0].float()
    return int(round(float(x.amin() + x.amax())))


def flip_columns(image: torch.Tensor, k: int) -> torch.Tensor:
    """[B, C, H, W] mirrored about x = k / 2 (pixel column j reads column k - 1 - j; columns beyond the image are
    reflected back into it)."""
    W = image.shape[-1]
    j = k - 1 - torch.arange(W, device=image.device)
    period = 2 * W
    j = torch.remainder(j, period)
    j = torch.where(j >= W, period - 1 - j, j)
    return image.index_select(-1, j)


def flip_points(points: torch.Tensor, k: int) -> torch.Tensor:
    """Points [..., >=2] (x, y pixels, ...) mirrored about x = k / 2 (what :func:`flip_columns` does to pixels)."""
    return torch.cat([k - points[..., :1], points[..., 1:]], -1)


def mirrored_source(image: torch.Tensor, vertices: torch.Tensor, mirror: torch.Tensor
                    ) -> tuple[torch.Tensor, torch.Tensor, int]:
    """The source's mirror image as a source of its own: (image [1, C, H, W] flipped, vertices [1, V, 3] flipped
    and relabelled so that vertex i lies on the flipped face's point i, k of :func:`flip_columns`).

    Rendering it at a target mesh puts each vertex's mirror partner's texture there: the symmetry fill.
    """
    k = mirror_column(vertices)
    return flip_columns(image, k), flip_points(vertices, k)[:, mirror], k


def relight_mirror(source: torch.Tensor, vertices: torch.Tensor, mirror: torch.Tensor, visibility: torch.Tensor,
                   mirrored: torch.Tensor, mirrored_vertices: torch.Tensor) -> torch.Tensor:
    """The mirror image [1, 3, H, W] with the source's own shading: a flipped face carries the light of the other
    side (the lit cheek lands on the shaded one), which shows as a seam down the nose where the two renders meet.

    Per vertex, the gain is the source's smooth colour at the vertex over that at its mirror partner (a blur of the
    face only, ``RELIGHT_BLUR`` of its width), where the source saw both well (visibility > ``RELIGHT_MIN_SEEN``);
    elsewhere it is diffused from its neighbours over the mesh. The gains are interpolated over the mirror image's
    face and multiplied in there, fading to none just beyond the face (hair and background keep their look).
    source [1, 3, H, W], vertices [1, V, 3] its mesh, mirror [V], visibility [1, V]; mirrored [1, 3, H, W] and
    mirrored_vertices [1, V, 3] from :func:`mirrored_source`.
    """
    H, W = source.shape[-2:]
    frags = rasterize(vertices.float(), closed_mesh_triangles(), H, W)
    xy = vertices[0, :468, :2].float()
    face_w = float(xy[:, 0].amax() - xy[:, 0].amin())
    k = max(1, int(round(RELIGHT_BLUR * face_w)))
    colour, cover = cell_means_at(source, frags.mask.to(source.dtype), k, vertices[0, :, :2].float())
    seen = cover > 0.5
    gain = (colour / colour[mirror].clamp(min=1e-3)).clamp(*RELIGHT_RANGE)
    ok = (visibility[0] > RELIGHT_MIN_SEEN) & (visibility[0, mirror] > RELIGHT_MIN_SEEN) & seen & seen[mirror]
    gain = _diffuse(torch.where(ok[:, None], gain, torch.ones_like(gain)), ok)
    frags_m = rasterize(mirrored_vertices.float(), closed_mesh_triangles(), H, W)
    inside = interpolate(frags_m, gain[None])
    field = fill_holes(inside, frags_m.mask)
    # Only on the face: fading to no change a few pixels outside the mesh (hair and background keep their look).
    reach = max(1, int(round(RELIGHT_BLUR * face_w / 2)))
    near = blur3(F.max_pool2d(frags_m.mask, 2 * reach + 1, 1, reach), reach).clamp(0.0, 1.0)
    return (mirrored * (1.0 + near * (field - 1.0))).clamp(0.0, 1.0)


def cell_means_at(image: torch.Tensor, weight: torch.Tensor, k: int, points: torch.Tensor
                  ) -> tuple[torch.Tensor, torch.Tensor]:
    """Weighted means of ``image`` over k x k pixel cells, read (bilinearly between cell centres) at points.

    image [1, C, H, W]; weight [1, 1, H, W] in [0, 1]; points [V, 2] continuous pixels (centres at i + 0.5).
    Returns the weighted mean colour [V, C] and the mean weight [V] around each point. The cells tile the image
    from its top-left corner; the last row and column of cells may reach past it (their means count only the
    pixels inside), so a point at x lies at x / k in cell units whether or not k divides the image size.
    """
    num = F.avg_pool2d(image * weight, k, k, ceil_mode=True)
    den = F.avg_pool2d(weight, k, k, ceil_mode=True)
    hp, wp = den.shape[-2:]
    grid = points.to(image.dtype) * torch.tensor([2.0 / (k * wp), 2.0 / (k * hp)], device=image.device,
                                                 dtype=image.dtype) - 1.0
    both = torch.cat([num / den.clamp(min=1e-6), den], 1)
    sampled = F.grid_sample(both, grid.view(1, 1, -1, 2), mode="bilinear", padding_mode="border",
                            align_corners=False)[0, :, 0]  # [C + 1, V]
    return sampled[:-1].t(), sampled[-1]


def _diffuse(values: torch.Tensor, fixed: torch.Tensor, iterations: int = 60) -> torch.Tensor:
    """values [V, C] with the rows not ``fixed`` [V] replaced by the mean of their mesh neighbours, repeated
    (Jacobi iterations of a harmonic fill over the 468-point tessellation; rows beyond it are left as they are)."""
    edges = torch.as_tensor(mesh_edges().astype(np.int64), device=values.device)
    a = torch.cat([edges[:, 0], edges[:, 1]])
    b = torch.cat([edges[:, 1], edges[:, 0]])
    count = torch.zeros(values.shape[0], device=values.device).index_add_(0, a, torch.ones_like(a, dtype=torch.float))
    free = (~fixed) & (count > 0)
    out = values.clone()
    for _ in range(iterations):
        mean = torch.zeros_like(out).index_add_(0, a, out[b]) / count.clamp(min=1.0)[:, None]
        out = torch.where(free[:, None], mean, out)
    return out


def midline_axes(vertices: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The face's midline frame of target meshes [B, V, >=2] (pixels): (origin [B, 2], the nose bridge (point
    168); across [B, 2], perpendicular to the line from it to the chin (152), pointing to the subject's right,
    i.e. image left for an upright face, and scaled to 1 / the outer eye-corner distance). The signed distance
    across the midline, in eye-corner distances, of a point p is ``(p - origin) . across``."""
    xy = vertices[..., :2].float()
    top, chin = xy[:, MIDLINE_TOP], xy[:, MIDLINE_BOTTOM]
    down = chin - top
    down = down / down.norm(dim=1, keepdim=True).clamp(min=1e-6)
    unit = (xy[:, EYE_CORNERS[0]] - xy[:, EYE_CORNERS[1]]).norm(dim=1, keepdim=True).clamp(min=1.0)
    return top, torch.stack([-down[:, 1], down[:, 0]], 1) / unit


def midline_coordinate(vertices: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """[B, 1, H, W] signed distance of every pixel across the face's midline (:func:`midline_axes`), in eye
    corner distances, positive on the subject's right, for target meshes [B, V, >=2] (pixels)."""
    origin, across = midline_axes(vertices)
    pix = pixel_centres(height, width, vertices.device).view(1, 2, -1) - origin[..., None]
    return (pix * across[..., None]).sum(1).view(-1, 1, height, width)


def fill_profile(target_vertices: torch.Tensor, weights: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The profile of :func:`fill_weight_map`: (side [B], +1 or -1, the side of the midline that needs the fill in
    :func:`midline_coordinate`'s sign; profile [B, K + 1], the share at the midline and at the centres of the
    ``PROFILE_BINS`` bins, non-decreasing outwards, so ``profile[:, -1]`` is the frame's largest share)."""
    origin, across = midline_axes(target_vertices)
    u_vert = ((target_vertices[..., :2].float() - origin[:, None]) * across[:, None]).sum(-1)  # [B, V]
    seen = vertex_facing(target_vertices).clamp(min=0.0)
    w = weights.float()
    side = torch.where((w * seen * u_vert).sum(1) >= 0.0, 1.0, -1.0)  # [B]
    d_vert = u_vert * side[:, None]
    edges = torch.linspace(0.0, PROFILE_BINS[0], PROFILE_BINS[1] + 1, device=w.device)
    profile = []
    for lo, hi in zip(edges[:-1], edges[1:]):
        c = ((d_vert >= lo) & (d_vert < hi)).float() * seen
        profile.append((w * c).sum(1) / c.sum(1).clamp(min=1e-6))
    # A few stray vertices (a silhouette the source saw edge-on while the head turns further away) must not switch
    # a whole band over: the bin means pass a ramp (PROFILE_RAMP) before they are made non-decreasing outwards.
    ramp = smoothstep((torch.stack(profile, 1) - PROFILE_RAMP[0]) / (PROFILE_RAMP[1] - PROFILE_RAMP[0]))
    prof = torch.cummax(ramp, dim=1).values  # [B, K]
    return side, torch.cat([torch.zeros_like(prof[:, :1]), prof], 1)


def fill_weight_map(target_vertices: torch.Tensor, weights: torch.Tensor, height: int, width: int,
                    profile: tuple[torch.Tensor, torch.Tensor] | None = None) -> torch.Tensor:
    """[B, 1, H, W] per-pixel share of the mirrored render, a function of the distance across the face's midline
    only (:func:`midline_coordinate`), towards the side that needs the fill.

    The profile (:func:`fill_profile`, or ``profile`` when already computed) is the mean of the per-vertex
    ``weights`` [B, V] in bins of that distance (``PROFILE_BINS``, eye corner distances; each vertex counted by
    how squarely the target shows it), through a ramp (``PROFILE_RAMP``) and made non-decreasing outwards, read
    linearly between bin centres (beyond the last bin it keeps the last value: the ear and hair on that side come
    along). A whole band across the face changes together, so the seam between the source and its mirror image
    runs down the face where the source's view of it gives out, never in patches. Outside the face surface (less
    ``FACE_INSET`` of its width) the filled side takes the profile's largest share (:func:`outer_share`). The
    caller limits it to the head. target_vertices: [B, V, 3] pixels.
    """
    side, prof = fill_profile(target_vertices, weights) if profile is None else profile
    u_pix = midline_coordinate(target_vertices, height, width)
    edges = torch.linspace(0.0, PROFILE_BINS[0], PROFILE_BINS[1] + 1, device=prof.device)
    centres = torch.cat([edges[:1], 0.5 * (edges[:-1] + edges[1:])])  # [K + 1]
    d = (u_pix * side.view(-1, 1, 1, 1)).clamp(min=0.0)
    pos = torch.bucketize(d.contiguous(), centres).clamp(1, centres.numel() - 1)
    lo_c, hi_c = centres[pos - 1], centres[pos]
    t = ((d - lo_c) / (hi_c - lo_c)).clamp(0.0, 1.0)
    flat = pos.view(prof.shape[0], -1)
    lo_v = prof.gather(1, flat - 1).view_as(d)
    hi_v = prof.gather(1, flat).view_as(d)
    return torch.maximum(lo_v + t * (hi_v - lo_v), outer_share(target_vertices, d, prof[:, -1]))


def face_interior(vertices: torch.Tensor, height: int, width: int, inset: float = FACE_INSET,
                  step: int = FACE_INTERIOR_STEP) -> torch.Tensor:
    """[B, 1, H, W] in [0, 1]: the face surface of meshes [B, V, 3] (pixels; the 468-point tessellation with the
    eye and mouth openings closed), shrunk by ``inset`` of the face's width (x extent) and softened: rasterised on
    a grid ``step`` times coarser (a soft mask needs no more; a full-size raster per frame cost 5 ms), eroded and
    blurred there, then scaled up bilinearly."""
    h, w = -(-height // step), -(-width // step)
    small = vertices[:, :NUM_SURFACE_POINTS].float() / step
    cover = rasterize(small, closed_mesh_triangles(), h, w, depth_only=True).mask
    span = float((small[..., 0].amax(1) - small[..., 0].amin(1)).amax())
    core = blur3(erode(cover.float(), max(0, int(round(inset * span)))), 1)
    up = F.interpolate(core, scale_factor=step, mode="bilinear", align_corners=False)[..., :height, :width]
    return up.clamp(0.0, 1.0)


def outer_share(target_vertices: torch.Tensor, distance: torch.Tensor, top: torch.Tensor) -> torch.Tensor:
    """[B, 1, H, W] the mirror share outside the face (``OUTER_RAMP``, ``FACE_INSET``, ``OUTER_FROM``): ``top`` [B]
    (a frame's largest share) where a pixel lies off the inset face surface of target meshes [B, V, 3] (pixels)
    and below the eyes, ramped in by its ``distance`` [B, 1, H, W] across the midline towards the filled side
    (eye-corner distances, >= 0)."""
    H, W = distance.shape[-2:]
    off_face = 1.0 - face_interior(target_vertices, H, W)
    ramp = smoothstep((distance - OUTER_RAMP[0]) / (OUTER_RAMP[1] - OUTER_RAMP[0]))
    origin, across = midline_axes(target_vertices)
    down = torch.stack([across[:, 1], -across[:, 0]], 1)  # along the midline towards the chin, same scale
    pix = pixel_centres(H, W, target_vertices.device).view(1, 2, -1) - origin[..., None]
    below = (pix * down[..., None]).sum(1).view(-1, 1, H, W)
    low = smoothstep((below - OUTER_FROM[0]) / (OUTER_FROM[1] - OUTER_FROM[0]))
    return off_face * ramp * low * top.view(-1, 1, 1, 1).to(distance.dtype)


__all__ = ["face_interior", "fill_profile", "fill_weight_map", "flip_columns", "flip_points", "mesh_visibility",
           "midline_axes", "midline_coordinate", "mirror_column", "mirror_weights", "mirrored_source",
           "occluded_vertices", "outer_share", "relight_mirror", "vertex_facing", "vertex_normals"]

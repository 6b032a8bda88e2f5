"""One call from a prepared source face and target meshes to rendered frames: mesh warp inside the face, dense
flow outside it, blended with the mesh's feathered weight, then the eye and mouth layers."""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

import numpy as np
import torch

from thead.render.dense_flow import blend_flows, dense_backward_flow, flow_motion, smoothstep
from thead.render.eyes import eye_span, lid_gaps, lid_split_vertices
from thead.render.lip_border import (REST_OPENING, inner_lip_vertices, lip_border_vertices, mouth_opening,
                                     soften_lip_seam)
from thead.render.layers import SourceFace, composite_layers, over
from thead.render.masks import blur3, erode, soften
from thead.face.topology import LEFT_EYE, NUM_POINTS, RIGHT_EYE
from thead.render.mesh_topology import dense_flow_points, lid_split_mesh
from thead.render.mesh_warp import MeshWarp, flow_to_grid, mesh_warp_maps, warp_image


@dataclass
class HeadRender:
    """image: [B, 3, H, W] in [0, 1]; flow: [B, 2, H, W] combined backward flow (pixels); mesh: the mesh maps.

    changed: [B, 1, H, W] soft mask of what the render changed (the face, and wherever anything moved by more
    than about half a pixel); pass it as ``crop_mask`` to :func:`paste_back` so the still background keeps the
    original frame's full resolution.
    """

    image: torch.Tensor
    flow: torch.Tensor
    mesh: MeshWarp
    grid: torch.Tensor  # [B, H, W, 2] the sampling grid of ``flow`` over the source

    @cached_property
    def changed(self) -> torch.Tensor:
        """[B, 1, H, W] (computed on first use: callers that build their own mask skip it)."""
        return blur3(torch.maximum(self.mesh.mask, flow_motion(self.flow)), 3).clamp(0.0, 1.0)


def weighted_flow(flow: torch.Tensor, source_weight: torch.Tensor, iterations: int = 2,
                  origin: tuple[int, int] = (0, 0)) -> torch.Tensor:
    """flow [B, 2, H, W] (backward, pixels) scaled at each output pixel by the weight [1 or B, 1, Hs, Ws] in [0, 1]
    of the SOURCE pixel it reads: w = weight(p + w * flow(p)), solved by fixed-point steps from w = weight(p). A
    shoulder pixel (weight 0) stays put even where the head's flow would read it from the head. The flow covers
    the window of the (Hs, Ws) frame whose top-left pixel is ``origin`` (x, y) (default: all of it)."""
    H, W = flow.shape[-2:]
    sw = source_weight.to(flow.dtype)
    ox, oy = int(origin[0]), int(origin[1])
    w = sw[..., oy:oy + H, ox:ox + W].expand(flow.shape[0], -1, -1, -1)
    for _ in range(iterations):
        w = warp_image(sw, flow_to_grid(flow * w, tuple(sw.shape[-2:]), (ox, oy)))
    return flow * w


#: A closing lid's band reads the lid-skin image as the eye shuts: fully once its lid gap is below
#: ``LID_SKIN_OPENNESS[0]`` of the source's (face-scale corrected), not at all above ``LID_SKIN_OPENNESS[1]``.
LID_SKIN_OPENNESS = (0.25, 0.8)


def lid_band_weight(src_x: torch.Tensor, dst_x: torch.Tensor, lid_band: np.ndarray) -> torch.Tensor:
    """[B, V, 1] in [0, 1]: how much each vertex of a closing lid's band (``lid_band`` [F, 3] triangles) reads the
    lid-skin image (``SourceFace.blurred``) instead of the source: one value per eye, rising as the eye shuts
    (its lid gap against the source's, ``LID_SKIN_OPENNESS``), 0 off the bands. One value per eye, interpolated
    over the mesh, has no steps between neighbouring band triangles (a per-triangle stretch left hard-edged
    wedges of lid skin over a shut eye). src_x, dst_x: [B, V, >=2] pixels (the 478 points first)."""
    B, V = dst_x.shape[:2]
    scale = eye_span(dst_x) / eye_span(src_x).clamp(min=1e-3)
    openness = lid_gaps(dst_x) / (lid_gaps(src_x) * scale.unsqueeze(1)).clamp(min=1e-3)  # [B, 2]
    lo, hi = LID_SKIN_OPENNESS
    shut = smoothstep((hi - openness) / (hi - lo))
    out = torch.zeros(B, V, 1, device=dst_x.device, dtype=dst_x.dtype)
    band = torch.as_tensor(np.unique(lid_band), device=dst_x.device)
    centres = torch.stack([src_x[:1, loop, :2].mean(1) for loop in (RIGHT_EYE, LEFT_EYE)], 1)  # [1, 2, 2]
    near = (src_x[:1, band, None, :2] - centres[:, None]).norm(dim=-1).argmin(-1)[0]  # [K] each vertex's eye
    for e in range(2):
        idx = band[near == e]
        out[:, idx, 0] = shut[:, e:e + 1].to(out.dtype)
    return out


@torch.no_grad()
def render_head(
    source: SourceFace,
    dst_vertices: torch.Tensor,
    height: int | None = None,
    width: int | None = None,
    mouth_image: torch.Tensor | None = None,
    falloff: float = 0.8,
    layers: bool = True,
    extra_points: tuple[torch.Tensor, torch.Tensor] | None = None,
    source_weight: torch.Tensor | None = None,
    window: tuple[int, int, int, int] | None = None,
    gaze_gain: tuple[float, float] = (1.0, 1.0),
    gaze_rest: torch.Tensor | None = None,
    lip_border: float = 0.0,
    edge_flow: torch.Tensor | None = None,
    inner_lip: bool = False,
) -> HeadRender:
    """Render the source at target face meshes.

    dst_vertices: [B, 478, 3] target pixels + depth, in the same pixel frame as the source (e.g. both in crop
    space). height, width: output size (default the source's). falloff: the background is still beyond this many
    face sizes from the face. mouth_image: optional inner-mouth image [B, 3, H, W] in the target frame.
    extra_points: (source, target) pixels [B or 1, K, 2+] that drive the dense flow besides the face mesh (e.g.
    skull points that turn with the head). source_weight: [1, 1, H, W] in SOURCE pixels, how much each source
    pixel follows the dense flow (0 on the shoulders), read where the flow points.
    window: (top, left, h, w): render only that window of the H x W target frame (the same pixels as the whole
    frame's render there, up to float rounding; ``dst_vertices`` stay in the frame's pixels, mouth_image and
    every output cover the window). gaze_gain, gaze_rest: the iris layer's (along, across) gain on the move a
    gaze makes and the target mesh at the source's own gaze [B, 478, 3] it is measured from, in the pixels of
    ``dst_vertices`` (``thead.render.eyes.eye_layer``).
    lip_border: gain of the outer-lip contour's move onto the vermilion border its mouth opening predicts
    (``lip_border_vertices``), applied alike to the source and target meshes the warp maps between (0: none).
    inner_lip: move the source's inner-lip contour out onto its lips' edge (``source.inner_lip``), and each
    target's by the share of the source's mouth opening (above ``REST_OPENING``) it keeps: a mouth closing from
    an open source closes on its lips, not on the band of teeth its contour ran over (and the seam of the shut
    mouth is anti-aliased, ``soften_lip_seam``); an identity target still maps every source pixel onto itself.
    edge_flow: [B or 1, 1, h, w] in [0, 1] over the output (the window): where the face mesh's own map holds to
    about two pixels from the mesh's edge (1) instead of easing into the dense flow over its outer triangle rings
    (the feather, 0).
    """
    H = source.image.shape[-2] if height is None else int(height)
    W = source.image.shape[-1] if width is None else int(width)
    B = dst_vertices.shape[0]
    src_v = source.vertices.to(dst_vertices.dtype)
    if src_v.shape[0] == 1 and B > 1:
        src_v = src_v.expand(B, -1, -1)
    layer_vertices = dst_vertices  # the eye and mouth layers take the meshes as detected, like the source's
    if lip_border:
        # Both meshes alike: an identity target still maps every source pixel onto itself.
        src_v = lip_border_vertices(src_v, lip_border)
        dst_vertices = lip_border_vertices(dst_vertices, lip_border)
    collapse = None  # [B]: how far each target shuts an open source's mouth (its seam is anti-aliased below)
    if inner_lip and source.inner_lip is not None:
        keep = ((mouth_opening(layer_vertices) - REST_OPENING)
                / (mouth_opening(src_v) - REST_OPENING).clamp(min=1e-6)).clamp(0.0, 1.0)
        edge = source.inner_lip.to(src_v.dtype).expand(B, -1)
        src_v = inner_lip_vertices(src_v, edge)
        dst_vertices = inner_lip_vertices(dst_vertices, edge * keep[:, None])
        collapse = 1.0 - keep
    triangles, split_edges = lid_split_mesh()
    src_x, dst_x = lid_split_vertices(src_v, dst_vertices, split_edges)
    # A closing lid stretches the skin band above the lashes (the triangles holding a split vertex): there the
    # warp reads the lid-skin image (``SourceFace.blurred``) as the eye shuts, one weight per eye interpolated over
    # the mesh, instead of smearing the open eye's crease and lashes down over it.
    lid_band = triangles[(triangles >= NUM_POINTS).any(axis=1)]
    blur_weight = lid_band_weight(src_x, dst_x, lid_band)
    src_size = tuple(source.image.shape[-2:])
    top, left, oh, ow = (0, 0, H, W) if window is None else (int(v) for v in window)
    origin = (left, top)
    maps = mesh_warp_maps(src_x, dst_x, triangles, oh, ow, src_size=src_size, vertex_attributes=blur_weight,
                          origin=origin)
    win = None if window is None else (top, left, oh, ow)
    if extra_points is None:
        dense = dense_backward_flow(src_v, dst_vertices, H, W, falloff=falloff, window=win)
    else:
        pts = torch.as_tensor(dense_flow_points(), device=dst_vertices.device)
        src_extra, dst_extra = (p[..., :2].to(src_v.dtype).expand(B, -1, -1) for p in extra_points)
        src_all = torch.cat([src_v[:, pts, :2], src_extra], 1)
        dst_all = torch.cat([dst_vertices[:, pts, :2], dst_extra], 1)
        dense = dense_backward_flow(src_all, dst_all, H, W, points=np.arange(src_all.shape[1]), falloff=falloff,
                                    window=win)
    if source_weight is not None:
        dense = weighted_flow(dense, source_weight, origin=origin)
    feather = maps.feather
    if edge_flow is not None:
        # There the feather is a ramp of about two pixels in from the mesh's edge: the flows still meet without a
        # step (no aliased, stair-stepped outline), and the mesh's map holds from the third pixel in.
        rows = torch.nonzero(edge_flow.amax(dim=(0, 1, 3)) > 0).squeeze(1)
        if rows.numel():
            r0 = max(0, int(rows[0]) - 2)  # (erode and soften reach 2 rows: the slab's own top edge stays out)
            slab = maps.mask[..., r0:, :]
            feather = feather.clone()
            feather[..., r0:, :] = torch.lerp(feather[..., r0:, :], soften(erode(slab, 1)) * slab,
                                              edge_flow[..., r0:, :])
    flow = blend_flows(maps.flow, feather, dense)
    sharp = source.warp_image if layers else source.image
    grid = flow_to_grid(flow, src_size, origin)
    blur = maps.attributes * maps.feather
    if source.blurred is not None and float(blur.max()) > 1e-3:
        both = warp_image(torch.cat([sharp, source.blurred], 1), grid)
        image = over(both[:, :3], both[:, 3:], blur)
    else:
        image = warp_image(sharp, grid)
    if layers:
        dst_win, rest_win = layer_vertices, gaze_rest
        if window is not None and (top or left):
            corner = torch.tensor([left, top, 0], device=dst_vertices.device, dtype=dst_vertices.dtype)
            dst_win = layer_vertices - corner
            rest_win = None if gaze_rest is None else gaze_rest - corner.to(gaze_rest.dtype)
        image = composite_layers(image, source, dst_win, mouth_image=mouth_image, gaze_gain=gaze_gain,
                                 gaze_rest=rest_win)
    if collapse is not None:
        image = soften_lip_seam(image, layer_vertices, collapse, origin)
    return HeadRender(image=image.clamp(0.0, 1.0), flow=flow, mesh=maps, grid=grid)

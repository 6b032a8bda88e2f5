"""Correct the lip contours of a face mesh: the outer one towards the lips' vermilion border as the mouth opens, the
inner one onto where an open source's lips start.

MediaPipe's outer-lip contour (``LIPS_OUTER``) fits a closed mouth's vermilion border tightly, but on an open mouth
it lies outside the border (skin inside the contour), most beside the corners. Measured along the contour's normals
by lip-against-skin colour in every frame of the four shared clips (d0, d3, d12, WDA; opening 0 to 0.35), the
contour beside the corners moves out from the border by 4-9 % of the eye width per unit of mouth opening (inner-lip
gap over eye width) in three or four of the clips, up to twice that in d3's wide-open frames; over the middle of the
lips the clips disagree (WDA's upper lip -6 %, d3's lower lip +10 to +20 %), and the pooled slope there is small.
A mesh warp that maps a source's contour onto a target's then carries skin into the target's lips when the source's
mouth is open and the target's is not (the rendered lips thinner and shorter at the corners than the target mesh
says), and lip into the skin the other way round.

``lip_border_vertices`` moves the contour's vertices along their inward normals by that measured amount, a function
of the mesh's own mouth opening only, and the two rings of lip vertices between the outer and the inner contour
by their share of it (the lips' band is squeezed, never folded: near an open mouth's corners the move is nearly half
the band's width). Applied alike to the source vertices a warp samples from and the target
vertices it draws to, an identity target still maps every source pixel onto itself.

``inner_lip_edge`` / ``inner_lip_vertices`` do the like for the inner contour, measured on the source's own pixels
(see the section below).
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np
import torch

from thead.face.topology import LIPS_INNER, LIPS_OUTER, NUM_SURFACE_POINTS
from thead.render.eyes import eye_span
from thead.render.images import luma_share_mask
from thead.render.masks import blur3
from thead.render.mesh_warp import sample_points
from thead.render.mouth import TO_YCC, inner_mouth_mask, source_teeth_colour

# Per ``LIPS_OUTER`` vertex (61, 185, 40, ..., 291, 375, ..., 146): the vermilion border's offset from the contour
# along the contour's outward normal, in eye widths per unit of opening above ``REST_OPENING`` (negative: the border
# lies inside the contour). Theil-Sen slopes pooled over the four shared clips (each clip's closed-mouth median
# offset subtracted, left and right mirrored together; ``tools/measure_lip_border.py``), rounded to a quarter of a
# per cent. Measurement noise: about 1 % (half a pixel's change of the colour sampling masks moves them that much).
LIP_BORDER_SLOPE_MEASURED = np.array([-3.75, -2.25, -3.75, -2.25, -2.25, -1.5, -2.25, -2.25, -3.75, -2.25,
                                      -3.75, -7.75, -8.5, -1.25, 2.5, -1.5, 2.5, -1.25, -8.5, -7.75]) / 100.0


def _smooth_along_lips(values: np.ndarray, passes: int) -> np.ndarray:
    """[20] values on the ``LIPS_OUTER`` loop, each lip smoothed on its own: every pass takes each point but the
    two corners (indices 0 and 10, where the upper and the lower lip meet) to ``(prev + 2 * self + next) / 4``."""
    out = np.asarray(values, dtype=np.float64)
    for _ in range(passes):
        smooth = 0.25 * np.roll(out, 1) + 0.5 * out + 0.25 * np.roll(out, -1)
        smooth[[0, 10]] = out[[0, 10]]
        out = smooth
    return out


# What the warp uses: the measured slopes smoothed along each lip (two binomial passes, the corners as measured).
# Next to each other the measured ones zigzag by up to 10 % (321 / 405 / 314 / 17 / 84 on the lower lip), more
# than their noise but not what a lip's border does: on a wide-open source (WDA's first frame, opening 0.30, gain 2)
# neighbouring lower-lip vertices moved 3 px apart, and every frame that closed the mouth drew the lower lip's edge
# scalloped. Smoothed, each lip's trend and the corners stay (the mouth's width reads as before).
LIP_BORDER_SLOPE = _smooth_along_lips(LIP_BORDER_SLOPE_MEASURED, passes=2)

REST_OPENING = 0.05  # inner-lip gap over eye width below which the contour fits the border (closed lips)
_EYE_CORNERS = (33, 263)  # outer eye corners: the face's scale
_INNER_MID = (13, 14)  # middle of the upper and lower inner lip


@lru_cache(maxsize=1)
def lip_band() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The lip vertices between the outer and the inner contour, each with the outer-inner contour pair it lies on.

    Returns
    -------
    ids : np.ndarray
        int64 [K] (K = 40 in the MediaPipe topology): the surface points inside ``LIPS_OUTER`` on the mean face,
        neither outer nor inner contour points.
    pair : np.ndarray
        int64 [K]: the index into ``LIPS_OUTER`` / ``LIPS_INNER`` of the nearest segment from an inner contour point
        to its outer partner, on the mean face.
    share : np.ndarray
        float32 [K] in [0, 1]: where along that segment the point lies (0 at the inner point, 1 at the outer).
    """
    from matplotlib.path import Path

    from thead.facemodel import load_face_model

    mean = load_face_model().mean_shape[:NUM_SURFACE_POINTS, :2].astype(np.float64)
    inside = Path(mean[LIPS_OUTER]).contains_points(mean)
    ids = np.setdiff1d(np.nonzero(inside)[0], np.r_[LIPS_OUTER, LIPS_INNER])
    a, b = mean[LIPS_INNER], mean[LIPS_OUTER]  # [20, 2] segment ends
    ab = b - a
    p = mean[ids][:, None]  # [K, 1, 2]
    t = np.clip(((p - a) * ab).sum(-1) / np.maximum((ab * ab).sum(-1), 1e-12), 0.0, 1.0)  # [K, 20]
    dist = np.linalg.norm(p - (a + t[..., None] * ab), axis=-1)
    pair = dist.argmin(1)
    return ids.astype(np.int64), pair.astype(np.int64), t[np.arange(len(ids)), pair].astype(np.float32)


def mouth_opening(vertices: torch.Tensor) -> torch.Tensor:
    """The inner-lip gap over the eye width.

    Parameters
    ----------
    vertices : torch.Tensor
        [B, 478, 2+] face mesh, pixels.

    Returns
    -------
    torch.Tensor
        [B] dimensionless (0 for closed lips, about 0.3 for a wide-open mouth).
    """
    xy = vertices[..., :2]
    eye = (xy[:, _EYE_CORNERS[0]] - xy[:, _EYE_CORNERS[1]]).norm(dim=-1).clamp(min=1e-3)
    return (xy[:, _INNER_MID[0]] - xy[:, _INNER_MID[1]]).norm(dim=-1) / eye


def _outward_normals(loop: torch.Tensor) -> torch.Tensor:
    """[B, K, 2] unit normals of a closed contour [B, K, 2] (pixels), pointing away from its centroid."""
    tangent = torch.roll(loop, -1, 1) - torch.roll(loop, 1, 1)
    normal = torch.stack([tangent[..., 1], -tangent[..., 0]], -1)
    normal = normal / normal.norm(dim=-1, keepdim=True).clamp(min=1e-6)
    outward = torch.sign(((loop - loop.mean(1, keepdim=True)) * normal).sum(-1, keepdim=True))
    return normal * torch.where(outward == 0, torch.ones_like(outward), outward)


def lip_border_vertices(vertices: torch.Tensor, gain: float = 1.0) -> torch.Tensor:
    """The mesh with its outer-lip contour moved onto the vermilion border its mouth opening predicts.

    Parameters
    ----------
    vertices : torch.Tensor
        [B, 478, C] face mesh, C >= 2: pixels x, y (then depth, unchanged).
    gain : float
        Scale of ``LIP_BORDER_SLOPE`` (0: the vertices unchanged).

    Returns
    -------
    torch.Tensor
        [B, 478, C]: a new tensor, the ``LIPS_OUTER`` vertices moved along their normals by
        ``gain * LIP_BORDER_SLOPE * eye width * max(opening - REST_OPENING, 0)`` pixels (outward positive), the
        ``lip_band`` vertices by their share of their contour pair's move; every other vertex as given. The same
        function of each mesh alone, so equal meshes stay equal.
    """
    if gain == 0.0:
        return vertices
    dev, dt = vertices.device, vertices.dtype
    idx = torch.as_tensor(LIPS_OUTER, device=dev)
    xy = vertices[..., :2]
    loop = xy[:, idx]  # [B, 20, 2]
    normal = _outward_normals(loop)
    eye = (xy[:, _EYE_CORNERS[0]] - xy[:, _EYE_CORNERS[1]]).norm(dim=-1)  # [B]
    excess = (mouth_opening(vertices) - REST_OPENING).clamp(min=0.0)  # [B]
    slope = torch.as_tensor(LIP_BORDER_SLOPE, dtype=dt, device=dev)
    shift = gain * slope[None, :, None] * (eye * excess)[:, None, None] * normal  # [B, 20, 2]
    ids, pair, share = (torch.as_tensor(a, device=dev) for a in lip_band())
    out = vertices.clone()
    out[:, idx, :2] = loop + shift
    out[:, ids, :2] = xy[:, ids] + share.to(dt)[None, :, None] * shift[:, pair]
    return out


# ----------------------------------------------------------------------------------------- the lips' inner edge
# On an open mouth MediaPipe's inner-lip contour often runs short of the lip (WDA's first frame: the lower contour
# 1-2 px inside the lower teeth, the upper one 1.4-2.4 px inside the upper lip's dark, wet inner side). A warp that
# closes such a mouth keeps that band between the lips: a pale line of teeth in a shut mouth, read back as lips
# parted by about a pixel. ``inner_lip_edge`` measures where the lip starts along each inner-contour vertex's
# outward normal, by colour, once per source; ``inner_lip_vertices`` moves the contour there (the source's mesh by
# all of it, a target's by the share of the source's opening it keeps), so a closing mouth closes on the lips.
INNER_EDGE_SEARCH = 0.06  # eye widths outwards from the contour searched for the lip's edge
INNER_EDGE_RUN = 0.012  # eye widths the lip's colour must hold from the edge on (about a pixel)
INNER_EDGE_INSIDE = (0.02, 0.035)  # eye widths inwards: where the mouth's interior colour is read
INNER_EDGE_MIN_GAP = 0.08  # inner-lip gap over eye width below which nothing is measured (lips nearly meet)
INNER_EDGE_MIN_CONTRAST = 0.1  # YCbCr distance between interior and lip below which the edge is not told
LIP_SAMPLE_SHARES = (0.5, 0.6, 0.7)  # where from the inner contour to the outer the lip's own colour is read
INNER_EDGE_MAX_SHARE = 0.4  # at most this share of the lip's width (inner to outer contour) is taken


def _cavity_colour(image: torch.Tensor, xy: torch.Tensor) -> torch.Tensor:
    """[B, 3] RGB: the mean of the darkest quarter of the mouth opening (``inner_mouth_mask``; black if empty)."""
    B, _, H, W = image.shape
    sel = luma_share_mask(image, inner_mouth_mask(xy, H, W), 0.25, brightest=False).view(B, 1, -1).to(image.dtype)
    return (image.view(B, 3, -1) * sel).sum(2) / sel.sum(2).clamp(min=1.0)


@torch.no_grad()
def inner_lip_edge(image: torch.Tensor, vertices: torch.Tensor) -> torch.Tensor:
    """How far out from each inner-lip contour vertex the lip itself starts, measured by colour.

    Along each ``LIPS_INNER`` vertex's outward normal (into the lip) each colour is told lip or not by the nearest
    of four: the lip's own (read ``LIP_SAMPLE_SHARES`` of the way to the vertex's ``LIPS_OUTER`` partner) against
    the mouth's interior just inside the contour (``INNER_EDGE_INSIDE``: teeth, tongue or cavity), the teeth's
    (``source_teeth_colour``: teeth between a dark cavity and the lip are interior too) and the cavity's (the
    darkest quarter of the opening: the shadowed wet inner side of a lip, which a closed mouth rolls in, is
    interior too). The edge is where the lip's first becomes the nearest and stays so for ``INNER_EDGE_RUN``
    (linear between samples). Nothing is measured (0) on a mouth whose lips nearly meet, where interior and lip
    look alike, at the two corners, or inwards.

    Parameters
    ----------
    image : torch.Tensor
        [B, 3, H, W] in [0, 1].
    vertices : torch.Tensor
        [B, 478, >=2] face meshes of ``image`` (pixels).

    Returns
    -------
    torch.Tensor
        [B, 20] >= 0: the edge's distance from each ``LIPS_INNER`` vertex, in eye widths.
    """
    dev = vertices.device
    xy = vertices[..., :2].float()
    eye_width = eye_span(xy).clamp(min=1e-3)  # [B]
    gap = mouth_opening(xy)  # [B]
    if not bool((gap >= INNER_EDGE_MIN_GAP).any()):
        return torch.zeros(xy.shape[0], len(LIPS_INNER), device=dev)  # closed mouths: nothing to measure
    to_ycc = TO_YCC.to(dev)
    img = torch.einsum("ij,bjhw->bihw", to_ycc, image.float())
    loop = xy[:, torch.as_tensor(LIPS_INNER, device=dev)]  # [B, 20, 2]
    outer = xy[:, torch.as_tensor(LIPS_OUTER, device=dev)]
    normal = _outward_normals(loop)
    eye = eye_width[:, None, None]  # [B, 1, 1]
    inside = torch.linspace(-INNER_EDGE_INSIDE[1], -INNER_EDGE_INSIDE[0], 4, device=dev)
    c_in = sample_points(img, loop[:, :, None] + inside[None, None, :, None] * eye[..., None] * normal[:, :, None])
    c_in = c_in.mean(2)  # [B, 20, 3]
    mid = torch.tensor(LIP_SAMPLE_SHARES, device=dev)
    c_lip = sample_points(img, loop[:, :, None] + mid[None, None, :, None] * (outer - loop)[:, :, None]).mean(2)
    steps = torch.linspace(0.0, INNER_EDGE_SEARCH, 25, device=dev)  # eye widths
    c = sample_points(img, loop[:, :, None] + steps[None, None, :, None] * eye[..., None] * normal[:, :, None])
    # c: [B, 20, S, 3]
    c_teeth = torch.einsum("ij,bj->bi", to_ycc, source_teeth_colour(image.float(), xy))  # [B, 3]
    c_dark = torch.einsum("ij,bj->bi", to_ycc, _cavity_colour(image.float(), xy))
    contrast = (c_lip - c_in).norm(dim=-1)  # [B, 20]
    # > 0 where the colour is nearer the lip's than each of the interior's.
    interior = torch.stack([(c - c_in[:, :, None]).norm(dim=-1), (c - c_teeth[:, None, None]).norm(dim=-1),
                            (c - c_dark[:, None, None]).norm(dim=-1)]).amin(0)
    lipness = interior - (c - c_lip[:, :, None]).norm(dim=-1)
    # Lip from there on for INNER_EDGE_RUN (a blend of dark cavity and bright teeth at their boundary can read
    # as the lip's middling colour for a sample or two).
    run = max(2, int(round(INNER_EDGE_RUN / float(steps[1]))))
    padded = torch.cat([lipness > 0.0, (lipness[..., -1:] > 0.0).expand(-1, -1, run - 1)], -1)
    reached = padded.unfold(-1, run, 1).all(-1)  # [B, 20, S]
    first = reached.float().argmax(-1)  # [B, 20] (0 where never reached: masked below)
    # Linear interpolation between the last sample not lip and the first that is.
    i1 = first.clamp(min=1)
    l0, l1 = lipness.gather(-1, (i1 - 1)[..., None])[..., 0], lipness.gather(-1, i1[..., None])[..., 0]
    frac = (-l0 / (l1 - l0).clamp(min=1e-6)).clamp(0.0, 1.0)
    edge = torch.where(first > 0, steps[i1 - 1] + frac * (steps[1] - steps[0]), torch.zeros_like(frac))
    width = (outer - loop).norm(dim=-1) / eye[..., 0]  # [B, 20] the lip's width, eye widths
    edge = torch.minimum(edge, INNER_EDGE_MAX_SHARE * width)
    ok = (contrast >= INNER_EDGE_MIN_CONTRAST) & reached.any(-1) & (gap >= INNER_EDGE_MIN_GAP)[:, None]
    edge = torch.where(ok, edge, torch.zeros_like(edge))
    edge[:, [0, 10]] = 0.0  # the corners: moving them along their normals would widen or narrow the mouth
    return edge


def inner_lip_vertices(vertices: torch.Tensor, edge: torch.Tensor) -> torch.Tensor:
    """The mesh with its inner-lip contour moved out onto the lips' edge.

    Parameters
    ----------
    vertices : torch.Tensor
        [B, 478, C] face mesh, C >= 2: pixels x, y (then depth, unchanged).
    edge : torch.Tensor
        [B or 1, 20] how far to move each ``LIPS_INNER`` vertex along its outward normal, in eye widths
        (``inner_lip_edge``, scaled by the caller).

    Returns
    -------
    torch.Tensor
        [B, 478, C]: a new tensor, the ``LIPS_INNER`` vertices moved, the ``lip_band`` vertices by the rest of
        their share of the move (1 at the inner contour, 0 at the outer); every other vertex as given.
    """
    dev, dt = vertices.device, vertices.dtype
    idx = torch.as_tensor(LIPS_INNER, device=dev)
    xy = vertices[..., :2]
    loop = xy[:, idx]
    shift = edge.to(dt)[..., None] * eye_span(xy).to(dt)[:, None, None] * _outward_normals(loop)  # [B, 20, 2]
    ids, pair, share = (torch.as_tensor(a, device=dev) for a in lip_band())
    out = vertices.clone()
    out[:, idx, :2] = loop + shift
    out[:, ids, :2] = xy[:, ids] + (1.0 - share.to(dt))[None, :, None] * shift[:, pair]
    return out


SEAM_HALF_WIDTH = 1.5  # pixels either side of a collapsed mouth's seam that ``soften_lip_seam`` blurs


def soften_lip_seam(image: torch.Tensor, vertices: torch.Tensor, collapse: torch.Tensor,
                    origin: tuple[int, int] = (0, 0)) -> torch.Tensor:
    """Anti-alias the seam of a mouth the warp has shut.

    Where a target shuts a mouth the source shows open, the mouth's triangles collapse onto one line and each
    pixel along it takes the upper or the lower lip's map whole: the seam comes out as a staircase of the two lips'
    inner edges (dark and pale dashes along the shut lips of WDA's first frame driven by speech). Within
    ``SEAM_HALF_WIDTH`` pixels of the inner-lip contour the image is blended with its one-pass ``blur3`` by
    ``collapse``.

    Parameters
    ----------
    image : torch.Tensor
        [B, 3, h, w] rendered frames (a window of the frame whose top-left pixel is ``origin``).
    vertices : torch.Tensor
        [B, 478, >=2] target meshes in the frame's pixels (centres at i + 0.5).
    collapse : torch.Tensor
        [B] in [0, 1]: how far each target shut the source's opening (0: no blur at all).
    origin : (int, int)
        (left, top) of the window in the frame.

    Returns
    -------
    torch.Tensor
        [B, 3, h, w]: ``image`` itself where nothing collapsed, else a new tensor.
    """
    if not bool((collapse > 0).any()):
        return image
    B, _, h, w = image.shape
    dev = image.device
    pts = vertices[:, torch.as_tensor(LIPS_INNER, device=dev), :2].float() - torch.tensor(origin, device=dev)
    reach = SEAM_HALF_WIDTH + 2.0
    x0, x1 = max(0, int(pts[..., 0].min() - reach)), min(w, int(pts[..., 0].max() + reach) + 1)
    y0, y1 = max(0, int(pts[..., 1].min() - reach)), min(h, int(pts[..., 1].max() + reach) + 1)
    if x1 <= x0 or y1 <= y0:
        return image
    gy, gx = torch.meshgrid(torch.arange(y0, y1, device=dev) + 0.5, torch.arange(x0, x1, device=dev) + 0.5,
                            indexing="ij")
    p = torch.stack([gx, gy], -1).view(1, -1, 1, 2)  # [1, P, 1, 2] pixel centres of the box
    a, ab = pts[:, None], (torch.roll(pts, -1, 1) - pts)[:, None]  # [B, 1, 20, 2] the contour's segments
    t = (((p - a) * ab).sum(-1) / (ab * ab).sum(-1).clamp(min=1e-6)).clamp(0.0, 1.0)
    distance = (p - (a + t[..., None] * ab)).norm(dim=-1).amin(-1)  # [B, P]
    weight = (SEAM_HALF_WIDTH - distance).clamp(0.0, 1.0).view(B, 1, y1 - y0, x1 - x0)
    weight = (weight * collapse.view(B, 1, 1, 1)).to(image.dtype)
    out = image.clone()
    box = image[..., y0:y1, x0:x1]
    out[..., y0:y1, x0:x1] = torch.lerp(box, blur3(box, 1), weight)
    return out

"""Eye layers: the iris is a disc moved by a similarity transform, never warped through mesh triangles.

Source side (once per source): :func:`prepare_eyes` measures each iris (centre, radius), estimates the eye-white
colour, builds an iris texture (the source with everything outside the visible eye opening replaced by the
iris's own mean colour, so lids and lashes never get sampled into a moved iris) and an *iris-free* copy of the
source (each iris disc painted over, row by row, with the eye white found left and right of it), which is what
the mesh warp should move, so a gaze change never leaves a second iris behind.

Target side (per frame): :func:`eye_layer` draws the iris disc at the target iris centre and radius, sampled from
the source iris texture by ``p_src = c_src + (p - c_dst) * r_src / r_dst``, clipped by the target lid polygon.
A closing lid shrinks the polygon, so a closed eye shows the skin the mesh warp put there; a nearly shut opening
is shaded with the lash colour. :func:`lid_split_vertices` keeps the lash line thin while the lid skin stretches.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from thead.face.topology import (LEFT_BROW, LEFT_EYE, LEFT_EYE_LIDS, LEFT_IRIS, RIGHT_BROW, RIGHT_EYE, RIGHT_EYE_LIDS,
                                 RIGHT_IRIS)
from thead.render.dense_flow import interp1d, smoothstep
from thead.render.images import luma, luma_share_mask
from thead.render.masks import blur3, soften, triangle_set_masks
from thead.render.mesh_topology import left_eye_triangles, right_eye_triangles
from thead.render.mesh_warp import pixel_centres, sample_points, warp_image

IRIS_SETS = (RIGHT_IRIS, LEFT_IRIS)  # centre first, then 4 ring points
IRIS_POINTS = np.concatenate(IRIS_SETS)
EYE_LOOPS = (RIGHT_EYE, LEFT_EYE)
DEFAULT_SCLERA = (0.86, 0.82, 0.79)
DEFAULT_IRIS = (0.30, 0.20, 0.14)
UPPER_LIDS = (RIGHT_EYE[9:16], LEFT_EYE[9:16])
LID_CENTRES = (RIGHT_EYE_LIDS, LEFT_EYE_LIDS)  # (upper, lower) lid-centre points per eye
CHEEK_POINTS = (118, 347)  # below each eye (subject's right first): with the lower-lid centre, the under-eye skin
#: The eye white a look uncovers is at least this share of the under-eye skin's luma. The whites a source shows
#: beside a centred iris are its corners, in the lids' and the nose's shadow; the white under the iris is lit like
#: the skin: on the shared clips the white a sideways look uncovers reads 1.05 (d0), 1.18 (d12) and 0.80 (d3) of
#: the under-eye skin's luma, where the whites beside the first frame's centred irises read 0.77-0.87 (d0, d12).
WHITE_FLOOR = 1.0
WHITE_MAX_GAIN = 1.5  # the most the uncovered white is brightened over the source's own


def iris_cover_radius(radius: torch.Tensor) -> torch.Tensor:
    """Radius (pixels) of the disc painted out of the source and drawn at the target, for an iris ``radius``:
    the iris and a half-pixel rim. A wider disc (1.08 r + 1) carried a ring of the source's lid shadow and lid
    colour along, and a landmark detector read the moved iris back towards the eye's middle: the detected iris
    moved 0.5-0.66 of the target's motion on d3 (self-reenactment gaze error 9.25 deg; 8.93 with this disc)."""
    return radius + 0.5


def iris_geometry(vertices: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Iris centres [B, 2, 2] (eye, xy pixels) and radii [B, 2] (pixels) of both eyes (subject's right first).

    The radius is the mean distance from the centre point (468 / 473) to its 4 ring points.
    """
    centres, radii = [], []
    for iris in IRIS_SETS:
        c = vertices[:, iris[0], :2]
        ring = vertices[:, iris[1:], :2]
        centres.append(c)
        radii.append((ring - c.unsqueeze(1)).norm(dim=2).mean(dim=1))
    return torch.stack(centres, dim=1), torch.stack(radii, dim=1).clamp(min=0.5)


def eye_frames(vertices: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Each eye's own frame, subject's right eye first.

    Parameters
    ----------
    vertices : torch.Tensor
        [B, 478, >=2] face meshes (pixels).

    Returns
    -------
    mid : torch.Tensor
        [B, 2, 2] (eye, xy) the midpoint of the eye's two corners (pixels).
    axis : torch.Tensor
        [B, 2, 2] the unit vector from the outer to the inner corner.
    width : torch.Tensor
        [B, 2] the corner distance (pixels).
    """
    mids, axes, widths = [], [], []
    for loop in EYE_LOOPS:
        outer, inner = vertices[:, loop[0], :2], vertices[:, loop[8], :2]
        d = inner - outer
        w = d.norm(dim=1).clamp(min=1e-3)
        mids.append(0.5 * (outer + inner))
        axes.append(d / w.unsqueeze(1))
        widths.append(w)
    return torch.stack(mids, 1), torch.stack(axes, 1), torch.stack(widths, 1)


def iris_offsets(vertices: torch.Tensor) -> torch.Tensor:
    """[B, 2, 2]: each iris centre in its eye's frame (:func:`eye_frames`), (along the corner line towards the
    inner corner, across it), in eye widths. A look sideways moves the first, a look up or down the second."""
    centres, _ = iris_geometry(vertices)
    mid, axis, width = eye_frames(vertices)
    d = centres - mid
    along = (d * axis).sum(-1)
    across = d[..., 1] * axis[..., 0] - d[..., 0] * axis[..., 1]
    return torch.stack([along, across], -1) / width.unsqueeze(-1)


def from_iris_offsets(vertices: torch.Tensor, offsets: torch.Tensor) -> torch.Tensor:
    """[B, 2, 2] iris centres (pixels) at ``offsets`` [B, 2, 2] (:func:`iris_offsets`) in the eyes of
    ``vertices`` [B, 478, >=2]."""
    mid, axis, width = eye_frames(vertices)
    normal = torch.stack([-axis[..., 1], axis[..., 0]], -1)
    off = offsets * width.unsqueeze(-1)
    return mid + off[..., :1] * axis + off[..., 1:] * normal


def eye_opening_masks(vertices: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """Binary masks [B, 2, H, W] of the two eye openings (inside the lid contours), subject's right first."""
    return triangle_set_masks(vertices, [right_eye_triangles(), left_eye_triangles()], height, width)


@dataclass
class EyeSource:
    """What the eye layer needs from the source image (batch Bs, usually 1).

    iris_texture: [Bs, 3, H, W] source with pixels outside the visible eye opening set to the iris colour.
    iris_free: [Bs, 3, H, W] source with each iris disc painted over with shaded eye white.
    centres: [Bs, 2, 2] iris centres (pixels); radii: [Bs, 2] iris radii (pixels).
    sclera: [Bs, 2, 3] eye-white colour per eye; iris_colour: [Bs, 2, 3] mean visible iris colour per eye.
    lash_colour: [Bs, 2, 3] colour along the upper-lid margin; lid_gap: [Bs, 2] upper-to-lower lid distance
    (pixels) at the lid centres, the reference for how open the eye is; eye_span: [Bs] outer-corner distance
    (pixels), the face scale.
    """

    iris_texture: torch.Tensor
    iris_free: torch.Tensor
    centres: torch.Tensor
    radii: torch.Tensor
    sclera: torch.Tensor
    iris_colour: torch.Tensor
    lash_colour: torch.Tensor
    lid_gap: torch.Tensor
    eye_span: torch.Tensor


def _masked_mean(img: torch.Tensor, weight: torch.Tensor, fallback: torch.Tensor) -> torch.Tensor:
    """Mean colour [B, 3] of img [B, 3, H, W] under weight [B, 1, H, W]; ``fallback`` [3] where the weight is ~0."""
    w = weight.sum(dim=(2, 3))
    mean = (img * weight).sum(dim=(2, 3)) / w.clamp(min=1e-6)
    return torch.where(w > 3.0, mean, fallback.to(img).expand_as(mean))


def _bright_mean(img: torch.Tensor, region: torch.Tensor, fraction: float, fallback: torch.Tensor) -> torch.Tensor:
    """Mean colour [B, 3] of the brightest ``fraction`` of ``region`` [B, 1, H, W] pixels (eye white: no lashes)."""
    B = img.shape[0]
    counts = (region[:, 0] > 0.5).view(B, -1).sum(1)
    mean = _masked_mean(img, luma_share_mask(img, region, fraction).to(img.dtype), fallback)
    return torch.where((counts >= 4).view(B, 1), mean, fallback.to(img).expand_as(mean))


@torch.no_grad()
def pixel_distance(pixels: torch.Tensor, centre: torch.Tensor) -> torch.Tensor:
    """[B, 1, H, W]: the distance of pixel positions [1 or B, 2, H, W] from points [B, 2, 1, 1] (pixels); ``hypot``
    of the two differences, ~50x faster on the CPU than ``Tensor.norm(dim=1)`` over such maps."""
    d = pixels - centre
    return torch.hypot(d[:, :1], d[:, 1:2])


def prepare_eyes(src_image: torch.Tensor, src_vertices: torch.Tensor) -> EyeSource:
    """Measure the source eyes and build the iris texture and the iris-free source.

    src_image: [Bs, 3, H, W] in [0, 1]; src_vertices: [Bs, 478, 2 or 3] pixels of that image.
    """
    B, _, H, W = src_image.shape
    centres, radii = iris_geometry(src_vertices)
    openings = eye_opening_masks(src_vertices, H, W)  # [B, 2, H, W]
    pix = pixel_centres(H, W, src_image.device, src_image.dtype).unsqueeze(0)  # [1, 2, H, W]
    texture = src_image.clone()
    iris_free = src_image.clone()
    scleras, iris_cols = [], []
    eroded = -F.max_pool2d(-openings, 3, 1, 1)  # openings shrunk by a pixel: no lid or lash pixels
    scale = torch.tensor([2.0 / W, 2.0 / H], device=src_image.device, dtype=src_image.dtype).view(1, 2, 1, 1)
    for e in range(2):
        c = centres[:, e].view(B, 2, 1, 1)
        r = radii[:, e].view(B, 1, 1, 1)
        dist = pixel_distance(pix, c)  # [B, 1, H, W]
        opening = openings[:, e:e + 1]
        white_region = eroded[:, e:e + 1] * ((dist > 1.15 * r) & (dist < 3.0 * r)).to(opening.dtype)
        sclera = _bright_mean(src_image, white_region, 0.5, torch.tensor(DEFAULT_SCLERA))
        iris_col = _masked_mean(src_image, eroded[:, e:e + 1] * (dist < 0.85 * r).to(opening.dtype),
                                torch.tensor(DEFAULT_IRIS))
        white_gain = _white_gain(src_image, src_vertices, e, pix, r, sclera)
        scleras.append(sclera)
        iris_cols.append(iris_col)
        near = (dist < 2.5 * r).to(opening.dtype)  # limit each eye's edits to its own neighbourhood
        # Iris texture: outside the visible opening, the iris's own mean colour (lids never enter a moved iris).
        soft = soften(opening)
        inside = soft * near
        fill = iris_col.view(B, 3, 1, 1).expand(B, 3, H, W)
        texture = torch.where(near > 0, inside * src_image + (1 - inside) * fill, texture)
        # Iris-free source: each row of the disc (plus its limbal ring) is filled by interpolating the eye white
        # just left and right of it (where those samples are inside the opening), with the estimated eye-white
        # colour as a weak prior; only inside the opening, so lids keep their own pixels.
        rad = iris_cover_radius(r)
        dy = pix[:, 1:2] - c[:, 1:2]
        half = torch.sqrt((rad * rad - dy * dy).clamp(min=0.0)) + 1.0
        left = torch.cat([c[:, 0:1] - half, pix[:, 1:2].expand_as(half)], 1)
        right = torch.cat([c[:, 0:1] + half, pix[:, 1:2].expand_as(half)], 1)
        # Side samples come from a masked blur (eye-white pixels only), so one noisy or lash pixel cannot streak
        # a whole row.
        m = eroded[:, e:e + 1]
        blur_m = blur3(m, 2)
        blur_img = blur3(src_image * m, 2) / blur_m.clamp(min=1e-3)
        both = torch.cat([blur_img, (blur_m > 0.3).to(m.dtype) * m], 1)
        s_l = warp_image(both, (left * scale - 1.0).permute(0, 2, 3, 1))
        s_r = warp_image(both, (right * scale - 1.0).permute(0, 2, 3, 1))
        t = ((pix[:, 0:1] - left[:, 0:1]) / (2.0 * half)).clamp(0.0, 1.0)
        w_l = s_l[:, 3:4].clamp(0.0, 1.0) * (1.0 - t)
        w_r = s_r[:, 3:4].clamp(0.0, 1.0) * t
        w_s = 0.15
        lid_shade = 1.0 - 0.2 * ((c[:, 1:2] + r - pix[:, 1:2]) / (2.0 * r)).clamp(0.0, 1.0)  # upper-lid shadow
        prior = sclera.view(B, 3, 1, 1) * lid_shade
        white = (w_l * s_l[:, :3] + w_r * s_r[:, :3] + w_s * prior) / (w_l + w_r + w_s)
        white = blur3(white, 2)  # rows differ in their samples: smooth across rows
        white = (white * white_gain.view(B, 1, 1, 1)).clamp(0.0, 1.0)
        # Under the upper lid, its margin's own colours (lash line, lid shadow) carried along the lid instead.
        lid_white, depth = _lid_following_white(src_image, src_vertices, e, soft, c, rad, prior)
        top, bottom = LASH_BAND
        white = torch.lerp(lid_white, white, smoothstep((depth - top * r) / ((bottom - top) * r)))
        disc = torch.clamp(rad + 0.5 - dist, 0.0, 1.0) * soft
        iris_free = torch.lerp(iris_free, white, disc)
    lashes = [_lash_colour(src_image, src_vertices, e) for e in range(2)]
    return EyeSource(iris_texture=texture, iris_free=iris_free, centres=centres, radii=radii,
                     sclera=torch.stack(scleras, 1), iris_colour=torch.stack(iris_cols, 1),
                     lash_colour=torch.stack(lashes, 1), lid_gap=lid_gaps(src_vertices),
                     eye_span=eye_span(src_vertices))


#: The lash line's colour: the darkest ``LASH_SHARE`` of the source's colours along the upper-lid margin and up to
#: ``LASH_REACH`` eye widths above it. The tracked margin runs on the lid skin just under or over the lashes as
#: often as on them: the margin points' mean (used before) read a lash colour close to the lid's, and a shut eye's
#: lash line hardly showed (d3's left eye: a brown slab that a landmark detector reads as an open eye).
LASH_REACH = 0.022
LASH_SHARE = 0.3


def _lash_colour(src_image: torch.Tensor, src_vertices: torch.Tensor, eye: int) -> torch.Tensor:
    """[B, 3]: eye ``eye``'s lash-line colour (``LASH_SHARE``, ``LASH_REACH``) in ``src_image`` [B, 3, H, W],
    from its face meshes ``src_vertices`` [B, 478, >=2] (pixels)."""
    B = src_image.shape[0]
    dt = src_image.dtype
    up = -eye_down_normal(src_vertices, eye).to(dt)  # across the eye's corner line, up the image
    steps = torch.linspace(0.0, LASH_REACH, 5, device=src_image.device, dtype=dt)
    reach = steps.view(1, -1, 1, 1) * eye_span(src_vertices).to(dt).view(B, 1, 1, 1)  # [B, 5, 1, 1] pixels
    pts = src_vertices[:, UPPER_LIDS[eye], :2].to(dt).unsqueeze(1) + reach * up.view(B, 1, 1, 2)  # [B, 5, 7, 2]
    colours = sample_points(src_image, pts.reshape(B, -1, 2)).transpose(1, 2)  # [B, 3, 35]
    k = max(1, math.ceil(LASH_SHARE * colours.shape[-1]))
    darkest = luma(colours.unsqueeze(-1))[:, 0, :, 0].topk(k, dim=1, largest=False).indices  # [B, k]
    return colours.gather(2, darkest.unsqueeze(1).expand(-1, 3, -1)).mean(2)


#: Iris radii below the upper lid down to which the painted white is the lid margin's own colours, and where
#: the row-wise white (brightened to ``WHITE_FLOOR``) has taken over.
LASH_BAND = (0.25, 0.75)


def _lid_following_white(src_image: torch.Tensor, src_vertices: torch.Tensor, eye: int, opening: torch.Tensor,
                         centre: torch.Tensor, rad: torch.Tensor, prior: torch.Tensor
                         ) -> tuple[torch.Tensor, torch.Tensor]:
    """The eye white under eye ``eye``'s iris interpolated along its upper lid: each pixel at depth ``d`` below
    the upper lid takes the source at the same depth below the lid just left and right of the iris disc, so the
    lash line and the lid's shadow continue across where the iris was (a row-wise fill paints the top rows with
    the white from below: the moved iris left a lash-less gap that a landmark detector reads as a lower lid).

    src_image [B, 3, H, W]; src_vertices [B, 478, >=2] pixels; opening [B, 1, H, W] the soft opening mask;
    centre [B, 2, 1, 1] the iris centre and rad [B, 1, 1, 1] the painted disc's radius (pixels); prior
    [B, 3, H, W] the white's colour where neither side lies in the opening. Returns (white [B, 3, H, W], depth
    [B, 1, H, W] pixels below the upper lid, negative above it).
    """
    B, _, H, W = src_image.shape
    loop = EYE_LOOPS[eye]
    x = src_vertices[:, :, :2].to(src_image.dtype)
    mids, axes, _ = eye_frames(x)
    origin, axis = mids[:, eye], axes[:, eye]  # [B, 2] the eye's middle and its corner line's direction
    down = torch.stack([-axis[:, 1], axis[:, 0]], 1)
    down = down * torch.where(down[:, 1:2] < 0, -1.0, 1.0)  # [B, 2] across it, towards the lower lid
    lid = x[:, np.r_[loop[0], UPPER_LIDS[eye], loop[8]]] - origin[:, None]  # [B, 9, 2]
    u_k, v_k = (lid * axis[:, None]).sum(-1), (lid * down[:, None]).sum(-1)
    u_k, order = u_k.sort(dim=1)
    v_k = v_k.gather(1, order)

    def lid_v(u: torch.Tensor) -> torch.Tensor:  # [B, N] -> the upper lid's v at u (held beyond the corners)
        return interp1d(u, u_k, v_k)

    pix = pixel_centres(H, W, src_image.device, src_image.dtype).view(1, 2, H * W) - origin[:, :, None]
    u = (pix * axis[:, :, None]).sum(1)  # [B, HW]
    v = (pix * down[:, :, None]).sum(1)
    depth = v - lid_v(u)
    u_c = ((centre.view(B, 2) - origin) * axis).sum(1, keepdim=True)  # [B, 1]
    reach = rad.view(B, 1) + 1.0
    scale = torch.tensor([2.0 / W, 2.0 / H], device=src_image.device, dtype=src_image.dtype).view(1, 1, 2)
    both = torch.cat([src_image, opening], 1)
    samples, weights = [], []
    for side in (-1.0, 1.0):
        u_s = (u_c + side * reach).expand_as(u)
        v_s = lid_v(u_s) + depth
        at = origin[:, None] + u_s[..., None] * axis[:, None] + v_s[..., None] * down[:, None]  # [B, HW, 2]
        s = warp_image(both, (at * scale - 1.0).view(B, H, W, 2))
        samples.append(s[:, :3])
        weights.append(s[:, 3:4].clamp(0.0, 1.0))
    t = ((u - (u_c - reach)) / (2.0 * reach)).clamp(0.0, 1.0).view(B, 1, H, W)
    w_l, w_r, w_s = weights[0] * (1.0 - t), weights[1] * t, 0.05
    white = (w_l * samples[0] + w_r * samples[1] + w_s * prior) / (w_l + w_r + w_s)
    return white, depth.view(B, 1, H, W)


def _disc_median(image: torch.Tensor, pix: torch.Tensor, centre: torch.Tensor, radius: torch.Tensor,
                 fallback: torch.Tensor) -> torch.Tensor:
    """[B, C]: the per-channel median of ``image`` [B, C, H, W] over the pixels whose centres (``pix``
    [1, 2, H, W]) lie within ``radius`` [B] pixels of ``centre`` [B, 2]; ``fallback`` [B, C] where none does."""
    B = image.shape[0]
    inside = pixel_distance(pix, centre.to(image.dtype).view(B, 2, 1, 1)) < radius.view(B, 1, 1, 1)
    return torch.stack([image[b][:, inside[b, 0]].median(dim=1).values if bool(inside[b].any()) else fallback[b]
                        for b in range(B)])


def _white_gain(src_image: torch.Tensor, src_vertices: torch.Tensor, eye: int, pix: torch.Tensor,
                radius: torch.Tensor, sclera: torch.Tensor) -> torch.Tensor:
    """[B] >= 1: how much to brighten the white painted under eye ``eye``'s iris so its luma is at least
    ``WHITE_FLOOR`` times the under-eye skin's (the median luma of a disc of 0.6 iris radii halfway between the
    lower-lid centre and the cheek point below it), at most ``WHITE_MAX_GAIN``. ``sclera`` [B, 3] is the source's
    own white estimate, ``radius`` [B, 1, 1, 1] the iris radius, ``pix`` [1, 2, H, W] the pixel centres."""
    B = src_image.shape[0]
    spot = 0.5 * (src_vertices[:, LID_CENTRES[eye][1], :2] + src_vertices[:, CHEEK_POINTS[eye], :2])
    skin = _disc_median(luma(src_image), pix, spot, 0.6 * radius.view(B), src_image.new_zeros(B, 1))[:, 0]
    own = luma(sclera.view(B, 3, 1, 1)).view(B).clamp(min=1e-3)
    return (WHITE_FLOOR * skin / own).clamp(1.0, WHITE_MAX_GAIN)


BROW_CENTRES = (RIGHT_BROW[7], LEFT_BROW[7])  # the middle of each brow's lower edge (52, 282)
#: The lid skin a closing lid unfolds: its colour is the mean of the brightest ``LID_SKIN_SHARE`` (by luma) of a
#: disc ``LID_SKIN_SPOT[0]`` of the way from the upper-lid centre to the brow's lower edge, ``LID_SKIN_SPOT[1]`` of
#: that distance across; the region it paints reaches ``LID_SKIN_REACH`` of that distance above the upper lid. A
#: shut lid faces forward and catches the light like the lit skin in that disc, not like the crease's shadow or the
#: brow's hairs the disc also holds: on a deep-set eye a small disc's median read the crease (d3's left eye: a shut
#: eye painted as a dark slab).
LID_SKIN_SPOT = (0.6, 0.4)
LID_SKIN_SHARE = 0.25
LID_SKIN_REACH = 0.35


def lid_skin_fill(image: torch.Tensor, vertices: torch.Tensor) -> torch.Tensor:
    """``image`` with each eye (its opening, the lashes below it and the skin band above it, softened) painted with
    the colour of the eye's own lid skin: what a closing lid's stretched band reads, so a shut eye shows lid skin
    and a lash line rather than the open eye's crease, lashes and iris smeared down over it.

    Parameters
    ----------
    image : torch.Tensor
        [B, 3, H, W] in [0, 1] (the iris-free source).
    vertices : torch.Tensor
        [B, 478, >=2] its face meshes (pixels).

    Returns
    -------
    torch.Tensor
        [B, 3, H, W] in [0, 1].
    """
    B, _, H, W = image.shape
    pix = pixel_centres(H, W, image.device, image.dtype).unsqueeze(0)
    down = (0.02 * eye_span(vertices)).clamp(min=0.8)  # the lower lashes
    out = image
    for e in range(2):
        lid = vertices[:, LID_CENTRES[e][0], :2].to(image.dtype)
        brow = vertices[:, BROW_CENTRES[e], :2].to(image.dtype)
        reach = (brow - lid).norm(dim=1)  # [B]
        spot = lid + LID_SKIN_SPOT[0] * (brow - lid)
        disc = pixel_distance(pix, spot.view(B, 2, 1, 1)) < (LID_SKIN_SPOT[1] * reach).view(B, 1, 1, 1)
        colour = _bright_mean(image, disc.to(image.dtype), LID_SKIN_SHARE, image.mean(dim=(2, 3)))  # [B, 3]
        region = torch.cat([eye_opening_masks(inflate_eye_loops(vertices[b:b + 1], float(LID_SKIN_REACH * reach[b]),
                                                                  down[b:b + 1]), H, W)[:, e:e + 1] for b in range(B)])
        region = soften(region.to(image.dtype))
        out = torch.lerp(out, colour.view(B, 3, 1, 1).expand_as(out), region)
    return out


def eye_span(vertices: torch.Tensor) -> torch.Tensor:
    """[B] distance between the outer eye corners (pixels): the face scale used to compare frames."""
    return (vertices[:, RIGHT_EYE[0], :2] - vertices[:, LEFT_EYE[0], :2]).float().norm(dim=1)


def eye_down_normal(vertices: torch.Tensor, eye: int) -> torch.Tensor:
    """[B, 2] float32: the unit normal of eye ``eye``'s corner line in face meshes [B, V, >=2] (pixels), pointing
    down the image."""
    loop = EYE_LOOPS[eye]
    span = (vertices[:, loop[8], :2] - vertices[:, loop[0], :2]).float()
    normal = torch.stack([-span[:, 1], span[:, 0]], dim=1) / span.norm(dim=1, keepdim=True).clamp(min=1e-3)
    return normal * torch.where(normal[:, 1:2] < 0, -1.0, 1.0)


def inflate_eye_loops(vertices: torch.Tensor, up_px: float, down_px: float | torch.Tensor) -> torch.Tensor:
    """Copy of vertices [B, V, >=2] whose upper-lid contours move ``up_px`` up and lower-lid contours
    ``down_px`` (scalar or [B]) down, across each eye's corner line."""
    down = torch.as_tensor(down_px, device=vertices.device, dtype=vertices.dtype).reshape(-1, 1, 1)
    out = vertices.clone()
    for e in range(2):
        loop = EYE_LOOPS[e]
        normal = eye_down_normal(vertices, e).to(out.dtype).unsqueeze(1)
        out[:, loop[1:8], :2] += down * normal
        out[:, loop[9:16], :2] -= up_px * normal
    return out


def lid_gaps(vertices: torch.Tensor) -> torch.Tensor:
    """[B, 2] distance (pixels) between the upper and lower lid centre points of each eye."""
    return torch.stack([(vertices[:, up, :2] - vertices[:, lo, :2]).float().norm(dim=1)
                        for up, lo in LID_CENTRES], dim=1)


def eye_layer(eyes: EyeSource, dst_vertices: torch.Tensor, height: int, width: int,
              openings: torch.Tensor | None = None, gaze_gain: tuple[float, float] = (1.0, 1.0),
              gaze_rest: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """The two eyes' layer at the target: irises, and a lash shadow over a nearly closed opening.

    dst_vertices: [B, 478, >=2] target pixels. openings: optional precomputed binary masks [B, 2, H, W] of the
    target eye openings (:func:`eye_opening_masks`). gaze_gain: (along, across) the eye's corner line: the iris
    is drawn with the move its gaze makes times these (1: at the target's iris points); the move is measured from
    ``gaze_rest`` [B, 478, >=2] (the target mesh at the source's own gaze: a head turn's own shift of the iris in
    the eye is no gaze and is not scaled), needed with a gain. Returns (rgb [B, 3, H, W], alpha [B, 1, H, W]).
    Iris: a disc of :func:`iris_cover_radius` at the target centre, sampled from the source iris texture by
    ``p_src = c_src + (p - c_dst) * r_src / r_dst``, clipped by the softened target lid polygon. Closing: as the
    lid gap falls below ~half the source's (face-scale corrected), the opening fades to the lash colour, so a
    shut eye is a dark lash line, not a sliver of eye white.
    """
    B = dst_vertices.shape[0]
    dev, dt = dst_vertices.device, eyes.iris_texture.dtype
    if openings is None:
        openings = eye_opening_masks(dst_vertices, height, width)
    lids = soften(openings.to(dt))

    def per_batch(x: torch.Tensor) -> torch.Tensor:
        return x.to(dt).expand(B, *x.shape[1:]) if x.shape[0] == 1 else x.to(dt)

    c_dst, r_dst = iris_geometry(dst_vertices.to(dt))
    if tuple(gaze_gain) != (1.0, 1.0):
        if gaze_rest is None:
            raise ValueError("eye_layer: a gaze gain needs gaze_rest, the target mesh at the source's own gaze")
        gain = torch.tensor(gaze_gain, device=dev, dtype=dt)
        dst = dst_vertices.to(dt)
        at_rest = dst.clone()  # the rest irises in the target's own eyes
        at_rest[:, IRIS_POINTS, :2] = gaze_rest[:, IRIS_POINTS, :2].to(dt)
        rest = iris_offsets(at_rest)
        c_dst = from_iris_offsets(dst, rest + gain * (iris_offsets(dst) - rest))
    c_src, r_src = per_batch(eyes.centres), per_batch(eyes.radii)
    pix = pixel_centres(height, width, dev, dt).unsqueeze(0)  # [1, 2, H, W]
    # Each pixel belongs to the nearer target iris; one similarity transform per eye, one grid_sample in all.
    d0 = pixel_distance(pix, c_dst[:, 0].view(B, 2, 1, 1))
    d1 = pixel_distance(pix, c_dst[:, 1].view(B, 2, 1, 1))
    use1 = d1 < d0

    def pick(x: torch.Tensor) -> torch.Tensor:  # [B, 2, ...] per eye -> per pixel
        shape = (B, -1, 1, 1)
        return torch.where(use1, x[:, 1].reshape(shape), x[:, 0].reshape(shape))

    c_d, c_s, r_d, r_s = pick(c_dst), pick(c_src), pick(r_dst), pick(r_src)
    lid = torch.where(use1, lids[:, 1:2], lids[:, 0:1])
    dist = torch.minimum(d0, d1)
    src_pos = c_s + (pix - c_d) * (r_s / r_d)
    hs, ws = eyes.iris_texture.shape[-2:]
    to_grid = torch.tensor([2.0 / ws, 2.0 / hs], device=dev, dtype=dt).view(1, 2, 1, 1)
    iris = warp_image(eyes.iris_texture, (src_pos * to_grid - 1.0).permute(0, 2, 3, 1))
    a_iris = torch.clamp(iris_cover_radius(r_d) - dist + 0.5, 0.0, 1.0) * lid

    # Closing: openness = target lid gap / (source lid gap * face scale).
    face_scale = (eye_span(dst_vertices).to(dt) / per_batch(eyes.eye_span).clamp(min=1e-3)).view(B, 1)
    openness = lid_gaps(dst_vertices).to(dt) / (per_batch(eyes.lid_gap) * face_scale).clamp(min=1e-3)
    closing = smoothstep((0.55 - openness) / 0.45)  # [B, 2]
    # A nearly shut opening can be thinner than a pixel, and eye white often peeks just below the tracked lower
    # lid: shade a copy whose upper lids move up 0.6 px and lower lids down 4% of the eye width (>= 0.8 px).
    down = (0.02 * eye_span(dst_vertices).to(dt)).clamp(min=0.8)
    shade_region = soften(eye_opening_masks(inflate_eye_loops(dst_vertices, 0.6, down), height, width).to(dt))
    a_shade = 0.9 * pick(closing) * torch.where(use1, shade_region[:, 1:2], shade_region[:, 0:1])
    shade = pick(per_batch(eyes.lash_colour))
    alpha = a_iris + a_shade * (1.0 - a_iris)
    rgb = (iris * a_iris * (1.0 - a_shade) + shade * a_shade) / alpha.clamp(min=1e-6)
    return rgb, a_iris * (1.0 - a_shade) + a_shade


def lid_split_vertices(src_vertices: torch.Tensor, dst_vertices: torch.Tensor, split_edges: np.ndarray,
                       lash_fraction: float = 0.08) -> tuple[torch.Tensor, torch.Tensor]:
    """Append the upper-lid split vertices of ``lid_split_mesh()`` to source and target vertices.

    src_vertices: [B, 478, C]; dst_vertices: [B, 478, C] (same B). Each split vertex sits ``lash_fraction`` eye
    widths from the lid margin along its edge in the source (capped at half the edge); in the target it sits at
    the same distance (scaled with the face) when the edge is stretched, i.e. a closing lid, and at the same
    edge fraction otherwise, so an unchanged lid warps exactly as before. Returns [B, 478 + E, C] each.
    """
    e = torch.as_tensor(split_edges, device=dst_vertices.device, dtype=torch.long)
    a, b = e[:, 0], e[:, 1]
    eye_w = 0.5 * ((src_vertices[:, RIGHT_EYE[0], :2] - src_vertices[:, RIGHT_EYE[8], :2]).norm(dim=1)
                   + (src_vertices[:, LEFT_EYE[0], :2] - src_vertices[:, LEFT_EYE[8], :2]).norm(dim=1))
    ratio = ((dst_vertices[:, 33, :2] - dst_vertices[:, 263, :2]).norm(dim=1)
             / (src_vertices[:, 33, :2] - src_vertices[:, 263, :2]).norm(dim=1).clamp(min=1e-3))
    d_src = src_vertices[:, b] - src_vertices[:, a]
    d_dst = dst_vertices[:, b] - dst_vertices[:, a]
    len_src = d_src[..., :2].norm(dim=2).clamp(min=1e-3)
    len_dst = d_dst[..., :2].norm(dim=2).clamp(min=1e-3)
    f = (lash_fraction * eye_w.unsqueeze(1) / len_src).clamp(max=0.5)
    g = f * (len_src * ratio.unsqueeze(1) / len_dst).clamp(max=1.0)
    src_mid = src_vertices[:, a] + f.unsqueeze(2) * d_src
    dst_mid = dst_vertices[:, a] + g.unsqueeze(2) * d_dst
    return torch.cat([src_vertices, src_mid], 1), torch.cat([dst_vertices, dst_mid], 1)

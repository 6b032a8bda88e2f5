"""Inner-mouth layer: what shows inside the target's inner-lip contour.

Geometry is measured in a per-frame *mouth frame*: origin between the inner-lip corners (78, 308), ``u`` along
the corner line normalised to [-1, 1], ``v`` perpendicular to it (pixels, down positive). The upper and lower
inner-lip contours become curves ``v_up(u)``, ``v_lo(u)``, interpolated piecewise-linearly per pixel.

The layer is built from two sources:

* the source's own mouth interior, split at its middle: the upper half rides with the upper lip and the lower
  half with the lower lip (a translation per column, scaled with the face), so real teeth keep their size and
  shape as the jaw opens instead of being stretched;
* a synthesised interior (:func:`synthesize_mouth`) wherever the source has nothing to give: a dark red-brown
  cavity, darkest in the middle, with an upper-teeth band under the upper lip (and a faint lower band) whose
  height follows the opening. It is used alone when the source mouth is closed.

A driver's mouth (its teeth and tongue) can fill the opening instead: :func:`mouth_map` gives the affine maps that
carry the driver crop's mouth opening onto the target's.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from thead.face.topology import LIPS_INNER, LIPS_OUTER
from thead.render.dense_flow import interp1d, smoothstep
from thead.render.eyes import eye_span
from thead.render.images import luma, luma_share_mask
from thead.render.masks import blur3, soften, triangle_set_masks
from thead.render.mesh_topology import inner_mouth_triangles
from thead.render.mesh_warp import pixel_centres, sample_points, warp_image

UPPER_INNER = LIPS_INNER[0:11]  # corner 78, upper inner lip, corner 308
LOWER_INNER = LIPS_INNER[[0, *range(19, 9, -1)]]  # corner 78, lower inner lip, corner 308

CAVITY_EDGE = (0.40, 0.18, 0.17)
CAVITY_DEEP = (0.13, 0.05, 0.05)
TONGUE = (0.55, 0.27, 0.27)
TEETH = (0.90, 0.87, 0.80)
TOOTH_GAPS = (0.0, 0.2, -0.2, 0.36, -0.36, 0.5, -0.5)  # tooth boundaries, in u
TEETH_HEIGHT = (0.32, 0.22)  # the upper teeth band's largest height, half mouth widths: grin, wide open


@dataclass
class MouthFrame:
    """Per-frame mouth coordinates. origin [B, 2], axis_u / axis_v [B, 2] unit vectors, half_width [B] pixels,
    upper / lower inner-lip curves as sorted knots u [B, 11] and their v [B, 11] (pixels)."""

    origin: torch.Tensor
    axis_u: torch.Tensor
    axis_v: torch.Tensor
    half_width: torch.Tensor
    upper_u: torch.Tensor
    upper_v: torch.Tensor
    lower_u: torch.Tensor
    lower_v: torch.Tensor


def mouth_frame(vertices: torch.Tensor) -> MouthFrame:
    """The mouth frame of face meshes (see the module docstring).

    Parameters
    ----------
    vertices : torch.Tensor
        [B, 478, >=2] face meshes (pixels).

    Returns
    -------
    MouthFrame
        Origin between the inner-lip corners, axes, half width (pixels) and the inner-lip curves as knots.
    """
    xy = vertices[..., :2].float()
    right, left = xy[:, LIPS_INNER[0]], xy[:, LIPS_INNER[10]]
    origin = 0.5 * (right + left)
    span = left - right
    half = 0.5 * span.norm(dim=1).clamp(min=1e-3)
    axis_u = span / (2.0 * half).unsqueeze(1)
    axis_v = torch.stack([-axis_u[:, 1], axis_u[:, 0]], dim=1)  # +90 deg in image coords: points down

    def knots(ids):
        rel = xy[:, ids] - origin.unsqueeze(1)
        u = (rel * axis_u.unsqueeze(1)).sum(2) / half.unsqueeze(1)
        v = (rel * axis_v.unsqueeze(1)).sum(2)
        u, order = u.sort(dim=1)
        return u.contiguous(), v.gather(1, order)

    uu, vu = knots(UPPER_INNER)
    ul, vl = knots(LOWER_INNER)
    return MouthFrame(origin, axis_u, axis_v, half, uu, vu, ul, vl)


def mouth_coordinates(frame: MouthFrame, height: int, width: int
                      ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Every pixel's mouth coordinates.

    Parameters
    ----------
    frame : MouthFrame
        The mouth frames of B faces.
    height, width : int
        The image's size in pixels.

    Returns
    -------
    tuple of torch.Tensor
        (u, v, v_up, v_lo), each [B, H, W]: u along the corner line (normalised, corners at -1 and 1), v across it
        (pixels, down positive), and the upper and lower inner-lip curves at u (pixels).
    """
    B = frame.origin.shape[0]
    pix = pixel_centres(height, width, frame.origin.device).view(1, 2, -1) - frame.origin.view(B, 2, 1)
    u = (pix * frame.axis_u.view(B, 2, 1)).sum(1) / frame.half_width.view(B, 1)
    v = (pix * frame.axis_v.view(B, 2, 1)).sum(1)
    v_up = interp1d(u, frame.upper_u, frame.upper_v)
    v_lo = interp1d(u, frame.lower_u, frame.lower_v)
    shape = (B, height, width)
    return u.view(shape), v.view(shape), v_up.view(shape), v_lo.view(shape)


def inner_mouth_mask(vertices: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """The mouth opening: the inner-lip polygon.

    Parameters
    ----------
    vertices : torch.Tensor
        [B, 478, >=2] face meshes (pixels).
    height, width : int
        The image's size in pixels.

    Returns
    -------
    torch.Tensor
        [B, 1, H, W] binary mask.
    """
    return triangle_set_masks(vertices, [inner_mouth_triangles()], height, width)


def _colour(rgb: tuple[float, float, float], like: torch.Tensor) -> torch.Tensor:
    return torch.tensor(rgb, device=like.device, dtype=like.dtype).view(1, 3, 1, 1)


def synthesize_mouth(dst_vertices: torch.Tensor, height: int, width: int,
                     teeth: float | torch.Tensor = 1.0, frame: MouthFrame | None = None,
                     teeth_colour: torch.Tensor | None = None) -> torch.Tensor:
    """A synthetic mouth interior for the target inner-lip polygon (valid inside it only).

    Dark red-brown cavity (lighter at the lips, darkest in the middle and towards the back), an upper-teeth
    band hanging from the upper lip, ``min(0.6 * opening, TEETH_HEIGHT * half mouth width)`` tall (0.32 in a
    grin, 0.22 wide open), across the mouth in a grin but only across its front, darker towards the corners, in a
    wide-open one, with faint tooth gaps, and a fainter lower band; a hint of tongue low in a wide-open mouth.

    Parameters
    ----------
    dst_vertices : torch.Tensor
        [B, 478, >=2] target face meshes (pixels).
    height, width : int
        The image's size in pixels.
    teeth : float or torch.Tensor
        Scalar or [B] in [0, 1]: scales both teeth bands.
    frame : MouthFrame or None
        ``mouth_frame(dst_vertices)`` if already computed.
    teeth_colour : torch.Tensor or None
        [B or 1, 3] RGB in [0, 1] (default: ``TEETH``, off-white).

    Returns
    -------
    torch.Tensor
        [B, 3, H, W] RGB in [0, 1].
    """
    frame = mouth_frame(dst_vertices) if frame is None else frame
    u, v, v_up, v_lo = mouth_coordinates(frame, height, width)
    B = u.shape[0]
    hw = frame.half_width.view(B, 1, 1)
    opening = (v_lo - v_up).clamp(min=1e-3)
    tv = ((v - v_up) / opening).clamp(0.0, 1.0)
    au = u.abs().clamp(max=1.0)
    depth = (1.0 - (2.0 * tv - 1.0).abs()) * (1.0 - 0.6 * au * au)
    depth = smoothstep(depth * 1.6)
    cavity = _colour(CAVITY_EDGE, u) + depth.unsqueeze(1) * (_colour(CAVITY_DEEP, u) - _colour(CAVITY_EDGE, u))
    # Tongue: a soft mound rising from the lower lip, visible once the mouth is open a fair amount.
    open_frac = (opening / (2.0 * hw)).clamp(0.0, 1.0)
    tongue_top = 1.0 - 0.35 * (1.0 - au * au)  # in tv: highest in the middle
    tongue = smoothstep((tv - tongue_top) / 0.12 + 0.5) * smoothstep((open_frac - 0.12) / 0.15) * (1.0 - au)
    cavity = cavity + (0.8 * tongue).unsqueeze(1) * (_colour(TONGUE, u) * (0.75 + 0.25 * tv).unsqueeze(1) - cavity)

    teeth_t = torch.as_tensor(teeth, device=u.device, dtype=u.dtype).reshape(-1, 1, 1)
    # A grin shows teeth across the whole mouth; a wide-open mouth (``wide`` -> 1) only across its front, the arch
    # turning away into shadow towards the corners.
    wide = smoothstep((open_frac - 0.2) / 0.2)
    taper = 1.0 - smoothstep((au - 0.5 + 0.12 * wide) / (0.4 - 0.05 * wide))
    gaps = torch.stack([(u - g).abs() for g in TOOTH_GAPS], 0).amin(0) * hw  # pixels to nearest tooth boundary
    gap_shade = 1.0 - 0.15 * torch.exp(-(gaps / 0.5) ** 2)
    side_shade = 1.0 - (0.45 + 0.25 * wide) * au * au
    # Upper band: no taller than an incisor crown (TEETH_HEIGHT, grin to wide open), shaded by the lip.
    dv_up = v - v_up
    h_up = torch.minimum(0.6 * opening, (TEETH_HEIGHT[0] + (TEETH_HEIGHT[1] - TEETH_HEIGHT[0]) * wide) * hw) * taper
    a_up = ((h_up - dv_up) / 1.2 + 0.5).clamp(0.0, 1.0) * (h_up > 0.3).to(u.dtype)
    shade_up = (0.8 - 0.1 * wide + 0.2 * (dv_up / h_up.clamp(min=1e-3)).clamp(0.0, 1.0)) * side_shade * gap_shade
    # Lower band.
    dv_lo = v_lo - v
    h_lo = torch.minimum(0.3 * opening, 0.15 * hw) * taper
    a_lo = ((h_lo - dv_lo) / 1.2 + 0.5).clamp(0.0, 1.0) * (h_lo > 0.3).to(u.dtype)
    shade_lo = 0.72 * (0.85 + 0.15 * (dv_lo / h_lo.clamp(min=1e-3)).clamp(0.0, 1.0)) * side_shade * gap_shade
    out = cavity
    tooth = _colour(TEETH, u) if teeth_colour is None else teeth_colour.to(u).view(-1, 3, 1, 1)
    out = out + (a_up * teeth_t).unsqueeze(1) * (tooth * shade_up.unsqueeze(1) - out)
    out = out + (a_lo * teeth_t).unsqueeze(1) * (tooth * shade_lo.unsqueeze(1) - out)
    return out


@torch.no_grad()
def source_teeth_colour(src_image: torch.Tensor, src_vertices: torch.Tensor) -> torch.Tensor:
    """The source's teeth colour: the brightest quarter of its mouth opening where that is clearly teeth.

    Parameters
    ----------
    src_image : torch.Tensor
        [Bs, 3, H, W] RGB in [0, 1].
    src_vertices : torch.Tensor
        [Bs, 478, >=2] its face meshes (pixels).

    Returns
    -------
    torch.Tensor
        [Bs, 3] RGB: the mean of those pixels (luminance > 0.45, at least 6 of them), limited to [0.55, 0.97];
        else the default off-white ``TEETH``.
    """
    B, _, H, W = src_image.shape
    region = inner_mouth_mask(src_vertices, H, W)
    sel = (luma_share_mask(src_image, region, 0.25) & (luma(src_image) > 0.45)).view(B, -1)
    n = sel.sum(1, keepdim=True)
    mean = (src_image.view(B, 3, -1) * sel.unsqueeze(1)).sum(2) / n.clamp(min=1)
    default = torch.tensor(TEETH, device=src_image.device).expand(B, 3)
    # Real teeth are never quite white; keep the colour plausible.
    return torch.where(n >= 6, mean.clamp(0.55, 0.97), default)


@torch.no_grad()
def mouth_layer(
    dst_vertices: torch.Tensor,
    height: int,
    width: int,
    src_image: torch.Tensor | None = None,
    src_vertices: torch.Tensor | None = None,
    mouth_image: torch.Tensor | None = None,
    mask: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """The inner-mouth layer at the target.

    With ``mouth_image`` (e.g. the driver's mouth, already in the target frame) that image fills the polygon.
    Otherwise the source's interior rides with the lips where it exists and the synthesised interior fills the
    rest (synthetic teeth continue below real ones when the jaw opens further than the source's).

    Parameters
    ----------
    dst_vertices : torch.Tensor
        [B, 478, >=2] target face meshes (pixels).
    height, width : int
        The image's size in pixels.
    src_image : torch.Tensor or None
        [Bs, 3, Hs, Ws] the source in [0, 1] (None: synthesised interior only).
    src_vertices : torch.Tensor or None
        [Bs, 478, >=2] its face meshes (pixels).
    mouth_image : torch.Tensor or None
        [B, 3, H, W] an inner-mouth image in the target frame.
    mask : torch.Tensor or None
        [B, 1, H, W] binary inner-lip polygon, if already computed (``inner_mouth_mask``).

    Returns
    -------
    rgb : torch.Tensor
        [B, 3, H, W] in [0, 1].
    alpha : torch.Tensor
        [B, 1, H, W]: the softened inner-lip polygon.
    """
    B = dst_vertices.shape[0]
    if mask is None:
        mask = inner_mouth_mask(dst_vertices, height, width)
    alpha = soften(mask.float())
    if mouth_image is not None:
        return mouth_image, alpha
    frame = mouth_frame(dst_vertices)
    if src_image is None or src_vertices is None:
        return synthesize_mouth(dst_vertices, height, width, 1.0, frame), alpha

    if src_vertices.shape[0] == 1 and B > 1:
        src_vertices = src_vertices.expand(B, -1, -1)
    synth = synthesize_mouth(dst_vertices, height, width, 1.0, frame,
                             teeth_colour=source_teeth_colour(src_image, src_vertices[:src_image.shape[0]]))

    sf = mouth_frame(src_vertices)
    u, v, v_up, v_lo = mouth_coordinates(frame, height, width)
    uq = u.clamp(-1.0, 1.0).reshape(B, -1)
    s_up = interp1d(uq, sf.upper_u, sf.upper_v).view_as(u)
    s_lo = interp1d(uq, sf.lower_u, sf.lower_v).view_as(u)
    s_half = 0.5 * (s_lo - s_up).clamp(min=0.0)
    scale = (eye_span(dst_vertices) / eye_span(src_vertices).clamp(min=1e-3)).view(B, 1, 1)
    mid = 0.5 * (v_up + v_lo)
    upper = v <= mid
    dv = torch.where(upper, v - v_up, v_lo - v) / scale  # source pixels from the lip the pixel rides with
    src_v = torch.where(upper, s_up + dv, s_lo - dv)
    su = uq.view_as(u) * sf.half_width.view(B, 1, 1)
    pos = (sf.origin.view(B, 2, 1, 1) + su.unsqueeze(1) * sf.axis_u.view(B, 2, 1, 1)
           + src_v.unsqueeze(1) * sf.axis_v.view(B, 2, 1, 1))
    hs, ws = src_image.shape[-2:]
    grid = (pos * torch.tensor([2.0 / ws, 2.0 / hs], device=pos.device).view(1, 2, 1, 1) - 1.0).permute(0, 2, 3, 1)
    piece = warp_image(src_image.float(), grid)
    a_piece = ((s_half - dv) * scale + 1.0).clamp(0.0, 1.0)
    rgb = synth + a_piece.unsqueeze(1) * (piece - synth)
    return rgb.to(dst_vertices.dtype if dst_vertices.dtype.is_floating_point else rgb.dtype), alpha


# ------------------------------------------------------------------------------------ colour of a borrowed mouth
# RGB (rows) to luma and the two colour differences (BT.601 YCbCr without offsets), and back.
TO_YCC = torch.tensor([[0.299, 0.587, 0.114], [-0.168736, -0.331264, 0.5], [0.5, -0.418688, -0.081312]])
FROM_YCC = torch.linalg.inv(TO_YCC)
#: Limits of the luma and saturation gains of ``match_mouth_colour``.
LUMA_GAIN = (0.6, 1.6)
CHROMA_GAIN = (0.0, 1.25)


def mouth_colour_stats(image: torch.Tensor, vertices: torch.Tensor) -> torch.Tensor:
    """The colour of the skin around the mouth: [B, 3], mean luma and colour differences (YCbCr without offsets,
    intensities in [0, 1]).

    Sampled (bilinear, on the image blurred over ~1 px) at 40 points outside the lips: once and twice as far
    beyond each outer lip point (``LIPS_OUTER``) as the inner lip point (``LIPS_INNER``, which corresponds point by
    point) is inside it. The skin, not the lips: lipstick says nothing about the light or the camera.

    Parameters
    ----------
    image : torch.Tensor
        [B or 1, 3, H, W] in [0, 1].
    vertices : torch.Tensor
        [B, 478, >=2] its face meshes (pixels).

    Returns
    -------
    torch.Tensor
        [B, 3]: mean (Y, Cb, Cr).
    """
    B = vertices.shape[0]
    dev, dt = image.device, image.dtype
    outer = vertices[:, LIPS_OUTER, :2].to(dt)
    inner = vertices[:, LIPS_INNER, :2].to(dt)
    points = torch.cat([2.0 * outer - inner, 3.0 * outer - 2.0 * inner], 1)  # [B, 40, 2]
    src = blur3(image)
    if src.shape[0] == 1 and B > 1:
        src = src.expand(B, -1, -1, -1)
    rgb = sample_points(src, points)  # [B, 40, 3]
    return torch.einsum("ij,bnj->bi", TO_YCC.to(dev, dt), rgb) / rgb.shape[1]


def match_mouth_colour(mouth_image: torch.Tensor, borrowed: torch.Tensor, own: torch.Tensor) -> torch.Tensor:
    """A borrowed mouth interior (the driver's) in the source's light and colours.

    Per frame, from the skin around the two mouths (``mouth_colour_stats``): luma is scaled by the ratio of the
    skins' mean luma (an exposure change, within ``LUMA_GAIN``: black stays black and teeth stay brighter than
    the cavity), and the colour differences are moved from the driver's skin colour to the source's and scaled by
    the ratio of the skins' saturations (within ``CHROMA_GAIN``): a black-and-white source, whose skin has no
    colour, gets a grey mouth instead of the driver's red one; a source in warmer light gets a warmer one.

    Parameters
    ----------
    mouth_image : torch.Tensor
        [B, 3, H, W] in [0, 1]: the driver's mouth in the target frame.
    borrowed, own : torch.Tensor
        [B, 3] and [1 or B, 3]: ``mouth_colour_stats`` of the driver frames and of the source.

    Returns
    -------
    torch.Tensor
        [B, 3, H, W] in [0, 1].
    """
    dev, dt = mouth_image.device, mouth_image.dtype
    borrowed = borrowed.to(dt)
    own = own.to(dt).expand(borrowed.shape[0], -1)
    luma = (own[:, 0] / borrowed[:, 0].clamp(min=1e-3)).clamp(*LUMA_GAIN)  # [B]
    saturation = (own[:, 1:].norm(dim=1) / borrowed[:, 1:].norm(dim=1).clamp(min=1e-3)).clamp(*CHROMA_GAIN)
    to_ycc, from_ycc = TO_YCC.to(dev, dt), FROM_YCC.to(dev, dt)
    ycc = torch.einsum("ij,bjhw->bihw", to_ycc, mouth_image)
    y = ycc[:, :1] * luma.view(-1, 1, 1, 1)
    c = (ycc[:, 1:] - borrowed[:, 1:].view(-1, 2, 1, 1)) * saturation.view(-1, 1, 1, 1) + own[:, 1:].view(-1, 2, 1, 1)
    return torch.einsum("ij,bjhw->bihw", from_ycc, torch.cat([y, c], 1)).clamp(0.0, 1.0)


# ------------------------------------------------------------------------------------ the driver's mouth, aligned
MOUTH_CORNERS_INNER = (int(LIPS_INNER[0]), int(LIPS_INNER[10]))  # 78 (subject's right), 308 (left)


def similarity_2d(src: torch.Tensor, dst: torch.Tensor) -> torch.Tensor:
    """Batched least-squares 2-D similarity (rotation, uniform scale, shift) taking ``src`` onto ``dst``.

    Parameters
    ----------
    src, dst : torch.Tensor
        [B, N, 2] corresponding points (pixels).

    Returns
    -------
    torch.Tensor
        [B, 2, 3] maps A with dst ~ A @ [src; 1].
    """
    ms, md = src.mean(1, keepdim=True), dst.mean(1, keepdim=True)
    a, b = src - ms, dst - md
    var = (a * a).sum((1, 2)).clamp(min=1e-9)
    c = ((a * b).sum((1, 2))) / var  # s cos
    s = ((a[..., 0] * b[..., 1] - a[..., 1] * b[..., 0]).sum(1)) / var  # s sin
    lin = torch.stack([torch.stack([c, -s], -1), torch.stack([s, c], -1)], -2)  # [B, 2, 2]
    t = md[:, 0] - (lin @ ms[:, 0, :, None])[..., 0]
    return torch.cat([lin, t[..., None]], -1)


def mouth_map(target_vertices: torch.Tensor, driver_vertices: torch.Tensor) -> torch.Tensor:
    """Affine maps from target pixels to driver pixels that carry the driver's mouth opening onto the target's.

    A similarity on the inner-lip contour (position, size, tilt), then a stretch across the mouth (along the
    target's corner-line normal, about the target mouth centre) by the ratio of the two openings, limited to
    [0.6, 1.6] (none for a target opening under 1 pixel), so the driver's teeth and tongue fill the target opening.

    Parameters
    ----------
    target_vertices : torch.Tensor
        [B, 478, >=2] target face meshes (pixels).
    driver_vertices : torch.Tensor
        [B, 478, >=2] the driver's face meshes (pixels of the driver's crop).

    Returns
    -------
    torch.Tensor
        [B, 2, 3] affine maps, target pixel -> driver pixel (for ``warp_affine`` of the driver's crop).
    """
    lips_t = target_vertices[:, LIPS_INNER, :2].float()
    lips_d = driver_vertices[:, LIPS_INNER, :2].float()
    sim = similarity_2d(lips_t, lips_d)  # target -> driver
    r, l = MOUTH_CORNERS_INNER

    def opening_and_normal(v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        xy = v[..., :2].float()
        axis = xy[:, l] - xy[:, r]
        axis = axis / axis.norm(dim=1, keepdim=True).clamp(min=1e-6)
        normal = torch.stack([-axis[:, 1], axis[:, 0]], 1)
        rel = xy[:, LIPS_INNER] - xy[:, LIPS_INNER].mean(1, keepdim=True)
        across = (rel * normal[:, None]).sum(-1)
        return across.amax(1) - across.amin(1), normal, xy[:, LIPS_INNER].mean(1)

    open_t, normal_t, centre_t = opening_and_normal(target_vertices)
    open_d, _, _ = opening_and_normal(driver_vertices)
    sim_scale = sim[:, :, :2].det().abs().sqrt()
    # Stretch k along the target normal: 1 + (k - 1) n n^T, about the target mouth centre.
    k = (open_d / (open_t * sim_scale).clamp(min=1e-3)).clamp(0.6, 1.6)
    k = torch.where(open_t > 1.0, k, torch.ones_like(k))
    nn_t = normal_t[:, :, None] * normal_t[:, None, :]
    stretch = torch.eye(2, device=k.device).expand_as(nn_t) + (k - 1.0).view(-1, 1, 1) * nn_t
    shift = centre_t - (stretch @ centre_t[..., None])[..., 0]
    pre = torch.cat([stretch, shift[..., None]], -1)  # target -> stretched target
    return torch.cat([sim[:, :, :2] @ pre[:, :, :2], (sim[:, :, :2] @ pre[:, :, 2:]) + sim[:, :, 2:]], -1)

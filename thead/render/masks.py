"""Region masks from triangle sets (eye openings, mouth opening), softened edges, small image filters."""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F

from thead.render.rasterize import rasterize


def triangle_set_masks(vertices: torch.Tensor, triangle_sets: Sequence[np.ndarray], height: int,
                       width: int) -> torch.Tensor:
    """Binary coverage masks [B, K, H, W] of K triangle sets (e.g. polygons triangulated once), one raster pass.

    vertices: [B, V, 2 or 3] pixels; depth is ignored (the sets are flattened, later sets never hide earlier ones
    because each pixel is claimed by one triangle: sets should not overlap).
    """
    xy = vertices[..., :2].float()
    flat = torch.cat([xy, torch.zeros_like(xy[..., :1])], dim=2)
    tris = np.concatenate([np.asarray(t, dtype=np.int64) for t in triangle_sets], axis=0)
    owner = np.concatenate([np.full(len(t), k) for k, t in enumerate(triangle_sets)])
    frags = rasterize(flat, tris, height, width)
    owner_t = torch.as_tensor(owner, device=vertices.device)
    tid = frags.tri_index
    which = torch.where(tid >= 0, owner_t[tid.clamp(min=0)], torch.full_like(tid, -1))
    ks = torch.arange(len(triangle_sets), device=vertices.device).view(1, -1, 1, 1)
    return (which.unsqueeze(1) == ks).to(vertices.dtype if vertices.dtype.is_floating_point else torch.float32)


def blur3(x: torch.Tensor, passes: int = 1) -> torch.Tensor:
    """Separable [1, 2, 1] / 4 blur of [B, C, H, W], ``passes`` times (each pass: sigma ~0.7 px), edge-replicated.

    Written with shifted slices of the edge-padded input (several times faster than a tiny conv2d on CPU): each
    axis as its outer neighbours' sum plus twice the centre, in place, scaled once per pass.
    """
    for _ in range(passes):
        p = F.pad(x, (1, 1, 1, 1), mode="replicate")
        rows = p[..., 2:] + p[..., :-2]
        rows.add_(p[..., 1:-1], alpha=2.0)
        x = rows[..., 2:, :] + rows[..., :-2, :]
        x.add_(rows[..., 1:-1, :], alpha=2.0).mul_(0.0625)
    return x


def soften(mask: torch.Tensor, passes: int = 1) -> torch.Tensor:
    """Anti-alias a binary mask [B, K, H, W]: about one pixel of soft edge per pass, centred on the hard edge."""
    return blur3(mask, passes).clamp(0.0, 1.0)


def erode(mask: torch.Tensor, pixels: int = 1) -> torch.Tensor:
    """Erode [B, C, H, W] masks by ``pixels`` (4-neighbour min per step; outside the image counts as 0)."""
    for _ in range(pixels):
        p = F.pad(mask, (1, 1, 1, 1))
        mask = torch.minimum(torch.minimum(p[..., 1:-1, :-2], p[..., 1:-1, 2:]),
                             torch.minimum(p[..., :-2, 1:-1], p[..., 2:, 1:-1]))
        mask = torch.minimum(mask, p[..., 1:-1, 1:-1])
    return mask


def inner_ramp(mask: torch.Tensor) -> torch.Tensor:
    """A weight [B, 1, H, W] that is ~0 (< 0.05) on a binary mask's edge pixels and rises to 1 about 4 px inside."""
    return blur3(erode(mask, 2), 2).clamp(0.0, 1.0) * mask


def fill_rows(image: torch.Tensor, known: torch.Tensor, reach: int = 4, column_blur: int = 0) -> torch.Tensor:
    """image [B, C, H, W] with the pixels where known [B, 1, H, W] is not set (<= 0.5) filled along each row from
    the known pixels nearest the hole on either side.

    A hole pixel takes the straight line between the two ends of its gap: the mean of the known pixels of its row
    within ``reach`` pixels of the last known pixel left of it and of the first one right of it, weighted by
    how near each end is; a gap open on one side takes its one end. So a background's own colour beside the hole
    runs into it, as does horizontal structure (a shelf, a table edge, a horizon), and nothing from further along
    the row does: an average over the whole row (the plate's fill before) brought a photo's white border into
    the place of the head it framed, a pale head-shaped ghost wherever the head moved away. Rows with nothing
    known are filled in 2-D (``fill_holes``).

    Parameters
    ----------
    image : torch.Tensor
        float [B, C, H, W].
    known : torch.Tensor
        float [B, 1, H, W] in [0, 1]: where the image is known (> 0.5).
    reach : int
        Pixels each way along the row over which a gap's end is averaged (single noisy pixels would run on as
        streaks).
    column_blur : int
        Then the fill (not the known pixels) is smoothed along the columns by a tent of this half-width in pixels
        (two box passes; 0: none). Where a row's ends change from one row to the next (a diagonal stripe, a
        matte's ragged edge) the rows are filled alike only by chance, and read as thin horizontal streaks; a
        horizontal line or edge still runs through, softened over that many pixels.

    Returns
    -------
    torch.Tensor
        float [B, C, H, W]: the image where known, the fill elsewhere.
    """
    B, C, H, W = image.shape
    is_known = known > 0.5
    k = is_known.to(image.dtype)
    size = (1, 2 * reach + 1)  # along the row only: a shelf line keeps its full strength
    total = F.avg_pool2d(F.pad(image * k, (reach, reach, 0, 0), mode="replicate"), size, stride=1)
    weight = F.avg_pool2d(F.pad(k, (reach, reach, 0, 0), mode="replicate"), size, stride=1)
    ends = total / weight.clamp(min=1e-6)  # [B, C, H, W]: the known pixels' mean around each known pixel
    cols = torch.arange(W, device=image.device).view(1, 1, 1, W).expand(B, 1, H, W)
    left = torch.where(is_known, cols, torch.full_like(cols, -1)).cummax(dim=-1).values
    flipped = torch.where(is_known.flip(-1), cols, torch.full_like(cols, -1)).cummax(dim=-1).values.flip(-1)
    right = torch.where(flipped >= 0, W - 1 - flipped, torch.full_like(flipped, W))
    has_left, has_right = left >= 0, right < W
    at_left = ends.gather(-1, left.clamp(min=0).expand(B, C, H, W))
    at_right = ends.gather(-1, right.clamp(max=W - 1).expand(B, C, H, W))
    t = ((cols - left).to(image.dtype) / (right - left).clamp(min=1).to(image.dtype)).clamp(0.0, 1.0)
    t = torch.where(has_left & has_right, t, torch.where(has_right, torch.ones_like(t), torch.zeros_like(t)))
    filled = at_left + t * (at_right - at_left)
    row_known = is_known.any(-1, keepdim=True)  # [B, 1, H, 1]
    if not bool(row_known.all()):
        filled = torch.where(row_known, filled, fill_holes(image, known))
    if column_blur > 0:
        filled = torch.where(is_known, image, filled)  # the blur reads the known pixels beside the fill
        size = (2 * column_blur + 1, 1)
        for _ in range(2):
            filled = F.avg_pool2d(F.pad(filled, (0, 0, column_blur, column_blur), mode="replicate"), size, stride=1)
    return torch.where(is_known, image, filled)


def fill_holes(image: torch.Tensor, known: torch.Tensor, levels: int | None = None) -> torch.Tensor:
    """image [B, C, H, W] with the pixels where known [B, 1, H, W] (weights in [0, 1]) is 0 filled smoothly from
    the known ones (push-pull: mask-normalised averages down a pyramid, then blended back up).

    levels: pyramid levels (default: down to one pixel, so every hole is filled however far it reaches from the
    known pixels; a pyramid stopped at 2 x 2 cells left the bottom of a 320-pixel canvas black where its lower
    half knew nothing). ``fill_rows`` fills along the rows instead, so horizontal structure runs on through."""
    if levels is None:
        levels = max(1, math.ceil(math.log2(max(*image.shape[-2:], 2))))
    pyramid = [(image * known, known)]
    for _ in range(levels):
        v, w = pyramid[-1]
        if min(v.shape[-2:]) < 2:
            break
        pyramid.append((F.avg_pool2d(v, 2, ceil_mode=True), F.avg_pool2d(w, 2, ceil_mode=True)))
    v, w = pyramid[-1]
    filled = v / w.clamp(min=1e-6)
    for v, w in reversed(pyramid[:-1]):
        up = F.interpolate(filled, size=v.shape[-2:], mode="bilinear", align_corners=False)
        a = w.clamp(0.0, 1.0)
        filled = a * (v / w.clamp(min=1e-6)) + (1.0 - a) * up
    return known * image + (1.0 - known) * filled

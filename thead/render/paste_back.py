"""Paste crop-space renders back into the original frames with a feathered seam.

Affine matrices follow the package's continuous pixel convention (pixel centres at ``i + 0.5``, see
:mod:`thead.geometry.affine`); a matrix from OpenCV converts with ``Affine2D.from_opencv``. Matrices may be given as
[B, 2, 3] tensors or as :class:`~thead.geometry.Affine2D` objects.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from thead.geometry import Affine2D
from thead.render.compose import dilate
from thead.render.dense_flow import smoothstep
from thead.render.masks import blur3
from thead.render.mesh_warp import pixel_centres

# The seam over which a render pasted back fades into its picture: this share of the pasted image's side.
PASTE_FEATHER = 0.08


def _maps(maps: torch.Tensor | Affine2D, like: torch.Tensor) -> torch.Tensor:
    """[B, 2, 3] tensor of ``maps`` (tensor, array or Affine2D) on ``like``'s device and dtype."""
    m = maps.matrix if isinstance(maps, Affine2D) else maps
    return torch.as_tensor(m).to(device=like.device, dtype=like.dtype)


def warp_affine(images: torch.Tensor, maps: torch.Tensor | Affine2D, height: int, width: int) -> torch.Tensor:
    """images [B, C, Hs, Ws] sampled at ``maps`` [B, 2, 3] (output pixel -> image pixel) -> [B, C, H, W].

    Bilinear, border-replicated. For strong downscaling pre-blur or area-resize first (no antialiasing here).
    """
    hs, ws = images.shape[-2:]
    pix = pixel_centres(height, width, images.device, images.dtype).view(1, 2, -1)
    m = _maps(maps, images)
    pos = m[:, :, :2] @ pix + m[:, :, 2:]
    grid = pos * torch.tensor([2.0 / ws, 2.0 / hs], device=images.device, dtype=images.dtype).view(1, 2, 1) - 1.0
    grid = grid.transpose(1, 2).reshape(-1, height, width, 2)
    return F.grid_sample(images, grid, mode="bilinear", padding_mode="border", align_corners=False)


def crop_with_affine(frames: torch.Tensor, to_crop: torch.Tensor | Affine2D, size: tuple[int, int]) -> torch.Tensor:
    """Resample frames [B, C, H, W] into crops [B, C, h, w] by affines ``to_crop`` [B, 2, 3] (frame -> crop pixels),
    with :func:`warp_affine` at their inverses (the torch twin of ``thead.face.crop.crop_frame``)."""
    return warp_affine(frames, Affine2D(_maps(to_crop, frames)).inverse, *size)


def paste_back(
    crops: torch.Tensor,
    frames: torch.Tensor,
    to_crop: torch.Tensor | Affine2D,
    feather: float = PASTE_FEATHER,
    crop_mask: torch.Tensor | None = None,
) -> torch.Tensor:
    """Warp crop-space images back into the original frames and blend them in.

    crops: [B, C, h, w] in [0, 1]; frames: [B, C, H, W] in [0, 1]; to_crop: [B, 2, 3] affines mapping original
    frame pixels to crop pixels (continuous convention). feather: width of the seam ramp, as a fraction of the crop
    size; the crop's own border pixels get weight 0. crop_mask: optional [B, 1, h, w] extra weight in crop space
    (e.g. only the head region). Returns [B, C, H, W].
    """
    B, C, h, w = crops.shape
    H, W = frames.shape[-2:]
    m = _maps(to_crop, crops)
    pix = pixel_centres(H, W, crops.device, crops.dtype).view(1, 2, -1)
    q = m[:, :, :2] @ pix + m[:, :, 2:]  # [B, 2, H*W] crop pixels
    grid = (q * torch.tensor([2.0 / w, 2.0 / h], device=crops.device, dtype=crops.dtype).view(1, 2, 1) - 1.0)
    grid = grid.transpose(1, 2).reshape(B, H, W, 2)
    src = crops if crop_mask is None else torch.cat([crops, crop_mask.to(crops.dtype)], 1)
    sampled = F.grid_sample(src, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    qx, qy = q[:, 0].view(B, 1, H, W), q[:, 1].view(B, 1, H, W)
    inside = torch.minimum(torch.minimum(qx, w - qx), torch.minimum(qy, h - qy)) - 0.5
    alpha = smoothstep(inside / max(feather * min(h, w), 1e-6))
    if crop_mask is not None:
        alpha = alpha * sampled[:, C:C + 1].clamp(0.0, 1.0)
    return torch.lerp(frames, sampled[:, :C], alpha)


def changed_region(rendered: torch.Tensor, source: torch.Tensor, levels: tuple[float, float] = (1.5 / 255, 4.0 / 255),
                   grow: int = 2) -> torch.Tensor:
    """Where a render differs from the picture it was made from: the ``crop_mask`` for :func:`paste_back` that
    keeps every pixel the render left as it was the original frame's own, at its own resolution.

    Parameters
    ----------
    rendered : torch.Tensor
        [B, 3, H, W] in [0, 1]: the renders.
    source : torch.Tensor
        [1 or B, 3, H, W] in [0, 1]: the source picture in the same pixels (the crop the render started from).
    levels : (float, float)
        The largest channel difference is mapped through a smoothstep from ``levels[0]`` (weight 0: the render
        kept the pixel) to ``levels[1]`` (weight 1).
    grow : int
        The weight is dilated by this many pixels, then softened over about as many, so a changed pixel's
        neighbours come from the render too (no seam of original pixels inside a moved edge).

    Returns
    -------
    torch.Tensor
        [B, 1, H, W] in [0, 1]; exactly 0 wherever the render is within ``levels[0]`` of the source over
        the ``grow`` pixels around it and the soft edge beyond.
    """
    lo, hi = levels
    diff = (rendered - source).abs().amax(1, keepdim=True)
    weight = smoothstep((diff - lo) / max(hi - lo, 1e-6))
    if grow > 0:
        weight = blur3(dilate(weight, grow), grow)
    return weight.clamp(0.0, 1.0)


def restore_unchanged(rendered: torch.Tensor, rest: torch.Tensor, source: torch.Tensor,
                      levels: tuple[float, float] = (2.0 / 255, 16.0 / 255)) -> torch.Tensor:
    """Renders with the source's own pixels wherever they are still what the source's own parameters render.

    ``rendered + (1 - m) * (source - rest)``, m rising with the render's difference from ``rest`` (the largest
    channel difference through a smoothstep over ``levels``, softened over about two pixels): the source comes back
    exactly where nothing changed, its difference from its own render fades out smoothly as the render changes
    (no pixel flips between the two), and what changed clearly is the render's alone.

    Parameters
    ----------
    rendered : torch.Tensor
        [B, 3, H, W] in [0, 1]: renders of a source at some targets.
    rest : torch.Tensor
        [1 or B, 3, H, W]: the render of the source's own parameters.
    source : torch.Tensor
        [1 or B, 3, H, W]: the source itself, in the same pixels.
    levels : (float, float)
        Differences from ``rest`` (intensities in [0, 1]) where m starts to rise and where it reaches 1.

    Returns
    -------
    torch.Tensor
        [B, 3, H, W] in [0, 1].
    """
    lo, hi = levels
    m = smoothstep(((rendered - rest).abs().amax(1, keepdim=True) - lo) / max(hi - lo, 1e-6))
    m = blur3(dilate(m, 1), 2).clamp(0.0, 1.0)
    return torch.addcmul(rendered, 1.0 - m, source - rest).clamp_(0.0, 1.0)

"""Source preparation and layer compositing: base warp, then irises, then the inner mouth."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from thead.face.topology import LEFT_EYE, LIPS_INNER, RIGHT_EYE
from thead.render.eyes import EyeSource, eye_layer, eye_span, lid_skin_fill, prepare_eyes
from thead.render.lip_border import inner_lip_edge
from thead.render.masks import blur3
from thead.render.mouth import mouth_layer
from thead.render.windows import region_window


@dataclass
class SourceFace:
    """A source face ready to be rendered at any target (prepare once per source image).

    image: [Bs, 3, H, W] the source in [0, 1]; vertices: [Bs, 478, 3] its face mesh (pixels, depth).
    eyes: iris measurements and textures (:class:`EyeSource`).
    blurred: [Bs, 3, H, W] ``warp_image`` with each eye painted with its lid skin (``lid_skin_fill``), blurred by
        ~1.5% of the image size: what a closing lid's stretched band reads as the eye shuts (lid skin, never the
        open eye's crease, lashes and iris smeared down over it).
    warp_image: [Bs, 3, H, W] what the base warp should move: the source with the irises painted out, so a
        gaze change never leaves a second iris behind.
    inner_lip: [Bs, 20] where the lips' inner edge lies out from each ``LIPS_INNER`` vertex, in eye widths
        (``thead.render.lip_border.inner_lip_edge``); None where it is on the contour everywhere (a closed mouth).
    """

    image: torch.Tensor
    vertices: torch.Tensor
    eyes: EyeSource
    blurred: torch.Tensor | None = None
    inner_lip: torch.Tensor | None = None

    @property
    def warp_image(self) -> torch.Tensor:
        return self.eyes.iris_free


@torch.no_grad()
def prepare_source(src_image: torch.Tensor, src_vertices: torch.Tensor) -> SourceFace:
    """src_image [Bs, 3, H, W] in [0, 1]; src_vertices [Bs, 478, 3] pixels of that image (478 = refined mesh)."""
    if src_vertices.shape[1] < 478:
        raise ValueError("the layers need the 478-point mesh (refine_landmarks=True): iris points are missing")
    eyes = prepare_eyes(src_image, src_vertices)
    inner_lip = inner_lip_edge(src_image, src_vertices)
    return SourceFace(image=src_image, vertices=src_vertices, eyes=eyes,
                      blurred=smooth_image(lid_skin_fill(eyes.iris_free, src_vertices)),
                      inner_lip=inner_lip.to(src_vertices.dtype) if bool((inner_lip > 0).any()) else None)


def smooth_image(image: torch.Tensor, fraction: float = 1.0 / 64.0) -> torch.Tensor:
    """[B, C, H, W] blurred at a scale of ``fraction`` of the image size (area-downsample, bilinear up, blur3)."""
    H, W = image.shape[-2:]
    k = max(1, int(round(fraction * max(H, W))))
    small = F.avg_pool2d(image, k, k, ceil_mode=True, count_include_pad=False) if k > 1 else image
    return blur3(F.interpolate(small, size=(H, W), mode="bilinear", align_corners=False), 2)


def over(base: torch.Tensor, rgb: torch.Tensor, alpha: torch.Tensor) -> torch.Tensor:
    """``alpha * rgb + (1 - alpha) * base`` for [B, 3, H, W] images and a [B, 1, H, W] alpha."""
    return torch.lerp(base, rgb, alpha)  # one pass (3x faster than the sum of products on the CPU)


@torch.no_grad()
def composite_layers(
    base: torch.Tensor,
    source: SourceFace,
    dst_vertices: torch.Tensor,
    mouth_image: torch.Tensor | None = None,
    eyes: bool = True,
    mouth: bool = True,
    gaze_gain: tuple[float, float] = (1.0, 1.0),
    gaze_rest: torch.Tensor | None = None,
) -> torch.Tensor:
    """Draw the iris and inner-mouth layers over a warped base image.

    base: [B, 3, H, W] the source warped to the target (from ``source.warp_image``, irises painted out).
    dst_vertices: [B, 478, 3] target pixels. mouth_image: optional [B, 3, H, W] inner-mouth image in the target
    frame (e.g. the driver's mouth); default: the source's interior riding with the lips, plus a synthesised
    cavity and teeth. gaze_gain, gaze_rest [B, 478, 3]: ``eye_layer``'s gain on the iris's move and the mesh it is measured
    from (same pixels as ``dst_vertices``). Returns [B, 3, H, W].
    """
    B, _, H, W = base.shape
    out = base
    span = eye_span(dst_vertices).clamp(min=1.0)
    if eyes:
        # Work in a box around both eye openings (inflated lids, the iris discs' soft edges): few pixels.
        pts = dst_vertices[:, np.concatenate([RIGHT_EYE, LEFT_EYE]), :2]
        win = region_window(pts, 0.06 * span + 3.0, H, W)
        rgb, alpha = eye_layer(source.eyes, win.shift(dst_vertices), win.height, win.width, gaze_gain=gaze_gain,
                               gaze_rest=None if gaze_rest is None else win.shift(gaze_rest))
        out = win.scatter(out, over(win.gather(out), rgb.to(out.dtype), alpha.to(out.dtype)))
    if mouth:
        pts = dst_vertices[:, LIPS_INNER, :2]
        win = region_window(pts, 0.03 * span + 3.0, H, W)
        m_img = None if mouth_image is None else win.gather(mouth_image)
        src_v = source.vertices
        rgb, alpha = mouth_layer(win.shift(dst_vertices), win.height, win.width, source.image, src_v, m_img)
        out = win.scatter(out, over(win.gather(out), rgb.to(out.dtype), alpha.to(out.dtype)))
    return out


__all__ = ["SourceFace", "prepare_source", "composite_layers", "over", "smooth_image"]

"""Layer compositing for a moving person over a still background: premultiplied layers and the mattes' edges.

A picture I is read as a person layer (alpha P, premultiplied colour X) over a background B: I = X + (1 - P) B.
With a guess of B (a background plate) the person's colour is recovered as X = I - (1 - P) B
(:func:`premultiplied`); the person splits further into a head layer (weight h) over a body layer
(:func:`body_layer`) such that head over body over background gives I back exactly. The fades say where a matte
ends where nobody knows: past the crop's edge (:func:`outside_fade`) or past the picture's edge
(:func:`past_picture_fade`). Images are float [B, C, H, W] in [0, 1]; pixel centres at i + 0.5.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from thead.render.dense_flow import smoothstep


def premultiplied(image: torch.Tensor, alpha: torch.Tensor, background_share: torch.Tensor) -> torch.Tensor:
    """The foreground's premultiplied colour in an image that is a foreground over a background.

    ``image - background_share``, limited to [0, alpha] per channel. The limit matters where the background guess
    is poor (a smooth fill behind a soft outline): there the difference goes negative or past alpha and would show
    as dark or bright lines once the outline moves over something else.

    Parameters
    ----------
    image : torch.Tensor
        [B, 3, H, W] in [0, 1], ``alpha`` of a foreground over a background.
    alpha : torch.Tensor
        [B, 1, H, W] in [0, 1]: the foreground's coverage.
    background_share : torch.Tensor
        [B, 3, H, W]: ``(1 - alpha) * background``, the background's part of ``image``.

    Returns
    -------
    torch.Tensor
        [B, 3, H, W]: the foreground's premultiplied colour.
    """
    return torch.minimum((image - background_share).clamp(min=0.0), alpha)


def body_layer(image: torch.Tensor, person: torch.Tensor, head_weight: torch.Tensor,
               background_share: torch.Tensor) -> torch.Tensor:
    """The body (neck, shoulders) as a premultiplied layer that lies under the head layer.

    With P the person mask, h the head weight and X the person's premultiplied colour (:func:`premultiplied`),
    the head layer is (h X, h P); the body layer under it has alpha P (1 - h) / (1 - P h) and colour
    X (1 - h) / (1 - P h), so that head over body over the background gives ``image`` back exactly. It is opaque
    wherever the person is and h < 1: the neck runs up under the head, so a head that moves up or down never
    opens a gap.

    Parameters
    ----------
    image : torch.Tensor
        [B, 3, H, W] in [0, 1]: the picture.
    person : torch.Tensor
        [B, 1, H, W] in [0, 1]: the person mask P.
    head_weight : torch.Tensor
        [B, 1, H, W] in [0, 1]: how much of each pixel belongs to the head, h.
    background_share : torch.Tensor
        [B, 3, H, W]: ``(1 - P) * background``.

    Returns
    -------
    torch.Tensor
        [B, 4, H, W]: premultiplied colour (3 channels) and alpha.
    """
    share = (1.0 - head_weight) / (1.0 - person * head_weight).clamp(min=1e-6)
    return torch.cat([premultiplied(image, person, background_share) * share, person * share], 1)


def outside_fade(size: int, pad: int, fraction: float, device: torch.device | str | None = None) -> torch.Tensor:
    """A matte's fade past the crop's edge, on the crop's padded canvas (the bottom edge excepted: the body goes
    on below).

    Parameters
    ----------
    size : int
        S, the crop's side in pixels.
    pad : int
        Pixels of border around the crop in the canvas.
    fraction : float
        How far past the edge the fade reaches 0, as a fraction of S.
    device : torch.device, str or None
        Where the result goes.

    Returns
    -------
    torch.Tensor
        float32 [1, 1, S + 2 pad, S + 2 pad]: 1 on the crop and below it, falling smoothly to 0 at ``fraction`` * S
        pixels past its top and sides.
    """
    c = torch.arange(size + 2 * pad, device=device, dtype=torch.float32) + 0.5
    out = (pad - c).clamp(min=0.0) + (c - pad - size).clamp(min=0.0)  # pixels outside along one axis
    ramp = 1.0 - smoothstep(out / max(fraction * size, 1e-6))
    below = c > pad + size
    ramp_y = torch.where(below, torch.ones_like(ramp), ramp)
    return (ramp_y.view(-1, 1) * ramp.view(1, -1)).view(1, 1, size + 2 * pad, size + 2 * pad)


def inside_picture_fade(picture: np.ndarray, pixels: float) -> torch.Tensor:
    """How much of a render over a canvas is pasted back into its picture near the picture's own edge.

    A render pasted back fades into the original picture over a seam; where the seam would lie past the picture's
    edge (a crop at the frame's border), the render fades out towards that edge instead, as it did over the crop's
    own edge when only the crop was rendered.

    Parameters
    ----------
    picture : np.ndarray
        [H, W] in [0, 1]: 1 where a canvas shows the picture (``thead.face.crop.picture_mask``).
    pixels : float
        How far inside the picture's edge the weight reaches 1 (pixels).

    Returns
    -------
    torch.Tensor
        float32 [1, 1, H, W] in [0, 1]: 0 outside the picture and on its edge, rising smoothly to 1 ``pixels``
        inside it.
    """
    import cv2

    inside = np.asarray(picture) >= 0.5
    padded = np.pad(inside, 1, constant_values=True)  # past the canvas: the canvas's own seam, not this one
    dist = cv2.distanceTransform(padded.astype(np.uint8), cv2.DIST_L2, 3)[1:-1, 1:-1]
    return smoothstep(torch.as_tensor((dist - 0.5) / max(pixels, 1e-6), dtype=torch.float32))[None, None]


def past_picture_fade(picture: np.ndarray, pixels: float) -> torch.Tensor:
    """A matte's fade past the picture's edge: nobody knows where the person ends out there.

    Parameters
    ----------
    picture : np.ndarray
        [H, W] in [0, 1]: 1 where a canvas shows the picture, 0 where it shows its mirror image past the picture's
        edge (``thead.face.crop.picture_mask``).
    pixels : float
        How far past the edge the fade reaches 0 (pixels).

    Returns
    -------
    torch.Tensor
        float32 [1, 1, H, W]: 1 where ``picture`` >= 0.5 and below such pixels (the body goes on below the
        picture), falling smoothly to 0 ``pixels`` past the picture's top and sides.
    """
    import cv2

    inside = np.maximum.accumulate(np.asarray(picture) >= 0.5, axis=0)
    if inside.all():
        return torch.ones(1, 1, *inside.shape)
    dist = cv2.distanceTransform((~inside).astype(np.uint8), cv2.DIST_L2, 3)
    return 1.0 - smoothstep(torch.as_tensor(dist / max(pixels, 1e-6), dtype=torch.float32))[None, None]


def dilate(mask: torch.Tensor, pixels: int) -> torch.Tensor:
    """Grey dilation by a square.

    Parameters
    ----------
    mask : torch.Tensor
        [B, C, H, W].
    pixels : int
        Half side of the square: its side is 2 * pixels + 1 (0 or less: ``mask`` unchanged).

    Returns
    -------
    torch.Tensor
        [B, C, H, W]: the largest value within the square around each pixel.
    """
    if pixels <= 0:
        return mask
    # Separable (the max over the square is the max over its rows' maxima), each axis as the running maximum of
    # shifted views of the edge-padded mask: several times faster on the CPU than max_pool2d, the same values.
    return _axis_max(_axis_max(mask, -1, pixels), -2, pixels)


def _axis_max(x: torch.Tensor, dim: int, radius: int) -> torch.Tensor:
    """[B, C, H, W]: the max of ``x`` over ``[i - radius, i + radius]`` along ``dim`` (-1 or -2), within the image."""
    n = x.shape[dim]
    pad = (radius, radius, 0, 0) if dim == -1 else (0, 0, radius, radius)
    low = float("-inf") if x.is_floating_point() else torch.iinfo(x.dtype).min
    padded = F.pad(x, pad, value=low)
    out = padded.narrow(dim, 0, n).clone()
    for shift in range(1, 2 * radius + 1):
        torch.maximum(out, padded.narrow(dim, shift, n), out=out)
    return out


__all__ = ["body_layer", "dilate", "outside_fade", "past_picture_fade", "premultiplied"]

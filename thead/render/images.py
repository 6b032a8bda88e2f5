"""Conversions at the renderer's edges: uint8 RGB frames (H, W, 3) <-> float NCHW tensors in [0, 1]."""

from __future__ import annotations

import math

import numpy as np
import torch

LUMA_WEIGHTS = (0.299, 0.587, 0.114)  # BT.601 luma of R, G, B


def luma(images: torch.Tensor) -> torch.Tensor:
    """[B, 1, H, W]: the BT.601 luma (``LUMA_WEIGHTS``) of RGB images [B, 3, H, W], in their units."""
    weights = torch.tensor(LUMA_WEIGHTS, device=images.device, dtype=images.dtype).view(1, 3, 1, 1)
    return (images * weights).sum(1, keepdim=True)


def luma_share_mask(images: torch.Tensor, region: torch.Tensor, fraction: float, brightest: bool = True
                    ) -> torch.Tensor:
    """The brightest (or darkest) ``fraction`` of a region's pixels by luma (eye white without its lashes, teeth,
    a mouth's cavity).

    Parameters
    ----------
    images : torch.Tensor
        [B, 3, H, W] RGB.
    region : torch.Tensor
        [B, 1, H, W]: the pixels to choose from (> 0.5).
    fraction : float
        Share of the region's pixels chosen (rounded up, at least one; ties with the last one are chosen too).
    brightest : bool
        The brightest (True) or the darkest.

    Returns
    -------
    torch.Tensor
        bool [B, 1, H, W] (none where the region is empty).
    """
    B = images.shape[0]
    inside = region > 0.5
    lum = luma(images)
    flat = torch.where(inside, lum, torch.full_like(lum, -math.inf if brightest else math.inf)).view(B, -1)
    k = (inside.view(B, -1).sum(1).float() * fraction).ceil().long().clamp(min=1)
    thresh = flat.sort(dim=1, descending=brightest).values.gather(1, (k - 1).view(B, 1)).view(B, 1, 1, 1)
    return inside & (lum >= thresh if brightest else lum <= thresh)


def frames_to_tensor(frames: np.ndarray | torch.Tensor, device: torch.device | str | None = None,
                     dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """uint8 frames [B, H, W, 3] or one frame [H, W, 3] -> float [B, 3, H, W] in [0, 1] on ``device``."""
    t = torch.as_tensor(np.ascontiguousarray(frames)) if isinstance(frames, np.ndarray) else frames
    if t.dim() == 3:
        t = t.unsqueeze(0)
    if t.dim() != 4 or t.shape[-1] != 3:
        raise ValueError(f"expected uint8 frames [B, H, W, 3], got {tuple(t.shape)}")
    return t.to(device).permute(0, 3, 1, 2).to(dtype).div_(255.0)


def tensor_to_frames(images: torch.Tensor) -> np.ndarray:
    """float [B, 3, H, W] in [0, 1] -> uint8 numpy frames [B, H, W, 3] (rounded, clipped)."""
    out = (images.detach().clamp(0.0, 1.0) * 255.0 + 0.5).to(torch.uint8)
    return out.permute(0, 2, 3, 1).contiguous().cpu().numpy()


def letterbox_bars(image: np.ndarray, level: int = 12, share: float = 0.98, margin: int = 2
                   ) -> tuple[int, int, int, int]:
    """Black bars (letterbox, pillarbox) along the edges of a uint8 image [H, W, 3]: (top, bottom, left, right)
    in pixels, the runs of rows / columns from each edge in which at least ``share`` of the pixels are at most
    ``level`` in every channel, each grown by ``margin`` pixels (the soft edge that resampling and compression
    leave between bar and picture). All zero when there are none, or when the bars would leave less than half
    the image in either direction (then it is a dark picture, not a framed one)."""
    img = np.asarray(image)
    if img.ndim != 3 or img.shape[2] != 3:
        raise ValueError(f"expected an image [H, W, 3], got {img.shape}")
    dark = img.max(axis=2) <= level
    H, W = dark.shape

    def run(full: np.ndarray) -> int:
        """Length of the run of True from the start of ``full``."""
        return int(np.argmin(full)) if not full.all() else len(full)

    rows, cols = dark.mean(axis=1) >= share, dark.mean(axis=0) >= share
    top, bottom, left, right = (n + margin if n else 0 for n in (run(rows), run(rows[::-1]), run(cols),
                                                                  run(cols[::-1])))
    if top + bottom > H // 2 or left + right > W // 2:
        return 0, 0, 0, 0
    return top, bottom, left, right


def fill_bars(image: np.ndarray, bars: tuple[int, int, int, int]) -> np.ndarray:
    """A copy of ``image`` [H, W, C] with its ``bars`` (top, bottom, left, right pixels, see
    :func:`letterbox_bars`) filled by repeating the picture's outermost row / column into them."""
    out = np.array(image, copy=True)
    top, bottom, left, right = bars
    H, W = out.shape[:2]
    if top:
        out[:top] = out[top]
    if bottom:
        out[H - bottom:] = out[H - bottom - 1]
    if left:
        out[:, :left] = out[:, left:left + 1]
    if right:
        out[:, W - right:] = out[:, W - right - 1:W - right]
    return out


def bar_mask(shape: tuple[int, int], bars: tuple[int, int, int, int]) -> np.ndarray:
    """float32 [H, W]: 1 on the ``bars`` (top, bottom, left, right pixels), 0 on the picture between them."""
    H, W = shape
    top, bottom, left, right = bars
    m = np.zeros((H, W), np.float32)
    m[:top] = 1.0
    m[H - bottom:] = 1.0
    m[:, :left] = 1.0
    m[:, W - right:] = 1.0
    return m

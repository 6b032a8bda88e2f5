"""Per-frame windows: do per-pixel layer work only in a fixed-size box around a region (eyes, mouth) that follows
each frame's geometry, then write the box back. A layer computed for a (h, w) frame with vertices shifted by the
window origin is the same layer, cropped."""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass
class Window:
    """origin: [B, 2] long (x, y) top-left pixel per frame; height, width: the box size (same for the batch);
    index: [B, h * w] flat pixel indices into the H x W frame."""

    origin: torch.Tensor
    height: int
    width: int
    index: torch.Tensor

    def shift(self, vertices: torch.Tensor) -> torch.Tensor:
        """Vertices [B, V, >=2] in frame pixels -> window pixels (x, y shifted, other channels kept)."""
        out = vertices.clone()
        out[..., :2] -= self.origin.to(vertices.dtype).unsqueeze(1)
        return out

    def gather(self, image: torch.Tensor) -> torch.Tensor:
        """[B, C, H, W] -> the windows [B, C, h, w]."""
        B, C = image.shape[:2]
        idx = self.index.unsqueeze(1).expand(B, C, -1)
        return image.reshape(B, C, -1).gather(2, idx).view(B, C, self.height, self.width)

    def scatter(self, image: torch.Tensor, values: torch.Tensor) -> torch.Tensor:
        """Copy of image [B, C, H, W] with the windows replaced by values [B, C, h, w]."""
        B, C, H, W = image.shape
        idx = self.index.unsqueeze(1).expand(B, C, -1)
        return image.reshape(B, C, -1).scatter(2, idx, values.reshape(B, C, -1)).view(B, C, H, W)


def region_window(points: torch.Tensor, margin: float | torch.Tensor, height: int, width: int,
                  multiple: int = 8) -> Window:
    """The smallest batch-wide box size (rounded up to ``multiple``) holding each frame's ``points`` [B, K, 2]
    plus ``margin`` pixels (scalar or [B]), centred per frame and clamped inside the H x W frame."""
    B = points.shape[0]
    dev = points.device
    m = torch.as_tensor(margin, device=dev, dtype=torch.float32).reshape(-1, 1)
    lo = points[..., :2].float().amin(1) - m
    hi = points[..., :2].float().amax(1) + m
    finite = torch.isfinite(lo).all() and torch.isfinite(hi).all()
    size = (hi - lo).amax(0) if finite else torch.tensor([float(width), float(height)], device=dev)
    w = min(width, int(-(-float(size[0]) // multiple) * multiple) + multiple)
    h = min(height, int(-(-float(size[1]) // multiple) * multiple) + multiple)
    centre = torch.nan_to_num(0.5 * (lo + hi), nan=0.0)
    ox = torch.floor(centre[:, 0] - w / 2).clamp(0, width - w).long()
    oy = torch.floor(centre[:, 1] - h / 2).clamp(0, height - h).long()
    origin = torch.stack([ox, oy], 1)
    ys = torch.arange(h, device=dev).view(1, h, 1) + oy.view(B, 1, 1)
    xs = torch.arange(w, device=dev).view(1, 1, w) + ox.view(B, 1, 1)
    return Window(origin=origin, height=h, width=w, index=(ys * width + xs).view(B, -1))

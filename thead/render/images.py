"""Conversions at the renderer's edges: uint8 RGB frames (H, W, 3) <-> float NCHW tensors in [0, 1]."""

from __future__ import annotations

import numpy as np
import torch


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

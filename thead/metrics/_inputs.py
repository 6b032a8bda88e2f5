"""Input conversion shared by the metrics: frames to float NCHW tensors, landmark arrays to numpy.

Frames arrive either as torch float tensors ``(N, C, H, W)`` / ``(C, H, W)`` in [0, 1], or at the edges of the
library as numpy ``uint8`` arrays ``(H, W, 3)`` / ``(N, H, W, 3)`` (what ``thead.io`` reads), or lists of those.
"""

from __future__ import annotations

from typing import Iterable, Sequence, Union

import numpy as np
import torch

FrameInput = Union[torch.Tensor, np.ndarray, Sequence[np.ndarray]]


def as_nchw(frames: FrameInput, device: torch.device | str | None = None,
            dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """Frames as a float tensor ``(N, C, H, W)`` in [0, 1].

    Accepts a torch tensor ``(N, C, H, W)`` or ``(C, H, W)`` (float in [0, 1], or uint8 0-255), a numpy array
    ``(H, W, C)`` / ``(N, H, W, C)`` (uint8 0-255, or float in [0, 1]), or a list of ``(H, W, C)`` arrays.
    A tensor stays on its device unless ``device`` is given; numpy input goes to ``device`` (default CPU).
    """
    if isinstance(frames, torch.Tensor):
        x = frames
        if x.ndim == 3:
            x = x.unsqueeze(0)
        if x.ndim != 4:
            raise ValueError(f"expected a (N, C, H, W) tensor, got shape {tuple(frames.shape)}")
        is_int = not x.is_floating_point()
        x = x.to(device=device or x.device, dtype=dtype)
        return x / 255.0 if is_int else x
    if isinstance(frames, (list, tuple)):
        if not frames:
            raise ValueError("no frames given")
        arr = np.stack([np.asarray(f) for f in frames])
    else:
        arr = np.asarray(frames)
    if arr.ndim == 3:
        arr = arr[None]
    if arr.ndim != 4:
        raise ValueError(f"expected (H, W, C) or (N, H, W, C) frames, got shape {arr.shape}")
    is_int = arr.dtype == np.uint8 or np.issubdtype(arr.dtype, np.integer)
    x = torch.from_numpy(np.ascontiguousarray(arr)).to(device=device or "cpu")
    x = x.permute(0, 3, 1, 2).to(dtype)
    return x / 255.0 if is_int else x


def num_frames(frames: FrameInput) -> int:
    """Number of frames in a batch (a single ``(H, W, C)`` array or ``(C, H, W)`` tensor counts as 1)."""
    if isinstance(frames, (torch.Tensor, np.ndarray)):
        return 1 if frames.ndim == 3 else int(frames.shape[0])
    return len(frames)


def slice_frames(frames: FrameInput, start: int, stop: int) -> FrameInput:
    """Frames ``start:stop`` of a batch (a single frame is returned whole)."""
    if isinstance(frames, (torch.Tensor, np.ndarray)) and frames.ndim == 3:
        return frames
    return frames[start:stop]


def as_uint8_hwc(frame: np.ndarray | torch.Tensor) -> np.ndarray:
    """One frame as a contiguous ``uint8`` ``(H, W, 3)`` RGB array (from uint8 HWC, float HWC in [0,1] or CHW)."""
    if isinstance(frame, torch.Tensor):
        t = frame.detach().cpu()
        if t.ndim == 3 and t.shape[0] in (1, 3) and t.shape[-1] not in (1, 3):
            t = t.permute(1, 2, 0)
        frame = t.numpy()
    arr = np.asarray(frame)
    if arr.ndim == 2:
        arr = np.repeat(arr[:, :, None], 3, axis=2)
    if arr.ndim != 3 or arr.shape[2] not in (1, 3):
        raise ValueError(f"expected an (H, W, 3) frame, got shape {arr.shape}")
    if arr.shape[2] == 1:
        arr = np.repeat(arr, 3, axis=2)
    if arr.dtype != np.uint8:
        arr = np.clip(np.rint(arr.astype(np.float64) * 255.0), 0, 255).astype(np.uint8)
    return np.ascontiguousarray(arr)


def iter_uint8_frames(frames: FrameInput | Iterable[np.ndarray]) -> Iterable[np.ndarray]:
    """Yield frames one by one as ``uint8`` ``(H, W, 3)``; accepts anything ``as_nchw`` does, or an iterator."""
    if isinstance(frames, torch.Tensor):
        batch = frames if frames.ndim == 4 else frames.unsqueeze(0)
        for f in batch:
            yield as_uint8_hwc(f)
    elif isinstance(frames, np.ndarray):
        batch = frames if frames.ndim == 4 else frames[None]
        for f in batch:
            yield as_uint8_hwc(f)
    else:
        for f in frames:
            yield as_uint8_hwc(f)


def check_same_length(name: str, a_len: int, b_len: int) -> None:
    """Raise ``ValueError`` when two per-frame inputs differ in length (see ``thead.metrics.align_lengths``)."""
    if a_len != b_len:
        raise ValueError(f"{name}: inputs have {a_len} and {b_len} frames; align them first "
                         f"(thead.metrics.align_lengths(..., how='truncate'))")


def as_float_array(x: np.ndarray | torch.Tensor | Sequence, name: str = "array") -> np.ndarray:
    """A numpy float64 copy of ``x`` (tensors moved to CPU)."""
    if isinstance(x, torch.Tensor):
        x = x.detach().cpu().numpy()
    arr = np.asarray(x, dtype=np.float64)
    if arr.size == 0:
        raise ValueError(f"{name} is empty")
    return arr

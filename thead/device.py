"""The torch device thead computes on when the caller names none."""

from __future__ import annotations

import torch


def default_device(device: str | torch.device | None = None) -> torch.device:
    """The device to compute on.

    Parameters
    ----------
    device : str, torch.device or None
        A device the caller asked for ("cpu", "cuda", "cuda:1", ...); None picks one.

    Returns
    -------
    torch.device
        ``device`` as a ``torch.device``; for None, CUDA when available, else the CPU.
    """
    if device is None:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


__all__ = ["default_device"]

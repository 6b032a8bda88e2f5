"""Pixel metrics between generated and reference frames: L1, PSNR, SSIM, MS-SSIM.

All take two frame sets of the same length (torch ``(N, C, H, W)`` float in [0, 1], or numpy ``uint8``
``(N, H, W, 3)`` / ``(H, W, 3)``; see ``thead.metrics._inputs.as_nchw``) and return a numpy ``float64`` array
``(N,)`` with one value per frame pair. Work runs in torch on the frames' device (or ``device``), in chunks of
``batch_size`` frames so long videos do not need to fit in memory as floats.

These are the reconstruction (same-identity) metrics reported by PECHead, HeadGAN, HiDe-NeRF and HifiHead
(L1 / PSNR / SSIM, sometimes MS-SSIM), computed on frames at the evaluation resolution (usually 256x256).
"""

from __future__ import annotations

import functools
import math
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F

from thead.metrics._inputs import FrameInput, as_nchw, check_same_length, num_frames, slice_frames

#: MS-SSIM scale weights of Wang, Simoncelli & Bovik (2003), finest scale first.
MS_SSIM_WEIGHTS = (0.0448, 0.2856, 0.3001, 0.2363, 0.1333)


def _pairwise(name: str, fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor], a: FrameInput, b: FrameInput,
              batch_size: int, device: torch.device | str | None, dtype: torch.dtype = torch.float32) -> np.ndarray:
    """Apply ``fn`` (two NCHW batches -> (n,) values) chunk by chunk; returns float64 ``(N,)``."""
    n_a, n_b = num_frames(a), num_frames(b)
    check_same_length(name, n_a, n_b)
    out = []
    with torch.no_grad():
        for start in range(0, n_a, batch_size):
            xa = as_nchw(slice_frames(a, start, start + batch_size), device, dtype)
            xb = as_nchw(slice_frames(b, start, start + batch_size), device or xa.device, dtype)
            if xa.shape != xb.shape:
                raise ValueError(f"{name}: frame shapes differ: {tuple(xa.shape[1:])} vs {tuple(xb.shape[1:])}")
            out.append(fn(xa, xb).double().cpu())
    return torch.cat(out).numpy()


def l1(generated: FrameInput, reference: FrameInput, batch_size: int = 32,
       device: torch.device | str | None = None) -> np.ndarray:
    """Mean absolute error per frame, on intensities in [0, 1].

    ``L1 = mean_{c,y,x} |g - r|``; 0 for identical frames. Unitless (fraction of the full intensity range);
    multiply by 255 for 8-bit levels. Used as a reconstruction metric by PECHead and HeadGAN.

    Returns: ``(N,)`` float64.
    """
    return _pairwise("l1", lambda x, y: (x - y).abs().flatten(1).mean(1), generated, reference, batch_size, device)


def mse(generated: FrameInput, reference: FrameInput, batch_size: int = 32,
        device: torch.device | str | None = None) -> np.ndarray:
    """Mean squared error per frame on intensities in [0, 1]. Returns ``(N,)`` float64."""
    return _pairwise("mse", lambda x, y: (x - y).square().flatten(1).mean(1), generated, reference, batch_size,
                     device)


def psnr(generated: FrameInput, reference: FrameInput, data_range: float = 1.0, batch_size: int = 32,
         device: torch.device | str | None = None) -> np.ndarray:
    """Peak signal-to-noise ratio per frame, in dB.

    ``PSNR = 10 log10(data_range^2 / MSE)`` with the MSE over all pixels and channels of one frame and
    ``data_range = 1`` for intensities in [0, 1]. Identical frames give ``inf`` (MSE 0). For additive Gaussian
    noise of standard deviation sigma (no clipping), PSNR = 10 log10(1 / sigma^2). Used by PECHead, HeadGAN,
    HiDe-NeRF and HifiHead.

    Returns: ``(N,)`` float64 (dB).
    """
    def fn(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        err = (x - y).square().flatten(1).mean(1).double()
        return 10.0 * torch.log10(data_range ** 2 / err)  # err == 0 -> inf

    return _pairwise("psnr", fn, generated, reference, batch_size, device)


@functools.lru_cache(maxsize=16)
def _gaussian_window_1d(size: int, sigma: float) -> torch.Tensor:
    coords = torch.arange(size, dtype=torch.float64) - (size - 1) / 2.0
    g = torch.exp(-(coords ** 2) / (2.0 * sigma ** 2))
    return g / g.sum()


def _filter_valid(x: torch.Tensor, window: torch.Tensor) -> torch.Tensor:
    """Separable 'valid' convolution of every channel of ``x`` (N, M, H, W) with the 1-D ``window``."""
    m = x.shape[1]
    k = window.to(device=x.device, dtype=x.dtype)
    if not x.is_contiguous(memory_format=torch.channels_last):
        x = x.contiguous(memory_format=torch.channels_last)  # depthwise conv: several times faster on CPU
    x = F.conv2d(x, k.view(1, 1, 1, -1).expand(m, 1, 1, -1), groups=m)
    return F.conv2d(x, k.view(1, 1, -1, 1).expand(m, 1, -1, 1), groups=m)


def _ssim_and_cs(x: torch.Tensor, y: torch.Tensor, window: torch.Tensor, data_range: float, k1: float,
                 k2: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-channel means of the SSIM map and of its contrast-structure term: two ``(N, C)`` tensors."""
    c = x.shape[1]
    # Local E[x], E[y], E[x^2], E[y^2], E[xy] under the window; contiguous NCHW so the splits are dense blocks.
    stats = _filter_valid(torch.cat([x, y, x * x, y * y, x * y], dim=1), window).contiguous()
    mu_x, mu_y, e_xx, e_yy, e_xy = stats.split(c, dim=1)
    mu_xy, mu_xx, mu_yy = mu_x * mu_y, mu_x * mu_x, mu_y * mu_y
    c1 = (k1 * data_range) ** 2
    c2 = (k2 * data_range) ** 2
    # cs = (2 cov + C2) / (var_x + var_y + C2), with var = E[x^2] - mu^2 and cov = E[xy] - mu_x mu_y.
    cs_map = (2.0 * (e_xy - mu_xy) + c2) / (e_xx - mu_xx + e_yy - mu_yy + c2)
    ssim_map = (2.0 * mu_xy + c1) / (mu_xx + mu_yy + c1) * cs_map
    return ssim_map.mean(dim=(2, 3)), cs_map.mean(dim=(2, 3))


def ssim(generated: FrameInput, reference: FrameInput, data_range: float = 1.0, win_size: int = 11,
         sigma: float = 1.5, k1: float = 0.01, k2: float = 0.03, batch_size: int = 8,
         device: torch.device | str | None = None) -> np.ndarray:
    """Structural similarity per frame (Wang et al. 2004), Gaussian-weighted.

    Local means, variances and covariance are taken under an 11x11 Gaussian window (sigma 1.5, population
    covariance), ``SSIM = (2 mu_g mu_r + C1)(2 s_gr + C2) / ((mu_g^2 + mu_r^2 + C1)(s_g^2 + s_r^2 + C2))`` with
    ``C1 = (0.01 L)^2``, ``C2 = (0.03 L)^2``, ``L = data_range = 1``; the map is averaged over the positions where
    the window fits inside the frame, then over colour channels. This equals
    ``skimage.metrics.structural_similarity(g, r, gaussian_weights=True, sigma=1.5,
    use_sample_covariance=False, data_range=1, channel_axis=-1)`` (to float32 rounding). 1 for identical frames;
    unitless, at most 1. Used by PECHead, HeadGAN, HiDe-NeRF, HifiHead and the rhythmic-head-motion paper.

    Returns: ``(N,)`` float64.
    """
    window = _gaussian_window_1d(win_size, sigma)

    def fn(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        if min(x.shape[-2:]) < win_size:
            raise ValueError(f"ssim: frames of {tuple(x.shape[-2:])} are smaller than the {win_size}-pixel window")
        return _ssim_and_cs(x, y, window, data_range, k1, k2)[0].mean(1)

    return _pairwise("ssim", fn, generated, reference, batch_size, device)


def ms_ssim_scales(height: int, width: int, win_size: int = 11, max_scales: int = len(MS_SSIM_WEIGHTS)) -> int:
    """How many MS-SSIM scales fit a ``height x width`` frame: each halving must leave >= ``win_size`` pixels.

    256x256 gives all 5 (the coarsest scale is 16x16); 128x128 gives 4.
    """
    side = min(height, width)
    scales = 0
    while scales < max_scales and side >= win_size:
        scales += 1
        side = (side + 1) // 2
    return scales


def _downsample2(x: torch.Tensor) -> torch.Tensor:
    """2x2 average pooling; odd sizes are padded by repeating the last row/column first."""
    pad_w, pad_h = x.shape[-1] % 2, x.shape[-2] % 2
    if pad_w or pad_h:
        x = F.pad(x, (0, pad_w, 0, pad_h), mode="replicate")
    return F.avg_pool2d(x, kernel_size=2, stride=2)


def _ms_ssim_batch(x: torch.Tensor, y: torch.Tensor, window: torch.Tensor, data_range: float, k1: float, k2: float,
                   weights: tuple[float, ...]) -> tuple[torch.Tensor, torch.Tensor]:
    """MS-SSIM ``(n,)`` and, as a by-product, single-scale SSIM ``(n,)`` of two NCHW batches."""
    win_size = window.numel()
    scales = ms_ssim_scales(x.shape[-2], x.shape[-1], win_size, len(weights))
    if scales < 2:
        raise ValueError(f"ms_ssim: frames of {tuple(x.shape[-2:])} are too small for 2 scales of a "
                         f"{win_size}-pixel window")
    w = torch.tensor(weights[:scales], dtype=x.dtype, device=x.device)
    w = w / w.sum()
    result = torch.ones(x.shape[:2], dtype=x.dtype, device=x.device)
    full_scale_ssim = None
    for j in range(scales):
        ssim_val, cs_val = _ssim_and_cs(x, y, window, data_range, k1, k2)
        if j == 0:
            full_scale_ssim = ssim_val.mean(1)
        term = ssim_val if j == scales - 1 else cs_val
        result = result * term.clamp(min=0.0) ** w[j]
        if j < scales - 1:
            x, y = _downsample2(x), _downsample2(y)
    assert full_scale_ssim is not None
    return result.mean(1), full_scale_ssim


def ms_ssim(generated: FrameInput, reference: FrameInput, data_range: float = 1.0, win_size: int = 11,
            sigma: float = 1.5, k1: float = 0.01, k2: float = 0.03, weights: tuple[float, ...] = MS_SSIM_WEIGHTS,
            batch_size: int = 8, device: torch.device | str | None = None) -> np.ndarray:
    """Multi-scale SSIM per frame (Wang, Simoncelli & Bovik 2003).

    ``MS-SSIM = l_M^{w_M} * prod_{j=1..M} cs_j^{w_j}``: the contrast-structure term ``cs_j`` (window-averaged,
    Gaussian window as in ``ssim``) at scales j = 1..M, each a 2x2 average-pooled copy of the previous, and the
    luminance-including SSIM at the coarsest scale M, with the standard weights
    (0.0448, 0.2856, 0.3001, 0.2363, 0.1333). Computed per colour channel, then averaged over channels.
    Negative terms (possible at coarse scales for very different frames) are clamped to 0 before the power,
    as in common implementations, so the result stays real. 1 for identical frames; unitless.

    Input size: 256x256 uses all 5 scales (coarsest 16x16, the 11x11 window still fits). Frames too small for
    5 scales (e.g. 128x128) use the scales that fit (``ms_ssim_scales``) with the first weights renormalised to
    sum to 1; fewer than 2 fitting scales raises ``ValueError``.

    Returns: ``(N,)`` float64.
    """
    window = _gaussian_window_1d(win_size, sigma)
    return _pairwise("ms_ssim", lambda x, y: _ms_ssim_batch(x, y, window, data_range, k1, k2, weights)[0],
                     generated, reference, batch_size, device)


def psnr_from_sigma(sigma: float, data_range: float = 1.0) -> float:
    """Expected PSNR (dB) of additive zero-mean Gaussian noise of standard deviation ``sigma``, no clipping."""
    return 10.0 * math.log10(data_range ** 2 / sigma ** 2)


PIXEL_METRICS = ("l1", "psnr", "ssim", "ms_ssim")


def pixel_metrics(generated: FrameInput, reference: FrameInput, metrics: tuple[str, ...] = PIXEL_METRICS,
                  batch_size: int = 8, device: torch.device | str | None = None) -> dict[str, np.ndarray]:
    """Several pixel metrics in one pass over the frames (frames converted once; SSIM shared with MS-SSIM).

    ``metrics``: any of "l1", "mse", "psnr", "ssim", "ms_ssim", with the definitions and defaults of the
    functions of those names (data range 1, 11x11 Gaussian window, sigma 1.5). Returns ``{name: (N,) float64}``.
    """
    unknown = set(metrics) - {"l1", "mse", "psnr", "ssim", "ms_ssim"}
    if unknown:
        raise ValueError(f"pixel_metrics: unknown metrics {sorted(unknown)}")
    window = _gaussian_window_1d(11, 1.5)
    n_a, n_b = num_frames(generated), num_frames(reference)
    check_same_length("pixel_metrics", n_a, n_b)
    parts: dict[str, list[torch.Tensor]] = {m: [] for m in metrics}
    with torch.no_grad():
        for start in range(0, n_a, batch_size):
            x = as_nchw(slice_frames(generated, start, start + batch_size), device)
            y = as_nchw(slice_frames(reference, start, start + batch_size), device or x.device)
            if x.shape != y.shape:
                raise ValueError(f"pixel_metrics: frame shapes differ: {tuple(x.shape[1:])} vs {tuple(y.shape[1:])}")
            diff = x - y
            if "l1" in parts:
                parts["l1"].append(diff.abs().flatten(1).mean(1).double().cpu())
            if "mse" in parts or "psnr" in parts:
                err = diff.square().flatten(1).mean(1).double().cpu()
                if "mse" in parts:
                    parts["mse"].append(err)
                if "psnr" in parts:
                    parts["psnr"].append(10.0 * torch.log10(1.0 / err))
            if "ms_ssim" in parts:
                ms, single = _ms_ssim_batch(x, y, window, 1.0, 0.01, 0.03, MS_SSIM_WEIGHTS)
                parts["ms_ssim"].append(ms.double().cpu())
                if "ssim" in parts:
                    parts["ssim"].append(single.double().cpu())
            elif "ssim" in parts:
                parts["ssim"].append(_ssim_and_cs(x, y, window, 1.0, 0.01, 0.03)[0].mean(1).double().cpu())
    return {m: torch.cat(v).numpy() for m, v in parts.items()}

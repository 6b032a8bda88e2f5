"""FID (Heusel et al. 2017) with the standard TensorFlow-ported Inception-v3, as a pure-torch module.

Features: the 2048-D pool3 output of the FID Inception-v3 (the 2015-12-05 TensorFlow graph as ported by
pytorch-fid: torchvision's Inception3 layout with the FID-specific pooling of blocks 5b-5d, 6b-6e, 7b, 7c).
Frames are resized to 299x299 (bilinear) and scaled to [-1, 1], as pytorch-fid does.
Weights load from the safetensors file of manifest entry ``fid-inception`` (convert pytorch-fid's public
``pt_inception-2015-12-05-6726825d.pth`` with ``python tools/convert_weights.py fid ...``); without it,
``fid()`` returns an unavailable ``MetricResult`` with the reason. FVD is not implemented (see ``fvd``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Iterable

import numpy as np
import torch
import torch.nn.functional as F
from scipy import linalg
from torch import nn

from thead.errors import BadWeightsError, MissingWeightsError
from thead.metrics._inputs import FrameInput, as_nchw
from thead.metrics.lpips import load_safetensors_into
from thead.metrics.result import MetricResult, missing_weights_reason

WEIGHTS_NAME = "fid-inception"
FEATURE_DIM = 2048


class BasicConv2d(nn.Module):
    """Conv (no bias) + BatchNorm (eps 1e-3) + ReLU; keys ``conv.weight``, ``bn.*``."""

    def __init__(self, cin: int, cout: int, **kwargs) -> None:
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, bias=False, **kwargs)
        self.bn = nn.BatchNorm2d(cout, eps=0.001)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(self.bn(self.conv(x)), inplace=True)


def _avg3(x: torch.Tensor) -> torch.Tensor:
    # The TF graph's average pooling ignores padding (count_include_pad=False), unlike torchvision's.
    return F.avg_pool2d(x, kernel_size=3, stride=1, padding=1, count_include_pad=False)


class InceptionA(nn.Module):
    def __init__(self, cin: int, pool_features: int) -> None:
        super().__init__()
        self.branch1x1 = BasicConv2d(cin, 64, kernel_size=1)
        self.branch5x5_1 = BasicConv2d(cin, 48, kernel_size=1)
        self.branch5x5_2 = BasicConv2d(48, 64, kernel_size=5, padding=2)
        self.branch3x3dbl_1 = BasicConv2d(cin, 64, kernel_size=1)
        self.branch3x3dbl_2 = BasicConv2d(64, 96, kernel_size=3, padding=1)
        self.branch3x3dbl_3 = BasicConv2d(96, 96, kernel_size=3, padding=1)
        self.branch_pool = BasicConv2d(cin, pool_features, kernel_size=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b1 = self.branch1x1(x)
        b5 = self.branch5x5_2(self.branch5x5_1(x))
        b3 = self.branch3x3dbl_3(self.branch3x3dbl_2(self.branch3x3dbl_1(x)))
        bp = self.branch_pool(_avg3(x))
        return torch.cat([b1, b5, b3, bp], 1)


class InceptionB(nn.Module):
    def __init__(self, cin: int) -> None:
        super().__init__()
        self.branch3x3 = BasicConv2d(cin, 384, kernel_size=3, stride=2)
        self.branch3x3dbl_1 = BasicConv2d(cin, 64, kernel_size=1)
        self.branch3x3dbl_2 = BasicConv2d(64, 96, kernel_size=3, padding=1)
        self.branch3x3dbl_3 = BasicConv2d(96, 96, kernel_size=3, stride=2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b3 = self.branch3x3(x)
        bd = self.branch3x3dbl_3(self.branch3x3dbl_2(self.branch3x3dbl_1(x)))
        bp = F.max_pool2d(x, kernel_size=3, stride=2)
        return torch.cat([b3, bd, bp], 1)


class InceptionC(nn.Module):
    def __init__(self, cin: int, channels_7x7: int) -> None:
        super().__init__()
        c7 = channels_7x7
        self.branch1x1 = BasicConv2d(cin, 192, kernel_size=1)
        self.branch7x7_1 = BasicConv2d(cin, c7, kernel_size=1)
        self.branch7x7_2 = BasicConv2d(c7, c7, kernel_size=(1, 7), padding=(0, 3))
        self.branch7x7_3 = BasicConv2d(c7, 192, kernel_size=(7, 1), padding=(3, 0))
        self.branch7x7dbl_1 = BasicConv2d(cin, c7, kernel_size=1)
        self.branch7x7dbl_2 = BasicConv2d(c7, c7, kernel_size=(7, 1), padding=(3, 0))
        self.branch7x7dbl_3 = BasicConv2d(c7, c7, kernel_size=(1, 7), padding=(0, 3))
        self.branch7x7dbl_4 = BasicConv2d(c7, c7, kernel_size=(7, 1), padding=(3, 0))
        self.branch7x7dbl_5 = BasicConv2d(c7, 192, kernel_size=(1, 7), padding=(0, 3))
        self.branch_pool = BasicConv2d(cin, 192, kernel_size=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b1 = self.branch1x1(x)
        b7 = self.branch7x7_3(self.branch7x7_2(self.branch7x7_1(x)))
        bd = self.branch7x7dbl_1(x)
        for layer in (self.branch7x7dbl_2, self.branch7x7dbl_3, self.branch7x7dbl_4, self.branch7x7dbl_5):
            bd = layer(bd)
        bp = self.branch_pool(_avg3(x))
        return torch.cat([b1, b7, bd, bp], 1)


class InceptionD(nn.Module):
    def __init__(self, cin: int) -> None:
        super().__init__()
        self.branch3x3_1 = BasicConv2d(cin, 192, kernel_size=1)
        self.branch3x3_2 = BasicConv2d(192, 320, kernel_size=3, stride=2)
        self.branch7x7x3_1 = BasicConv2d(cin, 192, kernel_size=1)
        self.branch7x7x3_2 = BasicConv2d(192, 192, kernel_size=(1, 7), padding=(0, 3))
        self.branch7x7x3_3 = BasicConv2d(192, 192, kernel_size=(7, 1), padding=(3, 0))
        self.branch7x7x3_4 = BasicConv2d(192, 192, kernel_size=3, stride=2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b3 = self.branch3x3_2(self.branch3x3_1(x))
        b7 = self.branch7x7x3_4(self.branch7x7x3_3(self.branch7x7x3_2(self.branch7x7x3_1(x))))
        bp = F.max_pool2d(x, kernel_size=3, stride=2)
        return torch.cat([b3, b7, bp], 1)


class InceptionE(nn.Module):
    """Blocks 7b (``max_pool=False``: average pool without padding counts) and 7c (``max_pool=True``)."""

    def __init__(self, cin: int, max_pool: bool) -> None:
        super().__init__()
        self.max_pool = max_pool
        self.branch1x1 = BasicConv2d(cin, 320, kernel_size=1)
        self.branch3x3_1 = BasicConv2d(cin, 384, kernel_size=1)
        self.branch3x3_2a = BasicConv2d(384, 384, kernel_size=(1, 3), padding=(0, 1))
        self.branch3x3_2b = BasicConv2d(384, 384, kernel_size=(3, 1), padding=(1, 0))
        self.branch3x3dbl_1 = BasicConv2d(cin, 448, kernel_size=1)
        self.branch3x3dbl_2 = BasicConv2d(448, 384, kernel_size=3, padding=1)
        self.branch3x3dbl_3a = BasicConv2d(384, 384, kernel_size=(1, 3), padding=(0, 1))
        self.branch3x3dbl_3b = BasicConv2d(384, 384, kernel_size=(3, 1), padding=(1, 0))
        self.branch_pool = BasicConv2d(cin, 192, kernel_size=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b1 = self.branch1x1(x)
        b3 = self.branch3x3_1(x)
        b3 = torch.cat([self.branch3x3_2a(b3), self.branch3x3_2b(b3)], 1)
        bd = self.branch3x3dbl_2(self.branch3x3dbl_1(x))
        bd = torch.cat([self.branch3x3dbl_3a(bd), self.branch3x3dbl_3b(bd)], 1)
        pooled = F.max_pool2d(x, kernel_size=3, stride=1, padding=1) if self.max_pool else _avg3(x)
        return torch.cat([b1, b3, bd, self.branch_pool(pooled)], 1)


class InceptionV3FID(nn.Module):
    """FID Inception-v3 up to pool3. ``forward(x)``: NCHW in [0, 1], any size -> ``(N, 2048)`` features."""

    def __init__(self) -> None:
        super().__init__()
        self.Conv2d_1a_3x3 = BasicConv2d(3, 32, kernel_size=3, stride=2)
        self.Conv2d_2a_3x3 = BasicConv2d(32, 32, kernel_size=3)
        self.Conv2d_2b_3x3 = BasicConv2d(32, 64, kernel_size=3, padding=1)
        self.Conv2d_3b_1x1 = BasicConv2d(64, 80, kernel_size=1)
        self.Conv2d_4a_3x3 = BasicConv2d(80, 192, kernel_size=3)
        self.Mixed_5b = InceptionA(192, pool_features=32)
        self.Mixed_5c = InceptionA(256, pool_features=64)
        self.Mixed_5d = InceptionA(288, pool_features=64)
        self.Mixed_6a = InceptionB(288)
        self.Mixed_6b = InceptionC(768, channels_7x7=128)
        self.Mixed_6c = InceptionC(768, channels_7x7=160)
        self.Mixed_6d = InceptionC(768, channels_7x7=160)
        self.Mixed_6e = InceptionC(768, channels_7x7=192)
        self.Mixed_7a = InceptionD(768)
        self.Mixed_7b = InceptionE(1280, max_pool=False)
        self.Mixed_7c = InceptionE(2048, max_pool=True)
        self.eval()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.interpolate(x, size=(299, 299), mode="bilinear", align_corners=False)
        x = 2.0 * x - 1.0
        x = self.Conv2d_2b_3x3(self.Conv2d_2a_3x3(self.Conv2d_1a_3x3(x)))
        x = F.max_pool2d(x, kernel_size=3, stride=2)
        x = self.Conv2d_4a_3x3(self.Conv2d_3b_1x1(x))
        x = F.max_pool2d(x, kernel_size=3, stride=2)
        for name in ("Mixed_5b", "Mixed_5c", "Mixed_5d", "Mixed_6a", "Mixed_6b", "Mixed_6c", "Mixed_6d",
                     "Mixed_6e", "Mixed_7a", "Mixed_7b", "Mixed_7c"):
            x = getattr(self, name)(x)
        return F.adaptive_avg_pool2d(x, 1).flatten(1)

    @classmethod
    def from_file(cls, path: str | Path, device: torch.device | str = "cpu") -> "InceptionV3FID":
        """Build and load a safetensors file with torchvision/pytorch-fid key names (``fc.*`` ignored), then run
        ``check_inception``. No sha256 check: ``load_inception`` is the checked route."""
        return cls.from_bytes(Path(path).read_bytes(), device, path)

    @classmethod
    def from_bytes(cls, data: bytes, device: torch.device | str = "cpu",
                   source: str | Path = "<bytes>") -> "InceptionV3FID":
        """Build from the bytes of a safetensors file (named ``source`` in messages): keys and shapes strict, then
        ``check_inception``. Raises ``BadWeightsError`` when either fails."""
        model = load_safetensors_into(cls(), data, device, source)
        check_inception(model, source)
        return model


def check_inception(model: InceptionV3FID, source: str | Path) -> None:
    """Refuse weights that cannot be the FID Inception: every tensor finite, every BatchNorm running variance
    positive, and the pool3 features of two different fixed images finite and different. Raises
    ``BadWeightsError``."""
    state = model.state_dict()
    bad = [k for k, v in state.items() if v.is_floating_point() and not torch.isfinite(v).all()]
    if bad:
        raise BadWeightsError(f"{source}: not FID Inception weights: non-finite values in {bad[:3]}")
    var = [k for k, v in state.items() if k.endswith("running_var") and float(v.min()) <= 0]
    if var:
        raise BadWeightsError(f"{source}: not FID Inception weights: BatchNorm variances <= 0 in {var[:3]}")
    t = torch.linspace(0.0, 1.0, 75)
    ramp = torch.stack([t[None, :].expand(75, 75), t[:, None].expand(75, 75), 1.0 - t[None, :].expand(75, 75)])
    board = ((torch.arange(75)[:, None] // 15 + torch.arange(75)[None, :] // 15) % 2).float()
    x = torch.stack([ramp, 0.5 * ramp + 0.5 * board]).to(next(model.parameters()).device)
    with torch.no_grad():
        f = model(x)
    if not torch.isfinite(f).all() or torch.equal(f[0], f[1]):
        raise BadWeightsError(f"{source}: not FID Inception weights: self-check features are "
                              f"{'not finite' if not torch.isfinite(f).all() else 'equal for different images'}")


def load_inception(device: torch.device | str = "cpu", path: str | Path | None = None) -> InceptionV3FID:
    """The FID Inception with its weights (``require_weights('fid-inception')`` unless ``path``); cached.

    The file's sha256 is checked against the manifest on every call (the converted file has no published digest:
    a warning names it each time), keys and shapes strictly, and ``check_inception`` runs once per model built.
    Raises ``MissingWeightsError`` when the file is absent, ``BadWeightsError`` (a subclass) when it is refused.
    """
    from thead.weights import load_cached_model

    return load_cached_model(InceptionV3FID, WEIGHTS_NAME, device, path)


def _batches(frames: FrameInput | Iterable, batch_size: int) -> Iterable[FrameInput]:
    """Chunks of at most ``batch_size`` frames from an array/tensor, or from an iterable of frames or batches."""
    if isinstance(frames, (torch.Tensor, np.ndarray)):
        n = 1 if frames.ndim == 3 else len(frames)
        if frames.ndim == 3:
            yield frames
            return
        for i in range(0, n, batch_size):
            yield frames[i:i + batch_size]
        return
    buf: list[np.ndarray] = []
    for item in frames:
        if isinstance(item, (torch.Tensor, np.ndarray)) and item.ndim == 4:
            if buf:
                yield np.stack(buf)
                buf = []
            yield from _batches(item, batch_size)
            continue
        buf.append(np.asarray(item) if not isinstance(item, torch.Tensor) else item.permute(1, 2, 0).cpu().numpy())
        if len(buf) >= batch_size:
            yield np.stack(buf)
            buf = []
    if buf:
        yield np.stack(buf)


def inception_features(frames: FrameInput | Iterable, model: InceptionV3FID, batch_size: int = 32,
                       device: torch.device | str | None = None) -> np.ndarray:
    """Pool3 features ``(N, 2048)`` float64 of frames (arrays, tensors, or an iterable of frames / batches)."""
    dev = device or next(model.parameters()).device
    feats = []
    with torch.no_grad():
        for batch in _batches(frames, batch_size):
            feats.append(model(as_nchw(batch, dev)).double().cpu().numpy())
    if not feats:
        raise ValueError("no frames given")
    return np.concatenate(feats)


def feature_statistics(features: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean ``(D,)`` and covariance ``(D, D)`` (ddof 1, as pytorch-fid) of features ``(N, D)``."""
    f = np.asarray(features, dtype=np.float64)
    if len(f) < 2:
        raise ValueError("feature_statistics: need at least 2 samples")
    return f.mean(axis=0), np.cov(f, rowvar=False)


def _trace_sqrt_product(sigma1: np.ndarray, sigma2: np.ndarray, method: str, eps: float) -> float:
    if method == "sqrtm":
        covmean = linalg.sqrtm(sigma1 @ sigma2)
        if not np.isfinite(covmean).all():
            offset = np.eye(len(sigma1)) * eps
            covmean = linalg.sqrtm((sigma1 + offset) @ (sigma2 + offset))
        if np.iscomplexobj(covmean):
            if not np.allclose(np.diagonal(covmean).imag, 0, atol=1e-3):
                raise ValueError(f"frechet_distance: sqrtm has an imaginary component "
                                 f"{np.abs(covmean.imag).max():.3g}")
            covmean = covmean.real
        return float(np.trace(covmean))
    if method == "eigh":
        # tr sqrt(S1 S2) = sum sqrt(eig(S1^1/2 S2 S1^1/2)): exact for PSD matrices, symmetric eigensolvers only.
        w, u = np.linalg.eigh(sigma1)
        root = (u * np.sqrt(np.clip(w, 0.0, None))) @ u.T
        ev = np.linalg.eigvalsh(root @ sigma2 @ root)
        return float(np.sqrt(np.clip(ev, 0.0, None)).sum())
    raise ValueError(f"frechet_distance: method must be 'sqrtm' or 'eigh', got {method!r}")


def frechet_distance(mu1: np.ndarray, sigma1: np.ndarray, mu2: np.ndarray, sigma2: np.ndarray,
                     method: str = "sqrtm", eps: float = 1e-6) -> float:
    """Fréchet distance of two Gaussians: ``|mu1 - mu2|^2 + tr(S1 + S2 - 2 (S1 S2)^{1/2})``.

    ``method="sqrtm"`` (default): ``scipy.linalg.sqrtm`` as pytorch-fid (offset ``eps`` I when the product is
    singular; slow: about 40 s for 2048-D on 2 cores). ``method="eigh"``: the same trace from symmetric
    eigendecompositions (several times faster, agrees to numerical precision).
    """
    mu1, mu2 = np.atleast_1d(mu1).astype(np.float64), np.atleast_1d(mu2).astype(np.float64)
    s1, s2 = np.atleast_2d(sigma1).astype(np.float64), np.atleast_2d(sigma2).astype(np.float64)
    if mu1.shape != mu2.shape or s1.shape != s2.shape:
        raise ValueError("frechet_distance: statistics have different dimensions")
    diff = mu1 - mu2
    return float(diff @ diff + np.trace(s1) + np.trace(s2) - 2.0 * _trace_sqrt_product(s1, s2, method, eps))


def frechet_distance_from_features(features1: np.ndarray, features2: np.ndarray) -> float:
    """Fréchet distance of the Gaussians fitted to two feature sets ``(N1, D)``, ``(N2, D)``, exactly, via SVD.

    With centred ``A_i = (F_i - mean) / sqrt(N_i - 1)`` (so ``S_i = A_i^T A_i``), the non-zero eigenvalues of
    ``S1 S2`` are the squared singular values of ``A1 A2^T``, hence ``tr (S1 S2)^{1/2} = ||A1 A2^T||_*``. This is
    fast when ``N1 N2`` is small compared with ``D^2`` (few frames, 2048-D features) and avoids the ill-conditioned
    square root of a rank-deficient product; otherwise the ``eigh`` route of ``frechet_distance`` is used.
    """
    f1 = np.asarray(features1, dtype=np.float64)
    f2 = np.asarray(features2, dtype=np.float64)
    if len(f1) < 2 or len(f2) < 2 or f1.shape[1] != f2.shape[1]:
        raise ValueError("frechet_distance_from_features: need (N>=2, D) sets of equal D")
    mu1, mu2 = f1.mean(axis=0), f2.mean(axis=0)
    if len(f1) * len(f2) > f1.shape[1] ** 2:
        return frechet_distance(mu1, np.cov(f1, rowvar=False), mu2, np.cov(f2, rowvar=False), method="eigh")
    a1 = (f1 - mu1) / np.sqrt(len(f1) - 1)
    a2 = (f2 - mu2) / np.sqrt(len(f2) - 1)
    trace_sqrt = np.linalg.svd(a1 @ a2.T, compute_uv=False).sum()
    diff = mu1 - mu2
    return float(diff @ diff + (a1 * a1).sum() + (a2 * a2).sum() - 2.0 * trace_sqrt)


def fid(generated: FrameInput | Iterable, reference: FrameInput | Iterable, batch_size: int = 32,
        device: torch.device | str | None = None, weights_path: str | Path | None = None,
        method: str = "sqrtm") -> MetricResult:
    """Fréchet Inception Distance between two sets of frames (lower = closer distributions; 0 for equal sets).

    Both sets go through the FID Inception-v3 (pool3, 2048-D); FID is the Fréchet distance of the two feature
    Gaussians (``frechet_distance``). Sets may differ in size and be streamed (iterables of frames or batches).
    Reported by PECHead, HeadGAN, HiDe-NeRF, HifiHead and the rhythmic-head-motion paper. FID is biased upward
    for small sets (below 2048 samples the covariance is rank-deficient): compare only values computed on the
    same number of frames; ``details`` records the counts.

    ``method``: "sqrtm" (default; ``scipy.linalg.sqrtm`` as pytorch-fid), "eigh" (same value, faster), or
    "lowrank" (``frechet_distance_from_features``: exact and fast for small sets).

    Returns a ``MetricResult``; unavailable with the reason when the weights file is missing or a set has
    fewer than 2 frames.
    """
    try:
        model = load_inception(device or "cpu", weights_path)
    except MissingWeightsError as err:
        return MetricResult.unavailable("fid", missing_weights_reason(err, WEIGHTS_NAME))
    fg = inception_features(generated, model, batch_size)
    fr = inception_features(reference, model, batch_size)
    if len(fg) < 2 or len(fr) < 2:
        return MetricResult.unavailable("fid", f"FID needs at least 2 frames per set (got {len(fg)} and {len(fr)})")
    if method == "lowrank":
        value = frechet_distance_from_features(fg, fr)
    else:
        value = frechet_distance(*feature_statistics(fg), *feature_statistics(fr), method=method)
    details = {"generated_frames": len(fg), "reference_frames": len(fr), "feature_dim": fg.shape[1]}
    if min(len(fg), len(fr)) < FEATURE_DIM:
        details["note"] = f"fewer than {FEATURE_DIM} frames per set: biased upward, compare only at equal counts"
    return MetricResult(name="fid", value=value, count=len(fg), details=details)


def fvd(generated: object = None, reference: object = None) -> MetricResult:
    """FVD (Unterthiner et al. 2018): not implemented in thead; always returns an unavailable result.

    FVD needs the Kinetics-400 I3D network (the TF-Hub model, or its TorchScript export used by StyleGAN-V);
    thead has no pure-torch I3D port with a safetensors conversion yet, so it reports FVD as unavailable
    rather than approximating it with another network.
    """
    return MetricResult.unavailable(
        "fvd", "FVD is not implemented in thead: it needs a port of the Kinetics-400 I3D network (TF-Hub "
               "i3d-kinetics-400) that is not available yet; use StyleGAN-V's or the original TF implementation")

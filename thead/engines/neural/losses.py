"""Training losses of the neural engine: region-weighted L1, multi-scale SSIM, hinge GAN with feature matching,
and a VGG-19 perceptual loss when its weights are on disk (manifest entry ``vgg19``; never downloaded).

Images are float [N,3,H,W] in [0, 1]; region masks float [N,1,H,W] in [0, 1].
"""

from __future__ import annotations

import logging

import torch
import torch.nn.functional as F
from torch import nn

log = logging.getLogger("thead.neural")


def weighted_l1(output: torch.Tensor, target: torch.Tensor, face: torch.Tensor | None = None,
                mouth: torch.Tensor | None = None, face_weight: float = 2.0, mouth_weight: float = 4.0) -> torch.Tensor:
    """Mean of |output - target| weighted by 1 + face_weight * face + mouth_weight * mouth (normalised by the
    mean weight, so the loss stays on the scale of a plain L1)."""
    w = torch.ones_like(output[:, :1])
    if face is not None:
        w = w + face_weight * face
    if mouth is not None:
        w = w + mouth_weight * mouth
    return ((output - target).abs() * w).mean() / w.mean()


def gradient_l1(output: torch.Tensor, target: torch.Tensor, scales: int = 2) -> torch.Tensor:
    """Mean L1 between the images' horizontal and vertical finite differences, over ``scales`` dyadic scales.

    A blurred output has weaker gradients than the target at every edge (hair strands, teeth, eyelids, the
    glasses' rims), which a plain L1 or SSIM barely charges where the blur is a pixel or two: this term does. The
    result is on the scale of a plain L1 of the differences (a mean over pixels, channels and the two
    directions), averaged over scales."""
    vals = []
    a, b = output, target
    for i in range(scales):
        if min(a.shape[-2:]) < 8:
            break
        dx = (a[..., :, 1:] - a[..., :, :-1]) - (b[..., :, 1:] - b[..., :, :-1])
        dy = (a[..., 1:, :] - a[..., :-1, :]) - (b[..., 1:, :] - b[..., :-1, :])
        vals.append(0.5 * (dx.abs().mean() + dy.abs().mean()))
        a, b = F.avg_pool2d(a, 2), F.avg_pool2d(b, 2)
    return torch.stack(vals).mean()


def _gaussian(window: int, sigma: float, device, dtype) -> torch.Tensor:
    x = torch.arange(window, device=device, dtype=dtype) - (window - 1) / 2
    g = torch.exp(-(x ** 2) / (2 * sigma ** 2))
    g = g / g.sum()
    return (g[:, None] * g[None, :]).expand(3, 1, window, window).contiguous()


def ssim(a: torch.Tensor, b: torch.Tensor, window: int = 7, sigma: float = 1.5) -> torch.Tensor:
    """Mean SSIM of two image batches [N,3,H,W] in [0, 1] (Gaussian window, valid region)."""
    k = _gaussian(window, sigma, a.device, a.dtype)
    c1, c2 = 0.01 ** 2, 0.03 ** 2
    mu_a, mu_b = F.conv2d(a, k, groups=3), F.conv2d(b, k, groups=3)
    saa = F.conv2d(a * a, k, groups=3) - mu_a ** 2
    sbb = F.conv2d(b * b, k, groups=3) - mu_b ** 2
    sab = F.conv2d(a * b, k, groups=3) - mu_a * mu_b
    s = ((2 * mu_a * mu_b + c1) * (2 * sab + c2)) / ((mu_a ** 2 + mu_b ** 2 + c1) * (saa + sbb + c2))
    return s.mean()


def ms_ssim_loss(a: torch.Tensor, b: torch.Tensor, scales: int = 3) -> torch.Tensor:
    """1 - mean SSIM over ``scales`` dyadic scales (scales too small for the window are skipped)."""
    vals = []
    for i in range(scales):
        if min(a.shape[-2:]) < 16:
            break
        vals.append(ssim(a, b))
        a, b = F.avg_pool2d(a, 2), F.avg_pool2d(b, 2)
    return 1.0 - torch.stack(vals).mean()


def hinge_d_loss(real: list[list[torch.Tensor]], fake: list[list[torch.Tensor]]) -> torch.Tensor:
    """Discriminator hinge loss over scales: mean relu(1 - D(real)) + relu(1 + D(fake))."""
    return sum(F.relu(1 - r[-1]).mean() + F.relu(1 + f[-1]).mean() for r, f in zip(real, fake)) / len(real)


def hinge_g_loss(fake: list[list[torch.Tensor]]) -> torch.Tensor:
    """Generator hinge loss: -mean D(fake) over scales."""
    return -sum(f[-1].mean() for f in fake) / len(fake)


def feature_matching(real: list[list[torch.Tensor]], fake: list[list[torch.Tensor]]) -> torch.Tensor:
    """L1 between the discriminator's intermediate features of real (detached) and fake, over layers and scales."""
    total, n = 0.0, 0
    for r, f in zip(real, fake):
        for a, b in zip(r[:-1], f[:-1]):
            total = total + (a.detach() - b).abs().mean()
            n += 1
    return total / max(n, 1)


# torchvision's vgg19().features layout: conv widths, "M" = max-pool.
VGG19_LAYOUT = (64, 64, "M", 128, 128, "M", 256, 256, 256, 256, "M", 512, 512, 512, 512, "M", 512, 512, 512, 512, "M")
VGG_TAPS = (1, 6, 11, 20, 29)  # relu1_1, relu2_1, relu3_1, relu4_1, relu5_1 (indices into features)


class VGG19Features(nn.Module):
    """torchvision's VGG-19 ``features`` (same module indices, so its state keys ``features.N.weight`` load
    as they are); forward(x [N,3,H,W] in [0,1]) -> the ReLU activations at ``VGG_TAPS``."""

    def __init__(self) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        cin = 3
        for v in VGG19_LAYOUT:
            if v == "M":
                layers.append(nn.MaxPool2d(2, 2))
            else:
                layers += [nn.Conv2d(cin, int(v), 3, 1, 1), nn.ReLU(inplace=False)]
                cin = int(v)
        self.features = nn.Sequential(*layers)
        self.register_buffer("mean", torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1), persistent=False)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        h = (x - self.mean) / self.std
        out = []
        for i, layer in enumerate(self.features):
            h = layer(h)
            if i in VGG_TAPS:
                out.append(h)
            if i >= VGG_TAPS[-1]:
                break
        return out


def load_vgg19(device: torch.device | str = "cpu") -> VGG19Features | None:
    """The VGG-19 feature network from the ``vgg19`` weights (sha256-checked), or None (logged) when the file is
    absent: the perceptual loss is then skipped."""
    from thead.errors import MissingWeightsError
    from thead.weights import find_weights, read_weights

    if find_weights("vgg19") is None:
        log.info("VGG-19 weights not in the weights folder: training without the perceptual loss "
                 "(see `thead weights` for how to make vgg19.safetensors)")
        return None
    try:
        checked = read_weights("vgg19")
    except MissingWeightsError as exc:
        log.warning("perceptual loss skipped: %s", exc)
        return None
    from safetensors.torch import load

    state = {k: v for k, v in load(checked.data).items() if k.startswith("features.")}
    net = VGG19Features()
    net.load_state_dict(state, strict=True)
    for p in net.parameters():
        p.requires_grad_(False)
    return net.to(device).eval()


def perceptual_loss(vgg: VGG19Features, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Mean L1 between VGG-19 activations of ``a`` and ``b`` over the tapped layers."""
    fa, fb = vgg(a), vgg(b)
    return sum((x - y.detach()).abs().mean() for x, y in zip(fa, fb)) / len(fa)


__all__ = ["VGG19Features", "feature_matching", "gradient_l1", "hinge_d_loss", "hinge_g_loss", "load_vgg19",
           "ms_ssim_loss", "perceptual_loss", "ssim", "weighted_l1"]

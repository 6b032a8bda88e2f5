"""The neural generator (HeadGAN / PECHead family) and its multi-scale patch discriminator.

Data flow for one batch of N frames at side S = ``config.size`` (C = ``config.channels``, L = ``config.levels``):

    source [N,3,S,S] --SourceEncoder--> features [N,Cl,S/2^L,S/2^L]           (Cl = min(C*2^L, max_channels))
    source, source_cond, target_cond --MotionNetwork (U-Net at S*motion_scale)--> flow [N,2,S,S] (offsets in grid units)
                                                                       occlusion [N,1,S,S] in [0,1]
    features --grid_sample(identity + flow)--> * occlusion --> warped [N,Cl,S/2^L,S/2^L]
    warped --SPADE res blocks, up-sampling SPADE blocks (conditioned on target_cond [+ base])--> [N,C,S,S]
           --> base == "mesh": clamp(base + conv(h)) (conv zero at initialisation: output == base)
               base == "none": sigmoid(conv(h))

The motion network also sees the flow-warped source image through its occlusion, so the decoder is handed the
warped RGB too (it joins the SPADE condition).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from thead.engines.neural.condition import COND_CHANNELS
from thead.engines.neural.config import NeuralConfig


def _width(config: NeuralConfig, level: int, first: int) -> int:
    return int(min(first * 2 ** level, config.max_channels))


class ConvBlock(nn.Sequential):
    """conv 3x3 -> instance-free group norm -> leaky ReLU; [N,cin,H,W] -> [N,cout,H/stride,W/stride]."""

    def __init__(self, cin: int, cout: int, stride: int = 1) -> None:
        super().__init__(nn.Conv2d(cin, cout, 3, stride, 1), nn.GroupNorm(min(8, cout), cout), nn.LeakyReLU(0.2))


class MotionNetwork(nn.Module):
    """U-Net on (source, source_cond, target_cond) at ``size * motion_scale`` predicting flow and occlusion.

    forward(x [N, 3 + 2*COND_CHANNELS, S, S]) -> (flow [N,2,S,S] offsets added to the identity sampling grid in
    grid_sample's normalised [-1, 1] units, occlusion [N,1,S,S] in [0, 1]). The flow head starts at zero (the
    identity warp) and the occlusion head at 1 everywhere (sigmoid(4)).
    """

    def __init__(self, config: NeuralConfig) -> None:
        super().__init__()
        c, n = config.motion_channels, config.motion_levels
        cin = 3 + 2 * COND_CHANNELS
        self.scale = float(config.motion_scale)
        self.stem = ConvBlock(cin, c)
        self.down = nn.ModuleList([ConvBlock(_width(config, i, c), _width(config, i + 1, c), 2) for i in range(n)])
        self.up = nn.ModuleList([ConvBlock(_width(config, i + 1, c) + _width(config, i, c), _width(config, i, c))
                                 for i in reversed(range(n))])
        self.flow = nn.Conv2d(c, 2, 3, 1, 1)
        self.occlusion = nn.Conv2d(c, 1, 3, 1, 1)
        nn.init.zeros_(self.flow.weight)
        nn.init.zeros_(self.flow.bias)
        nn.init.zeros_(self.occlusion.weight)
        nn.init.constant_(self.occlusion.bias, 4.0)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        size = x.shape[-2:]
        h = self.stem(F.interpolate(x, scale_factor=self.scale, mode="bilinear", align_corners=False,
                                    antialias=self.scale < 1))
        skips = [h]
        for block in self.down:
            h = block(h)
            skips.append(h)
        skips.pop()
        for block in self.up:
            skip = skips.pop()
            h = F.interpolate(h, size=skip.shape[-2:], mode="bilinear", align_corners=False)
            h = block(torch.cat([h, skip], 1))
        flow = F.interpolate(self.flow(h), size=size, mode="bilinear", align_corners=False)
        occlusion = torch.sigmoid(F.interpolate(self.occlusion(h), size=size, mode="bilinear", align_corners=False))
        return flow, occlusion


def warp(features: torch.Tensor, flow: torch.Tensor) -> torch.Tensor:
    """Sample ``features`` [N,C,h,w] at the identity grid plus ``flow`` [N,2,H,W] (x, y offsets in normalised
    units; resized to h x w). Returns [N,C,h,w]; outside samples are 0 (padding_mode zeros)."""
    n, _, h, w = features.shape
    if flow.shape[-2:] != (h, w):
        flow = F.interpolate(flow, size=(h, w), mode="bilinear", align_corners=False)
    ys = (torch.arange(h, device=features.device, dtype=flow.dtype) + 0.5) * (2.0 / h) - 1.0
    xs = (torch.arange(w, device=features.device, dtype=flow.dtype) + 0.5) * (2.0 / w) - 1.0
    grid = torch.stack(torch.meshgrid(xs, ys, indexing="xy"), dim=-1).unsqueeze(0)  # [1,h,w,2] (x, y)
    grid = grid + flow.permute(0, 2, 3, 1)
    return F.grid_sample(features, grid.to(features.dtype), mode="bilinear", padding_mode="zeros",
                         align_corners=False)


class SPADE(nn.Module):
    """Spatially-adaptive normalisation: instance-normalised x [N,C,H,W] scaled and shifted by maps predicted from
    the condition [N,K,*,*] (resized to H x W)."""

    def __init__(self, channels: int, cond_channels: int, hidden: int = 16) -> None:
        super().__init__()
        self.norm = nn.InstanceNorm2d(channels, affine=False)
        self.shared = nn.Sequential(nn.Conv2d(cond_channels, hidden, 3, 1, 1), nn.ReLU())
        self.gamma = nn.Conv2d(hidden, channels, 3, 1, 1)
        self.beta = nn.Conv2d(hidden, channels, 3, 1, 1)

    def forward(self, x: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        cond = F.interpolate(cond, size=x.shape[-2:], mode="bilinear", align_corners=False)
        a = self.shared(cond)
        return self.norm(x) * (1 + self.gamma(a)) + self.beta(a)


class SPADEBlock(nn.Module):
    """SPADE residual block [N,cin,H,W] -> [N,cout,H,W] (learned shortcut when cin != cout)."""

    def __init__(self, cin: int, cout: int, cond_channels: int, hidden: int = 16) -> None:
        super().__init__()
        mid = min(cin, cout)
        self.n0 = SPADE(cin, cond_channels, hidden)
        self.c0 = nn.Conv2d(cin, mid, 3, 1, 1)
        self.n1 = SPADE(mid, cond_channels, hidden)
        self.c1 = nn.Conv2d(mid, cout, 3, 1, 1)
        self.skip = nn.Conv2d(cin, cout, 1, bias=False) if cin != cout else None

    def forward(self, x: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        h = self.c0(F.leaky_relu(self.n0(x, cond), 0.2))
        h = self.c1(F.leaky_relu(self.n1(h, cond), 0.2))
        return (x if self.skip is None else self.skip(x)) + h


class NeuralGenerator(nn.Module):
    """Flow-warping, SPADE-decoding generator conditioned on thead's 3-D face (see the module docstring).

    State: ``encoder`` (stem + ``levels`` stride-2 blocks), ``motion`` (:class:`MotionNetwork`), ``bottleneck``
    (``res_blocks`` SPADE blocks at S/2^L), ``decoder`` (``levels`` up-sampling SPADE blocks), ``to_rgb`` (conv
    3x3 C -> 3; zero-initialised when ``base == "mesh"``).
    """

    def __init__(self, config: NeuralConfig) -> None:
        super().__init__()
        self.config = config
        c, n = config.channels, config.levels
        self.cond_channels = COND_CHANNELS + 3 + (3 if config.base == "mesh" else 0)  # target cond, warped RGB, base
        self.encoder = nn.Sequential(ConvBlock(3 + COND_CHANNELS, c),
                                     *[ConvBlock(_width(config, i, c), _width(config, i + 1, c), 2) for i in range(n)])
        self.motion = MotionNetwork(config)
        bottom = _width(config, n, c)
        self.bottleneck = nn.ModuleList([SPADEBlock(bottom, bottom, self.cond_channels, config.spade_hidden)
                                          for _ in range(config.res_blocks)])
        self.decoder = nn.ModuleList([SPADEBlock(_width(config, i + 1, c), _width(config, i, c), self.cond_channels,
                                                 config.spade_hidden)
                                      for i in reversed(range(n))])
        self.to_rgb = nn.Conv2d(c, 3, 3, 1, 1)
        if config.base == "mesh":
            nn.init.zeros_(self.to_rgb.weight)
            nn.init.zeros_(self.to_rgb.bias)

    def forward(self, source: torch.Tensor, source_cond: torch.Tensor, target_cond: torch.Tensor,
                base: torch.Tensor | None = None) -> torch.Tensor:
        """Render the source person at the target's face.

        Parameters
        ----------
        source : float [N,3,S,S] in [0, 1], S = ``config.size``.
        source_cond, target_cond : float [N,COND_CHANNELS,S,S] (``condition_maps`` of the source frame's own
            mesh and of the target mesh).
        base : float [N,3,S,S] in [0, 1], the mesh engine's render of the target; required when
            ``config.base == "mesh"``, ignored otherwise.

        Returns
        -------
        float [N,3,S,S] in [0, 1].
        """
        s = self.config.size
        for name, t, ch in (("source", source, 3), ("source_cond", source_cond, COND_CHANNELS),
                            ("target_cond", target_cond, COND_CHANNELS)):
            if t.dim() != 4 or t.shape[1] != ch or tuple(t.shape[-2:]) != (s, s):
                raise ValueError(f"{name} must be [N,{ch},{s},{s}], got {tuple(t.shape)}")
        if self.config.base == "mesh":
            if base is None or tuple(base.shape) != tuple(source.shape):
                raise ValueError(f"base must be [N,3,{s},{s}] for a base='mesh' model, got "
                                 f"{None if base is None else tuple(base.shape)}")
        flow, occlusion = self.motion(torch.cat([source, source_cond, target_cond], 1))
        features = self.encoder(torch.cat([source, source_cond], 1))
        h = warp(features, flow) * F.interpolate(occlusion, size=features.shape[-2:], mode="bilinear",
                                                 align_corners=False)
        warped_rgb = warp(source, flow) * occlusion
        parts = [target_cond, warped_rgb] + ([base] if self.config.base == "mesh" else [])
        cond = torch.cat(parts, 1)
        for block in self.bottleneck:
            h = block(h, cond)
        for block in self.decoder:
            h = F.interpolate(h, scale_factor=2.0, mode="nearest")
            h = block(h, cond)
        out = self.to_rgb(F.leaky_relu(h, 0.2))
        if self.config.base == "mesh":
            return (base + out).clamp(0.0, 1.0)
        return torch.sigmoid(out)


class PatchDiscriminator(nn.Module):
    """Multi-scale patch discriminator on (image, target_cond): ``disc_scales`` PatchGANs, each on the pair
    down-sampled by 2 more than the last. forward(x [N,3+COND_CHANNELS,S,S]) -> list over scales of the list of
    each layer's features [N,*,h,w] (the last one the patch logits [N,1,h,w])."""

    def __init__(self, config: NeuralConfig) -> None:
        super().__init__()
        c = config.disc_channels
        nets = []
        for _ in range(config.disc_scales):
            nets.append(nn.ModuleList([
                nn.Sequential(nn.Conv2d(3 + COND_CHANNELS, c, 4, 2, 1), nn.LeakyReLU(0.2)),
                nn.Sequential(nn.Conv2d(c, 2 * c, 4, 2, 1), nn.GroupNorm(min(8, 2 * c), 2 * c), nn.LeakyReLU(0.2)),
                nn.Sequential(nn.Conv2d(2 * c, 4 * c, 4, 1, 1), nn.GroupNorm(min(8, 4 * c), 4 * c),
                              nn.LeakyReLU(0.2)),
                nn.Conv2d(4 * c, 1, 3, 1, 1),
            ]))
        self.nets = nn.ModuleList(nets)

    def forward(self, x: torch.Tensor) -> list[list[torch.Tensor]]:
        outs = []
        for i, net in enumerate(self.nets):
            h = x if i == 0 else F.avg_pool2d(x, 2 ** i)
            feats = []
            for layer in net:
                h = layer(h)
                feats.append(h)
            outs.append(feats)
        return outs


__all__ = ["MotionNetwork", "NeuralGenerator", "PatchDiscriminator", "SPADE", "SPADEBlock", "warp"]

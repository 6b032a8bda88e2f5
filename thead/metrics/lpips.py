"""LPIPS (Zhang et al. 2018), AlexNet variant v0.1, as a pure-torch module (no torchvision).

The weights cannot ship with thead: they load from the safetensors file of manifest entry ``lpips-alex``
(torchvision's ImageNet AlexNet convolutions merged with the LPIPS v0.1 linear layers; convert the two public
checkpoints with ``python tools/convert_weights.py lpips ...``). Without that file ``lpips()`` returns an
unavailable ``MetricResult`` saying what to get, never a number from random weights.

State-dict keys follow the public checkpoints: ``features.{0,3,6,8,10}.{weight,bias}`` (torchvision AlexNet)
and ``lin{0..4}.model.1.weight`` (LPIPS linear layers).
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from thead.errors import MissingWeightsError
from thead.metrics._inputs import FrameInput, as_nchw, check_same_length, num_frames, slice_frames
from thead.metrics.result import MetricResult, missing_weights_reason

WEIGHTS_NAME = "lpips-alex"
ALEX_CHANNELS = (64, 192, 384, 256, 256)
# AlexNet feature indices after which LPIPS taps relu1..relu5.
_TAPS = (1, 4, 7, 9, 11)


class _LinearHead(nn.Module):
    """LPIPS 'NetLinLayer': (dropout) + 1x1 conv to one channel, no bias; key ``model.1.weight``."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.model = nn.Sequential(nn.Dropout(), nn.Conv2d(channels, 1, kernel_size=1, bias=False))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)


class LPIPSAlex(nn.Module):
    """LPIPS with the AlexNet trunk. ``forward(x, y)`` on NCHW in [0, 1] returns ``(N,)`` distances."""

    def __init__(self) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(3, 64, kernel_size=11, stride=4, padding=2), nn.ReLU(inplace=True),
            nn.MaxPool2d(kernel_size=3, stride=2),
            nn.Conv2d(64, 192, kernel_size=5, padding=2), nn.ReLU(inplace=True),
            nn.MaxPool2d(kernel_size=3, stride=2),
            nn.Conv2d(192, 384, kernel_size=3, padding=1), nn.ReLU(inplace=True),
            nn.Conv2d(384, 256, kernel_size=3, padding=1), nn.ReLU(inplace=True),
            nn.Conv2d(256, 256, kernel_size=3, padding=1), nn.ReLU(inplace=True),
        )
        for i, c in enumerate(ALEX_CHANNELS):
            self.add_module(f"lin{i}", _LinearHead(c))
        # LPIPS ScalingLayer constants (input already in [-1, 1]).
        self.register_buffer("shift", torch.tensor([-0.030, -0.088, -0.188]).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("scale", torch.tensor([0.458, 0.448, 0.450]).view(1, 3, 1, 1), persistent=False)
        self.eval()

    def _taps(self, x: torch.Tensor) -> list[torch.Tensor]:
        x = ((x * 2.0 - 1.0) - self.shift) / self.scale
        out = []
        for i, layer in enumerate(self.features):
            x = layer(x)
            if i in _TAPS:
                out.append(x)
        return out

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        fx, fy = self._taps(x), self._taps(y)
        total = torch.zeros(x.shape[0], device=x.device, dtype=x.dtype)
        for i, (a, b) in enumerate(zip(fx, fy)):
            a = a / (a.square().sum(dim=1, keepdim=True).sqrt() + 1e-10)
            b = b / (b.square().sum(dim=1, keepdim=True).sqrt() + 1e-10)
            head = getattr(self, f"lin{i}")
            total = total + head((a - b).square()).mean(dim=(1, 2, 3))
        return total

    @classmethod
    def from_file(cls, path: str | Path, device: torch.device | str = "cpu") -> "LPIPSAlex":
        """Build the module and load a safetensors file (keys above; extra keys such as ``classifier.*`` ignored)."""
        return load_safetensors_into(cls(), path, device)


def load_safetensors_into(model: nn.Module, path: str | Path, device: torch.device | str = "cpu") -> nn.Module:
    """``model`` with the safetensors file ``path`` loaded (``load_checked_state``), on ``device``, in eval mode."""
    from safetensors.torch import load_file

    load_checked_state(model, load_file(str(path)), Path(path))
    return model.to(device).eval()


def load_checked_state(model: nn.Module, state: dict[str, torch.Tensor], path: Path) -> None:
    """Load ``state`` into ``model``; every model key must be present with its shape (extra keys ignored)."""
    own = model.state_dict()
    state = {**{k: v for k, v in own.items() if k.endswith("num_batches_tracked")}, **state}  # BN counters optional
    missing = [k for k in own if k not in state]
    wrong = [f"{k} {tuple(state[k].shape)} != {tuple(v.shape)}" for k, v in own.items()
             if k in state and state[k].shape != v.shape]
    if missing or wrong:
        detail = (f"missing {missing[:3]}{'...' if len(missing) > 3 else ''}" if missing
                  else f"wrong shapes {wrong[:3]}")
        raise MissingWeightsError(f"{path} is not a valid {type(model).__name__} weights file ({detail}); "
                                  f"convert it again (python tools/convert_weights.py --help)")
    model.load_state_dict({k: state[k] for k in own}, strict=True)


def load_lpips(device: torch.device | str = "cpu", path: str | Path | None = None) -> LPIPSAlex:
    """The LPIPS-Alex module with its weights (``require_weights('lpips-alex')`` unless ``path``); cached.

    Raises ``MissingWeightsError`` when the file is absent or malformed.
    """
    from thead.weights import load_cached_model

    return load_cached_model(LPIPSAlex, WEIGHTS_NAME, device, path)


def lpips(generated: FrameInput, reference: FrameInput, batch_size: int = 16,
          device: torch.device | str | None = None, weights_path: str | Path | None = None) -> MetricResult:
    """LPIPS distance per frame pair (AlexNet, v0.1), lower = perceptually closer; 0 for identical frames.

    ``d(x, y) = sum_l mean_{h,w} || w_l * (f_l(x) - f_l(y)) ||^2`` over the 5 ReLU layers of AlexNet, with
    channel-normalised features ``f_l`` and learned per-channel weights ``w_l``; inputs in [0, 1] are mapped to
    [-1, 1]. Unitless. Reported by PECHead, HeadGAN, HiDe-NeRF and HifiHead (usually at 256x256).

    Returns a ``MetricResult``: ``per_frame`` ``(N,)``, ``value`` their mean; unavailable (with the reason) when
    the weights file is missing.
    """
    try:
        dev = device or (generated.device if isinstance(generated, torch.Tensor) else "cpu")
        model = load_lpips(dev, weights_path)
    except MissingWeightsError as err:
        return MetricResult.unavailable("lpips", missing_weights_reason(err, WEIGHTS_NAME))
    n = num_frames(generated)
    check_same_length("lpips", n, num_frames(reference))
    values = []
    with torch.no_grad():
        for start in range(0, n, batch_size):
            x = as_nchw(slice_frames(generated, start, start + batch_size), dev)
            y = as_nchw(slice_frames(reference, start, start + batch_size), dev)
            if x.shape != y.shape:
                raise ValueError(f"lpips: frame shapes differ: {tuple(x.shape[1:])} vs {tuple(y.shape[1:])}")
            values.append(model(x, y).double().cpu())
    per_frame = torch.cat(values).numpy()
    return MetricResult(name="lpips", value=float(per_frame.mean()), per_frame=per_frame, count=len(per_frame),
                        details={"network": "alex", "version": "0.1"})


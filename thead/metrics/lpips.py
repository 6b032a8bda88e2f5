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

from thead.errors import BadWeightsError, MissingWeightsError
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
        """Build the module and load a safetensors file (keys above; extra keys such as ``classifier.*`` ignored),
        then run ``check_lpips``. No sha256 check: ``load_lpips`` is the checked route."""
        return cls.from_bytes(Path(path).read_bytes(), device, path)

    @classmethod
    def from_bytes(cls, data: bytes, device: torch.device | str = "cpu",
                   source: str | Path = "<bytes>") -> "LPIPSAlex":
        """Build the module from the bytes of a safetensors file (named ``source`` in messages); keys and shapes
        strict, then ``check_lpips``. Raises ``BadWeightsError`` when either fails."""
        model = load_safetensors_into(cls(), data, device, source)
        check_lpips(model, source)
        return model


def check_lpips(model: LPIPSAlex, source: str | Path) -> None:
    """Refuse weights that cannot be LPIPS v0.1: every tensor finite; the linear heads non-negative (LPIPS trains
    them clamped at 0, so a distance is never negative; the published v0.1 heads span 0 .. 1.32); and two
    different fixed test images at a positive, finite distance. Random or wrong weights fail here instead of
    printing a number such as -0.066. Raises ``BadWeightsError``.
    """
    bad = [k for k, v in model.state_dict().items() if not torch.isfinite(v).all()]
    if bad:
        raise BadWeightsError(f"{source}: not LPIPS weights: non-finite values in {bad[:3]}")
    for i in range(len(ALEX_CHANNELS)):
        w = getattr(model, f"lin{i}").model[1].weight.detach()
        if float(w.min()) < 0:
            raise BadWeightsError(f"{source}: not LPIPS v0.1 weights: linear head lin{i} has negative weights "
                                  f"(min {float(w.min()):.3g}); LPIPS heads are >= 0")
    x, y = _self_check_pair(next(model.parameters()).device)
    with torch.no_grad():
        d = model(torch.cat([x, x]), torch.cat([x, y]))
    if not torch.isfinite(d).all() or float(d[0]) != 0.0 or not float(d[1]) > 0.0:
        raise BadWeightsError(f"{source}: not LPIPS weights: self-check distances (same image {float(d[0]):.3g}, "
                              f"different images {float(d[1]):.3g}) are not 0 and > 0")


def _self_check_pair(device: torch.device | str) -> tuple[torch.Tensor, torch.Tensor]:
    """Two fixed, different 1x3x64x64 images in [0, 1] (smooth colour ramps vs the same with a checkerboard)."""
    t = torch.linspace(0.0, 1.0, 64)
    ramp = torch.stack([t[None, :].expand(64, 64), t[:, None].expand(64, 64), 1.0 - t[None, :].expand(64, 64)])
    board = ((torch.arange(64)[:, None] // 8 + torch.arange(64)[None, :] // 8) % 2).float()
    x = ramp[None].to(device)
    y = (0.5 * ramp + 0.5 * board)[None].to(device)
    return x, y


def load_safetensors_into(model: nn.Module, source: str | Path | bytes, device: torch.device | str = "cpu",
                          name: str | Path | None = None) -> nn.Module:
    """``model`` with a safetensors file loaded (``load_checked_state``), on ``device``, in eval mode.

    ``source`` is the file's path or its bytes (then ``name`` names it in messages). Raises ``BadWeightsError``
    when the bytes are not a safetensors file, or keys / shapes do not match.
    """
    from safetensors.torch import load, load_file

    label = Path(name) if name is not None else (Path(source) if not isinstance(source, bytes) else "<bytes>")
    try:
        state = load(source) if isinstance(source, bytes) else load_file(str(source))
    except Exception as exc:  # noqa: BLE001 - SafetensorError, OSError: a bad file, named
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise BadWeightsError(f"{label}: not a readable safetensors file ({first}); convert it again "
                              f"(python tools/convert_weights.py --help)") from None
    load_checked_state(model, state, Path(str(label)))
    return model.to(device).eval()


def load_checked_state(model: nn.Module, state: dict[str, torch.Tensor], path: Path) -> None:
    """Load ``state`` into ``model``; every model key must be present with its shape and a floating dtype (extra
    keys such as a classifier are ignored). Raises ``BadWeightsError`` naming ``path``."""
    from thead.weights import load_state_strict

    load_state_strict(model, state, path, hint="convert it again (python tools/convert_weights.py --help)")


def load_lpips(device: torch.device | str = "cpu", path: str | Path | None = None) -> LPIPSAlex:
    """The LPIPS-Alex module with its weights (``require_weights('lpips-alex')`` unless ``path``); cached.

    The file's sha256 is checked against the manifest on every call (the converted file has no published digest:
    a warning names it each time), keys and shapes strictly, and ``check_lpips`` runs once per model built.
    Raises ``MissingWeightsError`` when the file is absent, ``BadWeightsError`` (a subclass) when it is refused.
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


"""The neural engine at inference: the mesh engine's pipeline with a trained ``NeuralGenerator`` over its render.

``NeuralEngine`` is a ``MeshEngine`` (same ``prepare`` / ``render`` / ``render_full`` / ``render_frames`` /
``render_stream`` / ``person_matte`` / ``target_vertices`` contract), so every job runs it unchanged. Per batch:

1. the mesh engine renders the targets (the ``base``: pose, expression and gaze transfer, head over body over
   background, symmetry fill, inner mouth), without its paste-back fix-ups;
2. the network takes the source crop, the source's and the targets' condition maps (``condition_maps`` of the
   source mesh at its own parameters and of the target meshes) and the base, all at ``config.size``, and returns
   the frames at ``config.size`` (under ``torch.autocast`` float16 on CUDA unless ``half=False``);
3. back at the crop size S: with ``config.base == "mesh"`` the network's change over the base is resized
   (antialiased when shrinking) and added to the full-resolution base, so what the network leaves alone keeps the
   mesh render's resolution (an untrained, zero-residual model gives the mesh engine's frames); with
   ``"none"`` its frames are resized;
4. the mesh engine's paste-back contract: letterbox bars put back, then ``restore_unchanged`` against the neural
   render of the source's own parameters (a target equal to the source gives the source back), and the changed
   region for pasting into full frames.

``key`` names the weights (sha256), the network's config digest, the mesh settings and the precision, so output
cache keys change with any of them.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from thead.engines.mesh.config import MeshConfig
from thead.engines.mesh.engine import MeshEngine, PreparedSource
from thead.engines.motion import TargetParams
from thead.facemodel.model import FaceModel
from thead.fitting.result import FitResult

# The base render's head turn: as asked (the mesh engine's own ``turn_gain`` makes up for what its warp shows short
# as MediaPipe reads it; the network learns the real frames' pose from the target meshes instead).
BASE_TURN_GAIN = (1.0, 1.0, 1.0)


def resize_square(images: torch.Tensor, side: int) -> torch.Tensor:
    """[B, C, H, W] -> [B, C, side, side], bilinear (pixel-centre convention of ``align_corners=False``),
    antialiased when shrinking; unchanged when already that size."""
    if images.shape[-1] == side and images.shape[-2] == side:
        return images
    shrink = side < images.shape[-1]
    return F.interpolate(images, size=(side, side), mode="bilinear", align_corners=False, antialias=shrink)


def neural_key(sha256: str, net_digest: str, mesh_digest: str, half: bool) -> str:
    """The neural engine's cache-key name: ``neural-<sha256[:16]>-<network digest>-<mesh digest>-fp16|fp32``."""
    return f"neural-{sha256[:16]}-{net_digest}-{mesh_digest}-{'fp16' if half else 'fp32'}"


@dataclass
class NeuralSource(PreparedSource):
    """A ``PreparedSource`` with the network's own inputs: image [1, 3, n, n] in [0, 1], the source crop at the
    network's size n = ``config.size``, and cond [1, C, n, n], the condition maps of the source mesh at its own
    parameters."""

    net_image: torch.Tensor | None = None
    net_cond: torch.Tensor | None = None


class NeuralEngine(MeshEngine):
    """Reenactment / editing by a trained ``NeuralGenerator`` over the mesh engine's render.

    Parameters
    ----------
    generator : NeuralGenerator
        The trained network (``thead.engines.neural.store.load_neural``); put in eval mode on ``device``.
    sha256 : str
        Its weights file's sha256 (part of ``key``).
    device : str, torch.device or None
        As for ``MeshEngine``.
    batch_size : int or None
        Frames per torch call (mesh render and network).
    model : FaceModel or None
        The face model (default: the packaged one).
    half : bool
        Run the network under ``torch.autocast`` float16 on CUDA (ignored on the CPU, which computes float32).
    config : MeshConfig or None
        The mesh engine's settings for the base render (default: ``MeshConfig()`` with ``turn_gain``
        ``BASE_TURN_GAIN``).
    **settings
        ``MeshConfig`` fields by name.
    """

    name = "neural"

    def __init__(self, generator: torch.nn.Module, sha256: str, device: str | torch.device | None = None,
                 batch_size: int | None = None, model: FaceModel | None = None, *, half: bool = True,
                 config: MeshConfig | None = None, **settings: Any) -> None:
        if config is None:
            settings.setdefault("turn_gain", BASE_TURN_GAIN)
        super().__init__(device, batch_size, model, config=config, **settings)
        self.generator = generator.to(self.device).eval()
        self.net_config = generator.config
        self.sha256 = str(sha256)
        self.half = bool(half)

    @property
    def autocast(self) -> bool:
        """True when the network runs under float16 autocast (CUDA and ``half``)."""
        return self.half and self.device.type == "cuda"

    @property
    def key(self) -> str:
        """``neural-<sha256[:16]>-<network config digest>-<mesh digest>[-fp16]``: for output cache keys."""
        return neural_key(self.sha256, self.net_config.digest(), self.config.digest(), self.half)

    @torch.no_grad()
    def prepare(self, source_image: np.ndarray, source_landmarks: np.ndarray, source_fit: FitResult,
                frame: int = 0, person: np.ndarray | None = None, surroundings: np.ndarray | None = None,
                picture: np.ndarray | None = None, matte: np.ndarray | None = None) -> NeuralSource:
        """``MeshEngine.prepare`` plus the network's source inputs (see ``NeuralSource``); same parameters."""
        from thead.engines.neural.condition import condition_maps

        base = super().prepare(source_image, source_landmarks, source_fit, frame, person, surroundings, picture,
                               matte)
        prepared = NeuralSource(**{f.name: getattr(base, f.name) for f in fields(PreparedSource)})
        n = int(self.net_config.size)
        prepared.net_image = resize_square(self._source_crop(prepared), n)
        own = self.target_vertices(prepared, prepared.params)  # [1, 478, 3] crop pixels
        prepared.net_cond = condition_maps(own, prepared.size, n).float()
        return prepared

    def _network(self, prepared: NeuralSource, base: torch.Tensor, dst: torch.Tensor) -> torch.Tensor:
        """The network over the mesh renders base [B, 3, S, S] at target meshes dst [B, 478, 3] (crop pixels):
        frames [B, 3, S, S] in [0, 1]."""
        from thead.engines.neural.condition import condition_maps

        if prepared.net_image is None or prepared.net_cond is None:
            raise ValueError("the source was prepared by another engine: prepare it with this NeuralEngine")
        B, S, n = base.shape[0], prepared.size, int(self.net_config.size)
        target_cond = condition_maps(dst, S, n).float()
        residual = self.net_config.base == "mesh"
        small = resize_square(base, n)
        with torch.autocast("cuda", dtype=torch.float16, enabled=self.autocast):
            out = self.generator(prepared.net_image.expand(B, -1, -1, -1), prepared.net_cond.expand(B, -1, -1, -1),
                                 target_cond, small if residual else None)
        out = out.float()
        if residual:
            return (base + resize_square(out - small, S)).clamp(0.0, 1.0)
        return resize_square(out, S).clamp(0.0, 1.0)

    def paste_margin(self, prepared: PreparedSource) -> int:
        """0: the network draws the crop alone, so only the crop is pasted back (``MeshEngine.paste_margin``)."""
        return 0

    @torch.no_grad()
    def _render_batch(self, prepared: PreparedSource, targets: TargetParams, mouth_frames: np.ndarray | None,
                      mouth_landmarks: np.ndarray | None, with_changed: bool = True, rest_fix: bool = True
                      ) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor]:
        """As ``MeshEngine._render_batch``, the network applied to the mesh render before the restore of the
        pixels the target leaves as the source's own parameters render them."""
        base, _, dst = super()._render_batch(prepared, targets, mouth_frames, mouth_landmarks, False, False)
        return self._finish(prepared, self._network(prepared, base, dst), dst, with_changed, rest_fix)


__all__ = ["BASE_TURN_GAIN", "NeuralEngine", "NeuralSource", "neural_key", "resize_square"]

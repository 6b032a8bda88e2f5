"""The neural engine's architecture settings: one frozen ``NeuralConfig``, stored in every weights file.

Every field defines the network (layer counts, widths, working size); two configs with equal ``digest()`` build
models with identical state shapes. Presets: ``tiny`` (tests, 64 px), ``base`` (256 px), ``512``.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, fields

BASES = ("mesh", "none")
# Bump when a code change makes equal settings build a different network (state keys or shapes, or behaviour).
CODE_REVISION = 2  # 2: condition-map normals from consistently wound triangles


@dataclass(frozen=True)
class NeuralConfig:
    """Settings of :class:`thead.engines.neural.NeuralGenerator`.

    Attributes
    ----------
    size : int
        Side of the square crop the network works at, pixels (frames are resized to it and back).
    base : str
        ``"mesh"``: the generator adds a residual to the mesh engine's render of the target (last layer zero at
        initialisation, so an untrained model returns the mesh output exactly); ``"none"``: it synthesises the
        frame from the flow-warped source features only.
    channels : int
        Width of the first feature level; each lower level doubles it, up to ``max_channels``.
    max_channels : int
        Width cap of any level.
    levels : int
        Down-sampling steps of the source encoder (the warped features sit at ``size / 2**levels``).
    motion_channels : int
        Width of the motion U-Net's first level.
    motion_levels : int
        Down-sampling steps of the motion U-Net.
    motion_scale : float
        The motion U-Net runs at ``size * motion_scale`` (its flow and occlusion are up-sampled to ``size``).
    spade_hidden : int
        Width of the SPADE layers' shared condition convolution.
    res_blocks : int
        SPADE residual blocks at the bottleneck of the generator.
    disc_channels : int
        Width of the patch discriminator's first layer (training only; not part of the generator).
    disc_scales : int
        Image scales the multi-scale patch discriminator looks at.
    """

    size: int = 256
    base: str = "mesh"
    channels: int = 24
    max_channels: int = 256
    levels: int = 2
    motion_channels: int = 16
    motion_levels: int = 3
    motion_scale: float = 0.25
    spade_hidden: int = 16
    res_blocks: int = 2
    disc_channels: int = 32
    disc_scales: int = 2

    def __post_init__(self) -> None:
        if self.base not in BASES:
            raise ValueError(f"base must be one of {BASES}, got {self.base!r}")
        motion_side = self.size * self.motion_scale
        if self.size < 16 or self.size % (2 ** self.levels) or motion_side != int(motion_side) \
                or int(motion_side) % (2 ** self.motion_levels):
            raise ValueError(f"size must be at least 16, a multiple of 2**levels, and size * motion_scale a multiple "
                             f"of 2**motion_levels; got size {self.size}, levels {self.levels}, motion_scale "
                             f"{self.motion_scale}, motion_levels {self.motion_levels}")
        if not 0 < self.motion_scale <= 1:
            raise ValueError(f"motion_scale must be in (0, 1], got {self.motion_scale}")
        for name in ("channels", "max_channels", "motion_channels", "disc_channels", "disc_scales"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1, got {getattr(self, name)}")
        if self.levels < 1 or self.motion_levels < 1 or self.res_blocks < 0:
            raise ValueError("levels and motion_levels must be at least 1, res_blocks at least 0")

    def digest(self) -> str:
        """Short hex name of the architecture: ``"neural-<CODE_REVISION>-<12 hex digits>"`` of every field."""
        blob = json.dumps([CODE_REVISION, self.to_dict()], sort_keys=True)
        return f"neural-{CODE_REVISION}-{hashlib.blake2b(blob.encode(), digest_size=6).hexdigest()}"

    def to_dict(self) -> dict:
        """Every field by name (JSON-serialisable)."""
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "NeuralConfig":
        """The config of ``d`` (as ``to_dict`` writes it); unknown keys raise ``ValueError``."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise ValueError(f"unknown neural config fields {unknown}")
        return cls(**d)

    def replace(self, **changes) -> "NeuralConfig":
        """A copy with ``changes`` applied (validated)."""
        return NeuralConfig.from_dict({**self.to_dict(), **changes})

    @classmethod
    def preset(cls, name: str) -> "NeuralConfig":
        """``"tiny"`` (64 px, 8 channels: tests), ``"base"`` (256 px), ``"512"`` (512 px, one more level)."""
        presets = {
            "tiny": dict(size=64, channels=8, max_channels=32, levels=2, motion_channels=8, motion_levels=2,
                         motion_scale=0.5, spade_hidden=8, res_blocks=1, disc_channels=8, disc_scales=2),
            "base": {},
            "512": dict(size=512, channels=24, max_channels=256, levels=3, motion_channels=24, motion_levels=4,
                        motion_scale=0.25, spade_hidden=24, res_blocks=2, disc_channels=32, disc_scales=3),
        }
        if name not in presets:
            raise ValueError(f"unknown neural preset {name!r} (choose from {', '.join(presets)})")
        return cls(**presets[name])


PRESETS = ("tiny", "base", "512")

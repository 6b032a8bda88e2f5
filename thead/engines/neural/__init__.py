"""The neural engine: a trainable generator of the HeadGAN / PECHead family conditioned on thead's 3-D face.

``NeuralConfig`` (architecture; presets tiny/base/512), ``condition_maps`` (the mesh rasterised as normalised
coordinates, normals and coverage), ``NeuralGenerator`` (motion network -> flow + occlusion, warped source
features, SPADE decoder; optionally a residual over the mesh engine's render), ``save_neural`` / ``load_neural`` /
``register_neural`` / ``list_neural`` (safetensors with the config in the metadata, sha256-checked registry).
Training: ``thead.engines.neural.train`` (``thead train neural``).
"""

from thead.engines.neural.condition import COND_CHANNELS, condition_maps
from thead.engines.neural.config import NeuralConfig
from thead.engines.neural.model import NeuralGenerator, PatchDiscriminator
from thead.engines.neural.store import list_neural, load_neural, neural_dir, register_neural, save_neural

__all__ = ["COND_CHANNELS", "NeuralConfig", "NeuralGenerator", "PatchDiscriminator", "condition_maps",
           "list_neural", "load_neural", "neural_dir", "register_neural", "save_neural"]

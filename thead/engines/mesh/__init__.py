"""The weight-free mesh engine: the source face as a textured 3-D mesh, posed and rendered per frame.

``engine.py`` (``MeshEngine``, ``PreparedSource``, ``EngineOutput``), ``config.py`` (``MeshConfig``: the settings
and their digest, part of every output's cache key) and ``regions.py`` (head weight, mirror region and head-proxy
points measured from face meshes).
"""

from thead.engines.mesh.config import MeshConfig
from thead.engines.mesh.engine import EngineOutput, MeshEngine, PreparedSource

# The default configuration's digest: what ``MeshEngine()`` renders, for callers that key outputs without an engine.
ENGINE_VERSION = MeshConfig().digest()

__all__ = ["ENGINE_VERSION", "EngineOutput", "MeshConfig", "MeshEngine", "PreparedSource"]

"""Old import path of the mesh engine, kept for ``thead.pipeline`` until it imports ``thead.engines.mesh``."""

from thead.engines.mesh import ENGINE_VERSION, MeshEngine

__all__ = ["ENGINE_VERSION", "MeshEngine"]

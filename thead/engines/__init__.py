"""Engines that render a source face at target parameters.

``MeshEngine`` (default, weight-free; settings in ``MeshConfig``, package ``mesh``): the source as a textured
3-D face mesh, posed per frame and rendered by ``thead.render``. Target parameters come from ``motion``:
``transfer_motion`` (reenactment from a driver's fit), ``edit_params`` (numeric pose / expression / gaze edits),
``orbit_params`` (free-view sweep).

    engine = MeshEngine()
    source_fit = fit_image(src_landmarks)
    prepared = engine.prepare(src_crop, src_landmarks, source_fit)
    frames = engine.render(prepared, transfer_motion(source_fit, driver_fit))
"""

from thead.engines.mesh import EngineOutput, MeshConfig, MeshEngine, PreparedSource
from thead.engines.motion import (
    EXPRESSION_ALIASES,
    TargetParams,
    edit_params,
    orbit_params,
    transfer_motion,
)

__all__ = ["EXPRESSION_ALIASES", "EngineOutput", "MeshConfig", "MeshEngine", "PreparedSource", "TargetParams",
           "edit_params", "orbit_params", "transfer_motion"]

"""Closed-loop photo edits: render, measure the result the way ``thead fit-3dmm`` would, correct, render again.

A mesh warp of a photo does not read back exactly as the parameters it was asked for: landmarks of a turned
real head slide beyond a rigid turn, and a fit of one photo mixes some identity into the expression units. So
``calibrated_edit`` measures each rendered edit (MediaPipe landmarks + ``fit_image``) and moves the asked values
by the measured error, a few rounds, keeping the best round. Only what the user asked for is corrected (the
named head angles and expression units); everything else stays as ``edit_params`` sets it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Mapping

import numpy as np

from thead.engines.motion import EXPRESSION_ALIASES, TargetParams, edit_params
from thead.facemodel.expressions import EXPRESSION_NAMES, expression_bounds
from thead.fitting import FitResult, fit_image

ANGLE_NAMES = ("yaw", "pitch", "roll")


@dataclass
class EditMeasurement:
    """Asked vs measured values of one edit (angles in degrees, expression units as coefficients)."""

    asked: dict[str, float]
    measured: dict[str, float] = field(default_factory=dict)
    rounds: int = 0

    @property
    def errors(self) -> dict[str, float]:
        return {k: self.measured[k] - v for k, v in self.asked.items() if k in self.measured}


def _measure(frame: np.ndarray, names: list[str]) -> dict[str, float] | None:
    """Fit the largest face of a rendered crop; the named quantities (degrees / coefficients), or None."""
    from thead.face.geometry import landmark_box
    from thead.face.landmarks import make_landmarker

    with make_landmarker() as lm:
        faces = lm.find_faces(frame)
    if not faces:
        return None
    face = max(faces, key=lambda f: np.prod(landmark_box(f)[2:] - landmark_box(f)[:2]))
    fit = fit_image(face, frame.shape[0])
    out: dict[str, float] = {}
    for name in names:
        if name in ANGLE_NAMES:
            out[name] = float(np.degrees(fit.pose[0, ANGLE_NAMES.index(name)]))
        else:
            units = EXPRESSION_ALIASES.get(name, (name,))
            out[name] = float(np.mean([fit.expression_of(u)[0] for u in units]))
    return out


def calibrated_edit(
    render: Callable[[TargetParams], Any],
    frame_of: Callable[[Any], np.ndarray],
    fit: FitResult,
    edit: Mapping[str, Any],
    rounds: int = 2,
    angle_tolerance: float = 1.0,
    unit_tolerance: float = 0.05,
) -> tuple[Any, EditMeasurement]:
    """Render ``edit_params(fit, **edit)`` and correct it from measurements of the rendered photo.

    render: targets -> a render result; frame_of: render result -> uint8 crop [S, S, 3] to measure.
    edit: keyword arguments of ``edit_params`` (angles in radians). Asked angles (and 0 for ``frontalize``)
    and asked expression values are measured on the output; each round adds (asked - measured) to the values
    handed to ``edit_params`` (angles limited to +-15 degrees of correction, units kept in their bounds).
    Returns the render with the smallest error and the measurement.
    """
    asked: dict[str, float] = {}
    for k, name in enumerate(ANGLE_NAMES):
        if edit.get(name) is not None:
            asked[name] = float(np.degrees(edit[name]))
        elif edit.get("frontalize"):
            asked[name] = 0.0
    asked.update({name: float(v) for name, v in (edit.get("expression") or {}).items()})
    current = dict(edit)
    result = render(edit_params(fit, **current))
    measurement = EditMeasurement(asked)
    if not asked:
        return result, measurement
    lo, hi = expression_bounds()
    best, best_score = result, np.inf
    for r in range(rounds + 1):
        measured = _measure(frame_of(result), list(asked))
        if measured is None:
            break
        score = sum(abs(measured[k] - v) / (angle_tolerance if k in ANGLE_NAMES else unit_tolerance)
                    for k, v in asked.items())
        if score < best_score:
            best, best_score = result, score
            measurement.measured, measurement.rounds = measured, r
        if r == rounds or all(abs(measured[k] - v) <= (angle_tolerance if k in ANGLE_NAMES else unit_tolerance)
                              for k, v in asked.items()):
            break
        expression = dict(current.get("expression") or {})
        for name, want in asked.items():
            err = want - measured[name]
            if name in ANGLE_NAMES:
                base = np.degrees(current[name]) if current.get(name) is not None else want
                corrected = float(np.clip(base + err, want - 15.0, want + 15.0))
                current[name] = float(np.radians(corrected))
            else:
                i = EXPRESSION_NAMES.index(EXPRESSION_ALIASES.get(name, (name,))[0])
                expression[name] = float(np.clip(expression.get(name, want) + err, lo[i], hi[i]))
        current["expression"] = expression
        result = render(edit_params(fit, **current))
    return best, measurement

"""Closed-loop photo edits: render, measure the result the way ``thead fit-3dmm`` would, correct, render again.

A mesh warp of a photo does not read back exactly as the parameters it was asked for: landmarks of a turned
real head slide beyond a rigid turn, and a fit of one photo mixes some identity into the expression units. So
``calibrated_edit`` measures each rendered edit (MediaPipe landmarks + ``fit_image``) and moves the asked values
by the measured error, a few rounds, keeping the best round. Only what the user asked for is corrected (the
named head angles and expression units); everything else stays as ``edit_params`` sets it. A unit may be handed
past its bound (by up to ``MAX_UNIT_OVERFLOW``; the part beyond goes into the residual along the unit's field,
``thead.engines.motion.unit_overflow``), since a photo whose fit mixed identity into its units reads short of
the bound itself. What still reads further than ``REACH_TOLERANCE`` from the asked value after the last round is
reported as unreachable (``EditMeasurement.unreachable``: asked vs reached), never silently.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Mapping

import numpy as np

from thead.engines.motion import (EXPRESSION_ALIASES, MAX_UNIT_OVERFLOW, TargetParams, edit_params,
                                  unit_overflow)
from thead.facemodel.expressions import EXPRESSION_NAMES, expression_bounds
from thead.fitting import FitResult, fit_image

ANGLE_NAMES = ("yaw", "pitch", "roll")
MIN_SLOPE, MAX_SLOPE = 0.5, 1.5  # measured / handed change the secant steps trust
MAX_STEP_BACKS = 2
CORRECTION_COST = 0.2  # corrected renders whose face the landmarker lost, each retried with half the correction
# A result reading further than this from what was asked is reported as unreachable (degrees; unit coefficients).
REACH_TOLERANCE = {"angle": 3.0, "unit": 0.15}


@dataclass
class EditMeasurement:
    """Asked vs measured values of one edit (angles in degrees, expression units as coefficients)."""

    asked: dict[str, float]
    measured: dict[str, float] = field(default_factory=dict)
    rounds: int = 0

    @property
    def errors(self) -> dict[str, float]:
        return {k: self.measured[k] - v for k, v in self.asked.items() if k in self.measured}

    @property
    def unreachable(self) -> dict[str, dict[str, float | None]]:
        """{name: {"asked": value, "reached": measured value or None (the face could not be read)}} of the asked
        values the best round reads further than ``REACH_TOLERANCE`` from (degrees / coefficients)."""
        out: dict[str, dict[str, float | None]] = {}
        for name, want in self.asked.items():
            got = self.measured.get(name)
            tol = REACH_TOLERANCE["angle" if name in ANGLE_NAMES else "unit"]
            if got is None or abs(got - want) > tol:
                out[name] = {"asked": round(float(want), 3), "reached": None if got is None else round(float(got), 3)}
        return out

    def describe_unreachable(self) -> str | None:
        """One line naming what could not be reached (None when everything was)."""
        parts = [f"{name} {v['asked']:g} reads {'unreadable' if v['reached'] is None else format(v['reached'], '.2f')}"
                 for name, v in self.unreachable.items()]
        if not parts:
            return None
        return ("unreachable: " + ", ".join(parts) + f" after {self.rounds} correction round(s); this photo's face "
                "does not go further with the mesh engine")


def _measure(frame: np.ndarray, names: list[str], hint: np.ndarray | None = None
             ) -> tuple[dict[str, float], np.ndarray] | None:
    """Fit the largest face of a rendered crop: (the named quantities in degrees / coefficients, its landmarks
    [N, 3] pixels), or None. hint: landmarks of an earlier render of the same face; where the detector misses the
    face, the mesh looks for it around them (the landmarker's ``track``)."""
    from thead.geometry import landmark_box
    from thead.face.landmarks import make_landmarker

    with make_landmarker() as lm:
        faces = lm.find_faces(frame)
        if not faces and hint is not None:
            found = lm.track(frame, hint)
            faces = [] if found is None else [found]
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
    return out, face


def calibrated_edit(
    render: Callable[[TargetParams], Any],
    frame_of: Callable[[Any], np.ndarray],
    fit: FitResult,
    edit: Mapping[str, Any],
    rounds: int = 2,
    angle_tolerance: float = 1.0,
    unit_tolerance: float = 0.05,
    landmarks: np.ndarray | None = None,
) -> tuple[Any, EditMeasurement]:
    """Render ``edit_params(fit, **edit)`` and correct it from measurements of the rendered photo.

    render: targets -> a render result; frame_of: render result -> uint8 crop [S, S, 3] to measure.
    edit: keyword arguments of ``edit_params`` (angles in radians). Asked angles (and 0 for ``frontalize``)
    and asked expression values are measured on the output; each round moves the values handed to
    ``edit_params`` by (asked - measured), divided by the output's slope once two rounds are read (angles
    limited to +-15 degrees of correction, units kept in their bounds); a
    correction whose render the landmarker cannot read is halved and rendered again (up to ``MAX_STEP_BACKS``
    times, not counted as rounds). landmarks: the source's landmarks [N, 3] (crop pixels), where the landmarker
    looks for the edited face when its detector misses it (then around the last face read). Returns the render
    with the smallest error and the measurement.
    """
    asked: dict[str, float] = {}
    for name in ANGLE_NAMES:
        if edit.get(name) is not None:
            asked[name] = float(np.degrees(edit[name]))
        elif edit.get("frontalize"):
            asked[name] = 0.0
    asked.update({name: float(v) for name, v in (edit.get("expression") or {}).items()})
    current = dict(edit)
    result = render(_targets(fit, current))
    measurement = EditMeasurement(asked)
    if not asked:
        return result, measurement
    lo, hi = expression_bounds()
    tolerance = {k: angle_tolerance if k in ANGLE_NAMES else unit_tolerance for k in asked}
    best, best_score = result, np.inf
    step: dict[str, float] = {}  # the correction last made (degrees / units); half of it is undone if it loses the face
    r = lost = 0
    hint = landmarks  # where the landmarker looks when its detector misses the face: the face last read
    last: dict[str, tuple[float, float]] = {}  # per asked name: (handed value, measured value) of the last round
    while True:
        read = _measure(frame_of(result), list(asked), hint)
        if read is None:
            if not step or lost == MAX_STEP_BACKS:
                break
            # The landmarker lost the corrected face (it does, now and then, at one angle and not at the next):
            # step back half the correction and measure again, in place of giving up on the rounds left.
            lost += 1
            current = _corrected(current, {name: -0.5 * v for name, v in step.items()}, asked, lo, hi)
            step = {name: 0.5 * v for name, v in step.items()}
            result = render(_targets(fit, current))
            continue
        measured, hint = read
        # Error in tolerances, plus CORRECTION_COST of a tolerance per tolerance of correction: a round that
        # reads barely closer after a large correction (a photo that will not turn further) is not worth its
        # stretched face.
        score = sum((abs(measured[k] - v) + CORRECTION_COST * abs(_handed(current, k, v) - v)) / tolerance[k]
                    for k, v in asked.items())
        if score < best_score:
            best, best_score = result, score
            measurement.measured, measurement.rounds = measured, r
        if r == rounds or all(abs(measured[k] - v) <= tolerance[k] for k, v in asked.items()):
            break
        r += 1
        # Secant steps: the output answers the handed value with a slope of its own (a photo's turned landmarks
        # may move half as far as asked), measured from the last two readable rounds, 1 at first.
        handed = {name: _handed(current, name, want) for name, want in asked.items()}
        step = {}
        for name, want in asked.items():
            slope = 1.0
            if name in last:
                dh, dm = handed[name] - last[name][0], measured[name] - last[name][1]
                if abs(dh) > 1e-6:
                    slope = float(np.clip(dm / dh, MIN_SLOPE, MAX_SLOPE))
            step[name] = (want - measured[name]) / slope
        last = {name: (handed[name], measured[name]) for name in asked}
        current = _corrected(current, step, asked, lo, hi)
        result = render(_targets(fit, current))
    return best, measurement


def _targets(fit: FitResult, current: Mapping[str, Any]) -> TargetParams:
    """``edit_params(fit, **current)`` where units handed past their bounds are set at the bound and the rest of
    them is added to the residual along their fields (``unit_overflow``)."""
    expression = current.get("expression") or {}
    if not expression:
        return edit_params(fit, **current)
    lo, hi = expression_bounds()
    inside: dict[str, float] = {}
    excess = np.zeros(len(EXPRESSION_NAMES))
    for name, value in expression.items():
        for unit in EXPRESSION_ALIASES.get(name, (name,)):
            i = EXPRESSION_NAMES.index(unit) if unit in EXPRESSION_NAMES else None
            if i is None:
                inside[name] = value  # edit_params names the unknown unit
                continue
            v = float(np.clip(value, lo[i], hi[i]))
            inside[name] = v
            excess[i] = float(value) - v
    targets = edit_params(fit, **{**current, "expression": inside})
    if not np.any(excess):
        return targets
    overflow = unit_overflow(np.repeat(excess[None], targets.num_frames, 0))
    return TargetParams(pose=targets.pose, depth_offset=targets.depth_offset, expression=targets.expression,
                        residual=targets.residual + overflow, gaze=targets.gaze, held=targets.held,
                        expression_names=targets.expression_names)


def _handed(current: Mapping[str, Any], name: str, want: float) -> float:
    """The value of an asked ``name`` handed to ``edit_params`` in ``current`` (degrees for the head angles)."""
    if name in ANGLE_NAMES:
        return float(np.degrees(current[name])) if current.get(name) is not None else want
    return float((current.get("expression") or {}).get(name, want))


def _corrected(current: Mapping[str, Any], step: Mapping[str, float], asked: Mapping[str, float], lo: np.ndarray,
               hi: np.ndarray) -> dict[str, Any]:
    """``edit_params`` keywords ``current`` with ``step`` (degrees for the head angles, coefficients for the
    expression units) added to the asked values: angles within +-15 degrees of what was asked, units within their
    bounds ``lo``/``hi`` (per unit of ``EXPRESSION_NAMES``) widened by ``MAX_UNIT_OVERFLOW`` (see ``_targets``)."""
    out = dict(current)
    expression = dict(current.get("expression") or {})
    for name, delta in step.items():
        want = asked[name]
        value = _handed(current, name, want) + delta
        if name in ANGLE_NAMES:
            out[name] = float(np.radians(np.clip(value, want - 15.0, want + 15.0)))
        else:
            # Past the bound by up to MAX_UNIT_OVERFLOW (carried by the residual, see ``_targets``).
            i = EXPRESSION_NAMES.index(EXPRESSION_ALIASES.get(name, (name,))[0])
            expression[name] = float(np.clip(value, lo[i] - MAX_UNIT_OVERFLOW, hi[i] + MAX_UNIT_OVERFLOW))
    out["expression"] = expression
    return out

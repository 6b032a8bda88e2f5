"""Closed-loop edits: the correction moves the asked values by the measured error and keeps the best round."""

from __future__ import annotations

import numpy as np

from thead.engines import calibrate as cal


def test_correction_converges_on_a_biased_renderer(monkeypatch):
    """A 'renderer' that realises only 75 % of the asked yaw and 60 % of the asked smile is corrected."""
    state = {}

    def fake_edit_params(fit, **kw):
        return dict(kw)

    def render(targets):
        smile = (targets.get("expression") or {}).get("smile", 0.0)
        return {"yaw": 0.75 * np.degrees(targets["yaw"]), "smile": 0.6 * smile}

    def measure(frame, names, hint):
        state["calls"] = state.get("calls", 0) + 1
        return {"yaw": frame["yaw"], "smile": frame["smile"]}, None

    monkeypatch.setattr(cal, "edit_params", fake_edit_params)
    monkeypatch.setattr(cal, "_measure", measure)
    result, m = cal.calibrated_edit(render, lambda r: r, fit=None,
                                    edit={"yaw": np.radians(20.0), "expression": {"smile": 0.5}}, rounds=3)
    assert abs(m.measured["yaw"] - 20) < 1.0 and abs(m.measured["smile"] - 0.5) < 0.05
    assert m.rounds >= 1 and result["yaw"] == m.measured["yaw"]


def test_nothing_asked_renders_once(monkeypatch):
    calls = []
    monkeypatch.setattr(cal, "edit_params", lambda fit, **kw: kw)
    monkeypatch.setattr(cal, "_measure", lambda f, n, h: calls.append(1))
    result, m = cal.calibrated_edit(lambda t: "frame", lambda r: r, None, {"gaze_yaw": 10.0})
    assert result == "frame" and m.asked == {} and not calls


def test_a_correction_that_loses_the_face_is_halved_not_abandoned(monkeypatch):
    """A renderer realising 75 % of the asked yaw, a landmarker that misses faces turned past 18 degrees: the first
    correction (20 -> 25, read 18.75) loses the face, so half of it is undone (22.5, read 16.9) and the loop goes
    on from there instead of returning the uncorrected round (read 15)."""
    asked_yaws = []

    def render(targets):
        asked_yaws.append(np.degrees(targets["yaw"]))
        return {"yaw": 0.75 * np.degrees(targets["yaw"])}

    monkeypatch.setattr(cal, "edit_params", lambda fit, **kw: dict(kw))
    monkeypatch.setattr(cal, "_measure", lambda frame, names, hint: None if frame["yaw"] > 18.0
                        else ({"yaw": frame["yaw"]}, None))
    result, m = cal.calibrated_edit(render, lambda r: r, fit=None, edit={"yaw": np.radians(20.0)}, rounds=3)
    # Then a secant step (slope 0.75 read from the two readable rounds) aims at 20 exactly: 26.67.
    assert np.allclose(asked_yaws[:4], [20.0, 25.0, 22.5, 22.5 + (20.0 - 16.875) / 0.75])
    assert m.rounds == 1 and m.measured["yaw"] == result["yaw"] == 16.875


def test_a_request_the_photo_cannot_reach_is_reported_with_asked_and_reached(monkeypatch):
    """A 'photo' whose smile saturates at 0.4 however far it is pushed: the loop hands values past the unit's
    bound (carried by the residual), and what it still cannot reach is named, asked vs reached."""
    handed = []

    monkeypatch.setattr(cal, "_targets", lambda fit, current: dict(current))

    def render(targets):
        smile = (targets.get("expression") or {}).get("smile", 0.0)
        handed.append(smile)
        return {"yaw": 0.9 * np.degrees(targets["yaw"]), "smile": min(0.5 * smile, 0.4)}

    monkeypatch.setattr(cal, "_measure", lambda frame, names, hint: (dict(frame), None))
    result, m = cal.calibrated_edit(render, lambda r: r, fit=None,
                                    edit={"yaw": np.radians(-25.0), "expression": {"smile": 0.8}}, rounds=3)
    assert max(handed) > 1.0 + 1e-6  # pushed past the bound (1) where the reading asked for it
    assert max(handed) <= 1.0 + cal.MAX_UNIT_OVERFLOW + 1e-6
    assert set(m.unreachable) == {"smile"}
    assert m.unreachable["smile"] == {"asked": 0.8, "reached": 0.4}
    assert "smile 0.8 reads 0.40" in m.describe_unreachable()


def test_reachable_requests_are_not_flagged(monkeypatch):
    monkeypatch.setattr(cal, "_targets", lambda fit, current: dict(current))
    monkeypatch.setattr(cal, "_measure", lambda frame, names, hint: (dict(frame), None))
    _, m = cal.calibrated_edit(lambda t: {"yaw": 0.8 * np.degrees(t["yaw"])}, lambda r: r, None,
                               {"yaw": np.radians(20.0)}, rounds=3)
    assert m.unreachable == {} and m.describe_unreachable() is None


def test_units_past_their_bound_reach_the_target_mesh():
    """``_targets`` sets a unit handed past its bound at the bound and adds the rest along its field."""
    from thead.facemodel.expressions import EXPRESSION_NAMES
    from thead.facemodel.model import load_face_model
    from thead.fitting import fit_image

    model = load_face_model()
    lm = model.posed(np.array([[0, 0, 0, 128, 128, 12]], np.float32), None, np.zeros((1, len(EXPRESSION_NAMES))))
    fit = fit_image(lm[0], 256)
    at_bound = cal._targets(fit, {"expression": {"smile": 1.0}})
    past = cal._targets(fit, {"expression": {"smile": 1.4}})
    i = [EXPRESSION_NAMES.index("smile_left"), EXPRESSION_NAMES.index("smile_right")]
    np.testing.assert_allclose(past.expression[0, i], 1.0)
    field = model.expression_fields[i].sum(0)
    np.testing.assert_allclose(past.residual[0] - at_bound.residual[0], 0.4 * field, atol=1e-5)

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

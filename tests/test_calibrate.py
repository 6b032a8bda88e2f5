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

    def measure(frame, names):
        state["calls"] = state.get("calls", 0) + 1
        return {"yaw": frame["yaw"], "smile": frame["smile"]}

    monkeypatch.setattr(cal, "edit_params", fake_edit_params)
    monkeypatch.setattr(cal, "_measure", measure)
    result, m = cal.calibrated_edit(render, lambda r: r, fit=None,
                                    edit={"yaw": np.radians(20.0), "expression": {"smile": 0.5}}, rounds=3)
    assert abs(m.measured["yaw"] - 20) < 1.0 and abs(m.measured["smile"] - 0.5) < 0.05
    assert m.rounds >= 1 and result["yaw"] == m.measured["yaw"]


def test_nothing_asked_renders_once(monkeypatch):
    calls = []
    monkeypatch.setattr(cal, "edit_params", lambda fit, **kw: kw)
    monkeypatch.setattr(cal, "_measure", lambda f, n: calls.append(1))
    result, m = cal.calibrated_edit(lambda t: "frame", lambda r: r, None, {"gaze_yaw": 10.0})
    assert result == "frame" and m.asked == {} and not calls

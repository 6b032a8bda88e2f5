"""Bad numbers are refused at the CLI (issue 13): every numeric option of every command states its range in
its help and refuses NaN, infinities and out-of-range values as usage errors (exit 2) naming the option, before
any work starts; the motion library refuses NaN itself."""

from __future__ import annotations

import inspect
import typing

import numpy as np
import pytest
from typer.models import OptionInfo
from typer.testing import CliRunner

from thead.cli import app
from thead.commands.edit import edit
from thead.commands.evaluate import evaluate
from thead.commands.fit_3dmm import fit_3dmm
from thead.commands.preprocess import preprocess
from thead.commands.reenact import reenact

runner = CliRunner()

# Each command with placeholder positional arguments (never read: validation happens first).
COMMANDS = {"preprocess": (preprocess, ["x.png"]), "fit-3dmm": (fit_3dmm, ["x.png"]),
            "reenact": (reenact, ["a.png", "b.mp4"]), "edit": (edit, ["x.png"]),
            "evaluate": (evaluate, ["a.mp4", "b.mp4"])}


def _numeric_options(func) -> list[tuple[str, OptionInfo]]:
    """(--flag, OptionInfo) of every int/float option of a command function."""
    hints = typing.get_type_hints(func, include_extras=True)
    out = []
    for name, param in inspect.signature(func).parameters.items():
        hint, info = hints[name], param.default
        if typing.get_origin(hint) is typing.Annotated:
            hint, info = typing.get_args(hint)[0], next(a for a in typing.get_args(hint)[1:]
                                                      if isinstance(a, OptionInfo))
        args = [a for a in typing.get_args(hint) if a is not type(None)]
        base = args[0] if typing.get_origin(hint) is typing.Union and len(args) == 1 else hint
        if base in (int, float) and isinstance(info, OptionInfo):
            decls = [d for d in (info.param_decls or ()) if d.startswith("--")]
            out.append((decls[0] if decls else "--" + name.replace("_", "-"), info))
    return out


CASES = [(cmd, flag) for cmd, (func, _) in COMMANDS.items() for flag, _ in _numeric_options(func)]


def test_every_command_has_numeric_options_found() -> None:
    assert len(CASES) >= 40 and ("edit", "--gaze-yaw") in CASES and ("fit-3dmm", "--iterations") in CASES


@pytest.mark.parametrize("cmd,flag", CASES)
def test_every_numeric_option_documents_a_range_and_refuses_nan_inf_and_huge(cmd: str, flag: str) -> None:
    func, positional = COMMANDS[cmd]
    info = dict(_numeric_options(func))[flag]
    assert info.callback is not None, f"{cmd} {flag} has no range check"
    assert "Range:" in info.help or "256 or 512" in info.help, f"{cmd} {flag}: range not documented"
    for bad in ("nan", "inf", "-inf", "1e308", "-1e308"):
        res = runner.invoke(app, [cmd, *positional, flag, bad])
        assert res.exit_code == 2, (cmd, flag, bad, res.output)
        assert flag in res.output, (cmd, flag, bad, res.output)


@pytest.mark.parametrize("args,says", [
    (["reenact", "a.png", "b.mp4", "--expression-scale", "nan"], "nan is not a finite number"),
    (["edit", "x.png", "--orbit-yaw", "nan"], "nan is not a finite number"),
    (["edit", "x.png", "--gaze-yaw", "nan"], "nan is not a finite number"),
    (["edit", "x.png", "--yaw", "400"], "400 is outside -50..50"),
    (["edit", "x.png", "--roll", "1e308"], "is outside -45..45"),
    (["preprocess", "x.png", "--smooth", "nan"], "nan is not a finite number"),
    (["fit-3dmm", "x.png", "--smooth", "nan"], "nan is not a finite number"),
    (["fit-3dmm", "x.png", "--iterations", "-3"], "-3 is outside 1..1000"),
    (["edit", "x.png", "--smile", "1.5"], "1.5 is outside 0..1"),
    (["reenact", "a.png", "b.mp4", "--size", "300"], "use 256 or 512"),
])
def test_reported_cases_are_usage_errors_with_a_clear_message(args: list[str], says: str, tmp_path) -> None:
    res = runner.invoke(app, [*args, "-o", str(tmp_path / "out")])
    assert res.exit_code == 2 and says in " ".join(res.output.split()), res.output
    assert not (tmp_path / "out").exists()  # refused before any work


def test_values_inside_the_ranges_pass_validation(tmp_path) -> None:
    """In-range values reach the command body (which then reports the missing input file, exit 1)."""
    res = runner.invoke(app, ["edit", str(tmp_path / "missing.png"), "--yaw", "-50", "--roll", "45",
                              "--gaze-yaw", "35", "--jaw-open", "-0.1", "--orbit-yaw", "0", "-o", str(tmp_path),
                              "-w", str(tmp_path / "w")])
    assert res.exit_code == 1 and "file not found" in res.output, res.output


def _fit():
    from thead.facemodel.expressions import EXPRESSION_NAMES
    from thead.fitting.result import FitResult

    e = len(EXPRESSION_NAMES)
    return FitResult(pose=np.array([[0, 0, 0, 128, 128, 10]], np.float32), depth_offset=np.zeros(1, np.float32),
                     expression=np.zeros((1, e), np.float32), expression_names=list(EXPRESSION_NAMES),
                     gaze=np.zeros((1, 4), np.float32), identity=np.zeros((478, 3), np.float32),
                     residual=np.zeros((1, 478, 3), np.float32), fit_error=np.zeros(1, np.float32),
                     valid=np.ones(1, bool), image_size=256)


@pytest.mark.parametrize("kwargs", [{"gaze_yaw": float("nan")}, {"gaze_pitch": float("inf")},
                                    {"yaw": float("nan")}, {"roll": float("-inf")}])
def test_edit_params_refuses_nan(kwargs) -> None:
    from thead.engines.motion import edit_params

    with pytest.raises(ValueError, match="must be a finite number"):
        edit_params(_fit(), **kwargs)


def test_transfer_and_orbit_refuse_nan() -> None:
    from thead.engines.motion import orbit_params, transfer_motion

    fit = _fit()
    with pytest.raises(ValueError, match="expression_scale must be a finite number"):
        transfer_motion(fit, fit, expression_scale=float("nan"))
    with pytest.raises(ValueError, match="pose_scale must be a finite number"):
        transfer_motion(fit, fit, pose_scale=float("inf"))
    with pytest.raises(ValueError, match="yaw_range_deg must be a finite number"):
        orbit_params(fit, 5, (-float("nan"), float("nan")))

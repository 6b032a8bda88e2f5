"""Issue 13 part 2: output locations checked before the work, reports kept on a late failure, ``-o FILE``,
``--json`` the same everywhere, --face-index/--face-box on every command, faceless driver frames held."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from thead.cli import app
from thead.commands.common import write_or_keep
from thead.io import probe_video, write_image
from thead.jobs.reenact import held_mouth_frames

runner = CliRunner()


@pytest.fixture()
def blocker(tmp_path) -> Path:
    """A regular file where a folder would have to be: nothing can be written under it, root included."""
    path = tmp_path / "not-a-folder"
    path.write_text("x")
    return path


@pytest.mark.parametrize("option", ["--report", "--json-file", "--csv", "--plots", "--grid"])
def test_evaluate_refuses_unwritable_outputs_before_work(tmp_path, blocker, option):
    res = runner.invoke(app, ["evaluate", "g.mp4", "r.mp4", "-w", str(tmp_path / "w"), option,
                              str(blocker / "out" / "report.json")])
    assert res.exit_code == 2, res.output
    assert "cannot write here" in res.output
    assert not (tmp_path / "w").exists()  # no work started


@pytest.mark.parametrize("command", ["reenact", "edit"])
def test_render_commands_refuse_unwritable_output(tmp_path, blocker, command):
    args = ["a.jpg", "b.mp4"] if command == "reenact" else ["a.jpg"]
    res = runner.invoke(app, [command, *args, "-o", str(blocker / "out"), "-w", str(tmp_path / "w")])
    assert res.exit_code == 2, res.output


def test_late_write_failure_keeps_the_report(tmp_path, blocker):
    work = tmp_path / "w"
    kept = write_or_keep(blocker / "report.json", '{"videos": []}', work, "report")
    assert kept.parent == work / ".thead" and json.loads(kept.read_text()) == {"videos": []}


def test_file_output_with_several_jobs_is_a_usage_error(tmp_path):
    for name in ("a.png", "b.png"):
        (tmp_path / "in").mkdir(exist_ok=True)
        write_image(tmp_path / "in" / name, np.zeros((8, 8, 3), np.uint8))
    res = runner.invoke(app, ["edit", str(tmp_path / "in"), "--yaw", "5", "-o", str(tmp_path / "out.png")])
    assert res.exit_code == 2 and "one file" in res.output
    assert not (tmp_path / "out.png").exists()


def test_reenact_writes_the_named_file(tmp_path, astronaut, moving_face_video):
    photo = tmp_path / "face.png"
    write_image(photo, astronaut)
    out = tmp_path / "result.mp4"
    res = runner.invoke(app, ["reenact", str(photo), str(moving_face_video[0]), "-o", str(out),
                              "-w", str(tmp_path / "w"), "--json"])
    assert res.exit_code == 0, res.output
    assert out.is_file() and probe_video(out).num_frames == len(moving_face_video[2])
    assert json.loads(res.stdout.splitlines()[0])["output"] == str(out)


def test_face_index_on_edit(tmp_path, astronaut):
    two = tmp_path / "two.png"
    write_image(two, np.hstack([astronaut, astronaut[:, ::-1]]))
    out = tmp_path / "edited.png"
    res = runner.invoke(app, ["edit", str(two), "--yaw", "5", "-o", str(out), "-w", str(tmp_path / "w")])
    assert res.exit_code == 1 and "--face-index" in res.output
    res = runner.invoke(app, ["edit", str(two), "--yaw", "5", "--face-index", "1", "-o", str(out),
                              "-w", str(tmp_path / "w")])
    assert res.exit_code == 0, res.output
    assert out.is_file()


@pytest.mark.parametrize("command", ["reenact", "edit", "evaluate"])
def test_face_options_everywhere(command):
    res = runner.invoke(app, [command, "--help"], env={"COLUMNS": "200"})
    assert "--face-index" in res.output and "--face-box" in res.output


def test_faceless_driver_frames_hold_the_last_good_mouth():
    crops = [np.full((4, 4, 3), v, np.uint8) for v in (10, 20, 0, 0, 50, 0)]
    landmarks = np.arange(6, dtype=np.float32)[:, None, None] * np.ones((6, 3, 2), np.float32)
    valid = np.array([False, True, False, False, True, False])
    out = list(held_mouth_frames(iter(crops), landmarks, valid))
    assert [int(c[0, 0, 0]) for c, _ in out] == [20, 20, 20, 20, 50, 50]
    assert [int(lm[0, 0]) for _, lm in out] == [1, 1, 1, 1, 4, 4]

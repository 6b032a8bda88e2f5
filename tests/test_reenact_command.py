"""`thead reenact` and `thead edit` through the CLI: outputs, audio, caches, manifest, bad input."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
from typer.testing import CliRunner

from thead.cli import app
from thead.io import probe_video, read_image, write_image

from conftest import moving_face_frames, write_video

runner = CliRunner()


@pytest.fixture(scope="module")
def inputs(tmp_path_factory, astronaut, moving_face_video):
    folder = tmp_path_factory.mktemp("re")
    src = folder / "astro.png"
    write_image(src, astronaut)
    return {"folder": folder, "source": src, "driver": moving_face_video[0]}


def _rows(res) -> list[dict]:
    return [json.loads(line) for line in res.stdout.strip().splitlines()]


def test_reenact_writes_video_with_audio_and_manifest(inputs, tmp_path):
    out, work = tmp_path / "out", tmp_path / "work"
    args = ["reenact", str(inputs["source"]), str(inputs["driver"]), "-o", str(out), "-w", str(work), "--json"]
    res = runner.invoke(app, args)
    assert res.exit_code == 0, res.stderr
    row = _rows(res)[0]
    assert row["status"] == "done" and row["output"].endswith("astro__moving.mp4")
    info = probe_video(row["output"])
    assert info.num_frames == 30 and info.has_audio and (info.width, info.height) == (256, 256)
    manifest = list(csv.DictReader(open(out / "manifest.csv")))
    assert manifest[0]["status"] == "done" and manifest[0]["driver"] == str(inputs["driver"].resolve())
    assert _rows(runner.invoke(app, args))[0]["status"] == "skipped"
    res = runner.invoke(app, args + ["--expression-scale", "0.5"])
    assert _rows(res)[0]["status"] == "done"
    # Turning the symmetry fill off is another output: redone, not skipped as current.
    assert _rows(runner.invoke(app, args + ["--expression-scale", "0.5", "--no-symmetry"]))[0]["status"] == "done"
    # The manifest feeds thead evaluate directly (cross-identity: the astronaut photo vs the moving clip).
    ev = runner.invoke(app, ["evaluate", "--pairs", str(out / "manifest.csv"), "-w", str(work), "--csim-frames", "2",
                             "--json", "-"])
    assert ev.exit_code == 0, ev.stderr


def test_reenact_paste_back_and_still_driver(inputs, tmp_path):
    out = tmp_path / "out"
    still = inputs["folder"] / "still.png"
    frames, _ = moving_face_frames(read_image(inputs["source"]), num=1)
    write_image(still, frames[0])
    res = runner.invoke(app, ["reenact", str(inputs["source"]), str(still), "-o", str(out), "-w",
                              str(tmp_path / "w"), "--paste-back", "--json"])
    assert res.exit_code == 0, res.stderr
    img = read_image(_rows(res)[0]["output"])
    assert img.shape == (512, 512, 3)  # pasted into the full source photo


def test_reenact_bad_inputs(inputs, tmp_path, astronaut):
    grey = tmp_path / "grey.png"
    write_image(grey, np.full((128, 128, 3), 120, np.uint8))
    res = runner.invoke(app, ["reenact", str(grey), str(inputs["driver"]), "-o", str(tmp_path / "o"), "-w",
                              str(tmp_path / "w"), "--json"])
    assert res.exit_code == 1 and "grey.png: no face found" in _rows(res)[0]["message"]
    blocker = tmp_path / "file"
    blocker.write_text("x")
    res = runner.invoke(app, ["reenact", str(inputs["source"]), str(inputs["driver"]), "-o", str(blocker / "sub"),
                              "-w", str(tmp_path / "w"), "--json"])
    assert res.exit_code == 2 and "--output" in res.output  # checked before any work (issue 13)


def test_driver_with_lost_frames_holds_the_pose(inputs, tmp_path, astronaut):
    frames, _ = moving_face_frames(astronaut, num=30)
    for t in range(12, 22):
        frames[t] = np.full_like(frames[t], 90)
    driver = write_video(tmp_path / "lost.mp4", frames)
    res = runner.invoke(app, ["reenact", str(inputs["source"]), str(driver), "-o", str(tmp_path / "o"), "-w",
                              str(tmp_path / "w"), "--json"])
    assert res.exit_code == 0, res.stderr
    row = _rows(res)[0]
    assert any("last pose held" in w for w in row["warnings"])
    assert probe_video(row["output"]).num_frames == 30


def test_edit_photo_video_and_orbit(inputs, tmp_path):
    out, work = tmp_path / "out", tmp_path / "w"
    res = runner.invoke(app, ["edit", str(inputs["source"]), "--yaw", "15", "--smile", "0.2", "-o", str(out), "-w",
                              str(work), "--json"])
    assert res.exit_code == 0, res.stderr
    row = _rows(res)[0]
    assert read_image(row["output"]).shape == (256, 256, 3)
    # Closed loop: the edited photo, measured like fit-3dmm would, reads the asked yaw.
    assert abs(row["info"]["asked"]["yaw"] - 15) < 1e-6 and abs(row["info"]["measured"]["yaw"] - 15) < 3
    res = runner.invoke(app, ["edit", str(inputs["driver"]), "--jaw-open", "0.6", "-o", str(out), "-w", str(work),
                              "--json"])
    assert res.exit_code == 0, res.stderr
    info = probe_video(_rows(res)[0]["output"])
    assert info.num_frames == 30 and info.has_audio
    res = runner.invoke(app, ["edit", str(inputs["source"]), "--orbit", "--orbit-frames", "12", "-o", str(out),
                              "-w", str(work), "--json"])
    assert res.exit_code == 0, res.stderr
    assert probe_video(_rows(res)[0]["output"]).num_frames == 12
    res = runner.invoke(app, ["edit", str(inputs["source"]), "--paste-back", "--frontalize", "-o", str(out), "-w",
                              str(work), "--json"])
    assert read_image(_rows(res)[0]["output"]).shape == (512, 512, 3)

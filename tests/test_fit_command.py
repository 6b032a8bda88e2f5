"""`thead fit-3dmm`: caches, chaining from raw inputs, overlay, bad input."""

from __future__ import annotations

import json

import numpy as np
import pytest
from typer.testing import CliRunner

from thead.stages.store import read_meta
from thead.cli import app
from thead.io import probe_video, write_image
from thead.stages.fit import load_fit

runner = CliRunner()


def _rows(result) -> dict[str, dict]:
    return {r["item"] or r["input"]: r for r in map(json.loads, result.stdout.strip().splitlines())}


def test_fit_from_raw_video_then_cached(tmp_path, moving_face_video):
    video = moving_face_video[0]
    work = tmp_path / "work"
    res = runner.invoke(app, ["fit-3dmm", str(video), "-o", str(work), "--json", "--overlay"])
    assert res.exit_code == 0, res.stderr
    assert _rows(res)["moving"]["status"] == "done"
    fit = load_fit(work / "moving")
    assert fit.pose.shape == (30, 6) and fit.expression.shape[0] == 30 and fit.gaze.shape == (30, 4)
    assert "jaw_open" in fit.expression_names and "blink_left" in fit.expression_names
    meta = read_meta(work / "moving" / "fit3dmm")
    assert meta["mean_fit_error_iod"] < 0.03
    assert probe_video(work / "moving" / "fit3dmm" / "overlay.mp4").num_frames == 30
    # The video rolls by 8 sin(2 pi t) degrees (counter-clockwise on screen): the fitted roll follows it.
    roll = np.degrees(fit.pose[:, 2])
    known = -8 * np.sin(2 * np.pi * np.arange(30) / 29)
    assert np.corrcoef(roll, known)[0, 1] > 0.95 and np.abs((roll - roll[0]) - known).max() < 2.5
    again = runner.invoke(app, ["fit-3dmm", str(work), "--json"])
    assert _rows(again)["moving"]["status"] == "skipped"
    redo = runner.invoke(app, ["fit-3dmm", str(work), "--json", "--smooth", "0"])
    assert _rows(redo)["moving"]["status"] == "done"


def test_new_preprocess_invalidates_fit(tmp_path, moving_face_video):
    video = moving_face_video[0]
    work = tmp_path / "work"
    assert runner.invoke(app, ["fit-3dmm", str(video), "-o", str(work)]).exit_code == 0
    assert runner.invoke(app, ["preprocess", str(video), "-o", str(work), "--size", "512"]).exit_code == 0
    res = runner.invoke(app, ["fit-3dmm", str(work / "moving"), "--json"])
    assert _rows(res)["moving"]["status"] == "done"
    assert load_fit(work / "moving").image_size == 512


def test_bad_inputs_are_listed_and_others_finish(tmp_path, astronaut, moving_face_video):
    work = tmp_path / "work"
    noface = tmp_path / "grey.png"
    write_image(noface, np.full((200, 200, 3), 128, np.uint8))
    face = tmp_path / "astro.png"
    write_image(face, astronaut)
    assert runner.invoke(app, ["preprocess", str(face), str(moving_face_video[0]), "-o", str(work)]).exit_code == 0
    (work / "moving" / "preprocess" / "landmarks.npz").unlink()  # a damaged cache
    res = runner.invoke(app, ["fit-3dmm", str(work), str(noface), "-o", str(work), "--json"])
    assert res.exit_code == 1
    rows = _rows(res)
    assert rows["astro"]["status"] == "done"
    assert rows["moving"]["status"] == "failed" and "landmarks.npz" in rows["moving"]["message"]
    assert rows["grey"]["status"] == "failed" and "no face found" in rows["grey"]["message"]
    assert "failures:" in res.stderr


def test_lost_frames_are_filled_and_reported(tmp_path, astronaut):
    from conftest import moving_face_frames, write_video

    frames, _ = moving_face_frames(astronaut, num=30)
    for t in range(10, 20):  # 0.4 s without a face: longer than --max-gap, reported, filled by the fit
        frames[t] = np.full_like(frames[t], 100)
    video = write_video(tmp_path / "gap.mp4", frames)
    res = runner.invoke(app, ["fit-3dmm", str(video), "-o", str(tmp_path / "w"), "--json"])
    assert res.exit_code == 0, res.stderr
    row = _rows(res)["gap"]
    assert any("10 frame(s) without a face" in w for w in row["warnings"])
    assert read_meta(tmp_path / "w" / "gap" / "preprocess")["lost_spans"] == [[10, 19]]
    fit = load_fit(tmp_path / "w" / "gap")
    assert np.isfinite(fit.pose).all()


@pytest.mark.shared_data
def test_real_clips_fit_within_two_percent_iod(shared_data, tmp_path):
    res = runner.invoke(app, ["fit-3dmm", str(shared_data / "videos"), "-o", str(tmp_path), "--json"])
    assert res.exit_code == 0, res.stderr
    for name in ("d0", "d3", "d12", "WDA_AlexandriaOcasioCortez_000"):
        assert read_meta(tmp_path / name / "fit3dmm")["mean_fit_error_iod"] < 0.02

"""`thead audio-drive` through the CLI: duration and audio of the output, manifest, silence, bad audio, motion
files (same seed same bytes; rendered back through `thead reenact SOURCE MOTION.safetensors`)."""

from __future__ import annotations

import csv
import json
import shutil
import subprocess

import numpy as np
import pytest
from typer.testing import CliRunner

from thead.cli import app
from thead.io import probe_video, read_frames, write_image
from thead.io.ffmpeg import ffmpeg_exe

runner = CliRunner()
pytestmark = pytest.mark.skipif(shutil.which("espeak-ng") is None, reason="espeak-ng not installed")


def _duration(path) -> float:
    out = subprocess.run(["ffprobe", "-v", "error", "-show_entries", "format=duration", "-of", "csv=p=0", str(path)],
                         capture_output=True, text=True, check=True).stdout
    return float(out.strip())


def _rows(res) -> list[dict]:
    return [json.loads(line) for line in res.stdout.strip().splitlines() if line.startswith("{")]


@pytest.fixture(scope="module")
def inputs(tmp_path_factory, astronaut):
    folder = tmp_path_factory.mktemp("ad")
    src = folder / "astro.png"
    write_image(src, astronaut)
    speech = folder / "speech.wav"
    subprocess.run(["espeak-ng", "-s", "190", "-w", str(speech), "Maybe we buy apples."], check=True)
    silent = folder / "quiet.wav"
    subprocess.run([ffmpeg_exe(), "-v", "error", "-y", "-f", "lavfi", "-i", "anullsrc=r=22050:cl=stereo", "-t", "1.2",
                    str(silent)], check=True)
    bad = folder / "broken.wav"
    bad.write_text("not audio at all\n")
    return {"folder": folder, "source": src, "speech": speech, "silent": silent, "bad": bad}


@pytest.fixture(scope="module")
def spoken(inputs, tmp_path_factory):
    out, work = tmp_path_factory.mktemp("out"), tmp_path_factory.mktemp("work")
    args = ["audio-drive", str(inputs["source"]), str(inputs["speech"]), "-o", str(out), "-w", str(work), "--json",
            "--export-motion", str(out / "motion"), "--seed", "3"]
    res = runner.invoke(app, args)
    return {"res": res, "out": out, "work": work, "args": args}


def test_audio_drive_output_length_audio_and_manifest(inputs, spoken):
    res = spoken["res"]
    assert res.exit_code == 0, res.stderr
    row = _rows(res)[0]
    assert row["status"] == "done" and row["output"].endswith("astro__speech.mp4")
    assert row["info"]["phoneme_path"] in ("alignment", "phone_loop", "acoustic")
    info = probe_video(row["output"])
    assert info.has_audio and (info.width, info.height) == (256, 256)
    assert abs(_duration(row["output"]) - _duration(inputs["speech"])) <= 1 / 25 + 1e-3
    assert info.num_frames == int(np.floor(_duration(inputs["speech"]) * 25 + 0.5))
    manifest = list(csv.DictReader(open(spoken["out"] / "manifest.csv")))
    assert manifest[0]["status"] == "done" and manifest[0]["driver"] == str(inputs["speech"].resolve())
    side = json.loads((spoken["out"] / ".astro__speech.mp4.json").read_text())
    assert side["report"]["phoneme_path"] == row["info"]["phoneme_path"]
    # current output: skipped; another seed: redone
    assert _rows(runner.invoke(app, spoken["args"]))[0]["status"] == "skipped"


def test_output_made_by_older_motion_code_is_redone(spoken, monkeypatch, tmp_path):
    import shutil

    import thead.audio.motion as motion

    out = tmp_path / "copy"
    shutil.copytree(spoken["out"], out)
    args = [a if a != str(spoken["out"]) else str(out) for a in spoken["args"]]
    assert _rows(runner.invoke(app, args))[0]["status"] == "skipped"
    monkeypatch.setattr(motion, "MOTION_REVISION", motion.MOTION_REVISION + 1)
    assert _rows(runner.invoke(app, args))[0]["status"] == "done"


def test_same_seed_same_motion_bytes_and_round_trip(inputs, spoken, tmp_path):
    first = spoken["out"] / "motion" / "astro__speech.safetensors"
    assert first.is_file()
    again = tmp_path / "again.safetensors"
    args = ["audio-drive", str(inputs["source"]), str(inputs["speech"]), "-o", str(tmp_path / "o"), "-w",
            str(spoken["work"]), "--json", "--export-motion", str(again), "--seed", "3"]
    res = runner.invoke(app, args)
    assert res.exit_code == 0, res.stderr
    assert again.read_bytes() == first.read_bytes()
    # the motion file rendered by reenact on the face it was made for: the same frames, with the audio
    res = runner.invoke(app, ["reenact", str(inputs["source"]), str(first), "-o", str(tmp_path / "re"), "-w",
                              str(spoken["work"]), "--json"])
    assert res.exit_code == 0, res.stderr
    row = _rows(res)[0]
    made = read_frames(spoken["out"] / "astro__speech.mp4")
    back = read_frames(row["output"])
    assert back.shape == made.shape and np.array_equal(back, made)
    assert probe_video(row["output"]).has_audio
    # relative rendering (another transfer option): as long, close to the made frames
    res = runner.invoke(app, ["reenact", str(inputs["source"]), str(first), "-o", str(tmp_path / "re2"), "-w",
                              str(spoken["work"]), "--json", "--expression-scale", "0.99"])
    rel = read_frames(_rows(res)[0]["output"])
    assert rel.shape == made.shape and np.abs(rel.astype(float) - made).mean() < 12


def test_silent_audio_still_face_and_bad_audio_fails_alone(inputs, spoken, tmp_path):
    out = tmp_path / "o"
    res = runner.invoke(app, ["audio-drive", str(inputs["source"]), str(inputs["silent"]), str(inputs["bad"]),
                              "-o", str(out), "-w", str(spoken["work"]), "--json", "--blink-rate", "0"])
    assert res.exit_code == 1
    rows = {r["item"] or r["input"]: r for r in _rows(res)}
    quiet = rows["astro__quiet"]
    assert quiet["status"] == "done" and quiet["info"]["phoneme_path"] == "silence"
    assert quiet["info"]["pose_mode"] == "still" and any("silent" in w for w in quiet["warnings"])
    frames = read_frames(quiet["output"]).astype(float)
    assert np.abs(frames - frames[:1]).max(axis=(1, 2, 3)).mean() < 20  # no blinks asked: the face does not move
    failed = [r for r in rows.values() if r["status"] == "failed"]
    assert len(failed) == 1 and "broken.wav" in failed[0]["message"] and "\n" not in failed[0]["message"]


def test_keyframes_and_ranges_refused():
    res = runner.invoke(app, ["audio-drive", "a.png", "b.wav", "--yaw", "0,abc"])
    assert res.exit_code == 2
    res = runner.invoke(app, ["audio-drive", "a.png", "b.wav", "--mouth-scale", "nan"])
    assert res.exit_code == 2


def test_train_audio2motion_registers_a_model_used_by_audio_drive(inputs, spoken, moving_face_video, tmp_path,
                                                                   monkeypatch):
    monkeypatch.setenv("THEAD_WEIGHTS", str(tmp_path / "weights"))
    res = runner.invoke(app, ["train", "audio2motion", str(moving_face_video[0]), "-o", "tiny", "-w",
                              str(spoken["work"]), "--steps", "3", "--pose-steps", "3", "--json"])
    assert res.exit_code == 0, res.stderr
    made = _rows(res)[0]
    from thead.audio.train import sha256_file
    from thead.jobs.train import find_motion_model

    path, sha = find_motion_model("tiny")
    assert path.is_file() and sha == made["sha256"] == sha256_file(path)
    res = runner.invoke(app, ["audio-drive", str(inputs["source"]), str(inputs["speech"]), "-o", str(tmp_path / "o"),
                              "-w", str(spoken["work"]), "--json", "--motion-model", "tiny", "--pose", "learned"])
    assert res.exit_code == 0, res.stderr
    assert _rows(res)[0]["info"]["pose_mode"] == "learned"
    res = runner.invoke(app, ["audio-drive", str(inputs["source"]), str(inputs["speech"]), "-o", str(tmp_path / "o"),
                              "-w", str(spoken["work"]), "--json", "--motion-model", "nosuch"])
    assert res.exit_code == 1 and "nosuch" in _rows(res)[0]["message"]

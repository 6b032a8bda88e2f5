"""Jobs on Face records through the CLI: moved inputs, one prepare per video edit, evaluate reusing reenact's items
with one decode per clip, and the branches the review found untested (--pairs, fit-3dmm -, --mouth synth, a
video source with --source-frame)."""

from __future__ import annotations

import csv
import json
import shutil
import subprocess

import numpy as np
import pytest
from typer.testing import CliRunner

from thead.cli import app
from thead.io import probe_video, read_frames, read_image, write_image

from conftest import moving_face_frames, write_video

runner = CliRunner()


FRAMES = 12  # a short clip keeps the renders fast


@pytest.fixture(scope="module")
def media(tmp_path_factory, astronaut):
    folder = tmp_path_factory.mktemp("jobs")
    photo = folder / "astro.png"
    write_image(photo, astronaut)
    (folder / "clips").mkdir()
    video = write_video(folder / "clips" / "moving.mp4", moving_face_frames(astronaut, num=FRAMES)[0], audio=True)
    return {"folder": folder, "photo": photo, "video": video}


def _rows(res) -> list[dict]:
    return [json.loads(line) for line in res.stdout.strip().splitlines()]


def _invoke(*args, **kw) -> list[dict]:
    res = runner.invoke(app, [str(a) for a in args] + ["--json"], **kw)
    assert res.exit_code == 0, res.stderr
    return _rows(res)


def _move(path, folder):
    folder.mkdir(exist_ok=True)
    return shutil.move(str(path), str(folder / path.name))


# ------------------------------------------------------------------------------------------------ moved inputs
def test_moved_photo_still_pastes_back(tmp_path, astronaut):
    """Regression: the cache is keyed on content, so it stays current after a move; the picture to paste into
    must come from the path given now (was: the path recorded in meta.json, 'a/x.png: file not found')."""
    a, b, work = tmp_path / "a", tmp_path / "b", tmp_path / "work"
    a.mkdir()
    write_image(a / "x.png", astronaut)
    first = _invoke("reenact", a / "x.png", a / "x.png", "--paste-back", "-o", tmp_path / "o1", "-w", work)[0]
    moved = _move(a / "x.png", b)
    row = _invoke("reenact", moved, moved, "--paste-back", "-o", tmp_path / "o2", "-w", work)[0]
    assert row["status"] == "done" and not row["warnings"]
    out = read_image(row["output"])
    assert out.shape == (512, 512, 3)
    np.testing.assert_array_equal(out, read_image(first["output"]))


def test_moved_photo_keeps_its_surroundings(tmp_path, astronaut):
    """Regression: without --paste-back the render canvas around the crop is cut from the picture; after a move
    it silently became the crop's mirror image (a different render, and a warning)."""
    a, b, work = tmp_path / "a", tmp_path / "b", tmp_path / "work"
    a.mkdir()
    write_image(a / "x.png", astronaut)
    first = _invoke("reenact", a / "x.png", a / "x.png", "-o", tmp_path / "o1", "-w", work)[0]
    moved = _move(a / "x.png", b)
    row = _invoke("reenact", moved, moved, "-o", tmp_path / "o2", "-w", work)[0]
    assert not row["warnings"]
    np.testing.assert_array_equal(read_image(row["output"]), read_image(first["output"]))


def test_moved_driver_video_gives_its_audio(tmp_path, media):
    """Regression: the output's audio is the driver's, read from the driver's path as given now (was: from the
    path recorded when it was preprocessed)."""
    a, b, work = tmp_path / "a", tmp_path / "b", tmp_path / "work"
    a.mkdir()
    shutil.copy(media["video"], a / "drv.mp4")
    assert probe_video(_invoke("reenact", media["photo"], a / "drv.mp4", "-o", tmp_path / "o1", "-w", work)[0]
                       ["output"]).has_audio
    moved = _move(a / "drv.mp4", b)
    row = _invoke("reenact", media["photo"], moved, "-o", tmp_path / "o2", "-w", work)[0]
    info = probe_video(row["output"])
    assert row["status"] == "done" and info.has_audio and info.num_frames == FRAMES


def test_paste_back_keeps_the_pixels_the_head_does_not_touch(tmp_path, media):
    """Regression: reenact --paste-back pasted the whole crop-resolution render back, so even frame 0 of a
    self-reenactment differed from the source everywhere in the crop (its soft resampling, the render's matte
    edges); now only what the render changed is pasted: frame 0 is the source frame up to the encoder's loss,
    and the background stays the source frame's own on every frame."""
    from thead.metrics import psnr

    row = _invoke("reenact", media["video"], media["video"], "--paste-back", "-o", tmp_path / "o", "-w",
                  tmp_path / "w")[0]
    out, original = read_frames(row["output"]), read_frames(media["video"])
    assert out.shape == original.shape
    # The output is encoded once more (crf 18): ~41 dB is the encoder's loss alone; the whole crop pasted back
    # gave 37.4 dB on this clip.
    assert float(psnr(out[:1], original[:1])[0]) >= 39.0
    still = out[:, 60:, :30].astype(int)  # the wall left of her shoulder, inside the crop
    assert np.abs(still - original[:1, 60:, :30]).mean() < 2.0


# ------------------------------------------------------------------------------------------------ video edit
def test_video_edit_prepares_the_source_once(tmp_path, media, monkeypatch):
    """Regression: a video edit prepared the engine on every frame (two segmentations each) and rendered batches
    of one; now one prepare and batches of up to --batch-size frames, pasted back into each frame's original."""
    from thead.engines.mesh import MeshEngine

    calls = {"prepare": 0, "render": []}
    prepare, render_full = MeshEngine.prepare, MeshEngine.render_full

    def counting_prepare(self, *a, **k):
        calls["prepare"] += 1
        return prepare(self, *a, **k)

    def counting_render(self, prepared, targets, *a, **k):
        calls["render"].append(len(targets))
        return render_full(self, prepared, targets, *a, **k)

    monkeypatch.setattr(MeshEngine, "prepare", counting_prepare)
    monkeypatch.setattr(MeshEngine, "render_full", counting_render)
    row = _invoke("edit", media["video"], "--jaw-open", "0.5", "--paste-back", "-o", tmp_path / "o", "-w",
                  tmp_path / "w")[0]
    assert calls["prepare"] == 1  # was one per frame
    assert sum(calls["render"]) == FRAMES and len(calls["render"]) <= 2  # one batch, split at most in two
    info = probe_video(row["output"])
    assert (info.width, info.height, info.num_frames) == (320, 320, FRAMES) and info.has_audio
    # Pasted back into each frame's own original: the picture around the face is that frame's.
    frames, original = read_frames(row["output"]).astype(int), read_frames(media["video"]).astype(int)
    corner = (slice(None), slice(0, 40), slice(0, 40))
    assert np.abs(frames[corner] - original[corner]).mean() < 3
    assert np.abs(frames[corner][-1] - original[corner][0]).mean() > 3 * np.abs(frames[corner][-1] -
                                                                                   original[corner][-1]).mean()


# ------------------------------------------------------------------------------------------------ evaluate
def _ffmpeg_calls(monkeypatch) -> list[list[str]]:
    """Every command line started from now on (ffmpeg decodes and encodes, ffprobe runs; ``subprocess.run`` starts
    its process through ``subprocess.Popen`` too)."""
    calls: list[list[str]] = []
    popen = subprocess.Popen

    def spy_popen(cmd, *a, **k):
        calls.append([str(c) for c in cmd])
        return popen(cmd, *a, **k)

    monkeypatch.setattr(subprocess, "Popen", spy_popen)
    return calls


def _decodes(calls, path) -> int:
    return sum(1 for c in calls if c[-1] == "-" and "rawvideo" in c and str(path) in c)


def _probes(calls, path) -> int:
    return sum(1 for c in calls if "ffprobe" in c[0] and c[-1] == str(path))


def test_evaluate_reuses_reenact_items_and_decodes_each_clip_once(tmp_path, media, monkeypatch):
    """Regression: evaluate preprocessed the driver again under another item id, encoded crop videos it never
    read and decoded the originals again (each decode after a full ffprobe packet count)."""
    out, work = tmp_path / "out", tmp_path / "work"
    _invoke("reenact", media["photo"], media["video"], "-o", out, "-w", work)
    before = {p.name: (p / "preprocess" / "landmarks.npz").stat().st_mtime_ns for p in work.iterdir()}
    assert set(before) == {"astro", "moving"}
    generated = out / "astro__moving.mp4"
    calls = _ffmpeg_calls(monkeypatch)
    res = runner.invoke(app, ["evaluate", "--pairs", str(out / "manifest.csv"), "-w", str(work), "--csim-frames",
                              "2", "--report", "-"])
    assert res.exit_code == 0, res.stderr
    assert json.loads(res.stdout)["videos"][0]["protocol"] == "cross"
    items = {p.name: (p / "preprocess" / "landmarks.npz").stat().st_mtime_ns for p in work.iterdir()}
    assert set(items) == {"astro", "moving", "astro__moving"}  # the generated video is the only new item
    assert all(items[k] == before[k] for k in before)  # reenact's caches used as they are
    assert _decodes(calls, media["video"]) == 1 and _probes(calls, media["video"]) == 0
    assert _decodes(calls, generated) == 2 and _probes(calls, generated) == 1  # track once, compare once
    assert not any("libx264" in c for c in calls)  # no crop video encoded
    calls.clear()
    res = runner.invoke(app, ["evaluate", str(generated), str(media["video"]), "--source", str(media["photo"]),
                              "-w", str(work), "--no-identity"])
    assert res.exit_code == 0, res.stderr
    assert _decodes(calls, generated) == 1 and _probes(calls, generated) == 0
    assert _decodes(calls, media["video"]) == 1 and _probes(calls, media["video"]) == 0


# ------------------------------------------------------------------------------------------------ branches
def test_reenact_pairs_csv(tmp_path, media, astronaut):
    still = tmp_path / "still.png"
    write_image(still, np.ascontiguousarray(astronaut[:, ::-1]))
    shutil.copy(media["photo"], tmp_path / "astro.png")
    pairs = tmp_path / "pairs.csv"
    pairs.write_text(f"source,driver\nastro.png,{media['video']}\nastro.png,still.png\n")
    out = tmp_path / "out"
    rows = _invoke("reenact", "--pairs", pairs, "-o", out, "-w", tmp_path / "w")
    assert sorted(r["item"] for r in rows) == ["astro__moving", "astro__still"]
    assert probe_video(out / "astro__moving.mp4").num_frames == FRAMES
    assert read_image(out / "astro__still.png").shape == (256, 256, 3)
    manifest = list(csv.DictReader(open(out / "manifest.csv")))
    assert [m["status"] for m in manifest] == ["done", "done"]
    assert {m["driver"] for m in manifest} == {str(media["video"].resolve()), str(still.resolve())}


def test_fit_3dmm_reads_paths_from_stdin(tmp_path, media):
    work = tmp_path / "w"
    rows = _invoke("fit-3dmm", "-", "-o", work, input=f"# a comment\n{media['photo']}\n\n")
    assert [r["status"] for r in rows] == ["done"]
    assert (work / "astro" / "fit3dmm" / "fit.safetensors").is_file()


def test_reenact_mouth_synth(tmp_path, media):
    row = _invoke("reenact", media["photo"], media["video"], "--mouth", "synth", "-o", tmp_path / "o", "-w",
                  tmp_path / "w")[0]
    assert probe_video(row["output"]).num_frames == FRAMES
    sidecar = json.loads((tmp_path / "o" / ".astro__moving.mp4.json").read_text())
    assert sidecar["params"]["mouth"] == "synth"


def test_video_source_with_source_frame(tmp_path, media):
    """A video source animates the frame asked for: with itself as the relative driver, the first output frame
    is that source frame's crop (not frame 0's)."""
    from thead.face.crop import crop_frame
    from thead.metrics import psnr
    from thead.stages import PreprocessMeta

    work = tmp_path / "w"
    row = _invoke("reenact", media["video"], media["video"], "--source-frame", "10", "-o", tmp_path / "o", "-w",
                  work)[0]
    first = read_frames(row["output"], max_frames=1)[0]
    originals = read_frames(media["video"])
    with np.load(work / "moving" / "preprocess" / "landmarks.npz") as data:
        transforms = data["transforms"]
    assert PreprocessMeta.read(work / "moving" / "preprocess").crop is None  # jobs need no crop video
    crop = lambda t: crop_frame(originals[t], transforms[t], 256)  # noqa: E731
    assert float(psnr(first[None], crop(10)[None])[0]) > float(psnr(first[None], crop(0)[None])[0]) + 3
    res = runner.invoke(app, ["reenact", str(media["video"]), str(media["video"]), "--source-frame", str(FRAMES), "-o",
                              str(tmp_path / "o"), "-w", str(work), "--json"])
    assert res.exit_code == 1
    assert f"--source-frame {FRAMES} is outside the clip's {FRAMES} frames" in _rows(res)[0]["message"]

"""`thead preprocess`: tracking and cropping a synthetic moving face, bad input, the cache, the CLI."""

from __future__ import annotations

import io
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import pytest
from typer.testing import CliRunner

from thead.stages.store import read_meta
from thead.cli import app
from thead.face import topology as mp_idx
from thead.face.crop import ffhq_transforms
from thead.geometry import Affine2D, box_iou, landmark_box
from thead.io import probe_video, read_frames, read_image, write_image
from thead.jobs.items import InputItem, collect_inputs
from thead.stages.preprocess import PreprocessParams, load_preprocess, preprocess_item

from conftest import moving_face_frames, write_video

runner = CliRunner()


@pytest.fixture(scope="module")
def vox_result(tmp_path_factory, moving_face_video):
    path, mats, frames = moving_face_video
    work = tmp_path_factory.mktemp("work")
    res = preprocess_item(InputItem(path, "moving"), work, PreprocessParams(protocol="vox", size=256))
    assert res.status == "done", res.message
    return load_preprocess(work / "moving" / "preprocess"), mats, frames


def test_landmarks_follow_known_motion(vox_result):
    pre, mats, _ = vox_result
    assert pre.detected.all() and pre.landmarks.shape == (30, 478, 3)
    # Landmarks of frame t equal frame 0's moved by the known similarity (up to detector noise).
    first = pre.landmarks[0, :, :2]
    moves = Affine2D(mats) @ Affine2D(mats[0]).inverse  # frame 0 -> frame t
    errs = np.linalg.norm(moves.apply(first) - pre.landmarks[:, :, :2], axis=-1).mean(axis=1)
    iod = np.linalg.norm(first[mp_idx.RIGHT_IRIS[0], :2] - first[mp_idx.LEFT_IRIS[0], :2])
    assert np.mean(errs) < 0.05 * iod, (np.mean(errs), iod)


def test_landmarks_land_on_the_face(vox_result, astronaut):
    """Eye centres fall on the astronaut's eyes: dark iris pixels at the detected iris centres."""
    pre, _, frames = vox_result
    for t in (0, 15, 29):
        grey = cv2.cvtColor(frames[t], cv2.COLOR_RGB2GRAY).astype(float)
        for iris in (mp_idx.RIGHT_IRIS[0], mp_idx.LEFT_IRIS[0]):
            x, y = np.floor(pre.landmarks[t, iris, :2]).astype(int)  # the pixel holding the point
            assert grey[y - 1 : y + 2, x - 1 : x + 2].mean() < grey.mean() - 20


def test_vox_crop_is_one_still_box(vox_result):
    pre, _, _ = vox_result
    # The face drifts far (IoU with the first box falls to 0.24), so FOMM's rule starts a second segment;
    # within a segment the box does not move.
    assert pre.meta.segments == 2 and pre.segment[0] == 0 and pre.segment[-1] == 1
    for s in (0, 1):
        rows = pre.transforms[pre.segment == s]
        assert np.allclose(rows, rows[0])
    boxes = landmark_box(pre.landmarks)
    first_of_second = int(np.argmax(pre.segment == 1))
    assert box_iou(boxes[first_of_second], boxes[0]) < 0.25
    assert (box_iou(boxes[:first_of_second], boxes[0]) >= 0.25).all()
    inside = (pre.crop_landmarks[..., :2] > 0) & (pre.crop_landmarks[..., :2] < 256)
    assert inside.all()
    crops = read_frames(pre.crop_path)
    assert crops.shape == (30, 256, 256, 3)
    assert probe_video(pre.crop_path).has_audio
    # The stored landmarks agree with the stored transforms.
    assert np.allclose(Affine2D(pre.transforms).apply(pre.landmarks), pre.crop_landmarks, atol=1e-3)


def test_ffhq_alignment_cancels_the_motion(tmp_path, moving_face_video):
    path, _, _ = moving_face_video
    res = preprocess_item(InputItem(path, "m"), tmp_path, PreprocessParams(protocol="ffhq", size=256))
    assert res.status == "done", res.message
    pre = load_preprocess(tmp_path / "m" / "preprocess")
    # In aligned crops the eyes stay put although the face moves, rotates and grows in the frame.
    eyes = pre.crop_landmarks[:, [mp_idx.RIGHT_IRIS[0], mp_idx.LEFT_IRIS[0]], :2]
    # (the face is ~60 px wide in the frame and ~4x enlarged in the crop: 8 crop px = 2 frame px)
    assert np.abs(eyes - eyes.mean(0)).max() < 8.0
    spread_orig = np.ptp(pre.landmarks[:, mp_idx.NOSE_TIP, :2], axis=0).max()
    assert spread_orig > 20  # ... while in the original frames they moved a lot
    # Eyes horizontal and level in the crop.
    assert np.abs(eyes[:, 0, 1] - eyes[:, 1, 1]).max() < 3


def test_ffhq_smoothing_removes_jitter_without_lag():
    rng = np.random.default_rng(0)
    base = np.zeros((60, 478, 3), np.float32)
    canon = rng.uniform(100, 200, (478, 3)).astype(np.float32)
    canon[mp_idx.RIGHT_EYE, :2] = [120, 120]
    canon[mp_idx.LEFT_EYE, :2] = [180, 120]
    canon[mp_idx.MOUTH_CORNERS, :2] = [[130, 190], [170, 190]]
    motion = np.linspace(0, 40, 60)  # steady drift to the right
    for t in range(60):
        base[t] = canon
        base[t, :, 0] += motion[t]
    noisy = base + rng.normal(0, 1.5, base.shape).astype(np.float32)
    valid = np.ones(60, bool)
    raw = ffhq_transforms(noisy, valid, 256, smooth_sigma=0)
    smooth = ffhq_transforms(noisy, valid, 256, smooth_sigma=2.0)
    truth = ffhq_transforms(base, valid, 256, smooth_sigma=0)
    jitter = lambda t: np.abs(np.diff(t[:, :, 2], 2, axis=0)).mean()  # noqa: E731
    assert jitter(smooth) < 0.3 * jitter(raw)
    lag = np.abs(smooth[10:-10, :, 2] - truth[10:-10, :, 2]).mean()
    assert lag < np.abs(raw[10:-10, :, 2] - truth[10:-10, :, 2]).mean()


def test_image_and_ffhq_image(tmp_path, astronaut):
    img = tmp_path / "astro.jpg"
    write_image(img, astronaut)
    for protocol in ("vox", "ffhq"):
        res = preprocess_item(InputItem(img, f"a_{protocol}"), tmp_path, PreprocessParams(protocol=protocol))
        assert res.status == "done", res.message
        pre = load_preprocess(tmp_path / f"a_{protocol}" / "preprocess")
        assert read_image(pre.crop_path).shape == (256, 256, 3)
        assert pre.meta.kind == "image" and pre.landmarks.shape == (1, 478, 3)


@pytest.fixture(scope="module")
def bad_inputs(tmp_path_factory, astronaut):
    folder = tmp_path_factory.mktemp("bad")
    (folder / "corrupt.mp4").write_bytes(b"\x00\x00\x00\x18ftypmp42" + bytes(range(256)) * 20)
    frames, _ = moving_face_frames(astronaut, num=20)
    good = write_video(folder / "good_src.mp4", frames)
    data = good.read_bytes()
    (folder / "truncated.mp4").write_bytes(data[: len(data) // 2])
    good.rename(folder / "good.mp4")
    write_video(folder / "noface.mp4", [np.full((128, 128, 3), 90 + 5 * i, np.uint8) for i in range(10)])
    small = cv2.resize(astronaut, (256, 256))
    write_image(folder / "twofaces.png", np.concatenate([small, small[:, ::-1]], axis=1))
    return folder


def test_batch_reports_each_bad_input_and_finishes_the_rest(tmp_path, bad_inputs):
    work = tmp_path / "work"
    result = runner.invoke(app, ["preprocess", str(bad_inputs), str(tmp_path / "missing.mp4"), "-o", str(work),
                                 "--json"])
    assert result.exit_code == 1
    rows = {Path(r["input"]).name: r for r in map(json.loads, result.stdout.strip().splitlines())}
    assert rows["good.mp4"]["status"] == "done"
    assert rows["missing.mp4"]["status"] == "failed" and "file not found" in rows["missing.mp4"]["message"]
    reasons = {name: rows[name]["message"] for name in ("corrupt.mp4", "truncated.mp4", "noface.mp4",
                                                        "twofaces.png")}
    assert all(rows[n]["status"] == "failed" for n in reasons)
    assert "no face found" in reasons["noface.mp4"]
    assert "2 faces found" in reasons["twofaces.png"]
    assert "truncated" in reasons["truncated.mp4"]
    for name, msg in reasons.items():
        assert name in msg and "\n" not in msg  # one line naming the file
    assert "4 failed" in result.stderr.replace("5 failed", "4 failed")
    assert "failures:" in result.stderr and "noface.mp4" in result.stderr
    # The failed items left nothing a later stage would trust.
    for name in ("corrupt", "truncated", "noface", "twofaces"):
        assert read_meta(work / name / "preprocess") is None


def test_two_faces_with_face_index(tmp_path, bad_inputs):
    res = runner.invoke(app, ["preprocess", str(bad_inputs / "twofaces.png"), "-o", str(tmp_path), "--face-index",
                              "1"])
    assert res.exit_code == 0, res.stderr
    pre = load_preprocess(tmp_path / "twofaces" / "preprocess")
    assert pre.landmarks[0, :, 0].mean() > 256  # the right-hand face


def test_empty_directory_and_stdin_list(tmp_path, moving_face_video):
    empty = tmp_path / "empty"
    empty.mkdir()
    res = runner.invoke(app, ["preprocess", str(empty), "-o", str(tmp_path / "w")])
    assert res.exit_code == 1 and "no usable files" in res.stderr
    path = moving_face_video[0]
    items, failures = collect_inputs(["-"], {".mp4"}, stdin=io.StringIO(f"# list\n{path}\n\n{path.parent}\n"))
    assert not failures and [i.path for i in items] == [path]  # listed twice: one item
    res = runner.invoke(app, ["preprocess", "-", "-o", str(tmp_path / "w2"), "--json"], input=f"{path}\n")
    assert res.exit_code == 0, res.stderr
    assert json.loads(res.stdout)["status"] == "done"


def test_cache_skip_redo_and_force(tmp_path, moving_face_video):
    path = moving_face_video[0]
    args = ["preprocess", str(path), "-o", str(tmp_path), "--json"]
    first = json.loads(runner.invoke(app, args).stdout)
    assert first["status"] == "done"
    meta_before = read_meta(tmp_path / "moving" / "preprocess")
    assert json.loads(runner.invoke(app, args).stdout)["status"] == "skipped"
    assert read_meta(tmp_path / "moving" / "preprocess") == meta_before
    assert json.loads(runner.invoke(app, args + ["--size", "512"]).stdout)["status"] == "done"
    assert load_preprocess(tmp_path / "moving" / "preprocess").meta.crop_size == 512
    assert json.loads(runner.invoke(app, args + ["--size", "512", "--force"]).stdout)["status"] == "done"
    assert json.loads(runner.invoke(app, args + ["--size", "512", "--png"]).stdout)["status"] == "done"
    assert len(list((tmp_path / "moving" / "preprocess" / "frames").glob("*.png"))) == 30


def test_crash_midway_keeps_the_old_result(tmp_path, moving_face_video, monkeypatch):
    path = moving_face_video[0]
    item = InputItem(path, "moving")
    assert preprocess_item(item, tmp_path, PreprocessParams()).status == "done"
    before = read_meta(tmp_path / "moving" / "preprocess")
    import thead.stages.preprocess as stage

    calls = {"n": 0}
    real = stage.crop_frame

    def failing(*a, **k):
        calls["n"] += 1
        if calls["n"] == 10:
            raise RuntimeError("simulated crash")
        return real(*a, **k)

    monkeypatch.setattr(stage, "crop_frame", failing)
    with pytest.raises(RuntimeError):
        preprocess_item(item, tmp_path, PreprocessParams(size=512))
    assert read_meta(tmp_path / "moving" / "preprocess") == before
    assert [p.name for p in (tmp_path / "moving").iterdir() if p.name != ".lock"] == ["preprocess"]  # .lock: the item lock


def test_killed_process_leaves_no_trusted_partial_output(tmp_path, astronaut):
    """SIGKILL while the crop video is being written: nothing is trusted, and a rerun completes."""
    frames, _ = moving_face_frames(astronaut, num=150, size=320)
    video = write_video(tmp_path / "long.mp4", frames)
    work = tmp_path / "work"
    proc = subprocess.Popen([sys.executable, "-m", "thead", "preprocess", str(video), "-o", str(work), "--png"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 60
    while time.time() < deadline and proc.poll() is None:
        if list(work.glob("long/.preprocess.tmp-*/frames/*.png")):
            break
        time.sleep(0.05)
    if proc.poll() is None:
        os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert read_meta(work / "long" / "preprocess") is None
    res = runner.invoke(app, ["preprocess", str(video), "-o", str(work), "--json"])
    assert json.loads(res.stdout)["status"] == "done"
    assert load_preprocess(work / "long" / "preprocess").meta.num_frames == 150


@pytest.mark.shared_data
def test_real_clips(shared_data, tmp_path):
    res = runner.invoke(app, ["preprocess", str(shared_data / "videos" / "d0.mp4"), str(shared_data / "images"),
                              "-o", str(tmp_path), "--json"])
    assert res.exit_code == 0, res.stderr
    pre = load_preprocess(tmp_path / "d0" / "preprocess")
    assert pre.detected.all() and pre.meta.num_frames == 78
    for name in ("s0", "s1", "s5", "s6", "s11", "happy", "art_0", "people_0"):
        assert load_preprocess(tmp_path / name / "preprocess").landmarks.shape == (1, 478, 3)


def test_fan_backend_without_weights_says_what_to_get(tmp_path, astronaut, monkeypatch):
    monkeypatch.setenv("THEAD_WEIGHTS", str(tmp_path / "weights"))
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    img = tmp_path / "a.png"
    write_image(img, astronaut)
    res = runner.invoke(app, ["preprocess", str(img), "-o", str(tmp_path / "w"), "--landmarks", "face-alignment",
                              "--json"])
    assert res.exit_code == 1
    msg = json.loads(res.stdout)["message"]
    assert "2DFAN4-11f355bf06.pth.tar" in msg and str(tmp_path / "weights") in msg and "https://" in msg


def test_weights_command_lists_manifest(tmp_path, monkeypatch):
    monkeypatch.setenv("THEAD_WEIGHTS", str(tmp_path))
    (tmp_path / "s3fd-619a316812.pth").write_bytes(b"x")
    res = runner.invoke(app, ["weights", "--json"])
    rows = {r["name"]: r for r in map(json.loads, res.stdout.strip().splitlines())}
    assert rows["s3fd"]["present"] and not rows["fan-2d-68"]["present"]


def test_crop_frame_with_a_margin_keeps_the_picture_around_the_crop(astronaut):
    """margin m: the same crop at [m:m+S] of a (S + 2m) square, the picture (not a mirror of the crop) around it."""
    from thead.face.crop import crop_frame

    a = np.array([[0.6, 0.1, -40.0], [-0.1, 0.6, 10.0]])  # scaled, turned a little, shifted
    crop = crop_frame(astronaut, a, 128)
    wide = crop_frame(astronaut, a, 128, margin=16)
    assert wide.shape == (160, 160, 3)
    diff = np.abs(wide[16:144, 16:144].astype(int) - crop)  # (OpenCV's fixed-point bilinear: a few levels)
    assert diff.mean() < 0.5 and diff.max() <= 8
    # Above the crop lies the picture the crop cut off: the same as a crop shifted up by 16 pixels.
    up = a.copy()
    up[1, 2] += 16
    diff = np.abs(wide[:16, 16:144].astype(int) - crop_frame(astronaut, up, 128)[:16])
    assert diff.mean() < 0.5 and diff.max() <= 8


def test_picture_mask_marks_where_a_crop_runs_past_the_frame():
    """A crop whose top 20 rows (and 16-pixel margin) lie above a 100x100 frame: 0 there, 1 on the picture; the
    engine's fade of the person past it is 1 on (and below) the picture, 0 a few pixels past its edge."""
    from thead.render.compose import past_picture_fade
    from thead.face.crop import picture_mask

    a = np.array([[1.0, 0.0, 0.0], [0.0, 1.0, 20.0]])  # frame (x, y) -> crop (x, y + 20)
    m = picture_mask((100, 100, 3), a, 64, margin=16)
    assert m.shape == (96, 96)
    assert (m[:35] == 0).all() and (m[37:, 17:95] == 1).all()  # crop row r <-> canvas row r + 16
    assert (m[:, :15] == 0).all()  # left of the frame's left edge (crop x < 0)
    fade = past_picture_fade(m, 6.0)[0, 0].numpy()
    assert (fade[40:, 20:90] == 1).all() and (fade[:28] < 1e-6).all()
    assert 0.0 < fade[33, 50] < 1.0  # soft over the 6 pixels


class _WanderingTracker:
    """A landmarker whose tracker reads a face ``offset`` pixels from where its finder does and wanders by
    +-``wander`` px from pass to pass (as MediaPipe's video mode does against its still-image mode)."""

    def __init__(self, face: np.ndarray, offset: float, wander: float, lose_after: int | None = None) -> None:
        self.face, self.offset, self.wander, self.lose_after = face, offset, wander, lose_after
        self.passes = 0

    def find_faces(self, frame: np.ndarray) -> list[np.ndarray]:
        return [self.face.copy()]

    def track(self, frame: np.ndarray, previous: np.ndarray) -> np.ndarray | None:
        self.passes += 1
        if self.lose_after is not None and self.passes > self.lose_after:
            return None
        out = self.face.copy()
        out[:, 1] += self.offset + (self.wander if self.passes % 2 else -self.wander)
        return out


def test_a_found_face_is_read_by_the_tracker_on_its_first_frame():
    """The first frame's landmarks are the tracker's reading (its passes averaged), not the finder's: a clip's
    frame 0 then differs from its next frames by no finder-vs-tracker offset (each reenactment measures motion
    from it). Where the tracker loses the face at once, the found landmarks stand."""
    from thead.face.track import settle_on_track, track_face

    face = np.zeros((478, 3), np.float32)
    face[:, 0] = np.linspace(100, 200, 478)
    face[:, 1] = 150.0
    frames = [np.zeros((8, 8, 3), np.uint8)] * 4
    track = track_face(iter(frames), _WanderingTracker(face, offset=1.5, wander=0.4))
    first, rest = track.landmarks[0, :, 1], track.landmarks[1:, :, 1]
    assert np.allclose(first, 151.5, atol=1e-4)  # the tracker's reading, its wander averaged out
    assert np.abs(rest - 151.5).max() <= 0.4 + 1e-4
    lost = settle_on_track(_WanderingTracker(face, offset=1.5, wander=0.4, lose_after=0), frames[0], face)
    assert np.array_equal(lost, face)
    same = _WanderingTracker(face, offset=1.5, wander=0.4)
    same.tracks_differently = False  # a backend whose tracking is its search (FAN): no passes spent on frame 0
    track = track_face(iter(frames[:1]), same)
    assert same.passes == 0 and np.array_equal(track.landmarks[0], face)


def test_a_still_video_has_a_still_first_frame(astronaut):
    """MediaPipe on a still video of the astronaut: frame 0 lies no further from the tracked frames' median than
    the tracked frames themselves do (before, the still-image reading of frame 0 lay 0.61 px from it on average
    over the 478 points, the tracked frames 0.25 px, at most 0.46)."""
    from thead.face.landmarks import make_landmarker
    from thead.face.track import track_face

    with make_landmarker("mediapipe") as landmarker:
        track = track_face(iter([np.ascontiguousarray(astronaut)] * 8), landmarker)
    pts = track.landmarks[:, :, :2] - track.landmarks[:, :, :2].mean(1, keepdims=True)
    steady = np.median(pts[3:], axis=0)
    error = [float(np.linalg.norm(p - steady, axis=-1).mean()) for p in pts]
    assert error[0] <= max(error[3:]), error

"""thead.run: sharding (--shard), the failure log and --retry-failed, concurrent shards on one work folder, a
kill -9 mid-item, and the Ray executor against a serial run."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from thead.io import write_image
from thead.jobs.items import InputItem
from thead.run import Shard, parse_shard, read_failures, select_shard, shard_index
from thead.run.failures import FIELDS, failure_log_path
from thead.stages import PreprocessMeta

REPO = Path(__file__).resolve().parent.parent


def _thead(*args: str | Path, **kw) -> subprocess.Popen:
    env = dict(os.environ, PYTHONPATH=str(REPO), THEAD_THREADS="1")
    return subprocess.Popen([sys.executable, "-m", "thead", *map(str, args)], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, **kw)


def _run(*args: str | Path) -> tuple[int, list[dict], str]:
    proc = _thead(*args)
    out, err = proc.communicate(timeout=600)
    return proc.returncode, [json.loads(ln) for ln in out.splitlines() if ln.startswith("{")], err


def test_shards_cover_every_item_once_whatever_the_order():
    ids = [f"id{i:05d}__clip{j}" for i in range(300) for j in range(3)]
    items = [InputItem(Path(f"/data/{i}.mp4"), i) for i in ids]
    for n in (1, 2, 3, 7):
        owners: dict[str, int] = {}
        for k in range(n):
            listing = items[:]
            random.Random(k).shuffle(listing)  # every task lists the inputs in its own order
            for it in select_shard(listing, Shard(k, n)):
                assert it.item_id not in owners, f"{it.item_id} in shards {owners[it.item_id]} and {k}"
                owners[it.item_id] = k
        assert set(owners) == set(ids)
        if n > 1:  # and the hash spreads them
            sizes = np.bincount(list(owners.values()), minlength=n)
            assert sizes.min() > 0.7 * len(ids) / n
    assert shard_index("id00001__clip0", 4) == shard_index("id00001__clip0", 4)


def test_parse_shard_text_and_slurm_environment():
    assert parse_shard(None) is None
    assert parse_shard("1/4") == Shard(1, 4)
    assert parse_shard("auto", {"SLURM_ARRAY_TASK_ID": "3", "SLURM_ARRAY_TASK_COUNT": "4"}) == Shard(3, 4)
    # sbatch --array=1-4: ids 1..4, min 1 -> shards 0..3
    assert parse_shard("auto", {"SLURM_ARRAY_TASK_ID": "4", "SLURM_ARRAY_TASK_COUNT": "4",
                                "SLURM_ARRAY_TASK_MIN": "1"}) == Shard(3, 4)
    for bad in ("4/4", "-1/4", "1/0", "1", "a/b", "1/2/3"):
        with pytest.raises(ValueError):
            parse_shard(bad)
    with pytest.raises(ValueError, match="SLURM_ARRAY_TASK_ID"):
        parse_shard("auto", {})


def _photos(folder: Path, astronaut: np.ndarray, n: int) -> list[Path]:
    """``n`` small, different photos of the astronaut (shifted crops, 192x192)."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(n):
        path = folder / f"face{i:02d}.png"
        write_image(path, np.ascontiguousarray(astronaut[4 * i:4 * i + 384:2, 100 + 4 * i:100 + 4 * i + 384:2]))
        paths.append(path)
    return paths


@pytest.mark.slow
def test_two_concurrent_shard_processes_produce_every_item_once(tmp_path, astronaut):
    photos = _photos(tmp_path / "in", astronaut, 6)
    work = tmp_path / "work"
    procs = [_thead("preprocess", tmp_path / "in", "-o", work, "--shard", f"{k}/2", "--json") for k in (0, 1)]
    outs = [p.communicate(timeout=600) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], [o[1][-2000:] for o in outs]
    done = [json.loads(ln)["item"] for out, _ in outs for ln in out.splitlines() if ln.startswith("{")]
    assert sorted(done) == sorted(p.stem for p in photos)  # each item produced by exactly one process
    for p in photos:
        assert PreprocessMeta.read(work / p.stem / "preprocess") is not None
    code, rows, _ = _run("preprocess", tmp_path / "in", "-o", work, "--json")  # nothing left to do
    assert code == 0 and {r["status"] for r in rows} == {"skipped"}


@pytest.mark.slow
def test_kill_9_mid_item_leaves_nothing_trusted(tmp_path, moving_face_video):
    video = moving_face_video[0]
    work = tmp_path / "work"
    item_dir = work / video.stem
    proc = _thead("preprocess", video, "-o", work, "--json")
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and proc.poll() is None:  # wait for the stage's temporary folder
        if item_dir.is_dir() and any(p.name.startswith(".preprocess.tmp-") for p in item_dir.iterdir()):
            break
        time.sleep(0.02)
    assert proc.poll() is None, "the run ended before it could be killed mid-item"
    proc.send_signal(signal.SIGKILL)
    proc.communicate()
    assert PreprocessMeta.read(item_dir / "preprocess") is None  # nothing trusted
    assert not (item_dir / "preprocess" / "meta.json").exists()
    code, rows, err = _run("preprocess", video, "-o", work, "--json")
    assert code == 0, err[-2000:]
    assert [r["status"] for r in rows] == ["done"]
    assert PreprocessMeta.read(item_dir / "preprocess") is not None


@pytest.mark.slow
def test_failures_are_logged_and_retried(tmp_path, astronaut):
    good = _photos(tmp_path / "in", astronaut, 1)[0]
    bad = tmp_path / "in" / "broken.png"
    bad.write_bytes(b"not a png")
    work = tmp_path / "work"
    code, rows, _ = _run("preprocess", tmp_path / "in", "-o", work, "--json")
    assert code == 1
    records = read_failures(work)
    assert len(records) == 1 and tuple(records[0]) == FIELDS
    assert records[0]["command"] == "preprocess" and records[0]["item"] == "broken"
    assert records[0]["input"] == str(bad) and "broken.png" in records[0]["message"]
    write_image(bad, astronaut[::2, ::2])  # fixed: the retry redoes just that input
    code, rows, err = _run("preprocess", "--retry-failed", work, "-o", work, "--json")
    assert code == 0, err[-2000:]
    assert [(r["item"], r["status"]) for r in rows] == [("broken", "done")]
    assert failure_log_path(work).is_file()


def _ray_missing() -> str | None:
    from thead.run.ray import ray_available

    return ray_available()


@pytest.mark.slow
@pytest.mark.skipif(_ray_missing() is not None, reason=str(_ray_missing()))
def test_ray_executor_matches_a_serial_run(tmp_path, astronaut):
    _photos(tmp_path / "in", astronaut, 3)
    bad = tmp_path / "in" / "broken.png"
    bad.write_bytes(b"not a png")
    serial, ray = tmp_path / "serial", tmp_path / "ray"
    for work, extra in ((serial, []), (ray, ["--executor", "ray"])):
        code, rows, err = _run("--threads", "1", "fit-3dmm", tmp_path / "in", "-o", work, "--json", *extra)
        assert code == 1, err[-3000:]  # the broken file fails, as in a local run
        assert sorted((r["item"], r["status"]) for r in rows) == [
            ("broken", "failed"), ("face00", "done"), ("face01", "done"), ("face02", "done")]
        assert [r["item"] for r in read_failures(work)] == ["broken"]
    from safetensors import safe_open

    for i in range(3):
        a = (serial / f"face{i:02d}" / "preprocess/landmarks.npz").read_bytes()
        assert a == (ray / f"face{i:02d}" / "preprocess/landmarks.npz").read_bytes()
        # fit.safetensors: the same tensors, byte for byte, and the same metadata (safetensors writes its metadata
        # map in a random order, so even two serial runs' files differ in the header's key order)
        files = [safe_open(str(w / f"face{i:02d}" / "fit3dmm/fit.safetensors"), "np") for w in (serial, ray)]
        assert files[0].metadata() == files[1].metadata()
        assert sorted(files[0].keys()) == sorted(files[1].keys())
        for key in files[0].keys():
            assert files[0].get_tensor(key).tobytes() == files[1].get_tensor(key).tobytes(), key


@pytest.mark.slow
def test_status_counts_current_stale_failed_missing(tmp_path, astronaut):
    photos = _photos(tmp_path / "in", astronaut, 2)
    (tmp_path / "in" / "broken.png").write_bytes(b"not a png")
    work = tmp_path / "work"
    _run("preprocess", photos[0], tmp_path / "in" / "broken.png", "-o", work)
    proc = _thead("status", work, "--json", "--inputs", tmp_path / "in")
    out, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err
    stages = {s["stage"]: s for s in json.loads(out)["stages"]}
    pre = stages["preprocess"]
    assert pre["counts"] == {"current": 1, "stale": 0, "failed": 1, "missing": 1}
    assert pre["items"]["missing"] == ["face01"] and "broken.png" in pre["reasons"]["broken"]
    assert stages["fit3dmm"]["counts"]["missing"] == 3 and stages["fit3dmm"]["counts"]["failed"] == 0
    write_image(photos[0], astronaut[::3, ::3])  # the input changed: its cache is stale
    proc = _thead("status", work, "--json", "--inputs", tmp_path / "in")
    out, _ = proc.communicate(timeout=300)
    assert {s["stage"]: s for s in json.loads(out)["stages"]}["preprocess"]["items"]["stale"] == ["face00"]


def test_metadata_recipe_cuts_the_published_crops(tmp_path):
    """vox-metadata.csv rows (start/end frames at the metadata's fps, bbox in the metadata's frame size) cut
    from a synthetic 20-frame 128x96 clip whose every frame holds its index as a grey level."""
    from thead.io import VideoWriter, read_frames
    from thead.jobs.items import InputItem
    from thead.jobs.recipes import cut_crop, read_crop_metadata

    video = tmp_path / "vidA.mp4"
    with VideoWriter(video, 25.0, crf=0) as w:
        for t in range(20):
            frame = np.full((96, 128, 3), 10 * t, np.uint8)
            frame[:48, :64] = 255  # the top-left quarter white: the box (in a 256x192 frame) cuts exactly it
            w.write(frame)
    csv = tmp_path / "vox-metadata.csv"
    csv.write_text("video_id,start,end,bbox,fps,width,height,partition\n"
                   "vidA,10,20,0-0-128-96,50,256,192,train\n"  # 50 fps frames 10..19 = our frames 5..9
                   "vidA,0,4,128-96-256-192,25,256,192,test\n")
    specs = read_crop_metadata(csv)
    assert [s.name for s in specs] == ["vidA#000010#000020", "vidA#000000#000004"]
    out = tmp_path / "crops"
    res = cut_crop(InputItem(video, specs[0].name), specs[0], out, size=32)
    frames = read_frames(res.output)
    assert frames.shape == (5, 32, 32, 3) and frames.min() > 240  # the white quarter, 5 frames
    frames = read_frames(cut_crop(InputItem(video, specs[1].name), specs[1], out, size=32).output)
    assert frames.shape[0] == 4  # frames 0..3: grey levels 0, 10, 20, 30
    assert np.allclose(frames.reshape(4, -1).mean(1), [0, 10, 20, 30], atol=3)
    bad = tmp_path / "bad.csv"
    bad.write_text("video_id,start,end,bbox\nvidA,5,2,0-0-1-1\n")
    with pytest.raises(Exception, match="line 2"):
        read_crop_metadata(bad)

"""Issue 13 part 2: concurrent runs on one work folder, per-item locks, temporaries of dead processes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

from typer.testing import CliRunner

from thead.cli import app
from thead.io import write_image

runner = CliRunner()
REPO = Path(__file__).resolve().parents[1]


def _env() -> dict:
    return {**os.environ, "PYTHONPATH": str(REPO)}


def _thead(*args: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "thead", *args], env=_env(), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def _temps(work: Path) -> list[Path]:
    return [p for p in work.rglob("*") if ".tmp-" in p.name or p.name.endswith(".old")]


def test_two_concurrent_force_runs(tmp_path, moving_face_video):
    video = moving_face_video[0]
    work = tmp_path / "w"
    runs = [_thead("fit-3dmm", str(video), "-o", str(work)) for _ in range(2)]
    outs = [p.communicate(timeout=600) for p in runs]
    assert [p.returncode for p in runs] == [0, 0], outs
    runs = [_thead("preprocess", str(video), "-o", str(work), "--force", "--json") for _ in range(2)]
    outs = [p.communicate(timeout=600) for p in runs]
    assert [p.returncode for p in runs] == [0, 0], outs
    assert _temps(work) == []
    again = runner.invoke(app, ["fit-3dmm", str(work), "--json"])
    assert again.exit_code == 0, again.output


def test_second_process_waits_for_the_item(tmp_path, astronaut):
    photo = tmp_path / "face.png"
    write_image(photo, astronaut)
    work = tmp_path / "w"
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys, time; from thead.stages.store import item_lock\n"
         f"with item_lock({str(work / 'face')!r}):\n    print('held', flush=True); time.sleep(4)"],
        env=_env(), stdout=subprocess.PIPE, text=True)
    assert holder.stdout.readline().strip() == "held"
    start = time.monotonic()
    res = runner.invoke(app, ["preprocess", str(photo), "-o", str(work), "--json"])
    waited = time.monotonic() - start
    holder.wait(timeout=30)
    assert res.exit_code == 0, res.output
    assert waited > 2.0  # it waited for the holder to let go


def test_dead_processes_temporaries_are_removed(tmp_path, astronaut):
    photo = tmp_path / "face.png"
    write_image(photo, astronaut)
    work = tmp_path / "w"
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    item = work / "face"
    (item / f".preprocess.tmp-{dead.pid}-123").mkdir(parents=True)
    (item / f".preprocess.tmp-{dead.pid}-123" / "crop.mp4").write_bytes(b"half")
    (item / f".meta.json.tmp-{dead.pid}").write_text("{")
    live = item / f".fit3dmm.tmp-{os.getpid()}-7"
    live.mkdir()
    res = runner.invoke(app, ["preprocess", str(photo), "-o", str(work)])
    assert res.exit_code == 0, res.output
    assert sorted(p.name for p in item.iterdir() if ".tmp-" in p.name) == [live.name]


def test_fit_finishes_an_interrupted_swap(tmp_path, astronaut):
    photo = tmp_path / "face.png"
    write_image(photo, astronaut)
    work = tmp_path / "w"
    assert runner.invoke(app, ["fit-3dmm", str(photo), "-o", str(work)]).exit_code == 0
    fit = work / "face" / "fit3dmm"
    os.replace(fit, fit.with_name(".fit3dmm.old"))  # killed between the two renames of the swap
    res = runner.invoke(app, ["fit-3dmm", str(work), "--json"])
    assert res.exit_code == 0
    assert json.loads(res.stdout.splitlines()[0])["status"] == "skipped"
    assert (fit / "meta.json").is_file() and not fit.with_name(".fit3dmm.old").exists()

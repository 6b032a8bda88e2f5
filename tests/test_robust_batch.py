"""Issue 13 part 2: one bad item never ends a batch; damaged caches are made again; bad devices are usage errors."""

from __future__ import annotations

import json
import os
import zipfile
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from thead.cli import app
from thead.commands.common import run_batch
from thead.io import write_image
from thead.jobs.items import InputItem, ItemResult, run_item
from thead.run import FAILURE_LOG

runner = CliRunner()


def _raiser(exc: BaseException):
    def stage(item, report=None):
        raise exc
    return stage


@pytest.mark.parametrize("exc", [AssertionError("Torch not compiled with CUDA enabled"),
                                 zipfile.BadZipFile("File is not a zip file"), KeyError("pose"),
                                 TypeError("bad"), FileNotFoundError(2, "No such file or directory", "x.npz")])
def test_any_exception_is_one_failed_item(exc):
    res = run_item(InputItem(Path("clip.mp4"), "clip"), _raiser(exc))
    assert res.failed and res.message.startswith("clip.mp4")
    assert "\n" not in res.message
    assert "Traceback" in res.info["traceback"]


def test_batch_goes_on_and_logs_tracebacks(tmp_path):
    items = [InputItem(Path(f"{n}.mp4"), n) for n in ("a", "b", "c")]

    def stage(item, report):
        if item.item_id == "b":
            raise zipfile.BadZipFile("File is not a zip file")
        return ItemResult(str(item.path), item.item_id, "done")

    results = run_batch("preprocess", items, stage, workdir=tmp_path)
    assert [r.status for r in results] == ["done", "failed", "done"]
    lines = (tmp_path / FAILURE_LOG).read_text().splitlines()
    assert len(lines) == 1
    entry = json.loads(lines[0])
    assert set(entry) == {"time", "command", "item", "input", "message", "traceback"}
    assert entry["item"] == "b" and entry["command"] == "preprocess" and "BadZipFile" in entry["traceback"]


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
@pytest.mark.parametrize("command", ["fit-3dmm", "reenact", "edit", "evaluate"])
def test_cuda_without_cuda_is_a_usage_error(tmp_path, command):
    args = {"fit-3dmm": [str(tmp_path)], "reenact": ["a.jpg", "b.mp4"], "edit": ["a.jpg"],
            "evaluate": ["a.mp4", "b.mp4"]}[command]
    res = runner.invoke(app, [command, *args, "--device", "cuda"])
    assert res.exit_code == 2, res.output
    assert "CUDA is not available" in res.output


def test_unknown_device_is_a_usage_error(tmp_path):
    res = runner.invoke(app, ["fit-3dmm", str(tmp_path), "--device", "gpu0"])
    assert res.exit_code == 2


def _json_rows(output: str) -> list[dict]:
    return [json.loads(ln) for ln in output.splitlines() if ln.startswith("{")]


def test_damaged_cache_files_are_made_again(tmp_path, astronaut):
    photo = tmp_path / "face.png"
    write_image(photo, astronaut)
    work = tmp_path / "w"
    assert runner.invoke(app, ["fit-3dmm", str(photo), "-o", str(work)]).exit_code == 0
    pre = work / "face" / "preprocess"
    fit = work / "face" / "fit3dmm"
    (pre / "landmarks.npz").write_bytes(b"PK\x03\x04 damaged")
    res = runner.invoke(app, ["preprocess", str(photo), "-o", str(work), "--json"])
    assert res.exit_code == 0, res.output
    assert _json_rows(res.stdout)[0]["status"] == "done"
    assert runner.invoke(app, ["fit-3dmm", str(work), "--json"]).exit_code == 0
    (fit / "fit.safetensors").write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{broken")
    res = runner.invoke(app, ["fit-3dmm", str(work), "--json"])
    assert res.exit_code == 0, res.output
    assert _json_rows(res.stdout)[0]["status"] == "done"
    again = runner.invoke(app, ["fit-3dmm", str(work), "--json"])
    assert _json_rows(again.stdout)[0]["status"] == "skipped"


def test_inputs_that_are_not_files_say_why(tmp_path):
    from thead.jobs.items import collect_inputs

    loop = tmp_path / "loop.jpg"
    loop.symlink_to("loop.jpg")
    fifo = tmp_path / "pipe.jpg"
    os.mkfifo(fifo)
    _, failures = collect_inputs([str(loop), str(fifo), str(tmp_path / "none.jpg")], {".jpg"})
    assert [f.message.split(": ", 1)[1] for f in failures] == ["symbolic link loop", "not a regular file",
                                                              "file not found"]

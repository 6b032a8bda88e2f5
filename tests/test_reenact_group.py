"""`thead reenact --group-items`: the pairs of one source rendered as one stream of batches give the outputs that
pair-by-pair rendering gives, and a bad driver fails alone."""

from __future__ import annotations

import json

import numpy as np
from typer.testing import CliRunner

from tests.conftest import moving_face_frames, write_video
from thead.cli import app
from thead.io import iter_frames, probe_video, write_image

runner = CliRunner()


def _rows(result) -> dict[str, dict]:
    return {r["item"] or r["input"]: r for r in map(json.loads, result.stdout.strip().splitlines())}


def _psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    return float("inf") if mse == 0 else 10 * np.log10(255.0 ** 2 / mse)


def test_grouped_pairs_match_single_pairs_and_a_bad_driver_fails_alone(tmp_path, astronaut, monkeypatch):
    from thead.engines.mesh import MeshEngine

    prepares: list[int] = []
    real_prepare = MeshEngine.prepare
    monkeypatch.setattr(MeshEngine, "prepare", lambda self, *a, **k: prepares.append(1) or real_prepare(self, *a, **k))
    frames, _ = moving_face_frames(astronaut, num=20)
    drivers = tmp_path / "drivers"
    drivers.mkdir()
    write_video(drivers / "long.mp4", frames, audio=True)
    write_video(drivers / "short.mp4", frames[5:12][::-1])  # 7 frames: ends inside the first batch of 16
    (drivers / "broken.mp4").write_bytes(b"not a video")
    photo = tmp_path / "astro.png"
    write_image(photo, astronaut)
    work = tmp_path / "work"
    outs = {}
    for group in ("1", "4"):
        prepares.clear()
        out = tmp_path / f"out{group}"
        res = runner.invoke(app, ["reenact", str(photo), str(drivers), "-o", str(out), "-w", str(work), "--json",
                                  "--device", "cpu", "--group-items", group, "--batch-size", "16"])
        assert res.exit_code == 1, res.stderr  # the broken driver
        rows = _rows(res)
        assert rows["astro__long"]["status"] == "done" and rows["astro__short"]["status"] == "done"
        failed = [r for r in rows.values() if r["status"] == "failed"]
        assert len(failed) == 1 and "broken" in failed[0]["message"]
        outs[group] = out
        # Grouped: the source is prepared once and both clips go through one stream of batches (no fallback).
        assert len(prepares) == (2 if group == "1" else 1)
    for name, n in (("astro__long", 20), ("astro__short", 7)):
        a = np.stack(list(iter_frames(outs["1"] / f"{name}.mp4")))
        b = np.stack(list(iter_frames(outs["4"] / f"{name}.mp4")))
        assert len(a) == len(b) == n
        assert _psnr(a, b) > 45.0
    assert probe_video(outs["4"] / "astro__long.mp4").has_audio
    assert not probe_video(outs["4"] / "astro__short.mp4").has_audio
    # Current outputs are skipped by a grouped run too.
    res = runner.invoke(app, ["reenact", str(photo), str(drivers), "-o", str(outs["4"]), "-w", str(work), "--json",
                              "--device", "cpu", "--group-items", "4"])
    rows = _rows(res)
    assert rows["astro__long"]["status"] == "skipped" and rows["astro__short"]["status"] == "skipped"

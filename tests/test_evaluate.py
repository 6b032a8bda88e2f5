"""`thead evaluate`: known values through the whole command, pairing, mismatches, outputs."""

from __future__ import annotations

import json

import cv2
import numpy as np
import pytest
from typer.testing import CliRunner

from thead.cli import app

from conftest import moving_face_frames, write_video

runner = CliRunner()


@pytest.fixture(scope="module")
def clips(tmp_path_factory, astronaut):
    folder = tmp_path_factory.mktemp("eval")
    frames, _ = moving_face_frames(astronaut, num=20)
    ref = write_video(folder / "ref" / "clip.mp4", frames)
    same = folder / "gen" / "clip.mp4"
    same.parent.mkdir()
    same.write_bytes(ref.read_bytes())
    shift = np.float32([[1, 0, 4], [0, 1, 0]])  # 4 px to the right in the 320 px frame
    shifted = write_video(folder / "shifted.mp4", [cv2.warpAffine(f, shift, (320, 320),
                                                                  borderMode=cv2.BORDER_REFLECT_101) for f in frames])
    short = write_video(folder / "short.mp4", frames[:15])
    other_fps = write_video(folder / "fps30.mp4", frames, fps=30)
    gaps = [f if not 5 <= t < 8 else np.full_like(f, 90) for t, f in enumerate(frames)]
    with_gaps = write_video(folder / "gaps.mp4", gaps)
    return {"folder": folder, "ref": ref, "same": same, "shifted": shifted, "short": short, "fps30": other_fps,
            "gaps": with_gaps}


def _evaluate(args, tmp_path):
    out = tmp_path / "report.json"
    res = runner.invoke(app, ["evaluate", *map(str, args), "-w", str(tmp_path / "work"), "--report", str(out)])
    doc = json.loads(out.read_text()) if out.exists() else None
    return res, doc


def test_identical_videos_score_perfectly(clips, tmp_path):
    res, doc = _evaluate([clips["same"], clips["ref"], "--csim-frames", "4"], tmp_path)
    assert res.exit_code == 0, res.stderr
    m = doc["videos"][0]["metrics"]
    assert m["l1"]["mean"] == 0 and m["ssim"]["mean"] == pytest.approx(1) and m["ms_ssim"]["mean"] == pytest.approx(1)
    assert m["akd"]["mean"] == 0 and m["lmd"]["mean"] == 0 and m["aed"]["mean"] == 0 and m["apd"]["mean"] == 0
    assert m["csim"]["mean"] > 0.99 and m["csim"]["measured"] == 4
    assert doc["videos"][0]["scalars"]["avd"] == pytest.approx(0, abs=1e-6)
    assert "lpips" in doc["videos"][0]["unavailable"]  # weights absent: reported, never made up
    assert not doc["distribution"]["fid"]["available"] and "fid-inception" in doc["distribution"]["fid"]["reason"]
    assert not doc["distribution"]["fvd"]["available"]
    lines = runner.invoke(app, ["evaluate", str(clips["same"]), str(clips["ref"]), "--csim-frames", "4", "-w",
                                str(tmp_path / "work"), "--json"]).stdout.splitlines()
    rows = [json.loads(ln) for ln in lines if ln.startswith("{")]  # --json: one object per pair, as everywhere
    assert len(rows) == 1 and rows[0]["status"] == "done"
    assert rows[0]["info"]["report"]["metrics"]["l1"]["mean"] == 0


def test_fid_is_computed_when_its_weights_are_on_disk(clips, tmp_path, monkeypatch):
    """With an Inception file in the weights folder (random weights here: the value is not meaningful, but it
    is computed through the same path), the set-level FID of identical videos is 0."""
    import torch
    from safetensors.torch import save_file

    from thead.metrics.fid import InceptionV3FID
    from thead.weights import load_manifest

    torch.manual_seed(0)
    weights = tmp_path / "weights"
    weights.mkdir()
    model = InceptionV3FID()
    save_file({k: v.contiguous() for k, v in model.state_dict().items()},
              str(weights / load_manifest()["fid-inception"].file))
    monkeypatch.setenv("THEAD_WEIGHTS", str(weights))
    res, doc = _evaluate([clips["same"], clips["ref"], "--no-identity"], tmp_path)
    assert res.exit_code == 0, res.stderr
    fid = doc["distribution"]["fid"]
    assert fid["available"] and abs(fid["value"]) < 1e-3 and fid["details"]["generated_frames"] == 20


def test_shifted_copy_gives_the_expected_akd(clips, tmp_path):
    res, doc = _evaluate([clips["shifted"], clips["ref"], "--no-identity"], tmp_path)
    assert res.exit_code == 0, res.stderr
    # Both sides are cut with the reference's crop; 4 frame pixels become 4 * (256 / crop side) crop pixels.
    from thead.stages.preprocess import load_preprocess

    pre = tmp_path / "work" / "clip" / "preprocess"  # the reference under the id thead reenact gives it
    scale = float(np.sqrt(abs(np.linalg.det(load_preprocess(pre).transforms[0, :, :2]))))
    expected = 4 * scale
    akd = doc["videos"][0]["metrics"]["akd"]["mean"]
    assert akd == pytest.approx(expected, rel=0.15), (akd, expected)
    assert doc["videos"][0]["metrics"]["l1"]["mean"] > 0.005


def test_mismatches_are_reported_not_averaged(clips, tmp_path):
    res, doc = _evaluate([clips["short"], clips["ref"], "--no-identity"], tmp_path)
    assert res.exit_code == 1 and "frame counts differ: generated 15, reference 20" in res.stderr
    assert doc["videos"] == [] and len(doc["failures"]) == 1
    res, doc = _evaluate([clips["short"], clips["ref"], "--no-identity", "--align", "truncate"], tmp_path)
    assert res.exit_code == 0 and doc["videos"][0]["frames"] == 15
    assert any("truncated to 15" in n for n in doc["videos"][0]["notes"])
    res, _ = _evaluate([clips["fps30"], clips["ref"], "--no-identity"], tmp_path)
    assert res.exit_code == 1 and "frame rates differ" in res.stderr


def test_frames_without_face_are_counted_as_skipped(clips, tmp_path):
    res, doc = _evaluate([clips["gaps"], clips["ref"], "--no-identity"], tmp_path)
    assert res.exit_code == 0, res.stderr
    akd = doc["videos"][0]["metrics"]["akd"]
    assert akd["skipped"] == 3 and akd["measured"] == 17
    assert doc["videos"][0]["metrics"]["l1"]["measured"] == 20


def test_directories_csv_outputs_and_bad_files(clips, tmp_path):
    folder = clips["folder"]
    (folder / "gen" / "orphan.mp4").write_bytes(b"not a video")
    out = tmp_path / "o"
    res = runner.invoke(app, ["evaluate", str(folder / "gen"), str(folder / "ref"), "-w", str(tmp_path / "w"),
                              "--no-identity", "--csv", str(out / "r.csv"), "--plots", str(out / "plots"),
                              "--grid", str(out / "grid")])
    assert res.exit_code == 1  # the orphan has no reference
    assert "orphan" in res.stderr and "no reference" in res.stderr
    assert (out / "plots" / "clip.png").stat().st_size > 1000
    from thead.io import probe_video

    info = probe_video(out / "grid" / "clip.mp4")
    assert (info.width, info.height, info.num_frames) == (768, 256, 20)
    rows = (out / "r.csv").read_text().splitlines()
    assert rows[0].startswith("name,protocol,frames") and rows[1].startswith("clip,self,20")
    pairs = tmp_path / "pairs.csv"
    pairs.write_text(f"generated,reference\n{clips['same']},{clips['ref']}\n{folder / 'missing.mp4'},{clips['ref']}\n")
    res = runner.invoke(app, ["evaluate", "--pairs", str(pairs), "-w", str(tmp_path / "w"), "--no-identity"])
    assert res.exit_code == 1 and "missing.mp4: file not found" in res.stderr and "1 done" in res.stderr


def test_cross_identity_protocol(clips, tmp_path, astronaut):
    from thead.io import write_image

    src = tmp_path / "source.png"
    write_image(src, astronaut)
    res, doc = _evaluate([clips["same"], clips["ref"], "--source", str(src), "--csim-frames", "3"], tmp_path)
    assert res.exit_code == 0, res.stderr
    v = doc["videos"][0]
    assert v["protocol"] == "cross" and "l1" not in v["metrics"] and "apd" in v["metrics"]
    assert v["metrics"]["csim"]["mean"] > 0.9

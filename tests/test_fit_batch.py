"""Fitting several items in one solve (``fit_sequences``, ``FitBatcher``, ``thead fit-3dmm --group-items``)."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
from typer.testing import CliRunner

from tests.test_fitting import synthetic_clip
from thead.cli import app
from thead.errors import InputError
from thead.fitting import fit_sequence, fit_sequences
from thead.io import write_image
from thead.stages.fit import FitBatcher, FitParams, load_fit

runner = CliRunner()


def _close(a, b, pose_rad: float = 2e-3, expr: float = 5e-3) -> None:
    assert np.abs(a.pose[:, :3] - b.pose[:, :3]).max() < pose_rad
    assert np.abs(a.pose[:, 3:5] - b.pose[:, 3:5]).max() < 0.05  # px
    assert np.abs(a.expression - b.expression).max() < expr
    assert np.abs(a.gaze - b.gaze).max() < pose_rad
    assert np.abs(a.identity - b.identity).max() < 1e-3  # cm


def test_joint_solve_gives_each_clip_its_own_fit():
    clips = [synthetic_clip(frames=n, seed=s) for n, s in ((40, 1), (25, 2), (60, 3))]
    photo = synthetic_clip(frames=1, seed=4)
    inputs = [c["landmarks"] for c in clips] + [photo["landmarks"]]
    joint = fit_sequences(inputs, 256, [True, True, True, False], device="cpu")
    alone = [fit_sequence(x, None, 256, smooth=x.shape[0] > 1, device="cpu") for x in inputs]
    assert [f.num_frames for f in joint] == [40, 25, 60, 1]
    for j, a in zip(joint, alone):
        _close(j, a)
    # Identities differ per clip (seeded differently) and each stays its own: not an average of the batch.
    assert np.abs(joint[0].identity - joint[1].identity).max() > 0.05
    truth = [c["pose"] for c in clips]
    for fit, pose in zip(joint, truth):
        assert np.degrees(np.abs(fit.pose[:, 0] - pose[:, 0])).max() < 3.0


def test_joint_solve_names_the_bad_clip():
    good = synthetic_clip(frames=10, seed=1)["landmarks"]
    bad = np.full_like(good, np.nan)
    with pytest.raises(InputError, match="clip 1: no valid frames"):
        fit_sequences([good, bad], 256, device="cpu")
    with pytest.raises(ValueError, match="one value per clip"):
        fit_sequences([good, good], [256], device="cpu")
    assert fit_sequences([], device="cpu") == []


def _rows(result) -> dict[str, dict]:
    return {r["item"] or r["input"]: r for r in map(json.loads, result.stdout.strip().splitlines())}


@pytest.fixture(scope="module")
def work(tmp_path_factory, astronaut, moving_face_video):
    """A work folder with a video item, a photo item and a copy of the photo item whose landmarks are damaged."""
    root = tmp_path_factory.mktemp("fitbatch")
    photo = root / "astro.png"
    write_image(photo, astronaut)
    work = root / "work"
    res = runner.invoke(app, ["preprocess", str(moving_face_video[0]), str(photo), "-o", str(work)])
    assert res.exit_code == 0, res.stderr
    shutil.copytree(work / "astro", work / "broken")
    (work / "broken" / "preprocess" / "landmarks.npz").write_bytes(b"not an npz")
    return work


def test_batcher_fails_the_bad_item_alone_and_matches_single_fits(work, tmp_path):
    params = FitParams(device="cpu")
    items = [work / name / "preprocess" for name in ("astro", "broken", "moving")]
    batcher = FitBatcher(items, params, group_size=8)
    results = {}
    for d in items:
        try:
            results[d.parent.name] = batcher(d).status
        except Exception as exc:  # noqa: BLE001 - the executor turns this into a failed item
            results[d.parent.name] = f"failed: {exc}"
    assert results["astro"] == "done" and results["moving"] == "done"
    assert results["broken"].startswith("failed")
    joint = {name: load_fit(work / name) for name in ("astro", "moving")}
    # The same items fitted one by one (a copy, so the caches above stay).
    single = tmp_path / "single"
    for name in ("astro", "moving"):
        shutil.copytree(work / name, single / name, ignore=shutil.ignore_patterns("fit3dmm"))
    res = runner.invoke(app, ["fit-3dmm", str(single), "--group-items", "1", "--device", "cpu", "--json"])
    assert res.exit_code == 0, res.stderr
    for name in ("astro", "moving"):
        _close(joint[name], load_fit(single / name))
    # A second batcher finds the caches current and fits nothing.
    again = FitBatcher(items[::2], params, group_size=8)
    assert [again(d).status for d in items[::2]] == ["skipped", "skipped"]


def test_cli_groups_items_and_reports_each(work):
    res = runner.invoke(app, ["fit-3dmm", str(work), "--group-items", "4", "--device", "cpu", "--json", "--force"])
    assert res.exit_code == 1  # the damaged item failed
    rows = _rows(res)
    assert rows["astro"]["status"] == "done" and rows["moving"]["status"] == "done"
    assert rows["broken"]["status"] == "failed" and "broken" in rows["broken"]["message"]
    assert load_fit(work / "moving").num_frames == 30

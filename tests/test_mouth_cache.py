"""The driver's mouth pictures: cut to the mouth, cached per driver, the same render as from the whole crops."""

from __future__ import annotations

import numpy as np
import pytest

from thead.engines.mesh import MeshEngine
from thead.engines.motion import transfer_motion
from thead.face.topology import LIPS_INNER, LIPS_OUTER
from thead.io import write_image
from thead.jobs import reenact as reenact_job
from thead.jobs.reenact import (MOUTH_CACHE, driver_mouth_frames, held_mouth_frames, mouth_boxes,
                                prepare_source)
from thead.stages import FitParams, PreprocessParams, ensure
from thead.stages.item import InputItem


@pytest.fixture(scope="module")
def faces(tmp_path_factory, astronaut, moving_face_video):
    work = tmp_path_factory.mktemp("mouthwork")
    src_path = work / "astro.png"
    write_image(src_path, astronaut)
    src = ensure(InputItem(src_path, "astro"), work, PreprocessParams(), FitParams())
    drv = ensure(InputItem(moving_face_video[0], "moving"), work, PreprocessParams(), FitParams())
    return src, drv


def test_mouth_boxes_hold_the_lips_and_the_skin_sampled_around_them():
    size, T = 256, 5
    rng = np.random.default_rng(0)
    lm = np.zeros((T, 478, 3), np.float32)
    lm[:, LIPS_OUTER, :2] = rng.uniform(100, 150, (T, len(LIPS_OUTER), 2)) + np.arange(T)[:, None, None] * 8
    lm[:, LIPS_INNER, :2] = lm[:, LIPS_OUTER, :2] * 0.9 + 12.5  # inside, towards the middle
    valid = np.array([True, True, False, True, True])
    lm[2] = np.nan  # a faceless frame
    corners, (h, w) = mouth_boxes(lm, valid, size)
    assert corners.shape == (T, 2) and 0 < h < size and 0 < w < size
    for t in np.flatnonzero(valid):
        outer, inner = lm[t, LIPS_OUTER, :2], lm[t, LIPS_INNER, :2]
        pts = np.concatenate([outer, inner, 3 * outer - 2 * inner])
        x0, y0 = corners[t]
        assert (pts[:, 0] >= x0 + 2).all() and (pts[:, 0] <= x0 + w - 2).all()
        assert (pts[:, 1] >= y0 + 2).all() and (pts[:, 1] <= y0 + h - 2).all()
    assert (corners >= 0).all() and (corners[:, 0] + w <= size).all() and (corners[:, 1] + h <= size).all()
    whole = mouth_boxes(lm, np.zeros(T, bool), size)
    assert whole[1] == (size, size) and not whole[0].any()


def test_cut_mouths_render_as_the_whole_crops_and_a_second_render_decodes_nothing(faces, monkeypatch):
    src, drv = faces
    (drv.item_dir / f"{MOUTH_CACHE}.npz").unlink(missing_ok=True)
    engine = MeshEngine()
    prepared = prepare_source(engine, src, 0)
    targets = transfer_motion(src.fit, drv.fit, "relative", 1.0, 1.0, True, True, source_frame=0)

    def frames(mouth):
        return np.concatenate([b.frames for b in engine.render_stream(prepared, targets, mouth)])

    whole = frames(held_mouth_frames(drv.crops(), drv.crop_landmarks, drv.valid))
    first = frames(driver_mouth_frames(drv))  # cuts while streaming, then writes the cache
    assert (drv.item_dir / f"{MOUTH_CACHE}.npz").is_file()
    patch = next(driver_mouth_frames(drv))[0]
    assert patch.shape[0] * patch.shape[1] < 0.5 * drv.crop_size ** 2

    def no_decoding(*args, **kwargs):
        raise AssertionError("the driver was decoded although its mouths are cached")

    monkeypatch.setattr(type(drv), "crops", no_decoding)
    second = frames(driver_mouth_frames(drv))
    # The same pixels are read; the maps' float rounding differs (a shifted origin): at most one level, rarely.
    for other in (first, second):
        diff = np.abs(whole.astype(int) - other)
        assert diff.max() <= 1 and (diff > 0).mean() < 1e-3


def test_a_stale_or_short_mouth_cache_is_remade_and_long_clips_are_not_kept(faces, monkeypatch):
    src, drv = faces
    path = drv.item_dir / f"{MOUTH_CACHE}.npz"
    from thead.stages.store import write_keyed_arrays

    write_keyed_arrays(path, "another driver's key", {"patches": np.zeros((2, 4, 4, 3), np.uint8)})
    got = list(driver_mouth_frames(drv))
    assert len(got) == drv.num_frames and got[0][0].shape[:2] != (4, 4)
    fresh = np.load(path)
    assert fresh["patches"].shape[0] == drv.num_frames
    path.unlink()
    monkeypatch.setattr(reenact_job, "MOUTH_PATCH_MAX_FRAMES", drv.num_frames - 1)
    assert len(list(driver_mouth_frames(drv))) == drv.num_frames
    assert not path.exists()

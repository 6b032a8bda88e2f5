"""The stage layer: typed stage meta, Face records (one decode, crops cut from the original), optional crops."""

from __future__ import annotations

import json

import numpy as np
import pytest

from thead.face.crop import crop_frame
from thead.io import read_frames, write_image
from thead.stages import (FitParams, InputItem, PreprocessMeta, PreprocessParams, ensure, load_preprocess,
                          preprocess_item)
from thead.stages.store import META_NAME, read_meta


@pytest.fixture(scope="module")
def photo(tmp_path_factory, astronaut):
    path = tmp_path_factory.mktemp("photo") / "astro.png"
    write_image(path, astronaut)
    return path


def test_meta_is_typed_and_anything_unexpected_is_stale(tmp_path, photo):
    item = InputItem(photo, "astro")
    assert preprocess_item(item, tmp_path, PreprocessParams()).status == "done"
    stage = tmp_path / "astro" / "preprocess"
    data = read_meta(stage)
    meta = PreprocessMeta.from_json(data)
    assert meta is not None and meta.kind == "image" and meta.crop_size == 256 and meta.crop == "crop.png"
    assert isinstance(meta.params, PreprocessParams) and meta.params.size == 256
    assert PreprocessMeta.from_json(meta.to_json()) == meta
    stale = [dict(data, surprise=1), {k: v for k, v in data.items() if k != "crop_size"}, dict(data, crop_size="256"),
             dict(data, stage_version=data["stage_version"] + 1), dict(data, params=dict(data["params"], new=1)),
             ["not", "a", "dict"]]
    for bad in stale:
        assert PreprocessMeta.from_json(bad) is None
        (stage / META_NAME).write_text(json.dumps(bad))
        # A meta.json the code does not know is a stale cache: made again, never a crash.
        assert preprocess_item(item, tmp_path, PreprocessParams()).status == "done"
        assert PreprocessMeta.read(stage) is not None
    assert preprocess_item(item, tmp_path, PreprocessParams()).status == "skipped"


def test_face_decodes_its_original_once_and_cuts_crops_from_it(tmp_path, moving_face_video):
    path, _, frames = moving_face_video
    face = ensure(InputItem(path, "moving"), tmp_path, PreprocessParams(), FitParams())
    assert face.path == path and face.is_video and face.num_frames == 30 and face.fps == 25.0 and face.has_audio
    assert face.fit.num_frames == 30 and face.key == read_meta(tmp_path / "moving" / "fit3dmm")["key"]
    decoded = read_frames(path)
    source = face.crop(0)
    surroundings, picture = face.surroundings(0, 32)
    assert surroundings.shape == (320, 320, 3) and picture.shape == (320, 320)
    crops = list(face.crops())
    assert face.frames.decodes == 1  # frame 0 was kept, the stream went on from there
    assert len(crops) == 30
    np.testing.assert_array_equal(source, crop_frame(decoded[0], face.transforms[0], 256))
    np.testing.assert_array_equal(crops[17], crop_frame(decoded[17], face.transforms[17], 256))
    assert np.abs(surroundings[32:-32, 32:-32].astype(int) - source).mean() < 0.5  # OpenCV's fixed-point rounding
    # The crop video is an H.264 copy of the same crops; the record's are the lossless ones.
    stored = read_frames(load_preprocess(tmp_path / "moving" / "preprocess").crop_path)
    assert 0 < np.abs(stored[17].astype(int) - crops[17]).mean() < 3
    np.testing.assert_array_equal(face.original(2), decoded[2])  # passed by the stream, not kept: decoded again
    assert face.frames.decodes == 2
    face.original(2), face.original(2)
    assert face.frames.decodes == 2
    with pytest.raises(Exception, match="outside the input's 30 frame"):
        face.original(30)


def test_crop_file_is_an_extra_output(tmp_path, moving_face_video):
    path = moving_face_video[0]
    item = InputItem(path, "moving")
    stage = tmp_path / "moving" / "preprocess"
    assert preprocess_item(item, tmp_path, PreprocessParams(write_crop=False)).status == "done"
    meta = PreprocessMeta.read(stage)
    assert meta.crop is None and not (stage / "crop.mp4").exists()
    landmarks = (stage / "landmarks.npz").read_bytes()
    # Asking for the crop again keeps the result (same key, same landmarks) and adds the crop to it.
    res = preprocess_item(item, tmp_path, PreprocessParams())
    assert res.status == "done" and "crops added" in res.message
    after = PreprocessMeta.read(stage)
    assert after.key == meta.key and after.crop == "crop.mp4" and (stage / "landmarks.npz").read_bytes() == landmarks
    assert len(read_frames(stage / "crop.mp4")) == 30
    # A result with the crop serves a caller that does not need it.
    assert preprocess_item(item, tmp_path, PreprocessParams(write_crop=False)).status == "skipped"

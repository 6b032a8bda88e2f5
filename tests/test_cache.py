"""Stage cache: keys, atomic stage folders, recovery of an interrupted swap."""

from __future__ import annotations

import json

import pytest

from thead.stages.store import StageInfo, file_digest, item_id_for, read_meta, stage_is_current, stage_key, write_stage

STAGE = StageInfo("demo", 1)


def test_key_depends_on_inputs_params_and_version(tmp_path):
    a = stage_key(STAGE, {"src": "x"}, {"size": 256})
    assert a == stage_key(STAGE, {"src": "x"}, {"size": 256})
    assert a != stage_key(STAGE, {"src": "y"}, {"size": 256})
    assert a != stage_key(STAGE, {"src": "x"}, {"size": 512})
    assert a != stage_key(StageInfo("demo", 2), {"src": "x"}, {"size": 256})
    f = tmp_path / "f.bin"
    f.write_bytes(b"abc")
    d1 = file_digest(f)
    f.write_bytes(b"abd")
    assert file_digest(f) != d1


def test_write_stage_then_current(tmp_path):
    folder = tmp_path / "item" / "demo"
    with write_stage(folder, STAGE, "k1", {"note": 1}) as tmp:
        (tmp / "data.txt").write_text("one")
    assert stage_is_current(folder, "k1") and not stage_is_current(folder, "k2")
    meta = read_meta(folder)
    assert meta["note"] == 1 and meta["stage"] == "demo" and meta["key"] == "k1"
    assert [p.name for p in folder.parent.iterdir()] == ["demo"]  # no temporaries left


def test_crash_keeps_previous_result(tmp_path):
    folder = tmp_path / "item" / "demo"
    with write_stage(folder, STAGE, "k1", {}) as tmp:
        (tmp / "data.txt").write_text("old")
    with pytest.raises(KeyboardInterrupt):
        with write_stage(folder, STAGE, "k2", {}) as tmp:
            (tmp / "data.txt").write_text("half")
            raise KeyboardInterrupt
    assert stage_is_current(folder, "k1")
    assert (folder / "data.txt").read_text() == "old"
    assert [p.name for p in folder.parent.iterdir()] == ["demo"]


def test_folder_without_meta_is_not_trusted(tmp_path):
    folder = tmp_path / "item" / "demo"
    folder.mkdir(parents=True)
    (folder / "data.txt").write_text("partial")
    assert read_meta(folder) is None and not stage_is_current(folder, "k")
    (folder / "meta.json").write_text('{"key": "k", "stage"')  # truncated JSON
    assert read_meta(folder) is None


def test_interrupted_swap_is_recovered(tmp_path):
    """A kill between 'set the old result aside' and 'move the new one in' must not lose the old result."""
    folder = tmp_path / "item" / "demo"
    with write_stage(folder, STAGE, "k1", {}) as tmp:
        (tmp / "data.txt").write_text("old")
    folder.rename(folder.with_name(".demo.old"))  # the state right after the first rename
    assert stage_is_current(folder, "k1")
    assert json.loads((folder / "meta.json").read_text())["key"] == "k1"


def test_item_ids(tmp_path):
    assert item_id_for(tmp_path / "raw" / "id01" / "clip 1.mp4", tmp_path / "raw") == "id01__clip_1"
    assert item_id_for(tmp_path / "x" / "a.jpg") == "a"

"""The command's fast path: decode and encode overlapping the render (prefetch, the encoder's feeder thread), the
source's person matte cached with its stages, and the same engine in the command and in the engine benchmark."""

from __future__ import annotations

import importlib.util
import json
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from thead.cli import app
from thead.io import VideoWriter, read_frames, read_image, write_image
from thead.runtime import prefetch
from thead.stages.store import read_keyed_arrays, write_keyed_arrays

runner = CliRunner()
REPO = Path(__file__).resolve().parent.parent


# ------------------------------------------------------------------------------------------------ prefetch
def test_prefetch_keeps_order_and_reads_ahead_in_another_thread():
    seen: list[str] = []

    def items():
        for i in range(50):
            seen.append(threading.current_thread().name)
            yield i

    assert list(prefetch(items(), depth=3, name="bg")) == list(range(50))
    assert set(seen) == {"bg"}


def test_prefetch_raises_the_producers_error_at_its_item():
    def items():
        yield 1
        yield 2
        raise ValueError("bad frame 3")

    got = []
    with pytest.raises(ValueError, match="bad frame 3"):
        for x in prefetch(items(), depth=1):
            got.append(x)
    assert got == [1, 2]


def test_prefetch_closed_early_stops_its_thread_and_closes_the_source():
    closed = threading.Event()

    def items():
        try:
            for i in range(10**9):
                yield i
        finally:
            closed.set()

    gen = prefetch(items(), depth=2, name="thead-test-prefetch")
    assert next(gen) == 0
    gen.close()
    assert closed.wait(5)
    time.sleep(0.05)
    assert not any(t.name == "thead-test-prefetch" for t in threading.enumerate())


# ------------------------------------------------------------------------------------------------ encoder feeder
def _frames(n: int = 12, size: int = 64) -> list[np.ndarray]:
    rng = np.random.default_rng(0)
    base = rng.integers(0, 255, (size, size, 3), dtype=np.uint8)
    return [np.roll(base, 3 * i, axis=1) for i in range(n)]


def test_video_writer_feeder_thread_writes_the_same_video(tmp_path):
    """Frames queued to the feeder thread encode to the same frames as frames written straight into the pipe,
    even when the caller reuses its array after ``write``."""
    frames = _frames()
    with VideoWriter(tmp_path / "direct.mp4", 25) as w:
        for f in frames:
            w.write(f)
    buf = np.empty_like(frames[0])
    with VideoWriter(tmp_path / "queued.mp4", 25, queue_frames=3) as w:
        for f in frames:
            buf[:] = f
            w.write(buf)
            buf[:] = 0  # reused by the caller: the queued frame must be a copy
        assert w.frames_written == len(frames)
    np.testing.assert_array_equal(read_frames(tmp_path / "queued.mp4"), read_frames(tmp_path / "direct.mp4"))
    assert not list(tmp_path.glob(".*tmp*"))


def test_video_writer_feeder_reports_a_dead_encoder(tmp_path):
    w = VideoWriter(tmp_path / "x.mp4", 25, queue_frames=2)
    frames = _frames(4)
    w.write(frames[0])
    w._proc.kill()  # the encoder dies
    w._proc.wait()
    with pytest.raises(OSError, match="x.mp4"):
        for _ in range(200):
            w.write(frames[1])
        w.close()
    assert not (tmp_path / "x.mp4").exists() and not list(tmp_path.glob(".*tmp*"))


# ------------------------------------------------------------------------------------------------ keyed arrays
def test_keyed_arrays_stale_key_ignored(tmp_path):
    path = tmp_path / "item" / "m.npz"
    write_keyed_arrays(path, "k1", {"matte": np.arange(6, dtype=np.float32).reshape(2, 3)})
    np.testing.assert_array_equal(read_keyed_arrays(path, "k1")["matte"], np.arange(6).reshape(2, 3))
    assert read_keyed_arrays(path, "k2") is None
    path.write_bytes(b"not an npz")
    assert read_keyed_arrays(path, "k1") is None
    assert read_keyed_arrays(tmp_path / "missing.npz", "k1") is None
    assert [p.name for p in path.parent.iterdir()] == ["m.npz"]


# ------------------------------------------------------------------------------------------------ matte cache
def _reenact(photo, out, work, *extra) -> dict:
    res = runner.invoke(app, ["reenact", str(photo), str(photo), "-o", str(out), "-w", str(work), "--json", *extra])
    assert res.exit_code == 0, res.stderr
    return json.loads(res.stdout.strip().splitlines()[0])


def test_source_matte_cached_with_the_source_and_render_unchanged(tmp_path, astronaut, monkeypatch):
    """A second job on the same source skips the person segmentation (the matte comes from the item folder) and
    renders the same pixels; a stale matte file (another key) is ignored and replaced."""
    import thead.engines.mesh.engine as engine_mod

    photo, work = tmp_path / "astro.png", tmp_path / "work"
    write_image(photo, astronaut)
    calls = {"n": 0}
    real = engine_mod.person_mask

    def counting(image):
        calls["n"] += 1
        return real(image)

    monkeypatch.setattr(engine_mod, "person_mask", counting)
    first = _reenact(photo, tmp_path / "o1", work)
    assert calls["n"] == 2  # the crop and its surroundings
    cache = work / "astro" / "source_matte.npz"
    assert cache.is_file()
    second = _reenact(photo, tmp_path / "o2", work, "--force")
    assert calls["n"] == 2  # no segmentation: the cached matte
    np.testing.assert_array_equal(read_image(second["output"]), read_image(first["output"]))
    # Without the cache (segmenting again) the pixels are the same as with it.
    cache.unlink()
    third = _reenact(photo, tmp_path / "o3", work, "--force")
    assert calls["n"] == 4
    np.testing.assert_array_equal(read_image(third["output"]), read_image(first["output"]))
    # A matte of another key (another engine, frame or source) is stale: segmented again and replaced.
    write_keyed_arrays(cache, "stale", {"matte": np.zeros((4, 4), np.float32)})
    fourth = _reenact(photo, tmp_path / "o4", work, "--force")
    assert calls["n"] == 6
    np.testing.assert_array_equal(read_image(fourth["output"]), read_image(first["output"]))
    assert read_keyed_arrays(cache, "stale") is None


# ------------------------------------------------------------------------------------------------ same engine
def _load_bench_reenact():
    spec = importlib.util.spec_from_file_location("bench_reenact_under_test", REPO / "bench" / "bench_reenact.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up
    spec.loader.exec_module(module)
    return module


def test_command_and_engine_bench_render_with_the_same_engine(tmp_path, astronaut, monkeypatch):
    """``thead reenact`` and bench/bench_reenact.py's speed section build the engine the same way (settings key,
    batch size, device) and prepare the source on the same canvas (surroundings of the same pad)."""
    from thead.engines.mesh import MeshEngine

    calls: list[dict] = []
    real_prepare = MeshEngine.prepare

    def recording(self, image, landmarks, fit, *a, **k):
        surroundings = k.get("surroundings")
        calls.append({"key": self.key, "pad": self.canvas_pad(image.shape[0]), "batch": self.batch_size,
                      "device": str(self.device), "config": self.config,
                      "surroundings": None if surroundings is None else surroundings.shape})
        return real_prepare(self, image, landmarks, fit, *a, **k)

    monkeypatch.setattr(MeshEngine, "prepare", recording)
    photo = tmp_path / "astro.png"
    write_image(photo, astronaut)
    res = runner.invoke(app, ["reenact", str(photo), str(photo), "-o", str(tmp_path / "o"), "-w",
                              str(tmp_path / "w"), "--json"])
    assert res.exit_code == 0, res.stderr
    command = calls.pop()
    bench = _load_bench_reenact()
    engine = bench.speed_engine("cpu", symmetry=True)
    # The bench's prepare helper, on the command's crop and picture.
    from thead.face.crop import crop_frame
    from thead.stages import FitParams, InputItem, PreprocessParams, ensure

    face = ensure(InputItem(photo, "astro"), tmp_path / "w", PreprocessParams(write_crop=False), FitParams())
    bench.prepare(engine, face.crop(0), face.crop_landmarks[0], face.fit, face.original(0), face.transforms[0])
    speed = calls.pop()
    assert speed == command
    assert command["surroundings"] is not None
    assert np.array_equal(crop_frame(face.original(0), face.transforms[0], face.crop_size), face.crop(0))

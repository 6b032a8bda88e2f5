"""CSIM: dlib embedder on real faces, NaN accounting for frames without a face, and the ArcFace ONNX path."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

from thead.errors import InputError, ToolMissingError
from thead.metrics import DlibFaceEmbedder, aggregate, csim


@pytest.fixture(scope="module")
def embedder() -> DlibFaceEmbedder:
    return DlibFaceEmbedder()


def test_identical_faces_score_one(embedder: DlibFaceEmbedder, astronaut: np.ndarray) -> None:
    result = csim(astronaut, astronaut, embedder)
    assert result.available and result.per_frame.shape == (1,)
    assert result.value == pytest.approx(1.0, abs=1e-6)
    assert result.details["embedder"] == "dlib_resnet_v1" and result.details["skipped"] == 0


def test_frames_without_face_are_nan_and_counted(embedder: DlibFaceEmbedder, astronaut: np.ndarray) -> None:
    blank = np.full_like(astronaut, 127)
    frames = np.stack([astronaut, blank, astronaut])
    result = csim(frames, astronaut, embedder)  # one reference image for every frame
    assert np.isnan(result.per_frame[1]) and np.allclose(result.per_frame[[0, 2]], 1.0, atol=1e-6)
    assert result.count == 2 and result.details["no_face_generated"] == 1 and result.details["skipped"] == 1
    summary = aggregate(result.per_frame)
    assert (summary.measured, summary.skipped) == (2, 1)
    nothing = csim(blank, astronaut, embedder)
    assert not nothing.available and "no face" in nothing.reason and nothing.value is None


def test_length_mismatch_refused(embedder: DlibFaceEmbedder, astronaut: np.ndarray) -> None:
    emb = embedder.embed(np.stack([astronaut] * 3))
    with pytest.raises(ValueError, match="align"):
        csim(emb, embedder.embed(np.stack([astronaut] * 2)))


@pytest.mark.shared_data
def test_same_person_scores_above_different_people(embedder: DlibFaceEmbedder, shared_data: Path) -> None:
    from thead.io import iter_frames, read_image

    def frames_0_60(name: str) -> np.ndarray:
        picked = [f.copy() for i, f in enumerate(iter_frames(shared_data / "videos" / name, max_frames=61))
                  if i in (0, 60)]
        return np.stack(picked)

    videos = {v: embedder.embed(frames_0_60(f"{v}.mp4")) for v in ("d3", "WDA_AlexandriaOcasioCortez_000", "d0")}
    photos = {p: embedder.embed(read_image(shared_data / "images" / p)) for p in ("happy.png", "s1.jpg")}
    for emb in [*videos.values(), *photos.values()]:
        assert emb.found.all()
    same = [csim(_first(e), _second(e)).value for e in videos.values()]
    d3, aoc, d0 = videos["d3"], videos["WDA_AlexandriaOcasioCortez_000"], videos["d0"]
    different = [
        csim(_first(d3), _first(aoc)).value,
        csim(_first(d3), _first(d0)).value,
        csim(_first(aoc), _first(d0)).value,
        csim(photos["happy.png"], photos["s1.jpg"]).value,
        csim(photos["happy.png"], _first(aoc)).value,
        csim(photos["s1.jpg"], _first(d3)).value,
    ]
    assert min(same) > 0.95
    assert min(same) > max(different) + 0.04, (same, different)


def _first(e):  # noqa: ANN001, ANN202
    from thead.metrics import Embeddings

    return Embeddings(e.vectors[:1], e.found[:1], e.embedder)


def _second(e):  # noqa: ANN001, ANN202
    from thead.metrics import Embeddings

    return Embeddings(e.vectors[1:2], e.found[1:2], e.embedder)


# ------------------------------------------------------------------------------------- ArcFace ONNX (optional)

def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        if n:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def _field(num: int, value: int | bytes | str) -> bytes:
    if isinstance(value, int):
        return _varint(num << 3) + _varint(value)
    data = value.encode() if isinstance(value, str) else value
    return _varint(num << 3 | 2) + _varint(len(data)) + data


def _value_info(name: str, dims: list[int | str]) -> bytes:
    shape = b"".join(_field(1, _field(2, d) if isinstance(d, str) else _field(1, d)) for d in dims)
    tensor_type = _field(1, 1) + _field(2, shape)  # elem_type FLOAT
    return _field(1, name) + _field(2, _field(1, tensor_type))


def _tiny_embedding_onnx(path: Path) -> None:
    """An ONNX 'face embedder' built by hand: 14x14 average pooling of a 112x112 chip, flattened (192-D)."""
    ints = lambda name, vals: _field(1, name) + _field(20, 7) + b"".join(_field(8, v) for v in vals)  # noqa: E731
    pool = (_field(1, "data") + _field(2, "pooled") + _field(3, "pool") + _field(4, "AveragePool")
            + _field(5, ints("kernel_shape", [14, 14])) + _field(5, ints("strides", [14, 14])))
    flat = (_field(1, "pooled") + _field(2, "embedding") + _field(3, "flat") + _field(4, "Flatten")
            + _field(5, _field(1, "axis") + _field(20, 2) + _field(3, 1)))
    graph = (_field(1, pool) + _field(1, flat) + _field(2, "tiny")
             + _field(11, _value_info("data", ["N", 3, 112, 112])) + _field(12, _value_info("embedding", ["N", 192])))
    model = _field(1, 8) + _field(8, _field(1, "") + _field(2, 13)) + _field(7, graph)
    path.write_bytes(model)


def test_arcface_onnx_embedder(tmp_path: Path, astronaut: np.ndarray) -> None:
    pytest.importorskip("onnxruntime")
    from thead.metrics import ArcFaceOnnxEmbedder

    model_path = tmp_path / "tiny_arcface.onnx"
    _tiny_embedding_onnx(model_path)
    emb = ArcFaceOnnxEmbedder(model_path)
    assert emb.size == 112 and emb.fixed_batch is None
    frames = np.stack([astronaut, np.full_like(astronaut, 127)])
    out = emb.embed(frames)
    assert out.vectors.shape == (2, 192) and out.found.tolist() == [True, False]
    chip_mean = np.nanmean(out.vectors[0])  # the chip is a face, not the black border
    assert -0.9 < chip_mean < 0.9
    result = csim(frames, astronaut, emb)
    assert result.per_frame[0] == pytest.approx(1.0, abs=1e-6) and np.isnan(result.per_frame[1])
    assert result.details["embedder"].startswith("arcface_onnx")


def test_arcface_errors(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from thead.metrics import ArcFaceOnnxEmbedder

    if "onnxruntime" in sys.modules or _has_onnxruntime():
        with pytest.raises(InputError, match="not found"):
            ArcFaceOnnxEmbedder(tmp_path / "absent.onnx")
        bad = tmp_path / "bad.onnx"
        bad.write_bytes(b"not a model")
        with pytest.raises(InputError, match="not a loadable"):
            ArcFaceOnnxEmbedder(bad)
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # as if not installed
    with pytest.raises(ToolMissingError, match="pip install onnxruntime"):
        ArcFaceOnnxEmbedder(tmp_path / "absent.onnx")


def _has_onnxruntime() -> bool:
    import importlib.util

    return importlib.util.find_spec("onnxruntime") is not None

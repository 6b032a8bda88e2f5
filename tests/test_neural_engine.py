"""The neural engine at inference (``thead.engines.neural.engine.NeuralEngine``) and its CLI plumbing.

An untrained ``base="mesh"`` model (its residual starts at zero) must give the mesh engine's frames; a model whose
residual is not zero must still give the source back for the source's own parameters (the network runs before the
restore of unchanged pixels); ``thead reenact --engine neural --weights PATH`` renders every frame with a saved
tiny model; missing, unknown or tampered weights stop the command with one line and no output; output keys name the
engine and the weights. CPU, the astronaut photo and a synthetic moving clip (no shared media).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from thead.cli import app
from thead.engines import MeshEngine, edit_params
from thead.engines.neural.config import NeuralConfig
from thead.engines.neural.engine import BASE_TURN_GAIN, NeuralEngine, neural_key
from thead.engines.neural.model import NeuralGenerator
from thead.fitting import fit_image
from thead.metrics import psnr

S = 256
runner = CliRunner()


@pytest.fixture(autouse=True)
def weights_folder(tmp_path, monkeypatch):
    """A private weights folder (the registry of trained models lives there)."""
    monkeypatch.setenv("THEAD_WEIGHTS", str(tmp_path / "weights"))
    return tmp_path / "weights"


@pytest.fixture(scope="module")
def astro(tmp_path_factory, astronaut):
    """The astronaut's crop [S, S, 3], landmarks [478, 3] and fit, through the preprocess stage."""
    from thead.io import read_image, write_image
    from thead.jobs.items import InputItem
    from thead.stages.preprocess import PreprocessParams, load_preprocess, preprocess_item

    work = tmp_path_factory.mktemp("neural")
    write_image(work / "astronaut.png", astronaut)
    preprocess_item(InputItem(work / "astronaut.png", "astronaut"), work, PreprocessParams(size=S))
    pre = load_preprocess(work / "astronaut" / "preprocess")
    crop, lm = read_image(pre.crop_path), pre.crop_landmarks[0]
    return crop, lm, fit_image(lm, S)


def tiny(seed: int = 0) -> NeuralGenerator:
    torch.manual_seed(seed)
    config = NeuralConfig.preset("tiny")
    assert config.base == "mesh"
    return NeuralGenerator(config).eval()


def perturbed(seed: int = 1) -> NeuralGenerator:
    """A tiny model whose every parameter is moved off its initial value (its residual is no longer zero)."""
    model = tiny(seed)
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.2 * torch.randn(p.shape, generator=gen))
    return model


def targets_of(fit):
    return edit_params(fit, yaw=15.0, expression={"smile": 0.6})


def test_untrained_model_gives_the_mesh_frames(astro):
    crop, lm, fit = astro
    mesh = MeshEngine("cpu", batch_size=4, turn_gain=BASE_TURN_GAIN)  # the neural engine's base
    neural = NeuralEngine(tiny(), "0" * 64, "cpu", batch_size=4)
    targets = targets_of(fit)
    expected = mesh.render(mesh.prepare(crop, lm, fit), targets)
    got = neural.render(neural.prepare(crop, lm, fit), targets)
    assert got.shape == expected.shape == (len(targets), S, S, 3)
    assert float(psnr(got, expected).min()) > 40.0
    # ... and the frames moved: the comparison is not of two copies of the source.
    assert float(psnr(expected, np.repeat(crop[None], len(targets), 0)).max()) < 35.0


def test_source_parameters_give_the_source_back_and_a_trained_residual_changes_frames(astro):
    crop, lm, fit = astro
    engine = NeuralEngine(perturbed(), "1" * 64, "cpu", batch_size=4)
    prepared = engine.prepare(crop, lm, fit)
    same = engine.render_full(prepared, prepared.params)
    assert np.abs(same.frames[0].astype(int) - crop.astype(int)).max() <= 2
    assert float(same.changed.max()) < 0.05  # nothing to paste back
    mesh = MeshEngine("cpu", batch_size=4)
    targets = targets_of(fit)
    moved = engine.render(prepared, targets)
    assert float(psnr(moved, mesh.render(mesh.prepare(crop, lm, fit), targets)).mean()) < 40.0
    # Batching does not change the frames.
    one = NeuralEngine(engine.generator, "1" * 64, "cpu", batch_size=1)
    assert np.abs(one.render(one.prepare(crop, lm, fit), targets).astype(int) - moved.astype(int)).max() <= 1


def test_the_neural_engine_s_base_is_drawn_at_the_asked_turn():
    """The network learns the real frames' pose from the target meshes: its base render is drawn with no turn
    gain (``BASE_TURN_GAIN``), at inference and for the training bases alike, and its cache key names those
    mesh settings; the mesh engine alone draws a turn further (``MeshConfig.turn_gain``)."""
    from thead.engines.mesh import MeshConfig
    from thead.jobs.render import RenderOptions, engine_key, neural_base_engine

    assert BASE_TURN_GAIN == (1.0, 1.0, 1.0) and MeshConfig().turn_gain != BASE_TURN_GAIN
    engine = NeuralEngine(tiny(), "0" * 64, "cpu", batch_size=4)
    assert engine.config == MeshConfig(batch_size=4, turn_gain=BASE_TURN_GAIN)
    base = neural_base_engine(RenderOptions(device="cpu", batch_size=4, symmetry=False))
    assert base.config == MeshConfig(batch_size=4, symmetry=False, turn_gain=BASE_TURN_GAIN)
    mesh_digest = MeshConfig(turn_gain=BASE_TURN_GAIN).digest()
    assert engine.key == neural_key("0" * 64, engine.net_config.digest(), mesh_digest, True)
    assert engine_key(RenderOptions()) == MeshConfig().digest() != mesh_digest


def test_engine_key_names_engine_weights_and_precision(tmp_path):
    from thead.engines.neural.store import save_neural
    from thead.jobs.render import RenderOptions, engine_key

    a, b = tmp_path / "a.safetensors", tmp_path / "b.safetensors"
    save_neural(tiny(0), a)
    save_neural(perturbed(3), b)
    keys = {engine_key(RenderOptions()), engine_key(RenderOptions(engine="neural", weights=str(a))),
            engine_key(RenderOptions(engine="neural", weights=str(b))),
            engine_key(RenderOptions(engine="neural", weights=str(a), half=False))}
    assert len(keys) == 4


# ------------------------------------------------------------------------------------------------------ CLI
@pytest.fixture(scope="module")
def inputs(tmp_path_factory, astronaut, moving_face_video):
    from thead.io import write_image

    folder = tmp_path_factory.mktemp("neural_cli")
    write_image(folder / "astro.png", astronaut)
    return folder / "astro.png", moving_face_video[0]


def test_reenact_with_a_saved_tiny_model(inputs, tmp_path):
    from thead.engines.neural.store import save_neural
    from thead.io import probe_video

    weights = tmp_path / "tiny.safetensors"
    save_neural(perturbed(), weights)
    source, driver = inputs
    out, work = tmp_path / "out", tmp_path / "work"
    base = ["reenact", str(source), str(driver), "-w", str(work), "--batch-size", "8"]
    res = runner.invoke(app, base + ["-o", str(out / "neural.mp4"), "--engine", "neural", "--weights", str(weights)])
    assert res.exit_code == 0, res.stderr
    info = probe_video(out / "neural.mp4")
    assert info.num_frames == 30 and (info.width, info.height) == (S, S)
    res = runner.invoke(app, base + ["-o", str(out / "mesh.mp4")])
    assert res.exit_code == 0, res.stderr
    from thead.io import read_frames

    neural, mesh = read_frames(out / "neural.mp4"), read_frames(out / "mesh.mp4")
    assert neural.shape == mesh.shape and float(psnr(neural, mesh).mean()) < 40.0  # the network did render


@pytest.mark.parametrize("case", ["no weights", "missing file", "unknown name", "tampered", "weights without neural"])
def test_bad_weights_stop_with_one_line_and_no_output(case, inputs, tmp_path):
    from thead.engines.neural.store import register_neural, save_neural

    source, driver = inputs
    out = tmp_path / "out"
    args = ["reenact", str(source), str(driver), "-o", str(out), "-w", str(tmp_path / "work"), "--engine", "neural"]
    if case == "missing file":
        args += ["--weights", str(tmp_path / "absent.safetensors")]
    elif case == "unknown name":
        args += ["--weights", "nobody-trained-this"]
    elif case == "tampered":
        path = tmp_path / "tiny.safetensors"
        sha = save_neural(tiny(), path)
        register_neural("tiny-test", path, sha)
        data = bytearray(path.read_bytes())
        data[-1] ^= 0xFF  # a flipped bit in the last tensor's data
        path.write_bytes(bytes(data))
        args += ["--weights", "tiny-test"]
    elif case == "weights without neural":
        args = args[:-2] + ["--weights", "x.safetensors"]
    res = runner.invoke(app, args)
    assert res.exit_code != 0
    lines = [line for line in res.stderr.strip().splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error"), res.stderr
    if case == "tampered":
        assert "sha256" in lines[0]
    elif case != "weights without neural":
        assert "thead train neural" in lines[0] or "weights" in lines[0]
    assert not out.exists() or not any(out.iterdir())


def test_weights_command_lists_trained_models(tmp_path):
    import json

    from thead.engines.neural.store import register_neural, save_neural

    path = tmp_path / "tiny.safetensors"
    sha = save_neural(tiny(), path)
    register_neural("tiny-listed", path, sha, {"steps": 3})
    res = runner.invoke(app, ["weights", "--json"])
    assert res.exit_code == 0, res.stderr
    rows = [json.loads(line) for line in res.stdout.strip().splitlines()]
    neural = [r for r in rows if r.get("kind") == "neural"]
    assert [r["name"] for r in neural] == ["tiny-listed"] and neural[0]["sha256"] == sha


def test_a_model_retrained_under_the_same_name_is_loaded_again(weights_folder):
    # load_weights keeps loaded models per process; a name must not keep serving the file it first stood for.
    import os

    from thead.engines.neural.store import neural_dir, register_neural, save_neural
    from thead.jobs.render import RenderOptions, load_weights

    path = neural_dir() / "me.safetensors"
    path.parent.mkdir(parents=True, exist_ok=True)
    register_neural("me", path, save_neural(tiny(0), path))
    first, sha_first = load_weights(RenderOptions(engine="neural", weights="me", device="cpu"))
    st = path.stat()
    register_neural("me", path, save_neural(perturbed(5), path))  # retrained: same name, same file name
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000))  # even within the clock's resolution
    second, sha_second = load_weights(RenderOptions(engine="neural", weights="me", device="cpu"))
    assert sha_second != sha_first and second is not first
    assert not all(torch.equal(a, b) for a, b in zip(first.state_dict().values(), second.state_dict().values()))

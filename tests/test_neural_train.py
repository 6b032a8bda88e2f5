"""The neural engine's model, weights store and trainer (issue 14): tiny models on a synthetic clip, CPU."""

from __future__ import annotations

import json
import os
import socket

import numpy as np
import pytest
import torch

from thead.engines.neural import (COND_CHANNELS, NeuralConfig, NeuralGenerator, condition_maps, load_neural,
                                  register_neural, save_neural)
from thead.engines.neural.data import ClipData, PairDataset
from thead.engines.neural.train import CHECKPOINT, LOSS_LOG, TrainOptions, train_neural
from thead.errors import BadWeightsError, MissingWeightsError

SIZE = 64


def synthetic_clip(image: np.ndarray, frames: int = 12, size: int = SIZE) -> ClipData:
    """A clip of ``image`` shifting and zooming, with the mean face mesh moving with it (S = ``size``).

    Bases are the targets blurred and darkened (a stand-in for an imperfect mesh render)."""
    import cv2

    from thead.facemodel.model import load_face_model

    mean = load_face_model().mean_shape.astype(np.float32)  # cm, y up
    base_img = cv2.resize(image, (size, size), interpolation=cv2.INTER_AREA)
    targets, verts = [], []
    for t in range(frames):
        a = t / max(frames - 1, 1)
        m = np.array([[1 + 0.1 * a, 0, 4 * a], [0, 1 + 0.1 * a, -3 * a]], np.float32)
        targets.append(cv2.warpAffine(base_img, m, (size, size), borderMode=cv2.BORDER_REFLECT_101))
        v = mean * np.float32([1.8, -1.8, 1.8]) * (1 + 0.1 * a) + np.float32([size / 2 + 4 * a, size / 2 - 3 * a, 0])
        verts.append(v)
    targets, verts = np.stack(targets), np.stack(verts)
    bases = np.stack([cv2.GaussianBlur(t, (0, 0), 2.0) for t in targets]).astype(np.float32) * 0.8
    return ClipData(name="synthetic", sources=targets[:1], source_vertices=verts[:1], source_frames=np.zeros(1, np.int64),
                    targets=targets, target_landmarks=verts, target_vertices=verts[None], bases=bases.astype(np.uint8)[None],
                    frames=np.arange(frames, dtype=np.int64))


@pytest.fixture(scope="module")
def clip(astronaut) -> ClipData:
    return synthetic_clip(astronaut[:300, 100:400])


def tiny(base: str = "none") -> NeuralConfig:
    return NeuralConfig.preset("tiny").replace(base=base)


def quick(**kw) -> TrainOptions:
    args = dict(steps=4, batch_size=2, lr=2e-3, adversarial=False, checkpoint_every=2, sample_every=0, device="cpu")
    args.update(kw)
    return TrainOptions(**args)


def _log(run) -> list[dict]:
    return [json.loads(x) for x in (run / LOSS_LOG).read_text().splitlines()]


def test_condition_maps_cover_the_face_with_unit_normals(clip):
    maps = condition_maps(torch.from_numpy(clip.target_vertices[0, :2]), SIZE, SIZE)
    assert maps.shape == (2, COND_CHANNELS, SIZE, SIZE)
    cover = maps[:, 6] > 0
    assert 0.1 < cover.float().mean() < 0.9
    assert torch.all(maps[:, :, ~cover[0]][0] == 0)
    norms = maps[:, 3:6].norm(dim=1)[cover]
    assert torch.allclose(norms, torch.ones_like(norms), atol=1e-3)
    assert maps[:, :3][:, :, cover[0]].min() >= 0 and maps[:, :3].max() <= 1


def test_untrained_mesh_model_returns_the_base_exactly():
    torch.manual_seed(0)
    model = NeuralGenerator(tiny("mesh")).eval()
    src, base = torch.rand(2, 3, SIZE, SIZE), torch.rand(2, 3, SIZE, SIZE)
    cond = torch.rand(2, COND_CHANNELS, SIZE, SIZE)
    with torch.no_grad():
        assert torch.equal(model(src, cond, cond, base), base)
    with pytest.raises(ValueError, match="base must be"):
        model(src, cond, cond)


def test_tiny_model_loss_falls(clip, tmp_path):
    torch.manual_seed(0)
    res = train_neural(tiny("none"), [clip], tmp_path / "run", quick(steps=24, batch_size=2, checkpoint_every=0))
    l1 = [r["l1"] for r in _log(tmp_path / "run")]
    assert res["steps"] == 24 and len(l1) == 24
    assert np.mean(l1[-5:]) < 0.7 * np.mean(l1[:5]), l1


def test_mesh_base_training_improves_on_the_base(clip, tmp_path):
    res = train_neural(tiny("mesh"), [clip], tmp_path / "run", quick(steps=20, batch_size=2, checkpoint_every=0))
    from thead.engines.neural.train import evaluate_clip

    m = evaluate_clip(res["model"], clip)
    assert m["l1"] < m["base_l1"], m


def test_save_load_round_trip_is_bit_identical(clip, tmp_path, monkeypatch):
    monkeypatch.setenv("THEAD_WEIGHTS", str(tmp_path / "w"))
    res = train_neural(tiny("mesh"), [clip], tmp_path / "run", quick(steps=3))
    path = tmp_path / "w" / "neural" / "m.safetensors"
    sha = save_neural(res["model"], path, {"steps": 3})
    register_neural("m", path, sha)
    loaded, sha2 = load_neural("m")
    assert sha2 == sha and loaded.config == res["model"].config
    batch = next(iter(torch.utils.data.DataLoader(PairDataset([clip]), batch_size=3)))
    args = (batch["source"], batch["source_cond"], batch["target_cond"], batch["base"])
    with torch.no_grad():
        a, b = res["model"].eval()(*args), loaded(*args)
    assert torch.equal(a, b) and not torch.equal(a, batch["base"])
    again, _ = load_neural(path)  # by path: no registry check
    with torch.no_grad():
        assert torch.equal(again(*args), a)


def test_resume_continues_the_step_count(clip, tmp_path):
    run = tmp_path / "run"
    first = train_neural(tiny(), [clip], run, quick(steps=4))
    assert first["resumed_from"] is None and [r["step"] for r in _log(run)] == [1, 2, 3, 4]
    # a run killed after logging step 5 but before its next checkpoint: the rerun starts again from step 4
    with open(run / LOSS_LOG, "a") as fh:
        fh.write(json.dumps({"step": 5, "l1": 9.0}) + "\n")
    second = train_neural(tiny(), [clip], run, quick(steps=7))
    assert second["resumed_from"] == 4 and second["steps"] == 7
    steps = [r["step"] for r in _log(run)]
    assert steps == [1, 2, 3, 4, 5, 6, 7] and all(r["l1"] != 9.0 for r in _log(run))
    assert torch.load(run / CHECKPOINT, weights_only=True)["step"] == 7
    with pytest.raises(Exception, match="another model config"):
        train_neural(tiny("mesh"), [clip], run, quick(steps=8))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _ddp_worker(rank: int, world: int, port: int, clip: ClipData, run: str) -> None:
    os.environ.update(RANK=str(rank), WORLD_SIZE=str(world), LOCAL_RANK=str(rank), MASTER_ADDR="127.0.0.1",
                      MASTER_PORT=str(port))
    torch.set_num_threads(1)
    import torch.distributed as dist

    try:
        train_neural(tiny("mesh"), [clip], run, quick(steps=3, adversarial=True, checkpoint_every=0))
    finally:
        if dist.is_initialized():
            dist.destroy_process_group()


def test_two_process_ddp_on_cpu(clip, tmp_path):
    import torch.multiprocessing as mp

    run = tmp_path / "ddp"
    mp.spawn(_ddp_worker, args=(2, _free_port(), clip, str(run)), nprocs=2, join=True)
    assert [r["step"] for r in _log(run)] == [1, 2, 3]
    ckpt = torch.load(run / CHECKPOINT, weights_only=True)
    assert ckpt["step"] == 3 and "discriminator" in ckpt
    assert not any(k.startswith("module.") for k in ckpt["generator"])


def test_missing_and_changed_weights_give_one_line_messages(tmp_path, monkeypatch):
    monkeypatch.setenv("THEAD_WEIGHTS", str(tmp_path))
    with pytest.raises(MissingWeightsError) as err:
        load_neural("nobody")
    assert str(err.value) == ("no neural weights 'nobody': train them with `thead train neural VIDEOS -o nobody` "
                              "(or pass --weights PATH)")
    path = tmp_path / "neural" / "x.safetensors"
    sha = save_neural(NeuralGenerator(tiny()), path)
    register_neural("x", path, sha)
    data = bytearray(path.read_bytes())
    data[-1] ^= 1
    path.write_bytes(bytes(data))
    with pytest.raises(BadWeightsError, match="changed since they were registered") as err:
        load_neural("x")
    assert "\n" not in str(err.value)
    other = tmp_path / "other.safetensors"
    from safetensors.torch import save_file

    save_file({"w": torch.zeros(1)}, str(other), metadata={"format": "thead-neural-1",
                                                           "config": json.dumps(tiny().to_dict())})
    with pytest.raises(BadWeightsError, match="do not match the model"):
        load_neural(other)


def test_config_round_trip_and_presets():
    for name in ("tiny", "base", "512"):
        c = NeuralConfig.preset(name)
        assert NeuralConfig.from_dict(c.to_dict()) == c and c.digest() == NeuralConfig.from_dict(c.to_dict()).digest()
    assert NeuralConfig.preset("base").size == 256 and NeuralConfig.preset("512").size == 512
    assert NeuralConfig().digest() != NeuralConfig(base="none").digest()
    with pytest.raises(ValueError):
        NeuralConfig(size=100)


def test_condition_maps_rasterised_up_front_are_the_ones_each_item_makes(clip):
    # Batched up front (the maps fit the cache) and item by item (a cache of 0 bytes): the same tensors.
    up_front, per_item = PairDataset([clip, clip]), PairDataset([clip, clip], cache_bytes=0)
    assert up_front.cached and not per_item.cached and len(up_front) == len(per_item) == 2 * len(clip.targets)
    for i in (0, 5, len(up_front) - 1):
        a, b = up_front[i], per_item[i]
        assert a.keys() == b.keys()
        for key in a:
            assert torch.equal(a[key], b[key]), key
    assert up_front[3]["target_cond"].abs().sum() > 0 and not torch.equal(up_front[3]["target_cond"],
                                                                          up_front[4]["target_cond"])


def _posed_mean_face(size: int, yaw: float, roll: float) -> torch.Tensor:
    """[1, 478, 3] the mean face turned by ``yaw`` and tilted by ``roll`` (radians), off-centre in a crop."""
    from thead.facemodel.model import load_face_model

    cy, sy, cr, sr = np.cos(yaw), np.sin(yaw), np.cos(roll), np.sin(roll)
    rot = np.array([[cr, -sr, 0], [sr, cr, 0], [0, 0, 1]]) @ np.array([[cy, 0, sy], [0, 1, 0], [-sy, 0, cy]])
    v = (load_face_model().mean_shape @ rot.T) * np.float32([3, -3, 3]) + np.float32([size / 2 + 7, size / 2 + 3, 50])
    return torch.tensor(v, dtype=torch.float32)[None]


def test_mirrored_condition_maps_are_the_maps_of_the_mirrored_mesh():
    # Flipping a mesh's maps left-right (x code and normal x mirrored) must give the maps of the mesh mirrored about
    # the crop's centre with its vertices relabelled by the face model's mirror table: what the flip augmentation
    # feeds the network has to be what the mirrored person's mesh would give. The normals only match once the
    # triangles are consistently wound (MediaPipe's rebuilt triangles and the right-eye fill were wound either way:
    # their 99th-percentile normal error was 1.36).
    from thead.engines.neural.condition import mirror_condition
    from thead.facemodel.model import load_face_model

    size = 96
    mirror = torch.as_tensor(load_face_model().mirror)
    for yaw, roll in ((0.45, 0.2), (-0.3, -0.1)):
        v = _posed_mean_face(size, yaw, roll)
        m = v.clone()
        m[..., 0] = size - m[..., 0]
        flipped, direct = mirror_condition(condition_maps(v, size, size)), condition_maps(m[:, mirror], size, size)
        assert torch.equal(flipped[:, 6], direct[:, 6])
        cover = direct[0, 6] > 0
        assert cover.sum() > 1000
        code = (flipped[0, :3] - direct[0, :3])[:, cover].abs()
        assert code.max() < 0.02 and code.mean() < 1e-4, (code.mean(), code.max())
        normal = (flipped[0, 3:6] - direct[0, 3:6])[:, cover].norm(dim=0)
        assert torch.quantile(normal, 0.99) < 0.05 and normal.mean() < 0.005, (normal.mean(), normal.max())
        # the naive flip (no channel mirrored) is far off: the test can tell
        assert (condition_maps(v, size, size).flip(-1)[0, 0] - direct[0, 0])[cover].abs().mean() > 0.1


def test_mirror_pairs_flips_the_chosen_items_only_and_twice_is_identity(clip):
    from thead.engines.neural.data import flip_mask, mirror_pairs

    batch = next(iter(torch.utils.data.DataLoader(PairDataset([clip]), batch_size=4)))
    mask = torch.tensor([True, False, True, False])
    out = mirror_pairs(batch, mask)
    for key in ("source", "base", "target", "face_mask", "mouth_mask"):
        assert torch.equal(out[key][0], batch[key][0].flip(-1)) and torch.equal(out[key][1], batch[key][1]), key
    assert torch.equal(out["target_cond"][1], batch["target_cond"][1])
    assert torch.equal(out["target_cond"][2, 3], -batch["target_cond"][2, 3].flip(-1))
    again = mirror_pairs(out, mask)
    for key in batch:
        assert torch.allclose(again[key], batch[key], atol=1e-6), key
    # the draw: a function of (seed, rank, step) only, about the asked share
    a = flip_mask(4000, 0.5, seed=3, step=17)
    assert torch.equal(a, flip_mask(4000, 0.5, seed=3, step=17)) and not torch.equal(a, flip_mask(4000, 0.5, 3, 18))
    assert 0.45 < a.float().mean() < 0.55 and not flip_mask(8, 0.0, 3, 1).any()


def test_flip_augmentation_is_reproducible_and_changes_training(clip, tmp_path):
    runs = {name: train_neural(tiny("mesh"), [clip], tmp_path / name, quick(steps=3, flip=p))
            for name, p in (("a", 0.5), ("b", 0.5), ("none", 0.0))}
    la, lb, ln = (_log(tmp_path / n) for n in ("a", "b", "none"))
    assert [r["l1"] for r in la] == [r["l1"] for r in lb]
    assert [r["l1"] for r in la] != [r["l1"] for r in ln]
    assert runs["a"]["steps"] == 3


def test_gradient_loss_charges_blur_not_a_brightness_shift(clip, tmp_path):
    from thead.engines.neural.losses import gradient_l1

    sharp = torch.from_numpy(clip.targets[:2]).permute(0, 3, 1, 2).float() / 255
    blurred = torch.nn.functional.avg_pool2d(sharp, 3, 1, 1, count_include_pad=False)
    brighter = (sharp + 0.05).clamp(0, 1)
    assert gradient_l1(sharp, sharp) == 0
    # a plain L1 ranks the blur as the smaller error; the gradient term ranks it as the larger one
    assert (blurred - sharp).abs().mean() < (brighter - sharp).abs().mean()
    assert gradient_l1(blurred, sharp) > 3 * gradient_l1(brighter, sharp)
    # and the trainer adds it (logged) when it has a weight
    train_neural(tiny("mesh"), [clip], tmp_path / "run", quick(steps=2, gradient=0.5))
    assert all(r["gradient"] > 0 for r in _log(tmp_path / "run"))


def test_train_neural_command_defaults_are_the_trainers():
    # `thead train neural` (what the GPU protocol runs) must train with TrainOptions' defaults
    import inspect

    from thead.commands.train import neural

    params = inspect.signature(neural).parameters
    defaults = TrainOptions()
    for flag, field in (("flip", "flip"), ("ema", "ema"), ("gradient_weight", "gradient"), ("mouth_weight", "mouth_weight"),
                        ("batch_size", "batch_size"), ("lr", "lr"), ("adversarial", "adversarial")):
        assert params[flag].default.default == getattr(defaults, field), flag


def test_ema_model_is_the_moving_average_and_survives_a_resume(clip, tmp_path):
    run = tmp_path / "run"
    res = train_neural(tiny("mesh"), [clip], run, quick(steps=3, ema=0.9))
    ckpt = torch.load(run / CHECKPOINT, weights_only=True)
    assert set(ckpt["ema"]) == set(ckpt["generator"])
    returned = res["model"].state_dict()
    assert all(torch.equal(returned[k].cpu(), ckpt["ema"][k]) for k in returned)
    # the average lags the trained weights: the zero-initialised last layer moved less
    assert 0 < ckpt["ema"]["to_rgb.weight"].abs().sum() < ckpt["generator"]["to_rgb.weight"].abs().sum()
    again = train_neural(tiny("mesh"), [clip], run, quick(steps=5, ema=0.9))
    assert again["resumed_from"] == 3
    straight = train_neural(tiny("mesh"), [clip], tmp_path / "straight", quick(steps=5, ema=0.9))
    a, b = again["model"].state_dict(), straight["model"].state_dict()
    assert all(torch.allclose(a[k], b[k], atol=1e-6) for k in a)

"""LPIPS / FID modules: structure, safetensors loading via the manifest, and the 'unavailable' path.

Real weights cannot ship, so the architectures are built with random weights, saved to safetensors in a
temporary weights folder (THEAD_WEIGHTS) and loaded back through ``require_weights``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

from thead.metrics import fid, frechet_distance, fvd, lpips
from thead.metrics.fid import (
    FEATURE_DIM,
    InceptionV3FID,
    feature_statistics,
    frechet_distance_from_features,
    inception_features,
    load_inception,
)
from thead.metrics.lpips import LPIPSAlex, load_lpips
from thead.weights import load_manifest


def _randomise(model: torch.nn.Module, seed: int) -> dict[str, torch.Tensor]:
    """Random weights that keep activations alive through the network (He-scaled convs, near-identity BN)."""
    gen = torch.Generator().manual_seed(seed)
    state = {}
    for k, v in model.state_dict().items():
        if k.endswith("num_batches_tracked"):
            state[k] = v.clone()
        elif k.endswith("running_var"):
            state[k] = torch.rand(v.shape, generator=gen) * 0.2 + 0.9
        elif k.endswith("running_mean"):
            state[k] = torch.randn(v.shape, generator=gen) * 0.05
        elif v.ndim == 4:
            fan_in = v.shape[1] * v.shape[2] * v.shape[3]
            state[k] = torch.randn(v.shape, generator=gen) * (2.0 / fan_in) ** 0.5
        elif k.endswith("bn.weight"):
            state[k] = 1.0 + 0.1 * torch.randn(v.shape, generator=gen)
        else:
            state[k] = torch.randn(v.shape, generator=gen) * 0.05
    return state


@pytest.fixture()
def empty_weights(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    folder = tmp_path / "weights"
    folder.mkdir()
    monkeypatch.setenv("THEAD_WEIGHTS", str(folder))
    return folder


def _frames(n: int, seed: int, size: int = 64) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, size=(n, size, size, 3), dtype=np.uint8)


def test_manifest_entries() -> None:
    manifest = load_manifest()
    for name in ("lpips-alex", "fid-inception"):
        entry = manifest[name]
        assert entry.file.endswith(".safetensors") and entry.url.startswith("https://")
        assert "tools/convert_weights.py" in entry.note


def test_missing_weights_give_unavailable(empty_weights: Path) -> None:
    frames = _frames(2, 0)
    for result in (lpips(frames, frames), fid(frames, frames)):
        assert not result.available and result.value is None and result.per_frame is None
        assert "not on disk" in result.reason and "tools/convert_weights.py" in result.reason
    result = fvd()
    assert not result.available and "I3D" in result.reason


def test_lpips_module_loads_and_scores(empty_weights: Path) -> None:
    model = LPIPSAlex()
    state = _randomise(model, 1)
    state = {k: v.abs() if k.startswith("lin") else v for k, v in state.items()}  # LPIPS weights are >= 0
    state["classifier.1.weight"] = torch.zeros(2, 2)  # extra keys of the public checkpoint are ignored
    save_file(state, str(empty_weights / load_manifest()["lpips-alex"].file))
    loaded = load_lpips()
    assert torch.equal(loaded.features[0].weight, state["features.0.weight"])
    frames, other = _frames(3, 2), _frames(3, 3)
    same = lpips(frames, frames)
    assert same.available and same.per_frame.shape == (3,) and np.allclose(same.per_frame, 0)
    diff = lpips(frames, other)
    assert diff.available and np.all(diff.per_frame > 0) and diff.count == 3


def test_lpips_rejects_malformed_file(empty_weights: Path) -> None:
    save_file({"features.0.weight": torch.zeros(1)}, str(empty_weights / load_manifest()["lpips-alex"].file))
    result = lpips(_frames(1, 0), _frames(1, 0))
    assert not result.available and "not a valid" in result.reason


def test_fid_module_loads_and_identical_sets_score_zero(empty_weights: Path) -> None:
    model = InceptionV3FID()
    assert sum(p.numel() for p in model.parameters()) == 21_785_568  # torchvision Inception3 trunk, no fc/aux
    state = _randomise(model, 4)
    state["fc.weight"] = torch.zeros(1008, 2048)  # the public checkpoint's classifier is ignored
    save_file(state, str(empty_weights / load_manifest()["fid-inception"].file))
    net = load_inception()
    a, b = _frames(3, 5), _frames(3, 6)
    fa = inception_features(a, net)
    assert fa.shape == (3, FEATURE_DIM) and np.isfinite(fa).all()
    fb = inception_features(iter(list(b)), net, batch_size=2)  # streamed frame by frame
    same = fid(a, a, method="lowrank")
    assert same.available and same.details["generated_frames"] == 3 and "note" in same.details
    differ = frechet_distance_from_features(fa, fb)
    assert differ > 0.01 and abs(same.value) < 1e-3 * differ


def test_frechet_methods_agree() -> None:
    rng = np.random.default_rng(7)
    x, y = rng.normal(size=(200, 32)), rng.normal(0.3, 1.2, size=(150, 32))
    mx, sx = feature_statistics(x)
    my, sy = feature_statistics(y)
    a = frechet_distance(mx, sx, my, sy, method="sqrtm")
    b = frechet_distance(mx, sx, my, sy, method="eigh")
    assert a > 1 and abs(a - b) < 1e-6 * a
    assert abs(frechet_distance_from_features(x, y) - a) < 1e-6 * a
    few_x, few_y = x[:5] + 0.0, y[:4] + 0.0  # rank-deficient covariances: the low-rank route is exact
    c = frechet_distance(*feature_statistics(few_x), *feature_statistics(few_y), method="eigh")
    assert abs(frechet_distance_from_features(few_x, few_y) - c) < 1e-6 * c
    assert abs(frechet_distance(mx, sx, mx, sx)) < 1e-6
    # Known closed form for 1-D: (m1 - m2)^2 + (s1 - s2)^2.
    assert np.isclose(frechet_distance(np.array([1.0]), np.array([[4.0]]), np.array([0.0]), np.array([[1.0]])), 2.0)


def test_convert_cli_roundtrip(tmp_path: Path) -> None:
    import importlib.util

    script = Path(__file__).resolve().parent.parent / "tools" / "convert_weights.py"
    spec = importlib.util.spec_from_file_location("convert_weights", script)
    tool = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tool)
    main = tool.main

    model = LPIPSAlex()
    state = _randomise(model, 8)
    state = {k: v.abs() if k.startswith("lin") else v for k, v in state.items()}  # LPIPS heads are >= 0
    alex = {k: v for k, v in state.items() if k.startswith("features.")}
    alex["classifier.1.weight"] = torch.zeros(4096, 9216)[:2, :2].clone()
    torch.save(alex, tmp_path / "alexnet.pth")
    torch.save({k: v for k, v in state.items() if k.startswith("lin")}, tmp_path / "alex_lin.pth")
    out = tmp_path / "lpips_alex.safetensors"
    # Random stand-ins for the published checkpoints: their digests differ, so only --allow-unverified converts.
    args = ["lpips", str(tmp_path / "alexnet.pth"), str(tmp_path / "alex_lin.pth"), str(out)]
    assert main(args) == 1 and not out.exists()
    assert main(args + ["--allow-unverified"]) == 0
    reloaded = LPIPSAlex.from_file(out)
    assert torch.equal(reloaded.lin2.model[1].weight, state["lin2.model.1.weight"])

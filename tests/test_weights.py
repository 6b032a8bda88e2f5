"""Weights files: digests enforced, unverified files loud, symbolic links resolved once, no unpickling of code,
and no metric from weights that cannot be the published ones (issue 13, "Weights: trust nothing unchecked").

The published files cannot be downloaded here, so digests are exercised with small files whose digests the tests
put into a patched manifest; the shipped manifest is checked for form and for agreement with the hash prefixes
in the file names.
"""

from __future__ import annotations

import copy
import hashlib
import json
import logging
import os
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import save_file
from typer.testing import CliRunner

import thead.weights as W
from thead.cli import app
from thead.errors import BadWeightsError, MissingWeightsError
from thead.weights import WeightsEntry, hash_prefix_of, load_conversion_inputs, load_manifest

runner = CliRunner()


@pytest.fixture()
def weights_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    folder = tmp_path / "weights"
    folder.mkdir()
    monkeypatch.setenv("THEAD_WEIGHTS", str(folder))
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))  # no stray hub checkpoints
    W.clear_model_cache()
    yield folder
    W.clear_model_cache()


def _pin(monkeypatch: pytest.MonkeyPatch, **digests: str) -> None:
    """Patch the manifest so that entry NAME (underscores for dashes) carries the given sha256 (the test files'
    digests cannot agree with the published names' prefixes, so the entry's own validation is bypassed)."""
    manifest = dict(load_manifest())
    for key, digest in digests.items():
        name = key.replace("_", "-")
        manifest[name] = entry = copy.copy(manifest[name])
        object.__setattr__(entry, "sha256", digest)
        object.__setattr__(entry, "unverified", "")
    monkeypatch.setattr(W, "load_manifest", lambda: manifest)
    monkeypatch.setattr("thead.commands.weights.load_manifest", lambda: manifest)


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


# ------------------------------------------------------------------------------------------------ the manifest
def test_manifest_digests_are_filled_or_marked_and_agree_with_file_names() -> None:
    entries = list(load_manifest().values()) + list(load_conversion_inputs().values())
    for e in entries:
        assert (len(e.sha256) == 64) != bool(e.unverified), e.name
        if hash_prefix_of(e.file):
            assert e.sha256.startswith(hash_prefix_of(e.file)), e.name
    manifest = load_manifest()
    assert manifest["s3fd"].sha256.startswith("619a316812") and manifest["fan-2d-68"].sha256.startswith("11f355bf06")
    for name in ("lpips-alex", "fid-inception"):  # made locally by the converters: no published digest
        assert not manifest[name].sha256 and "convert" in manifest[name].unverified
    inputs = load_conversion_inputs()
    assert {i.for_ for i in inputs.values()} == {"lpips-alex", "fid-inception"}
    assert inputs["alexnet-imagenet"].sha256.startswith("7be5be79")
    assert inputs["fid-inception-pth"].sha256.startswith("6726825d")


def test_manifest_entries_without_a_digest_or_reason_or_with_a_wrong_prefix_are_rejected() -> None:
    with pytest.raises(ValueError, match="exactly one of sha256"):
        WeightsEntry(name="x", file="x.pth", url="u")
    with pytest.raises(ValueError, match="disagrees with the hash prefix"):
        WeightsEntry(name="x", file="x-abcdef12.pth", url="u", sha256="0" * 64)
    assert hash_prefix_of("2DFAN4-11f355bf06.pth.tar") == "11f355bf06" and hash_prefix_of("alex.pth") == ""


# ------------------------------------------------------------------------------------------------ digests
def test_random_bytes_named_like_s3fd_are_refused_with_file_expected_and_got(weights_folder: Path) -> None:
    f = weights_folder / "s3fd-619a316812.pth"
    f.write_bytes(os.urandom(4096))
    with pytest.raises(BadWeightsError) as info:
        W.require_weights("s3fd")
    msg = str(info.value)
    assert "\n" not in msg and str(f) in msg and "sha256 mismatch" in msg
    assert f"expected {load_manifest()['s3fd'].sha256}" in msg and f"got {_sha(f)}" in msg
    assert isinstance(info.value, MissingWeightsError)  # reported wherever missing weights are


def test_unverified_files_warn_every_time_they_are_used(weights_folder: Path, caplog) -> None:
    f = weights_folder / load_manifest()["lpips-alex"].file
    f.write_bytes(b"anything")
    with caplog.at_level(logging.WARNING, logger="thead.weights"):
        for _ in range(2):
            checked = W.read_weights("lpips-alex")
    lines = [r.getMessage() for r in caplog.records if "UNVERIFIED" in r.getMessage()]
    assert len(lines) == 2 and all(str(f) in line and "lpips-alex" in line for line in lines)
    assert not checked.verified and checked.data == b"anything"


def test_symlinks_are_resolved_and_the_resolved_file_is_the_one_checked(weights_folder: Path, tmp_path: Path,
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    real = tmp_path / "elsewhere" / "s3fd.bin"
    real.parent.mkdir()
    real.write_bytes(b"the checked bytes")
    _pin(monkeypatch, s3fd=_sha(real))
    (weights_folder / "s3fd-619a316812.pth").symlink_to(real)
    checked = W.read_weights("s3fd")
    assert checked.path == real.resolve() and checked.data == b"the checked bytes" and checked.verified
    real.write_bytes(b"swapped later")  # a link now leads to other bytes: refused, never loaded unchecked
    with pytest.raises(BadWeightsError, match="sha256 mismatch"):
        W.read_weights("s3fd")


def test_symlink_loops_and_broken_links_say_so(weights_folder: Path) -> None:
    link = weights_folder / "s3fd-619a316812.pth"
    other = weights_folder / "other"
    link.symlink_to(other)
    other.symlink_to(link)
    with pytest.raises(BadWeightsError, match="symbolic link loop") as info:
        W.read_weights("s3fd")
    assert str(link) in str(info.value)
    other.unlink()
    with pytest.raises(BadWeightsError, match="broken symbolic link"):
        W.read_weights("s3fd")


# ------------------------------------------------------------------------------------------------ unpickling
class _Payload:
    """A pickled object that would create a file if it were ever unpickled with plain pickle."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


def test_state_dicts_are_unpickled_weights_only(tmp_path: Path) -> None:
    good = tmp_path / "good.pth"
    torch.save({"state_dict": {"module.conv.weight": torch.ones(2, 2)}, "epoch": 3}, good)
    assert list(W.load_torch_state(good.read_bytes(), good)) == ["conv.weight"]
    marker = tmp_path / "pwned"
    evil = tmp_path / "evil.pth"
    torch.save({"conv.weight": torch.ones(2), "payload": _Payload(marker)}, evil)
    with pytest.raises(BadWeightsError, match="refused: holds pickled Python objects") as info:
        W.load_torch_state(evil.read_bytes(), evil)
    assert str(evil) in str(info.value) and not marker.exists()


def _fan_files(folder: Path, fan_state: dict, sfd_state: dict) -> tuple[Path, Path]:
    fan, sfd = folder / "2DFAN4-11f355bf06.pth.tar", folder / "s3fd-619a316812.pth"
    torch.save(fan_state, fan)
    torch.save(sfd_state, sfd)
    return fan, sfd


def test_face_alignment_states_are_checked_and_loaded_from_the_checked_bytes(
        weights_folder: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The FAN backend's loader without the face-alignment package: digests, links, weights_only."""
    from thead.face.landmarks import load_fan_states

    store = tmp_path / "store"
    store.mkdir()
    fan, sfd = _fan_files(store, {"conv1.weight": torch.ones(1)}, {"conv1_1.weight": torch.full((2,), 2.0)})
    for f in (fan, sfd):
        (weights_folder / f.name).symlink_to(f)
    # Random bytes under the right name: refused before anything is unpickled.
    with pytest.raises(BadWeightsError, match="sha256 mismatch"):
        load_fan_states()
    _pin(monkeypatch, fan_2d_68=_sha(fan), s3fd=_sha(sfd))
    seen: list[object] = []
    real_load = torch.load
    monkeypatch.setattr(torch, "load", lambda f, **kw: seen.append((f, kw)) or real_load(f, **kw))
    fan_state, sfd_state = load_fan_states()
    assert torch.equal(fan_state["conv1.weight"], torch.ones(1)) and float(sfd_state["conv1_1.weight"][0]) == 2.0
    assert all(not isinstance(f, (str, Path)) and kw.get("weights_only") is True for f, kw in seen)  # bytes only
    # A correctly hashed file that holds a pickled object: weights_only refuses it, nothing runs.
    marker = tmp_path / "pwned"
    torch.save({"conv1.weight": torch.ones(1), "x": _Payload(marker)}, fan)
    _pin(monkeypatch, fan_2d_68=_sha(fan), s3fd=_sha(sfd))
    with pytest.raises(BadWeightsError, match="weights_only"):
        load_fan_states()
    assert not marker.exists()


# ------------------------------------------------------------------------------------------------ metrics
def _frames(n: int, seed: int, size: int = 64) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, size=(n, size, size, 3), dtype=np.uint8)


def test_lpips_of_random_weights_is_refused_not_a_negative_number(weights_folder: Path) -> None:
    """Issue 13: random weights printed LPIPS -0.066 with exit 0."""
    from thead.metrics import lpips
    from thead.metrics.lpips import LPIPSAlex

    torch.manual_seed(0)
    state = {k: torch.randn(v.shape) * 0.1 for k, v in LPIPSAlex().state_dict().items()}
    save_file(state, str(weights_folder / load_manifest()["lpips-alex"].file))
    result = lpips(_frames(2, 0), _frames(2, 1))
    assert not result.available and result.value is None
    assert "negative weights" in result.reason and "lpips_alex.safetensors" in result.reason
    # All-zero heads (distance 0 for everything) fail the self-check too.
    W.clear_model_cache()
    state = {k: v.abs() if not k.startswith("lin") else torch.zeros_like(v) for k, v in state.items()}
    save_file(state, str(weights_folder / load_manifest()["lpips-alex"].file))
    result = lpips(_frames(1, 0), _frames(1, 1))
    assert not result.available and "self-check" in result.reason


def test_lpips_refuses_a_wrong_dtype_or_an_unreadable_file(weights_folder: Path) -> None:
    from thead.metrics import lpips

    (weights_folder / load_manifest()["lpips-alex"].file).write_bytes(b"not safetensors")
    result = lpips(_frames(1, 0), _frames(1, 1))
    assert not result.available and "not a readable safetensors file" in result.reason


def test_fid_refuses_weights_with_impossible_batchnorm_statistics(weights_folder: Path) -> None:
    from thead.metrics import fid
    from thead.metrics.fid import InceptionV3FID

    state = {k: v.clone() for k, v in InceptionV3FID().state_dict().items()}
    state["Mixed_5b.branch1x1.bn.running_var"] = -torch.ones_like(state["Mixed_5b.branch1x1.bn.running_var"])
    save_file(state, str(weights_folder / load_manifest()["fid-inception"].file))
    result = fid(_frames(2, 0), _frames(2, 1))
    assert not result.available and "variances <= 0" in result.reason


# ------------------------------------------------------------------------------------------------ the CLI
def test_weights_command_tells_verified_unverified_wrong_and_missing(weights_folder: Path,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    (weights_folder / "s3fd-619a316812.pth").write_bytes(b"random")
    (weights_folder / load_manifest()["lpips-alex"].file).write_bytes(b"converted here")
    fan = weights_folder / "2DFAN4-11f355bf06.pth.tar"
    fan.write_bytes(b"pinned")
    _pin(monkeypatch, fan_2d_68=_sha(fan))
    res = runner.invoke(app, ["weights", "--json"])
    assert res.exit_code == 0, res.output
    rows = {r["name"]: r for r in map(json.loads, res.stdout.strip().splitlines())}
    assert rows["s3fd"]["status"] == "WRONG (sha256 mismatch)" and not rows["s3fd"]["usable"]
    assert rows["lpips-alex"]["status"] == "present, UNVERIFIED" and rows["lpips-alex"]["usable"]
    assert rows["fan-2d-68"]["status"] == "verified"
    assert rows["fid-inception"]["status"] == "missing" and not rows["fid-inception"]["present"]


def test_converter_checks_its_inputs_and_prints_the_output_digest(tmp_path: Path, capsys) -> None:
    import importlib.util

    script = Path(__file__).resolve().parent.parent / "tools" / "convert_weights.py"
    spec = importlib.util.spec_from_file_location("convert_weights", script)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    main = module.main
    from thead.metrics.lpips import LPIPSAlex

    state = {k: torch.rand(v.shape) * 0.05 for k, v in LPIPSAlex().state_dict().items()}
    torch.save({k: v for k, v in state.items() if k.startswith("features.")}, tmp_path / "alexnet.pth")
    torch.save({k: v for k, v in state.items() if k.startswith("lin")}, tmp_path / "alex.pth")
    out = tmp_path / "lpips_alex.safetensors"
    args = ["lpips", str(tmp_path / "alexnet.pth"), str(tmp_path / "alex.pth"), str(out)]
    assert main(args) == 1 and not out.exists()
    err = capsys.readouterr().err
    assert "sha256 mismatch" in err and load_conversion_inputs()["alexnet-imagenet"].sha256 in err
    assert main(args + ["--allow-unverified"]) == 0
    assert f"sha256 {_sha(out)}" in capsys.readouterr().out

"""Convert the public LPIPS / FID checkpoints to the safetensors files thead loads (needs only torch).

A maintenance script, not part of the package; run it from the repository root::

    python tools/convert_weights.py lpips alexnet-owt-7be5be79.pth alex.pth lpips_alex.safetensors
    python tools/convert_weights.py fid pt_inception-2015-12-05-6726825d.pth pt_inception-2015-12-05.safetensors

``alexnet-owt-7be5be79.pth`` is torchvision's ImageNet AlexNet (https://download.pytorch.org/models/), ``alex.pth``
the LPIPS v0.1 linear layers (github.com/richzhang/PerceptualSimilarity, lpips/weights/v0.1/alex.pth), and
``pt_inception-2015-12-05-6726825d.pth`` pytorch-fid's FID Inception (its GitHub release ``fid_weights``).
The checkpoints are read with ``torch.load(weights_only=True)``: tensors only, no code is executed. Put the
outputs in the weights folder (``$THEAD_WEIGHTS`` or ``~/.cache/thead/weights``).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch
from torch import nn


def _load_pth(path: str | Path) -> dict[str, torch.Tensor]:
    state = torch.load(str(path), map_location="cpu", weights_only=True)
    if isinstance(state, dict) and "state_dict" in state and isinstance(state["state_dict"], dict):
        state = state["state_dict"]
    if not isinstance(state, dict):
        raise ValueError(f"{path}: not a state dict")
    return {k.removeprefix("module."): v for k, v in state.items() if isinstance(v, torch.Tensor)}


def _save_checked(model: nn.Module, state: dict[str, torch.Tensor], out: str | Path) -> Path:
    from safetensors.torch import save_file

    from thead.metrics.lpips import load_checked_state

    out = Path(out)
    load_checked_state(model, state, out)  # raises on missing keys / wrong shapes
    tensors = {k: v.detach().contiguous().clone() for k, v in model.state_dict().items()}
    out.parent.mkdir(parents=True, exist_ok=True)
    save_file(tensors, str(out), metadata={"format": "pt"})
    return out


def convert_lpips(alexnet_pth: str | Path, lin_pth: str | Path, out: str | Path) -> Path:
    """Merge torchvision AlexNet ``features.*`` and LPIPS ``lin*`` weights into one safetensors file.

    Parameters
    ----------
    alexnet_pth : str or Path
        torchvision's ImageNet AlexNet checkpoint (``alexnet-owt-7be5be79.pth``).
    lin_pth : str or Path
        The LPIPS v0.1 linear layers (``alex.pth``).
    out : str or Path
        The safetensors file to write (its folder is made).

    Returns
    -------
    Path
        ``out``, checked to load into ``LPIPSAlex``.
    """
    from thead.metrics.lpips import LPIPSAlex

    state = {k: v for k, v in _load_pth(alexnet_pth).items() if k.startswith("features.")}
    state.update({k: v for k, v in _load_pth(lin_pth).items() if k.startswith("lin")})
    return _save_checked(LPIPSAlex(), state, out)


def convert_fid(inception_pth: str | Path, out: str | Path) -> Path:
    """pytorch-fid's FID Inception checkpoint to safetensors (the classifier ``fc.*`` is dropped).

    Parameters
    ----------
    inception_pth : str or Path
        pytorch-fid's ``pt_inception-2015-12-05-6726825d.pth``.
    out : str or Path
        The safetensors file to write (its folder is made).

    Returns
    -------
    Path
        ``out``, checked to load into ``InceptionV3FID``.
    """
    from thead.metrics.fid import InceptionV3FID

    return _save_checked(InceptionV3FID(), _load_pth(inception_pth), out)


def main(argv: list[str] | None = None) -> int:
    """Convert the checkpoints named on the command line (``--help`` lists them); returns 0."""
    parser = argparse.ArgumentParser(prog="python tools/convert_weights.py", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="which", required=True)
    p = sub.add_parser("lpips", help="AlexNet + LPIPS v0.1 linear layers -> lpips_alex.safetensors")
    p.add_argument("alexnet_pth")
    p.add_argument("lin_pth")
    p.add_argument("out")
    q = sub.add_parser("fid", help="pytorch-fid Inception -> pt_inception-2015-12-05.safetensors")
    q.add_argument("inception_pth")
    q.add_argument("out")
    args = parser.parse_args(argv)
    if args.which == "lpips":
        out = convert_lpips(args.alexnet_pth, args.lin_pth, args.out)
    else:
        out = convert_fid(args.inception_pth, args.out)
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

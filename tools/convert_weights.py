"""Convert the public LPIPS / FID checkpoints to the safetensors files thead loads (needs only torch).

A maintenance script, not part of the package; run it from the repository root::

    python tools/convert_weights.py lpips alexnet-owt-7be5be79.pth alex.pth lpips_alex.safetensors
    python tools/convert_weights.py fid pt_inception-2015-12-05-6726825d.pth pt_inception-2015-12-05.safetensors

``alexnet-owt-7be5be79.pth`` is torchvision's ImageNet AlexNet (https://download.pytorch.org/models/), ``alex.pth``
the LPIPS v0.1 linear layers (github.com/richzhang/PerceptualSimilarity, lpips/weights/v0.1/alex.pth), and
``pt_inception-2015-12-05-6726825d.pth`` pytorch-fid's FID Inception (its GitHub release ``fid_weights``).
Each input's sha256 is checked against its published digest (``[[conversion_inputs]]`` in
``weights_manifest.toml``) and a mismatch is refused (``--allow-unverified`` converts anyway, with a warning);
the checked bytes are read with ``torch.load(weights_only=True)``: tensors only, no code is executed. The
converter prints the sha256 of the file it writes. Put the outputs in the weights folder (``$THEAD_WEIGHTS`` or
``~/.cache/thead/weights``).
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from pathlib import Path

import torch
from torch import nn

log = logging.getLogger("thead.weights")


def _load_pth(path: str | Path, input_name: str | None = None, allow_unverified: bool = False
              ) -> dict[str, torch.Tensor]:
    """The tensors of a published checkpoint, its bytes checked against the manifest's conversion input
    ``input_name`` first (mismatch: ``BadWeightsError``, or a logged warning with ``allow_unverified``)."""
    from thead.errors import BadWeightsError, describe_os_error
    from thead.weights import check_bytes, load_conversion_inputs, load_torch_state, resolve_weights_file

    resolved = resolve_weights_file(path)
    try:
        data = resolved.read_bytes()
    except OSError as exc:
        raise BadWeightsError(describe_os_error(exc, resolved)) from None
    if input_name is not None:
        entry = load_conversion_inputs()[input_name]
        try:
            check_bytes(entry, data, resolved)
        except BadWeightsError as exc:
            if not allow_unverified:
                raise
            log.warning("warning: converting anyway (--allow-unverified): %s", exc)
    return load_torch_state(data, resolved)


def _save(model: nn.Module, out: str | Path) -> Path:
    """Write ``model``'s state dict as safetensors (temp name, then renamed into place)."""
    from safetensors.torch import save_file

    out = Path(out)
    tensors = {k: v.detach().contiguous().clone() for k, v in model.state_dict().items()}
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.tmp-{os.getpid()}")
    save_file(tensors, str(tmp), metadata={"format": "pt"})
    os.replace(tmp, out)
    return out


def convert_lpips(alexnet_pth: str | Path, lin_pth: str | Path, out: str | Path,
                  allow_unverified: bool = False) -> Path:
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
    
    allow_unverified : bool
        Warn instead of refusing when an input's sha256 is not the published one.
    """
    from thead.metrics.lpips import LPIPSAlex, check_lpips, load_checked_state

    state = {k: v for k, v in _load_pth(alexnet_pth, "alexnet-imagenet", allow_unverified).items()
             if k.startswith("features.")}
    state.update({k: v for k, v in _load_pth(lin_pth, "lpips-alex-linear-v0.1", allow_unverified).items()
                  if k.startswith("lin")})
    model = LPIPSAlex()
    load_checked_state(model, state, Path(out))  # every key, every shape
    check_lpips(model, lin_pth)
    return _save(model, out)


def convert_fid(inception_pth: str | Path, out: str | Path, allow_unverified: bool = False) -> Path:
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
    
    allow_unverified : bool
        Warn instead of refusing when the input's sha256 is not the published one.
    """
    from thead.metrics.fid import InceptionV3FID, check_inception
    from thead.metrics.lpips import load_checked_state

    state = _load_pth(inception_pth, "fid-inception-pth", allow_unverified)
    model = InceptionV3FID()
    load_checked_state(model, state, Path(out))  # every key, every shape
    check_inception(model, inception_pth)
    return _save(model, out)


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
    for sp in (p, q):
        sp.add_argument("--allow-unverified", action="store_true",
                        help="convert inputs whose sha256 differs from the published one (with a warning)")
    args = parser.parse_args(argv)
    from thead.errors import TheadError, describe_os_error
    from thead.weights import sha256_of

    try:
        if args.which == "lpips":
            out = convert_lpips(args.alexnet_pth, args.lin_pth, args.out, args.allow_unverified)
        else:
            out = convert_fid(args.inception_pth, args.out, args.allow_unverified)
    except TheadError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except OSError as exc:  # writing the output: disk full, read-only, no permission
        print(f"error: {describe_os_error(exc, exc.filename or args.out)}", file=sys.stderr)
        return 1
    print(f"wrote {out} (sha256 {sha256_of(out)})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

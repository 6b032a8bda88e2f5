"""Convert torchvision's ImageNet VGG-19 checkpoint to the ``vgg19`` weights the neural engine's perceptual loss
loads (its ``features`` convolutions only, as safetensors). Needs only torch.

A maintenance script, not part of the package; run it from the repository root::

    python tools/convert_vgg19.py vgg19-dcbb9e9d.pth vgg19_features.safetensors

``vgg19-dcbb9e9d.pth`` is https://download.pytorch.org/models/vgg19-dcbb9e9d.pth. Its sha256 must start with the
file name's prefix ``dcbb9e9d`` (the check torch.hub makes); the bytes are read with
``torch.load(weights_only=True)`` (tensors only). The script prints the sha256 of the file it writes; put that file
in the weights folder (``$THEAD_WEIGHTS`` or ``~/.cache/thead/weights``).
"""

from __future__ import annotations

import argparse
import hashlib
import io
import sys
from pathlib import Path

import torch

PREFIX = "dcbb9e9d"


def convert(pth: str | Path, out: str | Path) -> str:
    """Write the ``features.*`` tensors of ``pth`` to ``out`` (checked by building ``VGG19Features``); returns the
    sha256 of ``out``."""
    from safetensors.torch import save_file

    from thead.engines.neural.losses import VGG19Features

    data = Path(pth).read_bytes()
    digest = hashlib.sha256(data).hexdigest()
    if not digest.startswith(PREFIX):
        raise SystemExit(f"{pth}: sha256 {digest} does not start with {PREFIX} (not torchvision's vgg19-dcbb9e9d.pth)")
    state = torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
    features = {k: v.contiguous() for k, v in state.items() if k.startswith("features.")}
    VGG19Features().load_state_dict(features, strict=True)
    save_file(features, str(out), metadata={"source": Path(pth).name, "source_sha256": digest})
    return hashlib.sha256(Path(out).read_bytes()).hexdigest()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("pth", help="torchvision's vgg19-dcbb9e9d.pth")
    parser.add_argument("out", help="output file (vgg19_features.safetensors)")
    args = parser.parse_args(argv)
    print(f"{args.out}: sha256 {convert(args.pth, args.out)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Training iterations per second of the neural engine (presets tiny at 64/128, base at 128/256), CPU and CUDA.

    python bench/bench_neural_train.py                          # tiny@128 and base@256, batch 4, CPU (+ CUDA)
    python bench/bench_neural_train.py --presets base --sizes 128 256 --steps 6 --threads 2 --no-adversarial

Each run trains on a synthetic clip (the astronaut moving, with the mean face mesh as its 3-D face, as the tests
build it) in a temporary folder for ``--steps`` steps after one epoch of warm-up steps, and reports it/s (whole steps:
generator, discriminator when on, losses, logging) and frames/s of batched inference. With CUDA present, each
configuration runs there too (AMP on) and the CUDA / CPU ratio is printed.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))


def run(preset: str, size: int, device: str, steps: int, batch: int, adversarial: bool) -> dict:
    from skimage import data

    from test_neural_train import synthetic_clip
    from thead.engines.neural import NeuralConfig
    from thead.engines.neural.data import PairDataset
    from thead.engines.neural.train import LOSS_LOG, TrainOptions, train_neural

    config = NeuralConfig.preset(preset).replace(size=size)
    clip = synthetic_clip(data.astronaut()[:300, 100:400], frames=16, size=size)
    with tempfile.TemporaryDirectory() as tmp:
        opts = dict(batch_size=batch, adversarial=adversarial, checkpoint_every=0, sample_every=0, device=device,
                    perceptual=0.0)
        # one epoch of warm-up (the dataset rasterises each pair's condition maps once), then ``steps`` timed steps
        warm = -(-len(PairDataset([clip])) // batch)
        res = train_neural(config, [clip], Path(tmp), TrainOptions(steps=warm + steps, **opts))
        rows = [json.loads(x) for x in (Path(tmp) / LOSS_LOG).read_text().splitlines()]
        it_s = steps / (rows[-1]["time"] - rows[warm - 1]["time"])
        model = res["model"].to(device).eval()
        b = next(iter(torch.utils.data.DataLoader(PairDataset([clip]), batch_size=8)))
        b = {k: v.to(device) for k, v in b.items()}
        with torch.no_grad(), torch.autocast(torch.device(device).type, dtype=torch.float16,
                                             enabled=device.startswith("cuda")):
            model(b["source"], b["source_cond"], b["target_cond"], b["base"])
            if device.startswith("cuda"):
                torch.cuda.synchronize()
            t1, n = time.perf_counter(), 0
            while time.perf_counter() - t1 < 2.0 or n < 2:
                model(b["source"], b["source_cond"], b["target_cond"], b["base"])
                n += 1
            if device.startswith("cuda"):
                torch.cuda.synchronize()
            fps = 8 * n / (time.perf_counter() - t1)
    return {"it_s": it_s, "fps": fps}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--presets", nargs="+", default=["tiny", "base"])
    p.add_argument("--sizes", nargs="+", type=int, default=None, help="sides (default: 128 for tiny, 256 for base)")
    p.add_argument("--steps", type=int, default=5)
    p.add_argument("--batch", type=int, default=4)
    p.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default)")
    p.add_argument("--no-adversarial", action="store_true")
    p.add_argument("--json", type=Path, default=None, help="write the rows here too")
    a = p.parse_args()
    if a.threads:
        torch.set_num_threads(a.threads)
    devices = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    print(f"torch {torch.__version__}, {torch.get_num_threads()} CPU threads"
          + (f", {torch.cuda.get_device_name(0)}" if "cuda" in devices else ", no CUDA"))
    rows = []
    for preset in a.presets:
        sizes = a.sizes or [128 if preset == "tiny" else 256]
        for size in sizes:
            row = {d: run(preset, size, d, a.steps, a.batch, not a.no_adversarial) for d in devices}
            line = (f"{preset}@{size} batch {a.batch}: CPU {row['cpu']['it_s']:.3f} it/s, inference "
                    f"{row['cpu']['fps']:.1f} frames/s")
            if "cuda" in row:
                line += (f"; CUDA {row['cuda']['it_s']:.2f} it/s ({row['cuda']['it_s'] / row['cpu']['it_s']:.1f}x), "
                         f"inference {row['cuda']['fps']:.1f} frames/s ({row['cuda']['fps'] / row['cpu']['fps']:.1f}x)")
            print(line, flush=True)
            rows.append({"preset": preset, "size": size, "batch": a.batch, **row})
            if a.json:
                a.json.write_text(json.dumps({"torch": torch.__version__, "cpu_threads": torch.get_num_threads(),
                                              "rows": rows}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())

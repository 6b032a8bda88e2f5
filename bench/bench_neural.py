"""Inference speed of the neural engine against the mesh engine, as a user runs them, at 256.

    python bench/bench_neural.py --weights NAME|PATH            # CPU (and CUDA when present)
    python bench/bench_neural.py --preset base --frames 75     # no trained weights: an untrained model of the preset
    python bench/bench_neural.py --devices cpu,cuda --batch-size 16 --json out.json

Two figures per engine and device, in the same run (so the CUDA / CPU ratio is fair):

* command: ``python -m thead reenact SOURCE DRIVER --engine E [--weights W] --device D --batch-size B --force``
  with the stage caches present (a first, untimed run makes them), timed from spawn to exit; frames/s = the
  driver's frames / wall seconds (start-up, weight loading and encoding included);
* render: ``engine.render`` in-process over the same targets (``make_engine`` as the command builds it), the
  engine alone.

Speed does not depend on what the weights learned: without ``--weights`` an untrained model of ``--preset`` is
saved to the work folder and used (say so when you quote the figures). The source is DATA/images/s5.jpg and the
driver DATA/videos/d0.mp4 when the shared media are there (``--data``), else the astronaut photo and a synthetic
moving clip of ``--frames`` frames.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "tests"))
os.environ.setdefault("GLOG_minloglevel", "2")

SIZE = 256


def thead(*args: str) -> tuple[float, subprocess.CompletedProcess]:
    """(wall seconds, the finished process) of ``python -m thead ARGS``."""
    start = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "thead", *args], capture_output=True, text=True, cwd=REPO,
                          env={**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))})
    return time.perf_counter() - start, proc


def inputs(data: Path | None, work: Path, frames: int) -> tuple[Path, Path]:
    """(source photo, driver video): the shared media's s5.jpg and d0.mp4, or the astronaut and a moving clip."""
    if data is not None and (data / "videos" / "d0.mp4").is_file() and (data / "images" / "s5.jpg").is_file():
        return data / "images" / "s5.jpg", data / "videos" / "d0.mp4"
    from skimage import data as skdata

    from conftest import moving_face_frames, write_video
    from thead.io import write_image

    src = work / "astronaut.png"
    write_image(src, skdata.astronaut())
    clip, _ = moving_face_frames(skdata.astronaut(), num=frames)
    return src, write_video(work / "moving.mp4", clip)


def weights_for(args: argparse.Namespace, work: Path) -> tuple[str, str]:
    """(--weights value, what it is): the given weights, or an untrained model of ``--preset`` saved here."""
    if args.weights:
        return args.weights, f"trained weights {args.weights}"
    import torch

    from thead.engines.neural.config import NeuralConfig
    from thead.engines.neural.model import NeuralGenerator
    from thead.engines.neural.store import save_neural

    torch.manual_seed(0)
    path = work / f"untrained-{args.preset}.safetensors"
    save_neural(NeuralGenerator(NeuralConfig.preset(args.preset)), path)
    return str(path), f"untrained {args.preset} model (speed only)"


def render_speed(engine_name: str, weights: str, device: str, batch: int, source: Path, driver: Path,
                 work: Path) -> float:
    """frames/s of ``engine.render`` alone over the driver's targets (caches of the command's first run)."""
    import torch

    from thead.engines import transfer_motion
    from thead.fitting import fit_image, fit_sequence
    from thead.io import read_image
    from thead.jobs.items import InputItem
    from thead.jobs.render import RenderOptions, make_engine
    from thead.stages.preprocess import PreprocessParams, load_preprocess, preprocess_item

    crops = {}
    for path in (source, driver):
        preprocess_item(InputItem(path, path.stem), work / "render", PreprocessParams(size=SIZE))
        crops[path] = load_preprocess(work / "render" / path.stem / "preprocess")
    src, drv = crops[source], crops[driver]
    src_fit = fit_image(src.crop_landmarks[0], SIZE)
    drv_fit = fit_sequence(drv.crop_landmarks, drv.valid, SIZE, fps=drv.meta.fps or 25.0)
    targets = transfer_motion(src_fit, drv_fit)
    engine = make_engine(RenderOptions(device=device, batch_size=batch, engine=engine_name,
                                       weights=weights if engine_name == "neural" else None))
    prepared = engine.prepare(read_image(src.crop_path), src.crop_landmarks[0], src_fit)
    engine.render(prepared, targets[:batch])  # warm-up (kernels, the rest render)
    if engine.device.type == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    frames = engine.render(prepared, targets)
    if engine.device.type == "cuda":
        torch.cuda.synchronize()
    seconds = time.perf_counter() - start
    assert frames.shape == (len(targets), SIZE, SIZE, 3)
    return len(targets) / seconds


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--weights", help="trained weights (name or path); default: an untrained --preset model")
    ap.add_argument("--preset", default="base", help="preset of the untrained model (tiny, base, 512)")
    ap.add_argument("--data", type=Path, default=Path(os.environ.get("THEAD_TEST_DATA", REPO.parent / "shared" /
                                                                      "data")))
    ap.add_argument("--work", type=Path, default=Path("/tmp/bench_neural"))
    ap.add_argument("--frames", type=int, default=75, help="synthetic driver's frames (no shared media)")
    ap.add_argument("--devices", default=None, help="comma list (default: cpu, and cuda when present)")
    ap.add_argument("--batch-size", type=int, default=None, help="default: 16 on the CPU, 64 on CUDA")
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args()

    import torch

    from thead.io import probe_video

    args.work.mkdir(parents=True, exist_ok=True)
    devices = args.devices.split(",") if args.devices else ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    source, driver = inputs(args.data if args.data.is_dir() else None, args.work, args.frames)
    weights, what = weights_for(args, args.work)
    n = probe_video(driver).num_frames
    print(f"source {source}, driver {driver} ({n} frames), neural: {what}, torch threads {torch.get_num_threads()}, "
          f"CPUs {os.cpu_count()}, load before {os.getloadavg()[0]:.1f}")
    if torch.cuda.is_available():
        print(f"GPU: {torch.cuda.get_device_name(0)}")
    rows = []
    for dev in devices:
        batch = str(args.batch_size or (64 if dev.startswith("cuda") else 16))
        common = [str(source), str(driver), "-w", str(args.work / "work"), "--device", dev, "--batch-size", batch]
        wall, proc = thead("reenact", *common, "-o", str(args.work / "warm.mp4"))  # the stage caches
        if proc.returncode:
            sys.exit(f"warm-up run failed:\n{proc.stderr[-2000:]}")
        for engine in ("mesh", "neural"):
            extra = ["--engine", engine] + (["--weights", weights] if engine == "neural" else [])
            wall, proc = thead("reenact", *common, *extra, "-o", str(args.work / f"{engine}-{dev}.mp4"), "--force")
            if proc.returncode:
                sys.exit(f"{engine} on {dev} failed:\n{proc.stderr[-2000:]}")
            fps_render = render_speed(engine, weights, dev, int(batch), source, driver, args.work)
            rows.append({"engine": engine, "device": dev, "batch": int(batch), "frames": n, "command_s": wall,
                         "command_fps": n / wall, "render_fps": fps_render})
            print(f"{engine:7s} {dev:6s} batch {batch:>3s}: command {wall:6.1f} s = {n / wall:6.2f} frames/s; "
                  f"render alone {fps_render:7.2f} frames/s", flush=True)
    print(f"load after {os.getloadavg()[0]:.1f} (figures taken under load are lower bounds)")
    by = {(r["engine"], r["device"]): r for r in rows}
    for engine in ("mesh", "neural"):
        cpu, gpu = by.get((engine, "cpu")), next((r for (e, d), r in by.items() if e == engine and
                                                  d.startswith("cuda")), None)
        if cpu and gpu:
            print(f"{engine}: CUDA / CPU = {gpu['command_fps'] / cpu['command_fps']:.1f}x (command), "
                  f"{gpu['render_fps'] / cpu['render_fps']:.1f}x (render)")
    for dev in devices:
        if ("mesh", dev) in by and ("neural", dev) in by:
            print(f"{dev}: neural / mesh = {by[('neural', dev)]['render_fps'] / by[('mesh', dev)]['render_fps']:.2f}"
                  " (render)")
    if args.json:
        args.json.write_text(json.dumps({"weights": what, "rows": rows}, indent=2))


if __name__ == "__main__":
    main()

"""The neural engine's personalisation protocol (issue 14): per clip, train on its first 70 % of frames, reenact its
last 30 % from frame 0 with the mesh and the neural engine, and compare them with the real frames.

    python tools/neural_personalise.py                                  # every clip of DATA/videos
    nice -n 5 python tools/neural_personalise.py d0.mp4 --steps 300 --preset tiny --size 128
    python tools/neural_personalise.py --steps 100,300,1000 --device cuda   # a quality-vs-steps curve (resumed)
    python tools/neural_personalise.py CLIP --weights NAME|PATH         # skip training: a model made before

Per clip:

1. ``python -m thead train neural --personalise CLIP --train-fraction 0.7 --steps N [--size S] [--preset P]
   -w WORK -o personal-<clip>`` (the command a user runs; its wall time on this machine is the "train s" column);
   the model it registers is the neural engine's weights;
2. self-reenactment: source = the clip's frame 0, driver = the clip (relative motion: the driver's change from
   frame 0 applied to frame 0 itself), rendered by ``make_engine`` as ``thead reenact`` builds it with
   ``--engine mesh`` and ``--engine neural --weights``, on the held-out frames k..T-1, k = round(0.7 T) (the
   trainer's split), the source's surroundings cut from the original frame as the command does;
3. the metrics ``thead evaluate`` computes for a self-reenactment, at 256 (``thead.metrics``: L1, PSNR, SSIM
   of the frames against the clip's own crops; mouth LMD, iBUG points 48-67 of MediaPipe landmarks detected on
   both, pixels at 256) and as ``bench/bench_reenact.py`` does, frame by frame, means over the held-out frames
   (LMD over those with landmarks; ``LMD_paired``: over those where both engines' renders have them);
4. a contact sheet per clip (rows: real | mesh | neural, a few held-out frames) in ``--sheets`` (and, for a curve,
   one per point: ``<clip>-<steps>.png``).

A table (clip, frames train/test, steps, train s, mesh vs neural L1/PSNR/SSIM/LMD) goes to stdout; ``--json`` writes
it too.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))
os.environ.setdefault("GLOG_minloglevel", "2")

SIZE = 256
METRICS = ("L1", "PSNR", "SSIM", "LMD")


def train(clip: Path, work: Path, args: argparse.Namespace, steps: int) -> tuple[str, float, dict]:
    """(registered model name, wall seconds, the command's JSON report) of ``thead train neural --personalise clip -o NAME
    --steps STEPS``, NAME = ``<--name-prefix><clip stem>`` (a second call with more steps resumes the first)."""
    from thead.engines.neural.store import list_neural

    name = f"{args.name_prefix}{clip.stem}"
    cmd = [sys.executable, "-m", "thead", "train", "neural", "--personalise", str(clip), "--train-fraction",
           str(args.train_fraction), "--steps", str(steps), "-w", str(work), "-o", name]
    if args.size:
        cmd += ["--net-size", str(args.size)]
    if args.preset:
        cmd += ["--preset", args.preset]
    cmd += args.train_arg + ["--json"]
    print("  $ " + " ".join(cmd), flush=True)
    start = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO, env={**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))})
    seconds = time.perf_counter() - start
    if proc.returncode:
        sys.exit(f"training failed on {clip}:\n{proc.stderr[-3000:]}")
    if name not in {m["name"] for m in list_neural()}:
        sys.exit(f"training {clip} did not register '{name}':\n{proc.stderr[-1500:]}")
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("{")]
    return name, seconds, json.loads(lines[-1]) if lines else {}


def load_clip(path: Path, work: Path):
    """bench_reenact's Clip of ``path`` (vox crop 256, tracked landmarks, the first original frame)."""
    from bench_reenact import Clip

    from thead.io import iter_frames, read_frames
    from thead.stages import InputItem, PreprocessParams, load_preprocess, preprocess_item

    preprocess_item(InputItem(path, path.stem), work, PreprocessParams(size=SIZE))
    pre = load_preprocess(work / path.stem / "preprocess")
    frames = read_frames(pre.crop_path)
    n = min(len(frames), len(pre.crop_landmarks))
    first = next(iter(iter_frames(path)))
    return Clip(path.stem, frames[:n], pre.crop_landmarks[:n], pre.valid[:n], pre.meta.fps or 25.0, first,
                pre.transforms[0])


def metrics(generated: np.ndarray, real: np.ndarray, gen_lm: np.ndarray, real_lm: np.ndarray) -> dict[str, float]:
    from thead.metrics import l1, lmd, psnr, ssim

    d = lmd(gen_lm, real_lm, image_size=SIZE, eval_size=SIZE)
    return {"L1": float(l1(generated, real).mean()), "PSNR": float(psnr(generated, real).mean()),
            "SSIM": float(ssim(generated, real).mean()), "LMD": float(np.nanmean(d)),
            "LMD_missing": int(np.isnan(d).sum()), "LMD_frames": [round(float(x), 3) for x in d]}


def evaluate_clip(clip, weights: str, landmarker, device: str, fraction: float, sheets: Path) -> dict:
    """Mesh and neural self-reenactment of the held-out frames of ``clip``: their metrics and a contact sheet."""
    from bench_reenact import detect_all, label, prepare, sheet

    from thead.engines import transfer_motion
    from thead.fitting import fit_image, fit_sequence
    from thead.io import write_image
    from thead.jobs.render import RenderOptions, make_engine

    T = len(clip.frames)
    k = int(round(fraction * T))  # thead.jobs.train_neural.train_fraction_mask's split
    idx = np.arange(k, T)
    driver = fit_sequence(clip.landmarks, clip.valid, SIZE, fps=clip.fps)
    src_fit = fit_image(clip.landmarks[0], SIZE)
    targets = transfer_motion(src_fit, driver)[idx]
    real = clip.frames[idx]
    real_lm = detect_all(landmarker, real)
    out, scores = {}, {}
    for name in ("mesh", "neural"):
        engine = make_engine(RenderOptions(device=device, engine=name, weights=weights if name == "neural" else None))
        prepared = prepare(engine, clip.frames[0], clip.landmarks[0], src_fit, clip.original, clip.transform)
        start = time.perf_counter()
        out[name] = engine.render(prepared, targets)
        scores[name] = metrics(out[name], real, detect_all(landmarker, out[name]), real_lm)
        scores[name]["render_s"] = time.perf_counter() - start
    # LMD's mean skips the frames where no face was found on a render, a different set per engine (an engine whose
    # hard frames are detected is charged for them); the paired mean is over the frames both have.
    both = ~np.isnan(scores["mesh"]["LMD_frames"]) & ~np.isnan(scores["neural"]["LMD_frames"])
    for name in scores:
        scores[name]["LMD_paired"] = float(np.asarray(scores[name]["LMD_frames"])[both].mean()) if both.any() \
            else float("nan")
    pick = np.unique(np.linspace(0, len(idx) - 1, 5).round().astype(int))
    rows = [[label(real[j], f"real {idx[j]}"), label(out["mesh"][j], "mesh"), label(out["neural"][j], "neural")]
            for j in pick]
    sheets.mkdir(parents=True, exist_ok=True)
    write_image(sheets / f"{clip.name}.png", sheet(rows))
    return {"frames": T, "train_frames": k, "test_frames": len(idx), **{n: scores[n] for n in scores}}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("clips", nargs="*", help="clips (paths, or names in DATA/videos); default: all of DATA/videos")
    ap.add_argument("--data", type=Path, default=Path(os.environ.get("THEAD_TEST_DATA", REPO.parent / "shared" /
                                                                      "data")))
    ap.add_argument("--work", type=Path, default=Path("/tmp/neural_personalise"))
    ap.add_argument("--sheets", type=Path, default=Path("/tmp/neural_sheets"))
    ap.add_argument("--steps", default="500", help="optimiser steps; a comma list (100,300,1000) trains on, resuming, "
                    "and evaluates at each: a quality-vs-steps curve")
    ap.add_argument("--size", type=int, default=None, help="the network's size (thead train neural --size)")
    ap.add_argument("--preset", default=None, help="thead train neural --preset (tiny, base, 512)")
    ap.add_argument("--train-fraction", type=float, default=0.7)
    ap.add_argument("--train-arg", action="append", default=[], help="one more argument for thead train neural")
    ap.add_argument("--name-prefix", default="personal-", help="trained models are registered as PREFIX<clip stem>")
    ap.add_argument("--weights", default=None, help="use these weights, do not train (one clip)")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args()

    from thead.face.landmarks import make_landmarker

    names = args.clips or sorted(p.name for p in (args.data / "videos").glob("*.mp4"))
    paths = [Path(c) if Path(c).is_file() else args.data / "videos" / c for c in names]
    if args.weights and len(paths) != 1:
        sys.exit("--weights takes one clip")
    stages = [int(x) for x in str(args.steps).split(",")]
    results, curve = {}, []
    landmarker = make_landmarker()
    try:
        for path in paths:
            print(f"{path.name}:", flush=True)
            train_s = 0.0
            for steps in ([None] if args.weights else stages):
                if args.weights:
                    weights, seconds, report = args.weights, float("nan"), {}
                else:
                    weights, seconds, report = train(path, args.work, args, steps)
                    train_s += seconds
                clip = load_clip(path, args.work)
                row = evaluate_clip(clip, weights, landmarker, args.device, args.train_fraction, args.sheets)
                if steps is not None and len(stages) > 1:  # each point of a curve keeps its sheet
                    shutil.copyfile(args.sheets / f"{clip.name}.png", args.sheets / f"{clip.name}-{steps}.png")
                row.update(steps=steps, train_s=train_s if not args.weights else seconds, weights=weights,
                           it_s=report.get("it_s"), train_report=report)
                curve.append({"clip": clip.name, **row})
                results[clip.name] = row
                print_row(clip.name, row)
                if args.json:  # after every row: a run cut short keeps what it measured
                    args.json.write_text(json.dumps({"results": results, "curve": curve}, indent=2, default=str))
    finally:
        landmarker.close()
    print("\nclip        frames(train/test) steps  train s | " + " | ".join(f"{m:>13s}" for m in METRICS)
          + "\n" + " " * 47 + " | ".join(f"{'mesh  neural':>13s}" for _ in METRICS))
    for name, row in results.items():
        print_row(name, row)
    wins = {m: all((r["neural"][m] < r["mesh"][m]) if m in ("L1", "LMD") else (r["neural"][m] > r["mesh"][m])
                   for r in results.values()) for m in METRICS}
    print("neural beats mesh on every clip: " + ", ".join(f"{m} {'yes' if v else 'NO'}" for m, v in wins.items()))
    print("mouth LMD over the frames where both renders have landmarks (mesh -> neural): "
          + ", ".join(f"{n} {r['mesh']['LMD_paired']:.2f} -> {r['neural']['LMD_paired']:.2f}" for n, r in results.items()))
    print(f"contact sheets (real | mesh | neural): {args.sheets}")
    if args.json:
        args.json.write_text(json.dumps({"results": results, "curve": curve, "neural_beats_mesh": wins}, indent=2,
                                        default=str))


def print_row(name: str, row: dict) -> None:
    cells = " | ".join(f"{row['mesh'][m]:6.3f} {row['neural'][m]:6.3f}" if m in ("L1", "SSIM") else
                       f"{row['mesh'][m]:6.2f} {row['neural'][m]:6.2f}" for m in METRICS)
    print(f"{name:12s}{row['frames']:>4d} ({row['train_frames']}/{row['test_frames']}){'':6s}"
          f"{row['steps'] if row['steps'] is not None else '-':>5}  {row['train_s']:7.0f} | {cells}", flush=True)


if __name__ == "__main__":
    main()

"""CPU against CUDA, in one run, for the commands as a user runs them: preprocess, fit-3dmm (one item per solve
and grouped), the renderer, reenact end to end, evaluate.

    THEAD_TEST_DATA=../shared/data python bench/bench_devices.py --out /tmp/devbench
    python bench/bench_devices.py --data DIR --clips 48 --devices cpu,cuda --json result.json

Every figure is a ``python -m thead ...`` subprocess timed from spawn to exit (start-up included), on the same
machine in the same run, so the CUDA / CPU ratios are fair. The dataset is made here: ``--clips`` clips of
``--clip-seconds`` each, cut from the videos of ``DATA/videos`` (re-encoded, so every clip starts on a frame of
its own), plus the photos of ``DATA/images``. preprocess runs MediaPipe, which runs on the CPU whatever the
device, so it is timed once. Outputs made on the two devices are compared (pose of the fits, PSNR of the reenacted
frames) so a fast but wrong CUDA path shows. The machine (CPU count, load before and after, the GPU) is printed
with the table.
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


def thead(*args: str, env: dict | None = None) -> tuple[float, subprocess.CompletedProcess]:
    """(wall seconds, the finished process) of ``python -m thead ARGS``."""
    start = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "thead", *args], capture_output=True, text=True, cwd=REPO,
                          env={**os.environ, **(env or {})})
    return time.perf_counter() - start, proc


def ffmpeg() -> str:
    sys.path.insert(0, str(REPO))
    from thead.io.ffmpeg import ffmpeg_exe

    return ffmpeg_exe()


def make_clips(data: Path, out: Path, count: int, seconds: float) -> list[Path]:
    """``count`` clips of ``seconds`` cut round-robin from the videos of ``data/videos`` into ``out``."""
    out.mkdir(parents=True, exist_ok=True)
    videos = sorted((data / "videos").glob("*.mp4"))
    if not videos:
        raise SystemExit(f"{data}/videos holds no .mp4")
    sys.path.insert(0, str(REPO))
    from thead.io import probe_video

    lengths = {v: probe_video(v).num_frames / (probe_video(v).fps or 25.0) for v in videos}
    made, k = [], 0
    while len(made) < count:
        v = videos[k % len(videos)]
        start = (k // len(videos)) * seconds
        k += 1
        if start + seconds > lengths[v]:
            if k > 50 * count:
                break
            continue
        clip = out / f"{v.stem}_{int(start * 10):04d}.mp4"
        subprocess.run([ffmpeg(), "-v", "error", "-y", "-ss", f"{start:.2f}", "-i", str(v), "-t", f"{seconds:.2f}",
                        "-c:v", "libx264", "-preset", "ultrafast", "-crf", "18", "-an", str(clip)], check=True)
        made.append(clip)
    return made


def frames_in(work: Path, stage: str = "preprocess") -> int:
    total = 0
    for meta in work.glob(f"*/{stage}/meta.json"):
        m = json.loads(meta.read_text())
        total += int(m.get("num_frames") or m.get("frames") or 0)
    return total


def read_video(path: Path) -> np.ndarray:
    sys.path.insert(0, str(REPO))
    from thead.io import iter_frames

    return np.stack(list(iter_frames(path)))


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    return float("inf") if mse == 0 else 10 * np.log10(255.0 ** 2 / mse)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=Path(os.environ.get("THEAD_TEST_DATA", REPO.parent / "shared/data")))
    ap.add_argument("--out", type=Path, default=Path("/tmp/thead_devbench"))
    ap.add_argument("--devices", default="cpu,cuda")
    ap.add_argument("--clips", type=int, default=48)
    ap.add_argument("--clip-seconds", type=float, default=2.0)
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args()
    import torch

    devices = [d for d in args.devices.split(",") if d == "cpu" or torch.cuda.is_available()]
    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "none"
    load_before = subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()
    shutil.rmtree(args.out, ignore_errors=True)
    args.out.mkdir(parents=True)
    rows: list[dict] = []
    checks: dict[str, float] = {}

    def row(step: str, device: str, wall: float, frames: int, items: int, proc: subprocess.CompletedProcess,
            note: str = "") -> None:
        ok = proc.returncode == 0
        rows.append({"step": step, "device": device, "wall_s": round(wall, 2), "frames": frames, "items": items,
                     "frames_per_s": round(frames / wall, 1) if ok and wall > 0 else None,
                     "items_per_s": round(items / wall, 2) if ok and wall > 0 else None,
                     "exit": proc.returncode, "note": note})
        if not ok:
            print(f"[{step} {device}] exit {proc.returncode}: {proc.stderr[-1500:]}", file=sys.stderr)

    # 1. The dataset: short clips and the photos.
    clips = make_clips(args.data, args.out / "clips", args.clips, args.clip_seconds)
    photos = sorted(p for p in (args.data / "images").glob("*") if p.suffix.lower() in (".jpg", ".png"))
    inputs = args.out / "inputs"
    inputs.mkdir()
    for p in clips + photos:
        os.symlink(p.resolve(), inputs / p.name)
    work = args.out / "work"
    wall, proc = thead("preprocess", str(inputs), "-o", str(work))
    frames = frames_in(work)
    items = len(list(work.glob("*/preprocess/meta.json")))
    row("preprocess (MediaPipe, CPU only)", "cpu", wall, frames, items, proc)

    # 2. fit-3dmm: each item alone, then grouped (the default), per device; fits compared across devices.
    poses: dict[str, dict[str, np.ndarray]] = {}
    from thead.stages.fit import load_fit

    for dev in devices:
        for group in ("1", "default"):
            extra = [] if group == "default" else ["--group-items", group]
            wall, proc = thead("fit-3dmm", str(work), "--device", dev, "--force", *extra)
            row(f"fit-3dmm, group {group}", dev, wall, frames, items, proc)
        poses[dev] = {d.name: load_fit(d).pose for d in work.iterdir() if (d / "fit3dmm").is_dir()}
    if "cuda" in poses and "cpu" in poses:
        diffs = [np.abs(poses["cpu"][k][:, :3] - poses["cuda"][k][:, :3]).max() for k in poses["cpu"]]
        checks["fit: max |pose cpu - cuda| deg"] = round(float(np.degrees(max(diffs))), 4)

    # 3. The renderer alone (its own CPU and CUDA columns and ratio).
    start = time.perf_counter()
    proc = subprocess.run([sys.executable, str(REPO / "bench" / "bench_render.py")], capture_output=True, text=True,
                          cwd=REPO)
    (args.out / "bench_render.txt").write_text(proc.stdout + proc.stderr)
    print(proc.stdout[-3000:])

    # 4. reenact end to end, caches present (one cold run first makes them), per device and batch size.
    video = sorted((args.data / "videos").glob("*.mp4"))
    driver = next((v for v in video if v.name == "d3.mp4"), video[0])
    source = next((p for p in photos if p.name == "s0.jpg"), photos[0])
    rwork = args.out / "rwork"
    wall, proc = thead("reenact", str(source), str(driver), "-w", str(rwork), "-o", str(args.out / "cold"),
                       "--device", devices[-1])
    rframes = frames_in(rwork, "preprocess") - 1  # the driver's frames (minus the photo)
    row("reenact, no caches", devices[-1], wall, rframes, 1, proc)
    outputs: dict[str, Path] = {}
    for dev in devices:
        for batch in (["16"] if dev == "cpu" else ["16", "64", "128"]):
            out = args.out / f"reenact_{dev}_{batch}"
            wall, proc = thead("reenact", str(source), str(driver), "-w", str(rwork), "-o", str(out), "--device",
                               dev, "--batch-size", batch, "--force")
            row(f"reenact, caches present, batch {batch}", dev, wall, rframes, 1, proc)
            found = sorted(out.glob("*.mp4"))
            if found:
                outputs[f"{dev}_{batch}"] = found[0]
    if "cpu_16" in outputs and "cuda_16" in outputs:
        a, b = read_video(outputs["cpu_16"]), read_video(outputs["cuda_16"])
        checks["reenact: PSNR cpu vs cuda output dB"] = round(psnr(a, b), 2)

    # 4b. one photo x many short clips: pair by pair, and grouped (one stream of batches, --group-items).
    short = inputs.parent / "short"
    short.mkdir()
    for c in clips[:8]:
        os.symlink(c.resolve(), short / c.name)
    sframes = sum(int(json.loads(m.read_text()).get("num_frames") or 0)
                  for m in work.glob("*/preprocess/meta.json") if (short / f"{m.parent.parent.name}.mp4").exists())
    for dev in devices:
        for group in (["1"] if dev == "cpu" else ["1", "8"]):
            wall, proc = thead("reenact", str(source), str(short), "-w", str(work), "-o",
                               str(args.out / f"short_{dev}_{group}"), "--device", dev, "--group-items", group,
                               "--force")
            row(f"reenact photo x {len(list(short.iterdir()))} clips, group {group}", dev, wall, sframes,
                len(list(short.iterdir())), proc)

    # 5. evaluate a self-reenactment against its driver (no identity network: it is not on this machine's path).
    self_out = args.out / "self"
    wall, proc = thead("reenact", str(driver), str(driver), "-w", str(rwork), "-o", str(self_out), "--device",
                       devices[-1])
    gen = sorted(self_out.glob("*.mp4"))
    if gen:
        for dev in devices:
            wall, proc = thead("evaluate", str(gen[0]), str(driver), "--protocol", "self", "--no-identity", "-w",
                               str(rwork), "--device", dev, "--report", str(args.out / f"eval_{dev}.json"))
            row("evaluate (self, no CSIM)", dev, wall, rframes, 1, proc)

    load_after = subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()
    head = (f"thead device benchmark: {os.cpu_count()} CPUs, GPU {gpu}, torch {torch.__version__}\n"
            f"load before: {load_before}\nload after:  {load_after}\n")
    lines = [head, "| step | device | wall s | frames | items | frames/s | items/s | exit |",
             "| --- | --- | --- | --- | --- | --- | --- | --- |"]
    for r in rows:
        lines.append(f"| {r['step']} | {r['device']} | {r['wall_s']} | {r['frames']} | {r['items']} | "
                     f"{r['frames_per_s']} | {r['items_per_s']} | {r['exit']} |")
    ratio = {}
    for r in rows:
        if r["device"] == "cuda" and r["frames_per_s"]:
            base = next((c for c in rows if c["device"] == "cpu" and c["step"].split(", batch")[0] ==
                         r["step"].split(", batch")[0] and c["frames_per_s"]), None)
            if base:
                ratio[r["step"]] = round(r["frames_per_s"] / base["frames_per_s"], 2)
    lines.append("\nCUDA / CPU frames/s: " + json.dumps(ratio))
    lines.append("checks: " + json.dumps(checks))
    text = "\n".join(lines)
    print(text)
    (args.out / "table.md").write_text(text)
    if args.json:
        args.json.write_text(json.dumps({"rows": rows, "ratio": ratio, "checks": checks, "gpu": gpu,
                                         "cpus": os.cpu_count(), "load_before": load_before,
                                         "load_after": load_after}, indent=1))


if __name__ == "__main__":
    main()

"""Throughput of thead.metrics: frames per second of the pixel, landmark and face-model metrics.

    python bench/bench_metrics.py                       # 256x256, 200 frame pairs, CPU
    python bench/bench_metrics.py --threads 2 --frames 400
    python bench/bench_metrics.py --video ../shared/data/videos/d0.mp4 --csim

Frames are the astronaut portrait with per-frame shifts and noise (or the first frames of ``--video``), resized
to ``--size``. Landmarks and face-model arrays are synthetic (their cost does not depend on content).
The total is the rate of running all of pixel + landmark + face-model metrics on every frame pair.
"""

from __future__ import annotations

import argparse
import time
from typing import Callable

import numpy as np
import torch


def _frames(n: int, size: int, video: str | None, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    import cv2

    rng = np.random.default_rng(seed)
    if video:
        from thead.io import iter_frames

        base = np.stack([cv2.resize(f, (size, size), interpolation=cv2.INTER_AREA)
                         for f in iter_frames(video, max_frames=n)])
        base = np.concatenate([base] * int(np.ceil(n / len(base))))[:n]
    else:
        from skimage import data

        face = cv2.resize(data.astronaut()[0:300, 100:400], (size, size), interpolation=cv2.INTER_AREA)
        base = np.stack([np.roll(face, int(s), axis=1) for s in rng.integers(-4, 5, n)])
    noisy = np.clip(base + rng.normal(0, 6, base.shape), 0, 255).astype(np.uint8)
    return noisy, base


def _time(fn: Callable[[], object], repeats: int) -> float:
    """Best wall-clock seconds of ``repeats`` runs (after one warm-up); also adds CPU seconds to ``_CPU``."""
    fn()  # warm-up
    best, best_cpu = float("inf"), float("inf")
    for _ in range(repeats):
        t0, c0 = time.perf_counter(), time.process_time()
        fn()
        wall, cpu = time.perf_counter() - t0, time.process_time() - c0
        if wall < best:
            best, best_cpu = wall, cpu
    _CPU.append(best_cpu)
    return best


_CPU: list[float] = []  # CPU seconds of the best run of each _time call (to spot a busy machine)


def _loadavg() -> str:
    try:
        with open("/proc/loadavg") as fh:
            return fh.read().split()[0]
    except OSError:
        return "n/a"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--frames", type=int, default=200, help="frame pairs per run (default 200)")
    parser.add_argument("--size", type=int, default=256, help="frame side in pixels (default 256)")
    parser.add_argument("--device", default="cpu", help="torch device for the pixel metrics (default cpu)")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    parser.add_argument("--batch-size", type=int, default=8, help="frames per torch batch (default 8)")
    parser.add_argument("--repeats", type=int, default=3, help="timed runs, best kept (default 3)")
    parser.add_argument("--video", default=None, help="take frames from this video instead of the astronaut")
    parser.add_argument("--csim", action="store_true", help="also time dlib CSIM (detection + embedding)")
    args = parser.parse_args(argv)

    if args.threads:
        torch.set_num_threads(args.threads)
    from thead import metrics as M

    n, size = args.frames, args.size
    gen, ref = _frames(n, size, args.video)
    rng = np.random.default_rng(1)
    lm_ref = rng.uniform(0, size, size=(n, 478, 3))
    lm_gen = lm_ref + rng.normal(0, 1.5, lm_ref.shape)
    exp_g, exp_r = rng.normal(size=(n, 64)), rng.normal(size=(n, 64))
    pose_g, pose_r = rng.uniform(-30, 30, (n, 3)), rng.uniform(-30, 30, (n, 3))
    tr_g, tr_r = rng.normal(size=(n, 3)), rng.normal(size=(n, 3))
    gaze_g, gaze_r = rng.uniform(-20, 20, (n, 2, 2)), rng.uniform(-20, 20, (n, 2, 2))
    au_g, au_r = rng.uniform(0, 1, (n, 17)), rng.uniform(0, 1, (n, 17))
    shape_g, shape_r = rng.normal(size=(4, 478, 3)), rng.normal(size=(4, 478, 3))

    groups: dict[str, Callable[[], object]] = {
        "pixel (l1+psnr+ssim+ms_ssim)": lambda: M.pixel_metrics(gen, ref, batch_size=args.batch_size,
                                                                device=args.device),
        "landmark (akd+lmd)": lambda: (M.akd(lm_gen, lm_ref), M.lmd(lm_gen, lm_ref)),
        "face model (aed+apd+gaze+au)": lambda: (M.aed(exp_g, exp_r), M.pose_distance(pose_g, pose_r, tr_g, tr_r),
                                                 M.gaze_distance(gaze_g, gaze_r), M.au_agreement(au_g, au_r)),
        "temporal (jitter+flicker)": lambda: (M.landmark_jitter(lm_gen), M.landmark_jitter(lm_gen, "highpass"),
                                              M.luminance_flicker(gen)),
    }
    print(f"thead.metrics benchmark: {n} frame pairs {size}x{size}, device {args.device}, "
          f"torch threads {torch.get_num_threads()}")
    total = 0.0
    for name, fn in groups.items():
        sec = _time(fn, args.repeats)
        total += sec
        print(f"  {name:32s} {n / sec:10.1f} frames/s   ({1000 * sec / n:.3f} ms/frame wall, "
              f"{1000 * _CPU[-1] / n:.3f} ms/frame CPU)")
    total_cpu = sum(_CPU)
    print(f"  {'all of the above':32s} {n / total:10.1f} frames/s   ({1000 * total / n:.3f} ms/frame wall, "
          f"{1000 * total_cpu / n:.3f} ms/frame CPU)")
    print(f"  (load average now {_loadavg()}: other processes on the machine lower the wall-clock rates)")
    avd = _time(lambda: M.identity_shape_distance(shape_g, shape_r), args.repeats) / len(shape_g)
    print(f"  {'identity shape (AVD), per pair':32s} {1 / avd:10.1f} pairs/s")
    individual = {"ssim": M.ssim, "ms_ssim": M.ms_ssim, "psnr": M.psnr, "l1": M.l1}
    for name, fn in individual.items():
        sec = _time(lambda fn=fn: fn(gen, ref, device=args.device), 1)
        print(f"    {name:30s} {n / sec:10.1f} frames/s alone")
    if args.csim:
        emb = M.DlibFaceEmbedder()
        k = min(n, 50)
        sec = _time(lambda: M.csim(gen[:k], ref[:1], emb), 1)
        print(f"  {'csim (dlib detect+embed)':32s} {k / sec:10.1f} frames/s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""Frames per second of the rendering core: rasterise, mesh warp, dense flow, layers, whole render_head.

    python bench/bench_render.py                      # CPU (and CUDA when available), 256x256, batch 16
    python bench/bench_render.py --size 512 --batch 8 --device cpu --threads 2

Targets are the astronaut's MediaPipe mesh, turned, nodding, opening the mouth and shifting gaze by random amounts,
so triangles fold and layers have work to do. Prints ms per frame and frames/s per stage, each stage's share of
the whole render, and the CUDA / CPU speed ratio when both ran.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable

import numpy as np
import torch


def astronaut_face(size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The astronaut as a size x size face crop [1, 3, S, S] and its 478 points [1, 478, 3] in crop pixels."""
    import cv2
    import mediapipe as mp
    from skimage import data

    img = data.astronaut()
    with mp.solutions.face_mesh.FaceMesh(static_image_mode=True, refine_landmarks=True) as fm:
        res = fm.process(img)
    H, W = img.shape[:2]
    pts = np.array([[p.x * W, p.y * H, p.z * W] for p in res.multi_face_landmarks[0].landmark])
    centre = pts[:468, :2].mean(0)
    side = int(round(2.2 * np.ptp(pts[:468, :2], axis=0).max()))
    x0, y0 = max(int(round(centre[0] - side / 2)), 0), max(int(round(centre[1] - side / 2)), 0)
    s = size / side
    crop = cv2.resize(img[y0:y0 + side, x0:x0 + side], (size, size), interpolation=cv2.INTER_AREA)
    v = pts.copy()
    v[:, 0], v[:, 1], v[:, 2] = (pts[:, 0] - x0) * s, (pts[:, 1] - y0) * s, pts[:, 2] * s
    image = torch.from_numpy(crop).permute(2, 0, 1).float().div(255)[None]
    return image, torch.tensor(v, dtype=torch.float32)[None]


def moved_targets(v: torch.Tensor, batch: int, seed: int = 0) -> torch.Tensor:
    """[batch, 478, 3] random head turns (+-15 deg), nods (+-10 deg), mouth openings and gaze shifts of v."""
    from thead.face.topology import LIPS_INNER, MOUTH_CORNERS

    rng = np.random.default_rng(seed)
    base = v[0].numpy().astype(np.float64)
    fs = np.ptp(base[:468, 1])
    out = []
    for _ in range(batch):
        p = base.copy()
        c = p[:468].mean(0)
        pivot = c[2] + 0.55 * fs
        yaw, pitch = np.deg2rad(rng.uniform(-15, 15)), np.deg2rad(rng.uniform(-10, 10))
        x, y, z = p[:, 0] - c[0], p[:, 1] - c[1], p[:, 2] - pivot
        x, z = x * np.cos(yaw) + z * np.sin(yaw), -x * np.sin(yaw) + z * np.cos(yaw)
        y, z = y * np.cos(pitch) + z * np.sin(pitch), -y * np.sin(pitch) + z * np.cos(pitch)
        p[:, 0], p[:, 1], p[:, 2] = x + c[0], y + c[1], z + pivot
        jaw = np.clip((p[:468, 1] - p[MOUTH_CORNERS, 1].mean()) / (0.04 * fs), 0, 1)
        jaw[LIPS_INNER[:11]] = 0
        p[:468, 1] += jaw * rng.uniform(0, 0.12) * fs
        p[468:, :2] += rng.uniform(-2, 2, size=2)
        out.append(p)
    return torch.tensor(np.stack(out), dtype=torch.float32)


def timed(fn: Callable[[], object], device: torch.device, repeats: int) -> float:
    """Best wall time (s) of ``repeats`` calls after one warm-up (best-of: robust to other load on the host)."""
    fn()
    best = float("inf")
    for _ in range(repeats):
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        t = time.perf_counter()
        fn()
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        best = min(best, time.perf_counter() - t)
    return best


def run(device: torch.device, size: int, batch: int, repeats: int) -> dict[str, float]:
    from thead.face.topology import mesh_triangles
    from thead.render import (
        closed_mesh_triangles,
        composite_layers,
        dense_backward_flow,
        mesh_warp_maps,
        prepare_source,
        rasterize,
        render_head,
        warp_image,
    )

    image, v = astronaut_face(size)
    image, v = image.to(device), v.to(device)
    dst = moved_targets(v.cpu(), batch).to(device)
    source = prepare_source(image, v)
    maps = mesh_warp_maps(v, dst, closed_mesh_triangles(), size, size)
    base = warp_image(source.warp_image, maps.grid)
    stages: dict[str, Callable[[], object]] = {
        "rasterize (854 tris)": lambda: rasterize(dst, mesh_triangles(), size, size),
        "mesh_warp_maps": lambda: mesh_warp_maps(v, dst, closed_mesh_triangles(), size, size),
        "dense_backward_flow": lambda: dense_backward_flow(v, dst, size, size),
        "warp_image": lambda: warp_image(source.warp_image, maps.grid),
        "composite_layers": lambda: composite_layers(base, source, dst),
        "render_head (all)": lambda: render_head(source, dst),
    }
    with torch.no_grad():
        return {name: timed(fn, device, repeats) / batch for name, fn in stages.items()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--size", type=int, default=256, help="frame size in pixels (square)")
    ap.add_argument("--batch", type=int, default=16, help="frames per call")
    ap.add_argument("--repeats", type=int, default=5, help="timed calls per stage (best is reported)")
    ap.add_argument("--device", choices=["cpu", "cuda", "all"], default="all")
    ap.add_argument("--threads", type=int, default=0, help="torch CPU threads (0 = torch default)")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    devices = [torch.device("cpu")] if args.device in ("cpu", "all") else []
    if args.device in ("cuda", "all"):
        if torch.cuda.is_available():
            devices.append(torch.device("cuda"))
        elif args.device == "cuda":
            raise SystemExit("CUDA requested but not available")
    print(f"size {args.size}x{args.size}, batch {args.batch}, best of {args.repeats}, "
          f"torch {torch.__version__}, CPU threads {torch.get_num_threads()}")
    results = {}
    for dev in devices:
        res = run(dev, args.size, args.batch, args.repeats)
        results[dev.type] = res
        total = res["render_head (all)"]
        print(f"\n[{dev.type}]")
        print(f"{'stage':<24}{'ms/frame':>10}{'frames/s':>11}{'share of all':>14}")
        for name, sec in res.items():
            print(f"{name:<24}{sec * 1e3:>10.2f}{1.0 / sec:>11.1f}{sec / total:>13.0%}")
    if "cpu" in results and "cuda" in results:
        print("\ncuda speed-up over cpu (x):")
        for name in results["cpu"]:
            print(f"  {name:<24}{results['cpu'][name] / results['cuda'][name]:>8.1f}")


if __name__ == "__main__":
    main()

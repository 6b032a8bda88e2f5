"""Full-frame fidelity of ``thead reenact --paste-back``: self-reenactment of every clip of the shared media.

    python bench/bench_paste_back.py                       # every clip, whole; sheets in /tmp/paste_back_check
    python bench/bench_paste_back.py --max-frames 100      # the first 100 frames of each clip (faster)
    python bench/bench_paste_back.py --data ../shared/data --out /tmp/pb --work /tmp/pb_work --threads 2
    python bench/bench_paste_back.py --enlarge 1.3     # tight crops: the head carries hair across the crop's edge

Each clip of videos/ is its own source (its first frame) and driver, through the reenact job itself
(``thead.jobs.reenact.reenact_pair`` with ``RenderOptions(paste_back=True)``, as ``thead reenact CLIP CLIP
--paste-back`` runs it). The written video is compared with the clip's real full frames:

* ``out`` L1 / PSNR: the output against the real frames 1..T-1 (full frames, intensities in [0, 1]; PSNR per
  frame, capped at 60 dB, averaged);
* ``hold`` L1 / PSNR: the first frame held still against the same frames (the baseline the output must beat);
* ``f0 PSNR``: frame 0 of the output against the real frame 0 (a self-reenactment's frame 0 is the source
  itself: only the H.264 encode may differ);
* ``still``: mean frame-to-frame change (8-bit levels) of the output over the pixels that stay still in the real
  clip (every frame within 6 levels of the first, and not next to anything that moves): how much still background
  the output moves; ``dY out/real``: mean frame-to-frame change of the whole output frame against the real clip's.

A contact sheet per clip (real | output | 4x |output - real|, at frame 0 and five more) goes to --out.
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
os.environ.setdefault("GLOG_minloglevel", "2")

PSNR_CAP = 60.0


def psnr(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Per-frame PSNR (dB, capped at ``PSNR_CAP``) of uint8 frames [T, H, W, 3]."""
    mse = ((a.astype(np.float32) - b.astype(np.float32)) / 255.0) ** 2
    mse = mse.reshape(len(a), -1).mean(1)
    return np.minimum(10.0 * np.log10(1.0 / np.maximum(mse, 1e-12)), PSNR_CAP)


def l1(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Per-frame mean absolute difference of uint8 frames [T, H, W, 3], intensities in [0, 1]."""
    return (np.abs(a.astype(np.float32) - b.astype(np.float32)) / 255.0).reshape(len(a), -1).mean(1)


def still_pixels(real: np.ndarray, levels: float = 6.0, grow: int = 8) -> np.ndarray:
    """bool [H, W]: pixels every real frame keeps within ``levels`` of the first, ``grow`` pixels off anything
    that changes."""
    from scipy.ndimage import binary_dilation

    moving = np.zeros(real.shape[1:3], bool)
    first = real[0].astype(np.int16)
    for frame in real[1:]:
        moving |= (np.abs(frame.astype(np.int16) - first) > levels).any(-1)
    return ~binary_dilation(moving, iterations=grow)


def frame_change(frames: np.ndarray, where: np.ndarray | None = None) -> float:
    """Mean |frame t+1 - frame t| in 8-bit levels over ``where`` (bool [H, W]; None: all pixels)."""
    total, count = 0.0, 0
    for a, b in zip(frames[:-1], frames[1:]):
        d = np.abs(b.astype(np.int16) - a.astype(np.int16)).mean(-1)
        d = d if where is None else d[where]
        total += float(d.sum())
        count += d.size
    return total / max(count, 1)


def trimmed(path: Path, frames: int, work: Path) -> Path:
    """The first ``frames`` frames of ``path`` as a lossless H.264 file in ``work`` (the clip itself when 0)."""
    if frames <= 0:
        return path
    out = work / "clips" / f"{path.stem}.mp4"
    if not out.is_file():
        out.parent.mkdir(parents=True, exist_ok=True)
        subprocess.run(["ffmpeg", "-v", "error", "-y", "-i", str(path), "-frames:v", str(frames), "-c:v", "libx264",
                        "-qp", "0", "-pix_fmt", "yuv444p", "-c:a", "copy", str(out)], check=True)
    return out


def measure(clip: Path, work: Path, out_dir: Path, device: str | None, enlarge: float | None = None) -> dict:
    """Self-reenact ``clip`` with paste-back through the reenact job and compare with its real frames (crops of
    ``enlarge`` times the face's box; None: the preprocess default)."""
    from thead.io import read_frames, write_image
    from thead.jobs.pairs import Pair
    from thead.jobs.reenact import ReenactParams, reenact_pair
    from thead.jobs.render import RenderOptions
    from thead.stages import FitParams, InputItem, PreprocessParams

    item = InputItem(clip, clip.stem)
    out = out_dir / f"{clip.stem}.mp4"
    t0 = time.perf_counter()
    pre = PreprocessParams() if enlarge is None else PreprocessParams(enlarge=enlarge)
    result = reenact_pair(Pair(item, item), work, out_dir, pre, FitParams(), ReenactParams(),
                          RenderOptions(paste_back=True, device=device), force=True, out_file=out)
    if result.status != "done":
        raise RuntimeError(f"{clip}: {result.status} {result.message}")
    seconds = time.perf_counter() - t0
    real, gen = read_frames(clip), read_frames(out)
    n = min(len(real), len(gen))
    real, gen = real[:n], gen[:n]
    hold = np.broadcast_to(real[:1], real.shape)
    still = still_pixels(real)
    row = {"frames": n, "seconds": round(seconds, 1),
           "out_L1": float(l1(gen[1:], real[1:]).mean()), "out_PSNR": float(psnr(gen[1:], real[1:]).mean()),
           "hold_L1": float(l1(hold[1:], real[1:]).mean()), "hold_PSNR": float(psnr(hold[1:], real[1:]).mean()),
           "f0_PSNR": float(psnr(gen[:1], real[:1])[0]), "still_share": float(still.mean()),
           "still_out": frame_change(gen, still), "still_real": frame_change(real, still),
           "dY_out": frame_change(gen), "dY_real": frame_change(real)}
    pick = np.unique(np.r_[0, np.linspace(1, n - 1, 5).round().astype(int)])
    rows = [np.concatenate([real[k], gen[k], np.clip(4 * np.abs(gen[k].astype(np.int16) - real[k]), 0, 255)
                            .astype(np.uint8)], 1) for k in pick]
    write_image(out_dir / f"paste_back_{clip.stem}.png", np.concatenate(rows, 0)[::2, ::2])
    return row


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, default=Path(os.environ.get("THEAD_TEST_DATA", REPO.parent / "shared" /
                                                                  "data")))
    ap.add_argument("--out", type=Path, default=Path("/tmp/paste_back_check"), help="outputs, sheets, results.json")
    ap.add_argument("--work", type=Path, default=Path("/tmp/paste_back_work"), help="stage caches")
    ap.add_argument("--max-frames", type=int, default=0, help="only the first N frames of each clip (0: all)")
    ap.add_argument("--clips", nargs="*", default=None, help="clip names (stems) to run (default: all)")
    ap.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    ap.add_argument("--device", default=None)
    ap.add_argument("--enlarge", type=float, default=None,
                    help="crop side over the face's box (default: preprocess's, 1.8); e.g. 1.3 for tight crops whose "
                         "edges cut the hair, as a photo's crop often does")
    args = ap.parse_args()
    if not (args.data / "videos").is_dir():
        print(f"shared media not found at {args.data} (set --data or THEAD_TEST_DATA): nothing to measure")
        return
    import torch

    torch.set_num_threads(args.threads)
    args.out.mkdir(parents=True, exist_ok=True)
    results = {}
    cols = ("out_L1", "hold_L1", "out_PSNR", "hold_PSNR", "f0_PSNR", "still_out", "still_real", "dY_out", "dY_real")
    print(f"{'clip':<34}{'frames':>7}" + "".join(f"{c:>11}" for c in cols) + "  beats hold")
    for clip in sorted((args.data / "videos").glob("*.mp4")):
        if args.clips and clip.stem not in args.clips:
            continue
        r = measure(trimmed(clip, args.max_frames, args.work), args.work, args.out, args.device, args.enlarge)
        r["beats_hold"] = bool(r["out_L1"] < r["hold_L1"] and r["out_PSNR"] > r["hold_PSNR"])
        results[clip.stem] = r
        print(f"{clip.stem:<34}{r['frames']:>7}" + "".join(f"{r[c]:>11.4f}" for c in cols)
              + f"  {'yes' if r['beats_hold'] else 'NO'}", flush=True)
    print(f"all clips beat holding the first frame: {'yes' if all(r['beats_hold'] for r in results.values()) else 'NO'};"
          f" frame 0 >= 35 dB: {'yes' if all(r['f0_PSNR'] >= 35 for r in results.values()) else 'NO'}")
    (args.out / "results.json").write_text(json.dumps(results, indent=2))
    print(f"sheets and results.json in {args.out}")


if __name__ == "__main__":
    main()

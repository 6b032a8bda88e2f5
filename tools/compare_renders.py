"""PSNR and mean |difference| between two renders of the same job (videos or images), e.g. on CUDA and on the CPU.

    python tools/compare_renders.py A.mp4 B.mp4 [sheet.png]

Prints frame counts, the mean and 99.9th percentile absolute difference (8-bit levels), the largest, and the PSNR
over all frames and of the worst frame; with a sheet path, four frames: A | B | 8x |A - B|. Maintenance script: not
imported by the package.
"""
import sys
from pathlib import Path

import numpy as np
from PIL import Image
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from thead.io.video import read_frames  # noqa: E402


def load(p):
    if p.endswith(".png") or p.endswith(".jpg"):
        return np.asarray(Image.open(p).convert("RGB"))[None]
    return read_frames(p)


a, b = load(sys.argv[1]), load(sys.argv[2])
n = min(len(a), len(b))
d = np.abs(a[:n].astype(np.float64) - b[:n].astype(np.float64))
mse = (d ** 2).mean()
psnr = 10 * np.log10(255.0 ** 2 / mse) if mse > 0 else float("inf")
per = [10 * np.log10(255.0 ** 2 / (x ** 2).mean()) if (x ** 2).mean() > 0 else float("inf") for x in d]
print(f"{sys.argv[1]} vs {sys.argv[2]}: frames {len(a)}/{len(b)} mean|d| {d.mean():.3f} levels, "
      f"p99.9 {np.percentile(d, 99.9):.1f}, max {d.max():.0f}, PSNR {psnr:.2f} dB (worst frame {min(per):.2f})")
if len(sys.argv) > 3:
    idx = np.linspace(0, n - 1, 4).astype(int)
    rows = [np.concatenate([a[i], b[i], np.clip(d[i] * 8, 0, 255).astype(np.uint8)], 1) for i in idx]
    Image.fromarray(np.concatenate(rows, 0)).resize((3 * 256, 4 * 256)).save(sys.argv[3])

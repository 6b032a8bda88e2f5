"""Where a self-reenactment puts the face's parts against the real frames, measured on the pictures themselves.

    python tools/measure_render_geometry.py [--data ../shared/data] [--work /tmp/render_geometry] [--clips WDA d3]

Each clip of the shared media (256x256 vox crops as ``bench/bench_reenact.py`` makes them) is fitted, its first
frame prepared as ``thead reenact`` prepares a source, and every frame rendered at the clip's own motion
(``transfer_motion(fit, fit)``). Around chosen mesh points of the asked target mesh, a ``2 * --half`` pixel patch of
the rendered frame is registered to the same patch of the real frame (phase correlation, a tenth of a pixel): the
shift is how far the render put what the real frame shows there, with no landmark reader involved (a reader's
reading of a render can differ from the real one's for reasons of its own). Frames 1.. every ``--step``; patches
with too little texture (grey-level spread under 2) are left out.

Printed per clip and point: the mean shift of the output from the real frame (dy down, dx right, crop pixels at
256) and the mean length of the shift; for the nose tip, the mean dy on the third of the frames whose mouth is
most closed and on the third most open. On the shared clips (mesh-27 engine, 40 s on two cores): the nose is the
part that lands worst inside the face. WDA: eyes and cheeks within 0.2 px, the nose tip, nostrils and philtrum
1.1-1.6 px low (+2.0 on its most closed third, +0.9 on its most open: its source frame's mouth is open, and
MediaPipe places its nose vertex differently as the mouth opens), the lower lip 1.1 px low, the jaw's outline 4 px
off where the head turns; d12: the nose 1.3 px high whatever the mouth does (its head turns far); d3: the nose and
philtrum 1.1-1.5 px aside; d0: everything within 0.5 px but the eye corners (0.9) and the right jaw (1.6).
Maintenance script: not imported by the package.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "bench"))

from thead.render.lip_border import mouth_opening  # noqa: E402

POINTS = {
    "nose tip": 1, "nostril (right)": 98, "nostril (left)": 327, "below the nose": 2, "philtrum": 164,
    "upper lip": 0, "lower lip": 17, "mouth corner (right)": 61, "mouth corner (left)": 291,
    "eye corner (right)": 33, "eye corner (left)": 263, "brow (right)": 105, "cheek (right)": 50,
    "cheek (left)": 280, "bridge": 168, "forehead": 10, "jaw (right)": 172, "jaw (left)": 397, "chin": 152,
}
NOSE_TIP = 1


def patch_shift(real: np.ndarray, out: np.ndarray, x: float, y: float, half: int) -> np.ndarray | None:
    """(dy, dx) pixels by which ``out``'s grey patch around (x, y) sits from ``real``'s, or None (off the frame,
    or too little texture to register)."""
    from skimage.registration import phase_cross_correlation

    cx, cy = int(round(x)), int(round(y))
    a = real[cy - half:cy + half, cx - half:cx + half]
    b = out[cy - half:cy + half, cx - half:cx + half]
    if a.shape != (2 * half, 2 * half) or b.shape != a.shape or a.std() < 2.0:
        return None
    shift, _, _ = phase_cross_correlation(a, b, upsample_factor=10, normalization=None)
    return -np.asarray(shift, np.float64)  # the shift that registers out onto real, turned round


def measure_clip(clip, engine, half: int, step: int) -> None:
    import bench_reenact

    _, _, _, rendered, asked = bench_reenact.own_motion_render(engine, clip)
    n = len(clip.frames)
    grey_real = clip.frames[:n].astype(np.float64).mean(-1)
    grey_out = rendered.astype(np.float64).mean(-1)
    frames = np.arange(1, n, step)
    print(f"{clip.name}: {len(frames)} of {n} frames")
    print("  point: output - real, mean dy dx (px at 256) | mean length | patches")
    tip = None
    for name, v in POINTS.items():
        shifts, kept = [], []
        for f in frames:
            s = patch_shift(grey_real[f], grey_out[f], asked[f, v, 0], asked[f, v, 1], half)
            if s is not None:
                shifts.append(s)
                kept.append(f)
        if not shifts:
            print(f"    {name:22s} (no patch with texture)")
            continue
        s = np.array(shifts)
        print(f"    {name:22s} dy {s[:, 0].mean():+5.2f} dx {s[:, 1].mean():+5.2f} | {np.linalg.norm(s, axis=1).mean():4.2f}"
              f" | {len(s)}")
        if v == NOSE_TIP:
            tip = (np.array(kept), s[:, 0])
    if tip is not None:
        import torch

        opening = mouth_opening(torch.as_tensor(asked[tip[0], :, :2])).numpy()
        lo, hi = np.quantile(opening, [1 / 3, 2 / 3])
        print(f"  nose tip dy: mouth most closed third {tip[1][opening <= lo].mean():+.2f}, most open third "
              f"{tip[1][opening >= hi].mean():+.2f} (the source frame's opening {float(mouth_opening(torch.as_tensor(asked[:1, :, :2]))[0]):.2f}, "
              f"these frames {opening.min():.2f}-{opening.max():.2f} eye widths)")


def main(argv: list[str] | None = None) -> int:
    import bench_reenact

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    bench_reenact.add_clip_options(ap, Path("/tmp/render_geometry"))
    ap.add_argument("--half", type=int, default=10, help="Half the side of a registered patch, pixels at 256.")
    ap.add_argument("--step", type=int, default=2, help="Every this many frames.")
    args = ap.parse_args(argv)
    return bench_reenact.measure_clips(args, lambda clip, engine: measure_clip(clip, engine, args.half, args.step))


if __name__ == "__main__":
    raise SystemExit(main())

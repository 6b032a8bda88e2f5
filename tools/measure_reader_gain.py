"""How much of a small local motion MediaPipe's landmarks read back: the ground for ``READ_GAINS``.

    python tools/measure_reader_gain.py [--data ../shared/data] [--work /tmp/reader_gain]

Each picture of the shared media (the first crop of every clip, every photo; 256x256 vox crops as
``bench/bench_reenact.py`` makes them) is warped by a known smooth displacement of one face region, with no renderer
involved: a Gaussian bump (sigma a few pixels) centred on the region's landmarks, moving them by exactly the asked
amount. MediaPipe (still-image mode) reads the original and the warped picture; the gain is the read displacement
of the region's landmarks projected on the asked one, over the asked one's square (1 = read in full). Prints one
row per picture and the median per region.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import cv2
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "bench"))

from thead.face import topology as T  # noqa: E402
from thead.face.landmarks import detect_landmarks  # noqa: E402

# (name, landmark indices, displacement (dx, dy) px, bump sigma px); None: each mouth corner moved outwards 2 px.
REGIONS = [
    ("brows up 2 px", np.r_[T.LEFT_BROW, T.RIGHT_BROW], (0.0, -2.0), 5.0),
    ("brows down 2 px", np.r_[T.LEFT_BROW, T.RIGHT_BROW], (0.0, 2.0), 5.0),
    ("upper lids up 1 px", np.r_[T.LEFT_EYE[9:], T.RIGHT_EYE[9:]], (0.0, -1.0), 2.0),
    ("lower lids down 1 px", np.r_[T.LEFT_EYE[1:8], T.RIGHT_EYE[1:8]], (0.0, 1.0), 2.0),
    ("mouth corners out 2 px", None, None, 3.0),
    ("lower lip down 2 px", np.array([17, 84, 181, 91, 314, 405, 321, 14, 87, 178, 317, 402]), (0.0, 2.0), 3.0),
    ("chin down 2 px", np.array([152, 148, 377, 176, 400, 149, 378, 150, 379]), (0.0, 2.0), 6.0),
]


def region_gain(img: np.ndarray, lm: np.ndarray, points: np.ndarray | None, shift: tuple[float, float] | None,
                sigma: float) -> float:
    """Read / asked displacement of ``points`` after warping ``img`` (uint8 [H, W, 3]) by the bump."""
    H, W = img.shape[:2]
    yy, xx = np.mgrid[0:H, 0:W].astype(np.float32)
    centres = lm[:, :2] - 0.5  # landmark pixels (centres at i + 0.5) -> remap's integer-centred grid
    if points is None:
        points = np.asarray(T.MOUTH_CORNERS)
        mid = lm[points, 0].mean()
        dx = np.zeros((H, W), np.float32)
        dy = np.zeros((H, W), np.float32)
        asked = np.zeros((len(points), 2))
        for k, p in enumerate(points):
            side = np.sign(lm[p, 0] - mid)
            dx += 2.0 * side * np.exp(-((xx - centres[p, 0]) ** 2 + (yy - centres[p, 1]) ** 2) / (2 * sigma ** 2))
            asked[k] = (2.0 * side, 0.0)
    else:
        c = centres[points]
        d = np.min(np.hypot(xx[..., None] - c[:, 0], yy[..., None] - c[:, 1]), axis=-1)
        bump = np.exp(-d ** 2 / (2 * sigma ** 2))
        dx, dy = shift[0] * bump, shift[1] * bump
        asked = np.tile(np.asarray(shift, np.float64), (len(points), 1))
    warped = cv2.remap(img, (xx - dx).astype(np.float32), (yy - dy).astype(np.float32), cv2.INTER_CUBIC,
                       borderMode=cv2.BORDER_REFLECT)
    read, _ = detect_landmarks(np.stack([img, warped]), static=True)
    got = read[1, points, :2] - read[0, points, :2]
    return float((got * asked).sum() / (asked * asked).sum())


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", type=Path, default=Path(__file__).resolve().parent.parent.parent / "shared" / "data")
    ap.add_argument("--work", type=Path, default=Path("/tmp/reader_gain"))
    args = ap.parse_args(argv)
    import bench_reenact

    clips, photos = bench_reenact.load_inputs(args.data, args.work)
    pictures = [(c.name, c.frames[0], c.landmarks[0]) for c in clips] + [(p.name, p.crop, p.landmarks)
                                                                         for p in photos]
    if not pictures:
        print(f"no pictures under {args.data}")
        return 1
    gains = {name: [] for name, *_ in REGIONS}
    for label, img, lm in pictures:
        row = [region_gain(np.ascontiguousarray(img), lm, pts, shift, sigma) for _, pts, shift, sigma in REGIONS]
        for (name, *_), g in zip(REGIONS, row):
            gains[name].append(g)
        print(f"{label[:24]:24s} " + "  ".join(f"{g:5.2f}" for g in row))
    for name, values in gains.items():
        print(f"{name:24s} median {np.median(values):.2f}  range {min(values):.2f} - {max(values):.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

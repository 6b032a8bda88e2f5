"""Measure where the lips' vermilion border lies against MediaPipe's outer-lip contour, frame by frame, and how that
offset changes with the mouth's opening: the data behind ``thead.render.lip_border.LIP_BORDER_SLOPE_MEASURED``.

    python tools/measure_lip_border.py ../shared/data/videos/d0.mp4 d3.mp4 d12.mp4 WDA_....mp4 --work /tmp/lipb

Each video is preprocessed (256 crops, cached in --work). In every frame, along the outward normal of each of the
20 outer-lip contour points, the crop's colour is read as a lip share (0 at the skin ring's median Lab colour, 1 at
the lip band's, along their difference with lightness at a quarter weight) from -6 to +6 px; the border is the
crossing of 1/2 nearest the contour (positive: outside it). Offsets are in % of the eye width (outer eye corners).
Per clip it prints the median offset of the closed frames (opening < ``REST_OPENING``; opening = inner-lip gap over
eye width) and the Theil-Sen slope of the offset's change from there against the opening above ``REST_OPENING``;
then the slopes pooled over the clips (left and right mirrored together), which ``LIP_BORDER_SLOPE_MEASURED`` holds (rounded,
/ 100).
Maintenance script: not imported by the package.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from thead.face.topology import LIPS_INNER, LIPS_OUTER  # noqa: E402
from thead.render.lip_border import REST_OPENING  # noqa: E402

OFFSETS = np.arange(-6.0, 6.01, 0.25)  # px along the normal
# Index of each LIPS_OUTER point's mirror partner in LIPS_OUTER (upper 61..291, lower 375..146).
MIRROR = np.array(list(range(10, -1, -1)) + [30 - i for i in range(11, 20)])


def polygon_mask(points: np.ndarray, size: int) -> np.ndarray:
    from PIL import Image, ImageDraw

    im = Image.new("L", (size, size), 0)
    ImageDraw.Draw(im).polygon([(float(x) - 0.5, float(y) - 0.5) for x, y in points], fill=1)
    return np.asarray(im) > 0


def border_offsets(image: np.ndarray, landmarks: np.ndarray) -> np.ndarray | None:
    """[20] px: the vermilion border's offset from each outer-lip point along its outward normal (NaN: none found)."""
    from scipy.ndimage import binary_dilation, binary_erosion, map_coordinates
    from skimage.color import rgb2lab

    size = image.shape[0]
    lab = rgb2lab(image)
    outer, inner = landmarks[LIPS_OUTER, :2], landmarks[LIPS_INNER, :2]
    lips_in, mouth = polygon_mask(outer, size), polygon_mask(inner, size)
    band = binary_erosion(lips_in, iterations=2) & ~binary_dilation(mouth, iterations=2)
    skin = binary_dilation(lips_in, iterations=9) & ~binary_dilation(lips_in, iterations=4)
    if band.sum() < 20:
        return None
    lip_c, skin_c = np.median(lab[band], 0), np.median(lab[skin], 0)
    step = (lip_c - skin_c) * np.array([0.5, 1.0, 1.0])  # lightness (shading) at a quarter of the weight
    axis = step * np.array([0.5, 1.0, 1.0])
    share = (lab - skin_c) @ axis / max(float(axis @ step), 1e-6)
    centre = outer.mean(0)
    out = np.full(len(outer), np.nan)
    for i in range(len(outer)):
        tangent = outer[(i + 1) % len(outer)] - outer[i - 1]
        normal = np.array([tangent[1], -tangent[0]]) / (np.linalg.norm(tangent) + 1e-9)
        if normal @ (outer[i] - centre) < 0:
            normal = -normal
        pts = outer[i][None] + OFFSETS[:, None] * normal[None]
        prof = map_coordinates(share, [pts[:, 1] - 0.5, pts[:, 0] - 0.5], order=1, mode="nearest")
        cross = np.nonzero((prof[:-1] >= 0.5) & (prof[1:] < 0.5))[0]
        if len(cross):
            x = OFFSETS[cross] + (prof[cross] - 0.5) / (prof[cross] - prof[cross + 1]) * 0.25
            out[i] = x[np.argmin(np.abs(x))]
    return out


def main() -> None:
    from scipy.stats import theilslopes

    from thead.io import read_frames
    from thead.stages import InputItem, PreprocessParams, load_preprocess, preprocess_item

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("videos", nargs="+", type=Path)
    ap.add_argument("--work", type=Path, default=Path("/tmp/lip_border_work"))
    args = ap.parse_args()
    np.set_printoptions(precision=1, suppress=True, linewidth=200)
    print("points           ", LIPS_OUTER)
    xs, ys = [], []
    for path in args.videos:
        preprocess_item(InputItem(path, path.stem), args.work, PreprocessParams(size=256))
        pre = load_preprocess(args.work / path.stem / "preprocess")
        frames, lms = read_frames(pre.crop_path), pre.crop_landmarks
        opening, offsets = [], []
        for image, lm in zip(frames, lms):
            if not np.isfinite(lm).all():
                continue
            found = border_offsets(image, lm)
            if found is None:
                continue
            eye = np.linalg.norm(lm[33, :2] - lm[263, :2])
            opening.append(np.linalg.norm(lm[13, :2] - lm[14, :2]) / eye)
            offsets.append(found / eye * 100.0)
        op, off = np.array(opening), np.array(offsets)
        closed = np.nanmedian(off[op < REST_OPENING], 0)
        x = np.concatenate([op, op]) - REST_OPENING
        change = off - closed  # each frame's offset from the clip's closed-mouth level
        y = np.concatenate([change, change[:, MIRROR]])
        x = np.maximum(x, 0.0)  # closed frames at 0
        slope = [theilslopes(y[np.isfinite(y[:, j]), j], x[np.isfinite(y[:, j])])[0] for j in range(20)]
        print(f"{path.stem[:16]:16s} n={len(op)} opening max {op.max():.2f}")
        print("  closed offset %  ", closed)
        print("  slope %/opening  ", np.array(slope))
        xs.append(x)
        ys.append(y)
    x, y = np.concatenate(xs), np.concatenate(ys)
    pooled = [theilslopes(y[np.isfinite(y[:, j]), j], x[np.isfinite(y[:, j])])[0] for j in range(20)]
    print("pooled slope %/opening", np.array(pooled))


if __name__ == "__main__":
    main()

"""How MediaPipe reads a clip's first frame, found, settled and tracked from its neighbour, as fitted angles and units.

    python tools/measure_first_frame_reading.py ../shared/data/videos/*.mp4 [--work /tmp/first_frame]

Preprocess reads a clip's first frame as the tracker settles on it (``thead.face.track.settle_on_track``: tracked
on its own frame twice, then the mean of 4 more passes), so that a still video's frame 0 reads as its other frames
do. MediaPipe's video-mode tracker keeps its own state from call to call, and on a moving first frame its fixed
point on that frame is not what it reads there coming from the next frame: the reading is hysteretic. A
reenactment maps the source frame's pixels from its reading to every target, so where the first frame's reading
departs from how the tracker reads the frames around it, every rendered frame carries that departure.

Per clip, the first frame is read five ways (full-frame pixels, mapped into the clip's first crop and fitted on
their own with the clip's identity, no smoothing): as found (detector and still-image mesh), as settled (what
preprocess keeps), frame 1 tracked from the settled reading, frame 0 tracked once back from frame 1's reading
(coming from its neighbour, as the tracker reads every later frame), and that reading settled again. Printed:
yaw, pitch, roll (degrees) and the units that differ most from the settled reading.

On the shared clips (2026-11-27): WDA's settled first frame reads yaw -7.1, pitch 9.7, brow_lower 0.27; frame 1
from it -9.1 / 6.8 / 0.17; frame 0 tracked back from frame 1 -8.1 / 9.6 / 0.23; found -9.2 / 7.6 / 0.16; six
more passes return to -7.1 / 9.9 / 0.27 (the fixed point). d0's found frame reads eye_wide 0.40, settled 0.06,
frame 1 0.14 (the offset the settling removed); on d3 and d12 the readings wander by 0.1-0.25 of a unit from pass
to pass. Bisecting WDA's self-reenactment AU agreement over the mesh-fidelity commits put its loss at the commit
that settled the first frame (682b694: AU Hamming .0218 -> .0293, brow_lower frames that differ from the driver
8 -> 19, re-fitted yaw 1.9 -> 3.3 degrees short); the same commit raised d0's PSNR 28.5 -> 30.2 and unit r .86 -> .90. Maintenance script: not imported by the package.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from thead.face.landmarks import make_landmarker  # noqa: E402
from thead.face.track import settle_on_track  # noqa: E402
from thead.fitting import fit_sequence  # noqa: E402
from thead.geometry import Affine2D  # noqa: E402
from thead.io import iter_frames, probe_video  # noqa: E402
from thead.stages import FitParams, InputItem, PreprocessParams, ensure  # noqa: E402


def first_frame_readings(path: Path, settle_again: int = 6) -> dict[str, np.ndarray]:
    """The first face of ``path``'s first frame read five ways: {name: [478, 3] full-frame pixels}."""
    info = probe_video(path)
    frames = [f for _, f in zip(range(2), iter_frames(path, info))]
    with make_landmarker("mediapipe") as marker:
        faces = marker.find_faces(frames[0])
        if not faces:
            raise SystemExit(f"{path}: no face in the first frame")
        found = faces[0]
        settled = settle_on_track(marker, frames[0], found)
        ahead = marker.track(frames[1], settled)
        back = marker.track(frames[0], ahead)
        again = back
        for _ in range(settle_again):
            again = marker.track(frames[0], again)
    return {"found": found, "settled": settled, "frame 1": ahead, "from frame 1": back,
            f"+{settle_again} passes": again}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("clips", nargs="+", type=Path)
    ap.add_argument("--work", type=Path, default=Path("/tmp/first_frame"))
    args = ap.parse_args(argv)
    pre, fitp = PreprocessParams(), FitParams()
    for path in args.clips:
        face = ensure(InputItem(path, path.stem), args.work, pre, fitp)
        readings = first_frame_readings(path)
        crops = Affine2D(face.transforms[0]).apply(np.stack(list(readings.values())))
        fit = fit_sequence(crops, np.ones(len(crops), bool), face.crop_size, smooth=False, identity=face.fit.identity)
        names = list(face.fit.expression_names)
        angles = np.degrees(fit.pose[:, :3])
        ref = list(readings).index("settled")
        # The same columns on every row: the units some reading puts 0.1 or more away from the settled one.
        moved = np.abs(fit.expression - fit.expression[ref]).max(0)
        cols = [j for j in np.argsort(-moved) if moved[j] >= 0.1]
        print(f"{path.name}")
        for k, name in enumerate(readings):
            units = "  ".join(f"{names[j]} {fit.expression[k, j]:+.2f}" for j in cols)
            print(f"  {name:14s} yaw {angles[k, 0]:+6.2f} pitch {angles[k, 1]:+6.2f} roll {angles[k, 2]:+6.2f}   {units}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

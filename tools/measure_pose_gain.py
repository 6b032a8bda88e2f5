"""Measure how much of an asked head rotation the mesh engine shows: render known yaw/pitch/roll sweeps of a
photo, re-fit the rendered video, and regress the fitted angles on the asked ones.

    python tools/measure_pose_gain.py ../shared/data/images/s0.jpg [more photos] --work /tmp/posegain

Per photo and angle it prints the slope (fitted change / asked change) and the std ratio; their mean over photos
is what ``thead.audio.head_motion.RENDER_POSE_GAIN`` holds. The sweep: yaw A sin(2 pi t / 4 s), pitch
A/2 sin(2 pi t / 3 s), roll A/2 sin(2 pi t / 5 s), A = --amplitude degrees, 4 s at 25 fps, through
``thead.audio.motion.compose_targets`` (the head turns about the neck pivot as audio_motion turns it).
Maintenance script: not imported by the package.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from thead.audio.motion import compose_targets  # noqa: E402
from thead.audio.visemes import MOUTH_UNITS, MouthTrack  # noqa: E402
from thead.engines.mesh import MeshEngine  # noqa: E402
from thead.io import VideoWriter  # noqa: E402
from thead.stages import FitParams, InputItem, PreprocessParams, ensure  # noqa: E402


def sweep(n: int, fps: float, amplitude: float) -> np.ndarray:
    t = np.arange(n) / fps
    return np.stack([amplitude * np.sin(2 * np.pi * t / 4.0), 0.5 * amplitude * np.sin(2 * np.pi * t / 3.0),
                     0.5 * amplitude * np.sin(2 * np.pi * t / 5.0)], axis=1)


def measure(photo: Path, work: Path, amplitude: float, fps: float = 25.0, seconds: float = 4.0) -> dict:
    pre, fitp = PreprocessParams(), FitParams()
    face = ensure(InputItem(photo, photo.stem), work, pre, fitp)
    engine = MeshEngine()
    prepared = engine.prepare(face.crop(0), face.crop_landmarks[0], face.fit, frame=0)
    n = int(seconds * fps)
    asked = sweep(n, fps, amplitude)
    mouth = MouthTrack(np.zeros((n, len(MOUTH_UNITS)), np.float32), np.zeros(n, bool), np.zeros(n, bool), 0.0, 0.0)
    targets = compose_targets(face.fit, 0, mouth, np.zeros(n), asked)
    video = work / f"{photo.stem}_sweep.mp4"
    with VideoWriter(video, fps=fps) as w:
        for batch in engine.render_frames(prepared, targets):
            for frame in batch:
                w.write(frame)
    refit = ensure(InputItem(video, video.stem), work, pre, fitp).fit
    got = np.degrees(refit.pose[:, :3].astype(np.float64))
    got -= got[0]
    ok = refit.valid
    out = {"photo": photo.name, "frames": int(ok.sum())}
    for k, name in enumerate(("yaw", "pitch", "roll")):
        a, g = asked[ok, k] - asked[ok, k].mean(), got[ok, k] - got[ok, k].mean()
        out[name] = {"slope": round(float(a @ g / (a @ a)), 3), "std_ratio": round(float(g.std() / a.std()), 3),
                     "r": round(float(np.corrcoef(a, g)[0, 1]), 3)}
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("photos", nargs="+", type=Path)
    ap.add_argument("--work", type=Path, required=True)
    ap.add_argument("--amplitude", type=float, default=10.0)
    args = ap.parse_args(argv)
    rows = [measure(p, args.work, args.amplitude) for p in args.photos]
    for r in rows:
        print(json.dumps(r))
    for name in ("yaw", "pitch", "roll"):
        print(name, "mean slope", round(float(np.mean([r[name]["slope"] for r in rows])), 3),
              "mean std ratio", round(float(np.mean([r[name]["std_ratio"] for r in rows])), 3))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""Train a per-person audio-to-motion model (thead.audio.train) on fitted talking clips, and print its numbers.

    thead fit-3dmm CLIP.mp4 ... -o work
    python tools/train_audio2motion.py work/CLIP ... -o model.safetensors [--subject NAME] [--device cpu]

Each argument is an item folder holding ``fit3dmm/`` (fit.json gives the fps, meta.json the source video whose
audio track is used; a ``.txt`` transcript beside the video is used for forced alignment). All clips are one
subject unless ``--subject-per-clip``. Prints the training report (held-out correlations) as JSON and the
model file's sha256. Maintenance script until ``thead train audio2motion`` exists.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from thead.audio.train import TrainConfig, TrainingClip, train_audio2motion  # noqa: E402
from thead.fitting.result import FitResult  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("items", nargs="+", type=Path)
    ap.add_argument("-o", "--output", type=Path, required=True)
    ap.add_argument("--subject", default="subject")
    ap.add_argument("--subject-per-clip", action="store_true", help="each clip is its own subject")
    ap.add_argument("--device", default=None)
    ap.add_argument("--steps", type=int, default=TrainConfig.steps)
    args = ap.parse_args(argv)
    clips = []
    for item in args.items:
        fit = FitResult.load(item / "fit3dmm")
        source = Path(json.loads((item / "fit3dmm" / "meta.json").read_text())["source"])
        text = source.with_suffix(".txt")
        clips.append(TrainingClip(audio=source, fps=float(fit.fps), expression=fit.expression,
                                  expression_names=fit.expression_names, angles=fit.pose[:, :3],
                                  subject=item.name if args.subject_per_clip else args.subject, valid=fit.valid,
                                  transcript=text.read_text() if text.is_file() else None, name=item.name))
    model = train_audio2motion(clips, TrainConfig(device=args.device, steps=args.steps))
    digest = model.save(args.output)
    print(json.dumps(model.report, indent=1))
    print(f"{args.output}  sha256 {digest}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""Re-derive thead's built-in talking-head style (thead/audio/data/head_style.json) from fitted clips.

    thead fit-3dmm ../shared/data/videos/d3.mp4 ../shared/data/videos/d12.mp4 \
        ../shared/data/videos/WDA_AlexandriaOcasioCortez_000.mp4 -o work
    python tools/derive_head_style.py work/d3 work/d12 work/WDA_AlexandriaOcasioCortez_000

Each argument is an item folder holding ``fit3dmm/`` (its fit.json names the fps; fit3dmm/meta.json the source
video, whose audio is read when it holds speech). What is derived:

* the VAR(3) dynamics: ridge least squares pooled over the clips' relative yaw/pitch/roll (degrees, each clip's
  mean removed, resampled to 25 fps);
* std_deg: the median over the clips with sound (a silent clip, such as d3, is a performance for a driver, not
  talk: its 10-degree yaw std made the built-in head twice as lively as the calm speaker of WDA) of the
  per-angle standard deviation; over all clips when none has sound;
* pause_gain: head speed in pauses / speed while speaking, over the clips whose audio the speech check accepts
  (``thead.audio.phonemes.speech_likeness``); the default 0.5 is kept when none does;
* nod depth, lead and length stay the documented defaults of ``HeadStyle`` (too few onsets in these clips to
  estimate them).

Maintenance script: not imported by the package.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from thead.audio.features import frame_features  # noqa: E402
from thead.audio.head_motion import STYLE_FILE, HeadStyle, fit_head_style, relative_angles  # noqa: E402
from thead.audio.io import load_audio  # noqa: E402
from thead.audio.phonemes import speech_likeness  # noqa: E402
from thead.errors import InputError  # noqa: E402
from thead.fitting.result import FitResult  # noqa: E402

OUT = Path(__file__).resolve().parent.parent / "thead" / "audio" / "data" / STYLE_FILE


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("items", nargs="+", type=Path, help="item folders holding fit3dmm/")
    ap.add_argument("--order", type=int, default=3)
    ap.add_argument("-o", "--output", type=Path, default=OUT)
    args = ap.parse_args(argv)

    segments, rates, names, ratios, voiced = [], [], [], [], []
    for item in args.items:
        fit = FitResult.load(item / "fit3dmm")
        rel = relative_angles(fit.pose, fit.valid)
        segments.append(rel)
        rates.append(float(fit.fps))
        names.append(item.name)
        meta = json.loads((item / "fit3dmm" / "meta.json").read_text())
        try:
            track = load_audio(meta["source"])
        except (InputError, KeyError) as exc:
            print(f"{item.name}: no usable audio ({exc})")
            continue
        if not track.silent:
            voiced.append(len(segments) - 1)
        feats = frame_features(track.samples, fit.fps, fit.num_frames)
        check = speech_likeness(feats.hops)
        if track.silent or not check["speech"]:
            print(f"{item.name}: audio is not speech ({'silent' if track.silent else check}); not used for pause_gain")
            continue
        speed = np.linalg.norm(np.diff(rel, axis=0), axis=1)
        act = feats.voice_activity[1:]
        if act.sum() > 10 and (~act).sum() > 10:
            ratios.append(float(np.median(speed[~act]) / np.median(speed[act])))
            print(f"{item.name}: head speed pause/speech = {ratios[-1]:.2f}")
    style = fit_head_style(segments, rates, order=args.order, source="builtin: " + ", ".join(names))
    pause_gain = float(np.clip(np.mean(ratios), 0.2, 1.0)) if ratios else HeadStyle.pause_gain
    clip_std = np.asarray(style.stats["clip_std_deg"], np.float64)
    std_deg = np.median(clip_std[voiced], axis=0) if voiced else style.std_deg
    print("std_deg from " + ", ".join(names[i] for i in (voiced or range(len(names)))))
    style = HeadStyle(fps=style.fps, coefs=style.coefs, noise_cov=style.noise_cov, std_deg=std_deg,
                      pause_gain=round(pause_gain, 3), source=style.source,
                      stats={**style.stats, "clips": names, "pause_speech_speed_ratio": ratios,
                             "std_from": [names[i] for i in (voiced or range(len(names)))]})
    doc = {"about": "Built-in head-motion style of thead.audio (VAR on yaw/pitch/roll degrees at 25 fps). "
                    "Written by tools/derive_head_style.py from the fits of: " + ", ".join(names),
           "style": style.to_dict()}
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(doc, indent=1) + "\n")
    print(f"std_deg {np.round(style.std_deg, 2).tolist()} pause_gain {style.pause_gain} -> {args.output}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

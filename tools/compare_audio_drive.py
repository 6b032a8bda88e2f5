"""Drive each fitted clip's own first frame with the clip's own audio and compare with the real clip.

    thead fit-3dmm CLIP.mp4 ... -o work
    python tools/compare_audio_drive.py work/CLIP ... [--transcript-dir DIR] [--model model.safetensors]

Per clip (an item folder holding fit3dmm/, whose meta.json names the source video): ``audio_motion`` with
default options (no transcript; with ``DIR/<item>.txt`` also with it), then per mouth curve (jaw_open,
lips_part, inner-lip opening in cm from ``mouth_opening_cm``) the Pearson r of generated against fitted at the
best lag within +-6 frames (lag > 0: generated later) and at lag 0; head-angle std of the generated targets
(asked; the renderer shows ``RENDER_POSE_GAIN`` of it) against the fit's; blink rate of both (fitted blinks:
``thead.audio.blinks.fitted_blink_rate``, the more closed lid rising above 0.6, re-armed below 0.3). The default
options already take a clip's own head style, blink rate and closed mouth (``AudioDriveOptions.own_style``);
``--style-from-clip`` also drives with the clip passed as an explicit ``style`` reference, ``--builtin`` with
``own_style`` off (the built-in style, 17 blinks a minute, the first frame's mouth). Prints one JSON line per
clip and path.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from thead.audio.blinks import fitted_blink_rate  # noqa: E402
from thead.audio.head_motion import RENDER_POSE_GAIN  # noqa: E402
from thead.audio.motion import AudioDriveOptions, audio_motion  # noqa: E402
from thead.audio.visemes import mouth_opening_cm  # noqa: E402
from thead.errors import InputError  # noqa: E402
from thead.fitting.result import FitResult  # noqa: E402


def lagged(a: np.ndarray, b: np.ndarray, max_lag: int = 6) -> tuple[float, int, float]:
    """(best r, its lag, r at lag 0); lag > 0: a later than b."""
    rows = []
    for lag in range(-max_lag, max_lag + 1):
        x, y = (a[lag:], b[:len(b) - lag]) if lag >= 0 else (a[:lag], b[-lag:])
        n = min(len(x), len(y))
        if n > 3 and x[:n].std() > 1e-9 and y[:n].std() > 1e-9:
            rows.append((float(np.corrcoef(x[:n], y[:n])[0, 1]), lag))
    zero = dict((lag, r) for r, lag in rows).get(0, float("nan"))
    r, lag = max(rows) if rows else (float("nan"), 0)
    return r, lag, zero


def opening(expr: np.ndarray, names: list[str]) -> np.ndarray:
    e = {n: expr[:, names.index(n)] for n in ("jaw_open", "lips_part", "lip_stretch", "chin_raise")}
    return mouth_opening_cm(e["jaw_open"], e["lips_part"], e["lip_stretch"], e["chin_raise"])


def compare(item: Path, transcript: str | None, model, style_from_clip: bool = False,
            builtin: bool = False) -> list[dict]:
    fit = FitResult.load(item / "fit3dmm")
    source = json.loads((item / "fit3dmm" / "meta.json").read_text())["source"]
    names = list(fit.expression_names)
    rows = []
    runs = [(None, None, True)] + ([(transcript, None, True)] if transcript else []) \
        + ([(None, fit, True)] if style_from_clip else []) + ([(None, None, False)] if builtin else [])
    for text, reference, own in runs:
        opts = AudioDriveOptions(transcript=text, motion_model=model, reference=reference, own_style=own)
        try:
            targets, report = audio_motion(source, fit, 0, float(fit.fps), opts)
        except InputError as err:
            return [{"clip": item.name, "error": str(err)}]
        n = min(targets.num_frames, fit.num_frames)
        row = {"clip": item.name, "transcript": bool(text), "path": report["phoneme_path"],
               "head": f"{report['pose_mode']} ({report['head_style']})",
               "frames": n, "silence_fraction": report["silence_fraction"], "notes": report["notes"]}
        gen, real = targets.expression[:n], fit.expression[:n]
        for label, g, r in (("jaw_open", gen[:, names.index("jaw_open")], real[:, names.index("jaw_open")]),
                            ("lips_part", gen[:, names.index("lips_part")], real[:, names.index("lips_part")]),
                            ("opening", opening(gen, names), opening(real, names))):
            best, lag, zero = lagged(g, r)
            row[label] = {"r": round(best, 3), "lag": lag, "r0": round(zero, 3)}
        asked = np.degrees(targets.pose[:n, :3].astype(np.float64)).std(0)
        real_std = np.degrees(fit.pose[:n, :3].astype(np.float64)).std(0)
        row["head_std_deg"] = {"asked": np.round(asked, 2).tolist(),
                               "shown_expected": np.round(asked * np.asarray(RENDER_POSE_GAIN), 2).tolist(),
                               "real": np.round(real_std, 2).tolist()}
        row["blinks_per_min"] = {"generated": report["blink_rate_per_min"],
                                 "real": round(fitted_blink_rate(fit.expression_of("blink_left")[:n],
                                                                 fit.expression_of("blink_right")[:n], fit.fps), 1)}
        rows.append(row)
    return rows


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("items", nargs="+", type=Path)
    ap.add_argument("--transcript-dir", type=Path)
    ap.add_argument("--model", type=Path, help="a trained audio2motion model (thead.audio.train)")
    ap.add_argument("--style-from-clip", action="store_true")
    ap.add_argument("--builtin", action="store_true", help="also drive without the clip's own style (own_style off)")
    args = ap.parse_args(argv)
    model = None
    if args.model:
        from thead.audio.train import load_audio2motion

        model = load_audio2motion(args.model)
    for item in args.items:
        text = None
        if args.transcript_dir and (args.transcript_dir / f"{item.name}.txt").is_file():
            text = (args.transcript_dir / f"{item.name}.txt").read_text()
        for row in compare(item, text, model, args.style_from_clip, args.builtin):
            print(json.dumps(row))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

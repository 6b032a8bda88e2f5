"""Benchmark: speed of thead.audio's analysis, as multiples of real time (audio seconds per wall second).

Stages timed per file: decoding (ffmpeg to 16 kHz mono), frame features (loudness, onsets, YIN F0, voice
activity, log-mel), phone-loop decoding (pocketsphinx allphone, no transcript), forced alignment (when a
transcript is known: espeak-ng speech made here, whose text is known), and the whole ``audio_motion`` (analysis,
visemes, blinks, head motion, targets for a 478-point source). Files: the shared audio files and the shared
clips with an audio track (``--data`` / ``$THEAD_TEST_DATA`` / ``../shared/data``), plus an espeak-ng sentence.
Each stage is run ``--repeat`` times and the best time counts (the first run also loads pocketsphinx's model).

    python bench/bench_audio.py
    python bench/bench_audio.py --repeat 3 --fps 30
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "tests"))

ESPEAK_TEXT = ("Maybe people buy more apples when the market opens early, but most of them prefer the big "
               "blue boxes from the farm by the river.")


def _best(fn, repeat: int) -> tuple[float, object]:
    best, out = float("inf"), None
    for _ in range(repeat):
        t0 = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - t0)
    return best, out


def _files(data: Path) -> list[Path]:
    files = sorted((data / "audio").glob("*.wav")) if (data / "audio").is_dir() else []
    files += sorted((data / "videos").glob("*.mp4")) if (data / "videos").is_dir() else []
    return files


def main(argv: list[str] | None = None) -> int:
    import torch

    from thead.audio.features import frame_features, hop_features
    from thead.audio.io import load_audio, num_frames_for
    from thead.audio.motion import AudioDriveOptions, audio_motion
    from thead.audio.phonemes import align_transcript, phone_loop
    from thead.errors import InputError

    default_data = os.environ.get("THEAD_TEST_DATA", str(REPO.parent / "shared" / "data"))
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", type=Path, default=Path(default_data))
    ap.add_argument("--fps", type=float, default=25.0)
    ap.add_argument("--repeat", type=int, default=2)
    args = ap.parse_args(argv)
    torch.set_num_threads(1)

    jobs: list[tuple[str, Path, str | None]] = [(p.name, p, None) for p in _files(args.data)]
    tmp = Path(tempfile.mkdtemp(prefix="bench_audio_"))
    try:
        from test_audio_helpers import espeak_available, espeak_speech, write_wav

        if espeak_available():
            sp = espeak_speech(ESPEAK_TEXT)
            jobs.append(("espeak sentence", write_wav(tmp / "espeak.wav", sp.samples, sp.rate), ESPEAK_TEXT))
    except ImportError:
        pass
    if not jobs:
        print("no audio to measure (no shared data, no espeak-ng)")
        return 1

    from test_audio_helpers import source_fit

    src = source_fit()
    header = f"{'file':38s} {'dur s':>6s} {'decode':>8s} {'features':>9s} {'phones':>8s} {'align':>8s} " \
             f"{'total':>8s}  path"
    print(header + "\n" + "-" * len(header))
    totals: dict[str, list[float]] = {k: [] for k in ("decode", "features", "phones", "align", "total")}
    durations: list[float] = []
    for name, path, text in jobs:
        try:
            t_dec, track = _best(lambda: load_audio(path), args.repeat)
        except InputError as err:
            print(f"{name:38s} skipped: {err.reason}")
            continue
        if track.silent:
            print(f"{name:38s} {track.duration:6.1f} silent track: analysis is trivial, skipped")
            continue
        n = num_frames_for(track.duration, args.fps, path)
        t_feat, feats = _best(lambda: frame_features(track.samples, args.fps, n,
                                                     hops=hop_features(track.samples)), args.repeat)
        t_ph, _ = _best(lambda: phone_loop(track.samples, feats.hops.active, feats.hops.hop_s), args.repeat)
        t_al = float("nan")
        if text:
            t_al, _ = _best(lambda: align_transcript(track.samples, text), args.repeat)
        t_all, (_, report) = _best(lambda: audio_motion(track, src, 0, args.fps, AudioDriveOptions(transcript=text)),
                                   args.repeat)
        d = track.duration
        durations.append(d)
        for k, v in (("decode", t_dec), ("features", t_feat), ("phones", t_ph), ("align", t_al), ("total", t_all)):
            totals[k].append(v)

        def x(v: float) -> str:
            return f"{d / v:7.1f}x" if np.isfinite(v) else f"{'-':>8s}"
        print(f"{name:38s} {d:6.1f} {x(t_dec)} {x(t_feat):>9s} {x(t_ph)} {x(t_al)} {x(t_all)}  "
              f"{report['phoneme_path']}")
    if durations:
        total_d = sum(durations)
        print("-" * len(header))
        line = f"{'all (audio seconds / wall seconds)':38s} {total_d:6.1f}"
        for k in ("decode", "features", "phones", "align", "total"):
            vals = [v for v in totals[k] if np.isfinite(v)]
            dur = [d for d, v in zip(durations, totals[k]) if np.isfinite(v)]
            line += f" {sum(dur) / sum(vals):7.1f}x" if vals else f" {'-':>8s}"
        print(line)
        print(f"frames per second of audio_motion at {args.fps:g} fps: "
              f"{total_d * args.fps / sum(totals['total']):.0f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

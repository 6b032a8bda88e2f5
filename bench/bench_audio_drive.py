"""Benchmark: the whole ``thead audio-drive`` job (audio analysis, motion, rendering at 256, H.264 encoding with
the audio muxed), frames per second with the source's stage caches present (the first run makes them).

Source: the shipped astronaut (scikit-image); audio: an espeak-ng sentence, and the shared speech files when
present (``--data`` / ``$THEAD_TEST_DATA`` / ``../shared/data``). Target: faster than real time (>= 25 fps).

    python bench/bench_audio_drive.py
    python bench/bench_audio_drive.py --repeat 2 --transcript
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

SENTENCE = ("Maybe people buy more apples when the market opens early, but most of them prefer the big blue "
            "boxes from the farm by the river.")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", type=Path, default=Path(os.environ.get("THEAD_TEST_DATA", REPO.parent / "shared" /
                                                                      "data")))
    ap.add_argument("--repeat", type=int, default=1)
    ap.add_argument("--transcript", action="store_true", help="give the espeak sentence's text (forced alignment)")
    args = ap.parse_args(argv)

    from skimage import data as skdata

    from thead.io import write_image
    from thead.jobs.audio_drive import AudioDriveParams, AudioPair, audio_drive_pair
    from thead.jobs.render import RenderOptions
    from thead.stages import FitParams, InputItem, PreprocessParams

    tmp = Path(tempfile.mkdtemp(prefix="bench-audio-drive-"))
    src = tmp / "astronaut.png"
    write_image(src, skdata.astronaut())
    audios = []
    speech = tmp / "sentence.wav"
    if subprocess.run(["espeak-ng", "-w", str(speech), SENTENCE], capture_output=True).returncode == 0:
        audios.append(speech)
    audios += sorted((args.data / "audio").glob("RD_*.wav")) if (args.data / "audio").is_dir() else []
    if not audios:
        print("no audio to drive with (no espeak-ng, no shared data)")
        return 1
    pre, fit, options = PreprocessParams(size=256, write_crop=False), FitParams(), RenderOptions()
    params = AudioDriveParams(text=SENTENCE if args.transcript else None)
    work, out = tmp / "work", tmp / "out"
    item = InputItem(src, "astronaut")
    audio_drive_pair(AudioPair(item, audios[0], "warmup"), work, out, pre, fit, params, options)  # caches
    print(f"{'audio':28s} {'seconds':>8s} {'frames':>7s} {'wall s':>7s} {'fps':>6s} {'x real time':>11s}  path")
    for audio in audios:
        best, res = float("inf"), None
        for _ in range(args.repeat):
            t0 = time.perf_counter()
            res = audio_drive_pair(AudioPair(item, audio, audio.stem), work, out, pre, fit,
                                   params if audio == speech else AudioDriveParams(), options, force=True)
            best = min(best, time.perf_counter() - t0)
        frames = res.info["frames"]
        print(f"{audio.name:28s} {frames / 25:8.1f} {frames:7d} {best:7.1f} {frames / best:6.1f} "
              f"{frames / 25 / best:11.2f}  {res.info['phoneme_path']}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""Benchmark: face-model fitting speed from cached landmarks (frames per second).

Landmarks come from the shared test videos (MediaPipe face mesh, run once and cached under
``~/.cache/thead/bench_landmarks``) when ``--data`` / ``$THEAD_TEST_DATA`` / ``../shared/data`` exists, else from
a synthetic sequence. The clip(s) are tiled to ``--frames`` frames and fitted ``--repeat`` times; the best time
counts (the first call also builds the model's solver matrices, reported separately).

    python bench/bench_fit.py                      # 1 and 2 CPU threads, 2000 frames, smoothing on
    python bench/bench_fit.py --threads 2 --frames 5000 --no-smooth
    python bench/bench_fit.py --device cuda
    python bench/bench_fit.py --clips 64 --frames 50 --device cpu,cuda   # 64 short clips: one by one vs grouped

On a machine whose cores are busy with other work, 2 threads can be much slower than 1 (OpenMP threads wait for
each other at every operation), hence both are measured by default; ``fit_sequence`` itself uses 1 CPU thread
unless told otherwise (``cpu_threads``).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def shared_videos(data: Path | None) -> list[Path]:
    """The shared test videos, if the folder exists."""
    if data is None or not (data / "videos").is_dir():
        return []
    return sorted(p for p in (data / "videos").iterdir() if p.suffix == ".mp4")


def video_landmarks(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """MediaPipe landmarks [T, 478, 3] and valid [T] of a video, cached by file size and mtime."""
    from thead.face.landmarks import detect_landmarks
    from thead.io import read_frames

    cache = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "thead" / "bench_landmarks"
    stat = path.stat()
    file = cache / f"{path.stem}-{stat.st_size}-{int(stat.st_mtime)}.npz"
    if file.exists():
        with np.load(file) as data:
            return data["landmarks"], data["valid"]
    landmarks, valid = detect_landmarks(read_frames(path), static=False)
    cache.mkdir(parents=True, exist_ok=True)
    tmp = file.with_suffix(".tmp.npz")
    np.savez(tmp, landmarks=landmarks, valid=valid)
    os.replace(tmp, file)
    return landmarks, valid


def synthetic_landmarks(frames: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """A moving, expressive synthetic face at 512 px with 0.7 px landmark noise."""
    from thead.facemodel import load_face_model

    model = load_face_model()
    rng = np.random.default_rng(seed)
    t = np.arange(frames) / 25.0
    expr = np.clip(0.5 + 0.5 * np.sin(2 * np.pi * rng.uniform(0.2, 2.0, model.num_expressions) * t[:, None]
                                      + rng.uniform(0, 6, model.num_expressions)), 0, 1).astype(np.float32)
    pose = np.stack([0.4 * np.sin(0.9 * t), 0.2 * np.sin(0.7 * t + 1), 0.15 * np.sin(0.5 * t), 256 + 10 * np.sin(t),
                     256 + 8 * np.cos(t), np.full(frames, 18.0)], 1).astype(np.float32)
    lm = model.posed(pose, expression=expr, gaze=rng.uniform(-15, 15, (frames, 4)).astype(np.float32))
    return (lm + rng.normal(0, 0.7, lm.shape)).astype(np.float32), np.ones(frames, bool)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="face-model fitting speed (frames/s)")
    parser.add_argument("--frames", type=int, default=2000, help="frames per fit (clips are tiled)")
    parser.add_argument("--threads", default="1,2", help="torch CPU thread counts to try, comma-separated")
    parser.add_argument("--device", default="cpu", help="cpu or cuda (with --clips: a comma-separated list)")
    parser.add_argument("--clips", type=int, default=0, help="fit this many clips of --frames frames each (and as "
                        "many photos), one by one and grouped (fit_sequences), per device")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--no-smooth", action="store_true")
    parser.add_argument("--synthetic", action="store_true", help="ignore the shared videos")
    default_data = os.environ.get("THEAD_TEST_DATA", str(REPO.parent / "shared" / "data"))
    parser.add_argument("--data", type=Path, default=Path(default_data))
    args = parser.parse_args(argv)

    import torch

    from thead.fitting import fit_sequence

    if args.clips:
        return many_clips(args)
    videos = [] if args.synthetic else shared_videos(args.data)
    if videos:
        clips = [video_landmarks(v) for v in videos]
        lm = np.concatenate([c[0] for c in clips])
        valid = np.concatenate([c[1] for c in clips])
        source = f"{len(videos)} shared videos ({len(lm)} frames)"
    else:
        lm, valid = synthetic_landmarks(min(args.frames, 1000))
        source = f"synthetic ({len(lm)} frames)"
    reps = int(np.ceil(args.frames / len(lm)))
    lm = np.tile(lm, (reps, 1, 1))[: args.frames]
    valid = np.tile(valid, reps)[: args.frames]
    smooth = not args.no_smooth

    print(f"landmarks: {source}, tiled to {len(lm)} frames; device {args.device}, "
          f"smoothing {'on' if smooth else 'off'}, {os.cpu_count()} CPUs")
    start = time.perf_counter()
    fit_sequence(lm[:2], valid[:2], 512, smooth=smooth, device=args.device, cpu_threads=None)
    print(f"first call (solver set-up): {time.perf_counter() - start:.2f} s")
    for threads in [int(t) for t in str(args.threads).split(",") if t.strip()]:
        times = []
        for _ in range(args.repeat):
            if args.device.startswith("cuda"):
                torch.cuda.synchronize()
            start = time.perf_counter()
            result = fit_sequence(lm, valid, 512, smooth=smooth, device=args.device, cpu_threads=threads)
            if args.device.startswith("cuda"):
                torch.cuda.synchronize()
            times.append(time.perf_counter() - start)
        best = min(times)
        print(f"{threads} thread(s): best {best:.3f} s of {args.repeat} ({', '.join(f'{t:.3f}' for t in times)}), "
              f"mean fit error {np.nanmean(result.fit_error):.2f} px -> {len(lm) / best:.0f} frames/s")


def many_clips(args: argparse.Namespace) -> None:
    """``--clips``: N synthetic clips of ``--frames`` frames plus N photos, fitted one call per item
    (``fit_sequence``, what ``--group-items 1`` does) and in groups of 32 (``fit_sequences``), per device."""
    import torch

    from thead.fitting import fit_sequence, fit_sequences

    clips = [synthetic_landmarks(args.frames, seed=k) for k in range(args.clips)]
    photos = [(lm[:1], v[:1]) for lm, v in (synthetic_landmarks(1, seed=1000 + k) for k in range(args.clips))]
    items = clips + photos
    smooth = [not args.no_smooth] * len(clips) + [False] * len(photos)
    frames = sum(len(v) for _, v in items)
    print(f"{len(clips)} clips of {args.frames} frames + {len(photos)} photos = {frames} frames; {os.cpu_count()} CPUs")
    for dev in args.device.split(","):
        if dev.startswith("cuda") and not torch.cuda.is_available():
            print(f"{dev}: not available")
            continue
        sync = torch.cuda.synchronize if dev.startswith("cuda") else (lambda: None)
        fit_sequences(items[:2], 512, smooth[:2], device=dev)  # set-up

        def one_by_one() -> None:
            for (lm, v), s in zip(items, smooth):
                fit_sequence(lm, v, 512, smooth=s, device=dev)

        def grouped() -> None:
            for k in range(0, len(items), 32):
                fit_sequences(items[k:k + 32], 512, smooth[k:k + 32], device=dev)

        for name, fn in (("one by one", one_by_one), ("groups of 32", grouped)):
            times = []
            for _ in range(args.repeat):
                sync()
                start = time.perf_counter()
                fn()
                sync()
                times.append(time.perf_counter() - start)
            best = min(times)
            print(f"{dev:5s} {name:13s} best {best:.3f} s -> {frames / best:7.0f} frames/s, "
                  f"{len(items) / best:6.1f} items/s")


if __name__ == "__main__":
    main()

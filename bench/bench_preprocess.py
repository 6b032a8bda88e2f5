"""Preprocess throughput: frames/s end to end, and the share of time per part (decode, landmarks, crop, encode).

Usage: python bench/bench_preprocess.py [VIDEO ...] [--size 256] [--protocol vox]
Default videos: $THEAD_TEST_DATA/videos/*.mp4 (../shared/data). Target: >= 100 frames/s end to end on 2 CPU cores
for 512x512 input.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path


from thead.face.crop import crop_transforms, crop_frame
from thead.face.landmarks import make_landmarker
from thead.face.track import track_face
from thead.io import VideoWriter, iter_frames, probe_video
from thead.stages import InputItem, PreprocessParams, preprocess_item


def default_videos() -> list[Path]:
    root = Path(os.environ.get("THEAD_TEST_DATA", Path(__file__).resolve().parents[2] / "shared" / "data"))
    return sorted((root / "videos").glob("*.mp4"))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("videos", nargs="*", type=Path)
    ap.add_argument("--size", type=int, default=256)
    ap.add_argument("--protocol", default="vox")
    args = ap.parse_args()
    videos = args.videos or default_videos()
    if not videos:
        sys.exit("no videos: pass paths or set THEAD_TEST_DATA")
    params = PreprocessParams(protocol=args.protocol, size=args.size)
    parts = {"decode": 0.0, "landmarks": 0.0, "crop": 0.0, "encode": 0.0}
    total_frames = 0
    end_to_end = 0.0
    with tempfile.TemporaryDirectory() as tmp:
        for video in videos:
            info = probe_video(video)
            t0 = time.perf_counter()
            frames = list(iter_frames(video, info))
            parts["decode"] += time.perf_counter() - t0
            t0 = time.perf_counter()
            with make_landmarker() as lm:
                track = track_face(iter(frames), lm, max_gap=6)
            parts["landmarks"] += time.perf_counter() - t0
            t0 = time.perf_counter()
            tr, _ = crop_transforms(args.protocol, track.landmarks, track.valid, args.size,
                                    frame_size=(info.width, info.height))
            crops = [crop_frame(f, tr[i], args.size) for i, f in enumerate(frames)]
            parts["crop"] += time.perf_counter() - t0
            t0 = time.perf_counter()
            with VideoWriter(Path(tmp) / "enc.mp4", info.fps) as w:
                for c in crops:
                    w.write(c)
            parts["encode"] += time.perf_counter() - t0
            t0 = time.perf_counter()
            res = preprocess_item(InputItem(video, video.stem), Path(tmp), params, force=True)
            end_to_end += time.perf_counter() - t0
            assert res.status == "done", res.message
            total_frames += len(frames)
            print(f"{video.name}: {len(frames)} frames {info.width}x{info.height}, "
                  f"end to end {len(frames) / (time.perf_counter() - t0 + 1e-9):.0f} frames/s", flush=True)
    serial = sum(parts.values())
    print(f"\ncores: {os.cpu_count()}  videos: {len(videos)}  frames: {total_frames}  size: {args.size}  "
          f"protocol: {args.protocol}")
    print(f"end to end (thead preprocess, two decode passes, pipes in parallel): "
          f"{total_frames / end_to_end:.1f} frames/s  (target >= 100)")
    for name, sec in parts.items():
        print(f"  {name:9s} {1000 * sec / total_frames:6.2f} ms/frame  {100 * sec / serial:5.1f} % of the serial sum  "
              f"({total_frames / sec:7.1f} frames/s alone)")


if __name__ == "__main__":
    main()

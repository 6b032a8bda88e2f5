"""Shared fixtures. Real media come from $THEAD_TEST_DATA (default ../shared/data); tests needing them skip."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parent.parent


def pytest_configure(config: pytest.Config) -> None:
    """Under pytest-xdist (``-n N``), each worker takes its share of the processors for torch and OpenMP: N
    workers with torch's default of a thread per core oversubscribe the machine N times over (on a 16-core GPU
    machine 8 such workers did not get through the render tests in 280 s; not established as the only cause)."""
    workers = os.environ.get("PYTEST_XDIST_WORKER_COUNT")
    if workers and workers.isdigit() and int(workers) > 1:
        threads = max(1, (os.cpu_count() or 1) // int(workers))
        os.environ["OMP_NUM_THREADS"] = str(threads)  # child processes (commands run as programs)
        import torch

        torch.set_num_threads(threads)


def shared_data_dir() -> Path | None:
    """The real-media folder, or None when it is absent (a user's fresh clone)."""
    path = Path(os.environ.get("THEAD_TEST_DATA", REPO.parent / "shared" / "data"))
    return path if (path / "videos").is_dir() else None


@pytest.fixture(scope="session")
def shared_data() -> Path:
    path = shared_data_dir()
    if path is None:
        pytest.skip("real media folder absent (set THEAD_TEST_DATA)")
    return path


@pytest.fixture(scope="session")
def astronaut() -> np.ndarray:
    """scikit-image's 512x512 RGB astronaut portrait, uint8."""
    from skimage import data

    return data.astronaut()


def similarity(angle_deg: float, scale: float, tx: float, ty: float, centre: tuple[float, float]) -> np.ndarray:
    """2x3 similarity about ``centre`` (pixels): rotate by angle (degrees, CCW on screen), scale, then shift."""
    import cv2

    m = cv2.getRotationMatrix2D(centre, angle_deg, scale)
    m[:, 2] += (tx, ty)
    return m


def moving_face_frames(image: np.ndarray, num: int = 30, size: int = 320) -> tuple[list[np.ndarray], np.ndarray]:
    """Frames of ``image`` (the astronaut) shrunk into a ``size`` frame and moved by known similarities.

    Returns the frames and the transforms (num, 2, 3) mapping the first frame's pixels to each frame's (the
    package's pixel convention; the frames are warped by OpenCV with their ``Affine2D.to_opencv`` twins).
    """
    import cv2

    from thead.geometry import Affine2D

    base = cv2.resize(image, (size, size), interpolation=cv2.INTER_AREA)
    frames, mats = [], []
    centre = (size / 2, size / 2)
    for t in range(num):
        a = t / max(num - 1, 1)
        m = similarity(angle_deg=8 * np.sin(2 * np.pi * a), scale=1 + 0.15 * a, tx=20 * a, ty=-10 * a, centre=centre)
        frames.append(cv2.warpAffine(base, m, (size, size), borderMode=cv2.BORDER_REFLECT_101))
        mats.append(m)
    return frames, Affine2D.from_opencv(np.stack(mats)).matrix


def write_video(path: Path, frames, fps: float = 25.0, audio: bool = False) -> Path:
    """Encode frames to ``path`` (H.264); with ``audio``, a 440 Hz tone is muxed in."""
    import subprocess

    from thead.io import VideoWriter
    from thead.io.ffmpeg import ffmpeg_exe

    tone = None
    if audio:
        tone = path.with_suffix(".tone.wav")
        dur = len(frames) / fps
        subprocess.run([ffmpeg_exe(), "-v", "error", "-y", "-f", "lavfi", "-i", f"sine=frequency=440:duration={dur}",
                        str(tone)], check=True)
    with VideoWriter(path, fps, crf=16, audio_from=tone) as w:
        for f in frames:
            w.write(f)
    return path


@pytest.fixture(scope="session")
def moving_face_video(tmp_path_factory, astronaut) -> tuple[Path, np.ndarray, list[np.ndarray]]:
    """A 30-frame, 25 fps video of the astronaut moving by known similarities, with a tone as audio."""
    folder = tmp_path_factory.mktemp("moving")
    frames, mats = moving_face_frames(astronaut)
    return write_video(folder / "moving.mp4", frames, audio=True), mats, frames

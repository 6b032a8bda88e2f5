"""Write the shipped example inputs into a folder (default examples/data):

- ``astronaut.png``: scikit-image's astronaut portrait (a real photo that ships inside the scikit-image wheel),
- ``astronaut_moving.mp4``: 3 s at 25 fps of that photo moved, turned and zoomed by known amounts, with speech
  from espeak-ng as its audio when espeak-ng is installed.

Nothing is downloaded.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import cv2
import numpy as np
from skimage import data

from thead.io import VideoWriter, write_image


def main(folder: Path) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    image = data.astronaut()
    write_image(folder / "astronaut.png", image)
    video = folder / "astronaut_moving.mp4"
    if video.exists():
        return
    n, size = 75, 384
    base = cv2.resize(image, (size, size), interpolation=cv2.INTER_AREA)
    with tempfile.TemporaryDirectory() as tmp:
        speech = None
        if shutil.which("espeak-ng"):
            speech = Path(tmp) / "speech.wav"
            subprocess.run(["espeak-ng", "-w", str(speech), "Hello, I am an astronaut. This is thead."], check=True)
        with VideoWriter(video, 25, audio_from=speech) as writer:
            for t in range(n):
                a = t / (n - 1)
                m = cv2.getRotationMatrix2D((size / 2, size / 2), 6 * np.sin(2 * np.pi * a), 1 + 0.1 * a)
                m[:, 2] += (12 * np.sin(np.pi * a), -6 * a)
                writer.write(cv2.warpAffine(base, m, (size, size), borderMode=cv2.BORDER_REFLECT_101))


if __name__ == "__main__":
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else Path(__file__).resolve().parent / "data")

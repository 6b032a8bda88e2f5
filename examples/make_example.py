"""Write the shipped example inputs into a folder (default examples/data):

- ``astronaut.png``: scikit-image's astronaut portrait (a real photo that ships inside the scikit-image wheel),
- ``astronaut_moving.mp4``: 3 s at 25 fps of that photo turned about the base of her neck (7 degrees each way),
  swayed 6 pixels and zoomed 4%, with speech from espeak-ng as its audio when espeak-ng is installed.

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
    # The photo turns about the base of her neck (her chin is at (167, 133) in this 384-pixel frame, her face 80
    # pixels high), as a head tilts and sways on its neck: the motion a talking-head driver has. Turning the whole
    # picture about its centre would lift her head 15% of the crop off her shoulders instead.
    pivot = (167.0, 160.0)
    with tempfile.TemporaryDirectory() as tmp:
        speech = None
        if shutil.which("espeak-ng"):
            speech = Path(tmp) / "speech.wav"
            subprocess.run(["espeak-ng", "-w", str(speech), "Hello, I am an astronaut. This is thead."], check=True)
        with VideoWriter(video, 25, audio_from=speech) as writer:
            for t in range(n):
                a = t / (n - 1)
                m = cv2.getRotationMatrix2D(pivot, 7 * np.sin(2 * np.pi * a), 1 + 0.04 * np.sin(np.pi * a))
                m[:, 2] += (6 * np.sin(np.pi * a), 0.0)
                writer.write(cv2.warpAffine(base, m, (size, size), borderMode=cv2.BORDER_REFLECT_101))


if __name__ == "__main__":
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else Path(__file__).resolve().parent / "data")

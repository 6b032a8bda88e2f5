"""Still images: read as uint8 (H, W, 3) RGB, write by suffix (png/jpg/webp), atomically."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from thead.errors import InputError
from thead.runtime import phase

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".webp", ".bmp", ".tif", ".tiff"}


def read_image(path: str | Path) -> np.ndarray:
    """Read an image file as uint8 (H, W, 3) RGB (EXIF orientation applied, alpha dropped, grey expanded)."""
    import cv2  # imported on first use: a command that reads no image does not pay for OpenCV

    path = Path(path)
    if not path.is_file():
        raise InputError(path, "file not found")
    with phase("decode"):
        data = np.fromfile(str(path), dtype=np.uint8)
        img = cv2.imdecode(data, cv2.IMREAD_COLOR) if data.size else None
        if img is None:
            raise InputError(path, "not a readable image")
        return cv2.cvtColor(img, cv2.COLOR_BGR2RGB)


def write_image(path: str | Path, image: np.ndarray, quality: int = 95) -> None:
    """Write a uint8 (H, W, 3) RGB image; the format follows the suffix. Written to a temp name, then renamed."""
    import cv2

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    suffix = path.suffix.lower() or ".png"
    params: list[int] = []
    if suffix in (".jpg", ".jpeg"):
        params = [cv2.IMWRITE_JPEG_QUALITY, int(quality)]
    elif suffix == ".webp":
        params = [cv2.IMWRITE_WEBP_QUALITY, int(quality)]
    with phase("encode"):
        ok, buf = cv2.imencode(suffix, cv2.cvtColor(np.ascontiguousarray(image, np.uint8), cv2.COLOR_RGB2BGR),
                               params)
    if not ok:
        raise OSError(f"{path}: could not encode image")
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    buf.tofile(str(tmp))
    os.replace(tmp, path)

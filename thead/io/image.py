"""Still images: read as uint8 (H, W, 3) RGB, write by suffix (png/jpg/webp), atomically.

Images larger than ``MAX_IMAGE_PIXELS`` (8192 x 8192 = 67.1 megapixels) are refused from their header, before
any pixel is decoded: a small compressed file can claim a huge picture (a 760 KB PNG of 16000 x 16000 pixels
would take 1.9 GB to decode). Video frames obey the same cap (``thead.io.video``).
"""

from __future__ import annotations

import os
import re
import warnings
from pathlib import Path

import numpy as np

from thead.errors import InputError, OutputError, describe_os_error, path_problem
from thead.runtime import phase

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".webp", ".bmp", ".tif", ".tiff"}
# Largest picture (width x height) read, images and video frames alike: 64 Mi pixels (8192 x 8192), about
# 200 MB as uint8 RGB. Far above any face crop's needs; refuses decompression bombs before they are decoded.
MAX_IMAGE_PIXELS = 8192 * 8192


def check_pixel_count(path: str | Path, width: int, height: int) -> None:
    """Raise ``InputError`` naming ``path`` when a ``width`` x ``height`` picture is over ``MAX_IMAGE_PIXELS``."""
    if int(width) * int(height) > MAX_IMAGE_PIXELS:
        raise InputError(path, f"{width}x{height} pixels ({int(width) * int(height) / 1e6:.1f} megapixels) is over "
                               f"the {MAX_IMAGE_PIXELS / 1e6:.1f} megapixel limit (8192x8192); scale it down first")


def image_size(path: str | Path) -> tuple[int, int]:
    """(width, height) of an image file, read from its header only (no pixels are decoded).

    Raises ``InputError`` when the file is not an image Pillow can identify, or its header claims a picture over
    ``MAX_IMAGE_PIXELS``.
    """
    from PIL import Image, UnidentifiedImageError

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(path) as im:  # lazy: parses the header, decodes nothing
                width, height = im.size
    except Image.DecompressionBombError as exc:  # Pillow's own cap (above ours) tripped while opening
        claimed = re.search(r"\((\d+) pixels\)", str(exc))
        what = f"{int(claimed.group(1)) / 1e6:.1f} megapixels" if claimed else "a picture"
        raise InputError(path, f"{what} is over the {MAX_IMAGE_PIXELS / 1e6:.1f} megapixel limit (8192x8192); "
                               f"scale it down first") from None
    except UnidentifiedImageError:
        raise InputError(path, "not a readable image (unknown or damaged header)") from None
    except OSError as exc:
        raise InputError(path, f"not a readable image ({describe_os_error(exc, None)})") from None
    check_pixel_count(path, width, height)
    return width, height


def read_image(path: str | Path) -> np.ndarray:
    """Read an image file as uint8 (H, W, 3) RGB (EXIF orientation applied, alpha dropped, grey expanded).

    Raises ``InputError`` naming the file: missing, a symbolic link loop, a directory, unreadable, not an image,
    or (from the header, before decoding) over ``MAX_IMAGE_PIXELS``.
    """
    path = Path(path)
    problem = path_problem(path)
    if problem is not None:
        raise InputError(path, problem)
    image_size(path)
    import cv2  # imported on first use: a command that reads no image does not pay for OpenCV

    with phase("decode"):
        try:
            data = np.fromfile(str(path), dtype=np.uint8)
        except OSError as exc:
            raise InputError(path, describe_os_error(exc, None)) from None
        img = cv2.imdecode(data, cv2.IMREAD_COLOR) if data.size else None
        if img is None:
            raise InputError(path, "not a readable image")
        check_pixel_count(path, img.shape[1], img.shape[0])
        return cv2.cvtColor(img, cv2.COLOR_BGR2RGB)


def write_image(path: str | Path, image: np.ndarray, quality: int = 95) -> None:
    """Write a uint8 (H, W, 3) RGB image; the format follows the suffix. Written to a temp name, then renamed.

    Raises ``OutputError`` naming ``path`` when the write fails ("no space left on device (disk full)", ...).
    """
    import cv2

    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise OutputError(path.parent, describe_os_error(exc, None)) from None
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
    try:
        with open(tmp, "wb") as fh:
            fh.write(buf.tobytes())
        os.replace(tmp, path)
    except OSError as exc:  # disk full, read-only, no permission: say so, name the file, leave no temp file
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise OutputError(path, describe_os_error(exc, None)) from None

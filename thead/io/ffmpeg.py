"""Locating the ffmpeg (and optional ffprobe) binaries.

Debian's ``ffmpeg`` package is preferred when present; otherwise the static binary inside the
``imageio-ffmpeg`` wheel is used. ``THEAD_FFMPEG`` overrides both.
"""

from __future__ import annotations

import functools
import os
import shutil

from thead.errors import ToolMissingError


@functools.lru_cache(maxsize=None)
def ffmpeg_exe() -> str:
    """Path of an ffmpeg binary: $THEAD_FFMPEG, then ffmpeg on PATH, then imageio-ffmpeg's."""
    env = os.environ.get("THEAD_FFMPEG")
    if env:
        return env
    found = shutil.which("ffmpeg")
    if found:
        return found
    try:
        import imageio_ffmpeg

        return imageio_ffmpeg.get_ffmpeg_exe()
    except Exception as exc:  # pragma: no cover - depends on the machine
        raise ToolMissingError(
            "ffmpeg not found: install Debian's 'ffmpeg' package or 'pip install imageio-ffmpeg'"
        ) from exc


@functools.lru_cache(maxsize=None)
def ffprobe_exe() -> str | None:
    """Path of ffprobe next to the chosen ffmpeg, or on PATH; None when only imageio-ffmpeg is present."""
    exe = ffmpeg_exe()
    sibling = os.path.join(os.path.dirname(exe), "ffprobe")
    if os.path.basename(exe) == "ffmpeg" and os.access(sibling, os.X_OK):
        return sibling
    if os.environ.get("THEAD_FFMPEG"):
        return None
    return shutil.which("ffprobe")

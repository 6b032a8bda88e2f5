"""Video, image and audio input/output through ffmpeg pipes (frames are uint8 HxWx3 RGB)."""

from thead.io.image import IMAGE_SUFFIXES, read_image, write_image
from thead.io.video import (
    VIDEO_SUFFIXES,
    VideoInfo,
    VideoWriter,
    iter_frames,
    probe_video,
    read_frames,
    write_png_sequence,
)

__all__ = [
    "IMAGE_SUFFIXES",
    "VIDEO_SUFFIXES",
    "VideoInfo",
    "VideoWriter",
    "iter_frames",
    "probe_video",
    "read_frames",
    "read_image",
    "write_image",
    "write_png_sequence",
]

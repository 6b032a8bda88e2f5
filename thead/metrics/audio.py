"""Audio decoding for the audio-visual metrics: any file ffmpeg reads (wav, mp3, mp4 with audio) to mono float32."""

from __future__ import annotations

import subprocess
from pathlib import Path

import numpy as np

from thead.errors import InputError
from thead.io.ffmpeg import ffmpeg_exe

#: Peak amplitude (full scale 1.0) below which a track counts as silent (about -80 dBFS).
SILENCE_PEAK = 1e-4


def read_audio(path: str | Path, sample_rate: int = 16000, allow_silent: bool = False) -> np.ndarray:
    """Decode the first audio stream of ``path`` to mono ``float32`` samples (full scale 1.0) at ``sample_rate`` Hz.

    Channels are mixed down by ffmpeg (``-ac 1``; its stereo downmix can exceed 1.0 slightly, nothing is
    clipped) and resampled by ffmpeg. Raises ``InputError`` when the file is
    missing, has no audio stream, decodes to no samples, or is silent (peak below ``SILENCE_PEAK``, about
    -80 dBFS) unless ``allow_silent``. Returns ``(S,)`` float32.
    """
    path = Path(path)
    if not path.is_file():
        raise InputError(path, "file not found")
    if sample_rate <= 0:
        raise ValueError(f"sample_rate must be positive, got {sample_rate}")
    cmd = [ffmpeg_exe(), "-v", "error", "-nostdin", "-i", str(path), "-map", "0:a:0", "-vn", "-ac", "1",
           "-ar", str(int(sample_rate)), "-f", "f32le", "-acodec", "pcm_f32le", "-"]
    res = subprocess.run(cmd, capture_output=True)
    err = res.stderr.decode("utf8", "replace").strip()
    if res.returncode != 0:
        last = err.splitlines()[-1] if err else f"ffmpeg exited with {res.returncode}"
        if "matches no streams" in err or "does not contain any stream" in err:
            raise InputError(path, "no audio stream")
        raise InputError(path, f"audio could not be decoded ({last})")
    samples = np.frombuffer(res.stdout, dtype="<f4").astype(np.float32)
    if samples.size == 0:
        raise InputError(path, "no audio samples decoded")
    if not np.isfinite(samples).all():
        raise InputError(path, "audio decoded to non-finite samples")
    if not allow_silent and float(np.abs(samples).max()) < SILENCE_PEAK:
        raise InputError(path, "audio is silent")
    return samples

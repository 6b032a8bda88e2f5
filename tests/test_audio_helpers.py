"""Shared helpers of the thead.audio tests (no tests here): espeak-ng speech with its own phoneme timings, and a
minimal source fit."""

from __future__ import annotations

import ctypes
import ctypes.util
import shutil
import wave
from dataclasses import dataclass
from pathlib import Path

import numpy as np

# espeak_EVENT_TYPE values (speak_lib.h)
_EV_WORD, _EV_PHONEME, _EV_END = 1, 7, 5
_AUDIO_OUTPUT_SYNCHRONOUS = 2
_INIT_PHONEME_EVENTS = 0x0001


class _Id(ctypes.Union):
    _fields_ = [("number", ctypes.c_int), ("name", ctypes.c_char_p), ("string", ctypes.c_char * 8)]


class _Event(ctypes.Structure):
    _fields_ = [("type", ctypes.c_int), ("unique_identifier", ctypes.c_uint), ("text_position", ctypes.c_int),
                ("length", ctypes.c_int), ("audio_position", ctypes.c_int), ("sample", ctypes.c_int),
                ("user_data", ctypes.c_void_p), ("id", _Id)]


_CALLBACK = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.POINTER(ctypes.c_short), ctypes.c_int, ctypes.POINTER(_Event))
_LIB = None


def espeak_library():
    """The loaded libespeak-ng (initialised for synchronous synthesis with phoneme events), or None."""
    global _LIB
    if _LIB is None:
        name = ctypes.util.find_library("espeak-ng") or "libespeak-ng.so.1"
        try:
            lib = ctypes.CDLL(name)
        except OSError:
            return None
        rate = lib.espeak_Initialize(_AUDIO_OUTPUT_SYNCHRONOUS, 0, None, _INIT_PHONEME_EVENTS)
        if rate <= 0:
            return None
        lib.sample_rate = rate
        _LIB = lib
    return _LIB


def espeak_available() -> bool:
    return shutil.which("espeak-ng") is not None and espeak_library() is not None


@dataclass
class Speech:
    """Synthesised speech: samples [S] int16 at ``rate``; phones [(name, onset s)]; words [(text, onset s)]."""

    samples: np.ndarray
    rate: int
    phones: list[tuple[str, float]]
    words: list[tuple[str, float]]

    @property
    def duration(self) -> float:
        return len(self.samples) / self.rate


def espeak_speech(text: str, voice: str = "en-us", rate_wpm: int = 160) -> Speech:
    """Speak ``text`` with libespeak-ng; the phoneme and word events are its own timings (ground truth)."""
    lib = espeak_library()
    assert lib is not None
    chunks: list[np.ndarray] = []
    events: list[tuple[int, str, int, int, int]] = []

    def callback(wav, n, ev):
        if n > 0:
            chunks.append(np.ctypeslib.as_array(wav, (n,)).copy())
        i = 0
        while ev[i].type != 0:
            e = ev[i]
            name = e.id.string.decode("utf8", "replace") if e.type == _EV_PHONEME else ""
            events.append((e.type, name, e.sample, e.text_position, e.length))
            i += 1
        return 0

    cb = _CALLBACK(callback)
    lib.espeak_SetSynthCallback(cb)
    lib.espeak_SetVoiceByName(voice.encode())
    lib.espeak_SetParameter(1, rate_wpm, 0)  # espeakRATE
    data = text.encode("utf8")
    lib.espeak_Synth(data, len(data) + 1, 0, 0, 0, 1, None, None)  # POS_CHARACTER, espeakCHARS_UTF8
    lib.espeak_Synchronize()
    rate = int(lib.sample_rate)
    phones = [(name, s / rate) for t, name, s, _, _ in events if t == _EV_PHONEME and name and name[0] != "_"]
    words = [(text[p - 1:p - 1 + n], s / rate) for t, _, s, p, n in events if t == _EV_WORD]
    return Speech(np.concatenate(chunks) if chunks else np.zeros(0, np.int16), rate, phones, words)


def write_wav(path: Path, samples: np.ndarray, rate: int) -> Path:
    """Write int16 (or float in [-1, 1]) mono samples as a 16-bit wav."""
    x = np.asarray(samples)
    if x.dtype != np.int16:
        x = np.clip(np.round(x * 32767), -32768, 32767).astype(np.int16)
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(int(rate))
        w.writeframes(x.tobytes())
    return path


def source_fit(num_frames: int = 1):
    """A minimal 478-point FitResult: frontal, neutral expression, zero residual, 256 px crop."""
    from thead.facemodel.expressions import EXPRESSION_NAMES
    from thead.fitting.result import FitResult

    pose = np.tile(np.array([[0.05, -0.02, 0.01, 128.0, 128.0, 9.0]], np.float32), (num_frames, 1))
    return FitResult(pose=pose, depth_offset=np.zeros(num_frames, np.float32),
                     expression=np.zeros((num_frames, len(EXPRESSION_NAMES)), np.float32),
                     expression_names=list(EXPRESSION_NAMES), gaze=np.zeros((num_frames, 4), np.float32),
                     identity=np.zeros((478, 3), np.float32), residual=np.zeros((num_frames, 478, 3), np.float32),
                     fit_error=np.zeros(num_frames, np.float32), valid=np.ones(num_frames, bool), image_size=256,
                     fps=25.0)

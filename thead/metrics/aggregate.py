"""Per-video aggregation of per-frame metric arrays, with explicit accounting of frames that were not measured.

Per-frame metrics hold NaN where a frame could not be measured (no face found, landmarks missing, fit
failed). Aggregation never averages those silently: each summary reports how many frames were measured and
how many skipped. Arrays of different lengths (a generated video a few frames shorter than its reference)
are refused unless the caller says how to align them; truncation is then reported.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Mapping

import numpy as np

from thead.metrics._inputs import as_float_array

ALIGN_MODES = ("raise", "truncate")


@dataclass(frozen=True)
class Summary:
    """Mean and spread of one per-frame metric over the frames where it was measured.

    Attributes:
        mean: mean over measured frames (NaN when none was measured). ``inf`` values (PSNR of identical
            frames) count as measured and make the mean ``inf``.
        std: population standard deviation (ddof 0) over measured frames.
        measured: frames with a value (not NaN).
        skipped: frames without one (NaN).
        total: ``measured + skipped``.
    """

    mean: float
    std: float
    measured: int
    skipped: int
    total: int

    def to_dict(self) -> dict:
        d = asdict(self)
        for key in ("mean", "std"):  # JSON has no NaN
            if isinstance(d[key], float) and math.isnan(d[key]):
                d[key] = None
        return d


def aggregate(values: np.ndarray) -> Summary:
    """Summarise a per-frame array ``(N,)``; a 2-D ``(N, K)`` array counts a frame as measured only if all K are.

    For 2-D input the mean/std are over all measured entries. Raises ``ValueError`` on an empty array.
    """
    arr = as_float_array(values, "per-frame values")
    rows = arr.reshape(len(arr), -1) if arr.ndim > 1 else arr[:, None]
    ok = ~np.isnan(rows).any(axis=1)
    measured = int(ok.sum())
    if measured:
        vals = rows[ok]
        with np.errstate(invalid="ignore"):
            mean, std = float(vals.mean()), float(vals.std())
    else:
        mean = std = float("nan")
    return Summary(mean=mean, std=std, measured=measured, skipped=len(rows) - measured, total=len(rows))


@dataclass(frozen=True)
class Alignment:
    """How per-frame arrays were brought to one length.

    Attributes:
        length: the common length used.
        lengths: the original length of each array, by name.
        truncated: names whose arrays were cut to ``length``.
        how: the alignment mode ("raise" or "truncate").
    """

    length: int
    lengths: dict[str, int]
    truncated: tuple[str, ...] = ()
    how: str = "raise"

    @property
    def message(self) -> str:
        """A one-line note for reports ("" when nothing was truncated)."""
        if not self.truncated:
            return ""
        cut = ", ".join(f"{n} {self.lengths[n]}->{self.length}" for n in self.truncated)
        return f"truncated to the shortest length {self.length} frames ({cut})"


def align_lengths(arrays: Mapping[str, np.ndarray], how: str = "raise") -> tuple[dict[str, np.ndarray], Alignment]:
    """Bring named per-frame arrays to one length.

    ``how="raise"`` (default): raise ``ValueError`` listing the lengths if they differ. ``how="truncate"``: cut
    every array to the shortest length (frames 0..L-1 kept) and report which were cut in the ``Alignment``.
    """
    if how not in ALIGN_MODES:
        raise ValueError(f"align_lengths: how must be one of {ALIGN_MODES}, got {how!r}")
    if not arrays:
        raise ValueError("align_lengths: no arrays given")
    arrs = {name: np.asarray(a) for name, a in arrays.items()}
    lengths = {name: int(len(a)) for name, a in arrs.items()}
    length = min(lengths.values())
    if len(set(lengths.values())) > 1:
        if how == "raise":
            listing = ", ".join(f"{n}: {k}" for n, k in lengths.items())
            raise ValueError(f"per-frame arrays differ in length ({listing}); pass how='truncate' to cut them to "
                             f"the shortest ({length})")
        truncated = tuple(n for n, k in lengths.items() if k > length)
        return {n: a[:length] for n, a in arrs.items()}, Alignment(length, lengths, truncated, how)
    return arrs, Alignment(length, lengths, (), how)


@dataclass(frozen=True)
class VideoReport:
    """Summaries of several per-frame metrics of one video, and how their lengths were aligned."""

    summaries: dict[str, Summary]
    alignment: Alignment
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict:
        return {
            "metrics": {n: s.to_dict() for n, s in self.summaries.items()},
            "frames": self.alignment.length,
            "lengths": self.alignment.lengths,
            "truncated": list(self.alignment.truncated),
            "notes": list(self.notes),
        }


def aggregate_video(per_frame: Mapping[str, np.ndarray], how: str = "raise") -> VideoReport:
    """Summaries of named per-frame metrics ``{name: (N,) or (N, K)}`` of one video.

    Lengths must match unless ``how="truncate"`` (see ``align_lengths``); notes list truncation and, per
    metric, skipped frames, e.g. ``"csim: 3 of 120 frames not measured"``.
    """
    aligned, alignment = align_lengths(per_frame, how)
    summaries = {name: aggregate(values) for name, values in aligned.items()}
    notes = [alignment.message] if alignment.message else []
    notes += [f"{n}: {s.skipped} of {s.total} frames not measured" for n, s in summaries.items() if s.skipped]
    return VideoReport(summaries, alignment, notes)

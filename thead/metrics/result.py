"""The structured result of metrics that may be unavailable (network weights absent, input unusable)."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from thead.errors import MissingWeightsError


@dataclass(frozen=True)
class MetricResult:
    """One metric over a set of frames or videos.

    ``available`` is False when the metric could not be computed at all; then ``value`` is None and
    ``reason`` says why (for missing weights: what file to get and where to put it). Never a made-up number.

    Attributes:
        name: metric name ("lpips", "fid", ...).
        value: the aggregate value (e.g. mean over frames), or None when unavailable.
        available: whether the metric was computed.
        reason: why it is unavailable ("" when available).
        per_frame: per-frame values ``(N,)`` where the metric has them (NaN where a frame was not measured).
        count: number of samples (frames / videos) the value is computed from.
        details: extra figures (e.g. feature dimension, number of skipped frames).
    """

    name: str
    value: float | None
    available: bool = True
    reason: str = ""
    per_frame: np.ndarray | None = None
    count: int = 0
    details: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def unavailable(cls, name: str, reason: str) -> "MetricResult":
        """A result saying the metric could not be computed, and why."""
        return cls(name=name, value=None, available=False, reason=reason)

    def to_dict(self) -> dict[str, Any]:
        """JSON-friendly dict (per-frame values as a list with NaN as None)."""
        d = asdict(self)
        if self.per_frame is not None:
            d["per_frame"] = [None if not math.isfinite(v) else float(v) for v in np.asarray(self.per_frame)]
        if self.value is not None and not math.isfinite(self.value):
            d["value"] = None if math.isnan(self.value) else self.value
        return d


def missing_weights_reason(err: MissingWeightsError, weights_name: str | None = None) -> str:
    """The one-line reason for an unavailable result: the error message plus the manifest's conversion note."""
    reason = str(err)
    if weights_name:
        try:
            from thead.weights import load_manifest

            entry = load_manifest().get(weights_name)
            if entry is not None and entry.note:
                reason = f"{reason}. {entry.note}"
        except Exception:  # pragma: no cover - the manifest is part of the package
            pass
    return reason

"""The one progress-callback type of the package."""

from __future__ import annotations

from typing import Callable

ProgressFn = Callable[[int, int], None]
"""``progress(done, total)``: called with units done so far and the total (frames, or steps of a job)."""

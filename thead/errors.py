"""Exceptions shared by the library. Each carries a one-line, user-facing reason."""

from __future__ import annotations

from pathlib import Path


class TheadError(Exception):
    """Base class for errors thead reports to a user as one line."""


class InputError(TheadError):
    """Bad input: missing or unreadable file, no face, several faces, silent audio, wrong size.

    ``str(err)`` reads ``"<path>: <reason>"`` so a batch can list failures one per line.
    """

    def __init__(self, path: str | Path | None, reason: str) -> None:
        self.path = None if path is None else str(path)
        self.reason = reason
        super().__init__(f"{self.path}: {reason}" if self.path else reason)


class MissingWeightsError(TheadError):
    """A model needs weights that are not on disk; the message says what to get and where to put it."""


class ToolMissingError(TheadError):
    """An external program (ffmpeg) is not installed."""

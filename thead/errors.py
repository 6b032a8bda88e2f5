"""Exceptions shared by the library, and the one place that words operating-system errors for users.

Each exception carries a one-line, user-facing reason. ``describe_os_error`` turns an ``OSError`` into such a
line ("<path>: no space left on device (disk full)"), ``path_problem`` says why a path cannot be read as a file
(missing, a symbolic link loop, a broken link, a directory, no permission) without following a loop forever.
"""

from __future__ import annotations

import errno
import os
import stat as stat_mod
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


class OutputError(TheadError):
    """An output or cache file could not be written (disk full, read-only, no permission).

    ``str(err)`` reads ``"<path>: <reason>"`` like ``InputError``.
    """

    def __init__(self, path: str | Path | None, reason: str) -> None:
        self.path = None if path is None else str(path)
        self.reason = reason
        super().__init__(f"{self.path}: {reason}" if self.path else reason)


class MissingWeightsError(TheadError):
    """A model needs weights that are not on disk; the message says what to get and where to put it."""


class BadWeightsError(MissingWeightsError):
    """A weights file is on disk but refused: its sha256 differs from the manifest's, it is not a regular file
    (a symbolic link loop, a broken link), it holds pickled Python objects, or its tensors fail the model's key,
    shape or sanity checks. A subclass of ``MissingWeightsError``: usable weights are missing, and everything that
    reports missing weights (an unavailable metric, a failed item) reports this too, with its own reason."""


class ToolMissingError(TheadError):
    """An external program (ffmpeg) is not installed."""


# errno -> what happened, in words a user acts on. Anything else falls back to the system's own strerror.
_ERRNO_REASONS: dict[int, str] = {
    errno.ENOSPC: "no space left on device (disk full)",
    errno.EDQUOT: "disk quota exceeded",
    errno.EROFS: "read-only file system",
    errno.EACCES: "permission denied",
    errno.EPERM: "operation not permitted",
    errno.ENOENT: "file not found",
    errno.ELOOP: "symbolic link loop",
    errno.EISDIR: "is a directory, not a file",
    errno.ENOTDIR: "a part of the path is not a directory",
    errno.ENAMETOOLONG: "file name too long",
    errno.EMFILE: "too many open files",
    errno.ENFILE: "too many open files in the system",
    errno.EIO: "input/output error (failing disk or network share)",
    errno.EFBIG: "file too large for this file system",
    errno.ENOMEM: "out of memory",
    errno.EXDEV: "cannot move a file across file systems",
    errno.EBUSY: "device or resource busy",
    errno.ETXTBSY: "file busy",
    errno.ESTALE: "stale network file handle",
}


def describe_os_error(exc: OSError, path: str | Path | None = None) -> str:
    """One line for a user: ``"<path>: <what happened>"``, e.g. ``"out/a.mp4: no space left on device (disk full)"``.

    Parameters
    ----------
    exc : OSError
        The error raised by the operating system (``exc.errno`` picks the wording).
    path : str or Path, optional
        The file the operation was about; defaults to ``exc.filename``. When neither is known the line is the
        reason alone.

    Returns
    -------
    str
        The path and the reason; a second path of the error (a rename's target) is appended as ``-> target``.
    """
    reason = _ERRNO_REASONS.get(exc.errno) if exc.errno is not None else None
    if reason is None:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        reason = exc.strerror or first or type(exc).__name__
    where = path if path is not None else exc.filename
    if where is None:
        return reason
    text = f"{os.fsdecode(where) if isinstance(where, bytes) else where}: {reason}"
    if exc.filename2 is not None and path is None:
        text += f" (-> {os.fsdecode(exc.filename2) if isinstance(exc.filename2, bytes) else exc.filename2})"
    return text


def path_problem(path: str | Path) -> str | None:
    """Why ``path`` cannot be read as a regular file, in words; None when it can.

    Distinguishes a missing file, a broken symbolic link (naming its target), a symbolic link loop, a directory,
    something else (a device, a pipe) and a file without read permission. Never loops: the link chain is stat'ed
    by the operating system, which stops at its link limit.
    """
    p = Path(path)
    try:
        st = os.stat(p)
    except OSError as exc:
        if exc.errno == errno.ENOENT and p.is_symlink():
            try:
                target = os.readlink(p)
            except OSError:  # pragma: no cover - raced away
                target = "?"
            return f"broken symbolic link (points to {target}, which does not exist)"
        return _ERRNO_REASONS.get(exc.errno, exc.strerror or type(exc).__name__)
    if stat_mod.S_ISDIR(st.st_mode):
        return _ERRNO_REASONS[errno.EISDIR]
    if not stat_mod.S_ISREG(st.st_mode):
        return "not a regular file"
    if not os.access(p, os.R_OK):
        return _ERRNO_REASONS[errno.EACCES]
    return None

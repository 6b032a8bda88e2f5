"""Quiet by default: the native libraries' log chatter (MediaPipe's glog / absl ``I0000`` and ``W0000`` lines,
TensorFlow Lite's ``INFO:`` lines) is kept off the terminal unless ``thead --verbose``.

Those libraries write from C++ straight to file descriptor 2, past Python's ``sys.stderr`` and past
``GLOG_minloglevel`` / ``TF_CPP_MIN_LOG_LEVEL`` (MediaPipe 0.10's absl logging reads neither). So the process's
descriptor 2 is routed through a pipe, and a thread forwards every line except that chatter to the real stderr;
Python's own ``sys.stderr`` (progress bars, tables, errors) writes to the real stderr directly, undelayed.
Errors from native code (``E0000``/``F0000`` lines) and everything else pass through unchanged.
"""

from __future__ import annotations

import logging
import os
import re
import sys
import threading

# Native log lines that carry no information for a thead user.
NATIVE_NOISE = re.compile(
    rb"^(?:[IW]\d{4} [\d:.]+\s+\d+ \S+:\d+\] "  # glog / absl C++: "W0000 00:00:1795702314.10 1659 x.cc:114] "
    rb"|INFO: Created TensorFlow Lite"  # TFLite delegate creation
    rb"|WARNING: All log messages before absl::InitializeLog\(\) is called are written to STDERR"
    rb")")


def quiet_environment(verbose: bool) -> None:
    """Log levels of the native libraries and absl, set before they are imported (MediaPipe loads lazily)."""
    level = "0" if verbose else None
    for name, quiet in (("GLOG_minloglevel", "2"), ("TF_CPP_MIN_LOG_LEVEL", "3")):
        if level is not None:
            os.environ[name] = level
        else:
            os.environ.setdefault(name, quiet)
    os.environ["THEAD_VERBOSE"] = "1" if verbose else "0"
    logging.getLogger("thead").setLevel(logging.DEBUG if verbose else logging.INFO)


class NativeStderrFilter:
    """Route descriptor 2 through a line filter that drops ``NATIVE_NOISE`` (see the module docstring).

    ``start()`` does nothing (returns False) when Python's stderr is not descriptor 2 (the CLI run inside a test
    runner or another program): then nothing about the process's descriptors is changed. ``stop()`` restores
    descriptor 2 and ``sys.stderr`` and forwards what is still buffered.
    """

    def __init__(self, drop: re.Pattern[bytes] = NATIVE_NOISE) -> None:
        self.drop = drop
        self._real: int | None = None
        self._thread: threading.Thread | None = None
        self._py_stderr = None
        self.dropped = 0

    @property
    def active(self) -> bool:
        return self._real is not None

    def start(self) -> bool:
        if self.active:
            return True
        try:
            if sys.stderr is None or sys.stderr.fileno() != 2:
                return False
        except (AttributeError, OSError, ValueError):  # a StringIO / captured stream: not ours to rewire
            return False
        sys.stderr.flush()
        self._real = os.dup(2)
        read_end, write_end = os.pipe()
        os.dup2(write_end, 2)
        os.close(write_end)
        self._py_stderr = sys.stderr
        sys.stderr = open(os.dup(self._real), "w", buffering=1, encoding=getattr(self._py_stderr, "encoding", None)
                          or "utf-8", errors="backslashreplace")
        self._thread = threading.Thread(target=self._pump, args=(read_end, os.dup(self._real)),
                                        name="thead-stderr-filter", daemon=True)
        self._thread.start()
        return True

    def _emit(self, line: bytes, out: int) -> None:
        if self.drop.match(line):
            self.dropped += 1
            return
        try:
            os.write(out, line)
        except OSError:  # the real stderr went away: nothing left to tell
            pass

    def _pump(self, read_end: int, out: int) -> None:
        """Forward lines from ``read_end`` to ``out`` (a copy of the real stderr, owned by this thread)."""
        pending = b""
        while True:
            try:
                chunk = os.read(read_end, 65536)
            except OSError:
                break
            if not chunk:
                break
            pending += chunk
            *lines, pending = pending.split(b"\n")
            for line in lines:
                self._emit(line + b"\n", out)
        if pending:
            self._emit(pending, out)
        os.close(read_end)
        os.close(out)

    def stop(self) -> None:
        if not self.active:
            return
        try:
            sys.stderr.flush()
        except (OSError, ValueError):
            pass
        os.dup2(self._real, 2)  # closes our write end of the pipe: the pump reads what is left, then EOF
        if self._thread is not None:
            self._thread.join(timeout=2.0)  # a child process may still hold the pipe open; do not wait for it
        filtered, sys.stderr = sys.stderr, self._py_stderr
        try:
            filtered.close()
        except (OSError, ValueError):
            pass
        os.close(self._real)
        self._real = None

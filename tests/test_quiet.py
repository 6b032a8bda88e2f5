"""Quiet by default (issue 13): MediaPipe / TensorFlow Lite / absl print ~20 W0000 / I0000 lines per run from
native code; thead keeps them off stderr unless --verbose, and lets everything else through."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
NATIVE_LINE = re.compile(r"^(?:[IW]\d{4} |INFO: Created TensorFlow Lite|WARNING: All log messages before absl)",
                         re.M)


def _run(args: list[str], cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(REPO), "COLUMNS": "200"}
    for name in ("GLOG_minloglevel", "TF_CPP_MIN_LOG_LEVEL", "THEAD_VERBOSE"):
        env.pop(name, None)
    return subprocess.run([sys.executable, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=300)


def test_preprocess_prints_no_native_log_lines_unless_verbose(tmp_path, astronaut):
    from thead.io import write_image

    write_image(tmp_path / "astronaut.png", astronaut)
    quiet = _run(["-m", "thead", "preprocess", "astronaut.png", "-o", "work"], tmp_path)
    assert quiet.returncode == 0, quiet.stderr
    assert not NATIVE_LINE.search(quiet.stderr), quiet.stderr
    assert "1 done" in quiet.stderr  # thead's own output still there
    loud = _run(["-m", "thead", "--verbose", "preprocess", "astronaut.png", "-o", "work", "--force"], tmp_path)
    assert loud.returncode == 0 and NATIVE_LINE.search(loud.stderr), loud.stderr  # the lines do exist


def test_the_filter_drops_only_native_chatter(tmp_path):
    code = (
        "import os, sys\n"
        "from thead.commands.logs import NativeStderrFilter\n"
        "f = NativeStderrFilter()\n"
        "assert f.start()\n"
        "os.write(2, b'W0000 00:00:1795702314.107151    1659 a.cc:114] noise\\n')\n"
        "os.write(2, b'I0000 00:00:1795702314.1 7 b.cc:1] more noise\\nE0000 00:00:1.0 7 c.cc:2] a native error\\n')\n"
        "os.write(2, b'INFO: Created TensorFlow Lite XNNPACK delegate for CPU.\\nplain native line\\n')\n"
        "print('from python', file=sys.stderr)\n"
        "f.stop()\n"
        "print('after stop', file=sys.stderr)\n"
    )
    res = _run(["-c", code], tmp_path)
    assert res.returncode == 0, res.stderr
    lines = res.stderr.splitlines()
    assert sorted(lines) == sorted(["E0000 00:00:1.0 7 c.cc:2] a native error", "plain native line", "from python",
                                    "after stop"]), res.stderr

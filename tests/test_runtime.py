"""thead.runtime: CPUs from affinity and cgroup files, the thread plan, what reaches torch and when, phase timings;
and the lazy CLI (``thead --help`` without torch)."""

from __future__ import annotations

import inspect
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from thead import runtime

REPO = Path(__file__).resolve().parent.parent


def _python(code: str, env: dict[str, str] | None = None, cwd: Path | None = None) -> subprocess.CompletedProcess:
    """Run ``code`` in a fresh interpreter importing this checkout's thead (the thread variables cleared)."""
    base = {k: v for k, v in os.environ.items()
            if k not in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "OPENCV_FOR_THREADS_NUM",
                         "OMP_WAIT_POLICY", "GOMP_SPINCOUNT", "KMP_BLOCKTIME", "THEAD_THREADS", "THEAD_PROFILE")}
    base["PYTHONPATH"] = os.pathsep.join([str(REPO), base.get("PYTHONPATH", "")])
    base.update(env or {})
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True, env=base,
                          cwd=cwd or REPO, timeout=300)


# --- CPUs a process may use -------------------------------------------------------------------------------------


@pytest.mark.parametrize("text, cpus", [
    ("max 100000\n", None),
    ("150000 100000\n", 1.5),
    ("200000", 2.0),
    ("50000 100000", 0.5),
    ("garbage", None),
    ("", None),
])
def test_parse_cpu_max(text, cpus):
    assert runtime.parse_cpu_max(text) == cpus


def test_parse_cfs_quota():
    assert runtime.parse_cfs_quota("-1\n", "100000\n") is None
    assert runtime.parse_cfs_quota("250000\n", "100000\n") == 2.5
    assert runtime.parse_cfs_quota("x", "100000") is None


def _write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def test_cgroup_v2_takes_the_tightest_quota_on_the_path(tmp_path):
    _write(tmp_path / "self_cgroup", "0::/jobs/shard3\n")
    root = tmp_path / "cgroup"
    _write(root / "cgroup.controllers", "cpu memory\n")
    _write(root / "jobs" / "cpu.max", "300000 100000\n")
    _write(root / "jobs" / "shard3" / "cpu.max", "max 100000\n")
    assert runtime.cgroup_cpu_limit(tmp_path / "self_cgroup", root) == 3.0
    _write(root / "jobs" / "shard3" / "cpu.max", "150000 100000\n")
    assert runtime.cgroup_cpu_limit(tmp_path / "self_cgroup", root) == 1.5


def test_cgroup_v1_quota_and_namespaced_path(tmp_path):
    root = tmp_path / "cgroup"
    _write(tmp_path / "self_cgroup", "4:cpu,cpuacct:/docker/abc\n3:memory:/docker/abc\n0::/\n")
    _write(root / "cpu,cpuacct" / "docker" / "abc" / "cpu.cfs_quota_us", "150000\n")
    _write(root / "cpu,cpuacct" / "docker" / "abc" / "cpu.cfs_period_us", "100000\n")
    assert runtime.cgroup_cpu_limit(tmp_path / "self_cgroup", root) == 1.5
    # Inside a cgroup namespace the listed path is absent: the files at the mount's root are the process's own.
    other = tmp_path / "other"
    _write(other / "cpu" / "cpu.cfs_quota_us", "400000\n")
    _write(other / "cpu" / "cpu.cfs_period_us", "100000\n")
    _write(tmp_path / "self_cgroup2", "2:cpu:/docker/abc\n")
    assert runtime.cgroup_cpu_limit(tmp_path / "self_cgroup2", other) == 4.0


def test_no_cgroup_limit(tmp_path):
    root = tmp_path / "cgroup"
    _write(tmp_path / "self_cgroup", "1:cpu:/\n0::/\n")
    _write(root / "cpu" / "cpu.cfs_quota_us", "-1\n")
    _write(root / "cpu" / "cpu.cfs_period_us", "100000\n")
    _write(root / "unified" / "cpu.max", "max 100000\n")
    assert runtime.cgroup_cpu_limit(tmp_path / "self_cgroup", root) is None
    assert runtime.cgroup_cpu_limit(tmp_path / "missing", root) is None


@pytest.mark.parametrize("affinity, quota, cpus", [(4, None, 4), (4, 1.5, 2), (8, 2.0, 2), (2, 0.2, 1), (1, 8.0, 1)])
def test_cpu_budget(affinity, quota, cpus):
    assert runtime.cpu_budget(affinity, quota) == cpus


def test_usable_cpus_is_within_the_affinity_mask():
    assert 1 <= runtime.usable_cpus() <= len(os.sched_getaffinity(0))


# --- the thread plan --------------------------------------------------------------------------------------------


def test_plan_order_of_precedence():
    env = {"THEAD_THREADS": "3", "OMP_NUM_THREADS": "5"}
    assert runtime.plan_threads(2, env, cpus=8, sharing=1) == runtime.ThreadPlan(2, 2, 8, "--threads", 1)
    assert runtime.plan_threads(None, env, cpus=8, sharing=1).threads == 3
    assert runtime.plan_threads(None, {"OMP_NUM_THREADS": "5"}, cpus=8, sharing=1).source == "OMP_NUM_THREADS"
    assert runtime.plan_threads(None, {"OMP_NUM_THREADS": "5"}, cpus=8, sharing=1).threads == 5
    plan = runtime.plan_threads(None, {"THEAD_THREADS": "abc"}, cpus=8, sharing=1)
    assert (plan.threads, plan.source) == (8, "cpus")
    with pytest.raises(ValueError):
        runtime.plan_threads(0, {}, cpus=8, sharing=1)


@pytest.mark.parametrize("cpus, sharing, threads, source", [
    (2, 1, 2, "cpus"), (2, 2, 1, "shared"), (2, 5, 1, "shared"), (8, 3, 2, "shared"), (16, 2, 8, "shared"),
])
def test_plan_shares_the_cpus_among_thead_processes(cpus, sharing, threads, source):
    plan = runtime.plan_threads(None, {}, cpus=cpus, sharing=sharing)
    assert (plan.threads, plan.interop, plan.source, plan.sharing) == (threads, threads, source, sharing)


@pytest.mark.parametrize("argv, expected", [
    (["/venv/bin/python", "-m", "thead", "reenact", "a", "b"], True),
    (["/venv/bin/python", "-X", "importtime", "-m", "thead", "edit"], True),
    (["/venv/bin/python", "/venv/bin/thead", "preprocess"], True),
    (["thead", "reenact"], True),
    (["thead"], False),
    (["/venv/bin/python", "-m", "pytest", "tests/test_thead.py"], False),
    (["/venv/bin/python", "bench/bench_commands.py", "thead"], False),
    (["/venv/bin/python", "-c", "import thead"], False),
])
def test_thead_command_lines(argv, expected):
    assert runtime._is_thead_cli(argv) is expected


def test_thead_processes_counts_running_thead_commands(tmp_path):
    def proc(pid: int, argv: list[str]) -> None:
        _write(tmp_path / str(pid) / "cmdline", "")
        (tmp_path / str(pid) / "cmdline").write_bytes(b"\0".join(a.encode() for a in argv) + b"\0")

    proc(999_991, ["/v/bin/python", "-m", "thead", "reenact", "a.jpg", "b.mp4"])
    proc(999_992, ["/v/bin/python", "/v/bin/thead", "edit", "c.mp4"])
    proc(999_993, ["/v/bin/python", "-m", "pytest", "thead"])
    proc(999_994, ["bash"])
    (tmp_path / "self").mkdir()
    assert runtime.thead_processes(tmp_path) == 3  # two others and this one
    assert runtime.thead_processes(tmp_path / "missing") == 1


def test_thread_environment_respects_the_users_choices():
    env: dict[str, str] = {"OMP_WAIT_POLICY": "ACTIVE"}
    runtime.set_thread_environment(runtime.ThreadPlan(3, 3, 4, "--threads"), env)
    assert env["OMP_NUM_THREADS"] == env["MKL_NUM_THREADS"] == env["OPENBLAS_NUM_THREADS"] == "3"
    assert env["OPENCV_FOR_THREADS_NUM"] == "3"
    assert env["OMP_WAIT_POLICY"] == "ACTIVE"  # the user's
    assert env["GOMP_SPINCOUNT"] == "0" and env["KMP_BLOCKTIME"] == "0"
    env = {"OMP_NUM_THREADS": "2", "MKL_NUM_THREADS": "1"}
    runtime.set_thread_environment(runtime.plan_threads(None, env, cpus=8, sharing=1), env)
    assert (env["OMP_NUM_THREADS"], env["MKL_NUM_THREADS"], env["OPENBLAS_NUM_THREADS"]) == ("2", "1", "2")
    assert env["OMP_WAIT_POLICY"] == "PASSIVE"


# --- what reaches torch, and when -------------------------------------------------------------------------------

# Records the thread variables at the moment torch is first imported, then runs the CLI with ``ARGV``.
_RECORD_AT_TORCH_IMPORT = """
import json, os, sys
seen = {}

class AtTorchImport:
    def find_spec(self, name, path=None, target=None):
        if name == "torch" and not seen:
            seen.update({k: os.environ.get(k) for k in ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT", "OMP_NUM_THREADS")})
        return None

sys.meta_path.insert(0, AtTorchImport())
sys.argv = ARGV
from thead.cli import main
try:
    main()
except SystemExit:
    pass
import torch
print(json.dumps({"at_import": seen, "torch_threads": torch.get_num_threads(),
                  "interop": torch.get_num_interop_threads()}))
"""


def test_threads_option_reaches_torch_and_wait_policy_precedes_torch(tmp_path):
    # fit-3dmm imports torch with its module; a missing input fails after that, quickly.
    code = _RECORD_AT_TORCH_IMPORT.replace("ARGV", repr(["thead", "--threads", "1", "fit-3dmm",
                                                         str(tmp_path / "missing.mp4")]))
    res = _python(code, cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    out = json.loads(res.stdout.strip().splitlines()[-1])
    assert out["at_import"] == {"OMP_WAIT_POLICY": "PASSIVE", "GOMP_SPINCOUNT": "0", "OMP_NUM_THREADS": "1"}
    assert (out["torch_threads"], out["interop"]) == (1, 1)


def test_thead_threads_variable_and_a_users_wait_policy(tmp_path):
    code = _RECORD_AT_TORCH_IMPORT.replace("ARGV", repr(["thead", "fit-3dmm", str(tmp_path / "missing.mp4")]))
    res = _python(code, env={"THEAD_THREADS": "2", "OMP_WAIT_POLICY": "ACTIVE"}, cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    out = json.loads(res.stdout.strip().splitlines()[-1])
    assert out["at_import"]["OMP_WAIT_POLICY"] == "ACTIVE"
    assert out["at_import"]["OMP_NUM_THREADS"] == "2" and out["torch_threads"] == 2


def test_a_users_omp_num_threads_is_kept(tmp_path):
    code = _RECORD_AT_TORCH_IMPORT.replace("ARGV", repr(["thead", "fit-3dmm", str(tmp_path / "missing.mp4")]))
    res = _python(code, env={"OMP_NUM_THREADS": "1"}, cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    assert json.loads(res.stdout.strip().splitlines()[-1])["torch_threads"] == 1


def test_threads_option_applies_to_torch_already_imported():
    res = _python("""
        import torch
        torch.set_num_threads(2)
        from thead.cli import app
        app(["--threads", "1", "weights"], standalone_mode=False)
        import cv2
        print(torch.get_num_threads(), cv2.getNumThreads())
    """)
    assert res.returncode == 0, res.stderr
    assert res.stdout.split()[-2:] == ["1", "1"]


def test_profile_start_line_reports_the_threads_in_use(tmp_path):
    res = subprocess.run([sys.executable, "-m", "thead", "--threads", "1", "fit-3dmm", str(tmp_path / "no.mp4")],
                         capture_output=True, text=True, cwd=tmp_path, timeout=300,
                         env={**os.environ, "THEAD_PROFILE": "1",
                              "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])})
    records = [json.loads(ln) for ln in res.stderr.splitlines() if ln.startswith('{"thead_profile"')]
    start = next(r for r in records if r["thead_profile"] == "start")
    assert start["torch_threads"] == 1 and start["cv2_threads"] == 1 and start["startup_s"] > 0
    assert any(r["thead_profile"] == "total" for r in records)


# --- lazy CLI -------------------------------------------------------------------------------------------------


def test_importing_the_cli_and_its_help_load_no_heavy_module():
    res = _python("""
        import sys
        import thead.cli
        after_import = sorted(m for m in ("torch", "cv2", "numpy", "scipy", "mediapipe") if m in sys.modules)
        sys.argv = ["thead", "--help"]
        try:
            thead.cli.main()
        except SystemExit:
            pass
        after_help = sorted(m for m in ("torch", "cv2", "numpy", "scipy", "mediapipe") if m in sys.modules)
        print(after_import, after_help, file=sys.stderr)
    """)
    assert res.returncode == 0, res.stderr
    assert res.stderr.strip().splitlines()[-1] == "[] []"
    for name in ("preprocess", "fit-3dmm", "reenact", "edit", "evaluate", "weights"):
        assert name in res.stdout


def test_lazy_help_texts_are_the_commands_docstrings():
    import importlib

    from thead.cli import COMMANDS, command_docstring

    import typer

    for module, function in COMMANDS.values():
        fn = getattr(importlib.import_module(module), function)
        if isinstance(fn, typer.Typer):  # a sub-app (thead train): its help is its own help text
            assert command_docstring(module, function) == (fn.info.help or "")
            continue
        assert command_docstring(module, function) == inspect.getdoc(fn)


def test_unknown_command_suggests_a_lazy_one():
    from typer.testing import CliRunner

    from thead.cli import app

    res = CliRunner().invoke(app, ["reenac"])
    assert res.exit_code != 0 and "reenact" in res.output


# --- phase timings ----------------------------------------------------------------------------------------------


class _Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_phases_count_their_own_time_only(monkeypatch, capsys):
    clock = _Clock()
    monkeypatch.setenv("THEAD_PROFILE", "1")
    monkeypatch.setattr(runtime, "_profile", runtime._Profile())
    monkeypatch.setattr(runtime._profile, "registered", True)  # no atexit hook from a test
    monkeypatch.setattr(runtime.time, "perf_counter", clock)
    monkeypatch.setattr(runtime.time, "process_time", clock)
    with runtime.phase("render"):
        clock.now += 1.0
        with runtime.phase("decode"):
            clock.now += 0.25
        clock.now += 0.5
        with runtime.phase("decode"):
            clock.now += 0.25
    runtime._profile.startup = 2.0
    runtime._write_profile()
    lines = [json.loads(ln) for ln in capsys.readouterr().err.splitlines()]
    phases = {r["name"]: r for r in lines if r["thead_profile"] == "phase"}
    assert phases["render"]["wall_s"] == 1.5 and phases["render"]["calls"] == 1
    assert phases["decode"]["wall_s"] == 0.5 and phases["decode"]["calls"] == 2
    assert phases["decode"]["cpu_s"] == 0.5 and phases["startup"]["wall_s"] == 2.0
    assert lines[-1]["thead_profile"] == "total"


def test_phase_without_profile_records_nothing(monkeypatch):
    monkeypatch.delenv("THEAD_PROFILE", raising=False)
    monkeypatch.setattr(runtime, "_profile", runtime._Profile())
    with runtime.phase("render"):
        pass
    assert runtime._profile.totals == {} and not runtime._profile.registered


def test_bench_reads_the_phase_lines():
    sys.path.insert(0, str(REPO / "bench"))
    try:
        import bench_commands
    finally:
        sys.path.remove(str(REPO / "bench"))
    stderr = "\n".join([
        "some progress text",
        json.dumps({"thead_profile": "threads", "threads": 1, "source": "shared"}),
        json.dumps({"thead_profile": "phase", "name": "startup", "wall_s": 1.0, "calls": 1, "thread": "main"}),
        json.dumps({"thead_profile": "phase", "name": "detect", "wall_s": 2.0, "calls": 9, "thread": "main"}),
        json.dumps({"thead_profile": "phase", "name": "fit", "wall_s": 0.5, "calls": 1, "thread": "main"}),
        json.dumps({"thead_profile": "phase", "name": "decode", "wall_s": 9.0, "calls": 9, "thread": "background"}),
        json.dumps({"thead_profile": "phase", "name": "mystery", "wall_s": 0.25, "calls": 1, "thread": "main"}),
    ])
    phases, plan = bench_commands.parse_profile(stderr)
    assert phases == {"startup": 1.0, "detect/fit": 2.5, "other": 0.25}
    assert plan == {"threads": 1, "source": "shared"}


def test_refresh_threads_follows_the_thead_processes_sharing_the_cpus(monkeypatch):
    torch = pytest.importorskip("torch")
    before = torch.get_num_threads()
    sharing = {"n": 1}
    monkeypatch.setattr(runtime, "thead_processes", lambda proc=Path("/proc"): sharing["n"])
    monkeypatch.setattr(runtime, "_plan", runtime.ThreadPlan(2, 2, 2, "cpus", 1))
    monkeypatch.setattr(runtime, "_last_refresh", 0.0)
    monkeypatch.setattr(runtime, "_user_env", {})
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "OPENCV_FOR_THREADS_NUM",
                "OMP_WAIT_POLICY", "GOMP_SPINCOUNT", "KMP_BLOCKTIME", "OPENBLAS_THREAD_TIMEOUT"):
        monkeypatch.delenv(var, raising=False)
    try:
        sharing["n"] = 2
        assert runtime.refresh_threads(min_interval=0.0).threads == 1
        assert torch.get_num_threads() == 1
        sharing["n"] = 1
        assert runtime.refresh_threads(min_interval=3600.0).threads == 1  # too soon: unchanged
        monkeypatch.setattr(runtime, "_last_refresh", 0.0)
        assert runtime.refresh_threads(min_interval=0.0).threads == 2
        assert torch.get_num_threads() == 2
        monkeypatch.setattr(runtime, "_plan", runtime.ThreadPlan(3, 3, 2, "--threads", 1))
        sharing["n"] = 4
        assert runtime.refresh_threads(min_interval=0.0).threads == 3  # explicit: kept
    finally:
        torch.set_num_threads(before)


def test_ordered_map_keeps_the_order_restores_torch_threads_and_raises_at_the_item():
    import threading
    import time

    import torch

    threads = torch.get_num_threads()
    seen: dict[int, tuple[int, str]] = {}

    def work(i: int) -> int:
        time.sleep(0.02 * (5 - i % 5))  # later items finish first
        seen[i] = (torch.get_num_threads(), threading.current_thread().name)
        return i * i

    assert list(runtime.ordered_map(work, range(10), 3)) == [i * i for i in range(10)]
    assert {n for n, _ in seen.values()} == {1} and len({name for _, name in seen.values()}) > 1
    assert torch.get_num_threads() == threads

    def fail(i: int) -> int:
        if i == 4:
            raise ValueError("item 4")
        return i

    out = []
    with pytest.raises(ValueError, match="item 4"):
        for value in runtime.ordered_map(fail, range(8), 2):
            out.append(value)
    assert out == [0, 1, 2, 3] and torch.get_num_threads() == threads
    plain = list(runtime.ordered_map(lambda i: (i, torch.get_num_threads()), range(3), 1))
    assert plain == [(i, threads) for i in range(3)]


# --- ending the process -----------------------------------------------------------------------------------------


def test_the_program_exits_with_the_commands_status_output_and_exit_handlers(tmp_path):
    # `python -m thead` ends through runtime.exit_now: the status of the command, its whole stdout, and the atexit
    # handlers (here the THEAD_PROFILE lines) must survive skipping the interpreter's teardown.
    env = {**os.environ, "THEAD_PROFILE": "1",
           "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
    ok = subprocess.run([sys.executable, "-m", "thead", "weights", "--json"], capture_output=True, text=True,
                        cwd=tmp_path, env=env, timeout=300)
    assert ok.returncode == 0, ok.stderr
    assert [json.loads(ln) for ln in ok.stdout.splitlines()]  # every line complete
    assert any(ln.startswith('{"thead_profile": "total"') for ln in ok.stderr.splitlines())
    bad = subprocess.run([sys.executable, "-m", "thead", "fit-3dmm", str(tmp_path / "missing.mp4")],
                         capture_output=True, text=True, cwd=tmp_path, env=env, timeout=300)
    assert bad.returncode not in (0, None) and "missing.mp4" in bad.stdout + bad.stderr


def test_exit_now_keeps_status_flushes_and_waits_for_a_running_thread(tmp_path):
    flag = tmp_path / "thread-finished"
    res = _python(f"""
        import atexit, sys, threading, time
        from pathlib import Path
        from thead import runtime
        atexit.register(lambda: print("handler ran"))
        def work():
            time.sleep(0.3)
            Path({str(flag)!r}).write_text("done")
        threading.Thread(target=work).start()
        sys.stdout.write("no newline at the end")
        runtime.exit_now(3)
    """)
    assert res.returncode == 3
    assert flag.read_text() == "done"  # the non-daemon thread was waited for
    assert "handler ran" in res.stdout
    res = _python("""
        import atexit, sys
        from thead import runtime
        atexit.register(lambda: print("handler ran"))
        sys.stdout.write("unflushed")
        runtime.exit_now("it broke")
    """)
    assert (res.returncode, res.stdout, res.stderr.strip()) == (1, "unflushedhandler ran\n", "it broke")
    assert [runtime_status(c) for c in (None, 0, 2, True, "x")] == [0, 0, 2, 1, 1]


def runtime_status(code: object) -> int:
    from thead.runtime import exit_status

    return exit_status(code)

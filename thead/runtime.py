"""How a thead process uses the machine: thread counts that follow the CPUs it really has, and phase timings.

Threads
-------
torch (OpenMP, MKL), numpy's OpenBLAS and OpenCV each start one worker thread per core of the *machine*, and
GNU OpenMP's workers spin for up to ~300 000 iterations after every parallel region waiting for the next one.
On a machine shared with another busy process (a second ``thead``, a job-array shard, a Ray task) those spinning
threads hold cores the other process needs and both runs slow down many times over. ``configure_threads``
therefore, before torch is imported:

- counts the CPUs this process may use: its affinity mask (``os.sched_getaffinity``) capped by the cgroup CPU
  quota (cgroup v2 ``cpu.max``, v1 ``cpu.cfs_quota_us / cpu.cfs_period_us``);
- divides them among the thead processes already running on those CPUs (one thread each when two share two
  cores); ``--threads N`` / ``$THEAD_THREADS`` / an explicit ``$OMP_NUM_THREADS`` take precedence, in that order;
- sets ``OMP_NUM_THREADS``, ``MKL_NUM_THREADS``, ``OPENBLAS_NUM_THREADS`` and ``OPENCV_FOR_THREADS_NUM`` to that
  count and makes idle OpenMP workers sleep instead of spinning (``OMP_WAIT_POLICY=PASSIVE``, GNU OpenMP's
  ``GOMP_SPINCOUNT=0``, Intel OpenMP's ``KMP_BLOCKTIME=0``), unless the user set those variables;
- applies the count to torch (``set_num_threads``, ``set_num_interop_threads``) and OpenCV (``setNumThreads``)
  when they are already imported; when they are imported later they read the variables above.

Several workers on one node (Ray tasks, job-array shards, a process pool): give each ``--threads 1`` (or
``THEAD_THREADS=1``); Ray already sets ``OMP_NUM_THREADS`` per task, which is respected.

Phase timings
-------------
With ``THEAD_PROFILE=1`` in the environment, ``with phase("render"):`` blocks add up their wall and CPU time per
phase name, and at exit the process writes one JSON line per phase to stderr (plus a ``startup`` line: process
start to the command's first line, imports included, and a ``total`` line)::

    {"thead_profile": "phase", "name": "decode", "wall_s": 0.81, "cpu_s": 0.43, "calls": 355, "thread": "main"}

A phase's time excludes the phases nested in it, so the phases of one thread add up to at most its wall time.
Without ``THEAD_PROFILE`` a phase costs one dictionary look-up.
"""

from __future__ import annotations

import atexit
import json
import math
import os
import queue
import sys
import threading
import time
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable, Iterable, Iterator, Mapping, MutableMapping, TypeVar

T = TypeVar("T")
U = TypeVar("U")

THREADS_ENV = "THEAD_THREADS"
PROFILE_ENV = "THEAD_PROFILE"

# Variables that fix a library's thread count; OMP_NUM_THREADS set by the user is respected.
_COUNT_VARS = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "OPENCV_FOR_THREADS_NUM")
# Idle workers sleep at once instead of spinning (GNU OpenMP: torch's pip wheels; Intel OpenMP; OpenBLAS: 2^4
# cycles, its least).
_WAIT_VARS = {"OMP_WAIT_POLICY": "PASSIVE", "GOMP_SPINCOUNT": "0", "KMP_BLOCKTIME": "0",
              "OPENBLAS_THREAD_TIMEOUT": "4"}


@dataclass(frozen=True)
class ThreadPlan:
    """How many threads this process uses, and why.

    Attributes
    ----------
    threads : int
        Intra-op threads for torch/OpenMP, MKL, OpenBLAS and OpenCV (>= 1).
    interop : int
        torch inter-op threads (>= 1).
    cpus : int
        CPUs this process may use: its affinity mask capped by its cgroup quota (rounded up).
    source : str
        Where ``threads`` came from: ``"--threads"``, ``"THEAD_THREADS"``, ``"OMP_NUM_THREADS"`` (set by the
        user), ``"cpus"`` (all usable CPUs) or ``"shared"`` (usable CPUs divided among thead processes).
    sharing : int
        thead processes found running on these CPUs, this one included (1 when not looked for).
    """

    threads: int
    interop: int
    cpus: int
    source: str
    sharing: int = 1

    def to_dict(self) -> dict:
        return asdict(self)


# ---------------------------------------------------------------------------------------------------------------
# CPUs a process may use


def parse_cpu_max(text: str) -> float | None:
    """CPUs allowed by a cgroup v2 ``cpu.max`` file (``"<quota> <period>"`` in microseconds, or ``"max ..."``).

    Returns None when there is no limit or the text is not understood.
    """
    parts = text.split()
    if not parts or parts[0] == "max":
        return None
    try:
        quota = int(parts[0])
        period = int(parts[1]) if len(parts) > 1 else 100_000
    except ValueError:
        return None
    return quota / period if quota > 0 and period > 0 else None


def parse_cfs_quota(quota_text: str, period_text: str) -> float | None:
    """CPUs allowed by cgroup v1 ``cpu.cfs_quota_us`` / ``cpu.cfs_period_us`` (quota ``-1``: no limit)."""
    try:
        quota, period = int(quota_text.strip()), int(period_text.strip())
    except ValueError:
        return None
    return quota / period if quota > 0 and period > 0 else None


def _read(path: Path) -> str | None:
    try:
        return path.read_text()
    except OSError:
        return None


def _chain(base: Path, rel: str) -> list[Path]:
    """``base/rel`` and its ancestors up to ``base`` (a quota on any ancestor applies to the process)."""
    parts = [p for p in rel.strip().split("/") if p]
    return [base.joinpath(*parts[:i]) for i in range(len(parts), -1, -1)]


def cgroup_cpu_limit(proc_cgroup: Path = Path("/proc/self/cgroup"),
                     root: Path = Path("/sys/fs/cgroup")) -> float | None:
    """CPUs the process's cgroup quota allows (the tightest along its cgroup path), or None when unlimited.

    Parameters
    ----------
    proc_cgroup : Path
        The process's cgroup membership file (lines ``<id>:<controllers>:<path>``).
    root : Path
        Where cgroup filesystems are mounted: cgroup v2 at ``root`` (or ``root/unified`` on hybrid systems),
        v1 controllers at ``root/<controllers>`` (``cpu,cpuacct`` or ``cpu``).

    Returns
    -------
    float or None
        Quota divided by period, e.g. 1.5 for ``"150000 100000"``.
    """
    text = _read(proc_cgroup)
    if text is None:
        return None
    limits: list[float] = []
    for line in text.splitlines():
        fields = line.split(":", 2)
        if len(fields) != 3:
            continue
        _, controllers, rel = fields
        if controllers == "":  # cgroup v2
            for base in (root, root / "unified"):
                for d in _chain(base, rel):
                    content = _read(d / "cpu.max")
                    limit = parse_cpu_max(content) if content else None
                    if limit is not None:
                        limits.append(limit)
        elif "cpu" in controllers.split(","):  # cgroup v1
            for name in dict.fromkeys((controllers, "cpu,cpuacct", "cpu")):
                for d in _chain(root / name, rel):
                    quota, period = _read(d / "cpu.cfs_quota_us"), _read(d / "cpu.cfs_period_us")
                    limit = parse_cfs_quota(quota, period) if quota and period else None
                    if limit is not None:
                        limits.append(limit)
    return min(limits) if limits else None


def affinity_cpus() -> int:
    """CPUs in this process's affinity mask (``os.cpu_count()`` where affinity is not available)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):  # pragma: no cover - not Linux
        return max(1, os.cpu_count() or 1)


def cpu_budget(affinity: int, quota: float | None) -> int:
    """CPUs a process may keep busy: ``affinity`` CPUs capped by a cgroup ``quota`` in CPUs (rounded up, as the
    JVM and Go do), at least 1."""
    cpus = affinity if quota is None else min(affinity, math.ceil(quota - 1e-9))
    return max(1, int(cpus))


def usable_cpus() -> int:
    """CPUs this process may keep busy: ``cpu_budget(affinity_cpus(), cgroup_cpu_limit())``."""
    return cpu_budget(affinity_cpus(), cgroup_cpu_limit())


def _is_thead_cli(argv: list[str]) -> bool:
    """True for the command line of a thead command: ``thead CMD ...`` (the console script, run directly or by
    an interpreter) or ``python [options] -m thead CMD ...``."""
    for i, arg in enumerate(argv[:8]):
        if arg == "-m":
            return i + 2 < len(argv) and argv[i + 1] == "thead"
        if i <= 1 and os.path.basename(arg) == "thead":
            return i + 1 < len(argv)
        if i > 0 and not arg.startswith("-") and argv[i - 1] not in ("-X", "-W"):
            return False  # a script or -c code that is not thead
    return False


def thead_processes(proc: Path = Path("/proc")) -> int:
    """Running thead commands whose CPUs overlap this process's, this process included (at least 1).

    Reads ``/proc/<pid>/cmdline`` (a few milliseconds); 1 where ``/proc`` is not readable.
    """
    try:
        mine = os.sched_getaffinity(0)
    except (AttributeError, OSError):  # pragma: no cover - not Linux
        mine = None
    count, me = 0, os.getpid()
    try:
        entries = os.listdir(proc)
    except OSError:
        return 1
    for name in entries:
        if not name.isdigit():
            continue
        pid = int(name)
        if pid == me:
            continue
        raw = _read_bytes(proc / name / "cmdline")
        if not raw or b"thead" not in raw:
            continue
        if not _is_thead_cli([a.decode("utf8", "replace") for a in raw.split(b"\0") if a]):
            continue
        if mine is not None:
            try:
                if not (os.sched_getaffinity(pid) & mine):
                    continue
            except OSError:
                pass
        count += 1
    return count + 1


def _read_bytes(path: Path) -> bytes | None:
    try:
        return path.read_bytes()
    except OSError:
        return None


def _positive_int(text: str | None) -> int | None:
    if text is None or not text.strip():
        return None
    try:
        value = int(text.strip().split(",")[0])
    except ValueError:
        return None
    return value if value > 0 else None


def plan_threads(requested: int | None = None, environ: Mapping[str, str] | None = None, cpus: int | None = None,
                 sharing: int | None = None) -> ThreadPlan:
    """Decide the thread counts (pure: nothing is set).

    Parameters
    ----------
    requested : int, optional
        ``--threads``; wins over everything else.
    environ : mapping, optional
        Environment read for ``THEAD_THREADS`` then a user's ``OMP_NUM_THREADS`` (default ``os.environ``).
    cpus : int, optional
        Usable CPUs (``usable_cpus()`` when None).
    sharing : int, optional
        thead processes on these CPUs including this one (``thead_processes()`` when None and the count is not
        fixed by the arguments or environment).

    Returns
    -------
    ThreadPlan
        ``threads`` = requested, else ``THEAD_THREADS``, else the user's ``OMP_NUM_THREADS``, else
        ``cpus // sharing`` (at least 1); ``interop`` = ``threads``.
    """
    environ = os.environ if environ is None else environ
    cpus = usable_cpus() if cpus is None else max(1, int(cpus))
    threads, source, shared = None, "", 1
    if requested is not None:
        if requested < 1:
            raise ValueError(f"--threads must be at least 1, got {requested}")
        threads, source = int(requested), "--threads"
    elif _positive_int(environ.get(THREADS_ENV)) is not None:
        threads, source = _positive_int(environ.get(THREADS_ENV)), THREADS_ENV
    elif _positive_int(_user_value(environ, "OMP_NUM_THREADS")) is not None:
        threads, source = _positive_int(_user_value(environ, "OMP_NUM_THREADS")), "OMP_NUM_THREADS"
    else:
        shared = max(1, thead_processes() if sharing is None else int(sharing))
        threads = max(1, cpus // shared)
        source = "shared" if shared > 1 else "cpus"
    assert threads is not None
    return ThreadPlan(threads=threads, interop=threads, cpus=cpus, source=source, sharing=shared)


_plan: ThreadPlan | None = None
_user_env: dict[str, str | None] = {}  # the thread variables as the user set them, read before thead's first change


def _user_value(environ: Mapping[str, str], var: str) -> str | None:
    """``environ[var]`` as the user set it: once this process exported its own values, the value before that."""
    if environ is os.environ and var in _user_env:
        return _user_env[var]
    return environ.get(var)


def current_plan() -> ThreadPlan | None:
    """The plan ``configure_threads`` last applied in this process (None before)."""
    return _plan


def set_thread_environment(plan: ThreadPlan, environ: MutableMapping[str, str] | None = None) -> None:
    """Write ``plan`` into the variables torch, MKL, OpenBLAS and OpenCV read when they load.

    The wait-policy variables are set only where the user left them unset; a user's ``OMP_NUM_THREADS`` is
    replaced only when the plan did not come from it (``--threads`` / ``THEAD_THREADS`` are explicit too).
    """
    environ = os.environ if environ is None else environ
    if environ is os.environ and not _user_env:
        _user_env.update({var: environ.get(var) for var in (*_COUNT_VARS, *_WAIT_VARS)})
    for var in _COUNT_VARS:
        if plan.source == "OMP_NUM_THREADS" and var != "OMP_NUM_THREADS" and _user_value(environ, var):
            continue  # the user tuned the libraries one by one
        environ[var] = str(plan.threads)
    for var, value in _WAIT_VARS.items():
        if not _user_value(environ, var):
            environ[var] = value


def apply_threads(plan: ThreadPlan | None = None) -> None:
    """Apply ``plan`` (default: the current one) to torch and OpenCV if they are imported; a no-op otherwise."""
    plan = plan or _plan
    if plan is None:
        return
    torch = sys.modules.get("torch")
    if torch is not None and hasattr(torch, "set_num_threads"):
        if torch.get_num_threads() != plan.threads:
            torch.set_num_threads(plan.threads)
        if torch.get_num_interop_threads() != plan.interop:
            try:
                torch.set_num_interop_threads(plan.interop)
            except RuntimeError:
                pass  # inter-op work already started: torch allows setting it once, before that
    cv2 = sys.modules.get("cv2")
    if cv2 is not None and hasattr(cv2, "setNumThreads"):
        cv2.setNumThreads(plan.threads)


def configure_threads(requested: int | None = None) -> ThreadPlan:
    """Plan this process's threads (see ``plan_threads``), export them to the environment and apply them.

    Call it before torch is imported (the thead CLI does, first thing): GNU OpenMP reads its wait policy only
    when it loads. Calling it again (e.g. for ``--threads``) replaces the counts.
    """
    global _plan
    _plan = plan_threads(requested)
    set_thread_environment(_plan)
    apply_threads(_plan)
    profile_event("threads", **_plan.to_dict())
    return _plan


_last_refresh = 0.0


def refresh_threads(min_interval: float = 5.0) -> ThreadPlan | None:
    """Count the thead processes sharing this process's CPUs again and apply the new share if it changed.

    For long jobs: call it between batches (it looks at ``/proc`` at most every ``min_interval`` seconds, ~2 ms),
    so a run that started alone gives up threads when a second one starts, and takes them back when it ends.
    Counts given explicitly (``--threads``, ``THEAD_THREADS``, ``OMP_NUM_THREADS``) never change. Returns the
    plan in force (None before ``configure_threads``).
    """
    global _plan, _last_refresh
    if _plan is None or _plan.source not in ("cpus", "shared"):
        return _plan
    now = time.monotonic()
    if now - _last_refresh < min_interval:
        return _plan
    _last_refresh = now
    plan = plan_threads(None, {}, cpus=_plan.cpus)
    if plan.threads != _plan.threads:
        _plan = ThreadPlan(plan.threads, _plan.interop, plan.cpus, plan.source, plan.sharing)  # inter-op: set once
        set_thread_environment(_plan)
        apply_threads(_plan)
        profile_event("threads", **_plan.to_dict())
    return _plan


# ---------------------------------------------------------------------------------------------------------------
# Phase timings


def profiling() -> bool:
    """True when ``$THEAD_PROFILE`` asks for phase timings."""
    return os.environ.get(PROFILE_ENV, "") not in ("", "0")


class _Profile:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.totals: dict[tuple[str, str], list[float]] = {}  # (name, thread) -> [wall, cpu, calls]
        self.local = threading.local()
        self.startup: float | None = None
        self.registered = False

    def stack(self) -> list[list[float]]:
        stack = getattr(self.local, "stack", None)
        if stack is None:
            stack = self.local.stack = []
        return stack

    def add(self, name: str, wall: float, cpu: float) -> None:
        kind = "main" if threading.current_thread() is threading.main_thread() else "background"
        with self.lock:
            entry = self.totals.setdefault((name, kind), [0.0, 0.0, 0])
            entry[0] += wall
            entry[1] += cpu
            entry[2] += 1
            if not self.registered:
                atexit.register(_write_profile)
                self.registered = True


_profile = _Profile()


def _emit(record: dict) -> None:
    try:
        sys.stderr.write(json.dumps(record) + "\n")
        sys.stderr.flush()
    except (OSError, ValueError):  # stderr closed
        pass


def profile_event(kind: str, **fields: object) -> None:
    """Write one ``{"thead_profile": kind, ...}`` JSON line to stderr when profiling (else nothing)."""
    if profiling():
        _emit({"thead_profile": kind, **fields})


@contextmanager
def phase(name: str) -> Iterator[None]:
    """Time the block as phase ``name`` when ``$THEAD_PROFILE`` is set (wall and process CPU seconds).

    Time spent in phases nested inside it counts for those, not for ``name``. Usable from any thread; phases
    outside the main thread are reported as ``"thread": "background"`` (they overlap the main thread's).
    """
    if not profiling():
        yield
        return
    stack = _profile.stack()
    frame = [0.0, 0.0]  # time of nested phases: wall, cpu
    stack.append(frame)
    w0, c0 = time.perf_counter(), time.process_time()
    try:
        yield
    finally:
        wall, cpu = time.perf_counter() - w0, time.process_time() - c0
        stack.pop()
        if stack:
            stack[-1][0] += wall
            stack[-1][1] += cpu
        _profile.add(name, wall - frame[0], cpu - frame[1])


def process_age() -> float | None:
    """Seconds since this process started (from ``/proc/self/stat``, 10 ms resolution); None off Linux."""
    try:
        fields = Path("/proc/self/stat").read_text().rsplit(")", 1)[1].split()
        start_ticks = int(fields[19])  # field 22 of stat(5), counted after the ")" that ends the command name
        return time.clock_gettime(time.CLOCK_BOOTTIME) - start_ticks / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError, AttributeError):  # pragma: no cover - not Linux
        return None


def loaded_thread_counts() -> dict[str, int]:
    """Threads that torch (intra-op, inter-op) and OpenCV use now, for those of them already imported."""
    counts: dict[str, int] = {}
    torch = sys.modules.get("torch")
    if torch is not None and hasattr(torch, "get_num_threads"):
        counts["torch_threads"] = torch.get_num_threads()
        counts["torch_interop_threads"] = torch.get_num_interop_threads()
    cv2 = sys.modules.get("cv2")
    if cv2 is not None and hasattr(cv2, "getNumThreads"):
        counts["cv2_threads"] = cv2.getNumThreads()
    return counts


def mark_startup() -> None:
    """Record the end of start-up (interpreter, imports, argument parsing): the command's work begins now.

    When profiling, writes a ``{"thead_profile": "start", ...}`` line with the start-up seconds and the thread
    counts torch and OpenCV actually use.
    """
    if profiling() and _profile.startup is None:
        age = process_age()
        _profile.startup = age if age is not None else 0.0
        profile_event("start", startup_s=round(_profile.startup, 4), **loaded_thread_counts())
        with _profile.lock:
            if not _profile.registered:
                atexit.register(_write_profile)
                _profile.registered = True


def _write_profile() -> None:
    import resource

    with _profile.lock:
        totals = dict(_profile.totals)
    if _profile.startup is not None:
        _emit({"thead_profile": "phase", "name": "startup", "wall_s": round(_profile.startup, 4), "calls": 1,
               "thread": "main"})
    for (name, kind), (wall, cpu, calls) in sorted(totals.items()):
        _emit({"thead_profile": "phase", "name": name, "wall_s": round(wall, 4), "cpu_s": round(cpu, 4),
               "calls": int(calls), "thread": kind})
    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    _emit({"thead_profile": "total", "wall_s": round(process_age() or 0.0, 4),
           "cpu_s": round(own.ru_utime + own.ru_stime, 4),
           "children_cpu_s": round(children.ru_utime + children.ru_stime, 4)})


# ---------------------------------------------------------------------------------------------------------------
# Ending the process

def exit_status(code: object) -> int:
    """The exit status Python gives ``SystemExit(code)``: None -> 0, an int as it is, anything else 1 (the
    interpreter prints it to stderr; so does :func:`exit_now`)."""
    if code is None:
        return 0
    if isinstance(code, bool):
        return int(code)
    if isinstance(code, int):
        return code
    return 1


def exit_now(code: object = 0) -> None:
    """End the process with ``SystemExit(code)``'s status, skipping the interpreter's teardown.

    Tearing down an interpreter that imported torch (its modules, their objects, the C++ static destructors) takes
    0.3-0.5 s on 2 cores, 4-5 % of a 9 s ``thead reenact``, spent after every output is complete. Here the
    ``atexit`` handlers run as they would (the profile lines, multiprocessing's clean-up, a user's handlers), the
    log handlers and the standard streams are flushed, and then ``os._exit`` ends the process. When a thread that
    Python would wait for (not a daemon) is still running, the normal exit runs instead, which waits for it.
    """
    status = exit_status(code)
    if code is not None and not isinstance(code, int):
        print(code, file=sys.stderr)
    main = threading.main_thread()
    if any(t is not main and t.is_alive() and not t.daemon for t in threading.enumerate()):
        sys.exit(status)
    atexit._run_exitfuncs()
    import logging

    logging.shutdown()
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):  # a closed pipe (``thead ... | head``): 120, as Python's own exit gives
            status = status or 120
    os._exit(status)


# ---------------------------------------------------------------------------------------------------------------
# Overlapping I/O with compute

_DONE = object()


class _Failure:
    def __init__(self, exc: BaseException) -> None:
        self.exc = exc


@contextmanager
def torch_threads(count: int) -> Iterator[None]:
    """Within the block, torch's intra-op threads are ``count`` (>= 1); the previous count is restored after."""
    import torch

    previous = torch.get_num_threads()
    if previous != count:
        torch.set_num_threads(max(1, int(count)))
    try:
        yield
    finally:
        if torch.get_num_threads() != previous:
            torch.set_num_threads(previous)


def ordered_map(func: Callable[[T], U], items: Iterable[T], workers: int, name: str = "thead-worker"
                ) -> Iterator[U]:
    """``func(item)`` for each of ``items``, in order, with ``workers`` items in flight at once.

    For torch work on the CPU made of many small operations (a render batch): with ``workers`` > 1 each item
    runs in its own thread with one torch thread (torch releases the GIL inside its operations), which keeps the
    cores busier than torch's threads inside each small operation; torch's thread count is restored when the
    iteration ends or is closed. ``items`` is read in the calling thread, one item ahead of each worker (a lazy
    decoder stays in order). An exception raised by ``func`` is raised at its item.

    Parameters
    ----------
    func : what to compute for one item.
    items : the items; iterated in the calling thread.
    workers : items in flight (<= 1: a plain loop, torch's threads untouched).
    name : the worker threads' name prefix.

    Yields
    ------
    ``func(item)`` for each item, in the order of ``items``.
    """
    if workers <= 1:
        for item in items:
            yield func(item)
        return
    from collections import deque
    from concurrent.futures import ThreadPoolExecutor

    pending: deque = deque()
    with torch_threads(1):
        pool = ThreadPoolExecutor(int(workers), thread_name_prefix=name)
        try:
            for item in items:
                pending.append(pool.submit(func, item))
                if len(pending) >= workers:
                    yield pending.popleft().result()
            while pending:
                yield pending.popleft().result()
        finally:
            for job in pending:
                job.cancel()
            pool.shutdown(wait=True)


def prefetch(items: Iterable[T], depth: int = 2, wait_phase: str | None = "decode",
             name: str = "thead-prefetch") -> Iterator[T]:
    """``items`` produced in a background thread, at most ``depth`` ahead of the consumer (a bounded queue).

    Decoding (an ffmpeg pipe, OpenCV warps) releases the GIL, so the thread runs while the caller renders. The
    time the consumer waits for the next item counts as phase ``wait_phase`` (None: not timed). An exception
    raised by ``items`` is raised in the consumer at the item where it happened. Closing the returned generator
    (or dropping it) stops the thread after its current item and closes ``items`` when it is a generator.

    Parameters
    ----------
    items : any iterable; iterated only in the background thread.
    depth : items produced ahead (>= 1).
    wait_phase : phase name of the consumer's waits.
    name : the thread's name.

    Yields
    ------
    The items of ``items``, in order.
    """
    q: queue.Queue = queue.Queue(maxsize=max(1, int(depth)))
    stop = threading.Event()

    def put(obj: object) -> bool:
        while not stop.is_set():
            try:
                q.put(obj, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def work() -> None:
        it = iter(items)
        try:
            for item in it:
                if not put(item):
                    break
            else:
                put(_DONE)
        except BaseException as exc:  # handed to the consumer
            put(_Failure(exc))
        finally:
            close = getattr(it, "close", None)
            if close is not None:
                close()

    thread = threading.Thread(target=work, name=name, daemon=True)
    thread.start()
    try:
        while True:
            if wait_phase is None:
                obj = q.get()
            else:
                with phase(wait_phase):
                    obj = q.get()
            if obj is _DONE:
                return
            if isinstance(obj, _Failure):
                raise obj.exc
            yield obj
    finally:
        stop.set()
        thread.join(timeout=10)

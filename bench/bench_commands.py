"""Benchmark of the thead commands as a user runs them: ``python -m thead ...`` subprocesses on the shared clips.

For each case (``preprocess``, ``fit-3dmm``, ``reenact`` cold and warm, ``edit`` of a video), one process alone
and N processes started together (``--concurrency 1,2``), each in its own copy of the work folder:

- wall seconds (spawn to exit) and CPU seconds (user + system of the process and the ffmpeg processes it waited
  for, from ``os.wait4``) per process;
- output frames/s (frames of the clip the command processes, over the wall time);
- the share of each phase (start-up, decode, detect/fit, prepare, render, encode, other) from the commands'
  ``THEAD_PROFILE=1`` phase lines (``thead.runtime.phase``); phases a version of thead does not time count as
  "other";
- the ratio to the floor: ffmpeg decoding the same clip, scaling it to 256 and encoding H.264 (the encoder thead
  uses: libx264 veryfast, crf 18, yuv420p), timed in the same run.

The header names the machine load (``uptime``) before and after, since other work on the machine skews every
figure. ``--json`` prints one JSON object instead of the tables.

    THEAD_TEST_DATA=/work/shared/data python bench/bench_commands.py
    python bench/bench_commands.py --cases reenact-warm --concurrency 1,2 --repeat 3
    python bench/bench_commands.py --code /path/to/other/checkout   # the same figures for another thead
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
CASES = ("preprocess", "fit-3dmm", "reenact-cold", "reenact-warm", "edit")
# Phase names the commands log (thead.runtime.phase) -> the columns of the table.
PHASE_GROUPS = {
    "startup": "startup",
    "decode": "decode",
    "detect": "detect/fit", "landmarks": "detect/fit", "track": "detect/fit", "crop": "detect/fit",
    "fit": "detect/fit",
    "prepare": "prepare", "segment": "prepare",
    "render": "render", "paste": "render",
    "encode": "encode",
}
COLUMNS = ("startup", "decode", "detect/fit", "prepare", "render", "encode", "other")


@dataclass
class Run:
    """One process of one case."""

    wall_s: float
    cpu_s: float
    returncode: int
    phases: dict[str, float] = field(default_factory=dict)  # column -> seconds (main thread)
    threads: dict = field(default_factory=dict)  # the command's thread plan, when it logs one
    stderr_tail: str = ""


@dataclass
class Result:
    case: str
    concurrency: int
    frames: int
    runs: list[Run]
    load_before: float
    load_after: float

    def walls(self) -> list[float]:
        return [r.wall_s for r in self.runs]

    def summary(self) -> dict:
        walls, cpus = self.walls(), [r.cpu_s for r in self.runs]
        wall = statistics.median(walls)
        phases = {c: statistics.median([r.phases.get(c, 0.0) for r in self.runs]) for c in COLUMNS}
        return {"case": self.case, "concurrency": self.concurrency, "frames": self.frames,
                "wall_s": round(wall, 3), "wall_max_s": round(max(walls), 3),
                "cpu_s_per_process": round(statistics.median(cpus), 3),
                "fps": round(self.frames / wall, 2) if wall > 0 else 0.0,
                "phase_share": {c: round(phases[c] / wall, 3) if wall > 0 else 0.0 for c in COLUMNS},
                "failed": sum(r.returncode != 0 for r in self.runs),
                "threads": self.runs[0].threads if self.runs else {},
                "load_before": self.load_before, "load_after": self.load_after}


def uptime() -> str:
    try:
        return subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()
    except OSError:
        return "load average: " + ", ".join(f"{x:.2f}" for x in os.getloadavg())


def parse_profile(stderr: str) -> tuple[dict[str, float], dict]:
    """Phase seconds by table column (main-thread phases) and the thread plan, from THEAD_PROFILE lines."""
    phases: dict[str, float] = {}
    plan: dict = {}
    for line in stderr.splitlines():
        if '"thead_profile"' not in line:
            continue
        try:
            rec = json.loads(line[line.index("{"):])
        except ValueError:
            continue
        if rec.get("thead_profile") == "threads":
            plan = {k: v for k, v in rec.items() if k != "thead_profile"}
        elif rec.get("thead_profile") == "phase" and rec.get("thread", "main") == "main":
            column = PHASE_GROUPS.get(rec["name"], "other")
            phases[column] = phases.get(column, 0.0) + float(rec["wall_s"])
    return phases, plan


def run_together(commands: list[list[str]], env: dict[str, str], cwd: Path) -> list[Run]:
    """Start ``commands`` at once; wall and CPU (os.wait4: the process and the children it waited for) of each."""
    runs: list[Run | None] = [None] * len(commands)
    logs = [tempfile.TemporaryFile() for _ in commands]
    procs, starts = [], []
    for cmd, log in zip(commands, logs):
        starts.append(time.perf_counter())
        procs.append(subprocess.Popen(cmd, env=env, cwd=cwd, stdout=subprocess.DEVNULL, stderr=log))

    def wait(i: int) -> None:
        _, status, usage = os.wait4(procs[i].pid, 0)
        wall = time.perf_counter() - starts[i]
        procs[i].returncode = os.waitstatus_to_exitcode(status)
        logs[i].seek(0)
        text = logs[i].read().decode("utf8", "replace")
        phases, plan = parse_profile(text)
        known = sum(phases.values())
        phases["other"] = max(0.0, wall - known)
        tail = "\n".join(ln for ln in text.splitlines() if "thead_profile" not in ln)[-600:]
        runs[i] = Run(wall, usage.ru_utime + usage.ru_stime, procs[i].returncode, phases, plan, tail)

    threads = [threading.Thread(target=wait, args=(i,)) for i in range(len(procs))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for log in logs:
        log.close()
    return [r for r in runs if r is not None]


def count_frames(path: Path) -> int:
    """Frames of a video (ffprobe packet count); 1 for an image."""
    if path.suffix.lower() in (".jpg", ".jpeg", ".png", ".webp", ".bmp"):
        return 1
    out = subprocess.run(["ffprobe", "-v", "error", "-select_streams", "v:0", "-count_packets", "-show_entries",
                          "stream=nb_read_packets", "-of", "csv=p=0", str(path)], capture_output=True, text=True)
    return int(out.stdout.strip().split(",")[0])


def floor_command(clip: Path, out: Path) -> list[str]:
    """ffmpeg decode + scale to 256 + H.264 encode as thead's writer does it: the least any command can take."""
    return ["ffmpeg", "-v", "error", "-y", "-nostdin", "-i", str(clip), "-map", "0:v:0", "-vf", "scale=256:256",
            "-c:v", "libx264", "-preset", "veryfast", "-crf", "18", "-pix_fmt", "yuv420p", "-f", "mp4", str(out)]


class Bench:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.data = Path(args.data)
        self.source = self.data / args.source
        self.clip = self.data / args.clip
        self.edit_clip = self.data / args.edit_clip
        self.root = Path(tempfile.mkdtemp(prefix="thead-bench-", dir=args.tmp))
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join([str(Path(args.code).resolve())] +
                                            ([env["PYTHONPATH"]] if env.get("PYTHONPATH") else []))
        env["THEAD_PROFILE"] = "1"
        for item in args.env:
            key, _, value = item.partition("=")
            env[key] = value
        self.env = env
        self._templates: dict[str, Path] = {}

    def thead(self, *argv: str) -> list[str]:
        return [self.args.python, "-m", "thead", *self.args.thead_args, *argv]

    def template(self, name: str, *inputs: Path) -> Path:
        """A work folder with the caches of ``inputs`` (made once, by ``thead reenact`` / ``thead fit-3dmm``)."""
        if name not in self._templates:
            work = self.root / f"template-{name}"
            if len(inputs) == 2:
                cmd = self.thead("reenact", str(inputs[0]), str(inputs[1]), "-w", str(work), "-o",
                                 str(self.root / "template-out"))
            else:
                cmd = self.thead("fit-3dmm", str(inputs[0]), "-o", str(work))
            res = subprocess.run(cmd, env=self.env, cwd=self.root, capture_output=True, text=True)
            if res.returncode != 0:
                raise SystemExit(f"making the warm caches failed: {' '.join(cmd)}\n{res.stderr[-2000:]}")
            self._templates[name] = work
        return self._templates[name]

    def commands(self, case: str, n: int, rep: int) -> list[list[str]]:
        """The command of each of ``n`` processes, each with its own work and output folders."""
        cmds = []
        for k in range(n):
            base = self.root / f"{case}-{n}-{rep}-{k}"
            work, out = base / "work", base / "out"
            if case in ("reenact-warm", "fit-3dmm", "edit"):
                inputs = (self.edit_clip,) if case == "edit" else (self.source, self.clip)
                shutil.copytree(self.template("edit" if case == "edit" else "pair", *inputs), work)
            if case == "preprocess":
                cmds.append(self.thead("preprocess", str(self.clip), "-o", str(work)))
            elif case == "fit-3dmm":
                item = work / self.clip.stem
                cmds.append(self.thead("fit-3dmm", str(item if item.is_dir() else work), "--force"))
            elif case in ("reenact-cold", "reenact-warm"):
                extra = ["--force"] if case == "reenact-warm" else []
                cmds.append(self.thead("reenact", str(self.source), str(self.clip), "-w", str(work), "-o", str(out),
                                       *extra))
            elif case == "edit":
                cmds.append(self.thead("edit", str(self.edit_clip), "--yaw", "15", "-w", str(work), "-o", str(out),
                                       "--force"))
        return cmds

    def frames(self, case: str) -> int:
        return count_frames(self.edit_clip if case == "edit" else self.clip)

    def run_case(self, case: str, n: int) -> Result:
        runs: list[Run] = []
        load0 = os.getloadavg()[0]
        for rep in range(self.args.repeat):
            runs += run_together(self.commands(case, n, rep), self.env, self.root)
            if not self.args.keep:
                for k in range(n):
                    shutil.rmtree(self.root / f"{case}-{n}-{rep}-{k}", ignore_errors=True)
        return Result(case, n, self.frames(case), runs, load0, os.getloadavg()[0])

    def floor(self, clip: Path, n: int) -> Result:
        runs: list[Run] = []
        load0 = os.getloadavg()[0]
        for rep in range(self.args.repeat):
            runs += run_together([floor_command(clip, self.root / f"floor-{rep}-{k}.mp4") for k in range(n)],
                                 self.env, self.root)
        return Result(f"ffmpeg floor ({clip.name})", n, count_frames(clip), runs, load0, os.getloadavg()[0])


def table(results: list[dict], floors: dict[tuple[str, int], dict]) -> str:
    head = (f"{'case':<22} {'procs':>5} {'frames':>6} {'wall s':>7} {'max s':>7} {'CPU s/proc':>10} {'frames/s':>8} "
            f"{'x floor':>7} {'threads':>7}  " + " ".join(f"{c:>10}" for c in COLUMNS))
    lines = [head, "-" * len(head)]
    for s in results:
        fl = floors.get((s.get("clip", ""), s["concurrency"]))
        ratio = f"{s['wall_s'] / fl['wall_s']:.1f}" if fl and fl["wall_s"] > 0 and not s["case"].startswith("ffmpeg") \
            else ""
        threads = s.get("threads", {}).get("threads", "")
        shares = " ".join(f"{100 * s['phase_share'][c]:>9.0f}%" for c in COLUMNS)
        if s["case"].startswith("ffmpeg"):
            shares = ""
        fail = f"  ({s['failed']} failed)" if s["failed"] else ""
        lines.append(f"{s['case']:<22} {s['concurrency']:>5} {s['frames']:>6} {s['wall_s']:>7.2f} "
                     f"{s['wall_max_s']:>7.2f} {s['cpu_s_per_process']:>10.2f} {s['fps']:>8.1f} {ratio:>7} "
                     f"{threads!s:>7}  {shares}{fail}")
    return "\n".join(lines)


def concurrency_lines(results: list[dict]) -> list[str]:
    """Two processes at once against one alone: wall ratio (goal <= 2.2) and CPU ratio (goal <= 1.0)."""
    by = {(s["case"], s["concurrency"]): s for s in results}
    lines = []
    for (case, n), s in by.items():
        one = by.get((case, 1))
        if n == 1 or one is None or case.startswith("ffmpeg"):
            continue
        wall = s["wall_max_s"] / one["wall_s"] if one["wall_s"] else float("nan")
        cpu = s["cpu_s_per_process"] / one["cpu_s_per_process"] if one["cpu_s_per_process"] else float("nan")
        lines.append(f"{case}: {n} at once take {wall:.2f}x one run's wall (slowest of {n}) and "
                     f"{cpu:.2f}x its CPU per process")
    return lines


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data", default=os.environ.get("THEAD_TEST_DATA", str(REPO.parent / "shared" / "data")),
                   help="Folder of the shared clips (default $THEAD_TEST_DATA).")
    p.add_argument("--source", default="images/s0.jpg", help="Source photo (relative to --data).")
    p.add_argument("--clip", default="videos/d3.mp4", help="Clip preprocessed, fitted and driving (relative to --data).")
    p.add_argument("--edit-clip", default="videos/d3.mp4",
                   help="Video edited (relative to --data; default the reenact clip, so the speeds compare).")
    p.add_argument("--cases", default=",".join(CASES), help=f"Comma-separated, of {', '.join(CASES)}.")
    p.add_argument("--concurrency", default="1,2", help="Processes started together, comma-separated.")
    p.add_argument("--repeat", type=int, default=1, help="Rounds per case; medians are reported.")
    p.add_argument("--code", default=str(REPO), help="Folder of the thead package to run (put first on PYTHONPATH).")
    p.add_argument("--python", default=sys.executable, help="Interpreter that runs thead.")
    p.add_argument("--thead-args", default="", help="Global thead options before the command, e.g. '--threads 1'.")
    p.add_argument("--env", action="append", default=[], metavar="KEY=VALUE",
                   help="Extra environment for the commands (repeatable), e.g. THEAD_THREADS=1.")
    p.add_argument("--tmp", default=None, help="Where the work folders go (default: the system temp folder).")
    p.add_argument("--keep", action="store_true", help="Keep the work and output folders.")
    p.add_argument("--json", action="store_true", help="Print one JSON object instead of the tables.")
    args = p.parse_args(argv)
    args.thead_args = args.thead_args.split()
    cases = [c.strip() for c in args.cases.split(",") if c.strip()]
    unknown = set(cases) - set(CASES)
    if unknown:
        p.error(f"unknown cases {sorted(unknown)}; choose from {', '.join(CASES)}")
    levels = [int(x) for x in args.concurrency.split(",") if x.strip()]
    bench = Bench(args)
    if not bench.clip.is_file() or not bench.source.is_file():
        p.error(f"clips not found under {bench.data} (set --data or THEAD_TEST_DATA)")

    header = {"uptime_before": uptime(), "cpus": os.cpu_count(), "affinity": len(os.sched_getaffinity(0)),
              "code": str(Path(args.code).resolve()), "source": str(bench.source), "clip": str(bench.clip),
              "edit_clip": str(bench.edit_clip), "repeat": args.repeat, "thead_args": args.thead_args,
              "env": args.env}
    results: list[dict] = []
    floors: dict[tuple[str, int], dict] = {}
    try:
        for n in levels:
            for clip in dict.fromkeys([bench.clip] + ([bench.edit_clip] if "edit" in cases else [])):
                s = bench.floor(clip, n).summary()
                s["clip"] = str(clip)
                floors[(str(clip), n)] = s
                results.append(s)
            for case in cases:
                s = bench.run_case(case, n).summary()
                s["clip"] = str(bench.edit_clip if case == "edit" else bench.clip)
                results.append(s)
                if not args.json:
                    print(f"  done: {case} x{n} ({s['wall_s']:.1f} s, load {s['load_before']:.1f})",
                          file=sys.stderr, flush=True)
    finally:
        if not args.keep:
            shutil.rmtree(bench.root, ignore_errors=True)
    header["uptime_after"] = uptime()
    for s in results:
        fl = floors.get((s["clip"], s["concurrency"]))
        if fl and not s["case"].startswith("ffmpeg"):
            s["x_floor"] = round(s["wall_s"] / fl["wall_s"], 2) if fl["wall_s"] else None
    if args.json:
        print(json.dumps({"header": header, "results": results,
                          "concurrency": concurrency_lines(results)}, indent=2))
    else:
        print(f"thead command benchmark  ({header['code']}; {header['cpus']} CPUs, affinity {header['affinity']})")
        print(f"load before: {header['uptime_before']}")
        print(f"load after:  {header['uptime_after']}")
        print(f"clip {bench.clip.name}, source {bench.source.name}, edit clip {bench.edit_clip.name}; "
              f"medians of {args.repeat} round(s); phase shares of each command's wall (THEAD_PROFILE)\n")
        print(table(results, floors))
        for line in concurrency_lines(results):
            print(line)
    return 1 if any(s["failed"] for s in results) else 0


if __name__ == "__main__":
    sys.exit(main())

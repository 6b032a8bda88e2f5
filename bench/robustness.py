"""Issue 13's "done means": thead treated the way users and clusters treat it.

Runs, in a scratch folder, with the real CLI in subprocesses:

1. a batch of N items (default 101) with 12 kinds of bad input among good photos: missing, empty, truncated mp4,
   text named .jpg, no-face image, two-face image, huge-header PNG, symbolic link loop, unreadable (a fifo and a
   folder named like a photo: root can read any file), 0-frame video, audio-only file, corrupt cache;
2. kill -9 of a ``--force`` run at a random moment, then a rerun;
3. two concurrent ``--force`` runs on the same work folder;
4. fuzzed files: bit flips and truncations of a real small mp4 and jpg (default 100);
5. hostile weights: random bytes under the S3FD/FAN file names (``--landmarks face-alignment``), a text file as
   ``fit-3dmm --model``.

Prints: items done, failures named (every failure's message names its file), tracebacks 0 (no Python traceback
on stderr, none logged for a failure a user could cause), lost results 0 (every good item ends done or skipped),
leftover temp files 0 (no ``.tmp-`` or ``.old`` in the work folder after the runs). Exit status 1 when any of
those is off.

Usage: ``python bench/robustness.py [--items 101] [--fuzz 100] [--seed 0] [--keep DIR]`` (THEAD_TEST_DATA points
at the shared media; default ../shared/data).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import signal
import struct
import subprocess
import sys
import tempfile
import time
import zlib
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DATA = Path(os.environ.get("THEAD_TEST_DATA", REPO.parent / "shared" / "data"))


def thead(*args: str, env: dict | None = None, timeout: float = 900) -> tuple[int, list[dict], str]:
    """Run the CLI; (exit status, JSON lines of stdout, stderr)."""
    full = {**os.environ, "PYTHONPATH": str(REPO), **(env or {})}
    proc = subprocess.run([sys.executable, "-m", "thead", *args], capture_output=True, text=True, env=full,
                          timeout=timeout)
    rows = [json.loads(ln) for ln in proc.stdout.splitlines() if ln.startswith("{")]
    return proc.returncode, rows, proc.stderr


def leftovers(work: Path) -> list[Path]:
    return [p for p in work.rglob("*") if ".tmp-" in p.name or p.name.endswith(".old")]


def huge_png(path: Path, side: int = 16000) -> None:
    """A tiny PNG whose header claims side x side pixels."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    ihdr = struct.pack(">IIBBBBB", side, side, 8, 2, 0, 0, 0)
    row = b"\x00" + b"\x00" * (3 * side)
    comp = zlib.compressobj(9)
    idat = b"".join(comp.compress(row) for _ in range(64)) + comp.flush()
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat) + chunk(b"IEND", b""))


def ffmpeg(*args: str) -> None:
    subprocess.run(["ffmpeg", "-v", "error", "-y", *args], check=True)


class Tally:
    def __init__(self) -> None:
        self.done = self.failed = self.unnamed = self.tracebacks = self.lost = 0
        self.notes: list[str] = []

    def take(self, label: str, rows: list[dict], stderr: str, good: set[str], inputs: dict[str, str]) -> None:
        """Count one run: ``good`` item inputs must end done/skipped; every failure names its file."""
        self.tracebacks += stderr.count("Traceback (most recent call last)")
        ok = set()
        for r in rows:
            if r["status"] in ("done", "skipped"):
                self.done += 1
                ok.add(r["input"])
            else:
                self.failed += 1
                name = Path(r["input"].split(":")[0]).name
                if name not in r["message"]:
                    self.unnamed += 1
                    self.notes.append(f"{label}: failure without its file: {r['message']}")
        for g in good:
            if g not in ok:
                self.lost += 1
                self.notes.append(f"{label}: good item lost: {g} "
                                  f"({next((r['message'] for r in rows if r['input'] == g), 'no result')})")


def logged_tracebacks(work: Path) -> int:
    log = work / ".thead" / "failures.jsonl"
    if not log.is_file():
        return 0
    return sum(bool(json.loads(ln).get("traceback")) for ln in log.read_text().splitlines() if ln.strip())


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--items", type=int, default=101)
    ap.add_argument("--fuzz", type=int, default=100)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--keep", type=Path, default=None, help="scratch folder to use and keep")
    args = ap.parse_args()
    rng = random.Random(args.seed)
    root = args.keep or Path(tempfile.mkdtemp(prefix="thead-robust-"))
    root.mkdir(parents=True, exist_ok=True)
    t0 = time.monotonic()
    tally = Tally()
    inp = root / "in"
    inp.mkdir(exist_ok=True)

    # ---- inputs: small good photos, 12 bad kinds
    faces = [DATA / "images" / n for n in ("s0.jpg", "s1.jpg", "s5.jpg", "s6.jpg", "s11.jpg", "happy.png")]
    faces = [f for f in faces if f.is_file()]
    if not faces:
        print(f"no media in {DATA} (set THEAD_TEST_DATA)")
        return 2
    clip = root / "clip.mp4"  # a short small real clip: the truncation/fuzz base and the kill -9 target
    ffmpeg("-i", str(DATA / "videos" / "d0.mp4"), "-t", "0.6", "-vf", "scale=192:-2", "-c:a", "aac", str(clip))
    bad: dict[str, Path] = {}
    bad["missing"] = inp / "missing.jpg"
    (bad.setdefault("empty", inp / "empty.jpg")).write_bytes(b"")
    (bad.setdefault("truncated mp4", inp / "truncated.mp4")).write_bytes(clip.read_bytes()[:3000])
    (bad.setdefault("text named .jpg", inp / "text.jpg")).write_text("this is not a picture\n")
    from PIL import Image
    Image.new("RGB", (200, 200), (120, 130, 140)).save(inp / "noface.png")
    bad["no-face image"] = inp / "noface.png"
    a = Image.open(faces[0]).convert("RGB")
    two = Image.new("RGB", (a.width * 2, a.height))
    two.paste(a, (0, 0))
    two.paste(a.transpose(Image.Transpose.FLIP_LEFT_RIGHT), (a.width, 0))
    two.save(inp / "twoface.png")
    bad["two-face image"] = inp / "twoface.png"
    huge_png(inp / "huge.png")
    bad["huge-header PNG"] = inp / "huge.png"
    loop = inp / "loop.jpg"
    if not loop.is_symlink():
        os.symlink("loop.jpg", loop)
    bad["symlink loop"] = loop
    fifo = inp / "fifo.jpg"
    if not fifo.exists():
        os.mkfifo(fifo)
    bad["unreadable (fifo)"] = fifo
    ffmpeg("-f", "lavfi", "-i", "color=c=gray:s=64x64:d=1", "-frames:v", "0", str(inp / "zeroframes.mp4"))
    bad["0-frame video"] = inp / "zeroframes.mp4"
    ffmpeg("-f", "lavfi", "-i", "sine=frequency=440:duration=1", "-c:a", "aac", str(inp / "audioonly.mp4"))
    bad["audio-only file"] = inp / "audioonly.mp4"
    n_good = max(1, args.items - len(bad) - 1)  # the corrupt cache item is one more
    good = []
    for i in range(n_good):
        src = faces[i % len(faces)]
        dst = inp / f"good{i:03d}{src.suffix}"
        if not dst.exists():
            img = Image.open(src).convert("RGB")
            img.resize((max(64, img.width // 2 + i % 7), max(64, img.height // 2 + i % 5))).save(dst)
        good.append(dst)
    work = root / "work"
    corrupt = inp / "cached.jpg"
    shutil.copy(faces[0], corrupt)
    rc, rows, err = thead("preprocess", str(corrupt), "-o", str(work), "--json")
    (work / "cached" / "preprocess" / "landmarks.npz").write_bytes(b"PK\x03\x04 damaged")
    bad["corrupt cache (redone)"] = corrupt
    inputs = [str(p) for p in good] + [str(p) for p in bad.values()]

    # ---- 1. the batch
    rc, rows, err = thead("preprocess", *inputs, "-o", str(work), "--json")
    good_set = {str(p) for p in good} | {str(corrupt)}
    tally.take("batch", rows, err, good_set, {})
    by_input = {r["input"]: r for r in rows}
    print(f"[1] batch of {len(inputs)} items: exit {rc}, {sum(r['status'] != 'failed' for r in rows)} done, "
          f"{sum(r['status'] == 'failed' for r in rows)} failed ({time.monotonic() - t0:.0f} s)")
    for kind, path in bad.items():
        r = by_input.get(str(path))
        print(f"    {kind:24s} {r['status'] if r else 'no row'}: {r['message'] if r else ''}")

    # ---- 2. kill -9 at a random moment, then rerun
    full = {**os.environ, "PYTHONPATH": str(REPO)}
    targets = [str(p) for p in good[:12]] + [str(clip)]
    proc = subprocess.Popen([sys.executable, "-m", "thead", "preprocess", *targets, "-o", str(work), "--force"],
                            env=full, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    delay = rng.uniform(2.0, 8.0)
    time.sleep(delay)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    rc, rows, err = thead("preprocess", *targets, "-o", str(work), "--json")
    tally.take("after kill -9", rows, err, set(targets), {})
    print(f"[2] kill -9 after {delay:.1f} s, rerun: exit {rc}, "
          f"{sum(r['status'] != 'failed' for r in rows)}/{len(targets)} ok")

    # ---- 3. two concurrent --force runs
    procs = [subprocess.Popen([sys.executable, "-m", "thead", "preprocess", *targets, "-o", str(work), "--force",
                               "--json"], env=full, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for _ in range(2)]
    outs = [p.communicate(timeout=900) for p in procs]
    for (out, err2), p in zip(outs, procs):
        rows = [json.loads(ln) for ln in out.splitlines() if ln.startswith("{")]
        tally.take("concurrent", rows, err2, set(targets), {})
    print(f"[3] two concurrent --force runs: exits {[p.returncode for p in procs]}")

    # ---- 4. fuzzed files
    fz = root / "fuzz"
    fz.mkdir(exist_ok=True)
    bases = [clip.read_bytes(), faces[0].read_bytes()]
    fuzzed = []
    for i in range(args.fuzz):
        data = bytearray(bases[i % 2])
        if rng.random() < 0.5:
            for _ in range(rng.randint(1, 40)):
                pos = rng.randrange(len(data))
                data[pos] ^= 1 << rng.randrange(8)
        else:
            data = data[: rng.randrange(1, len(data))]
        path = fz / f"fuzz{i:03d}{'.mp4' if i % 2 == 0 else '.jpg'}"
        path.write_bytes(bytes(data))
        fuzzed.append(path)
    fwork = root / "fuzzwork"
    start = time.monotonic()
    rc, rows, err = thead("preprocess", *map(str, fuzzed), "-o", str(fwork), "--json", timeout=1800)
    tally.take("fuzz", rows, err, set(), {})
    print(f"[4] {len(fuzzed)} fuzzed files: exit {rc}, {sum(r['status'] != 'failed' for r in rows)} done, "
          f"{sum(r['status'] == 'failed' for r in rows)} failed, {len(rows)} results, "
          f"{time.monotonic() - start:.0f} s")
    if len(rows) != len(fuzzed):
        tally.lost += len(fuzzed) - len(rows)

    # ---- 5. hostile weights
    wdir = root / "weights"
    wdir.mkdir(exist_ok=True)
    for name in ("s3fd-619a316812.pth", "2DFAN4-11f355bf06.pth.tar"):
        (wdir / name).write_bytes(os.urandom(4096))
    rc, rows, err = thead("preprocess", str(good[0]), "-o", str(root / "wwork"), "--landmarks", "face-alignment",
                          "--json", env={"THEAD_WEIGHTS": str(wdir)})
    tally.take("hostile weights", rows, err, set(), {})
    print(f"[5] random bytes as S3FD/FAN weights: exit {rc}: {rows[0]['message'] if rows else err.strip()[-200:]}")
    text_model = root / "model.npz"
    text_model.write_text("not a model\n")
    rc, rows, err = thead("fit-3dmm", str(work), "--model", str(text_model), "--json")
    tally.take("text --model", rows, err, set(), {})
    print(f"    text file as --model: exit {rc}: {rows[0]['message'] if rows else err.strip()[-200:]}")

    logged = logged_tracebacks(work) + logged_tracebacks(fwork) + logged_tracebacks(root / "wwork")
    left = leftovers(work) + leftovers(fwork)
    print()
    print(f"items done:              {tally.done}")
    print(f"failures named:          {tally.failed - tally.unnamed}/{tally.failed}")
    print(f"tracebacks:              {tally.tracebacks} on stderr, {logged} logged (unexpected errors)")
    print(f"lost results:            {tally.lost}")
    print(f"leftover temp files:     {len(left)}")
    print(f"time:                    {time.monotonic() - t0:.0f} s  (scratch: {root})")
    for n in tally.notes[:20]:
        print("  ", n)
    for p in left[:10]:
        print("   leftover:", p)
    if args.keep is None:
        shutil.rmtree(root, ignore_errors=True)
    return 1 if (tally.unnamed or tally.tracebacks or logged or tally.lost or left) else 0


if __name__ == "__main__":
    sys.exit(main())

"""Quality and speed of the weight-free mesh engine (thead.engines) on the shared media.

    python bench/bench_reenact.py                          # everything; sheets in /tmp/reenact_check
    python bench/bench_reenact.py --stride 2 --skip-cross  # faster
    python bench/bench_reenact.py --data ../shared/data --out /tmp/reenact_check --threads 2

1. Self-reenactment, every clip of videos/: source = the clip's first crop, driver = the clip (relative motion),
   compared with the real crops (256x256, frames 1..T-1): the engine against (a) the unchanged source frame and
   (b) a 2-D similarity warp of the source following the driver's landmarks (cv2.estimateAffinePartial2D from the
   source landmarks to each frame's, warpAffine). L1, PSNR, SSIM (thead.metrics) and AKD (68 iBUG points of
   MediaPipe landmarks detected on outputs and on the real crops, 256 px). Optionally also with the driver's
   mouth interior (--mouth-from-driver; it copies real mouth pixels, so it is not the headline number).
2. Cross-identity: sources = images/*, drivers = videos/*: CSIM (dlib) of the output to its source photo and to
   the driver frames; the output must stay closer to the source. And how the output's mouth follows the driver's:
   the inner-lip gap over the eye width (MediaPipe on the output, the driver's tracked landmarks), Pearson r over
   the sampled frames and the mean absolute difference (a driver whose first frame is mid-word once left most
   photos' mouths shut: r .12-.50 on WDA).
3. Editing, on the photos: yaw +20 / -20 degrees, smile 0.8, and yaw -25 with pitch 10, then landmarks + fit_image
   on the output; edits the closed loop flags as unreachable are listed per photo.
4. Speed: frames/s of MeshEngine.render at 256x256 (CPU with --threads, and CUDA when available).
Contact sheets (PNG) go to --out: per clip rows of source | driver | output | similarity baseline, cross-identity
sheets and the edits. Skips gracefully when the shared media are absent.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
os.environ.setdefault("GLOG_minloglevel", "2")

SIZE = 256


@dataclass
class Clip:
    name: str
    frames: np.ndarray  # [T, S, S, 3] crops
    landmarks: np.ndarray  # [T, 478, 3] crop pixels (tracked)
    valid: np.ndarray  # [T]
    fps: float
    original: np.ndarray | None = None  # the first original frame [H, W, 3]
    transform: np.ndarray | None = None  # its crop transform [2, 3]


@dataclass
class Photo:
    name: str
    crop: np.ndarray
    landmarks: np.ndarray
    original: np.ndarray | None = None
    transform: np.ndarray | None = None


def prepare(engine, crop: np.ndarray, landmarks: np.ndarray, fit, original: np.ndarray | None,
            transform: np.ndarray | None):
    """``engine.prepare`` with the crop's surroundings cut from the original picture, as ``thead reenact`` and
    ``thead edit`` do."""
    from thead.face.crop import crop_surroundings

    if original is None:
        return engine.prepare(crop, landmarks, fit)
    surroundings, picture = crop_surroundings(original, transform, crop.shape[0], engine.canvas_pad(crop.shape[0]))
    return engine.prepare(crop, landmarks, fit, surroundings=surroundings, picture=picture)


def speed_engine(device: str, symmetry: bool = True):
    """The engine the speed section times: built as ``thead reenact`` builds it (``thead.jobs.render.make_engine``
    with the command's default ``RenderOptions``: batch 16, the same canvas and settings), on ``device``."""
    from thead.jobs.render import RenderOptions, make_engine

    return make_engine(RenderOptions(device=device, symmetry=symmetry))


def load_inputs(data: Path, work: Path) -> tuple[list[Clip], list[Photo]]:
    """Preprocess (vox crop, 256) every video and photo of the shared media (cached in ``work``)."""
    from thead.io import iter_frames, read_frames, read_image
    from thead.stages import InputItem, PreprocessParams, load_preprocess, preprocess_item

    clips, photos = [], []
    for path in sorted((data / "videos").glob("*.mp4")):
        preprocess_item(InputItem(path, path.stem), work, PreprocessParams(size=SIZE))
        pre = load_preprocess(work / path.stem / "preprocess")
        frames = read_frames(pre.crop_path)
        n = min(len(frames), len(pre.crop_landmarks))
        first = next(iter(iter_frames(path)))
        clips.append(Clip(path.stem, frames[:n], pre.crop_landmarks[:n], pre.valid[:n],
                          pre.meta.fps or 25.0, first, pre.transforms[0]))
    for path in sorted(p for p in (data / "images").iterdir() if p.suffix.lower() in (".jpg", ".jpeg", ".png")):
        try:
            preprocess_item(InputItem(path, path.stem), work, PreprocessParams(size=SIZE))
        except Exception as err:  # e.g. several faces in a photo
            print(f"  skipping {path.name}: {err}")
            continue
        pre = load_preprocess(work / path.stem / "preprocess")
        photos.append(Photo(path.stem, read_image(pre.crop_path), pre.crop_landmarks[0], read_image(path),
                            pre.transforms[0]))
    return clips, photos


def clips_named(data: Path, work: Path, prefixes: list[str] | None) -> list[Clip]:
    """The clips of ``load_inputs`` whose names start with one of ``prefixes`` (None or empty: every clip)."""
    clips, _ = load_inputs(data, work)
    return [c for c in clips if not prefixes or any(c.name.startswith(p) for p in prefixes)]


def add_clip_options(parser: argparse.ArgumentParser, work: Path) -> None:
    """The options of a measurement tool that runs over the shared clips (``measure_clips``): ``--data`` (the
    shared media), ``--work`` (preprocess cache, default ``work``) and ``--clips`` (name prefixes)."""
    parser.add_argument("--data", type=Path, default=REPO.parent / "shared" / "data")
    parser.add_argument("--work", type=Path, default=work)
    parser.add_argument("--clips", nargs="*", default=None, help="Clip name prefixes (default: every clip).")


def measure_clips(args: argparse.Namespace, measure) -> int:
    """Run ``measure(clip, engine)`` on each clip ``args`` (``add_clip_options``) names, with the engine ``thead
    reenact`` builds on the CPU. Returns a process exit code: 1 when there is no clip to measure."""
    clips = clips_named(args.data, args.work, args.clips)
    if not clips:
        print(f"no clips under {args.data}")
        return 1
    engine = speed_engine("cpu")
    for clip in clips:
        measure(clip, engine)
    return 0


def own_motion_render(engine, clip: Clip):
    """A clip's self-reenactment at its own motion, as the measurement tools make it: the clip fitted, its first
    frame prepared as ``thead reenact`` prepares a source (``prepare``), every frame rendered at
    ``transfer_motion(fit, fit)`` (the target mesh is the real frame's fit) with the clip's own mouths.

    Returns (fit, prepared, targets, rendered uint8 [T, S, S, 3], asked: the target meshes float32 [T, 478, 3]).
    """
    from thead.engines import transfer_motion
    from thead.fitting import fit_sequence

    fit = fit_sequence(clip.landmarks, clip.valid, SIZE, fps=clip.fps)
    prepared = prepare(engine, clip.frames[0], clip.landmarks[0], fit, clip.original, clip.transform)
    n = len(clip.frames)
    targets = transfer_motion(fit, fit)[np.arange(n)]
    rendered = engine.render(prepared, targets, clip.frames[:n], clip.landmarks[:n])  # batched by the engine
    asked = engine.target_vertices(prepared, targets).cpu().numpy()
    return fit, prepared, targets, rendered, asked


def detect_all(landmarker, frames: np.ndarray) -> np.ndarray:
    """MediaPipe landmarks [N, 478, 3] of each frame (NaN where no face is found)."""
    out = np.full((len(frames), 478, 3), np.nan, np.float32)
    for i, frame in enumerate(frames):
        faces = landmarker.find_faces(frame)
        if faces:
            out[i] = faces[0]
    return out


def similarity_baseline(source: np.ndarray, src_lm: np.ndarray, lms: np.ndarray) -> np.ndarray:
    """The source frame moved by the least-squares similarity from its landmarks to each frame's [N, 478, 3]."""
    import cv2

    from thead.geometry import Affine2D

    out = []
    a = np.ascontiguousarray(src_lm[:, :2], np.float32)
    for lm in lms:
        b = np.ascontiguousarray(lm[:, :2], np.float32)
        # A similarity fitted to points in the package's convention is a map in that convention.
        m, _ = cv2.estimateAffinePartial2D(a, b, method=cv2.LMEDS)
        move = Affine2D.identity() if m is None else Affine2D(m)
        out.append(cv2.warpAffine(source, move.to_opencv(), (SIZE, SIZE), flags=cv2.INTER_LINEAR,
                                  borderMode=cv2.BORDER_REPLICATE))
    return np.stack(out)


def frame_metrics(generated: np.ndarray, real: np.ndarray, gen_lm: np.ndarray, real_lm: np.ndarray) -> dict:
    from thead.metrics import akd, l1, psnr, ssim

    d = akd(gen_lm, real_lm, image_size=SIZE)
    return {"L1": float(l1(generated, real).mean()), "PSNR": float(psnr(generated, real).mean()),
            "SSIM": float(ssim(generated, real).mean()), "AKD": float(np.nanmean(d)),
            "AKD_missing": int(np.isnan(d).sum())}


def sheet(rows: list[list[np.ndarray]]) -> np.ndarray:
    return np.concatenate([np.concatenate(r, 1) for r in rows], 0)


def label(img: np.ndarray, text: str) -> np.ndarray:
    """Contact-sheet label (thead.jobs.evaluate.label at a small size)."""
    from thead.jobs.evaluate import label as write_label

    return write_label(img, text, scale=0.4, origin=(4, 14))


# ------------------------------------------------------------------------------------------------ sections
def self_reenactment(clips: list[Clip], engine, landmarker, out_dir: Path, stride: int,
                     mouth_from_driver: bool) -> dict:
    from thead.engines import transfer_motion
    from thead.fitting import fit_image, fit_sequence
    from thead.io import write_image

    methods = ["engine", "static", "similarity"] + (["engine+mouth"] if mouth_from_driver else [])
    results: dict[str, dict[str, dict]] = {}
    print("\n== self-reenactment (source = first frame, relative motion; frames 1..T-1"
          f"{', every %d' % stride if stride > 1 else ''}) ==")
    for clip in clips:
        t0 = time.perf_counter()
        driver = fit_sequence(clip.landmarks, clip.valid, SIZE, fps=clip.fps)
        src_fit = fit_image(clip.landmarks[0], SIZE)
        prepared = prepare(engine, clip.frames[0], clip.landmarks[0], src_fit, clip.original, clip.transform)
        idx = np.arange(1, len(clip.frames), stride)
        targets = transfer_motion(src_fit, driver)[idx]
        real = clip.frames[idx]
        outputs = {"engine": engine.render(prepared, targets),
                   "static": np.repeat(clip.frames[:1], len(idx), 0),
                   "similarity": similarity_baseline(clip.frames[0], clip.landmarks[0], clip.landmarks[idx])}
        if mouth_from_driver:
            outputs["engine+mouth"] = engine.render(prepared, targets, clip.frames[idx], clip.landmarks[idx])
        real_lm = detect_all(landmarker, real)
        results[clip.name] = {m: frame_metrics(outputs[m], real, detect_all(landmarker, outputs[m]), real_lm)
                              for m in methods}
        print(f"\n{clip.name}: {len(idx)} frames, {time.perf_counter() - t0:.1f} s")
        print_table(results[clip.name], methods)
        pick = np.linspace(0, len(idx) - 1, 6).round().astype(int)
        biggest = int(np.argmax(np.abs(driver.pose[idx, 0] - driver.pose[0, 0])))
        pick = np.unique(np.r_[pick[:5], biggest])
        rows = [[label(clip.frames[0], "source"), label(real[k], f"driver {idx[k]}"), label(outputs["engine"][k],
                "thead"), label(outputs["similarity"][k], "similarity")] for k in pick]
        write_image(out_dir / f"self_{clip.name}.png", sheet(rows))
    mean = {m: {k: float(np.mean([results[c][m][k] for c in results])) for k in ("L1", "PSNR", "SSIM", "AKD")}
            for m in methods}
    print("\nmean over clips:")
    print_table(mean, methods)
    beats = {k: all((mean["engine"][k] < mean[b][k]) if k in ("L1", "AKD") else (mean["engine"][k] > mean[b][k])
                    for b in ("static", "similarity")) for k in ("L1", "PSNR", "SSIM", "AKD")}
    print("engine beats both baselines (mean): " + ", ".join(f"{k} {'yes' if v else 'NO'}" for k, v in beats.items()))
    return {"per_clip": results, "mean": mean, "engine_beats_baselines": beats}


def print_table(rows: dict[str, dict], methods: list[str]) -> None:
    print(f"  {'method':<14}{'L1':>8}{'PSNR':>8}{'SSIM':>8}{'AKD px':>8}")
    for m in methods:
        r = rows[m]
        miss = f"  ({r['AKD_missing']} frames without a face)" if r.get("AKD_missing") else ""
        print(f"  {m:<14}{r['L1']:>8.4f}{r['PSNR']:>8.2f}{r['SSIM']:>8.4f}{r['AKD']:>8.2f}{miss}")


def mouth_gap(landmarks: np.ndarray) -> np.ndarray:
    """[N] the inner-lip gap over the outer eye-corner distance of landmarks [N, 478, >=2] (NaN where missing)."""
    eye = np.linalg.norm(landmarks[:, 33, :2] - landmarks[:, 263, :2], axis=1)
    gap = np.mean([landmarks[:, b, 1] - landmarks[:, a, 1] for a, b in ((13, 14), (82, 87), (312, 317))], 0)
    return gap / eye


def cross_identity(clips: list[Clip], photos: list[Photo], engine, landmarker, out_dir: Path,
                   max_frames: int) -> dict:
    from thead.engines import transfer_motion
    from thead.fitting import fit_image, fit_sequence
    from thead.io import write_image
    from thead.metrics import csim
    from thead.metrics.identity import default_embedder

    embedder = default_embedder()
    print("\n== cross-identity (relative motion): CSIM of the output to its source photo vs to the driver; the mouth's"
          " opening against the driver's ==")
    print(f"  {'source':<12}{'driver':<34}{'to source':>10}{'to driver':>10}  closer to  {'mouth r':>8}{'|diff|':>8}")
    drivers = {c.name: fit_sequence(c.landmarks, c.valid, SIZE, fps=c.fps) for c in clips}
    rows_out, closer = [], 0
    for photo in photos:
        fit = fit_image(photo.landmarks, SIZE)
        prepared = prepare(engine, photo.crop, photo.landmarks, fit, photo.original, photo.transform)
        src_emb = embedder.embed(photo.crop[None])
        sheet_rows = []
        for clip in clips:
            idx = np.linspace(0, len(clip.frames) - 1, min(max_frames, len(clip.frames))).round().astype(int)
            out = engine.render(prepared, transfer_motion(fit, drivers[clip.name])[idx])
            out_emb = embedder.embed(out)
            to_src = csim(out_emb, src_emb)
            to_drv = csim(out_emb, embedder.embed(clip.frames[idx]))
            a = to_src.value if to_src.available else float("nan")
            b = to_drv.value if to_drv.available else float("nan")
            ok = bool(a > b)
            closer += ok
            g_out, g_drv = mouth_gap(detect_all(landmarker, out)), mouth_gap(clip.landmarks[idx])
            both = np.isfinite(g_out) & np.isfinite(g_drv)
            r = float(np.corrcoef(g_out[both], g_drv[both])[0, 1]) if both.sum() > 2 else float("nan")
            diff = float(np.abs(g_out[both] - g_drv[both]).mean()) if both.any() else float("nan")
            rows_out.append({"source": photo.name, "driver": clip.name, "csim_source": a, "csim_driver": b,
                             "measured_frames": int(to_src.count), "mouth_r": r, "mouth_abs_diff": diff})
            print(f"  {photo.name:<12}{clip.name:<34}{a:>10.3f}{b:>10.3f}  {'source ' if ok else 'DRIVER '}"
                  f"   {r:>8.3f}{diff:>8.3f}")
            k = np.linspace(0, len(idx) - 1, 4).round().astype(int)
            sheet_rows.append([label(photo.crop, "source")] + [label(clip.frames[idx[j]], f"{clip.name[:10]}")
                                                               for j in k[1:]])
            sheet_rows.append([np.zeros_like(photo.crop)] + [out[j] for j in k[1:]])
        write_image(out_dir / f"cross_{photo.name}.png", sheet(sheet_rows))
    a = np.nanmean([r["csim_source"] for r in rows_out])
    b = np.nanmean([r["csim_driver"] for r in rows_out])
    print(f"  mean CSIM to source {a:.3f}, to driver {b:.3f}; closer to the source in {closer}/{len(rows_out)} pairs")
    mouth = {}
    for clip in clips:
        rs = [r["mouth_r"] for r in rows_out if r["driver"] == clip.name]
        ds = [r["mouth_abs_diff"] for r in rows_out if r["driver"] == clip.name]
        mouth[clip.name] = {"r_min": float(np.nanmin(rs)), "r_mean": float(np.nanmean(rs)),
                            "abs_diff_mean": float(np.nanmean(ds))}
        print(f"  mouth vs {clip.name}: r {mouth[clip.name]['r_min']:.2f}-{np.nanmax(rs):.2f} (mean "
              f"{mouth[clip.name]['r_mean']:.2f}), mean |diff| {mouth[clip.name]['abs_diff_mean']:.3f} eye widths")
    return {"pairs": rows_out, "mean_to_source": float(a), "mean_to_driver": float(b), "closer_to_source": closer,
            "pairs_total": len(rows_out), "mouth": mouth}


def editing(photos: list[Photo], engine, landmarker, out_dir: Path) -> dict:
    from thead.engines.calibrate import calibrated_edit
    from thead.face.landmarks import make_landmarker
    from thead.fitting import fit_image
    from thead.io import write_image

    edits = [("yaw +20", dict(yaw=np.radians(20.0)), "yaw", 20.0), ("yaw -20", dict(yaw=np.radians(-20.0)), "yaw",
             -20.0), ("smile 0.8", dict(expression={"smile": 0.8}), "smile", 0.8),
             ("yaw -25 p10", dict(yaw=np.radians(-25.0), pitch=np.radians(10.0)), "yaw", -25.0),
             ("p10 (y-25)", None, "pitch", 10.0)]  # the pitch of the same render
    print("\n== editing: asked vs measured (MediaPipe landmarks + fit_image on the output) ==")
    print(f"  {'photo':<12}{'source yaw':>11}{'source smile':>13}" + "".join(f"{e[0]:>12}" for e in edits))
    rows, sheet_rows = [], []
    for photo in photos:
        fit = fit_image(photo.landmarks, SIZE)
        prepared = prepare(engine, photo.crop, photo.landmarks, fit, photo.original, photo.transform)
        # The same closed loop thead edit runs on photos (render, measure, correct; thead.engines.calibrate).
        outs, unreachable = [], []
        for _, kw, _, _ in edits:
            if kw is None:  # another reading of the render before
                outs.append(outs[-1])
                continue
            res, meas = calibrated_edit(lambda t: engine.render(prepared, t), lambda r: r[0], fit, kw,
                                        landmarks=photo.landmarks)
            outs.append(res[0])
            unreachable += [f"{k} {v['asked']:g}->{v['reached']:.2f}"
                            for k, v in getattr(meas, "unreachable", {}).items()]
        row = {"photo": photo.name, "source_yaw": float(np.degrees(fit.pose[0, 0])),
               "source_smile": float(fit.expression[0, 2:4].mean())}
        cells = []
        for (name, _, what, asked), out in zip(edits, outs):
            faces, mark = landmarker.find_faces(out), "  "
            if not faces:
                # MediaPipe's detector misses some turned renders; its mesh, run where the source's face was (a
                # fresh landmarker's ``track``), reads them (marked t).
                with make_landmarker() as fresh:
                    found = fresh.track(out, photo.landmarks)
                faces, mark = ([], mark) if found is None else ([found], " t")
            if not faces:
                row[name] = None
                cells.append(f"{'no face':>12}")
                continue
            m = fit_image(faces[0], SIZE)
            value = (float(np.degrees(m.pose[0, ("yaw", "pitch").index(what)])) if what in ("yaw", "pitch")
                     else float(m.expression[0, 2:4].mean()))
            tol = 3.0 if what in ("yaw", "pitch") else 0.15
            row[name] = value
            cells.append(f"{value:>9.2f}{mark}{' ' if abs(value - asked) < tol else 'x'}")
        row["unreachable"] = unreachable
        rows.append(row)
        print(f"  {photo.name:<12}{row['source_yaw']:>11.1f}{row['source_smile']:>13.2f}" + "".join(cells)
              + (f"   flagged unreachable: {', '.join(unreachable)}" if unreachable else ""))
        sheet_rows.append([label(photo.crop, photo.name)] + [label(o, e[0]) for o, e in zip(outs, edits)
                                                             if e[1] is not None])
    write_image(out_dir / "edits.png", sheet(sheet_rows))
    summary = {}
    for name, _, what, asked in edits:
        vals = [r[name] for r in rows if r[name] is not None]
        tol = 3.0 if what in ("yaw", "pitch") else 0.15
        summary[name] = {"within_tolerance": int(sum(abs(v - asked) < tol for v in vals)), "measured": len(vals),
                         "mean_abs_error": float(np.mean([abs(v - asked) for v in vals])) if vals else None}
        print(f"  {name}: within {tol:g} in {summary[name]['within_tolerance']}/{len(vals)} photos, "
              f"mean |error| {summary[name]['mean_abs_error']:.2f}")
    print("  (x: outside the tolerance; t: face found by the mesh around the source's face after the detector missed"
          " it; smile = mean of smile_left/right)")
    return {"photos": rows, "summary": summary}


def speed(clips: list[Clip], threads: int, frames: int = 64) -> dict:
    import torch

    from thead.engines import edit_params, transfer_motion
    from thead.fitting import fit_image, fit_sequence

    clip = max(clips, key=lambda c: np.ptp(c.landmarks[:, 1, 0]))
    driver = fit_sequence(clip.landmarks, clip.valid, SIZE, fps=clip.fps)
    src_fit = fit_image(clip.landmarks[0], SIZE)
    targets = transfer_motion(src_fit, driver)[np.arange(frames) % len(clip.frames)]
    # Worst case for the symmetry fill: the clip's most turned frame as the source, turned to the other side
    # (every frame shows the side the source turned away: the mirror image is rendered for every frame too).
    k = int(np.argmax(np.abs(driver.pose[:, 0])))
    turned_fit = fit_image(clip.landmarks[k], SIZE)
    yaw = float(turned_fit.pose[0, 0])
    turned = edit_params(turned_fit, yaw=-yaw)[np.zeros(frames, dtype=int)]
    label = f"frame {k} turned {np.degrees(yaw):+.0f} -> {np.degrees(-yaw):+.0f} deg"
    cases = [("clip motion", targets, True, 0, src_fit), ("clip motion, no symmetry fill", targets, False, 0, src_fit),
             (label + " (fill every frame)", turned, True, k, turned_fit),
             (label + ", no fill", turned, False, k, turned_fit)]
    devices = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    out = {}
    print(f"\n== speed: MeshEngine.render at {SIZE}x{SIZE}, {frames} frames, batch 16 (fits and prepare excluded) ==")
    try:
        for dev in devices:
            for name, tgt, symmetry, frame, fit in cases:
                engine = speed_engine(dev, symmetry)
                prepared = prepare(engine, clip.frames[frame], clip.landmarks[frame], fit,
                                   clip.original if frame == 0 else None, clip.transform)
                engine.render(prepared, tgt[:16])  # warm-up
                best = float("inf")
                for _ in range(3):
                    if dev == "cuda":
                        torch.cuda.synchronize()
                    t = time.perf_counter()
                    engine.render(prepared, tgt)
                    if dev == "cuda":
                        torch.cuda.synchronize()
                    best = min(best, time.perf_counter() - t)
                key = dev if name == "clip motion" else f"{dev}, {name}"
                out[key] = frames / best
                label_ = f"cpu, {threads} threads" if dev == "cpu" else "cuda"
                print(f"  {label_:<16}{name:<52}{out[key]:>8.1f} frames/s")
    finally:
        torch.set_num_threads(previous)
    if "cuda" in out:
        print(f"  cuda / cpu: {out['cuda'] / out['cpu']:.1f}x")
    else:
        print("  (no CUDA device here: no GPU ratio)")
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, default=Path(os.environ.get("THEAD_TEST_DATA", REPO.parent / "shared" /
                                                                  "data")))
    ap.add_argument("--out", type=Path, default=Path("/tmp/reenact_check"), help="contact sheets + results.json")
    ap.add_argument("--work", type=Path, default=Path("/tmp/reenact_work"), help="preprocess cache")
    ap.add_argument("--stride", type=int, default=1, help="evaluate every n-th frame of each clip")
    ap.add_argument("--cross-frames", type=int, default=24, help="driver frames per cross-identity pair")
    ap.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    ap.add_argument("--device", default=None, help="engine device for the quality runs (default: cuda if any)")
    ap.add_argument("--mouth-from-driver", action="store_true", help="also self-reenact with the driver's mouth")
    ap.add_argument("--skip-self", action="store_true")
    ap.add_argument("--skip-cross", action="store_true")
    ap.add_argument("--skip-edit", action="store_true")
    ap.add_argument("--skip-speed", action="store_true")
    args = ap.parse_args()
    if not (args.data / "videos").is_dir():
        print(f"shared media not found at {args.data} (set --data or THEAD_TEST_DATA): nothing to measure")
        return
    import torch

    from thead.engines import MeshEngine
    from thead.face.landmarks import make_landmarker

    torch.set_num_threads(args.threads)
    args.out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    clips, photos = load_inputs(args.data, args.work)
    print(f"{len(clips)} clips, {len(photos)} photos ({time.perf_counter() - t0:.1f} s to load/preprocess)")
    engine = MeshEngine(args.device)
    results: dict = {"engine": {"device": str(engine.device)}}
    with make_landmarker() as landmarker:
        if not args.skip_self:
            results["self_reenactment"] = self_reenactment(clips, engine, landmarker, args.out, args.stride,
                                                           args.mouth_from_driver)
        if not args.skip_cross:
            results["cross_identity"] = cross_identity(clips, photos, engine, landmarker, args.out, args.cross_frames)
        if not args.skip_edit:
            results["editing"] = editing(photos, engine, landmarker, args.out)
    if not args.skip_speed:
        results["speed_fps"] = speed(clips, args.threads)
    (args.out / "results.json").write_text(json.dumps(results, indent=2))
    print(f"\ncontact sheets and results.json in {args.out} ({time.perf_counter() - t0:.0f} s in all)")


if __name__ == "__main__":
    main()

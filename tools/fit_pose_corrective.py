"""Regenerate ``thead/engines/data/pose_corrective.npz``, the pose corrective of ``thead.engines.pose_corrective``.

A maintenance script, not part of the package (it runs the preprocess stage and the fit on the training clips).
Run from the repository root (needs the shared media; about a minute on a CPU)::

    python tools/fit_pose_corrective.py --data ../shared/data [--check]

The corrective is fitted by ridge least squares to the fit residuals of real clips (each clip's mean removed, so its
identity detail does not enter), with the clips' expression units as nuisance regressors (talking people look up
as they open their mouths: pitch and jaw_open correlate .27-.57 in the shared clips, and a corrective fitted on
pose alone parted the lips by 1.5 mm at pitch +10 degrees), then mirror-symmetrised (a face turned left is the
mirror image of one turned right). ``--check`` prints the leave-one-clip-out variance reduction (15-27 % on the clips with head turns).
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

import numpy as np

from thead.engines.pose_corrective import DATA_PATH, FEATURES, ODD_IN_YAW, pose_features

TRAIN_VIDEOS = ("d0.mp4", "d3.mp4", "d12.mp4", "WDA_AlexandriaOcasioCortez_000.mp4")
RIDGE = 1e-3  # per frame, on features in radians (best leave-one-clip-out of 1e-4 .. 1e-2)


def fit_corrective(clips: list[tuple[np.ndarray, ...]], mirror: np.ndarray,
                   ridge: float = RIDGE) -> np.ndarray:
    """The corrective's coefficients, fitted to clips and mirror-symmetrised.

    Parameters
    ----------
    clips : list of (np.ndarray, np.ndarray[, np.ndarray])
        Per clip, (angles [T, 2]: yaw, pitch in radians; residual [T, 478, 3] cm[; expression units [T, E]]), valid
        frames only. The expression units, when given, are regressors beside the pose features whose coefficients
        are dropped: the corrective is the pose's effect with the expression held fixed, so a clip whose speaker
        opens the mouth while looking up does not teach it that a raised head parts the lips.
    mirror : np.ndarray
        int [478]: each point's mirror partner (``FaceModel.mirror``).
    ridge : float
        Ridge weight per frame, on features in radians.

    Returns
    -------
    np.ndarray
        float32 coef [5, 478, 3] (cm per radian^k; features ``FEATURES``).
    """
    xs, ys = [], []
    for angles, residual, *expression in clips:
        f = pose_features(angles)
        f = f - f.mean(0)
        if expression:
            e = np.asarray(expression[0], np.float64)
            f = np.concatenate([f, e - e.mean(0)], 1)
        r = residual.reshape(len(residual), -1).astype(np.float64)
        xs.append(f)
        ys.append(r - r.mean(0))
    widths = {x.shape[1] for x in xs}
    if len(widths) != 1:
        raise ValueError("give the expression units for every clip or for none")
    x, y = np.concatenate(xs), np.concatenate(ys)
    solved = np.linalg.solve(x.T @ x + ridge * len(x) * np.eye(x.shape[1]), x.T @ y)
    coef = solved[:len(FEATURES)].reshape(len(FEATURES), -1, 3)
    flip = np.array([-1.0, 1.0, 1.0])
    mirrored = coef[:, mirror] * flip * np.where(ODD_IN_YAW, -1.0, 1.0)[:, None, None]
    return (0.5 * (coef + mirrored)).astype(np.float32)


def clip_residuals(data: Path, workdir: Path, videos: tuple[str, ...] = TRAIN_VIDEOS
                   ) -> list[tuple[str, np.ndarray, np.ndarray, np.ndarray]]:
    """The fit residuals of the training clips: preprocess (vox, 256) and ``fit_sequence`` of each.

    Parameters
    ----------
    data : Path
        The shared media folder (its ``videos/``).
    workdir : Path
        Where the preprocess stage caches its results.
    videos : tuple of str
        The clips' file names under ``videos/``.

    Returns
    -------
    list of (str, np.ndarray, np.ndarray)
        Per clip, (name, angles [T, 2] radians, residual [T, 478, 3] cm, expression units [T, E]) of its valid
        frames.
    """
    from thead.fitting import fit_sequence
    from thead.stages import InputItem, PreprocessParams, load_preprocess, preprocess_item

    out = []
    for name in videos:
        path = data / "videos" / name
        item = InputItem(path, Path(name).stem)
        preprocess_item(item, workdir, PreprocessParams(size=256))
        pre = load_preprocess(workdir / item.item_id / "preprocess")
        fit = fit_sequence(pre.crop_landmarks, pre.valid, 256, fps=float(pre.meta.fps or 25.0))
        ok = fit.valid
        out.append((name, fit.pose[ok, :2].astype(np.float64), fit.residual[ok].astype(np.float64),
                    fit.expression[ok].astype(np.float64)))
    return out


def main(argv: list[str] | None = None) -> int:
    """Fit the corrective on the training clips and write it (``--help`` lists the options); returns 0."""
    ap = argparse.ArgumentParser(description="Regenerate thead/engines/data/pose_corrective.npz")
    ap.add_argument("--data", type=Path, default=Path("../shared/data"), help="the shared media folder")
    ap.add_argument("--out", type=Path, default=DATA_PATH)
    ap.add_argument("--workdir", type=Path, default=None, help="preprocess cache (default: a temporary folder)")
    ap.add_argument("--check", action="store_true", help="also print leave-one-clip-out variance reduction")
    args = ap.parse_args(argv)
    from thead.facemodel import load_face_model

    mirror = load_face_model().mirror
    with tempfile.TemporaryDirectory() as tmp:
        clips = clip_residuals(args.data, args.workdir or Path(tmp))
    if args.check:
        for i, (name, angles, residual, _) in enumerate(clips):
            coef = fit_corrective([c[1:] for j, c in enumerate(clips) if j != i], mirror)
            f = pose_features(angles)
            r = residual - residual.mean(0)
            pred = np.einsum("tk,kpd->tpd", f - f.mean(0), coef)
            before = (r[:, :468] ** 2).sum(-1).mean()
            after = ((r - pred)[:, :468] ** 2).sum(-1).mean()
            print(f"{name}: yaw {np.degrees(angles[:, 0]).min():.0f}..{np.degrees(angles[:, 0]).max():.0f} deg, "
                  f"residual variance {before:.4f} -> {after:.4f} cm^2 ({1 - after / before:.0%} less)")
    coef = fit_corrective([c[1:] for c in clips], mirror)
    meta = {"features": list(FEATURES), "units": "cm per radian^k, model frame", "ridge": RIDGE,
            "nuisance": "expression units", "sources": [c[0] for c in clips],
            "frames": int(sum(len(c[1]) for c in clips))}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(args.out, coef=coef, meta=json.dumps(meta))
    print(f"wrote {args.out} ({meta['frames']} frames of {len(clips)} clips)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

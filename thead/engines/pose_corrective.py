"""Pose corrective: how MediaPipe's landmarks move, beyond a rigid turn, when a real head turns.

A real head turning by 20 degrees does not move its MediaPipe landmarks like a rigid mesh: the face outline slides
to stay on the visible silhouette, the nose and eye contours shift with the view. A fit leaves this in the
residual. An edit or a free-view orbit that turns the rigid model only (constant residual) therefore warps the
photo less convincingly than a real turn: a landmark fit of the result reads about 75-80 % of the asked yaw. The
corrective restores this behaviour: a residual field (model frame, cm) that is a quadratic function of yaw and
pitch::

    C(yaw, pitch) = sum_k f_k(yaw, pitch) * coef[k]      f = (yaw, pitch, yaw^2, pitch^2, yaw * pitch)  (radians)

fitted by ridge least squares to the residuals of real clips (each clip's mean removed, so its identity detail
does not enter), then mirror-symmetrised (a face turned left is the mirror image of one turned right). Motion
targets add ``C(target) - C(source)`` to the source residual (see ``thead.engines.motion``).

Regenerate ``data/pose_corrective.npz`` (needs the shared media; about a minute on a CPU)::

    python -m thead.engines.pose_corrective --data ../shared/data

Leave-one-clip-out, it removes 15-27 % of the residual variance of the clips with head turns (see ``--check``);
the clips are the four driving videos of the shared media (815 frames, 4 people, yaw -20..25, pitch -8..15 deg).
"""

from __future__ import annotations

import argparse
import functools
import json
import tempfile
from pathlib import Path

import numpy as np

DATA_PATH = Path(__file__).resolve().parent / "data" / "pose_corrective.npz"
FEATURES = ("yaw", "pitch", "yaw^2", "pitch^2", "yaw*pitch")
ODD_IN_YAW = np.array([True, False, False, False, True])  # features that change sign with the mirror image
TRAIN_VIDEOS = ("d0.mp4", "d3.mp4", "d12.mp4", "WDA_AlexandriaOcasioCortez_000.mp4")
RIDGE = 1e-3  # per frame, on features in radians (best leave-one-clip-out of 1e-4 .. 1e-2)
MAX_ANGLE_RAD = np.radians(30.0)  # features are clamped here: the clips turned up to ~25 degrees


def pose_features(angles: np.ndarray) -> np.ndarray:
    """Features [..., 5] of (yaw, pitch) radians [..., 2] (clamped to +-30 degrees)."""
    a = np.clip(np.asarray(angles, np.float64), -MAX_ANGLE_RAD, MAX_ANGLE_RAD)
    y, p = a[..., 0], a[..., 1]
    return np.stack([y, p, y * y, p * p, y * p], -1)


class PoseCorrective:
    """``C(yaw, pitch)``: residual fields [..., 478, 3] cm; ``coef`` [5, 478, 3]."""

    def __init__(self, coef: np.ndarray, meta: dict | None = None) -> None:
        self.coef = np.asarray(coef, np.float32)
        self.meta = meta or {}

    def __call__(self, angles: np.ndarray) -> np.ndarray:
        """Corrective [..., 478, 3] (cm, model frame) at (yaw, pitch) radians [..., 2]."""
        return np.einsum("...k,kpd->...pd", pose_features(angles), self.coef).astype(np.float32)

    def change(self, target_angles: np.ndarray, source_angles: np.ndarray) -> np.ndarray:
        """``C(target) - C(source)`` [..., 478, 3] for angles [..., 2] (radians; broadcast)."""
        f = pose_features(target_angles) - pose_features(source_angles)
        return np.einsum("...k,kpd->...pd", f, self.coef).astype(np.float32)


@functools.lru_cache(maxsize=None)
def load_pose_corrective() -> PoseCorrective | None:
    """The packaged corrective, or None when its file is absent (then edits turn the rigid model only)."""
    if not DATA_PATH.is_file():
        return None
    with np.load(DATA_PATH) as data:
        meta = json.loads(str(data["meta"])) if "meta" in data.files else {}
        return PoseCorrective(data["coef"], meta)


def fit_corrective(clips: list[tuple[np.ndarray, np.ndarray]], mirror: np.ndarray,
                   ridge: float = RIDGE) -> np.ndarray:
    """coef [5, 478, 3] from clips of (angles [T, 2] radians, residual [T, 478, 3] cm), valid frames only."""
    xs, ys = [], []
    for angles, residual in clips:
        f = pose_features(angles)
        r = residual.reshape(len(residual), -1).astype(np.float64)
        xs.append(f - f.mean(0))
        ys.append(r - r.mean(0))
    x, y = np.concatenate(xs), np.concatenate(ys)
    coef = np.linalg.solve(x.T @ x + ridge * len(x) * np.eye(x.shape[1]), x.T @ y).reshape(len(FEATURES), -1, 3)
    flip = np.array([-1.0, 1.0, 1.0])
    mirrored = coef[:, mirror] * flip * np.where(ODD_IN_YAW, -1.0, 1.0)[:, None, None]
    return (0.5 * (coef + mirrored)).astype(np.float32)


def clip_residuals(data: Path, workdir: Path, videos: tuple[str, ...] = TRAIN_VIDEOS
                   ) -> list[tuple[str, np.ndarray, np.ndarray]]:
    """(name, angles [T, 2], residual [T, 478, 3]) of each training clip: preprocess (vox, 256) + fit_sequence."""
    from thead.fitting import fit_sequence
    from thead.stages import InputItem, PreprocessParams, load_preprocess, preprocess_item

    out = []
    for name in videos:
        path = data / "videos" / name
        item = InputItem(path, Path(name).stem)
        preprocess_item(item, workdir, PreprocessParams(size=256))
        pre = load_preprocess(workdir / item.item_id / "preprocess")
        fit = fit_sequence(pre.crop_landmarks, pre.valid, 256, fps=pre.meta.fps or 25.0)
        ok = fit.valid
        out.append((name, fit.pose[ok, :2].astype(np.float64), fit.residual[ok].astype(np.float64)))
    return out


def main(argv: list[str] | None = None) -> int:
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
        for i, (name, angles, residual) in enumerate(clips):
            coef = fit_corrective([(a, r) for j, (_, a, r) in enumerate(clips) if j != i], mirror)
            f = pose_features(angles)
            r = residual - residual.mean(0)
            pred = np.einsum("tk,kpd->tpd", f - f.mean(0), coef)
            before = (r[:, :468] ** 2).sum(-1).mean()
            after = ((r - pred)[:, :468] ** 2).sum(-1).mean()
            print(f"{name}: yaw {np.degrees(angles[:, 0]).min():.0f}..{np.degrees(angles[:, 0]).max():.0f} deg, "
                  f"residual variance {before:.4f} -> {after:.4f} cm^2 ({1 - after / before:.0%} less)")
    coef = fit_corrective([(a, r) for _, a, r in clips], mirror)
    meta = {"features": list(FEATURES), "units": "cm per radian^k, model frame", "ridge": RIDGE,
            "sources": [name for name, _, _ in clips], "frames": int(sum(len(a) for _, a, _ in clips))}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(args.out, coef=coef, meta=json.dumps(meta))
    print(f"wrote {args.out} ({meta['frames']} frames of {len(clips)} clips)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""Regenerate ``thead/facemodel/data/mean_face.npz``, the neutral mean shape of the 478-point face model.

A maintenance script, not part of the package. How the mean shape is made (run
``python tools/build_mean_face.py --data ../shared/data`` from the repository root):

1. MediaPipe face mesh (``refine_landmarks=True``, 478 points) runs on frontal adult photos with a neutral
   face (``images/people_0.png s0.jpg``) and on every frame of the four driving videos
   (``videos/d0.mp4 d3.mp4 d12.mp4 WDA_AlexandriaOcasioCortez_000.mp4``). Smiling photos (``happy.png``,
   ``art_0.png``, ``s1.jpg``, scikit-image's astronaut) are left out because the mean defines expression zero;
   so are the children (``s5.jpg``, ``s11.jpg``: smaller mouths, larger eyes) and the terracotta statue
   ``s6.jpg``. From each video the ``--frames-per-video`` most neutral, near frontal frames (mouth closed,
   corners not raised, mouth not wide, eyes open) are averaged into one face, so every subject weighs the same.
2. The faces are aligned by generalised Procrustes (3D similarity; MediaPipe's z is the same pixel scale as
   x and y) and averaged.
3. The left-right correspondence of the 478 points is found by reflecting the mean and matching points
   (Hungarian assignment); the mean is then mirror-symmetrised.
4. The model frame is set: X = normal of the symmetry plane, pointing to the subject's left (image right for a
   frontal face); Z = the average viewing direction of the cameras that took these faces (people looking into
   the lens), made orthogonal to X, pointing away from the camera (into the head); Y = Z x X, pointing down
   (chin). So pose (0, 0, 0) is a face looking straight into the camera. Origin = centroid of the 468 surface
   points. Scale: centimetres, with the outer eye corners (points 33, 263) 9.0 cm apart (adult biocular width).

The file holds ``mean_shape`` float32 [478, 3] (cm, model frame), ``mirror`` int64 [478] (index of each point's
mirror partner) and ``sources`` (names of the faces used).
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import Sequence

import numpy as np

import thead.facemodel
from thead.face import topology as topo
from thead.face.landmarks import detect_landmarks

OUTER_EYE_DISTANCE_CM = 9.0
NEUTRAL_IMAGES = ("people_0.png", "s0.jpg")
NEUTRAL_VIDEOS = ("d0.mp4", "d3.mp4", "d12.mp4", "WDA_AlexandriaOcasioCortez_000.mp4")
DATA_PATH = Path(thead.facemodel.__file__).resolve().parent / "data" / "mean_face.npz"  # the packaged model's file
# Points on the face's midline, used to seed the symmetry plane before the mirror map is known.
MIDLINE = np.array([1, 2, 4, 5, 6, 8, 9, 10, 0, 11, 12, 13, 14, 15, 16, 17, 18, 151, 152, 164, 168, 175, 195,
                    197, 199, 200])


def similarity_fit(src: np.ndarray, dst: np.ndarray, weights: np.ndarray | None = None
                   ) -> tuple[float, np.ndarray, np.ndarray]:
    """Least-squares 3-D similarity dst ~ s * R @ src + t (Umeyama).

    Parameters
    ----------
    src, dst : np.ndarray
        [N, 3] corresponding points.
    weights : np.ndarray or None
        [N] per-point weights (default: all 1).

    Returns
    -------
    tuple of (float, np.ndarray, np.ndarray)
        (s, R [3, 3] a rotation, t [3]).
    """
    w = np.ones(len(src)) if weights is None else weights.astype(np.float64)
    w = w / w.sum()
    ms, md = w @ src, w @ dst
    a, b = src - ms, dst - md
    u, sv, vt = np.linalg.svd((b * w[:, None]).T @ a)
    d = np.diag([1.0, 1.0, np.sign(np.linalg.det(u @ vt))])
    rot = u @ d @ vt
    scale = float((sv * np.diag(d)).sum() / (w @ (a ** 2).sum(1)))
    return scale, rot, md - scale * rot @ ms


def _align(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """src [478,3] moved by the similarity that best maps its surface points onto dst's."""
    n = topo.NUM_SURFACE_POINTS
    s, r, t = similarity_fit(src[:n], dst[:n])
    return s * src @ r.T + t


def generalised_procrustes(shapes: np.ndarray, iterations: int = 10) -> np.ndarray:
    """Mean of shapes after iterated similarity alignment on their surface points.

    Parameters
    ----------
    shapes : np.ndarray
        [K, 478, 3] landmark sets.
    iterations : int
        Align-to-mean rounds.

    Returns
    -------
    np.ndarray
        [478, 3] the mean, centred on its surface points, with unit RMS size.
    """
    ref = shapes[0] - shapes[0, :topo.NUM_SURFACE_POINTS].mean(0)
    for _ in range(iterations):
        aligned = np.stack([_align(s, ref) for s in shapes])
        ref = aligned.mean(0)
        ref = ref - ref[:topo.NUM_SURFACE_POINTS].mean(0)
        ref = ref / np.sqrt((ref[:topo.NUM_SURFACE_POINTS] ** 2).sum(1).mean())
    return ref


def _reflect(points: np.ndarray, normal: np.ndarray, origin: np.ndarray) -> np.ndarray:
    d = (points - origin) @ normal
    return points - 2.0 * d[:, None] * normal


def mirror_map(shape: np.ndarray, iterations: int = 4) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Left-right point correspondence of a roughly symmetric face (Hungarian assignment of the reflected points).

    Parameters
    ----------
    shape : np.ndarray
        [478, 3] a face.
    iterations : int
        Rounds of plane fit and matching.

    Returns
    -------
    tuple of np.ndarray
        (mirror int64 [478]: each point's partner, plane normal [3] pointing to the subject's left, plane origin
        [3]).
    """
    from scipy.optimize import linear_sum_assignment

    left = shape[[263, 362]].mean(0)
    right = shape[[33, 133]].mean(0)
    normal = (left - right) / np.linalg.norm(left - right)
    origin = shape[MIDLINE].mean(0)
    perm = np.arange(len(shape))
    for _ in range(iterations):
        refl = _reflect(shape, normal, origin)
        perm = np.empty(len(shape), np.int64)
        for group in (np.arange(topo.NUM_SURFACE_POINTS), np.r_[topo.RIGHT_IRIS, topo.LEFT_IRIS]):
            cost = ((shape[group][:, None] - refl[group][None]) ** 2).sum(-1)
            rows, cols = linear_sum_assignment(cost)
            perm[group[rows]] = group[cols]
        # Refit the plane from matched pairs: midpoints lie on it, differences are along its normal.
        diff = shape - shape[perm]
        u, _, _ = np.linalg.svd(diff.T @ diff)
        normal = u[:, 0] * np.sign(u[:, 0] @ normal)
        origin = ((shape + shape[perm]) / 2).mean(0)
    return perm, normal, origin


def symmetric_mean_shape(shape: np.ndarray, faces: Sequence[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """The mean shape mirror-symmetrised, in the model frame and scaled to centimetres.

    Parameters
    ----------
    shape : np.ndarray
        [478, 3] the aligned mean of the faces.
    faces : sequence of np.ndarray
        Each [478, 3] in image coordinates: they give the viewing direction that defines pitch 0.

    Returns
    -------
    tuple of np.ndarray
        (mean_shape float32 [478, 3] cm in the model frame, mirror int64 [478]).
    """
    perm, normal, origin = mirror_map(shape)
    if not np.array_equal(perm[perm], np.arange(len(perm))):
        raise RuntimeError("mirror correspondence is not an involution; the input faces are too asymmetric")
    sym = (shape + _reflect(shape, normal, origin)[perm]) / 2
    x_axis = normal
    n = topo.NUM_SURFACE_POINTS
    views = []
    for face in faces:  # the image's depth axis seen from the face
        _, rot, _ = similarity_fit(sym[:n], np.asarray(face, np.float64)[:n])
        views.append(rot.T @ np.array([0.0, 0.0, 1.0]))
    z_axis = np.mean(views, 0)
    z_axis = z_axis - (z_axis @ x_axis) * x_axis
    z_axis /= np.linalg.norm(z_axis)
    if (sym[topo.NOSE_TIP] - sym.mean(0)) @ z_axis > 0:  # nose must be nearer the camera (smaller z)
        z_axis = -z_axis
    y_axis = np.cross(z_axis, x_axis)
    rot = np.stack([x_axis, y_axis, z_axis])  # rows: model axes in input coordinates
    framed = (sym - sym[:topo.NUM_SURFACE_POINTS].mean(0)) @ rot.T
    if framed[topo.CHIN, 1] < framed[topo.FOREHEAD, 1]:
        raise RuntimeError("model Y axis does not point from forehead to chin")
    framed[perm == np.arange(len(perm)), 0] = 0.0  # points on the symmetry plane
    eye_distance = np.linalg.norm(framed[33] - framed[263])
    return (framed * OUTER_EYE_DISTANCE_CM / eye_distance).astype(np.float32), perm


def _features(lm: np.ndarray) -> dict[str, np.ndarray]:
    """Scale-free neutrality cues per frame of landmarks [T, 478, 3]."""
    eye = np.linalg.norm(lm[:, 33] - lm[:, 263], axis=-1)
    gap = np.linalg.norm(lm[:, 13] - lm[:, 14], axis=-1) / eye
    width = np.linalg.norm(lm[:, 61] - lm[:, 291], axis=-1) / eye
    opening = (np.linalg.norm(lm[:, 159] - lm[:, 145], axis=-1)
               + np.linalg.norm(lm[:, 386] - lm[:, 374], axis=-1)) / (2 * eye)
    across = lm[:, 263, :2] - lm[:, 33, :2]
    across /= np.linalg.norm(across, axis=-1, keepdims=True)
    down = np.stack([-across[:, 1], across[:, 0]], -1)
    corner_up = (((lm[:, 0] + lm[:, 17]) / 2 - (lm[:, 61] + lm[:, 291]) / 2)[:, :2] * down).sum(-1) / eye
    return {"gap": gap, "width": width, "opening": opening, "corner_up": corner_up}


def neutral_frames(lm: np.ndarray, valid: np.ndarray, reference: np.ndarray, count: int) -> np.ndarray:
    """The most neutral, near-frontal frames of a clip.

    Parameters
    ----------
    lm : np.ndarray
        [T, 478, 3] the clip's landmarks (pixels).
    valid : np.ndarray
        bool [T]: frames with a face.
    reference : np.ndarray
        [478, 3] a frontal reference face (``generalised_procrustes`` of the photos).
    count : int
        How many frames.

    Returns
    -------
    np.ndarray
        int [count]: frame indices, most neutral first (mouth closed, corners not raised, mouth not wide, eyes
        open, near frontal).
    """
    idx = np.flatnonzero(valid)
    n = topo.NUM_SURFACE_POINTS
    angles = []
    for i in idx:
        _, rot, _ = similarity_fit(reference[:n], lm[i, :n])
        angles.append(np.degrees(np.arccos(np.clip((np.trace(rot) - 1) / 2, -1, 1))))
    angles = np.array(angles)
    f = {k: v[idx] for k, v in _features(lm).items()}
    ranks = {k: np.argsort(np.argsort(v)) / max(len(v) - 1, 1) for k, v in f.items()}
    score = ranks["gap"] + ranks["width"] + ranks["corner_up"] + 2 * np.abs(ranks["opening"] - 0.75)
    score = score + np.where(angles > 10.0, 10.0, 0.0) + angles / 10.0
    score = score + np.where(ranks["opening"] < 0.5, 10.0, 0.0)  # eyes at least as open as usual: no blinks
    return idx[np.argsort(score)[:count]]


def collect_faces(data_dir: Path, frames_per_video: int) -> tuple[list[np.ndarray], list[str]]:
    """One landmark set per subject from the shared media folder.

    Parameters
    ----------
    data_dir : Path
        The shared media folder (``images/``, ``videos/``).
    frames_per_video : int
        Neutral frames averaged per video.

    Returns
    -------
    tuple of (list of np.ndarray, list of str)
        The faces (each [478, 3], pixels) and their sources' names.
    """
    from thead.io import read_frames, read_image

    faces, names = [], []
    for name in NEUTRAL_IMAGES:
        lm, valid = detect_landmarks([read_image(data_dir / "images" / name)], static=True)
        if valid[0]:
            faces.append(lm[0].astype(np.float64))
            names.append(f"images/{name}")
    reference = generalised_procrustes(np.stack(faces))
    for name in NEUTRAL_VIDEOS:
        path = data_dir / "videos" / name
        if not path.exists():
            continue
        lm, valid = detect_landmarks(read_frames(path), static=False)
        chosen = neutral_frames(lm, valid, reference, frames_per_video)
        aligned = np.stack([_align(lm[i].astype(np.float64), lm[chosen[0]].astype(np.float64)) for i in chosen])
        faces.append(aligned.mean(0))
        names.append(f"videos/{name}[{','.join(str(i) for i in sorted(chosen))}]")
    return faces, names


def build(data_dir: Path, out: Path = DATA_PATH, frames_per_video: int = 10) -> Path:
    """Detect, align, symmetrise and save the mean shape.

    Parameters
    ----------
    data_dir : Path
        The shared media folder.
    out : Path
        The .npz to write (atomically).
    frames_per_video : int
        Neutral frames averaged per video.

    Returns
    -------
    Path
        ``out``.

    Raises
    ------
    RuntimeError
        When fewer than 3 faces are found.
    """
    faces, names = collect_faces(data_dir, frames_per_video)
    if len(faces) < 3:
        raise RuntimeError(f"only {len(faces)} faces found under {data_dir}; need at least 3")
    mean = generalised_procrustes(np.stack(faces))
    shape, mirror = symmetric_mean_shape(mean, faces)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.stem + ".tmp.npz")
    np.savez_compressed(tmp, mean_shape=shape, mirror=mirror, sources=np.array(names))
    os.replace(tmp, out)
    return out


def main(argv: Sequence[str] | None = None) -> None:
    """Build the mean shape from the command line's options (``--help`` lists them)."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    default = os.environ.get("THEAD_TEST_DATA", str(Path(__file__).resolve().parents[2] / "shared" / "data"))
    parser.add_argument("--data", type=Path, default=Path(default), help="shared media folder (images/, videos/)")
    parser.add_argument("--out", type=Path, default=DATA_PATH)
    parser.add_argument("--frames-per-video", type=int, default=10)
    args = parser.parse_args(argv)
    path = build(args.data, args.out, args.frames_per_video)
    with np.load(path) as data:
        print(f"wrote {path}: {len(data['sources'])} faces: {', '.join(data['sources'])}")


if __name__ == "__main__":
    main()

"""Face-model metrics on fitted parameters: expression (AED), pose (APD/ARD), gaze, action units, identity shape (AVD).

The caller fits the same face model / estimator to the generated and to the reference (driving or source)
frames and passes the arrays here; each function returns per-frame values ``(N,)`` (NaN where either side has
NaN, i.e. the fit failed) so ``thead.metrics.aggregate`` can count what was measured.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping, Sequence

import numpy as np

from thead.face.topology import LEFT_EYE_CORNERS, NUM_POINTS, RIGHT_EYE_CORNERS
from thead.metrics._inputs import as_float_array, check_same_length


def _pair(name: str, a: np.ndarray, b: np.ndarray, min_ndim: int = 2) -> tuple[np.ndarray, np.ndarray]:
    a = as_float_array(a, name)
    b = as_float_array(b, name)
    while a.ndim < min_ndim:
        a = a[None]
    while b.ndim < min_ndim:
        b = b[None]
    if a.shape[1:] != b.shape[1:]:
        raise ValueError(f"{name}: per-frame shapes differ: {a.shape[1:]} vs {b.shape[1:]}")
    check_same_length(name, len(a), len(b))
    return a, b


# --------------------------------------------------------------------------------------------- expression

def aed(generated: np.ndarray, reference: np.ndarray, norm: str = "l1") -> np.ndarray:
    """Average expression distance per frame between expression coefficient vectors.

    ``generated``/``reference``: ``(N, K)`` expression coefficients of one face model (e.g. 64 BFM/Deep3DFace
    coefficients, or FLAME expression parameters), fitted to the generated and to the driving frames.
    ``norm="l1"`` (default): mean absolute difference over the K coefficients, ``mean_k |e_k^gen - e_k^ref|``
    (independent of K; the PIRenderer / HiDe-NeRF convention). ``norm="l2"``: Euclidean distance
    ``||e^gen - e^ref||_2``. Units are those of the coefficients. Used by PECHead and HiDe-NeRF.
    Returns ``(N,)`` float64; NaN where a fit is NaN.
    """
    a, b = _pair("aed", generated, reference)
    diff = (a - b).reshape(len(a), -1)
    if norm == "l1":
        return np.abs(diff).mean(axis=1)
    if norm == "l2":
        return np.linalg.norm(diff, axis=1)
    raise ValueError(f"aed: norm must be 'l1' or 'l2', got {norm!r}")


# --------------------------------------------------------------------------------------------------- pose

def wrap_degrees(angles: np.ndarray) -> np.ndarray:
    """Angles (degrees) wrapped into [-180, 180)."""
    return (np.asarray(angles, dtype=np.float64) + 180.0) % 360.0 - 180.0


@dataclass(frozen=True)
class PoseDistance:
    """Per-frame pose errors between two head-pose tracks.

    Attributes:
        yaw, pitch, roll: ``(N,)`` absolute angle differences in degrees (wrapped to [0, 180]).
        apd: ``(N,)`` mean of the three, degrees (the APD of PIRenderer / HiDe-NeRF; HeadGAN's ARD).
        translation: ``(N,)`` Euclidean distance of the translations (units of the inputs), or None.
    """

    yaw: np.ndarray
    pitch: np.ndarray
    roll: np.ndarray
    apd: np.ndarray
    translation: np.ndarray | None = None

    def as_dict(self) -> dict[str, np.ndarray]:
        d = {"yaw": self.yaw, "pitch": self.pitch, "roll": self.roll, "apd": self.apd}
        if self.translation is not None:
            d["translation"] = self.translation
        return d


def pose_distance(generated_angles: np.ndarray, reference_angles: np.ndarray,
                  generated_translation: np.ndarray | None = None,
                  reference_translation: np.ndarray | None = None) -> PoseDistance:
    """Average pose distance: absolute Euler-angle differences per frame, in degrees, plus translation distance.

    ``*_angles``: ``(N, 3)`` Euler angles (yaw, pitch, roll) in degrees from the same pose estimator on the
    generated and the driving frames; differences are wrapped so 179 vs -179 is 2 degrees.
    ``APD = (|dyaw| + |dpitch| + |droll|) / 3`` per frame. ``*_translation``: optional ``(N, 3)`` (or ``(N, 2)``)
    head translations; their Euclidean distance is reported separately (units of the inputs). APD is used by
    PECHead and HiDe-NeRF; HeadGAN reports the same idea as ARD (average rotation distance, degrees).
    """
    a, b = _pair("pose_distance", generated_angles, reference_angles)
    if a.shape[1] != 3:
        raise ValueError(f"pose_distance: angles must be (N, 3) yaw/pitch/roll, got {a.shape}")
    d = np.abs(wrap_degrees(a - b))
    trans = None
    if (generated_translation is None) != (reference_translation is None):
        raise ValueError("pose_distance: give both translations or neither")
    if generated_translation is not None:
        ta, tb = _pair("pose_distance translation", generated_translation, reference_translation)
        check_same_length("pose_distance translation", len(ta), len(a))
        trans = np.linalg.norm(ta - tb, axis=1)
    return PoseDistance(yaw=d[:, 0], pitch=d[:, 1], roll=d[:, 2], apd=d.mean(axis=1), translation=trans)


def rotation_distance(generated_rotations: np.ndarray, reference_rotations: np.ndarray) -> np.ndarray:
    """Geodesic angle between rotation matrices per frame, in degrees: ``arccos((tr(R_g^T R_r) - 1) / 2)``.

    ``(N, 3, 3)`` each. Independent of the Euler-angle convention; 0 for identical poses, at most 180.
    """
    a, b = _pair("rotation_distance", generated_rotations, reference_rotations, min_ndim=3)
    cos = (np.einsum("nij,nij->n", a, b) - 1.0) / 2.0
    return np.degrees(np.arccos(np.clip(cos, -1.0, 1.0)))


# --------------------------------------------------------------------------------------------------- gaze

def gaze_vectors(angles: np.ndarray, degrees: bool = True) -> np.ndarray:
    """Unit gaze directions ``(..., 3)`` from (pitch, yaw) angles ``(..., 2)`` (camera looks along -z).

    ``x = -cos(pitch) sin(yaw)``, ``y = -sin(pitch)``, ``z = -cos(pitch) cos(yaw)`` (the ETH-XGaze / MPIIGaze
    convention).
    """
    ang = np.asarray(angles, dtype=np.float64)
    if degrees:
        ang = np.radians(ang)
    pitch, yaw = ang[..., 0], ang[..., 1]
    return np.stack([-np.cos(pitch) * np.sin(yaw), -np.sin(pitch), -np.cos(pitch) * np.cos(yaw)], axis=-1)


def gaze_distance(generated: np.ndarray, reference: np.ndarray, degrees: bool = True) -> np.ndarray:
    """Angular gaze error per frame, in degrees.

    Inputs: ``(N, 3)`` gaze direction vectors (any length), or ``(N, 2)`` (pitch, yaw) angles (degrees unless
    ``degrees=False``), or per eye ``(N, 2, 3)`` / ``(N, 2, 2)`` (the error is then averaged over the eyes).
    Error = angle between the directions, ``arccos(g.r / (|g||r|))``. Returns ``(N,)`` float64 degrees.
    """
    a, b = _pair("gaze_distance", generated, reference)
    if a.shape[-1] == 2:
        a, b = gaze_vectors(a, degrees), gaze_vectors(b, degrees)
    elif a.shape[-1] != 3:
        raise ValueError(f"gaze_distance: last axis must be 3 (vectors) or 2 (pitch, yaw), got {a.shape}")
    na = np.linalg.norm(a, axis=-1)
    nb = np.linalg.norm(b, axis=-1)
    cos = np.einsum("...k,...k->...", a, b) / (na * nb)
    ang = np.degrees(np.arccos(np.clip(cos, -1.0, 1.0)))
    return ang.reshape(len(ang), -1).mean(axis=1)


# ----------------------------------------------------------------------------------------------- action units

@dataclass(frozen=True)
class AUAgreement:
    """Agreement of binary action-unit presence between generated and reference frames.

    Attributes:
        units: the unit names compared, in column order.
        hamming: ``(N,)`` fraction of units whose presence differs per frame (HeadGAN's AU-H), in [0, 1].
        accuracy: ``(N,)`` ``1 - hamming``: fraction of units that agree (HiDe-NeRF's AUCON), in [0, 1].
        per_unit: ``{unit: fraction of measured frames where that unit agrees}``.
    """

    units: tuple[str, ...]
    hamming: np.ndarray
    accuracy: np.ndarray
    per_unit: dict[str, float]


def _au_matrix(aus: np.ndarray | Mapping[str, np.ndarray], units: Sequence[str] | None) -> tuple[np.ndarray,
                                                                                                    list[str]]:
    if isinstance(aus, Mapping):
        names = list(units) if units is not None else sorted(aus)
        missing = [u for u in names if u not in aus]
        if missing:
            raise ValueError(f"au_agreement: units {missing} are missing from the input")
        cols = [np.asarray(aus[u], dtype=np.float64).reshape(-1) for u in names]
        return np.stack(cols, axis=1), names
    arr = as_float_array(aus, "action units")
    if arr.ndim == 1:
        arr = arr[None]
    names = list(units) if units is not None else [f"AU{i}" for i in range(arr.shape[1])]
    if len(names) != arr.shape[1]:
        raise ValueError(f"au_agreement: {len(names)} unit names for {arr.shape[1]} columns")
    return arr, names


def au_agreement(generated: np.ndarray | Mapping[str, np.ndarray], reference: np.ndarray | Mapping[str, np.ndarray],
                 units: Sequence[str] | None = None, threshold: float = 0.5) -> AUAgreement:
    """Action-unit agreement per frame: threshold each unit to present/absent, compare the binary vectors.

    Inputs: ``(N, K)`` arrays of unit activations (probabilities, intensities or 0/1 flags; OpenFace's
    ``AUxx_c`` presence columns are already 0/1) with ``units`` naming the K columns, or dicts
    ``{unit name: (N,)}`` (compared on ``units``, default: all names of ``generated``). A unit is present when
    its value ``>= threshold`` (0.5 suits probabilities and 0/1 flags; for OpenFace 0-5 intensities use e.g. 1).
    ``hamming`` = fraction of units that differ (HeadGAN's AU-H, lower is better); ``accuracy = 1 - hamming``
    (HiDe-NeRF's AUCON, higher is better). A frame with any NaN value is NaN in both.
    """
    if isinstance(generated, Mapping) and units is None:
        units = sorted(generated)
    a, names = _au_matrix(generated, units)
    b, names_b = _au_matrix(reference, names if isinstance(reference, Mapping) else units)
    if a.shape[1] != b.shape[1]:
        raise ValueError(f"au_agreement: {a.shape[1]} vs {b.shape[1]} units")
    check_same_length("au_agreement", len(a), len(b))
    valid = np.isfinite(a).all(axis=1) & np.isfinite(b).all(axis=1)
    differ = (a >= threshold) != (b >= threshold)
    hamming = np.where(valid, differ.mean(axis=1), np.nan)
    per_unit = {n: float(1.0 - differ[valid, i].mean()) if valid.any() else float("nan")
                for i, n in enumerate(names)}
    return AUAgreement(units=tuple(names), hamming=hamming, accuracy=1.0 - hamming, per_unit=per_unit)


@dataclass(frozen=True)
class UnitCorrelation:
    """How the generated expression units follow the reference's over time.

    Attributes:
        per_unit: ``{unit: Pearson r over the frames both sides measured}``; NaN where either side is constant.
        moving: the units whose reference standard deviation reaches ``min_std`` (the driver really moves them).
        mean: mean r over ``moving`` (NaN when none moves).
    """

    per_unit: dict[str, float]
    moving: tuple[str, ...]
    mean: float


def unit_correlation(generated: np.ndarray, reference: np.ndarray, units: Sequence[str] | None = None,
                     min_std: float = 0.05) -> UnitCorrelation:
    """Per-unit Pearson correlation of expression coefficients over time, generated vs reference.

    Inputs: ``(N, K)`` coefficients of the same K units (``units`` names them, default ``U0..``); frames with NaN
    on either side are left out. A unit counts in ``mean`` when its reference std is at least ``min_std``
    (coefficient units): units the driver barely moves only add noise to a mean correlation.
    """
    a, b = _pair("unit_correlation", generated, reference)
    names = list(units) if units is not None else [f"U{i}" for i in range(a.shape[1])]
    if len(names) != a.shape[1]:
        raise ValueError(f"unit_correlation: {len(names)} unit names for {a.shape[1]} columns")
    ok = np.isfinite(a).all(axis=1) & np.isfinite(b).all(axis=1)
    a, b = a[ok], b[ok]
    per_unit: dict[str, float] = {}
    for i, name in enumerate(names):
        x, y = a[:, i], b[:, i]
        per_unit[name] = (float(np.corrcoef(x, y)[0, 1]) if len(x) > 2 and x.std() > 1e-9 and y.std() > 1e-9
                          else float("nan"))
    moving = tuple(n for i, n in enumerate(names) if len(b) > 2 and b[:, i].std() >= min_std)
    vals = [per_unit[n] for n in moving if np.isfinite(per_unit[n])]
    return UnitCorrelation(per_unit=per_unit, moving=moving, mean=float(np.mean(vals)) if vals else float("nan"))


# -------------------------------------------------------------------------------------------- identity shape

def similarity_procrustes(source: np.ndarray, target: np.ndarray) -> tuple[np.ndarray, float, np.ndarray,
                                                                               np.ndarray]:
    """Least-squares similarity transform (Umeyama 1991) mapping ``source`` points onto ``target``.

    ``source``, ``target``: ``(V, D)``. Returns ``(aligned_source, scale, rotation (D, D), translation (D,))``
    with ``aligned = scale * source @ rotation.T + translation``; the rotation is proper (no reflection).
    """
    src = np.asarray(source, dtype=np.float64)
    dst = np.asarray(target, dtype=np.float64)
    mu_s, mu_d = src.mean(axis=0), dst.mean(axis=0)
    s0, d0 = src - mu_s, dst - mu_d
    cov = d0.T @ s0 / len(src)
    u, sig, vt = np.linalg.svd(cov)
    sign = np.ones(len(sig))
    if np.linalg.det(u) * np.linalg.det(vt) < 0:
        sign[-1] = -1.0
    rot = (u * sign) @ vt
    var_s = (s0 ** 2).sum() / len(src)
    scale = float((sig * sign).sum() / var_s) if var_s > 0 else 1.0
    trans = mu_d - scale * rot @ mu_s
    return scale * src @ rot.T + trans, scale, rot, trans


def _default_eye_corners(num_points: int) -> tuple[int, int]:
    if num_points == NUM_POINTS or num_points == 468:
        return int(RIGHT_EYE_CORNERS[0]), int(LEFT_EYE_CORNERS[0])
    if num_points == 68:
        return 36, 45
    raise ValueError(f"no default eye corners for {num_points}-point shapes; pass eye_corners=(i, j)")


def identity_shape_distance(generated: np.ndarray, reference: np.ndarray,
                            eye_corners: tuple[int, int] | None = None) -> np.ndarray:
    """Average vertex distance between two neutral (pose- and expression-free) face shapes, per pair.

    ``generated``/``reference``: ``(V, 3)`` or ``(N, V, 3)`` identity shapes of the same topology (e.g. the
    478-point mesh of a fitted model with expression set to zero and pose removed), one fitted to the
    generated frames and one to the source. The generated shape is aligned to the reference by a similarity
    Procrustes fit (rotation, translation, uniform scale; removes any remaining pose and scale), then
    ``AVD = mean_v ||v_gen - v_ref||_2 / IOD``, where IOD is the reference's inter-ocular distance between
    the outer eye corners (mesh points 33 and 263; iBUG 36 and 45 for 68 points; or ``eye_corners``). Unitless
    (fraction of the inter-ocular distance); 0 for shapes identical up to a similarity transform. This follows
    HiDe-NeRF's AVD (average vertex distance between canonical meshes). Returns ``(N,)`` float64.
    """
    a, b = _pair("identity_shape_distance", generated, reference, min_ndim=3)
    i, j = eye_corners if eye_corners is not None else _default_eye_corners(a.shape[1])
    out = np.full(len(a), np.nan)
    for n in range(len(a)):
        if not (np.isfinite(a[n]).all() and np.isfinite(b[n]).all()):
            continue
        aligned = similarity_procrustes(a[n], b[n])[0]
        iod = np.linalg.norm(b[n, i] - b[n, j])
        if iod <= 0:
            raise ValueError("identity_shape_distance: reference eye corners coincide (inter-ocular distance 0)")
        out[n] = np.linalg.norm(aligned - b[n], axis=1).mean() / iod
    return out

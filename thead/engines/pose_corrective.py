"""Pose corrective: how MediaPipe's landmarks move, beyond a rigid turn, when a real head turns.

A real head turning by 20 degrees does not move its MediaPipe landmarks like a rigid mesh: the face outline slides
to stay on the visible silhouette, the nose and eye contours shift with the view. A fit leaves this in the
residual. An edit or a free-view orbit that turns the rigid model only (constant residual) therefore warps the
photo less convincingly than a real turn: a landmark fit of the result reads about 75-80 % of the asked yaw. The
corrective restores this behaviour: a residual field (model frame, cm) that is a quadratic function of yaw and
pitch::

    C(yaw, pitch) = sum_k f_k(yaw, pitch) * coef[k]      f = (yaw, pitch, yaw^2, pitch^2, yaw * pitch)  (radians)

fitted by ridge least squares to the residuals of real clips (each clip's mean removed, so its identity detail
does not enter; the clips' expression units are regressors beside the angles, so what a speaker's face does while
the head moves, such as opening the mouth when looking up, is not taken for an effect of the pose), then
mirror-symmetrised (a face turned left is the mirror image of one turned right). Motion
targets add ``C(target) - C(source)`` to the source residual (see ``thead.engines.motion``).

``data/pose_corrective.npz`` is made by the maintenance script ``tools/fit_pose_corrective.py`` (needs the shared
media; about a minute on a CPU)::

    python tools/fit_pose_corrective.py --data ../shared/data

Leave-one-clip-out, it removes 15-27 % of the residual variance of the clips with head turns (see ``--check``);
the clips are the four driving videos of the shared media (815 frames, 4 people, yaw -20..25, pitch -8..15 deg).
"""

from __future__ import annotations

import functools
import json
from pathlib import Path

import numpy as np

DATA_PATH = Path(__file__).resolve().parent / "data" / "pose_corrective.npz"
FEATURES = ("yaw", "pitch", "yaw^2", "pitch^2", "yaw*pitch")
ODD_IN_YAW = np.array([True, False, False, False, True])  # features that change sign with the mirror image
MAX_ANGLE_RAD = np.radians(30.0)  # features are clamped here: the clips turned up to ~25 degrees


def pose_features(angles: np.ndarray) -> np.ndarray:
    """The corrective's features of head angles.

    Parameters
    ----------
    angles : np.ndarray
        [..., 2]: (yaw, pitch) in radians, clamped to +-30 degrees.

    Returns
    -------
    np.ndarray
        float64 [..., 5]: ``FEATURES`` (yaw, pitch, yaw^2, pitch^2, yaw * pitch).
    """
    a = np.clip(np.asarray(angles, np.float64), -MAX_ANGLE_RAD, MAX_ANGLE_RAD)
    y, p = a[..., 0], a[..., 1]
    return np.stack([y, p, y * y, p * p, y * p], -1)


class PoseCorrective:
    """``C(yaw, pitch)``: residual fields [..., 478, 3] cm; ``coef`` [5, 478, 3]."""

    def __init__(self, coef: np.ndarray, meta: dict | None = None) -> None:
        self.coef = np.asarray(coef, np.float32)
        self.meta = meta or {}

    def __call__(self, angles: np.ndarray) -> np.ndarray:
        """The corrective at head angles.

        Parameters
        ----------
        angles : np.ndarray
            [..., 2]: (yaw, pitch) in radians.

        Returns
        -------
        np.ndarray
            float32 [..., 478, 3]: residual field (cm, model frame).
        """
        return np.einsum("...k,kpd->...pd", pose_features(angles), self.coef).astype(np.float32)

    def change(self, target_angles: np.ndarray, source_angles: np.ndarray) -> np.ndarray:
        """``C(target) - C(source)``: what a turn from the source's angles to the target's adds to the residual.

        Parameters
        ----------
        target_angles, source_angles : np.ndarray
            [..., 2]: (yaw, pitch) in radians (broadcast against each other).

        Returns
        -------
        np.ndarray
            float32 [..., 478, 3]: residual change (cm, model frame).
        """
        f = pose_features(target_angles) - pose_features(source_angles)
        return np.einsum("...k,kpd->...pd", f, self.coef).astype(np.float32)


@functools.lru_cache(maxsize=None)
def load_pose_corrective() -> PoseCorrective | None:
    """The packaged corrective (read once).

    Returns
    -------
    PoseCorrective or None
        The corrective of ``DATA_PATH``, or None when that file is absent (then edits turn the rigid model only).
    """
    if not DATA_PATH.is_file():
        return None
    with np.load(DATA_PATH) as data:
        meta = json.loads(str(data["meta"])) if "meta" in data.files else {}
        return PoseCorrective(data["coef"], meta)


__all__ = ["DATA_PATH", "FEATURES", "ODD_IN_YAW", "PoseCorrective", "load_pose_corrective", "pose_features"]

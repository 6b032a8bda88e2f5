"""``FitResult``: per-frame face-model coefficients of a clip, and their on-disk form.

Files (``save(folder)``): ``fit.safetensors`` holds the arrays (angles in DEGREES on disk, radians in memory) and
``fit.json`` their names, units, shapes and the camera model. Both are written to temporary names, then renamed.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from thead.errors import InputError
from thead.facemodel.geometry import POSE_NAMES

FIT_TENSORS = "fit.safetensors"
FIT_JSON = "fit.json"
FORMAT_VERSION = 1
CAMERA_MODEL = ("scaled orthographic: [x, y, depth]_px = scale * R(yaw, pitch, roll) @ X + [tx, ty, depth_offset]; "
                "R = Rz(roll) Ry(yaw) Rx(pitch); image x right, y down, depth away from the camera; model X = "
                "subject's left, Y down, Z into the head; +yaw turns the nose to image +x, +pitch tilts it up, "
                "+roll turns the face clockwise in the image")


@dataclass
class FitResult:
    """Face-model fit of T frames. Shapes and units:

    pose [T, 6] float32: (yaw, pitch, roll) radians, (tx, ty) pixels = image position of the model origin,
        scale = pixels per model unit (cm for the 478-point model).
    depth_offset [T] pixels: depth of the model origin (landmark z convention); only needed to rebuild z.
    expression [T, E] float32, ``expression_names`` (E): unit coefficients (0 neutral, 1 full).
    gaze [T, 4] radians (degrees on disk): (right_yaw, right_pitch, left_yaw, left_pitch), eye directions relative to the head.
    identity: the subject's neutral shape [478, 3] in model units (478-point model), or identity coefficients [K]
        (PCA model).
    residual [T, P, 3] model units: landmarks minus the model, in the model frame (P = 478, or the PCA model's
        landmark count); ``project(shape(identity, expression, residual, gaze), pose)`` gives the landmarks back
        (after smoothing: their smoothed version).
    fit_error [T] pixels: mean 2-D distance between the landmarks and the model WITHOUT residual; NaN where the
        frame had no landmarks.
    valid [T] bool: frame had landmarks; False frames were filled by interpolating parameters.
    """

    pose: np.ndarray
    depth_offset: np.ndarray
    expression: np.ndarray
    expression_names: list[str]
    gaze: np.ndarray
    identity: np.ndarray
    residual: np.ndarray
    fit_error: np.ndarray
    valid: np.ndarray
    image_size: int
    fps: float | None = None
    model: str = "mediapipe478"
    extra: dict = field(default_factory=dict)

    @property
    def num_frames(self) -> int:
        return int(self.pose.shape[0])

    @property
    def interpolated(self) -> np.ndarray:
        """[T] bool: frames whose parameters were filled in (no landmarks)."""
        return ~self.valid

    def expression_of(self, name: str) -> np.ndarray:
        """Coefficients [T] of one named expression unit."""
        return self.expression[:, self.expression_names.index(name)]

    def save(self, folder: str | Path) -> Path:
        """Write ``fit.safetensors`` + ``fit.json`` into ``folder`` (created); returns the folder."""
        from safetensors.numpy import save_file

        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        pose_deg = self.pose.astype(np.float32).copy()
        pose_deg[:, :3] = np.degrees(pose_deg[:, :3])
        tensors = {
            "pose": pose_deg,
            "depth_offset": self.depth_offset.astype(np.float32),
            "expression": self.expression.astype(np.float32),
            "gaze": np.degrees(self.gaze).astype(np.float32),
            "identity": self.identity.astype(np.float32),
            "residual": self.residual.astype(np.float32),
            "fit_error": self.fit_error.astype(np.float32),
            "valid": self.valid.astype(np.uint8),
        }
        meta = {
            "format": "thead.fit",
            "version": FORMAT_VERSION,
            "model": self.model,
            "num_frames": self.num_frames,
            "image_size": int(self.image_size),
            "fps": self.fps,
            "camera_model": CAMERA_MODEL,
            "pose": {"names": list(POSE_NAMES), "units": ["deg", "deg", "deg", "px", "px", "px per model unit"]},
            "depth_offset": {"units": "px"},
            "expression": {"names": list(self.expression_names), "units": "0 = neutral, 1 = full expression"},
            "gaze": {"names": ["right_yaw", "right_pitch", "left_yaw", "left_pitch"], "units": "deg",
                     "frame": "relative to the head; +yaw looks to model +X (subject's left), +pitch looks up"},
            "identity": {"shape": list(self.identity.shape), "units": "model units (cm) or PCA coefficients"},
            "residual": {"shape": list(self.residual.shape), "units": "model units, model frame"},
            "fit_error": {"units": "px", "meaning": "mean 2-D landmark distance of the model without residual"},
            "valid": {"meaning": "1 = frame had landmarks, 0 = parameters interpolated"},
            "extra": self.extra,
        }
        tmp_tensors = folder / f".{FIT_TENSORS}.tmp"
        tmp_json = folder / f".{FIT_JSON}.tmp"
        save_file(tensors, str(tmp_tensors), metadata={"format": "thead.fit", "version": str(FORMAT_VERSION)})
        tmp_json.write_text(json.dumps(meta, indent=2))
        os.replace(tmp_tensors, folder / FIT_TENSORS)
        os.replace(tmp_json, folder / FIT_JSON)
        return folder

    @classmethod
    def load(cls, folder: str | Path) -> "FitResult":
        """Read a folder written by ``save`` (angles back to radians)."""
        from safetensors.numpy import load_file

        folder = Path(folder)
        if not (folder / FIT_TENSORS).is_file() or not (folder / FIT_JSON).is_file():
            raise InputError(folder, f"no {FIT_TENSORS} + {FIT_JSON} here")
        meta = json.loads((folder / FIT_JSON).read_text())
        if meta.get("format") != "thead.fit":
            raise InputError(folder / FIT_JSON, "not a thead fit file")
        t = load_file(str(folder / FIT_TENSORS))
        pose = t["pose"].astype(np.float32)
        pose[:, :3] = np.radians(pose[:, :3])
        return cls(pose=pose, depth_offset=t["depth_offset"], expression=t["expression"],
                   expression_names=list(meta["expression"]["names"]), gaze=np.radians(t["gaze"]).astype(np.float32),
                   identity=t["identity"],
                   residual=t["residual"], fit_error=t["fit_error"], valid=t["valid"].astype(bool),
                   image_size=int(meta["image_size"]), fps=meta.get("fps"), model=meta.get("model", "mediapipe478"),
                   extra=meta.get("extra", {}))

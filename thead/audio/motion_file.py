"""Motion files: per-frame pose, expression units, gaze and residual of a face, in fit.safetensors' layout.

A motion file (``save_motion``) is one ``.safetensors`` file holding the arrays of ``fit.safetensors``
(``thead.fitting.result``) with the same names and units: ``pose`` [T, 6] (yaw, pitch, roll in DEGREES on
disk, tx, ty crop pixels, scale pixels per cm), ``depth_offset`` [T] pixels, ``expression`` [T, E] unit
coefficients, ``gaze`` [T, 4] degrees (radians in memory), ``residual`` [T, 478, 3] cm (stored [1, 478, 3] when every frame's is
the same) and ``valid`` [T] uint8 (0 = the frame's values were held). The safetensors metadata holds
``format = "thead.motion"``, ``version``, ``fps``, ``num_frames``, ``expression_names``, the units, and the
caller's ``meta`` (JSON). ``load_motion`` reads a motion file, or a fit's ``fit.safetensors`` (its fit.json
beside it), as ``TargetParams``: one image plus a few dozen numbers a frame renders a clip.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from thead.engines.motion import TargetParams
from thead.errors import InputError
from thead.facemodel.geometry import POSE_NAMES
from thead.fitting.result import FIT_JSON, FIT_TENSORS, FitResult

MOTION_FORMAT = "thead.motion"
MOTION_VERSION = 1
_UNITS = {
    "pose": {"names": list(POSE_NAMES), "units": ["deg", "deg", "deg", "px", "px", "px per cm"]},
    "depth_offset": "px", "expression": "0 = neutral, 1 = full expression", "residual": "cm, model frame",
    "gaze": {"names": ["right_yaw", "right_pitch", "left_yaw", "left_pitch"], "units": "deg"},
    "valid": "1 = own values, 0 = held from an earlier frame",
}


@dataclass
class MotionFile:
    """What ``load_motion`` read: targets [T] (radians in memory), fps, the writer's meta, and ``kind``
    ("motion" for a motion file, "fit" for a fit.safetensors)."""

    targets: TargetParams
    fps: float | None
    meta: dict = field(default_factory=dict)
    kind: str = "motion"

    def as_fit(self, image_size: int = 256) -> FitResult:
        """The motion as a driver FitResult, for ``transfer_motion(other_source, motion.as_fit())``: a motion
        made for one photo then moves another relative to its first frame. Its identity is zeros (a driver's
        identity is never rendered), fit_error zeros, valid = not held."""
        t = self.targets
        return FitResult(pose=t.pose.copy(), depth_offset=t.depth_offset.copy(), expression=t.expression.copy(),
                         expression_names=list(t.expression_names), gaze=t.gaze.copy(),
                         identity=np.zeros((t.residual.shape[1], 3), np.float32), residual=t.residual.copy(),
                         fit_error=np.zeros(t.num_frames, np.float32), valid=~t.held, image_size=int(image_size),
                         fps=self.fps, extra={"from_motion": self.kind})


def _stored_arrays(targets: TargetParams) -> dict[str, np.ndarray]:
    """The arrays of a motion file for ``targets``: float32, head angles and gaze in degrees, a residual that is
    the same on every frame stored once."""
    pose = np.asarray(targets.pose, np.float32).copy()
    pose[:, :3] = np.degrees(pose[:, :3])
    residual = np.asarray(targets.residual, np.float32)
    if len(residual) > 1 and np.array_equal(residual, np.broadcast_to(residual[:1], residual.shape)):
        residual = residual[:1]
    return {
        "pose": pose, "depth_offset": np.asarray(targets.depth_offset, np.float32),
        "expression": np.asarray(targets.expression, np.float32),
        "gaze": np.degrees(np.asarray(targets.gaze, np.float32)).astype(np.float32),
        "residual": np.ascontiguousarray(residual), "valid": (~np.asarray(targets.held, bool)).astype(np.uint8),
    }


def _targets_from_arrays(t: dict[str, np.ndarray], expression_names: tuple[str, ...]) -> TargetParams:
    """``TargetParams`` (radians in memory) of a motion file's arrays (``_stored_arrays``)."""
    pose = t["pose"].astype(np.float32).copy()
    pose[:, :3] = np.radians(pose[:, :3])
    n = len(pose)
    residual = t["residual"].astype(np.float32)
    if len(residual) == 1 and n != 1:
        residual = np.repeat(residual, n, 0)
    return TargetParams(pose=pose, depth_offset=t["depth_offset"].astype(np.float32),
                        expression=t["expression"].astype(np.float32), residual=residual,
                        gaze=np.radians(t["gaze"]).astype(np.float32), held=~t["valid"].astype(bool),
                        expression_names=tuple(expression_names))


def as_stored(targets: TargetParams) -> TargetParams:
    """``targets`` exactly as a motion file written from them reads back (float32 angles through degrees), so a
    video rendered from these and one rendered from the file (``thead reenact SOURCE MOTION``) are the same."""
    return _targets_from_arrays(_stored_arrays(targets), targets.expression_names)


def save_motion(path: str | Path, targets: TargetParams, fps: float, meta: dict | None = None) -> Path:
    """Write ``targets`` to the motion file ``path`` (written to a temporary name, then renamed).

    Parameters
    ----------
    path : output ``.safetensors`` file (its folder is created).
    targets : TargetParams of T frames (angles in radians; written in degrees).
    fps : the frames' rate.
    meta : JSON-able information kept with the file (source, audio, options, ...).

    Returns
    -------
    The path written.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tensors = _stored_arrays(targets)
    header = {
        "format": MOTION_FORMAT, "version": str(MOTION_VERSION), "fps": repr(float(fps)),
        "num_frames": str(targets.num_frames), "expression_names": json.dumps(list(targets.expression_names)),
        "units": json.dumps(_UNITS), "meta": json.dumps(meta or {}, default=str),
    }
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_bytes(_safetensors_bytes(tensors, header))
    os.replace(tmp, path)
    return path


_DTYPES = {np.dtype(np.float32): "F32", np.dtype(np.uint8): "U8"}


def _safetensors_bytes(tensors: dict[str, np.ndarray], metadata: dict[str, str]) -> bytes:
    """The safetensors encoding of ``tensors`` with its header's keys in sorted order, so that the same arrays
    and metadata always give the same bytes (``safetensors.numpy.save`` orders the metadata at random)."""
    entries: dict[str, object] = {"__metadata__": dict(sorted(metadata.items()))}
    blobs, offset = [], 0
    for name in sorted(tensors):
        arr = np.ascontiguousarray(tensors[name])
        data = arr.astype(arr.dtype.newbyteorder("<"), copy=False).tobytes()
        entries[name] = {"dtype": _DTYPES[arr.dtype], "shape": list(arr.shape),
                         "data_offsets": [offset, offset + len(data)]}
        blobs.append(data)
        offset += len(data)
    head = json.dumps(entries, separators=(",", ":")).encode()
    head += b" " * (-len(head) % 8)
    return len(head).to_bytes(8, "little") + head + b"".join(blobs)


def _read_header(path: Path) -> dict:
    try:
        with open(path, "rb") as fh:
            n = int.from_bytes(fh.read(8), "little")
            if n <= 0 or n > 100_000_000:
                raise ValueError("bad header length")
            return json.loads(fh.read(n)).get("__metadata__", {}) or {}
    except (OSError, ValueError) as exc:
        raise InputError(path, f"not a safetensors file ({exc})") from exc


def load_motion(path: str | Path) -> MotionFile:
    """Read a motion file (``save_motion``) or a fit's ``fit.safetensors`` as targets.

    Returns
    -------
    MotionFile with TargetParams [T] in memory units (angles radians). Raises ``InputError`` naming the file
    when it is missing, not safetensors, of another format, or its arrays disagree in shape.
    """
    from safetensors.numpy import load_file

    path = Path(path)
    if not path.is_file():
        raise InputError(path, "file not found")
    header = _read_header(path)
    fmt = header.get("format")
    if fmt == "thead.fit":
        folder = path.parent
        if path.name != FIT_TENSORS or not (folder / FIT_JSON).is_file():
            raise InputError(path, f"a fit's arrays need their {FIT_JSON} beside them as {FIT_TENSORS}")
        fit = FitResult.load(folder)
        return MotionFile(TargetParams.from_fit(fit), fit.fps, {"fit": str(folder)}, kind="fit")
    if fmt != MOTION_FORMAT:
        raise InputError(path, f"not a thead motion or fit file (format {fmt!r})")
    if int(header.get("version", "0")) > MOTION_VERSION:
        raise InputError(path, f"motion file version {header.get('version')} is newer than this thead reads")
    t = load_file(str(path))
    try:
        targets = _targets_from_arrays(t, tuple(json.loads(header["expression_names"])))
    except (KeyError, ValueError) as exc:
        raise InputError(path, f"motion file arrays are incomplete or inconsistent ({exc})") from exc
    fps = float(header["fps"]) if header.get("fps") not in (None, "None") else None
    return MotionFile(targets, fps, json.loads(header.get("meta", "{}")), kind="motion")


__all__ = ["MOTION_FORMAT", "MOTION_VERSION", "MotionFile", "load_motion", "save_motion"]

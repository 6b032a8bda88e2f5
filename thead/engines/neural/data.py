"""Training data of the neural engine: per-clip arrays (``ClipData``, kept as npz) and the pair ``Dataset``.

A clip holds K source frames and T target frames of one video, all at the training side S:
sources uint8 [K,S,S,3], source_vertices float32 [K,478,3] (the source frame's own fitted mesh, S-pixels),
targets uint8 [T,S,S,3], target_landmarks float32 [T,478,3] (detected, S-pixels: the region masks),
target_vertices float32 [K,T,478,3] (source k's identity at target t's pose and expression),
bases uint8 [K,T,S,S,3] (the mesh engine's render of source k at target t; zeros when not used),
frames int64 [T] (the targets' frame numbers in the clip), source_frames int64 [K].
A training sample is a pair (k, t): source k -> target t (self-reenactment).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, fields
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from thead.engines.neural.condition import condition_maps
from thead.face.topology import FACE_OVAL, LIPS_OUTER


@dataclass
class ClipData:
    """One clip's training arrays (see the module docstring for shapes)."""

    name: str
    sources: np.ndarray
    source_vertices: np.ndarray
    source_frames: np.ndarray
    targets: np.ndarray
    target_landmarks: np.ndarray
    target_vertices: np.ndarray
    bases: np.ndarray
    frames: np.ndarray

    @property
    def size(self) -> int:
        return int(self.sources.shape[1])

    def save(self, path: Path, key: str) -> None:
        """Write to ``path`` (npz, atomically) with ``key`` (what the arrays are of)."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}.npz")
        arrays = {f.name: getattr(self, f.name) for f in fields(self) if f.name != "name"}
        np.savez(tmp, key=np.array(key), name=np.array(self.name), **arrays)
        os.replace(tmp, path)

    @classmethod
    def load(cls, path: Path, key: str) -> "ClipData | None":
        """The clip saved at ``path`` with ``key``, or None when absent, unreadable or of another key."""
        try:
            with np.load(path, allow_pickle=False) as z:
                if str(z["key"]) != key:
                    return None
                return cls(name=str(z["name"]), **{f.name: z[f.name] for f in fields(cls) if f.name != "name"})
        except (OSError, KeyError, ValueError):
            return None

    def select_targets(self, keep: np.ndarray) -> "ClipData":
        """The clip with only the targets where ``keep`` [T] is True."""
        keep = np.asarray(keep, bool)
        return ClipData(self.name, self.sources, self.source_vertices, self.source_frames, self.targets[keep],
                        self.target_landmarks[keep], self.target_vertices[:, keep], self.bases[:, keep],
                        self.frames[keep])


def _poly_mask(points: np.ndarray, size: int, grow: float = 0.0) -> np.ndarray:
    """float32 [size, size]: the convex hull of ``points`` [P, 2] (pixels, continuous convention) filled, grown by
    ``grow`` times its extent about its centre."""
    import cv2

    pts = np.asarray(points, np.float64)[:, :2]
    if grow:
        c = pts.mean(0)
        pts = c + (pts - c) * (1.0 + grow)
    hull = cv2.convexHull((pts - 0.5).astype(np.float32))  # OpenCV's integer-centre convention
    mask = np.zeros((size, size), np.uint8)
    cv2.fillConvexPoly(mask, np.round(hull).astype(np.int32), 1)
    return mask.astype(np.float32)


def region_masks(landmarks: np.ndarray, size: int) -> tuple[np.ndarray, np.ndarray]:
    """(face, mouth) float32 [size, size] masks of one frame's landmarks [478, 3] (pixels of a side-``size``
    crop): the face oval's hull, and the outer lips' hull grown by 30 %."""
    return _poly_mask(landmarks[FACE_OVAL], size), _poly_mask(landmarks[LIPS_OUTER], size, 0.3)


def to_tensor(image: np.ndarray) -> torch.Tensor:
    """uint8 [..., H, W, 3] -> float [..., 3, H, W] in [0, 1]."""
    t = torch.from_numpy(np.ascontiguousarray(image)).float().div_(255.0)
    return t.movedim(-1, -3)


class PairDataset(Dataset):
    """Every (clip, source k, target t) pair of ``clips``; item i -> dict of float tensors at side S:
    source [3,S,S], source_cond [C,S,S], target_cond [C,S,S], base [3,S,S], target [3,S,S], face_mask [1,S,S],
    mouth_mask [1,S,S] (C = ``COND_CHANNELS``). Condition maps are rasterised here (in the DataLoader's
    workers when it has any)."""

    def __init__(self, clips: list[ClipData]) -> None:
        if not clips:
            raise ValueError("no training clips")
        sizes = {c.size for c in clips}
        if len(sizes) != 1:
            raise ValueError(f"clips of different sizes {sorted(sizes)}")
        self.size = sizes.pop()
        self.clips = clips
        self.index = [(ci, k, t) for ci, c in enumerate(clips) for k in range(len(c.sources))
                      for t in range(len(c.targets))]
        if not self.index:
            raise ValueError("no training pairs (every clip has no target frames)")
        self._conds: dict[tuple[int, int, int], torch.Tensor] = {}  # rasterised once per pair (float16)

    def __len__(self) -> int:
        return len(self.index)

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        ci, k, t = self.index[i]
        c = self.clips[ci]
        s = self.size
        conds = self._conds.get((ci, k, t))
        if conds is None:
            verts = torch.from_numpy(np.stack([c.source_vertices[k], c.target_vertices[k, t]]).astype(np.float32))
            conds = self._conds[(ci, k, t)] = condition_maps(verts, s, s).half()
        conds = conds.float()
        face, mouth = region_masks(c.target_landmarks[t], s)
        return {"source": to_tensor(c.sources[k]), "source_cond": conds[0], "target_cond": conds[1],
                "base": to_tensor(c.bases[k, t]), "target": to_tensor(c.targets[t]),
                "face_mask": torch.from_numpy(face)[None], "mouth_mask": torch.from_numpy(mouth)[None]}


__all__ = ["ClipData", "PairDataset", "region_masks", "to_tensor"]

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

from thead.engines.neural.condition import COND_CHANNELS, condition_maps, mirror_condition
from thead.face.topology import FACE_OVAL, LIPS_OUTER

# Condition maps of every pair are rasterised up front, batched (on the training device), and kept in memory as
# float16 when they fit in this many bytes; a larger dataset rasterises each item when it is read.
CONDITION_CACHE_BYTES = 4 << 30


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
    mouth_mask [1,S,S] (C = ``COND_CHANNELS``).

    Condition maps: when all of them (one per source, one per pair) fit in ``cache_bytes`` as float16, they are
    rasterised here once, ``chunk`` meshes per call on ``device`` (a batched raster on the CPU is ~3x cheaper per
    map than one pair at a time; on CUDA it is a second's work where rasterising pairs as the first epoch reads them
    held a GPU run at ~1 it/s); otherwise each item rasterises its own (in the DataLoader's workers when it has
    any), so memory stays bounded."""

    def __init__(self, clips: list[ClipData], device: torch.device | str | None = None,
                 cache_bytes: int = CONDITION_CACHE_BYTES, chunk: int = 32) -> None:
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
        maps = sum(len(c.sources) * (1 + len(c.targets)) for c in clips)
        self.cached = maps * COND_CHANNELS * self.size ** 2 * 2 <= cache_bytes
        self._source_conds: list[torch.Tensor] = []  # per clip [K, C, S, S] float16
        self._target_conds: list[torch.Tensor] = []  # per clip [K, T, C, S, S] float16
        if self.cached:
            dev = torch.device(device) if device is not None else torch.device("cpu")
            for c in clips:
                self._source_conds.append(self._rasterise(c.source_vertices, dev, chunk))
                K, T = c.target_vertices.shape[:2]
                flat = self._rasterise(c.target_vertices.reshape(K * T, *c.target_vertices.shape[2:]), dev, chunk)
                self._target_conds.append(flat.view(K, T, *flat.shape[1:]))

    def _rasterise(self, vertices: np.ndarray, device: torch.device, chunk: int) -> torch.Tensor:
        """float16 [N, C, S, S] on the CPU: the condition maps of meshes [N, 478, 3] (S-pixels)."""
        v = torch.from_numpy(np.ascontiguousarray(vertices, np.float32))
        with torch.no_grad():
            return torch.cat([condition_maps(v[i:i + chunk].to(device), self.size, self.size).half().cpu()
                              for i in range(0, len(v), chunk)])

    def __len__(self) -> int:
        return len(self.index)

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        ci, k, t = self.index[i]
        c = self.clips[ci]
        s = self.size
        if self.cached:
            source_cond = self._source_conds[ci][k].float()
            target_cond = self._target_conds[ci][k, t].float()
        else:
            verts = torch.from_numpy(np.stack([c.source_vertices[k], c.target_vertices[k, t]]).astype(np.float32))
            source_cond, target_cond = condition_maps(verts, s, s).half().float()
        face, mouth = region_masks(c.target_landmarks[t], s)
        return {"source": to_tensor(c.sources[k]), "source_cond": source_cond, "target_cond": target_cond,
                "base": to_tensor(c.bases[k, t]), "target": to_tensor(c.targets[t]),
                "face_mask": torch.from_numpy(face)[None], "mouth_mask": torch.from_numpy(mouth)[None]}


IMAGE_KEYS = ("source", "base", "target", "face_mask", "mouth_mask")
CONDITION_KEYS = ("source_cond", "target_cond")


def flip_mask(n: int, probability: float, seed: int, step: int, rank: int = 0) -> torch.Tensor:
    """bool [n]: which items of training step ``step`` (1-based) on process ``rank`` are mirrored, each with
    ``probability``; a function of (seed, rank, step) only, so a resumed run draws what an uninterrupted one did."""
    if probability <= 0:
        return torch.zeros(n, dtype=torch.bool)
    rng = np.random.default_rng([int(seed), int(rank), int(step)])
    return torch.from_numpy(rng.random(n) < probability)


def mirror_pairs(batch: dict[str, torch.Tensor], mask: torch.Tensor) -> dict[str, torch.Tensor]:
    """The batch with the pairs where ``mask`` [N] is True replaced by their mirror images: every picture and
    region mask flipped left-right, both condition maps by :func:`~thead.engines.neural.condition.mirror_condition`
    (the maps of the mirrored meshes). A mirrored pair is a valid self-reenactment pair of the same person with
    the head turned, tilted and lit the other way: it doubles the poses a short clip shows."""
    if not bool(mask.any()):
        return batch
    out = dict(batch)
    for key in IMAGE_KEYS + CONDITION_KEYS:
        if key not in batch:
            continue
        x = batch[key]
        m = mask.to(x.device).view(-1, *([1] * (x.dim() - 1)))
        out[key] = torch.where(m, mirror_condition(x) if key in CONDITION_KEYS else x.flip(-1), x)
    return out


__all__ = ["ClipData", "PairDataset", "flip_mask", "mirror_pairs", "region_masks", "to_tensor"]

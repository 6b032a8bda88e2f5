"""Deterministic partition of a batch's items among the tasks of a job array (``--shard K/N``).

An item belongs to shard ``K`` of ``N`` (K is **0-based**: 0 <= K < N) when the BLAKE2b-64 hash of its item id,
read as an unsigned integer, is ``K`` modulo ``N``. The item id (its folder name in the work directory) is the
same whatever order or form the inputs are listed in, so N tasks that each list the whole dataset cover every
item exactly once, and two tasks never produce the same item.

``--shard auto`` reads the SLURM job-array variables: ``SLURM_ARRAY_TASK_ID`` minus ``SLURM_ARRAY_TASK_MIN``
(default 0) is K, ``SLURM_ARRAY_TASK_COUNT`` is N (``sbatch --array=0-7`` and ``--array=1-8`` both give 8 shards).
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from typing import Mapping, Sequence, TypeVar

__all__ = ["Shard", "parse_shard", "shard_index", "select_shard"]

T = TypeVar("T")


@dataclass(frozen=True)
class Shard:
    """Shard ``index`` (0-based) of ``count``."""

    index: int
    count: int

    def __post_init__(self) -> None:
        if self.count < 1:
            raise ValueError(f"shard count must be at least 1, not {self.count}")
        if not 0 <= self.index < self.count:
            raise ValueError(f"shard index {self.index} is outside 0..{self.count - 1} (K is 0-based)")

    def __str__(self) -> str:
        return f"{self.index}/{self.count}"

    def owns(self, item_id: str) -> bool:
        """True when the item with id ``item_id`` belongs to this shard."""
        return shard_index(item_id, self.count) == self.index


def shard_index(item_id: str, count: int) -> int:
    """The shard (0-based, below ``count``) that ``item_id`` belongs to: BLAKE2b-64 of its UTF-8 bytes mod count."""
    digest = hashlib.blake2b(item_id.encode("utf8"), digest_size=8).digest()
    return int.from_bytes(digest, "big") % count


def _env_int(environ: Mapping[str, str], name: str) -> int | None:
    text = environ.get(name)
    if text is None or not text.strip():
        return None
    try:
        return int(text.strip())
    except ValueError as exc:
        raise ValueError(f"${name}={text!r} is not an integer") from exc


def parse_shard(text: str | None, environ: Mapping[str, str] | None = None) -> Shard | None:
    """``"K/N"`` (0-based K), ``"auto"`` (from the SLURM array variables) or None (no sharding) -> Shard.

    Raises ValueError with a one-line reason for malformed text, K outside 0..N-1, or ``auto`` outside a SLURM
    array job.
    """
    if text is None:
        return None
    text = text.strip()
    if text.lower() == "auto":
        env = os.environ if environ is None else environ
        task = _env_int(env, "SLURM_ARRAY_TASK_ID")
        count = _env_int(env, "SLURM_ARRAY_TASK_COUNT")
        if task is None or count is None:
            raise ValueError("--shard auto needs $SLURM_ARRAY_TASK_ID and $SLURM_ARRAY_TASK_COUNT (run it in a "
                             "SLURM job array, or give K/N)")
        low = _env_int(env, "SLURM_ARRAY_TASK_MIN") or 0
        return Shard(task - low, count)
    parts = text.split("/")
    if len(parts) != 2:
        raise ValueError(f"'{text}' is not K/N (e.g. 0/4: the first of 4 shards) or auto")
    try:
        index, count = int(parts[0]), int(parts[1])
    except ValueError as exc:
        raise ValueError(f"'{text}' is not K/N with whole numbers (e.g. 0/4)") from exc
    return Shard(index, count)


def select_shard(items: Sequence[T], shard: Shard | None, key=lambda item: item.item_id) -> list[T]:
    """The items of ``items`` that belong to ``shard`` (all of them when None), in their listed order.

    Parameters
    ----------
    items : the whole batch.
    shard : this task's shard, or None.
    key : the item id of an item (default: its ``item_id`` attribute).
    """
    if shard is None:
        return list(items)
    return [it for it in items if shard.owns(key(it))]

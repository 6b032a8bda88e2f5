"""What the rendering jobs (reenact, edit) share: render options, the engine, output keys and sidecars, pasting
crop renders back into original frames, and writing frames to a video.

Outputs are products, not caches, but they are skipped the same way: each output has a sidecar
``.<name>.json`` holding the key of what made it (the faces' cache keys, the parameters and the engine); a
current output is not made again unless forced.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Iterator, Sequence, TypeVar

import numpy as np
import torch

from thead.io import VideoWriter
from thead.progress import ProgressFn
from thead.runtime import phase

T = TypeVar("T")


@dataclass(frozen=True)
class RenderOptions:
    """How outputs are rendered and written."""

    paste_back: bool = False  # paste the crop result back into the source's full frame
    crf: int = 18
    device: str | None = None
    batch_size: int | None = None  # frames per render call; None: CPU_BATCH_SIZE or CUDA_BATCH_SIZE by device
    symmetry: bool = True  # fill what the source turned away from its mirror image (MeshEngine(symmetry=...))
    engine: str = "mesh"  # "mesh" (weight-free) or "neural" (a trained NeuralGenerator over the mesh render)
    weights: str | None = None  # the neural engine's weights: a registered name or a .safetensors path
    half: bool = True  # the neural network under float16 autocast on CUDA (no effect on the CPU)


VIDEO_OUTPUT_SUFFIXES = {".mp4", ".mov", ".mkv"}
IMAGE_OUTPUT_SUFFIXES = {".png", ".jpg", ".jpeg"}


def output_file(out_file: Path | None, out_dir: Path, name: str, still: bool, input_path: Path) -> Path:
    """Where a rendering job writes: ``out_file`` when the user named one (``-o out.mp4``; its kind must fit, a
    picture for a still result, a video otherwise), else ``out_dir/<name>.png|mp4``. Raises ``InputError``."""
    from thead.errors import InputError

    if out_file is None:
        return out_dir / f"{name}{'.png' if still else '.mp4'}"
    wanted = IMAGE_OUTPUT_SUFFIXES if still else VIDEO_OUTPUT_SUFFIXES
    if out_file.suffix.lower() not in wanted:
        kind = "a picture (.png, .jpg)" if still else "a video (.mp4, .mov, .mkv)"
        raise InputError(input_path, f"the result is {kind}, not {out_file.suffix} as -o {out_file} asks")
    return out_file


# Frames per render call by default. On CUDA, larger batches pay: `thead reenact` with caches present on an H100
# (bench/bench_devices.py) gave 41.6 output frames/s at 16, 54.5 at 64 and 61.7 at 128; 64 keeps a 512 px canvas
# well inside a small GPU's memory. On the CPU, 16 (larger batches were no faster on 2 cores).
CPU_BATCH_SIZE = 16
CUDA_BATCH_SIZE = 64


ENGINES = ("mesh", "neural")


def _batch_size(options: RenderOptions) -> int:
    from thead.device import default_device

    if options.batch_size is not None:
        return options.batch_size
    return CUDA_BATCH_SIZE if default_device(options.device).type == "cuda" else CPU_BATCH_SIZE


_NEURAL_CACHE: dict[tuple, tuple] = {}


def load_weights(options: RenderOptions) -> tuple:
    """(eval-mode NeuralGenerator on the options' device, its sha256) for ``options.weights``, loaded once per
    process for a given file state (``thead.engines.neural.store.load_neural``: checks the sha256 and config).

    Raises
    ------
    thead.errors.MissingWeightsError
        No ``--weights`` given, or ``load_neural``'s one-line refusal (missing file, sha256 mismatch, bad config).
    """
    from thead.device import default_device
    from thead.errors import MissingWeightsError

    if not options.weights:
        raise MissingWeightsError("--engine neural needs --weights NAME|PATH: train them with `thead train neural "
                                  "...` (`thead weights` lists the trained models)")
    from thead.engines.neural.store import load_neural, resolve_neural

    device = default_device(options.device)
    # The file a name or path stands for now, and its state: a model retrained under the same name (a new file,
    # a new registered sha256) is loaded again, never served from the cache.
    path, registered, _ = resolve_neural(options.weights)
    try:
        st = path.stat()
        state = (str(path.resolve()), st.st_size, st.st_mtime_ns, registered)
    except OSError:
        state = None
    cache_key = (options.weights, str(device), state)
    if cache_key not in _NEURAL_CACHE:
        if len(_NEURAL_CACHE) > 4:
            _NEURAL_CACHE.clear()
        _NEURAL_CACHE[cache_key] = load_neural(options.weights, device)
    return _NEURAL_CACHE[cache_key]


def mesh_config(options: RenderOptions, neural_base: bool = False):
    """The ``MeshConfig`` ``options`` select (symmetry fill): the mesh engine's, or with ``neural_base`` the one a
    ``NeuralEngine`` renders its base with (the head turned as asked: ``BASE_TURN_GAIN``)."""
    from thead.engines.mesh import MeshConfig

    if not neural_base:
        return MeshConfig(symmetry=options.symmetry)
    from thead.engines.neural.engine import BASE_TURN_GAIN

    return MeshConfig(symmetry=options.symmetry, turn_gain=BASE_TURN_GAIN)


def make_engine(options: RenderOptions):
    """The engine ``options`` select: ``MeshEngine`` or, for ``engine="neural"``, ``NeuralEngine`` with the
    weights ``options.weights`` (``load_weights``), with the options' device, batch size (default by device),
    symmetry fill and precision."""
    if options.engine not in ENGINES:
        raise ValueError(f"engine must be one of {ENGINES}, got {options.engine!r}")
    if options.engine == "neural":
        from thead.engines.neural.engine import NeuralEngine

        generator, sha = load_weights(options)
        return NeuralEngine(generator, sha, device=options.device, batch_size=_batch_size(options),
                            half=options.half, config=mesh_config(options, neural_base=True))
    from thead.engines.mesh import MeshEngine

    return MeshEngine(device=options.device, batch_size=_batch_size(options), config=mesh_config(options))


def neural_base_engine(options: RenderOptions):
    """The ``MeshEngine`` a ``NeuralEngine`` of ``options`` renders its base with (device, batch size,
    ``mesh_config(options, neural_base=True)``): training renders its bases with it."""
    from thead.engines.mesh import MeshEngine

    return MeshEngine(device=options.device, batch_size=_batch_size(options),
                      config=mesh_config(options, neural_base=True))


def engine_key(options: RenderOptions) -> str:
    """Digest of the engine settings ``options`` select (``MeshConfig.digest()``; for the neural engine also its
    weights' sha256, network config digest and precision, as ``NeuralEngine.key``): part of every output's key,
    so outputs made by other settings, weights or an older engine are redone."""
    if options.engine != "neural":
        return mesh_config(options).digest()
    from thead.engines.neural.engine import neural_key

    generator, sha = load_weights(options)
    return neural_key(sha, generator.config.digest(), mesh_config(options, neural_base=True).digest(), options.half)


def output_key(*parts: object) -> str:
    """Key of an output: a hash of what made it (plain values as they are, anything else by its repr)."""
    blob = json.dumps([p if isinstance(p, (str, int, float, bool, type(None))) else repr(p) for p in parts])
    return hashlib.blake2b(blob.encode(), digest_size=16).hexdigest()


def _sidecar(path: Path) -> Path:
    return path.with_name(f".{path.name}.json")


def output_is_current(path: Path, key: str) -> bool:
    """True when ``path`` exists and its sidecar records ``key``."""
    try:
        return path.is_file() and json.loads(_sidecar(path).read_text())["key"] == key
    except (OSError, ValueError, KeyError):
        return False


def write_sidecar(path: Path, record: dict) -> None:
    """Write ``record`` (with its "key") as the sidecar of output ``path``, atomically."""
    side = _sidecar(path)
    tmp = side.with_name(side.name + f".tmp-{os.getpid()}")
    tmp.write_text(json.dumps(record, indent=2, default=str))
    os.replace(tmp, side)


class Paster:
    """Pastes crop-space frames back into full-size original frames (feathered, only the changed region).

    Parameters
    ----------
    device : torch device of the blend.
    """

    def __init__(self, device: torch.device) -> None:
        self.device = device

    def __call__(self, crops: np.ndarray, originals: np.ndarray, to_crop: np.ndarray,
                 changed: np.ndarray | None = None, margin: int = 0) -> np.ndarray:
        """crops uint8 [B, S + 2 margin, S + 2 margin, 3] (the crop and ``margin`` pixels around it,
        ``EngineOutput.margin``) pasted into originals uint8 [B or 1, H, W, 3] by affines to_crop [B or 1, 2, 3]
        (original -> crop pixels); changed: optional [B, S', S'] weights in [0, 1] (the engine's changed region).
        Returns uint8 [B, H, W, 3]."""
        from thead.render import frames_to_tensor, paste_back, tensor_to_frames

        c = frames_to_tensor(crops, self.device)
        b = c.shape[0]
        frames = frames_to_tensor(originals, self.device)
        maps = np.array(to_crop, np.float32).reshape(-1, 2, 3)
        maps[:, :, 2] += margin  # original -> rendered pixels (the crop starts ``margin`` pixels in)
        maps = torch.as_tensor(maps, device=self.device)
        mask = None if changed is None else torch.as_tensor(changed, device=self.device)[:, None].float()
        with phase("paste"):
            out = paste_back(c, frames.expand(b, -1, -1, -1), maps.expand(b, -1, -1), crop_mask=mask)
            return tensor_to_frames(out)


def timed(batches: Iterable[T], name: str) -> Iterator[T]:
    """``batches`` with the making of each item timed as phase ``name`` (``thead.runtime.phase``; the phases
    nested in it, e.g. waiting for decoded frames, count for themselves)."""
    it = iter(batches)
    try:
        while True:
            with phase(name):
                try:
                    item = next(it)
                except StopIteration:
                    return
            yield item
    finally:
        close = getattr(it, "close", None)
        if close is not None:  # stops what feeds it (a decode thread) when the consumer gives up early
            close()


# Frames queued to the encoder's feeder thread: up to a batch or two, and at most ~64 MB of frames.
ENCODER_QUEUE_BYTES = 64 << 20
ENCODER_QUEUE_FRAMES = 32


def encoder_queue_frames(frame_shape: Sequence[int]) -> int:
    """Frames queued to an encoder's feeder thread for frames of ``frame_shape`` (H, W, 3): up to
    ``ENCODER_QUEUE_FRAMES``, at most ``ENCODER_QUEUE_BYTES`` of them, at least 2."""
    frame_bytes = max(1, int(np.prod(frame_shape)))
    return max(2, min(ENCODER_QUEUE_FRAMES, ENCODER_QUEUE_BYTES // frame_bytes))


def write_frames(path: Path, batches: Iterable[np.ndarray], fps: float, crf: int, audio: Path | None,
                 progress: ProgressFn | None, total: int) -> int:
    """Encode batches of uint8 frames [b, H, W, 3] to ``path`` (H.264, with ``audio``'s first audio stream);
    returns the number of frames written.

    A feeder thread writes the frames into the encoder's pipe (``VideoWriter(queue_frames=...)``), so the next
    batch is rendered while the encoder takes this one."""
    done = 0
    it = iter(batches)
    first = next(it, None)
    if first is None:
        raise ValueError(f"{path}: no frames to write")
    with VideoWriter(path, fps, crf=crf, audio_from=audio, queue_frames=encoder_queue_frames(first.shape[1:])
                     ) as writer:
        for batch in itertools.chain([first], it):
            for frame in batch:
                writer.write(frame)
            done += len(batch)
            if progress:
                progress(done, total)
    return done

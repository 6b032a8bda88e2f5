"""The train-neural job: videos -> stage caches -> per-clip training arrays -> trainer -> registered weights.

Each input is preprocessed and fitted through ``thead.stages.ensure`` (cached). For each clip, K source frames
are prepared by the mesh engine (as ``thead reenact`` prepares a source, person matte included) and rendered at
every target frame's fitted parameters (self-reenactment: the mesh engine's base for ``base == "mesh"``, and the
source identity's mesh at the target for the condition maps). These arrays are made ONCE per (clip, engine key,
side, frames) and kept as ``<run folder>/clips/<item>-<key>.npz``. Then ``thead.engines.neural.train`` trains,
and the generator is saved as ``<weights folder>/neural/NAME.safetensors`` (or ``out``) and registered.
"""

from __future__ import annotations

import hashlib
import json
import time
from pathlib import Path

import numpy as np

from thead.errors import InputError
from thead.stages import FitParams, InputItem, PreprocessParams, ensure


def source_frames_for(num_frames: int, k: int) -> list[int]:
    """K source frames spread over a clip of ``num_frames`` (frame 0 first; K = 1 gives [0])."""
    k = max(1, min(int(k), num_frames))
    return sorted({int(round(x)) for x in np.linspace(0, num_frames - 1, k)}) if k > 1 else [0]


def _resize(images: np.ndarray, size: int) -> np.ndarray:
    import cv2

    if images.shape[1] == size:
        return images
    interp = cv2.INTER_AREA if images.shape[1] > size else cv2.INTER_LINEAR
    return np.stack([cv2.resize(im, (size, size), interpolation=interp) for im in images])


def clip_data(face, engine, size: int, sources: list[int], cache_dir: Path | None = None, with_base: bool = True):
    """The ``ClipData`` of a fitted video ``face`` at side ``size``: sources ``sources``, every valid frame a target.

    Parameters
    ----------
    face : ``thead.stages.Face`` of a fitted clip.
    engine : the ``MeshEngine`` that renders the bases and poses the meshes.
    size : the training side S (crops are resized to it; vertices and landmarks scaled).
    sources : the source frame numbers (K).
    cache_dir : where the arrays are kept (None: not cached).
    with_base : render the mesh engine's output (for ``base == "mesh"``); zeros otherwise.
    """
    from thead.engines.motion import TargetParams
    from thead.engines.neural.data import ClipData
    from thead.jobs.reenact import prepare_source

    valid = np.flatnonzero(np.asarray(face.valid, bool))
    if len(valid) == 0:
        raise InputError(face.path, "no frame with a fitted face to train on")
    key = hashlib.blake2b(json.dumps([face.key, engine.key, int(size), list(map(int, sources)), bool(with_base),
                                      "clip-1"]).encode(), digest_size=8).hexdigest()
    path = None if cache_dir is None else Path(cache_dir) / f"{face.item_id}-{key}.npz"
    if path is not None and path.is_file():
        cached = ClipData.load(path, key)
        if cached is not None:
            return cached
    s0 = face.crop_size
    scale = float(size) / float(s0)
    crops = np.stack([c for t, c in enumerate(face.crops()) if t < face.num_frames])
    targets = _resize(crops[valid], size)
    src_imgs, src_verts, tgt_verts, bases = [], [], [], []
    params = TargetParams.from_fit(face.fit, [int(t) for t in valid])
    for k in sources:
        prepared = prepare_source(engine, face, int(k))
        src_imgs.append(_resize(crops[k:k + 1], size)[0])
        src_verts.append(engine.target_vertices(prepared, TargetParams.from_fit(face.fit, [int(k)]))[0].cpu().numpy())
        tgt_verts.append(engine.target_vertices(prepared, params).cpu().numpy())
        if with_base:
            bases.append(_resize(engine.render(prepared, params), size))
        else:
            bases.append(np.zeros((len(valid), size, size, 3), np.uint8))
    clip = ClipData(name=str(face.path), sources=np.stack(src_imgs),
                    source_vertices=(np.stack(src_verts) * scale).astype(np.float32),
                    source_frames=np.asarray(sources, np.int64), targets=targets,
                    target_landmarks=(np.asarray(face.crop_landmarks, np.float32)[valid] * scale),
                    target_vertices=(np.stack(tgt_verts) * scale).astype(np.float32), bases=np.stack(bases),
                    frames=valid.astype(np.int64))
    if path is not None:
        clip.save(path, key)
    return clip


def train_fraction_mask(frames: np.ndarray, num_frames: int, fraction: float) -> np.ndarray:
    """[T] bool: the targets among the first ``fraction`` of the clip's ``num_frames`` frames."""
    return np.asarray(frames) < int(round(float(fraction) * num_frames))


def train_neural_model(items: list[InputItem], workdir: Path, name: str, pre_params: PreprocessParams,
                       fit_params: FitParams, config, options, run_dir: Path | None = None,
                       personalise: bool = False, k_shot: int = 2, train_fraction: float = 1.0,
                       init: str | Path | None = None, out: Path | None = None, report=None,
                       render_options=None) -> dict:
    """Train a neural engine on ``items`` and save + register it as ``name``.

    Parameters
    ----------
    items : the clips (videos). ``personalise``: exactly one, source frame 0 only (K = 1).
    workdir : the stage caches' work directory.
    name : the model's registry name (letters, digits, ``._-``).
    pre_params, fit_params : the stages' parameters.
    config : ``NeuralConfig``. options : ``TrainOptions``.
    run_dir : the training folder (checkpoint, log, samples, clip arrays); default ``workdir/neural/NAME``.
    k_shot : source frames per clip in dataset mode (spread over the clip).
    train_fraction : targets only from the first ``train_fraction`` of each clip's frames.
    init : a trained model (registered name or file) to start from.
    out : save the weights here instead of ``<weights folder>/neural/NAME.safetensors``.
    report : called as (step, total, losses) after every step.
    render_options : ``thead.jobs.render.RenderOptions`` of the mesh engine (default settings).

    Returns
    -------
    {"name", "path", "sha256", "steps", "losses", "seconds", "it_s", "clips", "config", "resumed_from",
     "perceptual"}.
    """
    from thead.engines.neural import NeuralGenerator, load_neural, neural_dir, register_neural, save_neural
    from thead.engines.neural.store import NAME_PATTERN
    from thead.engines.neural.train import train_neural
    from thead.jobs.render import RenderOptions, neural_base_engine

    if not NAME_PATTERN.match(name):
        raise InputError(name, "a model name is letters, digits, '.', '_' and '-' (at most 64)")
    if personalise and len(items) != 1:
        raise InputError(None, f"--personalise takes exactly one clip, got {len(items)}")
    if not 0.0 < train_fraction <= 1.0:
        raise InputError(None, f"--train-fraction must be in (0, 1], got {train_fraction}")
    t0 = time.perf_counter()
    run_dir = Path(run_dir) if run_dir is not None else Path(workdir) / "neural" / name
    engine = neural_base_engine(render_options or RenderOptions())
    clips = []
    for item in items:
        face = ensure(item, workdir, pre_params, fit_params)
        if not face.is_video or face.num_frames < 2:
            raise InputError(item.path, "a training clip must be a video of at least 2 frames")
        sources = [0] if personalise else source_frames_for(face.num_frames, k_shot)
        clip = clip_data(face, engine, config.size, sources, run_dir / "clips", with_base=config.base == "mesh")
        keep = train_fraction_mask(clip.frames, face.num_frames, train_fraction)
        if keep.any():
            clips.append(clip.select_targets(keep))
    if not clips:
        raise InputError(workdir, "no training frames")
    init_model = None
    if init is not None:
        init_model, _ = load_neural(init)
        if init_model.config != config:
            raise InputError(str(init), f"--init model's config ({init_model.config.digest()}) differs from the one "
                             f"asked for ({config.digest()}); pass the same --preset/--size/--base")
    prep_s = time.perf_counter() - t0
    result = train_neural(config, clips, run_dir, options, init=init_model, report=report)
    model: NeuralGenerator = result["model"]
    path = Path(out) if out is not None else neural_dir() / f"{name}.safetensors"
    info = {"steps": result["steps"], "clips": [c.name for c in clips], "personalise": personalise,
            "train_fraction": train_fraction, "losses": result["losses"], "init": str(init) if init else None}
    sha = save_neural(model.cpu(), path, info)
    register_neural(name, path, sha, {"config_digest": config.digest(), "steps": result["steps"],
                                       "clips": [c.name for c in clips]})
    return {"name": name, "path": str(path), "sha256": sha, "steps": result["steps"], "losses": result["losses"],
            "seconds": round(time.perf_counter() - t0, 2), "prepare_seconds": round(prep_s, 2),
            "it_s": round(result["it_s"], 4), "clips": [c.name for c in clips], "config": config.to_dict(),
            "resumed_from": result["resumed_from"], "perceptual": result["perceptual"], "run_dir": str(run_dir)}


__all__ = ["clip_data", "source_frames_for", "train_fraction_mask", "train_neural_model"]

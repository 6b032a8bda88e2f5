"""The neural engine's trainer: self-reenactment pairs, resumable, single process or DistributedDataParallel.

``train_neural(config, clips, out_dir, options)`` trains a :class:`NeuralGenerator` (and a multi-scale patch
discriminator when ``options.adversarial``) on the pairs of ``clips`` for ``options.steps`` optimiser steps.
Everything it writes is in ``out_dir``: ``checkpoint.pt`` (generator, discriminator, optimisers, grad scaler,
step, RNG states; written atomically every ``checkpoint_every`` steps and at the end), ``losses.jsonl`` (one line
per step), ``samples/step_NNNNNN.png`` (source | base | output | target, every ``sample_every`` steps) and, with
``options.plots``, ``losses.png``. Rerunning with the same ``out_dir`` (e.g. after kill -9) continues from the
checkpoint's step; the log is cut back to it.

Launched by ``torchrun --nproc_per_node N`` (environment RANK / WORLD_SIZE / LOCAL_RANK), each process trains on
its DistributedSampler share of the pairs under DistributedDataParallel (gloo on CPU, nccl on CUDA); rank 0 writes.
AMP (float16 autocast + GradScaler) runs on CUDA only.
"""

from __future__ import annotations

import json
import logging
import math
import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import torch
import torch.distributed as dist
from torch.utils.data import DataLoader, DistributedSampler

from thead.engines.neural.config import NeuralConfig
from thead.engines.neural.data import ClipData, PairDataset, flip_mask, mirror_pairs
from thead.engines.neural.losses import (feature_matching, gradient_l1, hinge_d_loss, hinge_g_loss, load_vgg19,
                                         ms_ssim_loss, perceptual_loss, weighted_l1)
from thead.engines.neural.model import NeuralGenerator, PatchDiscriminator
from thead.errors import TheadError

log = logging.getLogger("thead.neural")
CHECKPOINT = "checkpoint.pt"
LOSS_LOG = "losses.jsonl"
ReportFn = Callable[[int, int, dict], None]


@dataclass(frozen=True)
class TrainOptions:
    """Settings of one training run (not part of the model).

    steps: optimiser steps in all (a resumed run goes on to this many). batch_size: pairs per step and process.
    lr: Adam learning rate of the generator (the discriminator's is the same). adversarial: train with the
    patch discriminator (hinge loss + feature matching). l1, ssim, gradient (L1 of the image gradients: against
    a soft, smeared output), perceptual, gan, feature_matching: loss weights
    (perceptual only when the vgg19 weights are on disk). face_weight, mouth_weight: extra L1 weight in the face and
    mouth regions. flip: probability that a training pair is replaced by its mirror image (source, target, base,
    masks flipped left-right, condition maps mirrored; drawn per item from (seed, process, step), so reproducible
    and the same after a resume). ema: decay of an exponential moving average of the generator's weights, the
    model returned and saved (0: the last step's weights); the decay used at step n is min(ema, (1 + n) / (10 + n)),
    so a short run is not dominated by its random start. Defaults (personalising d12 at 128 px, 600 steps of 4
    pairs, on the CPU): flip 0.5 keeps the face intact on held-out frames turned and tilted beyond the training
    part (without it the network smeared and stretched them) for -0.25 dB PSNR, which the average (ema 0.99,
    +0.25 dB) wins back; mouth_weight 1 (was 4; 8 was worse still) held the held-out mouth LMD at 1.07 where 4 let
    it drift to 1.17 (mesh 1.12) over the longer run; the gradient term did not help. checkpoint_every,
    sample_every: steps between checkpoints / sample grids (0: only at the end).
    num_workers: DataLoader workers. seed: RNG seed. device: None = thead.device.default_device. amp: float16
    autocast + GradScaler (CUDA only; ignored on CPU). plots: write losses.png at the end.
    """

    steps: int = 2000
    batch_size: int = 4
    lr: float = 2e-4
    adversarial: bool = True
    l1: float = 1.0
    ssim: float = 0.5
    gradient: float = 0.0
    perceptual: float = 0.2
    gan: float = 0.02
    feature_matching: float = 0.5
    face_weight: float = 2.0
    mouth_weight: float = 1.0
    flip: float = 0.5
    ema: float = 0.99
    checkpoint_every: int = 200
    sample_every: int = 500
    num_workers: int = 0
    seed: int = 0
    device: str | None = None
    amp: bool = True
    plots: bool = False


def _dist_env() -> tuple[int, int, int]:
    """(rank, world size, local rank) from torchrun's environment ((0, 1, 0) when not launched by it)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    return rank, world, int(os.environ.get("LOCAL_RANK", str(rank)))


def _atomic_save(obj, path: Path) -> None:
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    torch.save(obj, tmp)
    os.replace(tmp, path)


def _unwrap(m: torch.nn.Module) -> torch.nn.Module:
    return m.module if hasattr(m, "module") else m


def _cut_log(path: Path, step: int) -> None:
    """Keep only the log lines of steps <= ``step`` (a resumed run rewrites what came after its checkpoint)."""
    if not path.is_file():
        return
    keep = []
    for line in path.read_text(encoding="utf8").splitlines():
        try:
            if json.loads(line)["step"] <= step:
                keep.append(line)
        except (ValueError, KeyError, TypeError):
            continue
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    tmp.write_text("".join(k + "\n" for k in keep), encoding="utf8")
    os.replace(tmp, path)


def _batches(n: int, batch: int, epoch: int, seed: int, rank: int, world: int) -> list[list[int]]:
    """This process's batches of epoch ``epoch``: DistributedSampler's shuffled share, cut into ``batch``s."""
    sampler = DistributedSampler(range(n), num_replicas=world, rank=rank, shuffle=True, seed=seed, drop_last=False)
    sampler.set_epoch(epoch)
    idx = list(iter(sampler))
    return [idx[i:i + batch] for i in range(0, len(idx), batch)]


def _split(outs: list[list[torch.Tensor]]) -> tuple[list[list[torch.Tensor]], list[list[torch.Tensor]]]:
    """Split discriminator outputs of a [fake; real] batch into (fake, real)."""
    return ([[f.chunk(2)[0] for f in s] for s in outs], [[f.chunk(2)[1] for f in s] for s in outs])


def save_grid(path: Path, batch: dict[str, torch.Tensor], output: torch.Tensor, rows: int = 4) -> None:
    """Write a PNG grid: one row per pair (at most ``rows``), columns source | base | output | target."""
    from PIL import Image

    n = min(rows, output.shape[0])
    cols = [batch["source"][:n], batch["base"][:n], output[:n].detach().float(), batch["target"][:n]]
    grid = torch.cat([torch.cat(list(c.cpu()), dim=1) for c in cols], dim=2)  # [3, n*S, 4*S]
    img = (grid.clamp(0, 1).permute(1, 2, 0).numpy() * 255 + 0.5).astype(np.uint8)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(img).save(path)


def plot_losses(log_path: Path, png: Path) -> None:
    """Loss curves of ``losses.jsonl`` (every numeric field but step/time/it_s) as a PNG (matplotlib)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [json.loads(x) for x in log_path.read_text(encoding="utf8").splitlines() if x.strip()]
    if not rows:
        return
    keys = [k for k in rows[-1] if k not in ("step", "time", "it_s")]
    fig, ax = plt.subplots(figsize=(8, 4.5))
    steps = [r["step"] for r in rows]
    for k in keys:
        ys = [r.get(k, float("nan")) for r in rows]
        w = max(1, len(ys) // 50)
        smooth = np.convolve(np.nan_to_num(ys), np.ones(w) / w, mode="valid")
        ax.plot(steps[w - 1:], smooth, label=k)
    ax.set_xlabel("step")
    ax.set_ylabel("loss")
    ax.set_yscale("log")
    ax.legend()
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(png, dpi=100)
    plt.close(fig)


def train_neural(config: NeuralConfig, clips: list[ClipData], out_dir: Path, options: TrainOptions = TrainOptions(),
                 init: NeuralGenerator | None = None, report: ReportFn | None = None) -> dict:
    """Train (or resume training) a generator on the pairs of ``clips``.

    Parameters
    ----------
    config : the architecture (``config.size`` must equal the clips' side).
    clips : training clips (``ClipData``; ``bases`` used when ``config.base == "mesh"``).
    out_dir : the run's folder (checkpoint, loss log, samples); a checkpoint there is resumed.
    options : the run's settings.
    init : a trained generator of the same config to start from (ignored when resuming a checkpoint).
    report : called after each step as (step, total steps, losses) on rank 0.

    Returns
    -------
    {"model": the generator (unwrapped, eval mode), "steps", "losses" (last step's), "seconds" (this run),
     "it_s", "resumed_from", "perceptual" (whether the VGG loss ran)}.
    """
    from thead.device import default_device

    rank, world, local = _dist_env()
    distributed = world > 1
    device = default_device(options.device)
    if distributed and device.type == "cuda":
        device = torch.device("cuda", local)
    if distributed and not dist.is_initialized():
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo", rank=rank, world_size=world)
    out_dir = Path(out_dir)
    if rank == 0:
        out_dir.mkdir(parents=True, exist_ok=True)
    if any(c.size != config.size for c in clips):
        raise TheadError(f"training clips are {clips[0].size} px but the model works at {config.size} px")
    dataset = PairDataset(clips, device=device)
    torch.manual_seed(options.seed + rank)
    gen = NeuralGenerator(config).to(device)
    if init is not None:
        gen.load_state_dict(_unwrap(init).state_dict())
    ema = NeuralGenerator(config).to(device).eval() if options.ema > 0 else None
    if ema is not None:
        ema.load_state_dict(gen.state_dict())
        ema.requires_grad_(False)
    disc = PatchDiscriminator(config).to(device) if options.adversarial else None
    opt_g = torch.optim.Adam(gen.parameters(), lr=options.lr, betas=(0.5, 0.999))
    opt_d = torch.optim.Adam(disc.parameters(), lr=options.lr, betas=(0.5, 0.999)) if disc is not None else None
    use_amp = bool(options.amp and device.type == "cuda")
    scaler = torch.amp.GradScaler("cuda", enabled=use_amp)
    step, resumed_from = 0, None
    ckpt_path = out_dir / CHECKPOINT
    if ckpt_path.is_file():
        ckpt = torch.load(ckpt_path, map_location="cpu", weights_only=True)
        if ckpt.get("config") != config.to_dict():
            raise TheadError(f"{ckpt_path}: the checkpoint is of another model config ({ckpt.get('config')}); use "
                             "another work folder or the same settings")
        gen.load_state_dict(ckpt["generator"])
        if ema is not None:
            ema.load_state_dict(ckpt.get("ema", ckpt["generator"]))
        opt_g.load_state_dict(ckpt["opt_g"])
        if disc is not None:
            if "discriminator" not in ckpt:
                raise TheadError(f"{ckpt_path}: the checkpoint was trained without the discriminator; resume with "
                                 "--no-adversarial or use another work folder")
            disc.load_state_dict(ckpt["discriminator"])
            opt_d.load_state_dict(ckpt["opt_d"])
        if "scaler" in ckpt and use_amp:
            scaler.load_state_dict(ckpt["scaler"])
        step = resumed_from = int(ckpt["step"])
        rng = ckpt.get("rng", {})
        if f"torch{rank}" in rng:
            torch.set_rng_state(rng[f"torch{rank}"])
        if device.type == "cuda" and f"cuda{rank}" in rng:
            torch.cuda.set_rng_state(rng[f"cuda{rank}"], device)
    log_path = out_dir / LOSS_LOG
    if rank == 0:
        _cut_log(log_path, step)
    vgg = load_vgg19(device) if options.perceptual > 0 else None
    if vgg is None and options.perceptual > 0 and rank == 0:
        log.info("perceptual loss off: no vgg19 weights on disk")
    g_model, d_model = gen, disc
    if distributed:
        from torch.nn.parallel import DistributedDataParallel as DDP

        ids = [device.index] if device.type == "cuda" else None
        g_model = DDP(gen, device_ids=ids)
        d_model = DDP(disc, device_ids=ids) if disc is not None else None

    def checkpoint() -> None:
        if rank != 0:
            return
        rng = {"torch0": torch.get_rng_state()}
        if device.type == "cuda":
            rng["cuda0"] = torch.cuda.get_rng_state(device)
        state = {"config": config.to_dict(), "step": step, "generator": gen.state_dict(), "opt_g": opt_g.state_dict(),
                 **({"ema": ema.state_dict()} if ema is not None else {}),
                 "scaler": scaler.state_dict(), "rng": rng, "options": json.dumps(asdict(options))}
        if disc is not None:
            state["discriminator"] = disc.state_dict()
            state["opt_d"] = opt_d.state_dict()
        _atomic_save(state, ckpt_path)

    n_batches = math.ceil(math.ceil(len(dataset) / world) / options.batch_size)
    start, t0 = step, time.perf_counter()
    last: dict = {}
    gen.train()
    if disc is not None:
        disc.train()
    log_file = open(log_path, "a", encoding="utf8") if rank == 0 else None
    try:
        while step < options.steps:
            epoch, offset = divmod(step, n_batches)
            batches = _batches(len(dataset), options.batch_size, epoch, options.seed, rank, world)[offset:]
            batches = batches[:options.steps - step]
            loader = DataLoader(dataset, batch_sampler=batches, num_workers=options.num_workers,
                                persistent_workers=False)
            for batch in loader:
                tic = time.perf_counter()
                batch = {k: v.to(device, non_blocking=True) for k, v in batch.items()}
                batch = mirror_pairs(batch, flip_mask(len(batch["target"]), options.flip, options.seed, step + 1,
                                                      rank))
                with torch.autocast(device.type, dtype=torch.float16, enabled=use_amp):
                    out = g_model(batch["source"], batch["source_cond"], batch["target_cond"],
                                  batch["base"] if config.base == "mesh" else None)
                out32 = out.float()
                losses = {"l1": weighted_l1(out32, batch["target"], batch["face_mask"], batch["mouth_mask"],
                                            options.face_weight, options.mouth_weight),
                          "ssim": ms_ssim_loss(out32, batch["target"])}
                total = options.l1 * losses["l1"] + options.ssim * losses["ssim"]
                if options.gradient > 0:
                    losses["gradient"] = gradient_l1(out32, batch["target"])
                    total = total + options.gradient * losses["gradient"]
                if vgg is not None:
                    losses["perceptual"] = perceptual_loss(vgg, out32, batch["target"])
                    total = total + options.perceptual * losses["perceptual"]
                if d_model is not None:
                    for p in disc.parameters():
                        p.requires_grad_(False)
                    with torch.autocast(device.type, dtype=torch.float16, enabled=use_amp):
                        # the bare discriminator (not its DDP wrapper): its parameters are frozen in this pass
                        fake, real = _split(disc(torch.cat([torch.cat([out, batch["target_cond"]], 1),
                                                            torch.cat([batch["target"], batch["target_cond"]], 1)])))
                    losses["g_adv"] = hinge_g_loss([[f.float() for f in s] for s in fake])
                    losses["fm"] = feature_matching([[f.float() for f in s] for s in real],
                                                    [[f.float() for f in s] for s in fake])
                    total = total + options.gan * losses["g_adv"] + options.feature_matching * losses["fm"]
                opt_g.zero_grad(set_to_none=True)
                scaler.scale(total).backward()
                scaler.step(opt_g)
                if d_model is not None:
                    for p in disc.parameters():
                        p.requires_grad_(True)
                    with torch.autocast(device.type, dtype=torch.float16, enabled=use_amp):
                        # one forward of the DDP wrapper per backward: fake and real in one batch
                        fake, real = _split(d_model(torch.cat([
                            torch.cat([out.detach(), batch["target_cond"]], 1),
                            torch.cat([batch["target"], batch["target_cond"]], 1)])))
                    d_loss = hinge_d_loss([[f.float() for f in s] for s in real], [[f.float() for f in s] for s in fake])
                    opt_d.zero_grad(set_to_none=True)
                    scaler.scale(d_loss).backward()
                    scaler.step(opt_d)
                    losses["d"] = d_loss
                scaler.update()
                losses["total"] = total
                step += 1
                if ema is not None:
                    decay = min(options.ema, (1.0 + step) / (10.0 + step))
                    with torch.no_grad():
                        for e, p in zip(ema.state_dict().values(), gen.state_dict().values()):
                            if e.is_floating_point():
                                e.lerp_(p, 1.0 - decay)
                            else:
                                e.copy_(p)
                elapsed = time.perf_counter() - t0
                last = {k: float(v.detach()) for k, v in losses.items()}
                if rank == 0:
                    row = {"step": step, **{k: round(v, 6) for k, v in last.items()},
                           "it_s": round((step - start) / max(elapsed, 1e-9), 4),
                           "step_s": round(time.perf_counter() - tic, 4), "time": round(elapsed, 3)}
                    log_file.write(json.dumps(row) + "\n")
                    log_file.flush()
                    if report is not None:
                        report(step, options.steps, row)
                    if options.sample_every and step % options.sample_every == 0:
                        save_grid(out_dir / "samples" / f"step_{step:06d}.png", batch, out)
                if options.checkpoint_every and step % options.checkpoint_every == 0:
                    checkpoint()
        checkpoint()
        if rank == 0 and options.plots and log_path.is_file():
            plot_losses(log_path, out_dir / "losses.png")
    finally:
        if log_file is not None:
            log_file.close()
        if distributed and dist.is_initialized():
            dist.barrier()
    seconds = time.perf_counter() - t0
    gen.eval()
    return {"model": ema if ema is not None else gen, "steps": step, "losses": last, "seconds": seconds,
            "it_s": (step - start) / seconds if seconds > 0 and step > start else 0.0, "resumed_from": resumed_from,
            "perceptual": vgg is not None}


@torch.no_grad()
def evaluate_clip(model: NeuralGenerator, clip: ClipData, source: int = 0, device: str | torch.device = "cpu",
                  batch_size: int = 8) -> dict:
    """Mean L1 and PSNR (dB, images in [0, 1]) of the model's output and of the base (mesh render) against the
    targets of ``clip`` from source ``source``. Returns {"l1", "psnr", "base_l1", "base_psnr", "frames"}."""
    from thead.engines.neural.condition import condition_maps
    from thead.engines.neural.data import to_tensor

    model = model.to(device).eval()
    s = clip.size
    src = to_tensor(clip.sources[source])[None].to(device)
    src_cond = condition_maps(torch.from_numpy(clip.source_vertices[source:source + 1]).to(device), s, s)
    l1s, mses, bl1, bmse = [], [], [], []
    for i in range(0, len(clip.targets), batch_size):
        sl = slice(i, i + batch_size)
        tgt = to_tensor(clip.targets[sl]).to(device)
        base = to_tensor(clip.bases[source, sl]).to(device)
        cond = condition_maps(torch.from_numpy(clip.target_vertices[source, sl]).to(device), s, s)
        n = tgt.shape[0]
        out = model(src.expand(n, -1, -1, -1), src_cond.expand(n, -1, -1, -1), cond,
                    base if model.config.base == "mesh" else None)
        l1s.append((out - tgt).abs().flatten(1).mean(1))
        mses.append(((out - tgt) ** 2).flatten(1).mean(1))
        bl1.append((base - tgt).abs().flatten(1).mean(1))
        bmse.append(((base - tgt) ** 2).flatten(1).mean(1))
    psnr = lambda m: float((10 * torch.log10(1.0 / torch.cat(m).clamp_min(1e-10))).mean())  # noqa: E731
    return {"l1": float(torch.cat(l1s).mean()), "psnr": psnr(mses), "base_l1": float(torch.cat(bl1).mean()),
            "base_psnr": psnr(bmse), "frames": int(len(clip.targets))}


__all__ = ["CHECKPOINT", "LOSS_LOG", "TrainOptions", "evaluate_clip", "plot_losses", "save_grid", "train_neural"]

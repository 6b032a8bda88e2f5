"""`thead train`: models learned from a person's own clips (`thead train audio2motion`)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Callable, List, Optional

import typer

from thead.commands.common import DeviceOption, RenderSizeOption, number_option, stderr_console
from thead.errors import TheadError

train_app = typer.Typer(name="train", help="Train models on your own talking clips.", no_args_is_help=True,
                        add_completion=False, pretty_exceptions_enable=False)


def _video_items(args: List[Path]):
    """Items of the videos named (files or directories; a work directory's items by their cached source)."""
    from thead.io import VIDEO_SUFFIXES
    from thead.jobs.items import collect_inputs

    return collect_inputs([str(a) for a in args], set(VIDEO_SUFFIXES))


def _train_and_report(console, train: Callable[[], dict], summary: Callable[[dict], str], json_out: bool) -> None:
    """Run ``train``: a ``TheadError`` ends the command with its one line (exit 1); otherwise print
    ``summary(result)`` and, with ``json_out``, the result as one JSON line on stdout."""
    try:
        result = train()
    except TheadError as exc:
        console.print(f"[red]error[/red] {exc}")
        raise typer.Exit(1)
    console.print(summary(result))
    if json_out:
        print(json.dumps(result, default=str))


@train_app.command("audio2motion")
def audio2motion(
    videos: List[Path] = typer.Argument(..., help="Talking videos with audio (or directories of them); "
                                        "preprocessed and fitted when needed. A .txt beside a video is its "
                                        "transcript."),
    name: str = typer.Option(..., "--output", "-o", help="Name of the model (saved in the weights folder's "
                                                          "audio2motion/ and registered with its sha256)."),
    work: Path = typer.Option(Path("thead-work"), "--work", "-w", help="Work directory of the stage caches."),
    subject: str = typer.Option("", "--subject", help="One subject name for every clip (default: each clip "
                                "its own)."),
    steps: int = number_option(600, "--steps", help="Optimiser steps of the mouth network.", lo=1, hi=100000),
    pose_steps: int = number_option(400, "--pose-steps", help="Optimiser steps of the pose model.", lo=1,
                                    hi=100000),
    seed: int = number_option(0, "--seed", help="Random seed.", lo=0, hi=2**31 - 1),
    size: RenderSizeOption = 256,
    device: DeviceOption = None,
    json_out: bool = typer.Option(False, "--json", help="Print the training report as JSON on stdout."),
) -> None:
    """Learn per-person lip-sync gains, a mel-to-mouth network and a head-pose model from talking videos.

    Used by thead audio-drive --motion-model NAME (and --pose learned).
    """
    from thead.audio.train import TrainConfig
    from thead.jobs.train import train_motion_model
    from thead.stages import FitParams, PreprocessParams

    console = stderr_console()
    items, failures = _video_items(videos)
    for f in failures:
        console.print(f"[red]error[/red] {f.message}")
    if not items:
        raise typer.Exit(1)
    config = TrainConfig(steps=steps, pose_steps=pose_steps, seed=seed, device=device)
    _train_and_report(
        console, lambda: train_motion_model(items, work, name, PreprocessParams(size=size, write_crop=False),
                                            FitParams(device=device), config, subject or None),
        lambda r: f"trained {r['name']} on {len(r['clips'])} clip(s): {r['file']} (sha256 {r['sha256'][:12]}...)",
        json_out)
    raise typer.Exit(1 if failures else 0)


@train_app.command("neural")
def neural(
    inputs: Optional[List[Path]] = typer.Argument(None, help="Videos (or directories of them) to train on; "
                                                  "preprocessed and fitted when needed."),
    name: str = typer.Option(..., "--output", "-o", help="Name of the model (saved as NAME.safetensors in the "
                                                          "weights folder's neural/ and registered with its sha256)."),
    work: Path = typer.Option(Path("thead-work"), "--work", "-w", help="Work directory of the stage caches."),
    run_dir: Optional[Path] = typer.Option(None, "--workdir", help="Training folder (checkpoint, loss log, "
                                           "samples, cached renders); default WORK/neural/NAME. Rerun the same "
                                           "command to resume."),
    out: Optional[Path] = typer.Option(None, "--out", help="Write the weights here instead of the weights folder."),
    preset: str = typer.Option("base", "--preset", help="Architecture: tiny (tests), base (256 px), 512."),
    net_size: Optional[int] = typer.Option(None, "--net-size", help="Override the preset's working side (pixels)."),
    base: str = typer.Option("mesh", "--base", help="mesh: learn a residual over the mesh engine's output; "
                             "none: synthesise from the warped source only."),
    steps: int = number_option(2000, "--steps", help="Optimiser steps (in all, counting a resumed run's).", lo=1,
                               hi=10_000_000),
    batch_size: int = number_option(4, "--batch-size", help="Pairs per step (per process).", lo=1, hi=4096),
    lr: float = number_option(2e-4, "--lr", help="Adam learning rate.", lo=1e-7, hi=1.0),
    adversarial: bool = typer.Option(True, "--adversarial/--no-adversarial", help="Train with the multi-scale "
                                     "patch discriminator and feature matching."),
    flip: float = number_option(0.5, "--flip", help="Probability that a training pair is replaced "
                                "by its mirror image (pictures flipped, condition maps mirrored).", lo=0.0, hi=1.0),
    gradient_weight: float = number_option(0.0, "--gradient-weight", help="Weight of the L1 "
                                           "between image gradients (against a soft output).", lo=0.0, hi=100.0),
    ema: float = number_option(0.99, "--ema", help="Decay of the moving average of the generator's weights that is "
                               "saved (0: the last step's weights).", lo=0.0, hi=0.99999),
    mouth_weight: float = number_option(1.0, "--mouth-weight", help="Extra L1 weight in the "
                                        "mouth region.", lo=0.0, hi=1000.0),
    personalise: Optional[Path] = typer.Option(None, "--personalise", help="Personalise on this one clip (source "
                                               "frame 0, K = 1) instead of a dataset run."),
    init: Optional[str] = typer.Option(None, "--init", help="Start from this trained model (name or file)."),
    k_shot: int = number_option(2, "--k-shot", help="Source frames per clip in dataset mode.", lo=1, hi=64),
    train_fraction: float = number_option(1.0, "--train-fraction", help="Train on the first F of each clip's "
                                          "frames only.", lo=0.01, hi=1.0),
    checkpoint_every: int = number_option(200, "--checkpoint-every", help="Steps between checkpoints.", lo=1,
                                          hi=10_000_000),
    sample_every: int = number_option(500, "--sample-every", help="Steps between sample grids (0: none).", lo=0,
                                      hi=10_000_000),
    workers: int = number_option(0, "--workers", help="DataLoader worker processes.", lo=0, hi=64),
    amp: bool = typer.Option(True, "--amp/--no-amp", help="float16 autocast on CUDA (ignored on CPU)."),
    plots: bool = typer.Option(False, "--plots", help="Write a loss-curve PNG (losses.png) in the training folder."),
    seed: int = number_option(0, "--seed", help="Random seed.", lo=0, hi=2**31 - 1),
    size: RenderSizeOption = 256,
    device: DeviceOption = None,
    json_out: bool = typer.Option(False, "--json", help="Print the training report as one JSON line on stdout."),
) -> None:
    """Train the neural engine (flow-warping SPADE generator on thead's 3-D face) on self-reenactment pairs.

    Used by reenact / edit --engine neural --weights NAME. torchrun --nproc_per_node N runs it data-parallel.
    """
    from thead.jobs.train_neural import train_neural_model
    from thead.stages import FitParams, PreprocessParams

    from thead.engines.neural import NeuralConfig
    from thead.engines.neural.train import TrainOptions

    console = stderr_console()
    if not inputs and personalise is None:
        console.print("[red]error[/red] name the videos to train on (or --personalise CLIP)")
        raise typer.Exit(2)
    items, failures = _video_items(([personalise] if personalise is not None else []) + list(inputs or []))
    for f in failures:
        console.print(f"[red]error[/red] {f.message}")
    if not items or failures:
        raise typer.Exit(1)
    try:
        config = NeuralConfig.preset(preset)
        config = config.replace(base=base, **({"size": net_size} if net_size else {}))
    except ValueError as exc:
        console.print(f"[red]error[/red] {exc}")
        raise typer.Exit(2)
    if personalise is not None:
        items = items[:1]
    options = TrainOptions(steps=steps, batch_size=batch_size, lr=lr, adversarial=adversarial, flip=flip,
                           gradient=gradient_weight, mouth_weight=mouth_weight, ema=ema,
                           checkpoint_every=checkpoint_every, sample_every=sample_every, num_workers=workers,
                           seed=seed, device=device, amp=amp, plots=plots)
    last = {"t": 0.0}

    def report(step: int, total: int, row: dict) -> None:
        import time

        now = time.monotonic()
        if now - last["t"] > 5 or step == total:
            last["t"] = now
            console.print(f"step {step}/{total}  loss {row.get('total', float('nan')):.4f}  "
                          f"l1 {row.get('l1', float('nan')):.4f}  {row.get('it_s', 0):.2f} it/s")

    _train_and_report(
        console, lambda: train_neural_model(items, work, name, PreprocessParams(size=size, write_crop=False),
                                            FitParams(device=device), config, options, run_dir=run_dir,
                                            personalise=personalise is not None, k_shot=k_shot,
                                            train_fraction=train_fraction, init=init, out=out, report=report),
        lambda r: f"trained {r['name']}: {r['steps']} steps, {r['path']} (sha256 {r['sha256'][:12]}...)",
        json_out)

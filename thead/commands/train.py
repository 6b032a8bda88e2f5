"""`thead train`: models learned from a person's own clips (`thead train audio2motion`)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import List

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
    try:
        result = train_motion_model(items, work, name, PreprocessParams(size=size, write_crop=False),
                                    FitParams(device=device), config, subject or None)
    except TheadError as exc:
        console.print(f"[red]error[/red] {exc}")
        raise typer.Exit(1)
    console.print(f"trained {result['name']} on {len(result['clips'])} clip(s): {result['file']} "
                  f"(sha256 {result['sha256'][:12]}...)")
    if json_out:
        print(json.dumps(result, default=str))
    raise typer.Exit(1 if failures else 0)

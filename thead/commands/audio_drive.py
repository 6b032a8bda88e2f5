"""`thead audio-drive`: a source face speaks an audio track (lip sync, blinks, head motion, audio muxed)."""

from __future__ import annotations

from enum import Enum
from pathlib import Path
from typing import List, Optional

import typer

from thead.commands.common import (EngineName, EngineOption, HalfOption, WeightsOption, check_engine,
                                  BatchSizeOption, DeviceOption, ForceOutputsOption, JsonOutputsOption,
                                  OutputCrfOption, RenderSizeOption, SymmetryOption, finish, number_option, run_batch,
                                  stderr_console)
from thead.errors import InputError
from thead.jobs.audio_drive import AUDIO_SUFFIXES, AudioDriveParams, AudioPair, audio_drive_pair, audio_items
from thead.jobs.items import InputItem, ItemResult, collect_inputs
from thead.jobs.pairs import ManifestRow, read_pairs_csv, write_manifest
from thead.jobs.render import RenderOptions
from thead.stages import INPUT_SUFFIXES, FitParams, PreprocessParams


class Pose(str, Enum):
    still = "still"
    style = "style"
    copy = "copy"
    learned = "learned"


class Mouth(str, Enum):
    synth = "synth"


def keyframes(text: Optional[str], option: str) -> tuple[float, ...]:
    """"0,10,-5" -> (0.0, 10.0, -5.0) degrees; a usage error for anything else."""
    if not text:
        return ()
    try:
        values = tuple(float(v) for v in text.replace(" ", "").split(",") if v)
    except ValueError as exc:
        raise typer.BadParameter(f"{option}: expected comma-separated degrees, e.g. 0,10,-5") from exc
    if not values or any(not (-90.0 <= v <= 90.0) for v in values):
        raise typer.BadParameter(f"{option}: expected finite degrees within -90..90")
    return values


def _split_inputs(args: List[Path]) -> tuple[list[Path], list[Path]]:
    """SOURCE... AUDIO...: the leading arguments that are faces (pictures, videos, directories) are sources, the
    rest audio. A video among the audio arguments is an audio file (its track is used)."""
    sources: list[Path] = []
    audios: list[Path] = []
    for arg in args:
        is_audio = arg.suffix.lower() in AUDIO_SUFFIXES - INPUT_SUFFIXES
        if audios or (is_audio and sources):
            audios.append(arg)
        elif is_audio:
            raise typer.BadParameter(f"{arg}: give the SOURCE face(s) before the AUDIO file(s)")
        else:
            sources.append(arg)
    if sources and not audios and len(sources) > 1:  # e.g. photo.png clip.mp4: the last is the audio
        audios = [sources.pop()]
    return sources, audios


def _audio_files(paths: list[Path]) -> tuple[list[Path], list[ItemResult]]:
    found: list[Path] = []
    failures: list[ItemResult] = []
    for path in paths:
        if path.is_dir():
            files = sorted(p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in AUDIO_SUFFIXES)
            if not files:
                failures.append(ItemResult(str(path), "", "failed", message=f"{path}: no audio files in directory"))
            found.extend(files)
        elif path.is_file():
            found.append(path)
        else:
            failures.append(ItemResult(str(path), "", "failed", message=f"{path}: file not found"))
    return found, failures


def audio_drive(
    inputs: Optional[List[Path]] = typer.Argument(None, help="SOURCE... AUDIO...: source photos or videos (or "
                                                  "directories), then audio files (wav, mp3, m4a, flac, or a video "
                                                  "whose audio track is used)."),
    pairs: Optional[Path] = typer.Option(None, "--pairs", help="CSV of source,audio rows instead of SOURCE AUDIO."),
    output: Path = typer.Option(Path("thead-out"), "--output", "-o", help="Folder for the videos and manifest.csv."),
    work: Path = typer.Option(Path("thead-work"), "--work", "-w", help="Work directory of the stage caches."),
    text: Optional[str] = typer.Option(None, "--text", help="Transcript of the audio (aligned for exact phoneme "
                                       "timing)."),
    transcript: Optional[Path] = typer.Option(None, "--transcript", help="Transcript file (default: a .txt beside "
                                              "the audio)."),
    mouth_scale: float = number_option(1.0, "--mouth-scale", help="Multiply the mouth's motion.", lo=0, hi=3),
    head_scale: float = number_option(1.0, "--head-scale", help="Multiply the generated head motion.", lo=0, hi=3),
    still: bool = typer.Option(False, "--still", help="No head motion (mouth and blinks kept)."),
    pose: Optional[Pose] = typer.Option(None, "--pose", help="Head motion: still, style (the reference's or the "
                                        "built-in talking style), copy (the reference's motion), learned (the "
                                        "--motion-model's). Default: style (a source video's own; learned "
                                        "with a motion model)."),
    reference: Optional[Path] = typer.Option(None, "--reference", help="Talking video whose head motion is copied "
                                             "or whose style is used."),
    blink_rate: Optional[float] = number_option(None, "--blink-rate", help="Blinks per minute (default: a source "
                                                "video's own rate, else 17).", lo=0, hi=120),
    seed: int = number_option(0, "--seed", help="Random seed (same seed, same output).", lo=0, hi=2**31 - 1),
    yaw: Optional[str] = typer.Option(None, "--yaw", help="Yaw keyframes in degrees spread over the clip, e.g. "
                                      "0,15,-15."),
    pitch: Optional[str] = typer.Option(None, "--pitch", help="Pitch keyframes in degrees."),
    roll: Optional[str] = typer.Option(None, "--roll", help="Roll keyframes in degrees."),
    motion_model: Optional[str] = typer.Option(None, "--motion-model", help="A model trained by thead train "
                                               "audio2motion (its name) or a model file."),
    export_motion: Optional[Path] = typer.Option(None, "--export-motion", help="Also write the motion as a "
                                                 ".safetensors file (a folder: one per output)."),
    source_frame: int = number_option(0, help="Frame of a source video to animate (0 = first).", lo=0),
    fps: Optional[float] = number_option(None, "--fps", help="Output frame rate (default: a source video's, else "
                                         "25).", lo=1, hi=120),
    mouth: Mouth = typer.Option(Mouth.synth, help="Inner mouth: synthesised cavity and teeth."),
    paste_back: bool = typer.Option(False, "--paste-back", help="Paste the result into the source's full frame."),
    symmetry: SymmetryOption = True,
    engine: EngineOption = EngineName.mesh,
    weights: WeightsOption = None,
    half: HalfOption = True,
    size: RenderSizeOption = 256,
    crf: OutputCrfOption = 18,
    device: DeviceOption = None,
    batch_size: BatchSizeOption = None,
    force: ForceOutputsOption = False,
    json_lines: JsonOutputsOption = False,
) -> None:
    """Make each source face speak each audio file (every source x every audio, or --pairs).

    Writes OUTPUT/<source>__<audio>.mp4, exactly as long as the audio and with it muxed, and OUTPUT/manifest.csv
    (read by thead evaluate --pairs).
    """
    if pairs is not None:
        try:
            rows = read_pairs_csv(pairs)
        except InputError as exc:
            stderr_console().print(f"[red]error[/red] {exc}")
            raise typer.Exit(1)
        src_items, failures = collect_inputs(list(dict.fromkeys(str(s) for s, _ in rows)), INPUT_SUFFIXES)
        audio_paths, f2 = _audio_files(list(dict.fromkeys(a for _, a in rows)))
        by_src = {i.path: i for i in src_items}
        ids = dict(audio_items(audio_paths))
        jobs = [AudioPair(by_src[s], a, ids[a]) for s, a in rows if s in by_src and a in ids]
    else:
        sources, audios = _split_inputs(list(inputs or []))
        if not sources or not audios:
            raise typer.BadParameter("give SOURCE... AUDIO..., or --pairs CSV")
        src_items, failures = collect_inputs([str(s) for s in sources], INPUT_SUFFIXES)
        audio_paths, f2 = _audio_files(audios)
        jobs = [AudioPair(s, a, i) for s in src_items for a, i in audio_items(audio_paths)]
    failures = list({r.message: r for r in failures + f2}.values())
    if reference is not None and pose is None:
        pose = Pose.style
    params = AudioDriveParams(mouth_scale=mouth_scale, head_scale=head_scale, still=still,
                              pose=pose.value if pose else None, blink_rate=blink_rate, seed=seed,
                              yaw=keyframes(yaw, "--yaw"), pitch=keyframes(pitch, "--pitch"),
                              roll=keyframes(roll, "--roll"), text=text,
                              transcript=str(transcript) if transcript else None, source_frame=source_frame,
                              fps=fps, mouth=mouth.value, motion_model=motion_model,
                              reference=str(reference) if reference else None)
    pre_params = PreprocessParams(size=size, write_crop=False)  # crops are cut from the originals
    options = RenderOptions(paste_back=paste_back, crf=crf, device=device, batch_size=batch_size,
                            symmetry=symmetry, engine=engine.value,
                            weights=weights, half=half)
    check_engine(options)  # missing or refused weights: one line, exit 1, before any work
    if export_motion is not None and export_motion.suffix == ".safetensors" and len(jobs) > 1:
        raise typer.BadParameter("--export-motion FILE.safetensors takes one output; give a folder for several")
    by_name = {job.name: job for job in jobs}
    results = run_batch("audio-drive", [InputItem(j.source.path, j.name) for j in jobs],
                        lambda item, report: audio_drive_pair(by_name[item.item_id], work, output, pre_params,
                                                              FitParams(device=device), params, options, force,
                                                              export_motion, report),
                        failures, json_lines)
    rows_out = [ManifestRow(str(Path(r.output).resolve()) if r.output else "",
                            str(by_name[r.item].source.path.resolve()), str(by_name[r.item].audio.resolve()),
                            "audio", r.status, r.message) for r in results if r.item in by_name]
    if rows_out:
        write_manifest(output / "manifest.csv", rows_out)
    finish("thead audio-drive", results)

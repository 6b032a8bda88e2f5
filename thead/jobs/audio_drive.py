"""The audio-drive job: a source face speaks an audio track (mouth, blinks, head motion; the audio muxed in).

The source becomes a ``Face`` record (``thead.stages.ensure``: preprocess and fit, cached); the motion comes from
``thead.audio.audio_motion`` (phonemes or the acoustic path, blinks, head motion), and the frames are rendered by
the same engine as ``thead reenact`` with its synthesised inner mouth (the audio has no driver mouth).
"""

from __future__ import annotations

import hashlib
from dataclasses import asdict, dataclass, replace
from pathlib import Path

from thead.errors import InputError
from thead.jobs.reenact import prepare_source, source_frame
from thead.jobs.render import (Paster, RenderOptions, engine_key, make_engine, output_is_current, output_key,
                               write_frames, write_sidecar)
from thead.progress import ProgressFn
from thead.stages import FitParams, InputItem, ItemResult, PreprocessParams, ensure
from thead.stages.store import item_id_for

#: Suffixes of audio inputs collected from directories (a file of any suffix ffmpeg reads is taken when named).
AUDIO_SUFFIXES = {".wav", ".mp3", ".m4a", ".flac", ".ogg", ".opus", ".aac", ".mp4", ".mov", ".mkv", ".webm"}


@dataclass(frozen=True)
class AudioPair:
    """One (source, audio) job: the source item, the audio file and the audio's id in output names."""

    source: InputItem
    audio: Path
    audio_id: str

    @property
    def name(self) -> str:
        return f"{self.source.item_id}__{self.audio_id}"


def audio_items(paths: list[Path]) -> list[tuple[Path, str]]:
    """(path, id) of audio files: the id is the file's stem, with a short hash of its path when two collide."""
    out: list[tuple[Path, str]] = []
    used: dict[str, Path] = {}
    for path in paths:
        resolved = path.resolve()
        if any(p.resolve() == resolved for p, _ in out):
            continue
        audio_id = item_id_for(path, None)
        if audio_id in used and used[audio_id] != resolved:
            audio_id = f"{audio_id}-{hashlib.blake2b(str(resolved).encode(), digest_size=3).hexdigest()}"
        used[audio_id] = resolved
        out.append((path, audio_id))
    return out


def file_digest(path: Path) -> str:
    """blake2b digest of a file's bytes (the audio's content, part of the output key)."""
    h = hashlib.blake2b(digest_size=16)
    try:
        with open(path, "rb") as fh:
            for chunk in iter(lambda: fh.read(1 << 20), b""):
                h.update(chunk)
    except OSError as exc:
        raise InputError(path, f"cannot be read ({exc.strerror or exc})") from exc
    return h.hexdigest()


def transcript_for(audio: Path, text: str | None, transcript: Path | None) -> tuple[str | None, str]:
    """The transcript of ``audio`` and where it came from: ``text``, the file ``transcript``, a ``.txt`` beside the
    audio (same stem), or none. Returns (text or None, "text" | file path | "")."""
    if text is not None and text.strip():
        return text.strip(), "text"
    for candidate in ([transcript] if transcript is not None else []) + [audio.with_suffix(".txt")]:
        if candidate is not None and candidate.is_file():
            try:
                content = candidate.read_text(encoding="utf8").strip()
            except (OSError, UnicodeDecodeError) as exc:
                raise InputError(candidate, f"transcript cannot be read ({exc})") from exc
            if content:
                return content, str(candidate)
        elif candidate is transcript:
            raise InputError(candidate, "transcript file not found")
    return None, ""


@dataclass(frozen=True)
class AudioDriveParams:
    """The command's motion options (see ``thead.audio.AudioDriveOptions``); angles in degrees."""

    mouth_scale: float = 1.0
    head_scale: float = 1.0
    still: bool = False
    pose: str | None = None
    blink_rate: float | None = None  # None: a source video's own rate, else thead.audio.DEFAULT_BLINK_RATE
    seed: int = 0
    yaw: tuple[float, ...] = ()
    pitch: tuple[float, ...] = ()
    roll: tuple[float, ...] = ()
    text: str | None = None
    transcript: str | None = None
    source_frame: int = 0
    fps: float | None = None  # None: a source video's own rate, else 25
    mouth: str = "synth"
    motion_model: str | None = None
    subject: str = ""
    reference: str | None = None


def load_motion_model(name: str | None):
    """The trained audio2motion model ``name`` (a registered name in the weights folder, or a file path)."""
    if not name:
        return None
    from thead.audio.train import load_audio2motion
    from thead.jobs.train import find_motion_model

    path, sha = find_motion_model(name)
    return load_audio2motion(path, sha)


def audio_drive_pair(pair: AudioPair, workdir: Path, out_dir: Path, pre_params: PreprocessParams,
                     fit_params: FitParams, params: AudioDriveParams, options: RenderOptions, force: bool = False,
                     export_motion: Path | None = None, progress: ProgressFn | None = None) -> ItemResult:
    """Make the source of ``pair`` speak its audio; writes ``out_dir/<source>__<audio>.mp4`` with the audio muxed.

    Parameters
    ----------
    pair : the source item and the audio file.
    workdir : the work directory of the stage caches.
    out_dir : the output folder.
    pre_params, fit_params : the stages' parameters (the source's and the reference's).
    params : the motion options.
    options : rendering options.
    force : redo a current output.
    export_motion : also write the generated motion to this ``.safetensors`` file (a folder: one file per output
        named ``<source>__<audio>.safetensors``).
    progress : called with (frames done, frames total).

    Returns
    -------
    ItemResult ("done" or "skipped"), ``output`` the written file, ``info`` the audio report (phoneme path,
    silence, notes, blinks, ...); raises ``InputError`` for bad inputs (the audio's or the source's file named).
    """
    from thead.audio import AudioDriveOptions, audio_motion, load_audio, save_motion
    from thead.audio.motion import MOTION_REVISION
    from thead.audio.motion_file import as_stored

    audio_path = pair.audio
    if not audio_path.is_file():
        raise InputError(audio_path, "file not found")
    text, text_from = transcript_for(audio_path, params.text, Path(params.transcript) if params.transcript else None)
    src = ensure(pair.source, workdir, pre_params, fit_params)
    ref = None
    if params.reference:
        ref_path = Path(params.reference)
        ref = ensure(InputItem(ref_path, item_id_for(ref_path, None)), workdir, pre_params, fit_params)
        if not ref.is_video:
            raise InputError(ref_path, "a --reference must be a video (its head motion is used)")
    out = out_dir / f"{pair.name}.mp4"
    motion_file = None
    if export_motion is not None:
        motion_file = export_motion / f"{pair.name}.safetensors" if export_motion.suffix != ".safetensors" \
            else export_motion
    settings = asdict(replace(params, text=None, transcript=None))
    key = output_key("audio-drive", MOTION_REVISION, src.key, file_digest(audio_path), text or "", settings,
                     ref.key if ref is not None else "", options.paste_back, options.crf, engine_key(options))
    label = str(pair.source.path)
    if not force and output_is_current(out, key) and (motion_file is None or motion_file.is_file()):
        return ItemResult(label, pair.name, "skipped", str(out), "output current", info={"audio": str(audio_path)})
    frame = source_frame(src, params.source_frame)
    fps = float(params.fps or (src.fps if src.is_video and src.fps else 25.0))
    track = load_audio(audio_path)
    model = load_motion_model(params.motion_model)
    drive = AudioDriveOptions(mouth_scale=params.mouth_scale, head_scale=params.head_scale, still=params.still,
                              pose=params.pose, reference=ref.fit if ref is not None else None,
                              blink_rate=params.blink_rate, seed=params.seed, yaw=params.yaw, pitch=params.pitch,
                              roll=params.roll, transcript=text, motion_model=model, subject=params.subject)
    try:
        made, report = audio_motion(track, src.fit, frame, fps, drive)
        # Rendered as a motion file of them reads back (``as_stored``), and the file is written from the same
        # values (``made``: storing the read-back values again would round the angles a second time), so its
        # reenact renders these very frames.
        targets = as_stored(made)
    except ValueError as exc:  # an option combination the audio path refuses (e.g. --pose copy without reference)
        raise InputError(audio_path, str(exc)) from exc
    report["transcript_from"] = text_from
    warnings = [f"source: {w}" for w in src.warnings]
    if report["phoneme_path"] == "silence":
        warnings.append(f"{audio_path}: the audio is silent: a still, blinking face")
    engine = make_engine(options)
    prepared = prepare_source(engine, src, frame)
    total = len(targets)
    if options.paste_back:  # only what the render changed goes into the original picture
        paster = Paster(engine.device)
        original, to_crop = src.original(frame), src.transforms[frame]
        batches = (paster(b.frames, original, to_crop, b.changed, b.margin)
                   for b in engine.render_stream(engine.for_paste_back(prepared), targets, None))
    else:
        batches = engine.render_frames(prepared, targets, None)  # the engine's synthesised mouth (no driver mouth)
    write_frames(out, batches, fps, options.crf, audio_path, progress, total)
    if motion_file is not None:
        save_motion(motion_file, made, fps, {"source": str(pair.source.path), "source_key": src.key,
                                                       "source_frame": frame, "audio": str(audio_path.resolve()),
                                                       "params": settings,
                                                       "report": {k: v for k, v in report.items()
                                                                  if k not in ("seconds", "analysis_s")}})
    report = {k: v for k, v in report.items() if k != "speech"} | {"speech": report.get("speech")}
    write_sidecar(out, {"key": key, "source": str(pair.source.path), "audio": str(audio_path),
                        "engine": engine.name, "params": settings, "paste_back": options.paste_back,
                        "motion_file": str(motion_file) if motion_file else None, "report": report,
                        "warnings": warnings})
    info = {"audio": str(audio_path), "frames": total, "phoneme_path": report["phoneme_path"],
            "mouth_source": report["mouth_source"], "pose_mode": report["pose_mode"],
            "silence_fraction": report["silence_fraction"], "blinks": report["blinks"],
            "notes": report["notes"], "transcript_from": text_from}
    if motion_file is not None:
        info["motion_file"] = str(motion_file)
    return ItemResult(label, pair.name, "done", str(out), warnings=warnings, info=info)


__all__ = ["AUDIO_SUFFIXES", "AudioDriveParams", "AudioPair", "audio_drive_pair", "audio_items", "file_digest",
           "load_motion_model", "transcript_for"]

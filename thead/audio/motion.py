"""Speech audio to face motion: ``audio_motion(audio, source_fit, ...) -> (TargetParams, report)``.

Per output frame (``thead.audio.io.num_frames_for``: the audio's duration rounded to whole frames):

* expression: the source frame's own units (its rest expression), plus the mouth track
  (``thead.audio.visemes``: phones -> visemes -> coarticulation, or the acoustic path, or a trained mel model)
  on ``MOUTH_UNITS``, bilabial closures enforced in absolute terms, blinks (``thead.audio.blinks``) closing
  ``blink_left`` / ``blink_right`` from their rest value towards 1; clipped to the units' bounds;
* pose: the source's pose turned by the head track's offsets (``thead.audio.head_motion``), about the neck
  pivot as ``thead edit`` turns a head (``turn_about_pivot``), with the pose corrective's residual change;
  angles limited to ``MAX_ANGLES_DEG``. Translation and scale follow only from the pivot;
* residual: the source's, plus the pose corrective's change; gaze: the source's, plus optional small saccades;
* the first frame is the source frame's own mouth: the mouth units and the mouth region's residual ease from the
  source frame's values to the generated ones over ``mouth_ease_s`` (a raised cosine), so a source caught with
  its mouth open does not snap to the rest mouth between the first two frames;
* identity is never part of a target (the engine renders the source's own shape).

A source VIDEO (a fit of at least ``OWN_STYLE_MIN_S`` seconds) is its own reference by default
(``AudioDriveOptions.own_style``): with no ``reference`` its fitted head motion is the ``style`` reference (the
head easing from the animated frame's pose to the video's mean pose), its fitted blink rate the blink rate
(``blink_rate`` None), and its own closed mouth the rest of the mouth units (``video_rest_mouth``) and of the
mouth region's residual, which then follows the mouth units as it did in the video
(``video_mouth_residual_model``): a person keeps their calm or lively head, their blinking and their lips. A
photo gets the built-in style, ``DEFAULT_BLINK_RATE`` and its own mouth (``mouth_rest_max``).

The same ``seed`` gives the same output: blinks, head and saccades draw from separate streams of it (changing
the blink rate does not change the head motion). A silent track gives a still, blinking face.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from thead.audio.blinks import BlinkConfig, blink_track, fitted_blink_rate
from thead.audio.features import AudioFeatures, FeatureConfig, frame_features
from thead.audio.head_motion import POSE_MODES, HeadMotionConfig, ease_in, head_motion, relative_angles
from thead.audio.io import AudioTrack, load_audio, num_frames_for
from thead.audio.phonemes import Phone, PhonemeConfig, PhoneTrack, recognize_phonemes
from thead.audio.visemes import (MOUTH_UNITS, MouthTrack, VisemeConfig, acoustic_mouth, apply_mouth,
                                 mouth_opening_cm, phones_to_mouth, silence_envelope)
from thead.engines.motion import (MAX_ANGLES_DEG, MAX_GAZE_RAD, TargetParams, mouth_region_weight, pose_residual_change,
                                  turn_about_pivot)
from thead.facemodel.expressions import expression_bounds
from thead.fitting.result import FitResult

MOUTH_SOURCES = ("visemes", "learned")
#: Blinks a minute when neither the options nor a source video say (adults in conversation: about 15-20).
DEFAULT_BLINK_RATE = 17.0
#: A source fit at least this long (seconds of valid frames) is a video that serves as its own reference.
OWN_STYLE_MIN_S = 3.0
#: Fitted blink rates of a source video are kept within this range (blinks a minute).
OWN_BLINK_RANGE = (6.0, 90.0)

#: Bumped whenever the same options and inputs make different motion: part of ``thead audio-drive``'s output key,
#: so an output made by older code is not taken as current (2: the mouth eases in from the source frame's own;
#: 3: generated yaw divided by the mesh-20 engine's ``RENDER_POSE_GAIN``).
MOTION_REVISION = 3
#: The mouth region (mouth widths from the lips' centre: full within the first, none beyond the second) whose
#: residual the mouth residual model gives back (``thead.engines.motion.mouth_region_weight``).
RESIDUAL_REGION = (0.75, 1.5)


@dataclass
class AudioDriveOptions:
    """Settings of ``audio_motion`` (the ``thead audio-drive`` options).

    mouth_scale: multiplies the mouth's motion. head_scale: multiplies the generated head motion.
    still: no head motion (blinks and mouth kept); overrides ``pose``.
    pose: one of ``POSE_MODES`` or None (default: "learned" when ``motion_model`` has a pose model, else
    "style": the reference's style when ``reference`` is given, the built-in one otherwise).
    reference: a fit of a reference clip for ``copy`` / ``style``. blink_rate: blinks per minute (0 = none;
    None: a source video's own fitted rate with ``own_style``, else ``DEFAULT_BLINK_RATE``).
    own_style: a source video (``own_reference``) with no ``reference`` serves as the ``style`` reference, its
    blink rate as the default and its closed mouth as the mouth's rest (``video_rest_mouth``).
    seed: random seed. yaw / pitch / roll: keyframe lists in degrees (offsets from the source pose, spread
    evenly over the clip). transcript: the words spoken (forced alignment); None: phone-loop decoding.
    language: "en" uses the phone recogniser; others take the acoustic path.
    motion_model: a trained ``thead.audio.train.Audio2MotionModel`` (its viseme gains and lead always apply),
    subject: which of its per-subject pose heads ("" = its first). mouth: "visemes" or "learned" (the model's
    mel network). saccades: small random gaze shifts (off by default: gaze is the source's).
    mouth_rest_max: {unit: ceiling} of the source's rest mouth: a photo caught mid-word (jaw_open 0.6) would
    otherwise speak through a mouth that never closes and whose openings saturate at the units' bounds;
    None keeps the source's mouth exactly. mouth_ease_s: seconds over which the mouth eases from the source
    frame's own (the first frame) to the generated mouth (0: the generated mouth from the first frame).
    mouth_residual: with a source video as its own reference, the
    mouth region's residual follows the mouth units through the video's ``MouthResidualModel`` (the person's
    lip shapes and the part of each opening the fit put in the residual); False: the closed-mouth residual.
    visemes / blinks / phonemes / features / head: the modules' own configs (their mouth_scale, rate_per_min,
    language, mode, head_scale, keyframe fields are overridden by the fields above).
    """

    mouth_scale: float = 1.0
    head_scale: float = 1.0
    still: bool = False
    pose: str | None = None
    reference: FitResult | None = None
    blink_rate: float | None = None
    own_style: bool = True
    seed: int = 0
    yaw: tuple[float, ...] = ()
    pitch: tuple[float, ...] = ()
    roll: tuple[float, ...] = ()
    transcript: str | None = None
    language: str = "en"
    motion_model: Any = None
    subject: str = ""
    mouth: str = "visemes"
    saccades: bool = False
    mouth_rest_max: dict[str, float] | None = field(default_factory=lambda: {"jaw_open": 0.1, "lips_part": 0.2})
    mouth_ease_s: float = 0.16
    mouth_residual: bool = True
    visemes: VisemeConfig = field(default_factory=VisemeConfig)
    blinks: BlinkConfig = field(default_factory=BlinkConfig)
    phonemes: PhonemeConfig = field(default_factory=PhonemeConfig)
    features: FeatureConfig = field(default_factory=FeatureConfig)
    head: HeadMotionConfig = field(default_factory=HeadMotionConfig)

    def pose_mode(self) -> str:
        """The pose mode these options resolve to."""
        if self.still:
            return "still"
        if self.pose is not None:
            if self.pose not in POSE_MODES:
                raise ValueError(f"pose must be one of {POSE_MODES}, got '{self.pose}'")
            return self.pose
        if self.motion_model is not None and getattr(self.motion_model, "has_pose", False):
            return "learned"
        return "style"


def own_reference(fit: FitResult, min_s: float = OWN_STYLE_MIN_S) -> FitResult | None:
    """``fit`` when it is a video with at least ``min_s`` seconds of valid frames (its own reference), else None."""
    fps = float(fit.fps or 0.0)
    if fit.num_frames < 2 or fps <= 0:
        return None
    valid = np.asarray(fit.valid, bool) if fit.valid is not None else np.ones(fit.num_frames, bool)
    return fit if valid.sum() >= min_s * fps else None


def _closed_frames(fit: FitResult, quantile: float) -> np.ndarray:
    """Indices of a video fit's valid frames whose inner-lip opening (``mouth_opening_cm``) is in its lowest
    ``quantile``."""
    names = list(fit.expression_names)
    expr = np.asarray(fit.expression, np.float64)
    frames = np.arange(fit.num_frames)
    if fit.valid is not None and np.asarray(fit.valid, bool).any():
        frames = frames[np.asarray(fit.valid, bool)]
    e = {u: expr[frames, names.index(u)] for u in ("jaw_open", "lips_part", "lip_stretch", "chin_raise")}
    opening = mouth_opening_cm(e["jaw_open"], e["lips_part"], e["lip_stretch"], e["chin_raise"])
    return frames[opening <= np.quantile(opening, quantile)]


def video_rest_mouth(fit: FitResult, quantile: float = 0.15) -> dict[str, float]:
    """{unit: value} of ``MOUTH_UNITS``: the mean over a video fit's valid frames whose inner-lip opening
    (``mouth_opening_cm``) is in its lowest ``quantile``: the person's own closed mouth, which a talking clip's
    first frame (often mid-word) is not."""
    names = list(fit.expression_names)
    low = _closed_frames(fit, quantile)
    expr = np.asarray(fit.expression, np.float64)
    return {u: float(expr[low, names.index(u)].mean()) for u in MOUTH_UNITS if u in names}


def video_rest_residual(fit: FitResult, quantile: float = 0.15) -> np.ndarray:
    """[478, 3] cm: the mean fit residual over the frames of ``video_rest_mouth``. A frame caught mid-word keeps
    part of its open mouth in the residual (WDA's first frame: 0.42 cm between the inner lips, beyond its units),
    which a closed unit mouth alone never shuts."""
    return np.asarray(fit.residual, np.float64)[_closed_frames(fit, quantile)].mean(0)


@dataclass(frozen=True)
class MouthResidualModel:
    """A person's mouth-region fit residual as a linear function of the mouth units, from a video fit.

    The fit explains a real mouth by its units AND by the residual: on WDA, re-rendering the clip's own fitted
    mouth units over the closed-mouth residual showed an inner-lip gap of 0.044 eye distances on average against
    the real 0.078 (mouth LMD 0.042), and with the fitted per-frame residual 0.080 (LMD 0.034). Units alone
    leave part of every opening (and the person's lip shapes) in the residual; this model gives it back:
    ``residual(u) = rest + sum_k (clip(u_k) - rest_units_k) * slope_k`` in the mouth region.

    rest: [478, 3] cm, the mean residual of the closed-mouth frames (``video_rest_residual``);
    rest_units: [U] the mean of ``units`` on those frames; slope: [U, 478, 3] cm per unit (ridge regression of
    the residual on the units over the valid frames); low / high: [U] the units' 1st / 99th percentiles in the
    video (units are clipped to them first: no extrapolation beyond what the person was seen doing);
    units: the unit names (``MOUTH_UNITS``).
    """

    rest: np.ndarray
    rest_units: np.ndarray
    slope: np.ndarray
    low: np.ndarray
    high: np.ndarray
    units: tuple[str, ...] = MOUTH_UNITS

    def residual(self, values: np.ndarray) -> np.ndarray:
        """[T, 478, 3] cm residuals for unit values [T, U] (``units`` order)."""
        u = np.clip(np.asarray(values, np.float64), self.low, self.high) - self.rest_units
        return self.rest[None] + np.einsum("tu,upc->tpc", u, self.slope)


def video_mouth_residual_model(fit: FitResult, quantile: float = 0.15, ridge: float = 0.01) -> MouthResidualModel:
    """The ``MouthResidualModel`` of a video fit: its valid frames' residuals regressed on their mouth units.

    ridge: regularisation as a fraction of the units' mean variance (collinear units such as jaw_open and
    lips_part share their slope instead of cancelling); a unit that never moves gets no slope.
    """
    names = list(fit.expression_names)
    units = tuple(u for u in MOUTH_UNITS if u in names)
    frames = np.arange(fit.num_frames)
    if fit.valid is not None and np.asarray(fit.valid, bool).any():
        frames = frames[np.asarray(fit.valid, bool)]
    cols = [names.index(u) for u in units]
    x = np.asarray(fit.expression, np.float64)[frames][:, cols]
    res = np.asarray(fit.residual, np.float64)
    y = res[frames].reshape(len(frames), -1)
    xc, yc = x - x.mean(0), y - y.mean(0)
    lam = ridge * max(float(xc.var(0).mean()), 1e-12) * len(frames)
    slope = np.linalg.solve(xc.T @ xc + lam * np.eye(len(units)), xc.T @ yc).reshape(len(units), *res.shape[1:])
    rest_units = np.asarray(fit.expression, np.float64)[_closed_frames(fit, quantile)][:, cols].mean(0)
    low, high = np.percentile(x, 1, axis=0), np.percentile(x, 99, axis=0)
    return MouthResidualModel(video_rest_residual(fit, quantile), rest_units, slope, low, high, units)


def _streams(seed: int) -> dict[str, np.random.Generator]:
    """Independent generators per component from one seed."""
    names = ("blinks", "head", "saccades")
    return {n: np.random.default_rng(np.random.SeedSequence([int(seed), k])) for k, n in enumerate(names)}


def saccade_offsets(num_frames: int, fps: float, rng: np.random.Generator, mean_gap_s: float = 1.8,
                    yaw_deg: float = 1.5, pitch_deg: float = 0.8) -> np.ndarray:
    """[T, 2] gaze (yaw, pitch) offsets in degrees: steps at renewal times (gamma gaps, mean ``mean_gap_s``)
    to small normal targets, each step taking about 40 ms; starts at 0."""
    out = np.zeros((num_frames, 2))
    t, cur = 0.0, np.zeros(2)
    duration = num_frames / fps
    times = np.arange(num_frames) / fps
    while True:
        t += 0.3 + float(rng.gamma(2.0, max(mean_gap_s - 0.3, 0.05) / 2.0))
        if t >= duration:
            break
        new = rng.normal(0.0, 1.0, 2) * (yaw_deg, pitch_deg)
        ramp = np.clip((times - t) / 0.04, 0.0, 1.0)[:, None]
        out += ramp * (new - cur)[None]
        cur = new
    return out


def _mouth(feats: AudioFeatures, phones: PhoneTrack, options: AudioDriveOptions,
           vis: VisemeConfig) -> tuple[MouthTrack, str]:
    """The mouth track and a word on where it came from."""
    model = options.motion_model
    if options.mouth not in MOUTH_SOURCES:
        raise ValueError(f"mouth must be one of {MOUTH_SOURCES}, got '{options.mouth}'")
    if phones.path == "silence":
        n = feats.num_frames
        return MouthTrack(np.zeros((n, len(MOUTH_UNITS)), np.float32), np.zeros(n, bool), np.zeros(n, bool),
                          vis.close_jaw, vis.close_lips), "none (silence)"
    if options.mouth == "learned":
        if model is None or not getattr(model, "has_mouth", False):
            raise ValueError("mouth 'learned' needs a motion model with a mel network")
        base = phones_to_mouth(phones.phones, feats, vis) if phones.path in ("alignment", "phone_loop") \
            else acoustic_mouth(feats, vis)
        delta = model.predict_mouth(feats) * vis.mouth_scale
        env = silence_envelope(base.speech | base.closed, feats.fps, vis.silence_ramp_s)
        delta = np.asarray(delta, np.float64) * env[:, None]
        return MouthTrack(delta.astype(np.float32), base.closed, base.speech, vis.close_jaw, vis.close_lips,
                          scale=vis.mouth_scale), \
            "learned mel network"
    if phones.path in ("alignment", "phone_loop"):
        return phones_to_mouth(phones.phones, feats, vis), f"visemes ({phones.path})"
    return acoustic_mouth(feats, vis), "acoustic"


def audio_motion(audio: str | Path | AudioTrack, source_fit: FitResult, source_frame: int = 0, fps: float = 25.0,
                 options: AudioDriveOptions | None = None) -> tuple[TargetParams, dict]:
    """Targets that make frame ``source_frame`` of ``source_fit`` speak ``audio``.

    Parameters
    ----------
    audio : an ffmpeg-readable file (or a decoded ``AudioTrack`` at 16 kHz).
    source_fit : the source's FitResult (a photo's: one frame; a video's: frame ``source_frame`` is used).
    source_frame : which frame of the source fit is the face at rest.
    fps : output frame rate; the output has ``num_frames_for(duration, fps)`` frames.
    options : AudioDriveOptions (default settings when None).

    Returns
    -------
    (targets, report): TargetParams [T] (radians, units of FitResult) and a JSON-able dict: audio, duration_s,
    fps, num_frames, phoneme_path ("alignment" | "phone_loop" | "acoustic" | "silence"), phones_found,
    words_found, notes, silence_fraction (frames without speech), mouth_source, pose_mode, head_style,
    blinks, blink_rate_per_min, speech (speech-likeness numbers), analysis_s (features + phonemes, seconds),
    seconds (total), seed.

    Raises
    ------
    InputError naming the audio file when it cannot be read or is shorter than one frame.
    """
    options = options or AudioDriveOptions()
    t_start = time.perf_counter()
    track = audio if isinstance(audio, AudioTrack) else load_audio(audio, options.features.sample_rate)
    n = num_frames_for(track.duration, fps, track.path)
    streams = _streams(options.seed)

    t0 = time.perf_counter()
    feats = frame_features(track.samples, fps, n, options.features)
    pcfg = replace(options.phonemes, language=options.language)
    if track.silent:
        phones = PhoneTrack("silence", [Phone("SIL", 0.0, track.duration)], notes=["the audio track is silent"])
    else:
        phones = recognize_phonemes(track.samples, feats.hops, options.transcript, pcfg, track.sample_rate)
    analysis_s = time.perf_counter() - t0

    model = options.motion_model
    vis = replace(options.visemes, mouth_scale=options.mouth_scale)
    if model is not None and hasattr(model, "viseme_config"):
        vis = model.viseme_config(vis, options.subject)
    mouth, mouth_source = _mouth(feats, phones, options, vis)

    own = own_reference(source_fit) if options.own_style else None
    notes = list(phones.notes)
    blink_rate = options.blink_rate
    if blink_rate is None:
        blink_rate = DEFAULT_BLINK_RATE
        if own is not None:
            blink_rate = float(np.clip(fitted_blink_rate(own.expression_of("blink_left"),
                                                         own.expression_of("blink_right"), own.fps, own.valid),
                                       *OWN_BLINK_RANGE))
            notes.append(f"blink rate {blink_rate:.0f}/min: the source video's own")
    blink_cfg = replace(options.blinks, rate_per_min=blink_rate)
    blinks = blink_track(n, fps, streams["blinks"], mouth.speech, blink_cfg)

    mode = options.pose_mode()
    if phones.path == "silence" and mode in ("style", "learned"):
        notes.append("no speech: head kept still")
        mode = "still"
    head_cfg = replace(options.head, mode=mode, head_scale=options.head_scale, yaw=tuple(options.yaw),
                       pitch=tuple(options.pitch), roll=tuple(options.roll))
    ref_deg = ref_fps = learned = None
    reference = options.reference
    if reference is None and own is not None and mode == "style":
        reference = own
    if reference is not None:
        ref_deg = relative_angles(reference.pose, reference.valid)
        ref_fps = float(reference.fps or fps)
    if mode == "copy" and ref_deg is None:
        raise ValueError("pose 'copy' needs a reference fit")
    if mode == "learned":
        if model is None or not getattr(model, "has_pose", False):
            raise ValueError("pose 'learned' needs a motion model with a pose model")
        learned = model.predict_pose(feats, options.subject)
    own_style = reference is not None and options.reference is None and mode == "style"
    centre = None
    if own_style:  # settle around the pose the speaker holds in their video, not where frame source_frame is
        centre = relative_angles(own.pose, own.valid, source_frame).mean(0)
    head = head_motion(n, fps, head_cfg, streams["head"], speech=mouth.speech, onset=feats.onset,
                       reference_deg=ref_deg, reference_fps=ref_fps, learned_deg=learned, rms_db=feats.rms_db,
                       centre_deg=centre)
    head_style = "the source video's own" if own_style else head.style_source

    # Silent audio keeps the source frame's own mouth (nothing is said, so nothing moves it); speech starts
    # from a closed rest: the source video's own closed mouth, or the source's mouth under mouth_rest_max.
    speaks = phones.path != "silence"
    rest_from = own if speaks else None
    rest_max = options.mouth_rest_max if speaks else None
    rest_mouth = residual_model = rest_residual = None
    if rest_from is not None:
        rest_mouth = video_rest_mouth(rest_from)
        if options.mouth_residual:
            residual_model = video_mouth_residual_model(rest_from)
        else:
            rest_residual = video_rest_residual(rest_from)
    targets = compose_targets(source_fit, source_frame, mouth, blinks.closure, head.offsets_deg,
                              saccade_offsets(n, fps, streams["saccades"]) if options.saccades else None,
                              rest_max, rest_mouth, rest_residual, residual_model,
                              mouth_ease_frames=options.mouth_ease_s * fps)
    src_expr = np.asarray(source_fit.expression, np.float64)[source_frame]
    if rest_mouth is not None:
        notes.append("mouth rest: the source video's own closed mouth"
                     + (" and lip shapes (residual from its units)" if residual_model is not None else ""))
    for unit, ceiling in (rest_max or {}).items() if rest_mouth is None else ():
        value = float(src_expr[list(source_fit.expression_names).index(unit)])
        if value > ceiling:
            notes.append(f"source mouth open ({unit} {value:.2f}): its rest is taken at {ceiling:g}")
    speech = mouth.speech
    report = {
        "audio": track.path, "duration_s": round(track.duration, 3), "fps": float(fps), "num_frames": n,
        "source_rate": track.source_rate, "source_channels": track.source_channels,
        "phoneme_path": phones.path, "phones_found": len(phones.speech_phones), "words_found": len(phones.words),
        "notes": notes, "silence_fraction": round(float(1.0 - speech.mean()), 3), "mouth_source": mouth_source,
        "pose_mode": mode, "head_style": head_style, "nods": int(len(head.nods)),
        "blinks": blinks.count, "blink_rate_per_min": round(60.0 * blinks.count / track.duration, 2),
        "speech": phones.speech, "analysis_s": round(analysis_s, 3),
        "seconds": round(time.perf_counter() - t_start, 3), "seed": int(options.seed),
    }
    return targets, report


def compose_targets(source_fit: FitResult, source_frame: int, mouth: MouthTrack, blink_closure: np.ndarray,
                    head_offsets_deg: np.ndarray, gaze_offsets_deg: np.ndarray | None = None,
                    mouth_rest_max: dict[str, float] | None = None,
                    mouth_rest: dict[str, float] | None = None,
                    mouth_residual: np.ndarray | None = None,
                    residual_model: MouthResidualModel | None = None,
                    mouth_ease_frames: float = 0.0) -> TargetParams:
    """TargetParams [T] from the source frame's parameters and the tracks (see the module docstring).

    mouth: MouthTrack [T]; blink_closure [T] in [0, 1]; head_offsets_deg [T, 3] (yaw, pitch, roll);
    gaze_offsets_deg [T, 2] (yaw, pitch) added to both eyes, or None; mouth_rest_max: {unit: ceiling} applied
    to the source's rest values of those units before the mouth track is added (None: none); mouth_rest:
    {unit: value} replacing the source frame's values of those units first (``video_rest_mouth``);
    mouth_residual: [478, 3] cm residual that replaces the source frame's in the mouth region
    (``mouth_region_weight`` of the fit's identity mesh; ``video_rest_residual``), None: the source frame's;
    residual_model: a ``MouthResidualModel`` whose per-frame residual, at each frame's final mouth units,
    replaces the source frame's in the mouth region (overrides ``mouth_residual``); mouth_ease_frames: frames
    over which the mouth units and the residual ease (raised cosine) from the source frame's values on frame 0
    to the generated ones (0: none).
    """
    if not -source_fit.num_frames <= source_frame < source_fit.num_frames:
        raise ValueError(f"source frame {source_frame} outside the source fit's {source_fit.num_frames} frames")
    src = TargetParams.from_fit(source_fit, source_frame % source_fit.num_frames)
    n = len(mouth.delta)
    names = list(src.expression_names)
    lo, hi = expression_bounds()
    if tuple(names) != tuple(src.expression_names) or len(lo) != len(names):
        raise ValueError("the source fit's expression units differ from the face model's")
    rest = src.expression[0].astype(np.float64).copy()
    for unit, value in (mouth_rest or {}).items():
        rest[names.index(unit)] = float(value)
    for unit, ceiling in (mouth_rest_max or {}).items():
        k = names.index(unit)
        rest[k] = min(rest[k], float(ceiling))
    expr = apply_mouth(rest, mouth, names).astype(np.float64)
    # Frame 0 is the source frame's own mouth, eased into the generated one (closures included).
    ease = ease_in(n, mouth_ease_frames)[:, None]  # [T, 1]: 0 on frame 0, 1 from the ease's end on
    cols = [names.index(u) for u in mouth.units]
    own = src.expression[:, cols].astype(np.float64)
    expr[:, cols] = own + ease * (expr[:, cols] - own)
    closure = np.asarray(blink_closure, np.float32)[:n]
    for unit in ("blink_left", "blink_right"):
        k = names.index(unit)
        expr[:, k] = expr[:, k] + (1.0 - expr[:, k]) * closure
    expr = np.clip(expr, lo, hi).astype(np.float32)

    src_pose = np.repeat(src.pose, n, 0)
    src_depth = np.repeat(src.depth_offset, n, 0)
    angles = src_pose[:, :3].astype(np.float64) + np.radians(np.asarray(head_offsets_deg, np.float64)[:n])
    lim = np.radians(np.asarray(MAX_ANGLES_DEG))
    angles = np.clip(angles, -lim, lim)
    own_residual = src.residual.astype(np.float64)  # [1, 478, 3]
    w = mouth_region_weight(np.asarray(source_fit.identity, np.float64), RESIDUAL_REGION)[None, :, None]
    if residual_model is not None:
        values = expr[:, [names.index(u) for u in residual_model.units]]
        residual = (own_residual + w * (residual_model.residual(values) - own_residual)).astype(np.float32)
    elif mouth_residual is not None:
        rest_residual = own_residual + w * (np.asarray(mouth_residual, np.float64)[None] - own_residual)
        residual = np.repeat(rest_residual.astype(np.float32), n, 0)
    else:
        residual = np.repeat(own_residual.astype(np.float32), n, 0)
    residual = own_residual + ease[:, :, None] * (residual - own_residual)
    if np.any(np.abs(angles - src_pose[:, :3]) > 1e-9):
        pose, depth = turn_about_pivot(src_pose, src_depth, angles)
        residual = residual + pose_residual_change(pose[:, :3], src.pose[:, :3])
    else:
        pose, depth = src_pose.astype(np.float32), src_depth.astype(np.float32)
    gaze = np.repeat(src.gaze, n, 0).astype(np.float64)
    if gaze_offsets_deg is not None:
        g = np.radians(np.asarray(gaze_offsets_deg, np.float64)[:n])  # gaze is radians in memory
        gaze[:, [0, 2]] += g[:, :1]
        gaze[:, [1, 3]] += g[:, 1:2]
        gaze = np.clip(gaze, -MAX_GAZE_RAD, MAX_GAZE_RAD)
    return TargetParams(pose=np.asarray(pose, np.float32), depth_offset=np.asarray(depth, np.float32),
                        expression=expr, residual=residual.astype(np.float32), gaze=gaze.astype(np.float32),
                        held=np.zeros(n, bool), expression_names=src.expression_names)


__all__ = ["AudioDriveOptions", "DEFAULT_BLINK_RATE", "MOTION_REVISION", "MOUTH_SOURCES", "MouthResidualModel",
           "OWN_STYLE_MIN_S", "RESIDUAL_REGION", "audio_motion", "compose_targets", "own_reference",
           "saccade_offsets", "video_mouth_residual_model", "video_rest_mouth", "video_rest_residual"]

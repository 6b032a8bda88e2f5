"""Head motion for a talking face: still, copied from a reference, or a stochastic style with speech nods.

All angles here are OFFSETS in DEGREES from the source's own pose, [T, 3] as (yaw, pitch, roll) with the
conventions of ``thead.fitting.result`` (+yaw turns the nose to image +x, +pitch tilts it up, +roll turns the
face clockwise in the image). Modes (``POSE_MODES``):

* ``still``: zeros.
* ``copy``: a reference fit's angles relative to its first valid frame, resampled to the output rate and
  looped back and forth (reference forward, then backward, ...): a mirrored seam continues from the same pose,
  so the loop never jumps.
* ``style``: a vector autoregressive model VAR(p) of the three angles (``HeadStyle``), fitted to a reference's
  angles (``fit_head_style``) or the built-in style (``builtin_head_style``, fitted to real talking clips by
  ``tools/derive_head_style.py``), simulated with a seeded generator and scaled to the style's per-angle
  standard deviation: the draw (nods included) is scaled so that its own std over the clip is the style's
  (``HeadMotionConfig.match_std``; a short draw's std wanders far from the process's stationary one, which an 8 s
  clip showed as twice the asked yaw). Innovations follow the speech: ``pause_gain`` of their size in pauses,
  and within speech they grow with loudness (``speech_gain``: +-``energy_gain`` per 20 dB around the speech's
  median level), and strong speech onsets (a phrase starting after a pause, or an onset-strength peak) add a
  nod: the head dips ``nod_deg`` and comes back, peaking ``nod_lead_s`` before the onset (head motion leads
  speech).
* ``learned``: angles from a trained pose model (``thead.audio.train``), passed in.

Then ``head_scale`` multiplies the motion, keyframes (``keyframe_curve``: SadTalker's ``--input_yaw`` lists,
degrees, interpolated over time) are added, and ``RENDER_POSE_GAIN`` compensates what the renderer loses.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, replace
from importlib import resources
from typing import Sequence

import numpy as np

POSE_MODES = ("still", "style", "copy", "learned")
#: Rate (frames per second) style models are fitted and simulated at; outputs are resampled from it.
STYLE_FPS = 25.0
#: Share of asked yaw / pitch / roll variation that comes back when the mesh engine's output is re-fitted
#: (std of the re-fitted angles / std of the asked ones). Measured by tools/measure_pose_gain.py on the shared
#: photos s0, s6, s11 with the mesh-8 engine: sweeps of +-10 deg yaw, +-5 deg pitch and roll over 4 s at 25 fps:
#: yaw 0.843 / 0.858 / 0.855, pitch 0.664 / 0.711 / 0.785, roll 0.901 / 0.901 / 0.929 (r >= 0.975 each).
#: The mesh-20 engine draws yaw changes x1.1 (``MeshConfig.turn_gain``): yaw 0.917 / 0.938 / 0.919 (pitch 0.724 /
#: 0.819 / 0.856 and roll 0.884 / 0.901 / 0.923: left as they were, which audio-drive's head-motion spread was
#: matched to against real clips).
#: Generated motion (style, copy, learned) is divided by it so the rendered motion shows the asked statistics;
#: keyframes (explicit angles, as ``thead edit --yaw``) are not. Re-measure when the engine changes.
RENDER_POSE_GAIN: tuple[float, float, float] = (0.92, 0.72, 0.91)
STYLE_FILE = "head_style.json"
#: Shortest draw (seconds) whose own std is matched to the style's; shorter clips keep the stationary scaling.
MATCH_STD_MIN_S = 3.0


@dataclass(frozen=True)
class HeadStyle:
    """VAR(p) head-motion style on (yaw, pitch, roll) in degrees at ``fps``.

    coefs [p, 3, 3]: x_t = sum_i coefs[i] @ x_{t-1-i} + e_t; noise_cov [3, 3] of e_t (deg^2).
    std_deg [3]: per-angle standard deviation the simulation is scaled to. pause_gain: innovation scale in
    pauses relative to speech. nod_deg: pitch dip (deg) at a strong onset; nod_lead_s: the nod's lowest point
    comes this long before the onset; nod_s: its duration. smooth_s: Gaussian sigma (s) applied to the
    angles before fitting (a fit's frame-to-frame landmark noise is not head motion) and to every draw.
    source: what it was fitted to.
    """

    fps: float
    coefs: np.ndarray
    noise_cov: np.ndarray
    std_deg: np.ndarray
    pause_gain: float = 0.5
    nod_deg: float = 1.5
    nod_lead_s: float = 0.1
    nod_s: float = 0.5
    smooth_s: float = 0.04
    source: str = ""
    stats: dict = field(default_factory=dict)

    @property
    def order(self) -> int:
        return int(self.coefs.shape[0])

    def to_dict(self) -> dict:
        d = asdict(self)
        d["coefs"] = np.asarray(self.coefs).round(6).tolist()
        d["noise_cov"] = np.asarray(self.noise_cov).round(6).tolist()
        d["std_deg"] = np.asarray(self.std_deg).round(4).tolist()
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "HeadStyle":
        d = dict(d)
        for k in ("coefs", "noise_cov", "std_deg"):
            d[k] = np.asarray(d[k], np.float64)
        return cls(**d)


@dataclass(frozen=True)
class HeadMotionConfig:
    """Head motion settings.

    mode: one of ``POSE_MODES``. head_scale: multiplies the generated motion (0 = still). yaw / pitch / roll:
    keyframe lists in degrees (offsets from the source pose) spread evenly over the clip and linearly
    interpolated (one value: constant), added to the generated motion. calibrate: divide generated motion by
    ``RENDER_POSE_GAIN``. nods: add onset nods in ``style`` mode. max_deg: per-angle limit of the generated
    offsets (soft: tanh; 18 degrees of yaw: a photo turned further shows the far cheek's seam beside the nose);
    motion from a reference is limited at 3 of its own std when that is wider.
    match_std: in ``style`` mode scale the draw to the style's std over the clip itself (clips of at least
    ``MATCH_STD_MIN_S``). energy_gain: how much louder speech enlarges the innovations (``speech_gain``).
    centre_ease_s: how long the head takes to reach a given centre pose (``head_motion``'s ``centre_deg``).
    """

    mode: str = "style"
    head_scale: float = 1.0
    yaw: tuple[float, ...] = ()
    pitch: tuple[float, ...] = ()
    roll: tuple[float, ...] = ()
    calibrate: bool = True
    nods: bool = True
    max_deg: tuple[float, float, float] = (18.0, 12.0, 10.0)
    match_std: bool = True
    energy_gain: float = 1.0
    centre_ease_s: float = 1.2


# ------------------------------------------------------------------------------------------------ resampling
def resample_angles(angles: np.ndarray, fps_in: float, fps_out: float, num_out: int | None = None) -> np.ndarray:
    """Angles [N, C] at ``fps_in`` linearly resampled to ``fps_out`` ([num_out, C]; default the same duration)."""
    angles = np.asarray(angles, np.float64)
    n = len(angles)
    if num_out is None:
        num_out = max(1, int(round(n * fps_out / fps_in)))
    t_out = np.arange(num_out) / fps_out
    t_in = np.arange(n) / fps_in
    return np.stack([np.interp(t_out, t_in, angles[:, c]) for c in range(angles.shape[1])], axis=1)


def relative_angles(angles_rad: np.ndarray, valid: np.ndarray | None = None, frame: int = 0) -> np.ndarray:
    """[T, 3] degrees of a fit's angles (radians [T, >=3]) relative to frame ``frame`` (default its first valid
    frame); invalid frames hold the last valid value."""
    deg = np.degrees(np.asarray(angles_rad, np.float64)[:, :3])
    if valid is not None and np.any(valid):
        valid = np.asarray(valid, bool)
        t = np.arange(len(deg))
        last = np.maximum.accumulate(np.where(valid, t, -1))
        last = np.where(last >= 0, last, int(np.argmax(valid)))
        deg = deg[last]
    return deg - deg[int(frame) % len(deg)]


def pingpong_indices(length: int, num: int) -> np.ndarray:
    """[num] indices 0, 1, ..., length-1, length-2, ..., 0, 1, ...: a loop with mirrored seams."""
    if length <= 1:
        return np.zeros(num, np.int64)
    period = 2 * (length - 1)
    k = np.arange(num) % period
    return np.where(k < length, k, period - k)


def copy_motion(reference_deg: np.ndarray, reference_fps: float, num_frames: int, fps: float) -> np.ndarray:
    """[num_frames, 3] offsets: the reference's relative angles ([R, 3] deg at ``reference_fps``) resampled to
    ``fps`` and looped back and forth (never a jump)."""
    ref = resample_angles(reference_deg, reference_fps, fps)
    return ref[pingpong_indices(len(ref), num_frames)] - ref[0]


# ------------------------------------------------------------------------------------------------ VAR style
def _lagged(x: np.ndarray, order: int) -> tuple[np.ndarray, np.ndarray]:
    """Design [N - p, 3p] and target [N - p, 3] of a VAR(p) on x [N, 3]."""
    rows = [x[order - 1 - i:len(x) - 1 - i] for i in range(order)]
    return np.concatenate(rows, axis=1), x[order:]


def _companion(coefs: np.ndarray) -> np.ndarray:
    p, c = coefs.shape[0], coefs.shape[1]
    top = np.concatenate(list(coefs), axis=1)
    if p == 1:
        return top
    low = np.concatenate([np.eye(c * (p - 1)), np.zeros((c * (p - 1), c))], axis=1)
    return np.concatenate([top, low], axis=0)


def stationary_std(coefs: np.ndarray, noise_cov: np.ndarray) -> np.ndarray:
    """[3] stationary standard deviation of a stable VAR (discrete Lyapunov equation of its companion form)."""
    from scipy.linalg import solve_discrete_lyapunov

    comp = _companion(coefs)
    q = np.zeros_like(comp)
    c = coefs.shape[1]
    q[:c, :c] = noise_cov
    sigma = solve_discrete_lyapunov(comp, q)
    return np.sqrt(np.maximum(np.diag(sigma)[:c], 1e-12))


def _stabilise(coefs: np.ndarray, max_radius: float = 0.985) -> np.ndarray:
    """Shrink VAR coefficients until the companion matrix's spectral radius is at most ``max_radius``."""
    coefs = np.asarray(coefs, np.float64).copy()
    for _ in range(50):
        rho = float(np.max(np.abs(np.linalg.eigvals(_companion(coefs)))))
        if rho <= max_radius:
            break
        shrink = max_radius / rho
        coefs = np.stack([coefs[i] * shrink ** (i + 1) for i in range(len(coefs))])
    return coefs


def fit_head_style(segments: Sequence[np.ndarray], fps: Sequence[float] | float, order: int = 3,
                   ridge: float = 1e-2, smooth_s: float = 0.04, source: str = "") -> HeadStyle:
    """A VAR(``order``) style fitted by ridge least squares to angle sequences.

    Parameters
    ----------
    segments : angle sequences [N_i, 3] in degrees (each clip's own; their means are removed).
    fps : frame rate of each sequence (or one for all); each is resampled to ``STYLE_FPS`` first.
    order : VAR order p. ridge : ridge weight on the coefficients (relative to the data's variance).
    smooth_s : Gaussian sigma (s) applied to each sequence first (removes fitting jitter).

    Returns
    -------
    HeadStyle whose ``std_deg`` is the median over segments of their per-angle std (a robust "typical clip").
    """
    rates = [float(fps)] * len(segments) if np.isscalar(fps) else [float(f) for f in fps]
    xs, ys, stds, speeds = [], [], [], []
    for seg, rate in zip(segments, rates):
        a = resample_angles(np.asarray(seg, np.float64)[:, :3], rate, STYLE_FPS)
        a = _smooth(a, smooth_s * STYLE_FPS) - a.mean(0)
        if len(a) <= order + 2:
            continue
        x, y = _lagged(a, order)
        xs.append(x)
        ys.append(y)
        stds.append(a.std(0))
        speeds.append(np.abs(np.diff(a, axis=0)).mean(0) * STYLE_FPS)
    if not xs:
        raise ValueError("no angle sequence is long enough to fit a head style")
    x, y = np.concatenate(xs), np.concatenate(ys)
    lam = ridge * float(np.mean(x * x)) * len(x)
    w = np.linalg.solve(x.T @ x + lam * np.eye(x.shape[1]), x.T @ y)  # [3p, 3]
    coefs = np.stack([w[3 * i:3 * i + 3].T for i in range(order)])
    coefs = _stabilise(coefs)
    resid = y - x @ np.concatenate([c.T for c in coefs], axis=0)
    cov = np.cov(resid.T) + 1e-6 * np.eye(3)
    stats = {"clip_std_deg": np.round(np.stack(stds), 3).tolist(),
             "clip_mean_speed_deg_s": np.round(np.stack(speeds), 3).tolist()}
    return HeadStyle(fps=STYLE_FPS, coefs=coefs, noise_cov=cov, std_deg=np.median(np.stack(stds), axis=0),
                     smooth_s=smooth_s, source=source, stats=stats)


def _smooth(x: np.ndarray, sigma_frames: float) -> np.ndarray:
    if sigma_frames <= 0.05:
        return np.asarray(x, np.float64)
    from scipy.ndimage import gaussian_filter1d

    return gaussian_filter1d(np.asarray(x, np.float64), sigma_frames, axis=0, mode="nearest")


def builtin_head_style() -> HeadStyle:
    """The built-in talking-head style (``thead/audio/data/head_style.json``; see tools/derive_head_style.py)."""
    text = resources.files("thead.audio").joinpath("data", STYLE_FILE).read_text(encoding="utf8")
    return HeadStyle.from_dict(json.loads(text)["style"])


def onset_events(onset: np.ndarray, speech: np.ndarray, fps: float, min_pause_s: float = 0.25,
                 min_spacing_s: float = 1.2, percentile: float = 92.0) -> tuple[np.ndarray, np.ndarray]:
    """Strong speech onsets: (frames [K], strength [K] in (0, 1]).

    Phrase starts (speech after a pause of ``min_pause_s``) count with strength 1; onset-strength peaks inside
    speech above the ``percentile`` of speech frames with strength 0.6; events closer than ``min_spacing_s``
    keep the stronger one.
    """
    speech = np.asarray(speech, bool)
    onset = np.asarray(onset, np.float64)
    n = len(speech)
    events: list[tuple[int, float]] = []
    gap = int(round(min_pause_s * fps))
    run = gap
    for t in range(n):
        if speech[t] and run >= gap:
            events.append((t, 1.0))
        run = 0 if speech[t] else run + 1
    if speech.sum() > 3:
        thr = float(np.percentile(onset[speech], percentile))
        for t in range(1, n - 1):
            if speech[t] and onset[t] >= thr and onset[t] >= onset[t - 1] and onset[t] >= onset[t + 1]:
                events.append((t, 0.6))
    events.sort(key=lambda e: (-e[1], e[0]))
    spacing = int(round(min_spacing_s * fps))
    kept: list[tuple[int, float]] = []
    for t, s in events:
        if all(abs(t - k) >= spacing for k, _ in kept):
            kept.append((t, s))
    kept.sort()
    return np.array([k for k, _ in kept], np.int64), np.array([s for _, s in kept])


def nod_curve(frames: np.ndarray, strength: np.ndarray, num_frames: int, fps: float, depth_deg: float,
              lead_s: float, length_s: float) -> np.ndarray:
    """[num_frames] pitch offsets (deg, negative = down): a raised-cosine dip of ``depth_deg * strength`` per
    event, lowest ``lead_s`` before the event frame, ``length_s`` long."""
    t = np.arange(num_frames) / fps
    out = np.zeros(num_frames)
    for f, s in zip(frames, strength):
        centre = f / fps - lead_s
        u = (t - centre) / (0.5 * length_s)
        out -= depth_deg * s * np.where(np.abs(u) < 1, 0.5 * (1 + np.cos(np.pi * u)), 0.0)
    return out


def speech_gain(speech: np.ndarray, fps: float, pause_gain: float, rms_db: np.ndarray | None = None,
                energy_gain: float = 0.5, smooth_s: float = 0.15) -> np.ndarray:
    """[T] innovation scale of the head: ``pause_gain`` outside speech; inside it 1, or with ``rms_db`` [T]
    1 + ``energy_gain`` * (dB - the speech's median dB) / 20 within [0.5, 1.6] (louder speech, livelier head);
    smoothed with a Gaussian of ``smooth_s`` seconds."""
    speech = np.asarray(speech, bool)
    gain = np.where(speech, 1.0, pause_gain).astype(np.float64)
    if rms_db is not None and speech.sum() > 3 and energy_gain > 0:
        db = np.asarray(rms_db, np.float64)[:len(speech)]
        loud = np.clip(1.0 + energy_gain * (db - float(np.median(db[speech]))) / 20.0, 0.5, 1.6)
        gain = np.where(speech, loud, gain)
    return np.maximum(_smooth(gain, smooth_s * fps), 1e-3)


def simulate_style(style: HeadStyle, num_frames: int, fps: float, rng: np.random.Generator,
                   speech: np.ndarray | None = None, onset: np.ndarray | None = None,
                   nods: bool = True, rms_db: np.ndarray | None = None, energy_gain: float = 0.5,
                   match_std: bool = True) -> np.ndarray:
    """[num_frames, 3] offsets (deg) drawn from ``style`` at ``fps``, starting at 0.

    speech [num_frames] bool scales the innovations (``speech_gain``: ``pause_gain`` in pauses, with
    ``rms_db`` [num_frames] growing with loudness in speech); with ``onset`` [num_frames] (onset strength) and
    ``nods``, strong onsets add nods. The draw is smoothed (``smooth_s``), scaled by std_deg / the VAR's
    stationary std, and with ``match_std`` (clips of at least ``MATCH_STD_MIN_S``) the whole draw, nods
    included, is rescaled per angle so that its own std is ``std_deg`` (factor limited to [0.67, 1.5]: a
    short draw that barely moved is not stretched into fast swings). It starts
    where the process passes closest to the rest pose (searched over 10 s after a 5 s burn-in), and what
    remains of that first offset decays with a 0.5 s time constant: the first frame shows the source's own
    pose, and no swing follows.
    """
    n_style = max(2, int(np.ceil(num_frames * style.fps / fps)) + 2)
    burn = int(5 * style.fps)
    search = int(10 * style.fps)  # the draw starts where the process passes near the rest pose
    p = style.order
    chol = np.linalg.cholesky(style.noise_cov + 1e-9 * np.eye(3))
    total = burn + search + n_style
    e = rng.standard_normal((total, 3)) @ chol.T
    x = np.zeros((total, 3))
    for t in range(p, burn + search):
        x[t] = sum(style.coefs[i] @ x[t - 1 - i] for i in range(p)) + e[t]
    scale = stationary_std(style.coefs, style.noise_cov)
    start = burn + int(np.argmin(np.linalg.norm(x[burn:burn + search] / scale, axis=1)))
    if speech is not None and len(speech):
        gain = speech_gain(speech, fps, style.pause_gain, rms_db, energy_gain)
        gain = np.interp(np.arange(n_style) / style.fps, np.arange(len(gain)) / fps, gain)
        e[start + 1:start + 1 + n_style] *= (gain / np.sqrt(np.mean(gain ** 2)))[:len(e) - start - 1, None]
    for t in range(start + 1, start + n_style):
        x[t] = sum(style.coefs[i] @ x[t - 1 - i] for i in range(p)) + e[t]
    x = _smooth(x[:start + n_style], style.smooth_s * style.fps)[start:]
    x *= (np.asarray(style.std_deg) / scale)[None]
    out = resample_angles(x, style.fps, fps, num_frames)
    ease = 1.0 - np.exp(-np.arange(num_frames) / (0.5 * fps))
    out = out - out[0][None] * (1.0 - ease)[:, None]
    if nods and onset is not None and speech is not None and style.nod_deg > 0:
        frames, strength = onset_events(onset, speech, fps)
        out[:, 1] += nod_curve(frames, strength, num_frames, fps, style.nod_deg, style.nod_lead_s, style.nod_s)
    if match_std and num_frames >= MATCH_STD_MIN_S * fps:
        own = out.std(0)
        factor = np.clip(np.asarray(style.std_deg, np.float64) / np.maximum(own, 1e-9), 0.67, 1.5)
        out = out * np.where(own > 1e-9, factor, 1.0)[None]
    return out


def ease_in(num_frames: int, frames: float) -> np.ndarray:
    """[num_frames] weights: 0 on frame 0, rising along a raised cosine to 1 at ``frames`` (a fraction allowed),
    1 after it; all ones when ``frames`` <= 0."""
    if frames <= 0:
        return np.ones(num_frames)
    u = np.clip(np.arange(num_frames) / frames, 0.0, 1.0)
    return 0.5 * (1.0 - np.cos(np.pi * u))


def centre_curve(centre_deg: np.ndarray, num_frames: int, fps: float, ease_s: float) -> np.ndarray:
    """[num_frames, 3] degrees: 0 on the first frame, rising to ``centre_deg`` [3] along a raised cosine over
    ``ease_s`` seconds, then constant."""
    return ease_in(num_frames, max(ease_s * fps, 1e-9))[:, None] * np.asarray(centre_deg, np.float64)[None]


def keyframe_curve(values: Sequence[float], num_frames: int) -> np.ndarray:
    """[num_frames] degrees: ``values`` placed evenly from the first to the last frame, linearly interpolated
    (one value: constant; none: zeros)."""
    values = [float(v) for v in values]
    if not values:
        return np.zeros(num_frames)
    if len(values) == 1 or num_frames == 1:
        return np.full(num_frames, values[0])
    knots = np.linspace(0, num_frames - 1, len(values))
    return np.interp(np.arange(num_frames), knots, values)


def soft_limit(x: np.ndarray, limit: np.ndarray) -> np.ndarray:
    """x / limit through tanh, times limit: unchanged when small, never beyond ``limit``."""
    limit = np.asarray(limit, np.float64)
    return limit * np.tanh(np.asarray(x, np.float64) / limit)


@dataclass
class HeadTrack:
    """offsets_deg [T, 3] (yaw, pitch, roll) from the source pose; mode that made them; nod frames."""

    offsets_deg: np.ndarray
    mode: str
    nods: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    style_source: str = ""


def head_motion(num_frames: int, fps: float, config: HeadMotionConfig = HeadMotionConfig(),
                rng: np.random.Generator | int = 0, speech: np.ndarray | None = None,
                onset: np.ndarray | None = None, reference_deg: np.ndarray | None = None,
                reference_fps: float | None = None, style: HeadStyle | None = None,
                learned_deg: np.ndarray | None = None, rms_db: np.ndarray | None = None,
                centre_deg: np.ndarray | None = None) -> HeadTrack:
    """Head offsets for ``num_frames`` frames at ``fps`` (see the module docstring).

    Parameters
    ----------
    config : mode, scale, keyframes, calibration.
    rng : Generator or seed. speech [T] bool, onset [T] (``AudioFeatures.onset``) and rms_db [T]
        (``AudioFeatures.rms_db``): speech coupling (``style`` mode).
    reference_deg [R, 3], reference_fps : a reference's relative angles (``relative_angles``) for ``copy``, and
        for ``style`` when ``style`` is None (a style is fitted to them).
    style : a HeadStyle for ``style`` mode (default: fitted to the reference, else the built-in one).
    learned_deg [T, 3] : the pose model's offsets for ``learned`` mode.
    centre_deg [3] : in ``style`` mode, the pose (offset from the source's) the motion settles around,
        reached over ``config.centre_ease_s`` (``centre_curve``): a source video's mean pose relative to the
        frame animated (WDA's first frame is turned 12 degrees of yaw away from where the speaker looks).

    Returns
    -------
    HeadTrack with offsets_deg [T, 3].
    """
    if config.mode not in POSE_MODES:
        raise ValueError(f"pose mode must be one of {POSE_MODES}, got '{config.mode}'")
    rng = rng if isinstance(rng, np.random.Generator) else np.random.default_rng(rng)
    motion = np.zeros((num_frames, 3))
    centre = np.zeros((num_frames, 3))
    nods = np.zeros(0, np.int64)
    source = ""
    if config.mode == "copy":
        if reference_deg is None or reference_fps is None:
            raise ValueError("pose mode 'copy' needs a reference")
        motion = copy_motion(reference_deg, reference_fps, num_frames, fps)
        source = "reference"
    elif config.mode == "style":
        if style is None:
            if reference_deg is not None and reference_fps is not None:
                # a clip's angles alone do not say how the head slows in pauses: the built-in style's measured
                # ratio (0.22; HeadStyle's default 0.5 made the head as busy in pauses as in speech)
                style = replace(fit_head_style([reference_deg], reference_fps, source="reference"),
                                pause_gain=builtin_head_style().pause_gain)
            else:
                style = builtin_head_style()
        motion = simulate_style(style, num_frames, fps, rng, speech, onset, config.nods, rms_db,
                                config.energy_gain, config.match_std)
        if centre_deg is not None:
            centre = centre_curve(centre_deg, num_frames, fps, config.centre_ease_s)
        if config.nods and onset is not None and speech is not None:
            nods = onset_events(onset, speech, fps)[0]
        source = style.source
    elif config.mode == "learned":
        if learned_deg is None:
            raise ValueError("pose mode 'learned' needs a trained pose model's output")
        motion = np.asarray(learned_deg, np.float64)[:num_frames]
        source = "learned"
    motion = motion * float(config.head_scale)
    centre = centre * float(config.head_scale)
    if config.calibrate:
        motion = motion / np.asarray(RENDER_POSE_GAIN)[None]
        centre = centre / np.asarray(RENDER_POSE_GAIN)[None]
    if config.mode != "still":
        limit = np.asarray(config.max_deg, np.float64)
        if source == "reference":  # a reference's own range is shown (a lively speaker's 9-degree yaw std too)
            limit = np.maximum(limit, 3.0 * motion.std(0))
        motion = soft_limit(motion, limit)
    motion = motion + centre
    keys = np.stack([keyframe_curve(config.yaw, num_frames), keyframe_curve(config.pitch, num_frames),
                     keyframe_curve(config.roll, num_frames)], axis=1)
    return HeadTrack(offsets_deg=(motion + keys).astype(np.float64), mode=config.mode, nods=nods,
                     style_source=source)


__all__ = ["HeadMotionConfig", "HeadStyle", "HeadTrack", "POSE_MODES", "RENDER_POSE_GAIN", "STYLE_FPS",
           "builtin_head_style", "centre_curve", "copy_motion", "ease_in", "fit_head_style", "head_motion",
           "keyframe_curve", "nod_curve", "onset_events", "pingpong_indices", "relative_angles", "resample_angles",
           "simulate_style", "soft_limit", "speech_gain", "stationary_std"]

"""Phones to mouth units: a viseme table, Cohen-Massaro coarticulation, closures, loudness and silence.

Output: per video frame, CHANGES of the mouth units ``MOUTH_UNITS`` from the face's rest (unit coefficients of
``thead.facemodel.expressions``: ``jaw_open`` 1 = lower lip 2.2 cm down, ``lips_part`` 1 = lips 0.7 cm apart,
negative = pressed together, ``pucker``, ``lip_stretch``, ``chin_raise``), plus the absolute limits that
bilabial closures impose (``MouthTrack.close_jaw`` / ``close_lips``).

Coarticulation (Cohen & Massaro 1993): each phone s has a target T_s,u per unit u and a dominance
``D_s,u(t) = alpha_s,u * exp(-d_s(t) / w_s)`` where d_s(t) is the distance (s) from t to the phone's interval
(0 inside it) and w_s its reach; the unit's value is ``sum_s D_s,u T_s,u / sum_s D_s,u``. Bilabials (P B M)
dominate the lips and jaw, labiodentals (F V) the lips, rounded vowels and W the pucker; lingual consonants
(T D N L S Z K G ...) have low dominance and take their neighbours' shapes. Silence dominates too: the mouth
closes in pauses.

Then, in order: phones are moved ``lead_s`` earlier (the mouth leads the sound by 40-80 ms); the curve is
sampled ``SUBSAMPLES`` times per frame and averaged; openings (positive jaw_open / lips_part) follow loudness
(``loudness_gain``); ``mouth_scale`` multiplies everything; every P/B/M is closed on at least
``closure_frames`` frames; outside speech the changes are multiplied by an envelope that is exactly 0 more than
``silence_ramp_s`` from any speech, so a pause holds the rest mouth with no jitter at all.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from thead.audio.features import AudioFeatures
from thead.audio.phonemes import Phone
from thead.facemodel.expressions import MOUTH_UNITS
SUBSAMPLES = 4

# Targets (changes from rest) per phone: jaw_open, lips_part, pucker, lip_stretch, chin_raise.
_T = {
    "AA": (0.36, 0.50, 0.00, 0.00, 0.0), "AE": (0.30, 0.45, 0.00, 0.20, 0.0), "AH": (0.26, 0.40, 0.00, 0.05, 0.0),
    "AO": (0.30, 0.40, 0.30, 0.00, 0.0), "AW": (0.30, 0.42, 0.20, 0.00, 0.0), "AY": (0.30, 0.45, 0.00, 0.10, 0.0),
    "EH": (0.22, 0.38, 0.00, 0.20, 0.0), "ER": (0.12, 0.25, 0.30, 0.00, 0.0), "EY": (0.18, 0.32, 0.00, 0.30, 0.0),
    "IH": (0.14, 0.30, 0.00, 0.30, 0.0), "IY": (0.09, 0.25, 0.00, 0.45, 0.0), "OW": (0.22, 0.32, 0.55, 0.00, 0.0),
    "OY": (0.22, 0.35, 0.40, 0.00, 0.0), "UH": (0.13, 0.25, 0.45, 0.00, 0.0), "UW": (0.08, 0.18, 0.70, 0.00, 0.0),
    "P": (0.00, -0.25, 0.00, 0.00, 0.0), "B": (0.00, -0.25, 0.00, 0.00, 0.0), "M": (0.00, -0.22, 0.00, 0.00, 0.0),
    "F": (0.04, -0.05, 0.00, 0.05, 0.35), "V": (0.04, -0.05, 0.00, 0.05, 0.35),
    "TH": (0.08, 0.22, 0.00, 0.05, 0.0), "DH": (0.08, 0.22, 0.00, 0.05, 0.0),
    "T": (0.08, 0.20, 0.00, 0.10, 0.0), "D": (0.08, 0.20, 0.00, 0.10, 0.0), "N": (0.08, 0.18, 0.00, 0.10, 0.0),
    "L": (0.12, 0.25, 0.00, 0.05, 0.0), "S": (0.04, 0.15, 0.00, 0.25, 0.0), "Z": (0.04, 0.15, 0.00, 0.25, 0.0),
    "SH": (0.06, 0.20, 0.45, 0.00, 0.0), "ZH": (0.06, 0.20, 0.45, 0.00, 0.0), "CH": (0.06, 0.18, 0.40, 0.00, 0.0),
    "JH": (0.06, 0.18, 0.40, 0.00, 0.0), "K": (0.14, 0.25, 0.00, 0.05, 0.0), "G": (0.14, 0.25, 0.00, 0.05, 0.0),
    "NG": (0.12, 0.22, 0.00, 0.05, 0.0), "HH": (0.20, 0.32, 0.00, 0.00, 0.0), "R": (0.10, 0.20, 0.35, 0.00, 0.0),
    "W": (0.05, 0.10, 0.70, 0.00, 0.0), "Y": (0.08, 0.20, 0.00, 0.30, 0.0), "SIL": (0.0, 0.0, 0.0, 0.0, 0.0),
}
# Dominance classes: alpha per unit (jaw, lips, pucker, stretch, chin) and reach w (s). The reaches are short:
# measured against fitted real mouths (WDA, Megamind), halving them from 30-70 ms raised the opening correlation
# by about 0.03 (phone-loop timing is the limit, not the blending).
_CLASSES = {
    "bilabial": ((4.0, 8.0, 1.0, 1.0, 1.0), 0.015),
    "labiodental": ((2.5, 5.0, 1.0, 1.0, 4.0), 0.015),
    "rounded": ((1.2, 1.2, 4.0, 2.0, 1.0), 0.035),
    "vowel": ((1.2, 1.2, 1.0, 1.2, 1.0), 0.030),
    "lingual": ((0.35, 0.35, 0.3, 0.5, 0.3), 0.010),
    "silence": ((0.5, 0.5, 0.5, 0.5, 0.5), 0.020),
}
_CLASS_OF = {p: "bilabial" for p in ("P", "B", "M")}
_CLASS_OF.update({p: "labiodental" for p in ("F", "V")})
_CLASS_OF.update({p: "rounded" for p in ("UW", "UH", "OW", "OY", "AO", "W", "SH", "ZH", "CH", "JH", "ER", "R")})
_CLASS_OF.update({p: "vowel" for p in ("AA", "AE", "AH", "AW", "AY", "EH", "EY", "IH", "IY", "HH")})
_CLASS_OF.update({p: "lingual" for p in ("TH", "DH", "T", "D", "N", "L", "S", "Z", "K", "G", "NG", "Y")})
_CLASS_OF["SIL"] = "silence"
BILABIALS = ("P", "B", "M")


@dataclass(frozen=True)
class VisemeConfig:
    """Settings of the phone-to-mouth mapping.

    lead_s: phones move this much earlier (mouth ahead of the sound). mouth_scale: multiplies every change.
    opening_gain: multiplies the openings (positive jaw_open / lips_part) of the table: with 1 the generated
    inner-lip opening's std was 0.80 of the fitted real one (WDA 0.25 vs 0.33 cm, Megamind 0.29 vs 0.34 cm);
    the mesh engine then shows about 0.66 of an asked opening change (WDA driven by its own audio: rendered
    inner-lip gap / asked cm 0.093 against the real clip's 0.141 per fitted cm), so 1.5 rather than 1.25 (1.8
    over-opened an espeak sentence on s0: jaw_open 0.63, twice the real clip's 95th percentile).
    gains: per-unit multipliers {unit: gain} (e.g. learned per person by ``thead.audio.train``).
    closure_frames: frames each P/B/M holds the lips shut (at least). close_jaw / close_lips: absolute
    ceilings of jaw_open / lips_part on those frames. loudness_db_span: dB above/below the speech's median level
    that raise/lower openings by 100 %; loudness_gain_range: limits of that gain. silence_ramp_s: length of
    the fade between speech and a closed, still mouth. min_pause_s: pauses shorter than this stay speech.
    """

    lead_s: float = 0.06
    mouth_scale: float = 1.0
    opening_gain: float = 1.5
    gains: dict[str, float] = field(default_factory=dict)
    closure_frames: int = 2
    close_jaw: float = 0.03
    close_lips: float = -0.12
    loudness_db_span: float = 24.0
    loudness_gain_range: tuple[float, float] = (0.45, 1.4)
    silence_ramp_s: float = 0.12
    min_pause_s: float = 0.12


@dataclass
class MouthTrack:
    """Mouth unit changes per video frame.

    delta [T, U] float32 changes from rest of ``units`` (U = len(MOUTH_UNITS)). closed [T] bool: frames of a
    bilabial closure, on which absolute jaw_open <= close_jaw and lips_part <= close_lips must hold.
    speech [T] bool: frames within speech (the mouth is at rest elsewhere). scale: the ``mouth_scale`` the
    changes were made with; a closure moves a rest above its ceiling that share of the way (0: no closure: a
    still mouth is still).
    """

    delta: np.ndarray
    closed: np.ndarray
    speech: np.ndarray
    close_jaw: float
    close_lips: float
    units: tuple[str, ...] = MOUTH_UNITS
    scale: float = 1.0

    def unit(self, name: str) -> np.ndarray:
        return self.delta[:, self.units.index(name)]


def viseme_target(label: str) -> np.ndarray:
    """Target changes [U] (``MOUTH_UNITS`` order) of one phone (unknown labels: SIL)."""
    return np.asarray(_T.get(label, _T["SIL"]), np.float64)


def frame_times(num_frames: int, fps: float, subsamples: int = SUBSAMPLES) -> np.ndarray:
    """[T, subsamples] instants (s) evenly inside each frame's interval [t / fps, (t + 1) / fps)."""
    return (np.arange(num_frames)[:, None] + (np.arange(subsamples)[None] + 0.5) / subsamples) / fps


def coarticulate(phones: list[Phone], times: np.ndarray) -> np.ndarray:
    """Cohen-Massaro blend of the phones' targets at ``times`` [N] seconds: [N, U] unit changes."""
    times = np.asarray(times, np.float64).reshape(-1)
    if not phones:
        return np.zeros((len(times), len(MOUTH_UNITS)))
    start = np.array([p.start for p in phones])
    end = np.array([p.end for p in phones])
    targets = np.stack([viseme_target(p.label) for p in phones])  # [S, U]
    cls = [_CLASSES[_CLASS_OF.get(p.label, "silence")] for p in phones]
    alpha = np.array([c[0] for c in cls])  # [S, U]
    reach = np.array([c[1] for c in cls])  # [S]
    out = np.empty((len(times), len(MOUTH_UNITS)))
    for a in range(0, len(times), 2048):  # bounded memory: [chunk, S]
        t = times[a:a + 2048, None]
        dist = np.maximum(np.maximum(start[None] - t, t - end[None]), 0.0)
        # Only phones within 12 reaches count (the rest are below exp(-12)); keeps sums exact in long pauses.
        w = np.where(dist < 12 * reach[None], np.exp(-dist / reach[None]), 0.0)  # [N, S]
        num = w @ (alpha * targets)
        den = w @ alpha
        out[a:a + 2048] = np.where(den > 1e-12, num / np.maximum(den, 1e-12), 0.0)
    return out


def loudness_gain(features: AudioFeatures, speech: np.ndarray, config: VisemeConfig = VisemeConfig()) -> np.ndarray:
    """[T] multiplier of the openings: 1 at the speech's median level, +-1 per ``loudness_db_span`` dB, within
    ``loudness_gain_range``; smoothed over 3 frames."""
    db = np.asarray(features.rms_db, np.float64)
    ref = float(np.median(db[speech])) if speech.any() else float(np.median(db))
    g = 1.0 + (db - ref) / config.loudness_db_span
    g = np.convolve(np.pad(g, 1, mode="edge"), np.ones(3) / 3.0, mode="valid")
    return np.clip(g, *config.loudness_gain_range)


def speech_frames(phones: list[Phone], num_frames: int, fps: float, lead_s: float, min_pause_s: float) -> np.ndarray:
    """[T] bool: frames overlapping a non-SIL phone (moved ``lead_s`` earlier); pauses shorter than
    ``min_pause_s`` count as speech."""
    mask = np.zeros(num_frames, bool)
    for p in phones:
        if p.label == "SIL":
            continue
        a = int(np.floor((p.start - lead_s) * fps))
        b = int(np.ceil((p.end - lead_s) * fps))
        mask[max(a, 0):max(min(b, num_frames), 0)] = True
    return bridge_gaps(mask, int(round(min_pause_s * fps)))


def bridge_gaps(mask: np.ndarray, max_gap: int) -> np.ndarray:
    """mask [T] bool with interior False runs of at most ``max_gap`` frames set True."""
    out = mask.copy()
    idx = np.flatnonzero(mask)
    if len(idx) < 2 or max_gap <= 0:
        return out
    gaps = np.flatnonzero(np.diff(idx) - 1 > 0)
    for g in gaps:
        if idx[g + 1] - idx[g] - 1 <= max_gap:
            out[idx[g]:idx[g + 1]] = True
    return out


def silence_envelope(speech: np.ndarray, fps: float, ramp_s: float) -> np.ndarray:
    """[T] in [0, 1]: 1 on speech frames, a raised-cosine fade over ``ramp_s`` seconds beside them, exactly 0
    farther away."""
    n = len(speech)
    if not speech.any():
        return np.zeros(n)
    idx = np.flatnonzero(speech)
    pos = np.arange(n)
    # distance (frames) to the nearest speech frame
    right = np.searchsorted(idx, pos)
    d_right = np.where(right < len(idx), idx[np.minimum(right, len(idx) - 1)] - pos, n)
    d_left = np.where(right > 0, pos - idx[np.maximum(right - 1, 0)], n)
    dist = np.minimum(np.abs(d_right), np.abs(d_left)) / fps
    ramp = max(ramp_s, 1e-6)
    return np.where(dist <= 0, 1.0, np.where(dist < ramp, 0.5 * (1 + np.cos(np.pi * dist / ramp)), 0.0))


def _closure_frames(phones: list[Phone], num_frames: int, fps: float, lead_s: float, hold: int) -> np.ndarray:
    """[T] bool: frames on which a bilabial is shut (its frames, at least ``hold`` around its centre)."""
    closed = np.zeros(num_frames, bool)
    for p in phones:
        if p.label not in BILABIALS:
            continue
        s, e = p.start - lead_s, p.end - lead_s
        a = max(int(np.floor(s * fps + 0.5)), 0)
        b = min(int(np.floor(e * fps + 0.5)), num_frames)
        if b - a < hold:
            c = (0.5 * (s + e)) * fps
            a = int(np.clip(np.floor(c - hold / 2 + 0.5), 0, max(num_frames - hold, 0)))
            b = min(a + hold, num_frames)
        closed[a:b] = True
    return closed


def _apply_gains_and_scale(delta: np.ndarray, gain: np.ndarray, config: VisemeConfig) -> np.ndarray:
    out = delta.copy()
    for k in (0, 1):  # openings follow loudness; closures (negative lips_part) do not
        out[:, k] = np.where(out[:, k] > 0, out[:, k] * gain * config.opening_gain, out[:, k])
    for name, g in config.gains.items():
        if name in MOUTH_UNITS:
            out[:, MOUTH_UNITS.index(name)] *= float(g)
    return out * config.mouth_scale


def phones_to_mouth(phones: list[Phone], features: AudioFeatures,
                    config: VisemeConfig = VisemeConfig()) -> MouthTrack:
    """Mouth unit changes for ``features.num_frames`` frames from timed phones (see the module docstring).

    Parameters
    ----------
    phones : timed phones (``thead.audio.phonemes``), SIL included or not.
    features : per-frame audio features (frame count, fps, loudness).
    config : VisemeConfig.

    Returns
    -------
    MouthTrack with delta [T, U]; all zeros (and ``speech`` all False) without speech phones.
    """
    n, fps = features.num_frames, features.fps
    shifted = [Phone(p.label, p.start - config.lead_s, p.end - config.lead_s, p.word) for p in phones]
    times = frame_times(n, fps)
    delta = coarticulate(shifted, times.ravel()).reshape(n, SUBSAMPLES, -1).mean(1)
    speech = speech_frames(phones, n, fps, config.lead_s, config.min_pause_s)
    delta = _apply_gains_and_scale(delta, loudness_gain(features, speech, config), config)
    closed = _closure_frames(phones, n, fps, config.lead_s, config.closure_frames)
    delta[closed, 1] = np.minimum(delta[closed, 1], viseme_target("P")[1] * config.mouth_scale)
    delta[closed, 0] = np.minimum(delta[closed, 0], 0.0)
    env = silence_envelope(speech | closed, fps, config.silence_ramp_s)
    delta = delta * env[:, None]
    return MouthTrack(delta=delta.astype(np.float32), closed=closed, speech=speech, close_jaw=config.close_jaw,
                      close_lips=config.close_lips, scale=config.mouth_scale)


def acoustic_mouth(features: AudioFeatures, config: VisemeConfig = VisemeConfig()) -> MouthTrack:
    """Mouth unit changes from energy and spectral shape alone (music, singing, other languages).

    Opening follows loudness above the noise floor weighted by voicing (vocals are periodic, drums are not);
    a high spectral centroid on voiced frames spreads the lips (front vowels), a low one rounds them; the curve
    is smoothed over ~50 ms and led by ``lead_s``. No closures are made (nothing says where a P is).
    """
    n, fps = features.num_frames, features.fps
    db = np.asarray(features.rms_db, np.float64)
    active = np.asarray(features.voice_activity, bool)
    speech = bridge_gaps(active, int(round(config.min_pause_s * fps)))
    if not active.any():
        return MouthTrack(np.zeros((n, len(MOUTH_UNITS)), np.float32), np.zeros(n, bool), speech,
                          config.close_jaw, config.close_lips)
    floor = float(np.percentile(db, 10))
    top = float(np.percentile(db[active], 95))
    floor = min(floor, top - 20.0)
    loud = np.clip((db - floor) / max(top - floor, 1e-6), 0.0, 1.2) ** 1.5
    k = max(1, int(round(0.1 * fps)))
    voicing = np.convolve(np.pad(features.voicing, k, mode="edge"), np.ones(2 * k + 1) / (2 * k + 1), "valid")
    opening = loud * np.clip(0.15 + 1.2 * voicing, 0.0, 1.0) * speech
    cen = np.asarray(features.centroid_hz, np.float64)
    voiced = features.voicing > 0.5
    if voiced.sum() > 3:
        z = (cen - np.median(cen[voiced])) / (np.std(cen[voiced]) + 1e-6)
    else:
        z = np.zeros(n)
    delta = np.zeros((n, len(MOUTH_UNITS)))
    delta[:, 0] = 0.32 * config.opening_gain * opening
    delta[:, 1] = 0.45 * config.opening_gain * opening
    delta[:, 2] = 0.25 * np.clip(-z, 0, 2) / 2 * opening
    delta[:, 3] = 0.25 * np.clip(z, 0, 2) / 2 * opening
    sigma = 0.03 * fps
    if sigma > 0.3:
        from scipy.ndimage import gaussian_filter1d

        delta = gaussian_filter1d(delta, sigma, axis=0, mode="nearest")
    shift = int(round(config.lead_s * fps))
    if shift > 0:
        delta = np.concatenate([delta[shift:], np.repeat(delta[-1:], shift, 0)])[:n]
        speech = np.concatenate([speech[shift:], np.repeat(speech[-1:], shift)])[:n] | speech
    for name, g in config.gains.items():
        if name in MOUTH_UNITS:
            delta[:, MOUTH_UNITS.index(name)] *= float(g)
    delta *= config.mouth_scale
    env = silence_envelope(speech, fps, config.silence_ramp_s)
    delta = delta * env[:, None]
    return MouthTrack(delta=delta.astype(np.float32), closed=np.zeros(n, bool), speech=speech,
                      close_jaw=config.close_jaw, close_lips=config.close_lips, scale=config.mouth_scale)


def apply_mouth(rest: np.ndarray, track: MouthTrack, names: tuple[str, ...] | list[str],
                bounds: tuple[np.ndarray, np.ndarray] | None = None) -> np.ndarray:
    """Absolute expression [T, E] = rest [E] + the track's changes, closures enforced, clipped to ``bounds``.

    On closure frames jaw_open and lips_part are held at most at ``close_jaw`` / ``close_lips``, or, with a
    ``track.scale`` below 1, at the rest moved that share of the way to them (``--mouth-scale 0``: no closure).

    names: the E expression unit names (``EXPRESSION_NAMES``); bounds: (lower [E], upper [E]) or None.
    """
    names = list(names)
    n = len(track.delta)
    expr = np.repeat(np.asarray(rest, np.float64)[None], n, 0)
    for k, unit in enumerate(track.units):
        if unit in names:
            expr[:, names.index(unit)] += track.delta[:, k]
    if track.closed.any():
        share = min(max(float(track.scale), 0.0), 1.0)
        for unit, close in (("jaw_open", track.close_jaw), ("lips_part", track.close_lips)):
            k = names.index(unit)
            ceiling = close + (1.0 - share) * max(float(rest[k]) - close, 0.0)
            expr[track.closed, k] = np.minimum(expr[track.closed, k], ceiling)
    if bounds is not None:
        expr = np.clip(expr, bounds[0], bounds[1])
    return expr.astype(np.float32)


def mouth_opening_cm(jaw_open: np.ndarray, lips_part: np.ndarray, lip_stretch: np.ndarray | float = 0.0,
                     chin_raise: np.ndarray | float = 0.0) -> np.ndarray:
    """Inner-lip gap (cm, mid-line, beyond the rest face) the units make on the 478-point model:
    2.26 jaw_open + 0.70 lips_part - 0.20 lip_stretch - 0.20 chin_raise (measured from the unit fields)."""
    return 2.26 * np.asarray(jaw_open) + 0.70 * np.asarray(lips_part) - 0.20 * np.asarray(lip_stretch) \
        - 0.20 * np.asarray(chin_raise)


__all__ = ["BILABIALS", "MOUTH_UNITS", "MouthTrack", "VisemeConfig", "acoustic_mouth", "apply_mouth",
           "bridge_gaps", "coarticulate", "frame_times", "loudness_gain", "mouth_opening_cm", "phones_to_mouth",
           "silence_envelope", "speech_frames", "viseme_target"]

"""Phonemes with timings from speech audio, offline: pocketsphinx's en-us model (shipped in its wheel).

Which source serves (``PhoneTrack.path``), best first:

* ``"alignment"``: a transcript is given. Its words are force-aligned to the audio (Viterbi over the word
  sequence with wide beams, ``bestpath`` off), then a second pass aligns their phones. Words missing from the
  CMU dictionary get a pronunciation from simple letter rules (``letters_to_phones``), numbers are spelled out.
* ``"phone_loop"``: no transcript. Phone-loop ("allphone") decoding with the phonetic language model and the
  settings of Rhubarb Lip Sync (language weight 0.8, beams 1e-20, batch cepstral mean normalisation, dither
  with a fixed seed): pocketsphinx's defaults collapse to a handful of phones. Each stretch of voice activity
  is decoded on its own, padded by ``PhonemeConfig.pad_s``.
* ``"acoustic"``: other languages (``language`` not English), music, singing, or audio the phone loop cannot
  read (too few phones per second of voice): no phones; ``thead.audio.visemes.acoustic_mouth`` drives the mouth
  from energy and spectral shape.
* ``"silence"``: no voice activity at all (a silent or near-silent track): the mouth stays closed.

Phones are ARPAbet without stress marks (AA, AE, ..., ZH) plus ``SIL``; pocketsphinx's noise units (+NSN+,
+SPN+, ...) are reported as ``SIL``. Times are seconds from the audio's start, on pocketsphinx's 10 ms grid.
"""

from __future__ import annotations

import functools
import os
import re
import time
from dataclasses import dataclass, field

import numpy as np

from thead.audio.features import HopFeatures
from thead.audio.io import SAMPLE_RATE

#: ARPAbet phones of the CMU dictionary (no stress), plus SIL.
PHONES: tuple[str, ...] = (
    "AA", "AE", "AH", "AO", "AW", "AY", "B", "CH", "D", "DH", "EH", "ER", "EY", "F", "G", "HH", "IH", "IY",
    "JH", "K", "L", "M", "N", "NG", "OW", "OY", "P", "R", "S", "SH", "T", "TH", "UH", "UW", "V", "W", "Y", "Z",
    "ZH", "SIL",
)
PATHS = ("alignment", "phone_loop", "acoustic", "silence")
FRAME_S = 0.01  # pocketsphinx frame (frate 100)


@dataclass(frozen=True)
class PhonemeConfig:
    """Settings of the phoneme sources.

    language: "en" uses pocketsphinx; anything else takes the acoustic path. phone_loop: False skips the phone
    loop when no transcript is given (acoustic path). lw, beam, pbeam: phone-loop language weight and beams
    (Rhubarb's). align_beam, align_pbeam, align_wbeam: forced-alignment beams (wide). pad_s: silence added
    around each decoded stretch. min_phone_rate: phones per second of voice activity below which the phone
    loop's answer is distrusted (acoustic path). speech_check: refuse music/singing for the phone loop
    (``speech_likeness``). seed: dither seed (same audio, same phones).
    """

    language: str = "en"
    phone_loop: bool = True
    lw: float = 0.8
    beam: float = 1e-20
    pbeam: float = 1e-20
    align_beam: float = 1e-80
    align_pbeam: float = 1e-80
    align_wbeam: float = 1e-60
    pad_s: float = 0.15
    min_phone_rate: float = 3.0
    speech_check: bool = True
    seed: int = 0


@dataclass(frozen=True)
class Phone:
    """One phone: ARPAbet ``label`` (or SIL) from ``start`` to ``end`` seconds; ``word`` when aligned."""

    label: str
    start: float
    end: float
    word: str = ""

    @property
    def centre(self) -> float:
        return 0.5 * (self.start + self.end)


@dataclass(frozen=True)
class Word:
    """One aligned word from ``start`` to ``end`` seconds."""

    text: str
    start: float
    end: float


@dataclass
class PhoneTrack:
    """Phones of an audio track and which source produced them (``path``, one of ``PATHS``).

    phones: in time order, SIL included. words: aligned words (alignment path only). notes: why a source was
    passed over. seconds: wall time spent. speech: ``speech_likeness`` numbers.
    """

    path: str
    phones: list[Phone] = field(default_factory=list)
    words: list[Word] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    seconds: float = 0.0
    speech: dict = field(default_factory=dict)

    @property
    def speech_phones(self) -> list[Phone]:
        """The phones that are not SIL."""
        return [p for p in self.phones if p.label != "SIL"]


# ------------------------------------------------------------------------------------------------ text
_ONES = ("zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen "
         "sixteen seventeen eighteen nineteen").split()
_TENS = "_ _ twenty thirty forty fifty sixty seventy eighty ninety".split()


def number_words(n: int) -> list[str]:
    """English words of a whole number 0 <= n < 10**9 (``number_words(42)`` -> ["forty", "two"])."""
    if n < 20:
        return [_ONES[n]]
    if n < 100:
        return [_TENS[n // 10]] + (number_words(n % 10) if n % 10 else [])
    for size, name in ((10 ** 6, "million"), (1000, "thousand"), (100, "hundred")):
        if n >= size:
            return number_words(n // size) + [name] + (number_words(n % size) if n % size else [])
    return []  # pragma: no cover


def normalize_transcript(text: str) -> list[str]:
    """Lower-case words of ``text``: punctuation dropped (apostrophes inside words kept), digits spelled out."""
    words: list[str] = []
    for token in re.findall(r"[A-Za-z0-9']+", text.replace("-", " ")):
        token = token.strip("'").lower()
        if not token:
            continue
        if token.isdigit():
            words.extend(number_words(int(token)) if len(token) < 10 else [_ONES[int(d)] for d in token])
        else:
            for part in re.findall(r"[a-z']+|\d+", token):
                words.extend(number_words(int(part)) if part.isdigit() else [part])
    return words


_LETTER_RULES: tuple[tuple[str, str], ...] = (
    ("tion", "SH AH N"), ("sion", "ZH AH N"), ("igh", "AY"), ("tch", "CH"), ("ough", "AO"),
    ("ch", "CH"), ("sh", "SH"), ("th", "TH"), ("ph", "F"), ("ng", "NG"), ("ck", "K"), ("qu", "K W"),
    ("wh", "W"), ("ee", "IY"), ("ea", "IY"), ("oo", "UW"), ("ou", "AW"), ("ow", "OW"), ("ai", "EY"),
    ("ay", "EY"), ("oi", "OY"), ("oy", "OY"), ("au", "AO"), ("aw", "AO"), ("ei", "EY"), ("ie", "IY"),
    ("a", "AE"), ("b", "B"), ("d", "D"), ("e", "EH"), ("f", "F"), ("h", "HH"), ("i", "IH"), ("j", "JH"),
    ("k", "K"), ("l", "L"), ("m", "M"), ("n", "N"), ("o", "AA"), ("p", "P"), ("q", "K"), ("r", "R"), ("s", "S"),
    ("t", "T"), ("u", "AH"), ("v", "V"), ("w", "W"), ("x", "K S"), ("z", "Z"),
)


def letters_to_phones(word: str) -> str:
    """A rough ARPAbet pronunciation (space-separated) of a word missing from the dictionary, by letter rules.

    Enough to place a name's mouth shapes (bilabials, rounded vowels) in time; not a G2P model.
    """
    w = re.sub(r"[^a-z]", "", word.lower())
    w = re.sub(r"(.)\1+", r"\1", w)  # doubled letters sound once
    out: list[str] = []
    i = 0
    while i < len(w):
        rest = w[i:]
        if rest == "e" and out:  # final silent e
            break
        if rest[0] == "c":
            out.append("S" if rest[1:2] in ("e", "i", "y") else "K")
            i += 1
            continue
        if rest[0] == "g":
            out.append("JH" if rest[1:2] in ("e", "i", "y") and i > 0 else "G")
            i += 1
            continue
        if rest[0] == "y":
            out.append("Y" if i == 0 else ("IY" if len(rest) == 1 else "IH"))
            i += 1
            continue
        for letters, phones in _LETTER_RULES:
            if rest.startswith(letters):
                out.extend(phones.split())
                i += len(letters)
                break
        else:  # pragma: no cover - every a-z letter has a rule
            i += 1
    return " ".join(out) if out else "AH"


# ------------------------------------------------------------------------------------------------ speech check
def speech_likeness(hops: HopFeatures) -> dict:
    """Numbers that tell speech from music and singing, from hop features.

    dips: share of active hops more than 12 dB below the loudest hop within +-0.5 s (syllable valleys; speech
    0.25-0.5, steady music ~0.05). voiced_runs_per_s: voiced onsets per active second (speech 3.5-7).
    voiced_run_p90_s: 90th percentile of voiced stretch lengths (speech ~0.2 s, sung notes ~0.9 s).
    active_s: seconds of voice activity. speech: all three in the speech range.
    """
    from scipy.ndimage import maximum_filter1d, uniform_filter1d

    active = hops.active
    active_s = float(active.sum() * hops.hop_s)
    if active.sum() < 10:
        return {"dips": 0.0, "voiced_runs_per_s": 0.0, "voiced_run_p90_s": 0.0, "active_s": active_s,
                "speech": False}
    db = uniform_filter1d(hops.rms_db, 3)
    win = max(3, int(round(1.0 / hops.hop_s)))
    dips = float((((maximum_filter1d(db, win) - db) > 12.0)[active]).mean())
    v = hops.voiced.astype(np.int8)
    edges = np.flatnonzero(np.diff(np.r_[0, v, 0]))
    runs = (edges[1::2] - edges[::2]) * hops.hop_s
    rate = len(runs) / max(active_s, 1e-6)
    p90 = float(np.percentile(runs, 90)) if len(runs) else 0.0
    speech = dips >= 0.15 and rate >= 2.5 and p90 <= 0.45
    return {"dips": round(dips, 3), "voiced_runs_per_s": round(rate, 2), "voiced_run_p90_s": round(p90, 3),
            "active_s": round(active_s, 2), "speech": bool(speech)}


# ------------------------------------------------------------------------------------------------ pocketsphinx
@functools.lru_cache(maxsize=1)
def _model_paths() -> dict[str, str]:
    import pocketsphinx

    root = pocketsphinx.get_model_path()
    return {"hmm": os.path.join(root, "en-us", "en-us"), "dict": os.path.join(root, "en-us", "cmudict-en-us.dict"),
            "allphone": os.path.join(root, "en-us", "en-us-phone.lm.bin")}


def _decoder(**settings):
    import pocketsphinx

    paths = _model_paths()
    return pocketsphinx.Decoder(hmm=paths["hmm"], dict=paths["dict"], loglevel="FATAL", **settings)


def _pcm16(samples: np.ndarray, pad: int = 0) -> bytes:
    x = np.asarray(samples, np.float64)
    if pad:
        x = np.concatenate([np.zeros(pad), x, np.zeros(pad)])
    return np.clip(np.round(x * 32767.0), -32768, 32767).astype("<i2").tobytes()


def _phone_label(name: str) -> str:
    name = re.sub(r"\d", "", name.upper())
    return name if name in PHONES else "SIL"


def _merge_silence(phones: list[Phone]) -> list[Phone]:
    """Sort, drop empty phones and merge neighbouring SILs."""
    out: list[Phone] = []
    for p in sorted(phones, key=lambda q: q.start):
        if p.end <= p.start:
            continue
        if out and p.label == "SIL" and out[-1].label == "SIL" and p.start <= out[-1].end + 1e-6:
            out[-1] = Phone("SIL", out[-1].start, max(out[-1].end, p.end))
        else:
            out.append(p)
    return out


def _fill_gaps(phones: list[Phone], duration: float) -> list[Phone]:
    """SIL phones in every gap between ``phones`` (and at both ends up to ``duration``)."""
    out: list[Phone] = []
    t = 0.0
    for p in sorted(phones, key=lambda q: q.start):
        if p.start > t + 1e-6:
            out.append(Phone("SIL", t, p.start))
        out.append(p)
        t = max(t, p.end)
    if duration > t + 1e-6:
        out.append(Phone("SIL", t, duration))
    return _merge_silence(out)


def align_transcript(samples: np.ndarray, transcript: str, config: PhonemeConfig = PhonemeConfig(),
                     sample_rate: int = SAMPLE_RATE) -> tuple[list[Phone], list[Word]]:
    """Force-align ``transcript`` to ``samples`` [S] (mono float at 16 kHz): (phones, words), times in seconds.

    Raises ``ValueError`` when the transcript has no words or the alignment fails (audio and text disagree).
    """
    if sample_rate != SAMPLE_RATE:
        raise ValueError(f"pocketsphinx needs {SAMPLE_RATE} Hz audio, got {sample_rate}")
    words = normalize_transcript(transcript)
    if not words:
        raise ValueError("the transcript has no words")
    dec = _decoder(lm=None, bestpath=False, beam=config.align_beam, pbeam=config.align_pbeam,
                   wbeam=config.align_wbeam, cmn="batch", dither=True, seed=config.seed)
    missing = [w for w in sorted(set(words)) if dec.lookup_word(w) is None]
    for i, w in enumerate(missing):
        alt = w.replace("'", "")
        dec.add_word(w, dec.lookup_word(alt) or letters_to_phones(w), i == len(missing) - 1)
    pad = int(round(config.pad_s * sample_rate))
    pcm = _pcm16(samples, pad)
    try:
        dec.set_align_text(" ".join(words))
        dec.start_utt()
        dec.process_raw(pcm, full_utt=True)
        dec.end_utt()
        if dec.hyp() is None:
            raise ValueError("the transcript could not be aligned to the audio")
        dec.set_alignment()
        dec.start_utt()
        dec.process_raw(pcm, full_utt=True)
        dec.end_utt()
        alignment = dec.get_alignment()
    except RuntimeError as exc:
        raise ValueError(f"the transcript could not be aligned to the audio ({exc})") from exc
    if alignment is None:
        raise ValueError("the transcript could not be aligned to the audio")
    offset = config.pad_s
    duration = len(samples) / sample_rate
    phones: list[Phone] = []
    out_words: list[Word] = []

    def clip(t: float) -> float:
        return float(min(max(t, 0.0), duration))

    for w in alignment:
        name = re.sub(r"\(\d+\)$", "", w.name)
        ws, we = clip(w.start * FRAME_S - offset), clip((w.start + w.duration) * FRAME_S - offset)
        if name in ("<sil>", "<s>", "</s>") or name.startswith("["):
            phones.append(Phone("SIL", ws, we))
            continue
        out_words.append(Word(name, ws, we))
        for p in w:
            ps_, pe = clip(p.start * FRAME_S - offset), clip((p.start + p.duration) * FRAME_S - offset)
            phones.append(Phone(_phone_label(p.name), ps_, pe, name))
    return _fill_gaps(phones, duration), out_words


def _stretches(active: np.ndarray, hop_s: float, pad_s: float, duration: float,
               max_len_s: float = 20.0) -> list[tuple[float, float]]:
    """(start, end) seconds of voice-active stretches, padded, merged when overlapping, split when long."""
    edges = np.flatnonzero(np.diff(np.r_[0, active.astype(np.int8), 0]))
    spans: list[list[float]] = []
    for s, e in zip(edges[::2], edges[1::2]):
        a, b = max(0.0, s * hop_s - pad_s), min(duration, e * hop_s + pad_s)
        if spans and a <= spans[-1][1]:
            spans[-1][1] = b
        else:
            spans.append([a, b])
    out: list[tuple[float, float]] = []
    for a, b in spans:
        n = int(np.ceil((b - a) / max_len_s))
        cuts = np.linspace(a, b, n + 1)
        out.extend((float(cuts[i]), float(cuts[i + 1])) for i in range(n))
    return out


def phone_loop(samples: np.ndarray, active: np.ndarray, hop_s: float, config: PhonemeConfig = PhonemeConfig(),
               sample_rate: int = SAMPLE_RATE) -> list[Phone]:
    """Phones of ``samples`` [S] (mono float, 16 kHz) by phone-loop decoding of each voice-active stretch.

    active [H] bool voice activity per analysis hop of ``hop_s`` seconds (``HopFeatures.active``). Returns
    phones covering the whole track (SIL between stretches).
    """
    if sample_rate != SAMPLE_RATE:
        raise ValueError(f"pocketsphinx needs {SAMPLE_RATE} Hz audio, got {sample_rate}")
    duration = len(samples) / sample_rate
    dec = _decoder(allphone=_model_paths()["allphone"], lm=None, lw=config.lw, beam=config.beam,
                   pbeam=config.pbeam, cmn="batch", dither=True, seed=config.seed, remove_noise=False)
    phones: list[Phone] = []
    pad = int(round(0.1 * sample_rate))  # decoder breathing room of digital silence, outside the audio
    for a, b in _stretches(np.asarray(active, bool), hop_s, config.pad_s, duration):
        seg = samples[int(round(a * sample_rate)):int(round(b * sample_rate))]
        if len(seg) < sample_rate * 0.05:
            continue
        dec.start_utt()
        dec.process_raw(_pcm16(seg, pad), full_utt=True)
        dec.end_utt()
        for s in dec.seg():
            start = a + s.start_frame * FRAME_S - 0.1
            end = a + (s.end_frame + 1) * FRAME_S - 0.1
            start, end = max(start, a), min(end, b)
            if end <= start:
                continue
            phones.append(Phone(_phone_label(s.word), float(start), float(end)))
    return _fill_gaps(phones, duration)


def recognize_phonemes(samples: np.ndarray, hops: HopFeatures, transcript: str | None = None,
                       config: PhonemeConfig = PhonemeConfig(), sample_rate: int = SAMPLE_RATE) -> PhoneTrack:
    """Phones of a speech track from the best available source (see the module docstring).

    Parameters
    ----------
    samples : [S] float mono at 16 kHz.
    hops : ``thead.audio.features.hop_features(samples)`` (voice activity, voicing).
    transcript : the words spoken (any punctuation), or None.
    config : PhonemeConfig.

    Returns
    -------
    PhoneTrack: ``path`` says which source served, ``notes`` why better ones were passed over.
    """
    t0 = time.perf_counter()
    duration = len(samples) / sample_rate
    notes: list[str] = []
    speech = speech_likeness(hops)
    silence = [Phone("SIL", 0.0, duration)]
    if speech["active_s"] < 0.1:
        return PhoneTrack("silence", silence, notes=["no voice activity: mouth kept closed"],
                          seconds=time.perf_counter() - t0, speech=speech)
    if transcript is not None and transcript.strip():
        if config.language.lower().startswith("en"):
            try:
                phones, words = align_transcript(samples, transcript, config, sample_rate)
                return PhoneTrack("alignment", phones, words, notes, time.perf_counter() - t0, speech)
            except ValueError as exc:
                notes.append(f"alignment failed: {exc}")
        else:
            notes.append(f"transcript ignored: language '{config.language}' has no acoustic model here")
    if not config.language.lower().startswith("en"):
        notes.append(f"language '{config.language}': acoustic path")
    elif not config.phone_loop:
        notes.append("phone loop disabled: acoustic path")
    elif config.speech_check and not speech["speech"]:
        notes.append("audio does not look like speech (music, singing or noise): acoustic path")
    else:
        phones = phone_loop(samples, hops.active, hops.hop_s, config, sample_rate)
        n_speech = sum(p.label != "SIL" for p in phones)
        rate = n_speech / max(speech["active_s"], 1e-6)
        if rate >= config.min_phone_rate:
            return PhoneTrack("phone_loop", phones, [], notes, time.perf_counter() - t0, speech)
        notes.append(f"phone loop found {rate:.1f} phones per second of voice: acoustic path")
    return PhoneTrack("acoustic", silence, [], notes, time.perf_counter() - t0, speech)


__all__ = ["PATHS", "PHONES", "Phone", "PhoneTrack", "PhonemeConfig", "Word", "align_transcript",
           "letters_to_phones", "normalize_transcript", "number_words", "phone_loop", "recognize_phonemes",
           "speech_likeness"]

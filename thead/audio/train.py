"""Per-person audio-to-motion models trained on a few talking clips (K-shot, as the rhythmic head-motion paper).

Inputs are arrays (the stage layer supplies them from fitted clips): per clip its audio, fps, per-frame
expression units [T, E] and head angles [T, 3] (radians), and a subject name (``TrainingClip``). Three parts:

1. Per subject, viseme gains and lead (``fit_viseme_gains``): the weight-free mouth track
   (``thead.audio.visemes``) is computed for each candidate lead, the lead whose mouth opening correlates best
   with the fitted one wins; per mouth unit a ridge regression of the fitted unit on the track's (shrunk
   towards 1, corrected for the attenuation that phone-timing errors cause) gives the person's gain.
2. Mouth network (``MelMouthNet``): a small temporal conv net (dilated 1-D convolutions over +-0.7 s of log-mel
   frames) predicting the mouth units' change from the clip's rest, trained with MSE.
3. Pose model (``PoseNet``): a shared conv trunk from audio features (loudness, onset, voicing, F0, activity,
   a mel summary) to a hidden code, one linear head per subject to (yaw, pitch, roll); at use its output is
   matched to the subject's mean/std of motion (per angle) measured on its training clips.

Every clip's last ``TrainConfig.holdout`` share of frames is held out; the report gives held-out correlations.
The model file is safetensors with the config and training report in its metadata; ``save`` returns the file's
sha256 and ``load_audio2motion`` checks the format, the architecture and (when given) the sha256.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from thead.audio.features import AudioFeatures, FeatureConfig, frame_features
from thead.audio.io import AudioTrack, load_audio
from thead.audio.phonemes import PhonemeConfig, PhoneTrack, recognize_phonemes
from thead.audio.visemes import MOUTH_UNITS, VisemeConfig, acoustic_mouth, mouth_opening_cm, phones_to_mouth
from thead.errors import InputError

MODEL_FORMAT = "thead.audio2motion"
MODEL_VERSION = 1
POSE_FEATURES = 6  # rms z, onset z, voicing, f0 z, activity, mel-energy slope


@dataclass
class TrainingClip:
    """One talking clip: ``audio`` (file or AudioTrack), ``fps``, ``expression`` [T, E] unit coefficients named
    ``expression_names``, ``angles`` [T, 3] (yaw, pitch, roll) radians, ``subject``; ``valid`` [T] bool frames
    with a face (others are ignored); ``transcript`` for forced alignment (optional)."""

    audio: str | Path | AudioTrack
    fps: float
    expression: np.ndarray
    expression_names: Sequence[str]
    angles: np.ndarray
    subject: str = "subject"
    valid: np.ndarray | None = None
    transcript: str | None = None
    name: str = ""


@dataclass(frozen=True)
class TrainConfig:
    """Training settings.

    leads_s: candidate mouth leads (s). gain_ridge: shrinkage of the viseme gains towards 1 (relative to the
    track's energy). gain_range: gains are clipped to it. holdout: share of each clip's frames (its end) kept
    out of training. hidden / mel_layers / kernel: mouth network width, dilated layers, kernel size.
    pose_hidden: pose trunk width. steps / pose_steps: optimiser steps; lr; weight_decay; crop: frames per
    training crop; batch: crops per step. device: "cpu", "cuda" or None (cuda when present). threads: torch
    CPU threads while training (1: these nets are too small to gain from more). seed.
    """

    leads_s: tuple[float, ...] = (0.0, 0.02, 0.04, 0.06, 0.08, 0.1, 0.12, 0.16)
    gain_ridge: float = 0.1
    gain_range: tuple[float, float] = (0.25, 3.0)
    holdout: float = 0.25
    hidden: int = 48
    mel_layers: int = 4
    kernel: int = 3
    pose_hidden: int = 32
    steps: int = 600
    pose_steps: int = 400
    lr: float = 2e-3
    weight_decay: float = 1e-3
    dropout: float = 0.2
    crop: int = 48
    batch: int = 16
    device: str | None = None
    threads: int | None = 1
    seed: int = 0


# ------------------------------------------------------------------------------------------------ networks
def _torch():
    import torch

    return torch


class _threads:
    """Run torch CPU ops with ``n`` intra-op threads, then restore. The nets here are tiny: on a busy 2-core
    machine two OpenMP threads spin-wait on each other (measured 2.8 s vs 0.04 s per training step)."""

    def __init__(self, n: int | None) -> None:
        self.n = n
        self.old = 0

    def __enter__(self) -> None:
        torch = _torch()
        self.old = torch.get_num_threads()
        if self.n:
            torch.set_num_threads(self.n)

    def __exit__(self, *exc) -> None:
        _torch().set_num_threads(self.old)


def _make_mel_net(n_mels: int, hidden: int, layers: int, kernel: int, out: int, dropout: float):
    torch = _torch()
    nn = torch.nn

    class MelMouthNet(nn.Module):
        """log-mel [B, n_mels, T] (normalised) -> mouth unit changes [B, U, T]; dilations 1, 2, 4, ..."""

        def __init__(self) -> None:
            super().__init__()
            self.inp = nn.Conv1d(n_mels, hidden, 1)
            self.blocks = nn.ModuleList(
                nn.Conv1d(hidden, hidden, kernel, padding=(kernel // 2) * 2 ** i, dilation=2 ** i)
                for i in range(layers))
            self.drop = nn.Dropout(dropout)
            self.out = nn.Conv1d(hidden, out, 1)

        def forward(self, x):
            h = self.inp(x)
            for conv in self.blocks:
                h = h + torch.nn.functional.gelu(conv(self.drop(h)))
            return self.out(h)

    return MelMouthNet()


def _make_pose_net(n_in: int, hidden: int, subjects: int, kernel: int, layers: int, dropout: float):
    torch = _torch()
    nn = torch.nn

    class PoseNet(nn.Module):
        """audio features [B, F, T] -> angles [B, 3, T] through a shared trunk and per-subject heads."""

        def __init__(self) -> None:
            super().__init__()
            self.inp = nn.Conv1d(n_in, hidden, 1)
            self.blocks = nn.ModuleList(
                nn.Conv1d(hidden, hidden, kernel, padding=(kernel // 2) * 2 ** i, dilation=2 ** i)
                for i in range(layers))
            self.drop = nn.Dropout(dropout)
            self.heads = nn.ModuleList(nn.Conv1d(hidden, 3, 1) for _ in range(subjects))

        def trunk(self, x):
            h = self.inp(x)
            for conv in self.blocks:
                h = h + torch.nn.functional.gelu(conv(self.drop(h)))
            return h

        def forward(self, x, subject: int):
            return self.heads[subject](self.trunk(x))

    return PoseNet()


# ------------------------------------------------------------------------------------------------ features
@dataclass
class _ClipData:
    name: str
    subject: str
    fps: float
    feats: AudioFeatures
    phones: PhoneTrack
    mouth: np.ndarray  # [T, U] fitted mouth units minus rest
    angles_deg: np.ndarray  # [T, 3] relative, mean removed
    valid: np.ndarray
    train: np.ndarray  # [T] bool


def pose_features(feats: AudioFeatures) -> np.ndarray:
    """[T, POSE_FEATURES] pose-model inputs: loudness z, onset z, voicing, F0 z (0 unvoiced), activity, the
    frame-to-frame change of mel energy (z)."""
    def z(x: np.ndarray) -> np.ndarray:
        x = np.asarray(x, np.float64)
        return (x - x.mean()) / (x.std() + 1e-6)

    f0 = np.asarray(feats.f0_hz, np.float64)
    voiced = np.isfinite(f0)
    lf0 = np.where(voiced, np.log(np.where(voiced, f0, 1.0)), np.nan)
    f0z = np.zeros(len(f0))
    if voiced.sum() > 2:
        f0z[voiced] = (lf0[voiced] - np.nanmean(lf0)) / (np.nanstd(lf0) + 1e-6)
    energy = feats.log_mel.astype(np.float64).mean(1)
    slope = np.r_[0.0, np.diff(energy)]
    return np.stack([z(feats.rms_db), z(feats.onset), feats.voicing, f0z,
                     feats.voice_activity.astype(np.float64), z(slope)], axis=1).astype(np.float32)


def _mouth_rest(mouth_units: np.ndarray, speech: np.ndarray) -> np.ndarray:
    """[U] the clip's rest mouth: median over non-speech frames (10th percentile when too few)."""
    quiet = ~np.asarray(speech, bool)
    if quiet.sum() >= max(5, 0.1 * len(quiet)):
        return np.median(mouth_units[quiet], axis=0)
    return np.percentile(mouth_units, 10, axis=0)


def _prepare(clip: TrainingClip, config: TrainConfig, fcfg: FeatureConfig, pcfg: PhonemeConfig) -> _ClipData:
    names = list(clip.expression_names)
    expr = np.asarray(clip.expression, np.float64)
    n = len(expr)
    if np.asarray(clip.angles).shape != (n, 3) and np.asarray(clip.angles).shape[:1] != (n,):
        raise ValueError(f"{clip.name or clip.audio}: angles and expression frame counts differ")
    track = clip.audio if isinstance(clip.audio, AudioTrack) else load_audio(clip.audio, fcfg.sample_rate)
    if track.silent:
        raise InputError(track.path, "the audio track is silent: nothing to learn from")
    feats = frame_features(track.samples, clip.fps, n, fcfg)
    phones = recognize_phonemes(track.samples, feats.hops, clip.transcript, pcfg, track.sample_rate)
    mouth = np.stack([expr[:, names.index(u)] for u in MOUTH_UNITS], axis=1)
    mouth = mouth - _mouth_rest(mouth, feats.voice_activity)
    deg = np.degrees(np.asarray(clip.angles, np.float64)[:, :3])
    valid = np.ones(n, bool) if clip.valid is None else np.asarray(clip.valid, bool)
    deg = deg - deg[valid].mean(0)
    train = np.arange(n) < int(round(n * (1.0 - config.holdout)))
    return _ClipData(clip.name or str(getattr(track, "path", "")), clip.subject, float(clip.fps), feats, phones,
                     mouth, deg, valid, train)


def _track(data: _ClipData, vis: VisemeConfig) -> np.ndarray:
    if data.phones.path in ("alignment", "phone_loop"):
        return phones_to_mouth(data.phones.phones, data.feats, vis).delta.astype(np.float64)
    return acoustic_mouth(data.feats, vis).delta.astype(np.float64)


def _pearson(a: np.ndarray, b: np.ndarray) -> float:
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    if len(a) < 3 or a.std() < 1e-9 or b.std() < 1e-9:
        return float("nan")
    return float(np.corrcoef(a, b)[0, 1])


def fit_viseme_gains(clips: Sequence[_ClipData], config: TrainConfig) -> tuple[dict[str, float], float, dict]:
    """One subject's per-unit viseme gains and mouth lead (s) from its clips' training frames.

    Lead: the candidate whose weight-free mouth opening correlates best with the fitted opening. Gains: per
    unit, the ridge regression slope of the fitted unit on the track's unit (shrunk towards 1 by
    ``gain_ridge``), divided by their correlation (at least 0.3): the phone timing's errors attenuate a plain
    slope, and the gain is meant to match the person's amplitude. Units whose correlation is below 0.1 keep 1.
    """
    def opening(m: np.ndarray) -> np.ndarray:
        return _opening(m)

    rows = {}
    best = None
    for lead in config.leads_s:
        vis = VisemeConfig(lead_s=lead)
        tracks = [_track(c, vis) for c in clips]
        x = np.concatenate([opening(t)[c.train & c.valid] for t, c in zip(tracks, clips)])
        y = np.concatenate([opening(c.mouth)[c.train & c.valid] for c in clips])
        r = _pearson(x, y)
        rows[f"{lead:.3f}"] = round(r, 4)
        if np.isfinite(r) and (best is None or r > best[0]):
            best = (r, lead, tracks)
    if best is None or best[0] < 0.1:  # the track does not explain this mouth (music, another language...)
        return {u: 1.0 for u in MOUTH_UNITS}, VisemeConfig.lead_s, {"open_r_by_lead": rows,
                                                                     "note": "no lead explains the mouth: defaults"}
    _, lead, tracks = best
    gains = {}
    for k, unit in enumerate(MOUTH_UNITS):
        x = np.concatenate([t[c.train & c.valid, k] for t, c in zip(tracks, clips)])
        y = np.concatenate([c.mouth[c.train & c.valid, k] for c in clips])
        xc, yc = x - x.mean(), y - y.mean()
        sxx = float(xc @ xc)
        r = _pearson(x, y)
        if sxx < 1e-8 or not np.isfinite(r) or r < 0.1:
            gains[unit] = 1.0
            continue
        lam = config.gain_ridge * sxx
        slope = float((xc @ yc + lam) / (sxx + lam))
        gains[unit] = float(np.clip(slope / max(r, 0.3), *config.gain_range))
    return gains, float(lead), {"open_r_by_lead": rows}


class Audio2MotionModel:
    """A trained audio-to-motion model: viseme gains and lead, optionally a mouth network and a pose model.

    Use with ``AudioDriveOptions(motion_model=model)``: ``viseme_config`` applies the gains and lead,
    ``predict_mouth`` the mouth network, ``predict_pose`` the pose model of one subject.
    """

    def __init__(self, config: dict, subjects: dict, mouth_net=None,
                 mel_norm: tuple[np.ndarray, np.ndarray] | None = None, pose_net=None,
                 pose_norm: tuple[np.ndarray, np.ndarray] | None = None, report: dict | None = None) -> None:
        """subjects: {name: {"gains": {unit: gain}, "lead_s": s, "std_deg": [3] (with a pose model),
        "clips": [...]}} in training order (the pose heads' order)."""
        self.config = config
        self.subjects = dict(subjects)
        self.mouth_net = mouth_net
        self.mel_norm = mel_norm
        self.pose_net = pose_net
        self.pose_norm = pose_norm
        self.report = report or {}

    @property
    def has_mouth(self) -> bool:
        return self.mouth_net is not None

    @property
    def has_pose(self) -> bool:
        return self.pose_net is not None and bool(self.subjects)

    def subject(self, name: str = "") -> str:
        """The subject called ``name`` ("" = the first one); ValueError when unknown."""
        names = list(self.subjects)
        name = name or names[0]
        if name not in self.subjects:
            raise ValueError(f"unknown subject '{name}' (model has {names})")
        return name

    def viseme_config(self, base: VisemeConfig, subject: str = "") -> VisemeConfig:
        """``base`` with the subject's per-unit gains and mouth lead."""
        from dataclasses import replace

        s = self.subjects[self.subject(subject)]
        return replace(base, gains={**base.gains, **s["gains"]}, lead_s=float(s["lead_s"]))

    def predict_mouth(self, feats: AudioFeatures) -> np.ndarray:
        """[T, U] mouth unit changes (``MOUTH_UNITS``) from the features' log-mel."""
        if self.mouth_net is None or self.mel_norm is None:
            raise ValueError("this model has no mouth network")
        torch = _torch()
        x = (feats.log_mel - self.mel_norm[0]) / self.mel_norm[1]
        self.mouth_net.eval()
        with torch.no_grad(), _threads(1):
            y = self.mouth_net(torch.as_tensor(x.T[None], dtype=torch.float32))[0].T.numpy()
        return y.astype(np.float32)

    def predict_pose(self, feats: AudioFeatures, subject: str = "") -> np.ndarray:
        """[T, 3] head offsets (deg) for ``subject`` ("" = the first), matched to its mean/std of motion and
        starting at 0 on the first frame."""
        if not self.has_pose or self.pose_norm is None:
            raise ValueError("this model has no pose model")
        name = self.subject(subject)
        names = list(self.subjects)
        torch = _torch()
        x = (pose_features(feats) - self.pose_norm[0]) / self.pose_norm[1]
        self.pose_net.eval()
        with torch.no_grad(), _threads(1):
            y = self.pose_net(torch.as_tensor(x.T[None], dtype=torch.float32), names.index(name))[0].T.numpy()
        y = y.astype(np.float64)
        std = np.asarray(self.subjects[name]["std_deg"], np.float64)
        y = (y - y.mean(0)) / (y.std(0) + 1e-6) * std if len(y) > 2 else y * 0.0
        ease = 1.0 - np.exp(-np.arange(len(y)) / (0.15 * feats.fps))
        return y - y[0][None] * (1.0 - ease)[:, None]

    # ------------------------------------------------------------------------------------------ file
    def save(self, path: str | Path) -> str:
        """Write the model to ``path`` (.safetensors, atomically); returns the file's sha256."""
        from safetensors.torch import save_file

        torch = _torch()
        tensors: dict = {}
        if self.mouth_net is not None:
            state = self.mouth_net.state_dict()
            tensors.update({f"mouth.{k}": v.detach().cpu().contiguous() for k, v in state.items()})
            tensors["mouth_norm.mean"] = torch.as_tensor(self.mel_norm[0], dtype=torch.float32)
            tensors["mouth_norm.std"] = torch.as_tensor(self.mel_norm[1], dtype=torch.float32)
        if self.pose_net is not None:
            state = self.pose_net.state_dict()
            tensors.update({f"pose.{k}": v.detach().cpu().contiguous() for k, v in state.items()})
            tensors["pose_norm.mean"] = torch.as_tensor(self.pose_norm[0], dtype=torch.float32)
            tensors["pose_norm.std"] = torch.as_tensor(self.pose_norm[1], dtype=torch.float32)
        for name, sub in self.subjects.items():  # also as tensors: a file with no network still holds numbers
            tensors[f"gains.{name}"] = torch.as_tensor([sub["gains"].get(u, 1.0) for u in MOUTH_UNITS] +
                                                       [sub["lead_s"]], dtype=torch.float32)
        meta = {"format": MODEL_FORMAT, "version": str(MODEL_VERSION),
                "config": json.dumps({**self.config, "subjects": self.subjects, "has_mouth": self.has_mouth,
                                      "has_pose": self.pose_net is not None}),
                "report": json.dumps(self.report, default=str)}
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.tmp")
        save_file(tensors, str(tmp), metadata=meta)
        os.replace(tmp, path)
        return sha256_file(path)


def sha256_file(path: str | Path) -> str:
    """Hex sha256 of a file."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def load_audio2motion(path: str | Path, sha256: str | None = None) -> Audio2MotionModel:
    """Read a model written by ``Audio2MotionModel.save``.

    Raises ``InputError`` naming the file when it is missing, its sha256 differs from ``sha256`` (when given),
    it is not an audio2motion model, or its tensors do not fit the architecture in its config.
    """
    from safetensors import safe_open

    path = Path(path)
    if not path.is_file():
        raise InputError(path, "model file not found")
    if sha256 is not None:
        digest = sha256_file(path)
        if digest.lower() != sha256.lower():
            raise InputError(path, f"sha256 {digest[:12]}... differs from the registered {sha256[:12]}...")
    try:
        with safe_open(str(path), framework="pt") as fh:
            meta = fh.metadata() or {}
            tensors = {k: fh.get_tensor(k) for k in fh.keys()}
    except Exception as exc:  # safetensors raises its own error types
        raise InputError(path, f"not a safetensors file ({exc})") from exc
    if meta.get("format") != MODEL_FORMAT:
        raise InputError(path, f"not a thead audio2motion model (format {meta.get('format')!r})")
    if int(meta.get("version", "0")) > MODEL_VERSION:
        raise InputError(path, f"model version {meta.get('version')} is newer than this thead reads")
    cfg = json.loads(meta["config"])
    arch = cfg["architecture"]
    mouth_net = pose_net = mel_norm = pose_norm = None
    try:
        if cfg.get("has_mouth"):
            mouth_net = _make_mel_net(arch["n_mels"], arch["hidden"], arch["mel_layers"], arch["kernel"],
                                      len(MOUTH_UNITS), 0.0)
            mouth_net.load_state_dict({k[6:]: v for k, v in tensors.items() if k.startswith("mouth.")}, strict=True)
            mel_norm = (tensors["mouth_norm.mean"].numpy(), tensors["mouth_norm.std"].numpy())
        if cfg.get("has_pose"):
            pose_net = _make_pose_net(POSE_FEATURES, arch["pose_hidden"], len(cfg["subjects"]), arch["kernel"],
                                      arch["pose_layers"], 0.0)
            pose_net.load_state_dict({k[5:]: v for k, v in tensors.items() if k.startswith("pose.")}, strict=True)
            pose_norm = (tensors["pose_norm.mean"].numpy(), tensors["pose_norm.std"].numpy())
    except (RuntimeError, KeyError) as exc:
        raise InputError(path, f"model tensors do not fit its config ({str(exc).splitlines()[0]})") from exc
    config = {k: v for k, v in cfg.items() if k not in ("subjects", "has_mouth", "has_pose")}
    return Audio2MotionModel(config, cfg["subjects"], mouth_net, mel_norm, pose_net, pose_norm,
                             json.loads(meta.get("report", "{}")))


# ------------------------------------------------------------------------------------------------ training
class _AdamW:
    """AdamW (Loshchilov & Hutter) for a handful of small tensors. torch.optim's optimisers import
    torch._dynamo on construction, which costs 3-8 s per process here; these nets train in seconds."""

    def __init__(self, params: list, lr: float, weight_decay: float, betas: tuple[float, float] = (0.9, 0.999),
                 eps: float = 1e-8) -> None:
        torch = _torch()
        self.params = [p for p in params if p.requires_grad]
        self.lr, self.wd, self.b1, self.b2, self.eps = lr, weight_decay, betas[0], betas[1], eps
        self.m = [torch.zeros_like(p) for p in self.params]
        self.v = [torch.zeros_like(p) for p in self.params]
        self.t = 0

    def zero_grad(self) -> None:
        for p in self.params:
            p.grad = None

    def step(self) -> None:
        torch = _torch()
        self.t += 1
        c1, c2 = 1.0 - self.b1 ** self.t, 1.0 - self.b2 ** self.t
        with torch.no_grad():
            for p, m, v in zip(self.params, self.m, self.v):
                if p.grad is None:
                    continue
                p.mul_(1.0 - self.lr * self.wd)
                m.mul_(self.b1).add_(p.grad, alpha=1.0 - self.b1)
                v.mul_(self.b2).addcmul_(p.grad, p.grad, value=1.0 - self.b2)
                p.addcdiv_(m / c1, (v / c2).sqrt_().add_(self.eps), value=-self.lr)


def _crops(rng: np.random.Generator, lengths: list[int], crop: int, batch: int) -> list[tuple[int, int]]:
    weights = np.asarray(lengths, np.float64)
    weights = weights / weights.sum()
    out = []
    for _ in range(batch):
        c = int(rng.choice(len(lengths), p=weights))
        start = int(rng.integers(0, max(lengths[c] - crop, 0) + 1))
        out.append((c, start))
    return out


def _train_net(net, inputs: list[np.ndarray], targets: list[np.ndarray], masks: list[np.ndarray],
               config: TrainConfig, steps: int, device, heads: list[int] | None = None,
               params=None) -> list[float]:
    """Adam on random crops of the (train-masked) sequences; inputs [T, F], targets [T, C], masks [T] bool."""
    torch = _torch()
    rng = np.random.default_rng(config.seed)
    net.to(device).train()
    opt = _AdamW(list(params if params is not None else net.parameters()), config.lr, config.weight_decay)
    segs = []  # contiguous training runs
    for i, m in enumerate(masks):
        idx = np.flatnonzero(m)
        if len(idx) >= 8:
            segs.append((i, int(idx[0]), int(idx[-1]) + 1))
    if not segs:
        raise ValueError("no training frames")
    lengths = [e - s for _, s, e in segs]
    crop = min(config.crop, min(lengths))
    losses = []
    for step in range(steps):
        xb, yb, hb = [], [], []
        for c, start in _crops(rng, lengths, crop, config.batch):
            i, s, _ = segs[c]
            xb.append(inputs[i][s + start:s + start + crop].T)
            yb.append(targets[i][s + start:s + start + crop].T)
            hb.append(heads[i] if heads is not None else 0)
        x = torch.as_tensor(np.stack(xb), dtype=torch.float32, device=device)
        y = torch.as_tensor(np.stack(yb), dtype=torch.float32, device=device)
        if heads is None:
            pred = net(x)
        else:
            h = net.trunk(x)
            pred = torch.stack([net.heads[k](h[j:j + 1])[0] for j, k in enumerate(hb)])
        loss = torch.nn.functional.mse_loss(pred, y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(float(loss.detach()))
    net.eval().cpu()
    return losses


def train_audio2motion(clips: Sequence[TrainingClip], config: TrainConfig = TrainConfig(),
                       features: FeatureConfig = FeatureConfig(), phonemes: PhonemeConfig = PhonemeConfig(),
                       mouth_net: bool = True, pose: bool = True) -> Audio2MotionModel:
    """Train a model on talking clips (see the module docstring); ``model.report`` holds the numbers.

    Parameters
    ----------
    clips : TrainingClip list (clips whose audio is silent are skipped and listed in the report).
    config : TrainConfig. features / phonemes : analysis settings.
    mouth_net, pose : also train the mouth network / the pose model.

    Returns
    -------
    Audio2MotionModel; ``report``: per clip the phoneme path, held-out correlations of the mouth opening
    (weight-free track, with learned gains, mouth network) and of the pose, training seconds, device.
    """
    torch = _torch()
    with _threads(config.threads):
        return _train(clips, config, features, phonemes, mouth_net, pose, torch)


def _train(clips, config, features, phonemes, mouth_net, pose, torch) -> Audio2MotionModel:
    t0 = time.perf_counter()
    torch.manual_seed(config.seed)
    device = torch.device(config.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    data, skipped = [], []
    for c in clips:
        try:
            data.append(_prepare(c, config, features, phonemes))
        except InputError as exc:  # a silent track: nothing to learn, the others still train
            skipped.append(str(exc))
    if not data:
        raise ValueError("no clip with usable audio to train on: " + "; ".join(skipped))
    names = list(dict.fromkeys(d.subject for d in data))  # training order
    subjects: dict = {}
    for s in names:
        gains, lead, info = fit_viseme_gains([d for d in data if d.subject == s], config)
        subjects[s] = {"gains": {k: round(v, 4) for k, v in gains.items()}, "lead_s": lead,
                       "clips": [d.name for d in data if d.subject == s], **info}
    report: dict = {"clips": [], "subjects": subjects, "device": str(device), "skipped": skipped}
    arch = {"n_mels": features.n_mels, "hidden": config.hidden, "mel_layers": config.mel_layers,
            "kernel": config.kernel, "pose_hidden": config.pose_hidden, "pose_layers": config.mel_layers}
    cfg = {"architecture": arch, "units": list(MOUTH_UNITS), "features": asdict(features),
           "train": asdict(config), "clips": [d.name for d in data]}

    mnet = mel_norm = None
    if mouth_net:
        mels = [d.feats.log_mel.astype(np.float64) for d in data]
        train_mel = np.concatenate([m[d.train] for m, d in zip(mels, data)])
        mel_norm = (train_mel.mean(0).astype(np.float32), (train_mel.std(0) + 1e-3).astype(np.float32))
        mnet = _make_mel_net(features.n_mels, config.hidden, config.mel_layers, config.kernel, len(MOUTH_UNITS),
                             config.dropout)
        losses = _train_net(mnet, [((m - mel_norm[0]) / mel_norm[1]).astype(np.float32) for m in mels],
                            [d.mouth.astype(np.float32) for d in data], [d.train & d.valid for d in data],
                            config, config.steps, device)
        report["mouth_loss"] = [round(losses[0], 5), round(float(np.mean(losses[-20:])), 5)]

    pnet = pose_norm = None
    if pose:
        feats_in = [pose_features(d.feats) for d in data]
        train_in = np.concatenate([f[d.train] for f, d in zip(feats_in, data)])
        pose_norm = (train_in.mean(0).astype(np.float32), (train_in.std(0) + 1e-3).astype(np.float32))
        pnet = _make_pose_net(POSE_FEATURES, config.pose_hidden, len(names), config.kernel, config.mel_layers,
                              config.dropout)
        heads = [names.index(d.subject) for d in data]
        stds = {}
        for s in names:
            angs = np.concatenate([d.angles_deg[d.valid & d.train] for d in data if d.subject == s])
            stds[s] = angs.std(0)
        targets = [(d.angles_deg / stds[d.subject][None]).astype(np.float32) for d in data]
        losses = _train_net(pnet, [((f - pose_norm[0]) / pose_norm[1]).astype(np.float32) for f in feats_in],
                            targets, [d.train & d.valid for d in data], config, config.pose_steps, device, heads)
        report["pose_loss"] = [round(losses[0], 5), round(float(np.mean(losses[-20:])), 5)]
        for s in names:
            subjects[s]["std_deg"] = np.round(stds[s], 4).tolist()

    model = Audio2MotionModel(cfg, subjects, mnet, mel_norm, pnet, pose_norm)
    for d in data:
        report["clips"].append(evaluate_clip(model, d))
    report["seconds"] = round(time.perf_counter() - t0, 2)
    model.report = report
    return model


def adapt_subject(model: Audio2MotionModel, clips: Sequence[TrainingClip], subject: str,
                  config: TrainConfig = TrainConfig(), features: FeatureConfig = FeatureConfig(),
                  phonemes: PhonemeConfig = PhonemeConfig()) -> Audio2MotionModel:
    """K-shot: ``model`` plus a new ``subject`` learned from a few ``clips`` of that person (their ``subject``
    field is ignored): its viseme gains and lead, its motion std, and, when the model has a pose model, a new
    pose head trained with the shared trunk frozen. The mouth network is shared as it is. ``model`` itself is
    not changed; the returned model's report holds the new subject's held-out numbers."""
    import copy

    if subject in model.subjects:
        raise ValueError(f"subject '{subject}' is already in the model")
    torch = _torch()
    new = copy.deepcopy(model)
    with _threads(config.threads):
        data = [_prepare(TrainingClip(**{**c.__dict__, "subject": subject}), config, features, phonemes)
                for c in clips]
        gains, lead, info = fit_viseme_gains(data, config)
        entry: dict = {"gains": {k: round(v, 4) for k, v in gains.items()}, "lead_s": lead,
                       "clips": [d.name for d in data], **info}
        if new.pose_net is not None and new.pose_norm is not None:
            std = np.concatenate([d.angles_deg[d.valid & d.train] for d in data]).std(0)
            entry["std_deg"] = np.round(std, 4).tolist()
            hidden = new.pose_net.heads[0].in_channels
            new.pose_net.heads.append(torch.nn.Conv1d(hidden, 3, 1))
            for p in new.pose_net.parameters():
                p.requires_grad_(False)
            head = new.pose_net.heads[-1]
            for p in head.parameters():
                p.requires_grad_(True)
            k = len(new.pose_net.heads) - 1
            inputs = [((pose_features(d.feats) - new.pose_norm[0]) / new.pose_norm[1]).astype(np.float32)
                      for d in data]
            targets = [(d.angles_deg / std[None]).astype(np.float32) for d in data]
            device = torch.device(config.device or ("cuda" if torch.cuda.is_available() else "cpu"))
            _train_net(new.pose_net, inputs, targets, [d.train & d.valid for d in data], config,
                       config.pose_steps, device, [k] * len(data), params=head.parameters())
            for p in new.pose_net.parameters():
                p.requires_grad_(True)
        new.subjects[subject] = entry
        new.report = {"adapted": subject, "clips": [evaluate_clip(new, d) for d in data]}
    return new


def _opening(m: np.ndarray) -> np.ndarray:
    k = {u: i for i, u in enumerate(MOUTH_UNITS)}
    return mouth_opening_cm(m[:, k["jaw_open"]], m[:, k["lips_part"]], m[:, k["lip_stretch"]], m[:, k["chin_raise"]])


def best_lag_correlation(a: np.ndarray, b: np.ndarray, max_lag: int = 4) -> tuple[float, int]:
    """(highest Pearson r, its lag in frames) of a against b; lag > 0: a comes later than b."""
    best = (float("nan"), 0)
    for lag in range(-max_lag, max_lag + 1):
        x, y = (a[lag:], b[:len(b) - lag]) if lag >= 0 else (a[:lag], b[-lag:])
        r = _pearson(x, y)
        if np.isfinite(r) and not (np.isfinite(best[0]) and best[0] >= r):
            best = (r, lag)
    return best


def evaluate_clip(model: Audio2MotionModel, d: _ClipData) -> dict:
    """Held-out numbers of one prepared clip: mouth-opening r (best lag within +-4 frames) of the weight-free
    track, with the model's gains and lead, and of the mouth network; pose r per angle and std ratio."""
    hold = (~d.train) & d.valid
    out: dict = {"clip": d.name, "subject": d.subject, "phoneme_path": d.phones.path,
                 "heldout_frames": int(hold.sum())}
    real = _opening(d.mouth)
    base = _opening(_track(d, VisemeConfig()))
    tuned = _opening(_track(d, model.viseme_config(VisemeConfig(), d.subject)))
    for key, gen in (("open_r_visemes", base), ("open_r_gains", tuned)):
        r, lag = best_lag_correlation(gen[hold], real[hold])
        out[key] = [round(r, 3), lag]
    if model.has_mouth:
        pred = _opening(model.predict_mouth(d.feats).astype(np.float64))
        r, lag = best_lag_correlation(pred[hold], real[hold])
        out["open_r_mouth_net"] = [round(r, 3), lag]
    if model.has_pose:
        p = model.predict_pose(d.feats, d.subject)
        out["pose_r"] = [round(_pearson(p[hold, k], d.angles_deg[hold, k]), 3) for k in range(3)]
        out["pose_std_ratio"] = [round(float(p[hold, k].std() / (d.angles_deg[hold, k].std() + 1e-9)), 3)
                                 for k in range(3)]
    return out


__all__ = ["Audio2MotionModel", "adapt_subject", "MODEL_FORMAT", "POSE_FEATURES", "TrainConfig", "TrainingClip",
           "best_lag_correlation", "evaluate_clip", "fit_viseme_gains", "load_audio2motion", "pose_features",
           "sha256_file", "train_audio2motion"]

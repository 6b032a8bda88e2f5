"""thead.audio.train: viseme gains and lead recovered from a clip made with known ones, model file round trip
with its sha256, and a trained model driving audio_motion."""

from __future__ import annotations

import numpy as np
import pytest

from test_audio_helpers import espeak_available, espeak_speech, source_fit, write_wav
from thead.audio.features import frame_features
from thead.audio.io import load_audio
from thead.audio.motion import AudioDriveOptions, audio_motion
from thead.audio.phonemes import recognize_phonemes
from thead.audio.train import TrainConfig, TrainingClip, adapt_subject, load_audio2motion, train_audio2motion
from thead.audio.visemes import MOUTH_UNITS, VisemeConfig, phones_to_mouth
from thead.errors import InputError
from thead.facemodel.expressions import EXPRESSION_NAMES

pytestmark = pytest.mark.skipif(not espeak_available(), reason="espeak-ng (binary and libespeak-ng) not installed")

GAINS = {"jaw_open": 1.6, "lips_part": 0.8}
LEAD = 0.1


@pytest.fixture(scope="module")
def clip_and_model(tmp_path_factory):
    sp = espeak_speech("My mother bought a blue boat, and we sailed home past the old white lighthouse.")
    path = write_wav(tmp_path_factory.mktemp("train") / "speech.wav", sp.samples, sp.rate)
    track = load_audio(path)
    fps = 25.0
    n = int(np.floor(track.duration * fps + 0.5))
    feats = frame_features(track.samples, fps, n)
    phones = recognize_phonemes(track.samples, feats.hops)
    mouth = phones_to_mouth(phones.phones, feats, VisemeConfig(lead_s=LEAD, gains=GAINS)).delta
    expr = np.zeros((n, len(EXPRESSION_NAMES)), np.float32)
    for k, unit in enumerate(MOUTH_UNITS):
        expr[:, EXPRESSION_NAMES.index(unit)] = mouth[:, k]
    expr[:, EXPRESSION_NAMES.index("jaw_open")] += 0.1  # the person's rest
    loud = (feats.rms_db - feats.rms_db.mean()) / feats.rms_db.std()
    angles = np.radians(np.stack([2 * np.sin(np.arange(n) / 9.0), 1.5 * np.convolve(loud, np.ones(5) / 5, "same"),
                                  0.5 * np.cos(np.arange(n) / 13.0)], axis=1))
    clip = TrainingClip(audio=track, fps=fps, expression=expr, expression_names=EXPRESSION_NAMES, angles=angles,
                        subject="anna", name="speech")
    model = train_audio2motion([clip], TrainConfig(steps=40, pose_steps=40, device="cpu"))
    return track, feats, model, clip


def test_gains_and_lead_recovered(clip_and_model):
    _, _, model, _ = clip_and_model
    sub = model.subjects["anna"]
    assert sub["lead_s"] == pytest.approx(LEAD, abs=0.021)
    assert sub["gains"]["jaw_open"] == pytest.approx(GAINS["jaw_open"], rel=0.15)
    assert sub["gains"]["lips_part"] == pytest.approx(GAINS["lips_part"], rel=0.15)
    clip = model.report["clips"][0]
    assert clip["open_r_gains"][0] > 0.9  # held-out frames: the tuned track is the clip's own mouth


def test_model_file_round_trip_and_sha256(clip_and_model, tmp_path):
    track, feats, model, _ = clip_and_model
    path = tmp_path / "anna.safetensors"
    digest = model.save(path)
    back = load_audio2motion(path, sha256=digest)
    assert back.subjects == model.subjects and back.has_mouth and back.has_pose
    assert np.allclose(back.predict_mouth(feats), model.predict_mouth(feats), atol=1e-6)
    assert np.allclose(back.predict_pose(feats, "anna"), model.predict_pose(feats, "anna"), atol=1e-6)
    with pytest.raises(InputError, match="sha256"):
        load_audio2motion(path, sha256="0" * 64)
    bad = tmp_path / "other.safetensors"
    from safetensors.numpy import save_file

    save_file({"x": np.zeros(3, np.float32)}, str(bad), metadata={"format": "something.else"})
    with pytest.raises(InputError, match="not a thead audio2motion model"):
        load_audio2motion(bad)


def test_trained_model_drives_audio_motion(clip_and_model):
    track, _, model, _ = clip_and_model
    opts = AudioDriveOptions(motion_model=model, mouth="learned", seed=1)
    targets, report = audio_motion(track, source_fit(), 0, 25.0, opts)
    assert report["pose_mode"] == "learned" and report["mouth_source"] == "learned mel network"
    yaw = np.degrees(targets.pose[:, 0])
    assert np.ptp(yaw) > 0.5 and abs(yaw[0] - np.degrees(0.05)) < 1e-3  # starts at the source pose
    with pytest.raises(ValueError, match="unknown subject"):
        audio_motion(track, source_fit(), 0, 25.0, AudioDriveOptions(motion_model=model, subject="bob"))


def test_k_shot_subject_keeps_the_trunk(clip_and_model, tmp_path):
    track, feats, model, clip = clip_and_model
    trunk = {k: v.clone() for k, v in model.pose_net.state_dict().items() if not k.startswith("heads")}
    two = adapt_subject(model, [clip], "bob", TrainConfig(pose_steps=20, device="cpu"))
    assert list(two.subjects) == ["anna", "bob"] and list(model.subjects) == ["anna"]
    for k, v in two.pose_net.state_dict().items():
        if not k.startswith("heads"):
            assert np.array_equal(v.numpy(), trunk[k].numpy()), k
    assert np.allclose(two.predict_pose(feats, "anna"), model.predict_pose(feats, "anna"))
    assert two.predict_pose(feats, "bob").shape == (len(feats.rms_db), 3)
    back = load_audio2motion(tmp_path / "two.safetensors", sha256=two.save(tmp_path / "two.safetensors"))
    assert np.allclose(back.predict_pose(feats, "bob"), two.predict_pose(feats, "bob"), atol=1e-6)

"""Phoneme visemes (no espeak needed), espeak-ng synthesis (skipped without it) and the shipped examples."""

from __future__ import annotations

import math
import shutil
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from pipeline.canonical import mean_face, pose_from_transform, to_canonical
from pipeline.landmarks import LandmarkTrack
from pipeline.regions import LOWER_FACE, NUM_POINTS
from training.data import espeak
from training.data.visemes import (
    CONSONANTS,
    GLIDES,
    UNKNOWN,
    VOWELS,
    inner_gap,
    phonemes_to_motion,
    speech_track_for_face,
    viseme_for,
)

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
FPS = 25
needs_espeak = pytest.mark.skipif(shutil.which("espeak-ng") is None, reason="espeak-ng is not installed")

#: "_ m a m a p _": lips shut, wide open, shut, open, shut, rest
SPEECH = [
    ("_", 0.0, 0.4), ("m", 0.4, 0.52), ("a", 0.52, 0.80), ("m", 0.80, 0.92), ("a", 0.92, 1.2),
    ("p", 1.2, 1.3), ("_", 1.3, 2.0),
]
PHONEMES = [(s, e, p) for p, s, e in SPEECH]
NUM_FRAMES = 50


def frames_in(symbol: str, phonemes=PHONEMES, num_frames=NUM_FRAMES, fps=FPS) -> list[int]:
    t = (np.arange(num_frames) + 0.5) / fps
    return [i for i in range(num_frames) if any(s <= t[i] < e and p == symbol for s, e, p in phonemes)]


@pytest.fixture(scope="module")
def motion() -> np.ndarray:
    return phonemes_to_motion(PHONEMES, NUM_FRAMES, FPS)


# --- visemes ----------------------------------------------------------------------------------------


def test_shape_and_finite(motion):
    assert motion.shape == (NUM_FRAMES, NUM_POINTS, 2)
    assert np.isfinite(motion).all()
    assert phonemes_to_motion([], 3, FPS).shape == (3, NUM_POINTS, 2)


def test_bilabials_close_the_lips(motion):
    closed = frames_in("m") + frames_in("p")
    assert len(closed) >= 6
    assert np.abs(inner_gap(motion[closed])).max() < 1e-6
    # every inner pair meets, not just their mean
    for up, lo in ((61, 67), (62, 66), (63, 65)):
        assert np.abs(motion[closed, lo, 1] - motion[closed, up, 1]).max() < 1e-6


def test_open_vowel_opens_wide_and_jaw_drops_less(motion):
    neutral = mean_face()[:, :2]
    gap = inner_gap(motion)
    peak = max(frames_in("a"), key=lambda i: gap[i])
    assert 0.25 <= gap[peak] <= 0.35
    opening = gap[peak] - inner_gap(neutral)
    chin_drop = motion[peak, 8, 1] - neutral[8, 1]
    assert 0.3 * opening < chin_drop < opening


def test_rest_at_both_ends_equals_neutral(motion):
    neutral = mean_face()[:, :2]
    t = (np.arange(NUM_FRAMES) + 0.5) / FPS
    rest = (t < 0.25) | (t > 1.5)
    assert rest.sum() >= 10
    np.testing.assert_allclose(motion[rest], np.broadcast_to(neutral, motion[rest].shape), atol=1e-12)
    # only the lower face ever moves
    still = [i for i in range(NUM_POINTS) if i not in LOWER_FACE]
    np.testing.assert_allclose(motion[:, still], np.broadcast_to(neutral[still], motion[:, still].shape))


def test_given_neutral_face_is_the_rest_shape():
    neutral = mean_face()[:, :2].copy()
    neutral[60:68, 1] += np.array([0, -0.03, -0.03, -0.03, 0, 0.03, 0.03, 0.03])  # an open-mouthed face
    out = phonemes_to_motion(PHONEMES, NUM_FRAMES, FPS, neutral_canonical=neutral)
    np.testing.assert_allclose(out[0], neutral, atol=1e-12)
    np.testing.assert_allclose(out[-1], neutral, atol=1e-12)
    assert np.abs(inner_gap(out[frames_in("m")])).max() < 1e-6


def test_deterministic_for_a_seed(motion):
    again = phonemes_to_motion(PHONEMES, NUM_FRAMES, FPS, seed=0)
    np.testing.assert_array_equal(motion, again)
    other = phonemes_to_motion(PHONEMES, NUM_FRAMES, FPS, seed=1)
    assert not np.array_equal(motion, other)
    assert np.abs(other - motion).max() < 0.06  # the seed varies the targets a little, not the speech


def test_intensity_scales_the_opening(motion):
    rest_gap = inner_gap(mean_face()[:, :2])
    open_frames = frames_in("a")
    full = inner_gap(motion[open_frames]).max() - rest_gap
    half = phonemes_to_motion(PHONEMES, NUM_FRAMES, FPS, intensity=0.5)
    ratio = (inner_gap(half[open_frames]).max() - rest_gap) / full
    assert 0.4 < ratio < 0.6
    assert np.abs(inner_gap(half[frames_in("m")])).max() < 1e-6  # bilabials still close
    none = phonemes_to_motion(PHONEMES, NUM_FRAMES, FPS, intensity=0.0)
    t = (np.arange(NUM_FRAMES) + 0.5) / FPS
    bilabials = [(s, e) for s, e, p in PHONEMES if p in "mp"]
    held = [i for i in open_frames if all(t[i] > e + 0.05 or t[i] < s - 0.07 for s, e in bilabials)]
    assert held  # clear of the closures' ramps
    np.testing.assert_allclose(inner_gap(none[held]), rest_gap, atol=1e-9)


def test_lip_shapes():
    def hold(symbol: str) -> np.ndarray:
        return phonemes_to_motion([(0.0, 0.5, "_"), (0.5, 1.0, symbol), (1.0, 1.5, "_")], 38, FPS)[18]

    width = lambda p: p[54, 0] - p[48, 0]  # noqa: E731
    rest = mean_face()[:, :2]
    assert width(hold("u:")) < width(rest) - 0.1 < width(hold("i:")) - 0.1  # rounded vs spread
    assert width(hold("w")) < width(rest) - 0.1
    assert inner_gap(hold("f")) < 0.03  # lower lip up to the upper teeth
    assert inner_gap(hold("i:")) < inner_gap(hold("E")) < inner_gap(hold("A:"))


def test_symbol_table():
    en_us = "0 3 3: ; ? @ @2 @L A: A@ D E I I# I2 N O2 O: O@ OI S T U U@ V Z a a# aI aI3 aU b d dZ e@ eI f g h i " \
        "i: i@ i@3 j k l m n n- o@ oU p r r- s t t# tS u: v w x z".split()
    known = [s for s in en_us if viseme_for(s)[0][0] is not UNKNOWN]
    assert len(known) >= len(en_us) - 1  # everything but ";" (a modifier) has its own viseme
    assert all(abs(sum(share for _, share in viseme_for(s)) - 1) < 1e-9 for s in en_us)
    assert viseme_for("@5")[0][0] == VOWELS["@5"] and viseme_for("t#")[0][0] == CONSONANTS["t#"]
    assert viseme_for("k#")[0][0] == CONSONANTS["k"]  # trailing modifiers stripped
    assert viseme_for("Q!!")[0][0] is UNKNOWN
    assert len(viseme_for("aI")) == len(GLIDES["aI"]) == 2
    # an unknown symbol opens the mouth like a neutral vowel
    out = phonemes_to_motion([(0.0, 0.4, "_"), (0.4, 0.8, "Q!!"), (0.8, 1.2, "_")], 30, FPS)
    assert inner_gap(out[15]) > inner_gap(mean_face()[:, :2]) + 0.05


def test_speech_track_for_face(astronaut_landmarks):
    face = astronaut_landmarks
    track = speech_track_for_face(face, (512, 512), PHONEMES, NUM_FRAMES, FPS, seed=0)
    assert track.frames.shape == (NUM_FRAMES, NUM_POINTS, 3) and track.fps == FPS
    np.testing.assert_allclose(track.reference[:, :2], face)
    assert track.info["source"] == "espeak-visemes"
    canon, _ = track.canonical()
    face_canon, face_matrix = to_canonical(face)
    gap = inner_gap(canon)
    assert np.abs(gap[frames_in("m")]).max() < 0.01
    assert gap[frames_in("a")].max() > inner_gap(face_canon) + 0.1
    # subtle head motion: under 2.5 degrees of yaw, pitch and roll, and small shifts
    turns = track.pose[:, :3] - pose_from_transform(face_matrix)[:3]
    assert np.abs(turns).max() < 2.5
    # without head motion and blinks, only the lower face moves
    still = speech_track_for_face(face, (512, 512), PHONEMES, NUM_FRAMES, FPS, head_motion=False, blinks=False)
    upper = [i for i in range(NUM_POINTS) if i not in LOWER_FACE]
    np.testing.assert_allclose(still.points2d[:, upper], np.broadcast_to(face[upper], (NUM_FRAMES, len(upper), 2)),
                               atol=1e-3)
    LandmarkTrack.from_dict(track.to_dict())  # valid when saved


# --- espeak -----------------------------------------------------------------------------------------


def test_missing_library_message(monkeypatch):
    monkeypatch.setattr(espeak, "LIBRARY_NAMES", ("libdoes-not-exist.so.9",))
    monkeypatch.setattr(espeak.ctypes.util, "find_library", lambda name: None)
    with pytest.raises(RuntimeError, match="apt-get install espeak-ng"):
        espeak._load_library()


@pytest.fixture(scope="module")
def utterance():
    return espeak.synthesize("Hello, my name is Bob. I like maps, apples and music.", voice="en-us")


def _rms(samples: np.ndarray, sr: int, start: float, end: float) -> float:
    part = samples[int(start * sr) : max(int(end * sr), int(start * sr) + 1)]
    return float(np.sqrt(np.mean(part.astype(np.float64) ** 2)))


@needs_espeak
def test_espeak_timings(utterance):
    u = utterance
    assert u.sample_rate > 8000 and u.samples.dtype == np.float32 and u.samples.ndim == 1
    assert np.abs(u.samples).max() > 0.1  # not silent
    starts = np.array([s for s, _, _ in u.phonemes])
    ends = np.array([e for _, e, _ in u.phonemes])
    assert len(u.phonemes) > 20
    assert (np.diff(starts) > 0).all() and (ends > starts).all()
    assert starts.min() >= 0 and ends.max() <= u.duration + 1e-9
    symbols = {p for _, _, p in u.phonemes}
    assert {"m", "b", "p", "h"} <= symbols


@needs_espeak
def test_espeak_phonemes_line_up_with_the_audio(utterance):
    u = utterance
    vowels = [_rms(u.samples, u.sample_rate, s, e) for s, e, p in u.phonemes if p in VOWELS or p in GLIDES]
    pauses = [_rms(u.samples, u.sample_rate, s + 0.03, e - 0.03) for s, e, p in u.phonemes
              if p.startswith("_") and e - s > 0.1]
    assert vowels and pauses
    assert np.mean(vowels) > 5 * np.mean(pauses)
    # the motion built from them opens the mouth while vowels sound
    n = math.ceil(u.duration * FPS)
    gap = inner_gap(phonemes_to_motion(u.phonemes, n, FPS))
    t = (np.arange(n) + 0.5) / FPS
    voiced = np.array([any(s <= x < e and (p in VOWELS or p in GLIDES) for s, e, p in u.phonemes) for x in t])
    assert gap[voiced].mean() > gap[~voiced].mean()


@needs_espeak
def test_espeak_rejects_unknown_voice():
    with pytest.raises(ValueError, match="voice"):
        espeak.synthesize("hello", voice="no-such-voice-xx")


# --- shipped examples -------------------------------------------------------------------------------


def test_example_track_matches_the_example_audio():
    track = LandmarkTrack.load(EXAMPLES / "speech_astronaut_track.json")
    info = sf.info(str(EXAMPLES / "speech.wav"))
    assert info.samplerate == 16000 and info.channels == 1 and info.subtype == "PCM_16"
    assert 6.0 <= info.frames / 16000 <= 9.0
    assert track.fps == 25
    assert track.num_frames == math.ceil(info.frames / 16000 * 25)
    assert track.image_size == (512, 512) and track.reference is not None
    files = [EXAMPLES / n for n in ("astronaut.png", "speech.wav", "speech_astronaut_track.json", "README.md")]
    assert sum(f.stat().st_size for f in files) < 1_000_000

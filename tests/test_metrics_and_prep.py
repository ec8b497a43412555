"""Lip-motion metrics, clip preparation into training examples, and the landmark evaluation script.

Everything runs on synthetic tracks or on tiny videos made here from scikit-image's astronaut; no real data.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import soundfile as sf

from pipeline.audio import num_video_frames
from pipeline.canonical import mean_face
from pipeline.regions import INNER_LIP_PAIRS, MOUTH
from pipeline.video import Mp4Writer
from tests.conftest import speechlike
from training.data.format import Example, find_examples
from training.metrics import aperture_correlation, landmark_jitter, lmd, lmd_motion, mouth_aperture

LOWER_INNER = [lower for _, lower in INNER_LIP_PAIRS]


def talking_track(num_frames: int = 80, seed: int = 0) -> np.ndarray:
    """The mean face with the lower inner lip following a random smooth opening (IOD)."""
    rng = np.random.default_rng(seed)
    opening = np.convolve(rng.random(num_frames + 8), np.ones(5) / 5, mode="same")[4:-4] * 0.2
    track = np.repeat(mean_face()[None, :, :2], num_frames, axis=0).copy()
    track[:, LOWER_INNER, 1] += opening[:, None]
    return track


# ---------------------------------------------------------------------------------------------------
# Metrics


def test_mouth_aperture_is_inner_lip_gap():
    face = mean_face()[:, :2]
    base = mouth_aperture(face)[0]
    moved = face.copy()
    moved[LOWER_INNER, 1] += 0.1
    assert mouth_aperture(moved)[0] == pytest.approx(base + 0.1)
    assert mouth_aperture(talking_track(30)).shape == (30,)


def test_perfect_prediction():
    real = talking_track()
    r0, best_r, lag = aperture_correlation(real.copy(), real)
    assert r0 == pytest.approx(1.0) and best_r == pytest.approx(1.0) and lag == 0
    assert lmd(real, real) == 0.0
    assert lmd_motion(real, real, real[0], real[0]) == 0.0


@pytest.mark.parametrize("shift", [3, -2])
def test_shifted_prediction_found_at_its_lag(shift):
    real = talking_track(100, seed=1)
    pred = np.roll(real, shift, axis=0)  # pred[t] = real[t - shift]: late by `shift` frames
    r0, best_r, lag = aperture_correlation(pred, real, max_lag=5)
    assert lag == shift
    assert best_r > 0.95 and r0 < best_r


def test_static_prediction_scores_zero_not_nan():
    real = talking_track()
    static = np.repeat(real[:1], len(real), axis=0)
    assert mouth_aperture(static).std() == pytest.approx(0.0, abs=1e-12)
    r0, best_r, lag = aperture_correlation(static, real)
    assert (r0, best_r, lag) == (0.0, 0.0, 0)
    assert landmark_jitter(static) == 0.0
    assert lmd(static, real) > 0


def test_lmd_plain_and_motion():
    real = talking_track(20)
    pred = real.copy()
    pred[:, list(MOUTH)] += np.array([0.03, 0.04])  # the same motion from a different rest shape
    assert lmd(pred, real) == pytest.approx(0.05)
    assert lmd_motion(pred, real, pred[0], real[0]) == pytest.approx(0.0, abs=1e-12)
    assert lmd_motion(pred, real) == pytest.approx(0.0, abs=1e-12)  # neutrals default to first frames


def test_jitter():
    face = mean_face()[:, :2]
    steady = face[None] + np.arange(10)[:, None, None] * np.array([0.01, 0.0])  # uniform motion
    assert landmark_jitter(steady) == pytest.approx(0.0, abs=1e-12)
    flicker = face[None] + (np.arange(10) % 2)[:, None, None] * np.array([0.0, 0.01])
    assert landmark_jitter(flicker) == pytest.approx(0.02)


# ---------------------------------------------------------------------------------------------------
# Preparing clips


def _write_video(path, frame, num_frames, audio=None):
    with Mp4Writer(path, fps=25, audio=audio) as writer:
        writer.write(np.repeat(frame[None], num_frames, axis=0))


@pytest.fixture(scope="module")
def prepared(tmp_path_factory, astronaut, analyzer):
    """Two layouts: a clip folder (video + audio16k.wav) and a speaker/video tree with sound in the mp4s."""
    from training.data.prepare_clips import prepare

    root = tmp_path_factory.mktemp("prep")
    clips = root / "clips"
    face = np.ascontiguousarray(astronaut[10:266, 110:366])  # 256x256 around the face
    (clips / "talker_a").mkdir(parents=True)
    _write_video(clips / "talker_a" / "video.mp4", face, 12)
    sf.write(clips / "talker_a" / "audio16k.wav", speechlike(0.5), 16000)  # 13 frames: one is padded
    (clips / "spk2" / "yt1").mkdir(parents=True)
    for utt in ("00001", "00002"):
        _write_video(clips / "spk2" / "yt1" / f"{utt}.mp4", face, 15, audio=speechlike(0.6, seed=int(utt)))
    out = root / "out"
    lines: list[str] = []
    results = prepare(clips, out, holdout={"talker_a"}, analyzer=analyzer, log=lines.append)
    return clips, out, results, lines


def test_prepare_writes_valid_examples(prepared):
    _, out, results, lines = prepared
    assert [r.name for r in results] == ["spk2_yt1_00001", "spk2_yt1_00002", "talker_a"]
    assert all(r.error == "" and not r.missing_frames for r in results)
    assert [p.name for p in find_examples(out / "holdout")] == ["clips-talker_a.npz"]
    assert [p.name for p in find_examples(out / "train")] == [
        "clips-spk2_yt1_00001-mirror.npz", "clips-spk2_yt1_00001.npz",
        "clips-spk2_yt1_00002-mirror.npz", "clips-spk2_yt1_00002.npz",
    ]
    ex = Example.load(out / "holdout" / "clips-talker_a.npz")
    assert (ex.source, ex.name, ex.fps) == ("clips", "talker_a", 25.0)
    assert len(ex.audio) == 8000
    assert len(ex.canonical) == num_video_frames(len(ex.audio), ex.fps) == 13
    # a still face: every frame (and the chosen neutral) is the same face, at the mean face's scale
    assert np.abs(ex.canonical - ex.neutral[None]).max() < 0.02
    assert np.linalg.norm(ex.neutral[45] - ex.neutral[36]) == pytest.approx(1.0, abs=0.05)
    # audio decoded from the video itself where there is no wav
    manifest = {row["name"]: row for row in json.loads((out / "manifest.json").read_text())}
    assert manifest["spk2_yt1_00001"]["audio_from"] == "video"
    assert manifest["talker_a"]["audio_from"] == "audio16k.wav"
    utt = Example.load(out / "train" / "clips-spk2_yt1_00001.npz")
    assert len(utt.canonical) == num_video_frames(len(utt.audio), 25.0)
    assert any("talker_a" in line and "missing-face" in line for line in lines)


def test_mirrored_copy(prepared):
    from training.data.prepare_clips import mirror_points

    _, out, _, _ = prepared
    ex = Example.load(out / "train" / "clips-spk2_yt1_00001.npz")
    mirrored = Example.load(out / "train" / "clips-spk2_yt1_00001-mirror.npz")
    assert mirrored.name == "spk2_yt1_00001-mirror"
    np.testing.assert_array_equal(mirrored.audio, ex.audio)
    np.testing.assert_allclose(mirrored.canonical, mirror_points(ex.canonical), atol=1e-6)
    np.testing.assert_allclose(mirrored.neutral, mirror_points(ex.neutral), atol=1e-6)
    # the subject's right eye (36) takes the left eye's (45) place, x flipped; it stays on the image left
    np.testing.assert_allclose(mirrored.canonical[:, 36], ex.canonical[:, 45] * np.array([-1, 1]), atol=1e-6)
    assert (mirrored.canonical[:, 36, 0] < mirrored.canonical[:, 45, 0]).all()
    np.testing.assert_allclose(mirror_points(mirror_points(ex.canonical)), ex.canonical)
    np.testing.assert_allclose(mouth_aperture(mirrored.canonical), mouth_aperture(ex.canonical), atol=1e-6)


def test_choose_neutral_prefers_closed_mouth():
    from training.data.prepare_clips import choose_neutral, fit_length

    track = talking_track(40, seed=2)
    pose = np.zeros((40, 6))
    track[0, LOWER_INNER, 1] += 0.1  # starts open: the most closed frame wins
    assert choose_neutral(track, pose) == int(np.argmin(mouth_aperture(track)))
    track[0] = track[int(np.argmin(mouth_aperture(track)))]  # starts closed: the first frame wins
    assert choose_neutral(track, pose) == 0
    turned = pose.copy()
    turned[:15, 0] = 25.0  # the clip starts looking aside: the neutral comes from the frontal rest
    assert choose_neutral(track, turned) >= 15
    assert fit_length(track, 45).shape == (45, 68, 2) and (fit_length(track, 45)[-1] == track[-1]).all()
    assert fit_length(track, 30).shape == (30, 68, 2)


# ---------------------------------------------------------------------------------------------------
# Evaluation


def test_energy_baseline_fit_recovers_gain():
    from training.evaluate_landmarks import energy_envelope, energy_predictor, energy_track, fit_energy_gain

    audio = speechlike(2.0)
    energy = energy_envelope(audio, 25.0, 50)
    assert energy.shape == (50,) and 0 <= energy.min() and energy.max() <= 1 and energy.std() > 0.1
    neutral = mean_face()[:, :2]
    track = energy_track(neutral, energy, 0.08)
    np.testing.assert_allclose(mouth_aperture(track), mouth_aperture(neutral)[0] + 0.08 * energy)
    ex = Example(audio, track, neutral, 25.0, "clips", "synthetic")
    gain, frames = fit_energy_gain([ex])
    assert gain == pytest.approx(0.08) and frames == 50
    r0, _, _ = aperture_correlation(energy_predictor(gain)(ex), ex.canonical)
    assert r0 == pytest.approx(1.0)


def test_evaluate_baselines_write_table(prepared, tmp_path, capsys):
    from training.evaluate_landmarks import main

    _, out, _, _ = prepared
    report = tmp_path / "report"
    assert main(["--data", str(out / "holdout"), "--fit-data", str(out / "train"), "--out", str(report)]) == 0
    table = (report / "landmarks.md").read_text()
    assert "| static |" in table and "| energy |" in table and "| talker_a |" in table
    assert "fitted on 2 clips" in table  # mirrored copies are not used
    assert table in capsys.readouterr().out
    numbers = json.loads((report / "landmarks.json").read_text())
    static = numbers["methods"]["static"]["clips"]["talker_a"]
    assert static["r0"] == 0.0 and static["lmd"] < 0.02 and static["frames"] == 13
    assert set(numbers["methods"]) == {"static", "energy", "real"}


def test_evaluate_with_tiny_random_model(prepared, tmp_path):
    pytest.importorskip("diffusers")
    denoiser = pytest.importorskip("pipeline.models.landmark_denoiser")
    from training.evaluate_landmarks import main

    _, out, _, _ = prepared
    model_dir = tmp_path / "model"
    denoiser.LandmarkDenoiser(window=8, d_model=16, num_layers=1, num_heads=2).save_pretrained(model_dir)
    report = tmp_path / "report"
    from pipeline.models.mouth_regressor import MouthOpeningRegressor

    MouthOpeningRegressor(context=2).save_pretrained(tmp_path / "regressor")
    assert main(["--data", str(out / "holdout"), "--model", str(model_dir), "--steps", "2",
                 "--mouth-regressor", str(tmp_path / "regressor"), "--out", str(report)]) == 0
    table = (report / "landmarks.md").read_text()
    assert all(f"| {m} |" in table for m in ("model", "regressor", "model+regressor")) and "## Median" in table
    assert (report / "landmarks.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    methods = json.loads((report / "landmarks.json").read_text())["methods"]
    model = methods["model"]["clips"]["talker_a"]
    assert model["frames"] == 13 and np.isfinite([model["lmd"], model["r0"], model["jitter"]]).all()
    assert methods["model+regressor"]["clips"]["talker_a"]["lmd"] != model["lmd"]  # the opening was mixed in


def test_silent_frames_and_the_silent_mouth():
    """Silence is runs of 200 ms or more far under the loud frames; the silent-mouth figure is how much wider the
    predicted mouth is there than the real one."""
    from training.evaluate_landmarks import silent_frames
    from training.metrics import silent_opening

    voice = (0.3 * np.sin(2 * np.pi * 180 * np.arange(16000) / 16000)).astype(np.float32)  # 1 s, steady
    audio = np.concatenate([voice, np.zeros(8000, np.float32), voice])
    silent = silent_frames(audio, 25.0, 63)
    assert not silent[:24].any() and silent[27:36].all() and not silent[39:].any()
    quick_stop = np.concatenate([voice, np.zeros(1600, np.float32), voice])
    assert not silent_frames(quick_stop, 25.0, 52).any()  # 100 ms is a stop within a word, not silence
    real = np.repeat(mean_face()[None, :, :2], 63, axis=0)
    pred = real.copy()
    pred[:, [65, 66, 67], 1] += 0.05  # 0.05 IOD wider everywhere
    assert silent_opening(pred, real, silent) == pytest.approx(0.05)
    assert np.isnan(silent_opening(pred, real, np.zeros(63, bool)))


def test_lip_closures_count_the_real_brief_closures_the_prediction_shares():
    """Of the real lips' brief closures (runs of at most 8 touching frames inside the clip), the share where the
    prediction touches too, a frame early or late included; a long pause and a clip that starts closed do not count,
    a mouth that never shuts scores 0, and a clip without a brief closure is NaN."""
    from training.metrics import lip_closures

    face = mean_face()[:, :2]
    opening = np.full(60, 0.08)
    opening[:3] = 0.0  # the clip starts closed: not a closure within speech
    opening[10:12] = 0.0  # an m
    opening[30:33] = 0.01  # a b, lips within 0.02 of rest
    opening[45:57] = 0.0  # a pause of 12 frames: too long
    real = np.repeat(face[None], 60, axis=0)
    real[:, [65, 66, 67], 1] += opening[:, None]
    assert lip_closures(real, real, face, face) == 1.0
    shifted = np.roll(real, 1, axis=0)  # a frame late still touches on the closure's frames or beside them
    assert lip_closures(shifted, real, face, face) == 1.0
    one = real.copy()
    one[30:33, [65, 66, 67], 1] = face[[65, 66, 67], 1] + 0.05  # misses the b
    assert lip_closures(one, real, face, face) == 0.5
    wide = np.repeat(face[None], 60, axis=0)
    wide[:, [65, 66, 67], 1] += 0.05
    assert lip_closures(wide, real, face, face) == 0.0
    open_rest = face.copy()
    open_rest[[65, 66, 67], 1] += 0.05  # measured above its own rest face, a mouth that open there is shut
    assert lip_closures(wide, real, open_rest, face) == 1.0
    assert np.isnan(lip_closures(real, wide, face, face))


def test_dynamics_and_sync_gap():
    """A prediction half as lively as the real mouth scores 0.5; a mouth that opens with the loudness has no sync
    gap on voiced frames, one that never moves has the mean loudness there."""
    from training.metrics import brow_height, dynamics, sync_gap

    t = np.arange(50)
    real = np.sin(t / 3.0)
    assert dynamics(0.5 * real, real) == pytest.approx(0.5) and dynamics(real, np.zeros(50)) == 0.0
    face = mean_face()[:, :2]
    loudness = 0.5 + 0.5 * np.sin(t / 4.0)
    track = np.repeat(face[None], 50, axis=0)
    track[:, [65, 66, 67], 1] += 0.2 * loudness[:, None]
    voiced = loudness >= 0.5
    assert sync_gap(track, loudness, voiced) < 0.05
    still = np.repeat(face[None], 50, axis=0)
    assert sync_gap(still, loudness, voiced) == pytest.approx(loudness[voiced].mean())
    assert np.isnan(sync_gap(still, loudness, np.zeros(50, bool)))
    raised = still.copy()
    raised[:, 17:27, 1] -= 0.05
    assert np.allclose(brow_height(raised), brow_height(still) - 0.05)

"""bench/quality.py: its metric helpers on synthetic data, and one end-to-end run on a tiny synthetic clip."""

from __future__ import annotations

import json

import cv2
import numpy as np
import pytest
import torch

from bench import quality
from pipeline import TalkingFacePipeline
from pipeline.render.warp import WarpRenderer
from pipeline.video import Mp4Writer
from tests.conftest import get_dummy_components, speechlike


@pytest.fixture(scope="module")
def face(astronaut, astronaut_landmarks):
    return astronaut, astronaut_landmarks


def test_psnr_is_capped_for_identical_images_and_finite_otherwise(face):
    image, _ = face
    assert quality.psnr(image, image) == quality.PSNR_CAP  # documented: identical -> the cap, not inf
    noisy = np.clip(image + np.random.default_rng(0).normal(0, 10, image.shape), 0, 255).astype(np.uint8)
    value = quality.psnr(image, noisy)
    assert 20 < value < 40 and np.isfinite(value)


def test_ssim_of_identical_images_is_one(face):
    image, _ = face
    assert quality.ssim(image, image) == pytest.approx(1.0)
    blurred = cv2.GaussianBlur(image, (0, 0), 3)
    assert quality.ssim(image, blurred) < 0.9


def test_csim_of_a_face_with_itself_is_one_and_lower_with_noise(face):
    image, landmarks = face
    embedder = quality.FaceEmbedder()
    reference = embedder.embed(image, landmarks)
    assert reference.shape == (128,)
    assert quality.csim(embedder, reference, [image.copy()], [landmarks]) > 0.9999
    noisy = np.clip(image + np.random.default_rng(0).normal(0, 60, image.shape), 0, 255).astype(np.uint8)
    assert quality.csim(embedder, reference, [noisy], [landmarks]) < 0.99


def test_flicker_of_a_static_video_is_zero_and_sharpness_drops_with_blur(face):
    image, landmarks = face
    still = np.repeat(image[None], 5, axis=0)
    assert quality.flicker(still) == 0.0
    assert quality.flicker(still[:1]) == 0.0
    moving = still.copy()
    moving[1::2] = 255 - moving[1::2]
    assert quality.flicker(moving) > 50
    blurred = cv2.GaussianBlur(image, (0, 0), 2)
    assert quality.sharpness(blurred) < 0.5 * quality.sharpness(image)
    box = quality.mouth_box(landmarks, image.shape)
    assert box[0] < landmarks[48, 0] < box[2] and box[1] < landmarks[51, 1] < box[3]
    assert quality.sharpness(blurred, box) < quality.sharpness(image, box)


def test_mfcc_and_syncnet_path_with_random_weights(tmp_path):
    features = quality.mfcc(speechlike(1.0) * 32768.0)
    assert features.shape == (99, 13) and np.isfinite(features).all()  # 100 Hz, 25 ms windows
    torch.manual_seed(0)
    torch.save(quality.build_syncnet().state_dict(), tmp_path / "syncnet.model")
    model = quality.load_syncnet(tmp_path / "syncnet.model")
    rng = np.random.default_rng(0)
    frames = rng.integers(0, 255, (10, 128, 128, 3), dtype=np.uint8)
    landmarks = np.tile(rng.uniform(30, 100, (1, 68, 2)), (10, 1, 1))
    crops = quality.syncnet_crops(frames, landmarks)
    assert crops.shape == (10, 224, 224, 3)
    scores = quality.lse(model, crops, speechlike(0.4), 25.0)
    assert np.isfinite(scores["lse_d"]) and scores["lse_c"] >= 0 and -15 <= scores["lse_offset"] <= 15


@pytest.fixture(scope="module")
def clip_folder(tmp_path_factory, astronaut):
    """One talking clip (a video with its sound, no ref.png): the astronaut opening her mouth twice a second."""
    from pipeline.face import FaceAnalyzer

    root = tmp_path_factory.mktemp("quality")
    image = cv2.resize(astronaut, (320, 320), interpolation=cv2.INTER_AREA)
    landmarks = FaceAnalyzer().detect(image).landmarks.astype(np.float64)
    frames = 20
    track = np.repeat(landmarks[None], frames, axis=0)
    opening = 6 * np.clip(np.sin(2 * np.pi * 2.0 * np.arange(frames) / 25), 0, None) ** 2
    track[:, [56, 57, 58, 65, 66, 67], 1] += opening[:, None]
    renderer = WarpRenderer(full=True)
    video = renderer.render(renderer.prepare(image, landmarks), track)
    (root / "clips" / "talk").mkdir(parents=True)
    with Mp4Writer(root / "clips" / "talk" / "clip.mp4", 25, speechlike(0.8)) as writer:
        writer.write(video)
    TalkingFacePipeline(**get_dummy_components()).save_pretrained(root / "ckpt")
    return root


def test_end_to_end_on_a_tiny_clip(clip_folder, capsys):
    out = clip_folder / "out"
    code = quality.main(["--clips", str(clip_folder / "clips"), "--checkpoint", str(clip_folder / "ckpt"),
                         "--out", str(out), "--csim-frames", "2", "--steps", "2", "--threads", "1"])
    assert code == 0
    for name in ("quality.md", "quality.json", "mouth.png", "metrics.png"):
        assert (out / name).is_file() and (out / name).stat().st_size > 0, name
    text = (out / "quality.md").read_text()
    assert "| method | r@0 |" in text and "## Per clip" in text and "model+diffusion: " in text
    assert "| method | r@0 |" in capsys.readouterr().out  # the table is printed
    data = json.loads((out / "quality.json").read_text())
    methods = data["clips"]["talk"]["methods"]
    assert {"static", "energy", "model+warp", "real"} <= set(methods)
    assert methods["static"]["r0"] == 0.0 and methods["static"]["flicker"] == 0.0
    assert methods["energy"]["r0"] > 0.3  # the energy mouth opens with the syllables, as the real one does
    model = methods["model+warp"]
    for key in ("r0", "best_r", "lmd", "v_r0", "v_lmd", "csim", "psnr", "ssim", "sharpness", "flicker_rel", "jitter"):
        assert np.isfinite(model[key]), key
    assert 0.5 < model["csim"] <= 1.0 and 20 < model["psnr"] <= quality.PSNR_CAP and 0.5 < model["ssim"] <= 1.0
    assert set(data["mean"]) >= {"static", "energy", "model+warp", "real"}
    assert len(data["clips"]["talk"]["apertures"]["real"]) == data["clips"]["talk"]["frames"] == 20


def test_energy_gain_is_fitted_on_the_training_clips_only(face, tmp_path):
    """With a held-out split the energy baseline's gain is fitted on the other clips: each gets its rest face
    (pose and mouth read from its landmarks) and a positive gain comes out when the mouth opens with loudness."""
    _, landmarks = face
    rng = np.random.default_rng(0)
    audio = speechlike(2.0)
    loudness = np.abs(audio[: 50 * 640].reshape(50, 640)).mean(axis=1)
    track = np.repeat(landmarks[None], 50, axis=0).astype(np.float64)
    track[:, 56:59, 1] += 30 * loudness[:, None] / loudness.max()  # the lower lip drops as the voice gets loud
    track[:, 65:68, 1] += 30 * loudness[:, None] / loudness.max()
    track += rng.normal(0, 0.05, track.shape)

    def clip(name, held_out):
        return quality.Clip(name, tmp_path / f"{name}.mp4", held_out, audio, 25.0, 50, np.zeros((8, 8, 3), np.uint8),
                            landmarks, track)

    gain, how = quality.energy_gain([clip("a", False), clip("b", False), clip("c", True)], None)
    assert gain > 0 and "2 non-held-out clips" in how
    assert quality.energy_gain([clip("a", False)], 0.5) == (0.5, "given")

"""Shared fixtures: a public-domain portrait (scikit-image's astronaut) and synthetic speech-like audio."""

from __future__ import annotations

import numpy as np
import pytest
import soundfile as sf


@pytest.fixture(scope="session")
def astronaut() -> np.ndarray:
    import skimage.data

    return skimage.data.astronaut()


@pytest.fixture(scope="session")
def analyzer():
    from pipeline.face import FaceAnalyzer

    return FaceAnalyzer()


@pytest.fixture(scope="session")
def astronaut_landmarks(astronaut, analyzer) -> np.ndarray:
    return analyzer.detect(astronaut).landmarks


def speechlike(seconds: float, sr: int = 16000, seed: int = 0) -> np.ndarray:
    """Voiced bursts (syllables about 4 per second) over a faint noise floor."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * sr)) / sr
    envelope = np.clip(np.sin(2 * np.pi * 2.0 * t), 0, None) ** 2
    voice = sum(np.sin(2 * np.pi * f * t) / k for k, f in enumerate((140, 280, 420, 700), start=1))
    return (0.3 * envelope * voice + 0.003 * rng.standard_normal(len(t))).astype(np.float32)


@pytest.fixture(scope="module")
def media(tmp_path_factory, astronaut):
    """A folder with ``photo.png`` (the astronaut) and ``speech.wav`` (1.5 s of speech-like sound)."""
    import soundfile as sf
    from PIL import Image

    folder = tmp_path_factory.mktemp("media")
    Image.fromarray(astronaut).save(folder / "photo.png")
    sf.write(folder / "speech.wav", speechlike(1.5), 16000)
    return folder


@pytest.fixture
def speech_wav(tmp_path):
    path = tmp_path / "speech.wav"
    sf.write(path, speechlike(2.0), 16000)
    return path


@pytest.fixture(scope="module")
def one_thread():
    """Tiny models run fastest on one thread: thread hand-offs cost more than they give (much more on a busy
    machine). Modules opt in with ``pytestmark = pytest.mark.usefixtures("one_thread")``."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def get_dummy_components() -> dict:
    """A tiny landmark denoiser and its scheduler: the components of a fast test ``TalkingFacePipeline``."""
    import torch
    from diffusers import DDIMScheduler

    from pipeline import LandmarkDenoiser

    torch.manual_seed(0)
    denoiser = LandmarkDenoiser(window=16, audio_dim=320, d_model=32, num_layers=1, num_heads=2)
    scheduler = DDIMScheduler(num_train_timesteps=1000, beta_schedule="squaredcos_cap_v2",
                              prediction_type="sample", clip_sample=False)
    return {"landmark_denoiser": denoiser, "scheduler": scheduler}


@pytest.fixture(scope="module")
def pipe():
    """A ``TalkingFacePipeline`` of :func:`get_dummy_components`, progress bars off."""
    from pipeline import TalkingFacePipeline

    pipe = TalkingFacePipeline(**get_dummy_components())
    pipe.set_progress_bar_config(disable=True)
    return pipe

"""Tests for pipeline.audio: loading every format, refusing bad recordings, and frame-exact features."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import imageio_ffmpeg
import numpy as np
import pytest
import soundfile as sf
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from pipeline.audio import (
    SAMPLE_RATE,
    LogMelFeatures,
    PretrainedSpeechFeatures,
    audio_duration,
    load_audio,
    make_audio_features,
    num_video_frames,
    write_wav,
)
from pipeline.errors import AudioError

REPO = Path(__file__).resolve().parents[1]


def tone(seconds: float, rate: int, channels: int = 1, freq: float = 440.0, amp: float = 0.5) -> np.ndarray:
    """A sine tone, shaped (N,) for one channel or (N, channels)."""
    t = np.arange(round(seconds * rate)) / rate
    wave = (amp * np.sin(2 * np.pi * freq * t)).astype(np.float32)
    return wave if channels == 1 else np.repeat(wave[:, None], channels, axis=1)


def dominant_frequency(samples: np.ndarray) -> float:
    spectrum = np.abs(np.fft.rfft(samples * np.hanning(len(samples))))
    return float(np.argmax(spectrum)) * SAMPLE_RATE / len(samples)


def assert_tone(samples: np.ndarray, seconds: float, tolerance_s: float) -> None:
    assert samples.dtype == np.float32 and samples.ndim == 1
    assert abs(len(samples) - seconds * SAMPLE_RATE) <= tolerance_s * SAMPLE_RATE
    assert abs(dominant_frequency(samples) - 440.0) < 3.0
    middle = samples[len(samples) // 4 : -len(samples) // 4]
    assert np.sqrt(np.mean(middle**2)) == pytest.approx(0.5 / np.sqrt(2), rel=0.05)


# ----------------------------------------------------------------------------------------------------
# Formats


@pytest.mark.parametrize(
    ("name", "rate", "channels", "kw"),
    [
        ("mono16k.wav", 16000, 1, {}),
        ("stereo44k.wav", 44100, 2, {}),
        ("phone8k.wav", 8000, 1, {}),
        ("studio96k.wav", 96000, 1, {"subtype": "PCM_24"}),
        ("surround.wav", 48000, 6, {}),
        ("float.wav", 22050, 2, {"subtype": "FLOAT"}),
        ("lossless.flac", 44100, 2, {}),
        ("vorbis.ogg", 48000, 2, {}),
    ],
)
def test_lossless_and_vorbis_files(tmp_path, name, rate, channels, kw):
    path = tmp_path / name
    sf.write(path, tone(1.5, rate, channels), rate, **kw)
    assert_tone(load_audio(path), 1.5, tolerance_s=1 / SAMPLE_RATE)


def test_mp3_file(tmp_path):
    if "MP3" not in sf.available_formats():
        pytest.skip("this libsndfile cannot write MP3")
    path = tmp_path / "voice.mp3"
    sf.write(path, tone(1.5, 44100, 2), 44100, format="MP3")
    assert_tone(load_audio(str(path)), 1.5, tolerance_s=0.06)


def _ffmpeg_encode(wav: Path, out: Path, *codec: str) -> Path:
    exe = imageio_ffmpeg.get_ffmpeg_exe()
    command = [exe, "-nostdin", "-v", "error", "-y", "-i", str(wav), *codec, str(out)]
    subprocess.run(command, check=True, timeout=60)
    return out


@pytest.fixture
def m4a(tmp_path) -> Path:
    wav = tmp_path / "source.wav"
    sf.write(wav, tone(1.5, 44100, 2), 44100)
    return _ffmpeg_encode(wav, tmp_path / "voice.m4a", "-c:a", "aac")


def test_m4a_goes_through_bundled_ffmpeg(m4a):
    with pytest.raises(sf.LibsndfileError):
        sf.info(m4a)
    assert_tone(load_audio(m4a), 1.5, tolerance_s=0.06)


def test_mp4_with_video_track_uses_its_audio(tmp_path):
    wav = tmp_path / "source.wav"
    sf.write(wav, tone(1.0, 48000), 48000)
    exe = imageio_ffmpeg.get_ffmpeg_exe()
    out = tmp_path / "clip.mp4"
    command = [exe, "-nostdin", "-v", "error", "-f", "lavfi", "-i", "color=size=32x32:rate=10",
               "-i", str(wav), "-shortest", "-c:v", "mpeg4", "-c:a", "aac", str(out)]  # fmt: skip
    subprocess.run(command, check=True, timeout=60)
    assert_tone(load_audio(out), 1.0, tolerance_s=0.1)


def test_gradio_int16_stereo_tuple():
    samples = (tone(1.0, 44100, 2) * 32767).astype(np.int16)
    assert_tone(load_audio((44100, samples)), 1.0, tolerance_s=1 / SAMPLE_RATE)


def test_gradio_float_mono_tuple_is_used_as_is():
    samples = tone(1.0, SAMPLE_RATE).astype(np.float64)
    out = load_audio((np.int64(SAMPLE_RATE), samples))
    np.testing.assert_allclose(out, samples, atol=1e-6)


def test_clipped_audio_is_accepted():
    square = np.sign(tone(1.0, SAMPLE_RATE)) * 1.3
    assert np.abs(load_audio((SAMPLE_RATE, square))).max() >= 1.0


def test_write_wav_round_trip_clips(tmp_path):
    path = tmp_path / "out.wav"
    write_wav(path, np.array([0.0, 0.5, 2.0, -2.0] * 1000, dtype=np.float32))
    info = sf.info(path)
    assert (info.samplerate, info.subtype) == (SAMPLE_RATE, "PCM_16")
    data, _ = sf.read(path)
    assert data.max() == pytest.approx(1.0, abs=1e-3) and data.min() == pytest.approx(-1.0, abs=1e-3)


# ----------------------------------------------------------------------------------------------------
# Bad input


def _png_named_mp3(tmp_path: Path) -> Path:
    path = tmp_path / "photo.mp3"
    Image.new("RGB", (8, 8), "red").save(path, format="PNG")
    return path


def _write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


@pytest.mark.parametrize(
    ("make", "keyword"),
    [
        (lambda d: d / "missing.wav", "does not exist"),
        (lambda d: _write(d / "empty.wav", b""), "empty"),
        (lambda d: _write(d / "noise.wav", np.random.default_rng(0).bytes(5000)), "can read"),
        (lambda d: _write(d / "notes.wav", b"this is not audio\n" * 100), "can read"),
        (_png_named_mp3, "can read"),
    ],
    ids=["missing", "zero-byte", "random-bytes", "text", "png-as-mp3"],
)
def test_unreadable_files(tmp_path, make, keyword):
    with pytest.raises(AudioError, match=keyword):
        load_audio(make(tmp_path))


def test_short_clip(tmp_path):
    path = tmp_path / "blip.wav"
    sf.write(path, tone(0.1, 16000), 16000)
    with pytest.raises(AudioError, match="too short"):
        load_audio(path)


@pytest.mark.parametrize("level", [0.0, 10 ** (-70 / 20)])
def test_silence(tmp_path, level):
    path = tmp_path / "quiet.wav"
    sf.write(path, tone(1.0, 16000, amp=level), 16000, subtype="FLOAT")
    with pytest.raises(AudioError, match=r"The recording .*is silent"):
        load_audio(path)


def test_quiet_but_not_silent_is_accepted():
    assert len(load_audio((SAMPLE_RATE, tone(1.0, SAMPLE_RATE, amp=10 ** (-50 / 20))))) == SAMPLE_RATE


def test_too_long_is_refused_from_the_header(tmp_path, monkeypatch):
    path = tmp_path / "speech.wav"
    sf.write(path, tone(3.0, 16000), 16000)

    def no_decoding(*args, **kwargs):
        raise AssertionError("the samples were decoded")

    monkeypatch.setattr(sf.SoundFile, "blocks", no_decoding)
    with pytest.raises(AudioError, match=r"limit of 2 s.*TALKING_FACE_MAX_AUDIO_SECONDS"):
        load_audio(path, max_seconds=2)


def test_too_long_through_ffmpeg_and_tuple(m4a):
    with pytest.raises(AudioError, match="limit of 1 s"):
        load_audio(m4a, max_seconds=1)
    with pytest.raises(AudioError, match="limit of 1 s"):
        load_audio((8000, tone(1.5, 8000)), max_seconds=1)


def test_nan_samples(tmp_path):
    samples = tone(1.0, 16000)
    samples[100] = np.nan
    path = tmp_path / "nan.wav"
    sf.write(path, samples, 16000, subtype="FLOAT")
    with pytest.raises(AudioError, match="NaN"):
        load_audio(path)
    samples[100] = np.inf
    with pytest.raises(AudioError, match="NaN or infinity"):
        load_audio((16000, samples))


@pytest.mark.parametrize(
    "source",
    [
        None,
        (0, np.zeros(16000)),
        (16000, np.zeros((2, 3, 4))),
        (16000, np.zeros((16000, 0))),
        (16000, np.ones(16000, dtype=complex)),
        (16000,),
    ],
    ids=["none", "zero-rate", "3d", "no-channels", "complex", "one-item"],
)
def test_bad_tuples(source):
    with pytest.raises(AudioError):
        load_audio(source)


PREFIXES = [
    b"",
    b"RIFF\x24\x00\x00\x00WAVEfmt ",
    b"fLaC",
    b"OggS",
    b"ID3\x03",
    b"\xff\xfb",
    b"\x00\x00\x00\x18ftypM4A ",
]


@settings(max_examples=50, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    prefix=st.sampled_from(PREFIXES),
    body=st.binary(max_size=4096),
    suffix=st.sampled_from([".wav", ".mp3", ".flac", ".ogg", ".m4a", ".bin"]),
)
def test_random_bytes_never_escape_as_other_errors(tmp_path, prefix, body, suffix):
    path = _write(tmp_path / f"upload{suffix}", prefix + body)
    try:
        out = load_audio(path)
    except AudioError:
        return
    assert out.dtype == np.float32 and out.ndim == 1


# ----------------------------------------------------------------------------------------------------
# Timing and features


@pytest.mark.parametrize(
    ("seconds", "fps", "frames"),
    [
        (1.0, 25, 25),
        (1.01, 25, 26),
        (1.0, 24, 24),
        (1.0, 30, 30),
        (1.0, 29.97, 30),
        (0.5, 29.97, 15),
        (2.0, 30000 / 1001, 60),
        (0.04, 25, 1),
        (0.0, 25, 1),
        (10.0, 29.97, 300),
        (3.3, 30, 99),
    ],
)
def test_num_video_frames(seconds, fps, frames):
    num_samples = round(seconds * SAMPLE_RATE)
    assert audio_duration(np.zeros(num_samples)) == pytest.approx(seconds)
    assert num_video_frames(num_samples, fps) == frames


@pytest.mark.parametrize("fps", [24, 25, 29.97, 30])
@pytest.mark.parametrize("num_samples", [100, 3200, 16000, 16160, 40007])
def test_logmel_frame_counts(num_samples, fps):
    samples = np.random.default_rng(num_samples).standard_normal(num_samples).astype(np.float32) * 0.1
    features = LogMelFeatures()(samples, fps)
    assert (
        features.shape == (num_video_frames(num_samples, fps), 320) == (features.shape[0], LogMelFeatures.dim)
    )
    assert features.dtype == np.float32 and np.isfinite(features).all()


def bursts(onsets: list[int], fps: float, total_frames: int, length: int = 4) -> np.ndarray:
    """Voiced bursts with 10 ms fades, starting exactly at the given video frames, over faint noise."""
    n = round(total_frames / fps * SAMPLE_RATE)
    t = np.arange(n) / SAMPLE_RATE
    voice = sum(np.sin(2 * np.pi * f * t) / k for k, f in enumerate((140, 280, 420, 700), start=1))
    ramp = np.sin(np.linspace(0, np.pi / 2, SAMPLE_RATE // 100)) ** 2  # 10 ms fades: no clicks
    gate = np.zeros(n)
    for onset in onsets:
        start, stop = round(onset / fps * SAMPLE_RATE), round((onset + length) / fps * SAMPLE_RATE)
        gate[start:stop] = np.concatenate([ramp, np.ones(stop - start - 2 * len(ramp)), ramp[::-1]])
    return (0.3 * gate * voice + 1e-3 * np.random.default_rng(0).standard_normal(n)).astype(np.float32)


@pytest.mark.parametrize("fps", [24, 25, 29.97, 30])
def test_logmel_bursts_line_up_with_video_frames(fps):
    onsets = [7, 23, 41]
    energy = LogMelFeatures()(bursts(onsets, fps, 60), fps).mean(axis=1)
    loud = energy > (energy.max() + energy.min()) / 2
    found = [i for i in range(1, len(loud)) if loud[i] and not loud[i - 1]]
    assert len(found) == len(onsets)
    assert all(abs(a - b) <= 1 for a, b in zip(found, onsets, strict=True))


def test_logmel_ignores_overall_loudness():
    samples = bursts([5, 15], 25, 30)
    features = LogMelFeatures()
    np.testing.assert_allclose(features(samples), features(samples * 0.25), atol=1e-3)


def test_import_stays_light():
    code = "import sys, pipeline.audio; print(sorted({'torch', 'transformers'} & set(sys.modules)))"
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True
    )
    assert result.stdout.strip() == "[]"


# ----------------------------------------------------------------------------------------------------
# Pretrained encoders (tiny, randomly initialised, saved locally: nothing is downloaded)

TINY = dict(
    hidden_size=32,
    num_hidden_layers=2,
    num_attention_heads=2,
    intermediate_size=37,
    conv_dim=(32,) * 7,
    conv_kernel=(10, 3, 3, 3, 3, 2, 2),
    conv_stride=(5, 2, 2, 2, 2, 2, 2),
    num_feat_extract_layers=7,
    num_conv_pos_embeddings=16,
    num_conv_pos_embedding_groups=4,
)


@pytest.fixture(scope="module", params=["hubert", "wav2vec2"])
def tiny_model_dir(request, tmp_path_factory) -> str:
    import torch
    from transformers import (
        HubertConfig,
        HubertModel,
        Wav2Vec2Config,
        Wav2Vec2FeatureExtractor,
        Wav2Vec2Model,
    )

    torch.manual_seed(0)
    if request.param == "hubert":
        model = HubertModel(HubertConfig(**TINY))
    else:
        model = Wav2Vec2Model(Wav2Vec2Config(**TINY))
    folder = tmp_path_factory.mktemp(request.param)
    model.save_pretrained(folder)
    Wav2Vec2FeatureExtractor(feature_size=1, sampling_rate=SAMPLE_RATE, do_normalize=True).save_pretrained(
        folder
    )
    return str(folder)


def test_pretrained_shape_and_determinism(tiny_model_dir):
    samples = bursts([3, 12], 25, 33)
    features = PretrainedSpeechFeatures(tiny_model_dir, local_files_only=True)
    out = features(samples, fps=25)
    assert features.dim == 32
    assert out.shape == (33, 32) and out.dtype == np.float32 and np.isfinite(out).all()
    np.testing.assert_array_equal(out, features(samples, fps=25))
    again = make_audio_features(tiny_model_dir, local_files_only=True, layer=2)
    np.testing.assert_allclose(again(samples, fps=25), out, atol=1e-5)
    assert features(samples, fps=29.97).shape == (num_video_frames(len(samples), 29.97), 32)
    assert features(samples[:100]).shape == (1, 32)


def test_pretrained_chunks_match_a_single_pass(tiny_model_dir):
    """Chunks differ a little (the encoder's group norm and attention see less context), but only a
    little; the one-frame-shifted comparison shows that a misaligned chunk would be caught."""
    samples = bursts([5, 30, 60, 90, 120], 25, 150)  # 6 s
    single = PretrainedSpeechFeatures(tiny_model_dir, local_files_only=True)(samples)
    chunked = PretrainedSpeechFeatures(
        tiny_model_dir, local_files_only=True, chunk_seconds=1.5, overlap_seconds=0.5
    )(samples)
    assert chunked.shape == single.shape == (150, 32)
    a, b = single[10:-10], chunked[10:-10]
    np.testing.assert_allclose(b, a, atol=0.25 * np.abs(a).max())
    assert np.abs(a - b).mean() < 0.1 * np.abs(a).mean()
    assert np.corrcoef(a.ravel(), b.ravel())[0, 1] > 0.99
    assert np.corrcoef(a[1:].ravel(), b[:-1].ravel())[0, 1] < 0.9


def test_pretrained_rejects_bad_settings(tiny_model_dir):
    with pytest.raises(ValueError, match="layer"):
        PretrainedSpeechFeatures(tiny_model_dir, local_files_only=True, layer=5)
    with pytest.raises(ValueError, match="chunk_seconds"):
        PretrainedSpeechFeatures(
            tiny_model_dir, local_files_only=True, chunk_seconds=1.0, overlap_seconds=0.5
        )


def test_make_audio_features_default():
    assert isinstance(make_audio_features(), LogMelFeatures)
    assert isinstance(make_audio_features("logmel"), LogMelFeatures)

"""The mouth-opening regressor: its model, its ridge fit and its place in the pipeline."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from pipeline import InputError, MouthOpeningRegressor, TalkingFacePipeline
from pipeline.landmarks import closed_mouth, inner_lip_gap
from tests.conftest import get_dummy_components, speechlike
from training.data.format import Example
from training.train_mouth_regressor import band_context, fit


def test_regressor_shapes_edges_and_round_trip(tmp_path):
    torch.manual_seed(0)
    model = MouthOpeningRegressor(context=2).eval()
    features = torch.randn(30, 320)
    opening = model(features)
    assert opening.shape == (30,) and (opening >= 0).all()
    assert torch.allclose(model(features[None].repeat(2, 1, 1))[1], opening)
    assert model(features[:1]).shape == (1,)  # one frame still has its (repeated) context
    model.save_pretrained(tmp_path / "m")
    again = MouthOpeningRegressor.from_pretrained(tmp_path / "m", use_safetensors=True).eval()
    assert torch.allclose(again(features), opening)
    with pytest.raises(AssertionError, match="features a frame"):
        model(torch.randn(30, 80))


def test_band_context_lines_up_with_the_models_taps():
    """A filter set from fitted weights gives, in the model, what the weights give on band_context's rows."""
    torch.manual_seed(0)
    model = MouthOpeningRegressor(context=3).eval()
    features = np.random.default_rng(0).normal(size=(25, 320)).astype(np.float32)
    rows = band_context(features, model)  # (25, 7 * 80)
    weights = model.filter.weight.detach().numpy()[0].T.reshape(-1)  # tap-major, as the rows are
    expected = np.maximum(rows @ weights + model.filter.bias.item(), 0.0)
    assert np.allclose(model(torch.from_numpy(features)).detach().numpy(), expected, atol=1e-5)



def test_smoothing_is_a_gaussian_over_the_filters_opening():
    """With ``smoothing`` the opening is the unsmoothed filter's output convolved over time with a normalised
    Gaussian of that many frames (edges repeated), then kept at or above 0; a negative width is refused."""
    torch.manual_seed(0)
    sharp = MouthOpeningRegressor(context=2).eval()
    smooth = MouthOpeningRegressor(context=2, smoothing=1.0).eval()
    smooth.load_state_dict(sharp.state_dict())
    features = torch.randn(40, 320)
    with torch.no_grad():
        raw = sharp.filter(torch.nn.functional.pad(features.reshape(40, 4, 80).mean(1).T[None], (2, 2),
                                                   mode="replicate"))[0, 0].numpy()
        got = smooth(features).numpy()
    taps = np.exp(-0.5 * np.arange(-3, 4) ** 2)
    expected = np.maximum(np.convolve(np.pad(raw, 3, mode="edge"), taps / taps.sum(), mode="valid"), 0.0)
    assert np.allclose(got, expected, atol=1e-5)
    assert np.abs(np.diff(got)).mean() < np.abs(np.diff(np.maximum(raw, 0.0))).mean()
    with pytest.raises(ValueError, match="smoothing"):
        MouthOpeningRegressor(smoothing=-1.0)


def test_dead_zone_shuts_the_smallest_openings_and_lowers_the_rest_by_it(tmp_path):
    """With ``dead_zone`` d the opening is max(opening - d, 0): openings under d become shut lips (0) and wider ones
    keep their shape, d lower; the setting is saved with the model and a negative one is refused."""
    torch.manual_seed(0)
    plain = MouthOpeningRegressor(context=2, smoothing=0.8).eval()
    zoned = MouthOpeningRegressor(context=2, smoothing=0.8, dead_zone=0.02).eval()
    zoned.load_state_dict(plain.state_dict())
    with torch.no_grad():
        plain.filter.weight.mul_(0.05)  # openings of a few hundredths, as real ones are
        zoned.filter.weight.copy_(plain.filter.weight)
        features = torch.randn(60, 320)
        before, after = plain(features).numpy(), zoned(features).numpy()
    small, wide = (before > 0) & (before <= 0.02), before > 0.02
    assert small.any() and wide.any()
    assert np.all(after[small] == 0) and np.allclose(after[wide], before[wide] - 0.02, atol=1e-6)
    assert (after == 0).sum() > (before == 0).sum()
    zoned.save_pretrained(tmp_path / "m")
    again = MouthOpeningRegressor.from_pretrained(tmp_path / "m", use_safetensors=True).eval()
    assert again.config.dead_zone == 0.02 and np.allclose(again(features).detach().numpy(), after)
    with pytest.raises(ValueError, match="dead_zone"):
        MouthOpeningRegressor(dead_zone=-0.01)


def test_closure_filter_takes_its_chance_times_the_depth_off_the_opening(tmp_path):
    """With ``closure_depth`` d the opening is max(smoothed opening - dead zone - d * smoothed sigmoid(closure
    logit), 0): where the closure filter is sure the lips touch it shuts them, where it is sure they do not it
    changes nothing. Models without a depth carry no closure filter (older checkpoints load as before); the filter
    is saved with the model and a negative depth is refused."""
    torch.manual_seed(0)
    plain = MouthOpeningRegressor(context=2, smoothing=0.8, dead_zone=0.01).eval()
    assert plain.closure_filter is None
    closing = MouthOpeningRegressor(context=2, smoothing=0.8, dead_zone=0.01, closure_depth=0.04).eval()
    closing.load_state_dict(plain.state_dict(), strict=False)
    features = torch.randn(60, 320)
    with torch.no_grad():
        plain.filter.weight.mul_(0.05)
        plain.filter.bias.fill_(0.06)  # openings around 0.05 after the dead zone
        closing.filter.weight.copy_(plain.filter.weight)
        closing.filter.bias.copy_(plain.filter.bias)
        before = plain(features).numpy()
        closing.closure_filter.weight.zero_()
        closing.closure_filter.bias.fill_(-30.0)  # sure the lips are apart
        assert np.allclose(closing(features).numpy(), before, atol=1e-6)
        closing.closure_filter.bias.fill_(30.0)  # sure they touch
        assert np.allclose(closing(features).numpy(), np.maximum(before - 0.04, 0.0), atol=1e-6)
        closing.closure_filter.weight.normal_(0.0, 0.05)
        closing.closure_filter.bias.zero_()
        padded = torch.nn.functional.pad(features.reshape(60, 4, 80).mean(1).T[None], (2, 2), mode="replicate")
        chance = closing.smooth(closing.closure_filter(padded)[:, 0].sigmoid())[0].numpy()
        after = closing(features).numpy()
    assert np.allclose(after, np.maximum(before - 0.04 * chance, 0.0), atol=1e-6)
    assert 0.1 < chance.min() and chance.max() < 0.9  # a real mix of chances, not the two ends again
    closing.save_pretrained(tmp_path / "m")
    again = MouthOpeningRegressor.from_pretrained(tmp_path / "m", use_safetensors=True).eval()
    assert again.config.closure_depth == 0.04 and np.allclose(again(features).detach().numpy(), after)
    with pytest.raises(ValueError, match="closure_depth"):
        MouthOpeningRegressor(closure_depth=-0.01)


def _example(audio: np.ndarray, opening: np.ndarray, neutral: np.ndarray, name: str) -> Example:
    canonical = np.repeat(neutral[None], len(opening), axis=0)
    canonical[:, [65, 66, 67], 1] += opening[:, None]  # the lower inner lip drops by the opening
    return Example(audio, canonical, neutral, 25.0, "test", name)


def test_ridge_fit_learns_an_opening_that_follows_loudness(astronaut_landmarks):
    """Speech whose loudness swells and fades, with a mouth that opens as it swells: the fitted regressor follows
    the mouth on a recording it has not seen, with the real mouth's spread."""
    from pipeline.audio import LogMelFeatures

    neutral = closed_mouth(np.asarray(astronaut_landmarks, dtype=np.float32)[:, :2] / 100.0)

    def clip(seed: int) -> tuple[np.ndarray, np.ndarray]:
        rng = np.random.default_rng(seed)
        envelope = np.repeat(np.clip(np.sin(np.arange(60) / rng.uniform(1.5, 3.0)), 0.05, 1), 640)
        audio = (speechlike(2.4, seed=seed) * envelope).astype(np.float32)
        return audio, 0.1 * envelope[::640].astype(np.float32)

    examples = [_example(*clip(s), neutral, f"c{s}") for s in range(4)]
    model = MouthOpeningRegressor(context=2)
    stats = fit(examples, model, ridge=10.0)
    assert stats["frames"] == 240 and stats["gain"] >= 1.0
    audio, opening = clip(9)
    predicted = model.eval()(torch.from_numpy(LogMelFeatures()(audio, 25.0))).detach().numpy()
    assert np.corrcoef(predicted, opening)[0, 1] > 0.8
    assert predicted.std() == pytest.approx(opening.std(), rel=0.5)


def test_closure_fit_tells_touching_lips_from_parted_ones(astronaut_landmarks):
    """Speech whose loudness swells and fades, with lips that touch while it is quiet: the closure filter's chance
    is high where they touch and low where they part, on a recording it has not seen, and the fit refuses a config
    without its settings and data where the lips never touch."""
    from pipeline.audio import LogMelFeatures

    neutral = closed_mouth(np.asarray(astronaut_landmarks, dtype=np.float32)[:, :2] / 100.0)

    def clip(seed: int) -> tuple[np.ndarray, np.ndarray]:
        rng = np.random.default_rng(seed)
        envelope = np.repeat(np.clip(np.sin(np.arange(60) / rng.uniform(1.5, 3.0)), 0.05, 1), 640)
        audio = (speechlike(2.4, seed=seed) * envelope).astype(np.float32)
        return audio, np.where(envelope[::640] > 0.3, 0.1 * envelope[::640], 0.0).astype(np.float32)

    examples = [_example(*clip(s), neutral, f"c{s}") for s in range(4)]
    model = MouthOpeningRegressor(context=2, closure_depth=0.05)
    stats = fit(examples, model, ridge=10.0, closure={"touch": 0.005, "regularisation": 1.0})
    assert 0.1 < stats["touching_share"] < 0.9
    assert stats["closure_chance_touching"] > stats["closure_chance_apart"] + 0.3
    audio, opening = clip(9)
    bands = LogMelFeatures()(audio, 25.0).reshape(60, 4, 80).mean(1)
    padded = torch.nn.functional.pad(torch.from_numpy(bands).T[None], (2, 2), mode="replicate")
    with torch.no_grad():
        chance = model.closure_filter(padded)[0, 0].sigmoid().numpy()
    assert chance[opening == 0].mean() > chance[opening > 0].mean() + 0.3
    with pytest.raises(SystemExit, match="closure section"):
        fit(examples, MouthOpeningRegressor(context=2, closure_depth=0.05), ridge=10.0)
    parted = [_example(audio, np.linspace(0.03, 0.08, 60, dtype=np.float32), neutral, "open")]
    with pytest.raises(SystemExit, match="nothing to fit"):
        fit(parted, MouthOpeningRegressor(context=2, closure_depth=0.05), ridge=10.0,
            closure={"touch": 0.005, "regularisation": 1.0})


def _with_regressor(blend: float) -> TalkingFacePipeline:
    torch.manual_seed(1)
    regressor = MouthOpeningRegressor(context=2)
    with torch.no_grad():
        regressor.filter.weight.mul_(0.1)  # openings of a few hundredths of the eye distance, as real ones
        regressor.filter.bias.fill_(0.05)
    pipe = TalkingFacePipeline(**get_dummy_components(), mouth_regressor=regressor, mouth_blend=blend)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def _opening(pipe: TalkingFacePipeline, inputs, dub=None) -> np.ndarray:
    """The inner-lip gap of a generated (still head: the photo's own pose) or dubbed track, pose-free."""
    from pipeline.canonical import apply_transform, to_canonical

    generator = torch.Generator().manual_seed(0)
    if dub is not None:  # the driven upper face fixes each frame's pose
        track = pipe.dub_landmarks(inputs, dub, num_inference_steps=2, generator=generator)
        return inner_lip_gap(track.canonical()[0])
    track = pipe.generate_landmarks(inputs, num_inference_steps=2, generator=generator, head_motion=0,
                                    blink_rate=0)
    return inner_lip_gap(apply_transform(to_canonical(inputs.points3d)[1], track.frames))


def test_pipeline_takes_the_blended_share_of_the_regressors_opening(media, tmp_path):
    """mouth_blend 0 is the sampled mouth alone, 1 the regressor's opening exactly (above the closed photo mouth),
    in generation and in dubbing; the blend and the regressor survive save_pretrained / from_pretrained."""
    from pipeline.canonical import to_canonical

    alone, exact, half = _with_regressor(0.0), _with_regressor(1.0), _with_regressor(0.5)
    inputs = alone.prepare(media / "photo.png", media / "speech.wav")
    rest = inner_lip_gap(closed_mouth(to_canonical(inputs.points3d)[0]))
    features = alone.audio_featurizer(inputs.audio, fps=inputs.fps)
    with torch.no_grad():
        asked = exact.mouth_regressor(torch.from_numpy(features)).numpy()
    sampled, regressed, mixed = (_opening(p, inputs) for p in (alone, exact, half))
    plain = TalkingFacePipeline(**get_dummy_components())
    plain.set_progress_bar_config(disable=True)
    assert np.allclose(sampled, _opening(plain, inputs), atol=1e-6)
    assert np.abs(sampled - rest - asked).max() > 0.03  # the two mouths differ
    assert np.allclose(regressed - rest, asked, atol=1e-4)
    assert np.allclose(mixed, (sampled + regressed) / 2, atol=1e-4)
    driving = alone.generate_landmarks(inputs, num_inference_steps=2, generator=torch.Generator().manual_seed(3))
    assert np.allclose(_opening(exact, inputs, driving) - rest, asked, atol=1e-4)

    half.save_pretrained(tmp_path / "ckpt")
    again = TalkingFacePipeline.from_pretrained(tmp_path / "ckpt")
    again.set_progress_bar_config(disable=True)
    assert again.config.mouth_blend == 0.5 and isinstance(again.mouth_regressor, MouthOpeningRegressor)
    assert np.allclose(_opening(again, inputs), mixed, atol=1e-5)
    with pytest.raises(ValueError, match="mouth_blend"):
        TalkingFacePipeline(**get_dummy_components(), mouth_blend=2.0)


def test_mouth_blend_per_call_and_from_the_command_line(media, tmp_path, capsys):
    """``mouth_blend`` given to a call overrides the config's for that call only; the CLI's --mouth-blend passes it
    on and refuses a share outside 0..1 with one line."""
    from pipeline.canonical import apply_transform, to_canonical
    from pipeline.cli import main

    half = _with_regressor(0.5)
    inputs = half.prepare(media / "photo.png", media / "speech.wav")
    exact = _opening(_with_regressor(1.0), inputs)
    track = half.generate_landmarks(inputs, num_inference_steps=2, generator=torch.Generator().manual_seed(0),
                                    head_motion=0, blink_rate=0, mouth_blend=1.0)
    assert np.allclose(inner_lip_gap(apply_transform(to_canonical(inputs.points3d)[1], track.frames)), exact)
    assert np.allclose(_opening(half, inputs), _opening(_with_regressor(0.5), inputs))  # the config's is kept
    assert track.info["mouth_blend"] == 1.0  # the track records the blend it was made with
    plain = TalkingFacePipeline(**get_dummy_components())
    assert "mouth_blend" not in plain.generate_landmarks(inputs, num_inference_steps=2).info  # no regressor, no blend
    with pytest.raises(InputError, match="mouth_blend"):
        half.generate_landmarks(inputs, num_inference_steps=2, mouth_blend=-0.1)

    half.save_pretrained(tmp_path / "ckpt")
    common = ["landmarks", "--image", str(media / "photo.png"), "--audio", str(media / "speech.wav"),
              "--checkpoint", str(tmp_path / "ckpt"), "--steps", "2", "--head-motion", "0", "--blink-rate", "0", "-q"]
    assert main([*common, "--mouth-blend", "1", "-o", str(tmp_path / "one.json")]) == 0
    from pipeline.landmarks import LandmarkTrack

    saved = LandmarkTrack.load(tmp_path / "one.json")
    assert np.allclose(inner_lip_gap(apply_transform(to_canonical(inputs.points3d)[1], saved.frames)), exact,
                       atol=1e-3)
    capsys.readouterr()
    with pytest.raises(SystemExit) as stop:
        main([*common, "--mouth-blend", "1.5", "-o", str(tmp_path / "bad.json")])
    assert stop.value.code == 2 and "--mouth-blend" in capsys.readouterr().err
    assert not (tmp_path / "bad.json").exists()


# ---------------------------------------------------------------------------------------------------
# Whisper encoder features (a tiny random encoder of the shipped one's shape: 30 s windows, 50 positions a second)

TINY_WHISPER = {"d_model": 16, "encoder_layers": 2, "encoder_attention_heads": 2, "encoder_ffn_dim": 32,
                "num_mel_bins": 80, "max_source_positions": 1500}


def _whisper_regressor(context: int = 2) -> MouthOpeningRegressor:
    torch.manual_seed(0)
    return MouthOpeningRegressor(in_channels=32, sub_frames=1, context=context, speech_encoder=TINY_WHISPER).eval()


def test_whisper_features_one_row_a_video_frame_centred_and_saved(tmp_path):
    """Each layer's hidden states, concatenated, at any frame rate, centred over the recording; the encoder is saved
    with the filter and comes back with it."""
    from pipeline.audio import num_video_frames

    model = _whisper_regressor()
    audio = speechlike(2.0)
    for fps in (25.0, 29.97, 60.0):
        features = model.features(audio, fps)
        assert features.shape == (num_video_frames(len(audio), fps), 32)
        assert np.abs(features.mean(axis=0)).max() < 1e-4 and features.std() > 0
    opening = model.predict(audio, 25.0)
    assert opening.shape == (50,) and (opening >= 0).all()
    model.save_pretrained(tmp_path / "m")
    again = MouthOpeningRegressor.from_pretrained(tmp_path / "m", use_safetensors=True).eval()
    assert again.encoder is not None and np.allclose(again.predict(audio, 25.0), opening, atol=1e-6)
    with pytest.raises(ValueError, match="features a position"):
        MouthOpeningRegressor(in_channels=16, sub_frames=1, speech_encoder=TINY_WHISPER)


def test_whisper_sub_frames_are_positions_spread_across_each_video_frame():
    """With two sub-frames a video frame's features are the encoder's states at a quarter and three quarters of the
    frame (interpolated between positions), side by side; the model averages them."""
    from pipeline.audio import _interpolate_rows

    torch.manual_seed(0)
    model = MouthOpeningRegressor(in_channels=32, sub_frames=2, context=1, speech_encoder=TINY_WHISPER).eval()
    audio = speechlike(2.0)
    features = model.features(audio, 25.0)
    assert features.shape == (50, 64) and not np.allclose(features[:, :32], features[:, 32:])
    hidden = model._encode(audio)
    quarter = _interpolate_rows(hidden, (np.arange(50) + 0.25) * 2.0)  # 50 positions a second, 25 frames
    assert np.allclose(features[:, :32], quarter - quarter.mean(axis=0), atol=1e-5)
    assert model.predict(audio, 25.0).shape == (50,)


def test_whisper_encodes_long_recordings_window_by_window():
    """Whisper sees 30 s at a time: a 35 s recording is its first 30 s and its last 5 s, each encoded alone, with 50
    encoder positions a second."""
    model = _whisper_regressor()
    audio = np.tile(speechlike(5.0), 7)  # 35 s
    hidden = model._encode(audio)
    assert hidden.shape == (1750, 32)
    assert np.allclose(hidden[:1500], model._encode(audio[:30 * 16000]), atol=1e-5)
    assert np.allclose(hidden[1500:], model._encode(audio[30 * 16000:]), atol=1e-5)


def test_ridge_fit_with_whisper_features_sets_the_filter_it_reports(astronaut_landmarks, tmp_path):
    """The training script builds the regressor around a converted encoder folder (its weights copied in) and fits
    the filter on the encoder's features; the saved model predicts what the fit found."""
    from training.train_mouth_regressor import build_model

    torch.manual_seed(0)
    from transformers import WhisperConfig
    from transformers.models.whisper.modeling_whisper import WhisperEncoder

    WhisperEncoder(WhisperConfig(**TINY_WHISPER)).save_pretrained(tmp_path / "encoder")
    model = build_model({"speech_encoder": {"path": str(tmp_path / "encoder")},
                         "model": {"context": 2, "sub_frames": 2, "smoothing": 0.8}})
    saved = WhisperEncoder.from_pretrained(tmp_path / "encoder", use_safetensors=True)
    assert (model.config.in_channels, model.config.sub_frames, model.config.smoothing) == (32, 2, 0.8)
    assert torch.equal(model.encoder.conv1.weight, saved.conv1.weight)
    neutral = closed_mouth(np.asarray(astronaut_landmarks, dtype=np.float32)[:, :2] / 100.0)
    rng = np.random.default_rng(0)
    examples = []
    for s in range(3):
        envelope = np.repeat(np.clip(np.sin(np.arange(60) / rng.uniform(1.5, 3.0)), 0.05, 1), 640)
        examples.append(_example((speechlike(2.4, seed=s) * envelope).astype(np.float32),
                                 0.1 * envelope[::640].astype(np.float32), neutral, f"c{s}"))
    stats = fit(examples, model, ridge=1.0)
    assert stats["frames"] == 180 and stats["pearson_r_in_sample"] > 0.5
    predicted = model.predict(examples[0].audio, 25.0)
    wanted = inner_lip_gap(examples[0].canonical) - inner_lip_gap(examples[0].neutral)
    assert np.corrcoef(predicted, wanted)[0, 1] > 0.5
    with pytest.raises(SystemExit, match="convert_whisper_encoder"):
        build_model({"speech_encoder": {"path": str(tmp_path / "nowhere")}})

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

"""Fast CPU tests of the landmark motion denoiser (AToM-Net style) and its sampling / training helpers."""

from __future__ import annotations

import copy

import diffusers
import numpy as np
import pytest
import torch
from diffusers import DDIMScheduler, DDPMScheduler, DPMSolverMultistepScheduler

from pipeline.models import LandmarkDenoiser, LandmarkDenoiserOutput, landmark_denoiser
from pipeline.motion import generate_motion, random_known_mask, training_loss
from pipeline.regions import LOWER_FACE, NUM_POINTS

WINDOW = 16
AUDIO_DIM = 8
LIP = list(LOWER_FACE)
NON_LIP = [i for i in range(NUM_POINTS) if i not in LOWER_FACE]
#: Lower-lip and chin points that open with the synthetic "speech" feature.
pytestmark = pytest.mark.usefixtures("one_thread")

OPENING = [5, 6, 7, 8, 9, 10, 11, 55, 56, 57, 58, 59, 65, 66, 67]


def get_dummy_components() -> dict:
    torch.manual_seed(0)
    model = LandmarkDenoiser(
        window=WINDOW, audio_dim=AUDIO_DIM, d_model=32, num_layers=1, num_heads=2, mlp_ratio=2.0,
        audio_kernel_size=3, dropout=0.0, motion_scale=10.0,
    )
    scheduler = DDPMScheduler(
        num_train_timesteps=1000, beta_schedule="squaredcos_cap_v2", prediction_type="sample", clip_sample=False
    )
    return {"model": model.eval(), "scheduler": scheduler}


def get_dummy_inputs(batch: int = 2, window: int = WINDOW, seed: int = 0) -> dict:
    g = torch.Generator().manual_seed(seed)
    return {
        "sample": torch.randn(batch, window, NUM_POINTS, 2, generator=g),
        "timestep": torch.tensor([10, 500][:batch] + [999] * max(0, batch - 2)),
        "audio": torch.randn(batch, window, AUDIO_DIM, generator=g),
        "reference": torch.randn(batch, NUM_POINTS, 2, generator=g) * 0.3,
    }


def ddim(scheduler) -> DDIMScheduler:
    return DDIMScheduler.from_config(scheduler.config)


def speech_audio(num_frames: int, seed: int = 0) -> np.ndarray:
    """Per-frame features whose first channel is a slow "loudness" in [0, 1]; the rest is noise."""
    rng = np.random.default_rng(seed)
    t = np.arange(num_frames)
    feats = 0.3 * rng.standard_normal((num_frames, AUDIO_DIM))
    feats[:, 0] = 0.5 + 0.5 * np.sin(2 * np.pi * rng.uniform(0.04, 0.12) * t + rng.uniform(0, 2 * np.pi))
    return feats.astype(np.float32)


def synthetic_batch(batch: int, generator: torch.Generator) -> dict:
    """The toy task: the mouth opens (lower lip and chin move down) linearly with audio channel 0."""
    seeds = torch.randint(0, 2**31, (batch,), generator=generator).tolist()
    audio = torch.from_numpy(np.stack([speech_audio(WINDOW, s) for s in seeds]))  # (B, W, D)
    motion = torch.zeros(batch, WINDOW, NUM_POINTS, 2)
    motion[:, :, OPENING, 1] = 0.2 * audio[:, :, :1]  # (B, W, 15) y offsets
    return {
        "motion": motion,
        "audio": audio,
        "reference": torch.zeros(batch, NUM_POINTS, 2),
        "known_mask": random_known_mask(batch, WINDOW, generator),
        "audio_mask": torch.rand(batch, generator=generator) > 0.1,
    }


@pytest.fixture(scope="module")
def trained():
    """The tiny model briefly trained on the toy task, with its loss before and after on a fixed batch."""
    components = get_dummy_components()
    model, scheduler = components["model"], components["scheduler"]
    eval_batch = synthetic_batch(64, torch.Generator().manual_seed(123))

    def eval_loss() -> float:
        model.eval()
        with torch.no_grad():
            return training_loss(model, scheduler, eval_batch, torch.Generator().manual_seed(0)).item()

    before = eval_loss()
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3)
    generator = torch.Generator().manual_seed(1)
    model.train()
    for _ in range(300):
        loss = training_loss(model, scheduler, synthetic_batch(32, generator), generator)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    after = eval_loss()
    return model.eval(), scheduler, before, after


# ----------------------------------------------------------------------------------------------------- the model


def test_model_mixin_bound_at_module_level():
    assert landmark_denoiser.ModelMixin is diffusers.ModelMixin


def test_output_shapes_and_tuple():
    model = get_dummy_components()["model"]
    inputs = get_dummy_inputs()
    with torch.no_grad():
        out = model(**inputs)
        tup = model(**inputs, return_dict=False)
    assert isinstance(out, LandmarkDenoiserOutput)
    assert out.sample.shape == (2, WINDOW, NUM_POINTS, 2)
    assert out["sample"] is out.sample
    torch.testing.assert_close(tup[0], out.sample)
    # any window length (rotary positions), known inputs and per-sample / per-frame audio masks
    inputs = get_dummy_inputs(window=5)
    known_mask = torch.zeros(2, 5, NUM_POINTS, dtype=torch.bool)
    known_mask[:, :2] = True
    with torch.no_grad():
        out = model(**inputs, known=inputs["sample"], known_mask=known_mask, audio_mask=torch.tensor([True, False]))
        out2 = model(**inputs, audio_mask=torch.ones(2, 5, dtype=torch.bool))
    assert out.sample.shape == (2, 5, NUM_POINTS, 2) and torch.isfinite(out.sample).all()
    torch.testing.assert_close(out2.sample, model(**inputs).sample)


def test_save_pretrained_round_trip(tmp_path):
    model = get_dummy_components()["model"]
    model.save_pretrained(tmp_path)
    assert (tmp_path / "config.json").exists()
    assert (tmp_path / "diffusion_pytorch_model.safetensors").exists()
    loaded = LandmarkDenoiser.from_pretrained(tmp_path).eval()
    assert loaded.config.d_model == 32 and loaded.config.prediction_type == "sample"
    inputs = get_dummy_inputs()
    with torch.no_grad():
        torch.testing.assert_close(loaded(**inputs).sample, model(**inputs).sample, rtol=0, atol=0)


def test_default_config_is_5_to_15_mb(tmp_path):
    model = LandmarkDenoiser()
    model.save_pretrained(tmp_path)
    size_mb = (tmp_path / "diffusion_pytorch_model.safetensors").stat().st_size / 1e6
    assert 5 <= size_mb <= 15, f"default model is {size_mb:.1f} MB"


def test_audio_conditions_lip_stream_only():
    model = get_dummy_components()["model"]
    inputs = get_dummy_inputs()
    other_audio = dict(inputs, audio=inputs["audio"] + torch.randn_like(inputs["audio"]))
    with torch.no_grad():
        base = model(**inputs).sample
        perturbed = model(**other_audio).sample
        nulled = model(**inputs, audio_mask=torch.tensor([False, False])).sample
    for changed in (perturbed, nulled):
        assert (changed[:, :, LIP] - base[:, :, LIP]).abs().max() > 1e-3, "audio must move the lower face"
        assert torch.equal(changed[:, :, NON_LIP], base[:, :, NON_LIP]), "audio leaked into the non-lip stream"
    # the same holds for whole sampled tracks: upper-face motion does not depend on the audio at all
    components = get_dummy_components()
    audio = speech_audio(20)
    runs = [
        generate_motion(components["model"], ddim(components["scheduler"]), a, np.zeros((68, 2)),
                        num_inference_steps=4, generator=torch.Generator().manual_seed(0))
        for a in (audio, audio + 1.0)
    ]
    assert np.array_equal(runs[0][:, NON_LIP], runs[1][:, NON_LIP])
    assert np.abs(runs[0][:, LIP] - runs[1][:, LIP]).max() > 1e-4


# ------------------------------------------------------------------------------------------------------ sampling


@pytest.mark.parametrize("scheduler_cls", [DDIMScheduler, DPMSolverMultistepScheduler])
def test_known_motion_is_honoured(scheduler_cls):
    components = get_dummy_components()
    scheduler = scheduler_cls.from_config(components["scheduler"].config)
    num_frames = 2 * WINDOW + 3
    rng = np.random.default_rng(0)
    known = (0.05 * rng.standard_normal((num_frames, NUM_POINTS, 2))).astype(np.float32)
    known_mask = np.zeros((num_frames, NUM_POINTS), dtype=bool)
    known_mask[:, NON_LIP] = True  # completion: the upper face from a driving video, every frame
    known_mask[:4] = True  # and a fully known start
    known_mask[rng.random((num_frames, NUM_POINTS)) < 0.1] = True
    out = generate_motion(components["model"], scheduler, speech_audio(num_frames), np.zeros((68, 2)),
                          num_inference_steps=5, known=known, known_mask=known_mask,
                          generator=torch.Generator().manual_seed(0))
    assert out.shape == (num_frames, NUM_POINTS, 2) and out.dtype == np.float32
    np.testing.assert_allclose(out[known_mask], known[known_mask], atol=1e-4)
    assert np.abs(out[~known_mask]).max() > 1e-3  # the rest was generated


def test_fixed_generator_is_deterministic_and_seeds_differ():
    components = get_dummy_components()
    model, scheduler = components["model"], ddim(components["scheduler"])
    audio, neutral = speech_audio(WINDOW + 5), np.zeros((68, 2))

    def run(seed):
        return generate_motion(model, scheduler, audio, neutral, num_inference_steps=4,
                               generator=torch.Generator().manual_seed(seed))

    np.testing.assert_array_equal(run(0), run(0))
    assert np.abs(run(0) - run(1)).max() > 1e-3


def test_short_tracks():
    components = get_dummy_components()
    for num_frames in (1, 5, WINDOW - 1, WINDOW):
        steps = []
        out = generate_motion(components["model"], ddim(components["scheduler"]), speech_audio(num_frames),
                              np.zeros((68, 2)), num_inference_steps=3,
                              on_step=lambda i, n, t, x, s=steps: s.append((i, n)))
        assert out.shape == (num_frames, NUM_POINTS, 2) and np.isfinite(out).all()
        assert steps == [(1, 3), (2, 3), (3, 3)]


def test_guidance_scale_one_is_the_conditional_pass():
    components = get_dummy_components()
    model, scheduler = components["model"], ddim(components["scheduler"])
    other = copy.deepcopy(model)
    with torch.no_grad():
        other.null_audio.add_(5.0)  # only the unconditional pass sees this
    audio, neutral = speech_audio(WINDOW), np.zeros((68, 2))

    def run(m, g):
        return generate_motion(m, scheduler, audio, neutral, num_inference_steps=4, guidance_scale=g,
                               generator=torch.Generator().manual_seed(0))

    np.testing.assert_array_equal(run(model, 1.0), run(other, 1.0))
    assert np.abs(run(model, 2.0) - run(other, 2.0)).max() > 1e-4


def test_random_known_mask():
    g = torch.Generator().manual_seed(0)
    mask = random_known_mask(256, WINDOW, g, p_prefix=0.5, p_upper=0.5, max_prefix=6)
    assert mask.shape == (256, WINDOW, NUM_POINTS) and mask.dtype == torch.bool
    prefix = mask[:, :, LIP].all(-1)  # (B, W) frames fully known
    lengths = prefix.sum(1)
    assert lengths.max() <= 6 and 0.3 < (lengths > 0).float().mean() < 0.7
    assert torch.equal(prefix, torch.arange(WINDOW) < lengths[:, None]), "known frames must be a prefix"
    upper = mask[:, :, NON_LIP].all(-1).all(-1)  # (B,)
    assert 0.3 < upper.float().mean() < 0.7
    assert not mask[~upper][:, :, NON_LIP][:, 6:].any()


# ------------------------------------------------------------------------------------- training and long tracks


def test_training_reduces_loss(trained):
    _, _, before, after = trained
    assert after < 0.1 * before, f"loss {before:.4f} -> {after:.4f}"


def test_windowed_generation_has_no_seam(trained):
    model, scheduler, _, _ = trained
    num_frames, overlap = 3 * WINDOW + 7, 4
    calls = []
    hook = model.register_forward_pre_hook(lambda m, args, kwargs: calls.append(kwargs["known_mask"][0].clone()),
                                           with_kwargs=True)
    try:
        out = generate_motion(model, ddim(scheduler), speech_audio(num_frames, seed=7), np.zeros((68, 2)),
                              num_inference_steps=10, overlap=overlap, generator=torch.Generator().manual_seed(0))
    finally:
        hook.remove()
    assert out.shape == (num_frames, NUM_POINTS, 2) and np.isfinite(out).all()

    # structure: each window after the first starts with (at least) `overlap` known frames
    starts = list(range(0, num_frames - WINDOW, WINDOW - overlap)) + [num_frames - WINDOW]  # last pulled back
    assert len(starts) == 5 and len(calls) == 5 * 10
    window_masks = calls[::10]
    assert not window_masks[0].any()
    for mask, start, prev in zip(window_masks[1:], starts[1:], starts, strict=False):
        assert mask[: prev + WINDOW - start].all() and not mask[prev + WINDOW - start :].any()

    # no seam: the jumps where a new window's generated frames begin are like the jumps elsewhere
    firsts = [start + WINDOW for start in starts[:-1]]  # first generated frame of each later window
    jumps = np.linalg.norm(np.diff(out[:, LIP], axis=0), axis=-1).mean(-1)  # (T-1,)
    at_seams = jumps[[f - 1 for f in firsts]]
    elsewhere = np.delete(jumps, [f - 1 for f in firsts])
    assert at_seams.max() <= 1.5 * np.percentile(elsewhere, 90), (at_seams, np.percentile(elsewhere, [50, 90]))
    # and the learned mapping shows: the mouth opens with the "loudness" channel
    opening = out[:, OPENING, 1].mean(-1)
    assert np.corrcoef(opening, speech_audio(num_frames, seed=7)[:, 0])[0, 1] > 0.8


def test_bfloat16_mixed_precision_training_step():
    """What ``accelerate`` does for ``mixed_precision="bf16"``: the loss under autocast, backward, a step."""
    components = get_dummy_components()
    model = components["model"].train()
    scheduler = DDPMScheduler.from_config(components["scheduler"].config)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    batch = {"motion": torch.randn(2, WINDOW, NUM_POINTS, 2) * 0.01, "audio": torch.randn(2, WINDOW, AUDIO_DIM),
             "reference": torch.randn(2, NUM_POINTS, 2)}
    before = [p.detach().clone() for p in model.parameters()]
    with torch.autocast("cpu", dtype=torch.bfloat16):
        loss = training_loss(model, scheduler, batch, generator=torch.Generator().manual_seed(0))
    loss.backward()
    optimizer.step()
    assert torch.isfinite(loss) and any(not torch.equal(a, b) for a, b in zip(before, model.parameters(), strict=False))


def test_training_data_options_lead_and_pitch_copies():
    """A data entry's ``lead_seconds`` moves its motion earlier against its audio (real mouths lead the sound);
    ``pitch_semitones`` adds pitch-shifted copies of its recordings, as long as the original."""
    from training.train_landmarks import lead_motion, pitch_variants

    motion = np.arange(10, dtype=np.float32)[:, None, None] * np.ones((10, 68, 2), np.float32)
    led = lead_motion(motion, 2)
    assert np.array_equal(led[:8], motion[2:]) and np.array_equal(led[8:], motion[[9, 9]])
    assert lead_motion(motion, 0) is motion and lead_motion(motion, 50).shape == motion.shape
    tone = np.sin(2 * np.pi * 200 * np.arange(16000) / 16000).astype(np.float32)
    original, higher = pitch_variants(tone, [3])
    assert original is tone and higher.shape == tone.shape and higher.dtype == np.float32
    spectrum = np.abs(np.fft.rfft(higher[4000:12000]))
    assert np.fft.rfftfreq(8000, 1 / 16000)[spectrum.argmax()] == pytest.approx(200 * 2 ** (3 / 12), rel=0.03)

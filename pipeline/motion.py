"""Sampling and training of the landmark motion diffusion model ([`LandmarkDenoiser`]).

Motion is a ``(T, 68, 2)`` track of canonical offsets from the face's neutral shape (``pipeline.canonical``).
The model works on it multiplied by ``model.config.motion_scale``; the functions here take and return unscaled
offsets. Schedulers are diffusers': train with

    DDPMScheduler(num_train_timesteps=1000, beta_schedule="squaredcos_cap_v2", prediction_type="sample",
                  clip_sample=False)

and sample with ``DDIMScheduler.from_config(...)`` or ``DPMSolverMultistepScheduler.from_config(...)`` of it.

One mechanism, known motion (values plus a ``(T, 68)`` mask), serves both long audio (each window's first frames
are the end of the previous window) and completion (e.g. upper-face points taken from a driving video): the model
sees the known entries as input channels, and at every step they are also replaced in the sample by their correctly
noised values (RePaint), so the result agrees with them exactly.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

import numpy as np
import torch
import torch.nn.functional as F
from diffusers.utils.torch_utils import randn_tensor

from .defaults import DEFAULT_STEPS
from .regions import LOWER_FACE, NUM_POINTS, UPPER_FACE
from .sampling import extra_step_kwargs

if TYPE_CHECKING:
    from diffusers import SchedulerMixin

    from .models.landmark_denoiser import LandmarkDenoiser

#: ``on_step(steps_done, steps_total, timestep, sample) -> replacement sample or None``.
StepCallback = Callable[[int, int, torch.Tensor, torch.Tensor], "torch.Tensor | None"]


def _window_starts(num_frames: int, window: int, overlap: int) -> list[int]:
    """Window start frames: a stride of ``window - overlap``; the last window is pulled back to end at the last
    frame (so its known prefix may be longer than ``overlap``) and nothing past the end is generated."""
    if num_frames <= window:
        return [0]
    starts = list(range(0, num_frames - window, window - overlap))
    return starts + [num_frames - window]


def _denoise_window(model, scheduler, noise, cond, num_inference_steps, guidance_scale, generator, on_step):
    """Sample one window ``(1, W, 68, 2)`` of scaled motion from ``noise``, with classifier-free guidance and
    RePaint-style replacement of the known entries. ``cond`` holds the window's ``audio (1, W, D)``, ``reference
    (1, 68, 2)``, ``known (1, W, 68, 2)``, ``known_mask (1, W, 68)`` and ``audio_mask (1, W)`` (False on padding)."""
    scheduler.set_timesteps(num_inference_steps, device=noise.device)
    do_cfg = guidance_scale != 1.0
    known, mask = cond["known"], cond["known_mask"][..., None]  # (1, W, 68, 2), (1, W, 68, 1)
    has_known = bool(mask.any())
    batch = 2 if do_cfg else 1  # conditional and unconditional passes in one batch
    inputs = {key: value.expand(batch, *value.shape[1:]) for key, value in cond.items()}
    if do_cfg:
        inputs["audio_mask"] = torch.cat([cond["audio_mask"], torch.zeros_like(cond["audio_mask"])])
    sample = noise * scheduler.init_noise_sigma
    step_kwargs = extra_step_kwargs(scheduler, generator)
    for t in scheduler.timesteps:
        if has_known:  # RePaint: known entries at the current noise level
            sample = torch.where(mask, scheduler.add_noise(known, noise, t.reshape(1)), sample)
        model_input = scheduler.scale_model_input(sample, t).expand(batch, -1, -1, -1)
        output = model(model_input, t, **inputs).sample  # (batch, W, 68, 2)
        if do_cfg:
            cond_out, uncond_out = output.chunk(2)
            output = uncond_out + guidance_scale * (cond_out - uncond_out)
        if has_known and model.config.prediction_type == "sample":
            output = torch.where(mask, known, output)
        sample = scheduler.step(output, t, sample, **step_kwargs).prev_sample
        sample = on_step(t, sample)
    return torch.where(mask, known, sample)


@torch.inference_mode()
def generate_motion(
    model: LandmarkDenoiser,
    scheduler: SchedulerMixin,
    audio_features: np.ndarray | torch.Tensor,
    neutral: np.ndarray | torch.Tensor,
    num_inference_steps: int = DEFAULT_STEPS,
    guidance_scale: float = 2.0,
    generator: torch.Generator | None = None,
    window: int | None = None,
    overlap: int = 10,
    known: np.ndarray | torch.Tensor | None = None,
    known_mask: np.ndarray | torch.Tensor | None = None,
    on_step: StepCallback | None = None,
) -> np.ndarray:
    """Sample a motion track for per-frame audio features.

    Args:
        model: the denoiser (put in eval mode here).
        scheduler: a diffusers scheduler made from the training config (DDIM or DPM-Solver for few steps).
        audio_features: ``(T, D)`` per video frame, ``D == model.config.audio_dim``; any ``T >= 1``.
        neutral: ``(68, 2)`` the neutral face in canonical coordinates.
        num_inference_steps: denoising steps per window.
        guidance_scale: classifier-free guidance on the audio, ``uncond + g * (cond - uncond)``; 1 disables it.
        generator: a ``torch.Generator`` for reproducible results.
        window: frames per window (default ``model.config.window``); shorter inputs are padded (null audio there).
        overlap: frames each window shares with the previous one (taken as known), for seamless long tracks.
        known: ``(T, 68, 2)`` unscaled offsets to keep; used where ``known_mask`` is True (all of it without a mask).
        known_mask: ``(T, 68)`` bool.
        on_step: called as ``on_step(steps_done, steps_total, timestep, sample)`` after every denoising step, with
            the window's current sample ``(1, W, 68, 2)`` (scaled motion); a tensor it returns replaces the sample.

    Returns:
        ``(T, 68, 2)`` float32 canonical offsets (unscaled); entries under ``known_mask`` equal ``known``.
    """
    device, dtype = model.device, model.dtype
    audio = torch.as_tensor(np.asarray(audio_features), dtype=dtype, device=device)
    assert audio.ndim == 2 and len(audio) >= 1, f"audio_features must be (T, D) with T >= 1, got {tuple(audio.shape)}"
    assert audio.shape[1] == model.config.audio_dim, f"audio dim {audio.shape[1]} != {model.config.audio_dim}"
    num_frames = len(audio)
    reference = torch.as_tensor(np.asarray(neutral), dtype=dtype, device=device)[None]  # (1, 68, 2)
    assert reference.shape == (1, NUM_POINTS, 2), f"neutral must be (68, 2), got {tuple(reference.shape[1:])}"
    window = int(window or model.config.window)
    assert 0 <= overlap < window, f"overlap {overlap} must be in [0, window={window})"
    scale = model.config.motion_scale

    # 1. Known motion for the whole track (scaled); the frames generated so far get added window by window
    if known_mask is not None:
        assert known is not None, "known_mask needs known values"
        mask = torch.as_tensor(np.asarray(known_mask), dtype=torch.bool, device=device)
    else:
        mask = torch.full((num_frames, NUM_POINTS), known is not None, dtype=torch.bool, device=device)
    assert mask.shape == (num_frames, NUM_POINTS), f"known_mask must be ({num_frames}, 68), got {tuple(mask.shape)}"
    values = torch.zeros(num_frames, NUM_POINTS, 2, dtype=dtype, device=device)
    if known is not None:
        known_t = torch.as_tensor(np.asarray(known), dtype=dtype, device=device)
        assert known_t.shape == values.shape, f"known must be {tuple(values.shape)}, got {tuple(known_t.shape)}"
        values = torch.where(mask[..., None], known_t * scale, values)

    # 2. Pad a short track to one window (null audio, nothing known on the padding)
    length = max(num_frames, window)
    pad = length - num_frames
    frame_audio = torch.arange(length, device=device) < num_frames  # (T',)
    audio, values, mask = F.pad(audio, (0, 0, 0, pad)), F.pad(values, (0, 0, 0, 0, 0, pad)), F.pad(mask, (0, 0, 0, pad))

    # 3. Window after window; each one's start is known from the previous windows' output (all points)
    starts = _window_starts(length, window, overlap)
    total, done = len(starts) * num_inference_steps, 0

    def after_step(t: torch.Tensor, sample: torch.Tensor) -> torch.Tensor:
        nonlocal done
        done += 1
        replaced = on_step(done, total, t, sample) if on_step is not None else None
        return sample if replaced is None else replaced

    was_training = model.training
    model.eval()
    try:
        for start in starts:
            span = slice(start, start + window)
            noise = randn_tensor((1, window, NUM_POINTS, 2), generator=generator, device=device, dtype=dtype)
            cond = {"audio": audio[span][None], "reference": reference, "known": values[span][None],
                    "known_mask": mask[span][None], "audio_mask": frame_audio[span][None]}
            out = _denoise_window(model, scheduler, noise, cond, num_inference_steps, guidance_scale, generator,
                                  after_step)
            values[span], mask[span] = out[0], True  # known for the next window's overlap
    finally:
        model.train(was_training)
    return (values[:num_frames] / scale).float().cpu().numpy()


def random_known_mask(
    batch_size: int,
    window: int,
    generator: torch.Generator | None = None,
    p_prefix: float = 0.3,
    p_upper: float = 0.2,
    max_prefix: int | None = None,
    device: torch.device | str = "cpu",
) -> torch.Tensor:
    """Training-time known masks ``(B, W, 68)`` bool for the two uses of known motion.

    With probability ``p_prefix`` a sample gets its first ``k`` frames known (all points), ``k`` uniform in
    ``[1, max_prefix]`` (default ``W - 1``: the last window of a long track can overlap that much); independently,
    with probability ``p_upper`` all non-lower-face points are known on every frame (completion from a driving video).
    """
    max_prefix = window - 1 if max_prefix is None else min(max_prefix, window - 1)
    draw = torch.rand(batch_size, 2, generator=generator)
    lengths = torch.randint(1, max(max_prefix, 1) + 1, (batch_size,), generator=generator)
    lengths = torch.where(draw[:, 0] < p_prefix, lengths, 0)  # (B,)
    mask = torch.arange(window)[None, :, None] < lengths[:, None, None]  # (B, W, 1)
    mask = mask.expand(batch_size, window, NUM_POINTS).clone()  # (B, W, 68)
    upper = torch.zeros(NUM_POINTS, dtype=torch.bool)
    upper[list(UPPER_FACE)] = True
    mask |= (draw[:, 1] < p_upper)[:, None, None] & upper  # (B, W, 68)
    return mask.to(device)


def training_loss(
    model: torch.nn.Module,
    scheduler: SchedulerMixin,
    batch: dict[str, torch.Tensor],
    generator: torch.Generator | None = None,
    lip_weight: float = 2.0,
    velocity_weight: float = 0.5,
) -> torch.Tensor:
    """Denoising loss on one batch.

    ``batch`` holds ``motion (B, W, 68, 2)`` unscaled offsets, ``audio (B, W, D)``, ``reference (B, 68, 2)`` and
    optionally ``known_mask (B, W, 68)`` (see ``random_known_mask``), ``known`` (defaults to ``motion``) and
    ``audio_mask (B,)`` (False drops the audio, for classifier-free guidance). The motion is noised at random
    timesteps; the loss is the MSE of the prediction (x0 with ``prediction_type="sample"``) on the unknown entries,
    weighted ``lip_weight`` on the lower face, plus ``velocity_weight`` times the MSE of its frame differences.

    ``model`` is a :class:`LandmarkDenoiser` or that model prepared for distributed training (e.g. wrapped in
    DistributedDataParallel): the forward pass goes through the wrapper, whose backward all-reduces the gradients.
    """
    from accelerate.utils import extract_model_from_parallel

    core: LandmarkDenoiser = extract_model_from_parallel(model)  # config, device and dtype only; never its forward
    scale = core.config.motion_scale
    motion = batch["motion"].to(core.device, core.dtype) * scale  # (B, W, 68, 2)
    b, w = motion.shape[:2]
    known_mask = batch.get("known_mask")
    known_mask = torch.zeros(b, w, NUM_POINTS, dtype=torch.bool) if known_mask is None else known_mask
    known_mask = known_mask.to(core.device, torch.bool)  # (B, W, 68)
    known = batch.get("known")
    known = motion if known is None else known.to(core.device, core.dtype) * scale

    noise = randn_tensor(motion.shape, generator=generator, device=core.device, dtype=core.dtype)
    timesteps = torch.randint(0, scheduler.config.num_train_timesteps, (b,), generator=generator).to(core.device)
    noisy = scheduler.add_noise(motion, noise, timesteps)  # known entries are consistent with inference's RePaint
    prediction = model(noisy, timesteps, batch["audio"].to(core.device), batch["reference"].to(core.device),
                       known=known, known_mask=known_mask, audio_mask=batch.get("audio_mask")).sample

    kind = scheduler.config.prediction_type
    assert kind == core.config.prediction_type, f"scheduler predicts {kind!r}, model {core.config.prediction_type!r}"
    target = {"sample": motion, "epsilon": noise}.get(kind)
    target = scheduler.get_velocity(motion, noise, timesteps) if target is None else target

    point_weight = torch.ones(NUM_POINTS, device=core.device, dtype=core.dtype)
    point_weight[list(LOWER_FACE)] = lip_weight
    weight = point_weight * (~known_mask)  # (B, W, 68): no loss on what was given
    error = ((prediction - target) ** 2).sum(-1)  # (B, W, 68)
    loss = (error * weight).sum() / weight.sum().clamp_min(1.0) / 2
    velocity_error = ((prediction.diff(dim=1) - target.diff(dim=1)) ** 2).sum(-1)  # (B, W-1, 68)
    velocity = (velocity_error * point_weight).mean() / point_weight.mean() / 2
    return loss + velocity_weight * velocity

"""Diffusion renderer: the warp renderer's frames, lower face repainted by a landmark-conditioned diffusion model.

:class:`DiffusionRenderer` has the interface of :class:`~pipeline.render.warp.WarpRenderer` (``prepare``, ``render``,
``crop_landmarks``), so the pipeline can use either. For each frame it

1. renders the warp frame at the output size (crop or full mode), and again as the model's face crop
   (``model.config.resolution`` pixels, the same crop box as crop mode): the aligned reference (feature warping);
2. refines the model crop with :class:`~pipeline.models.face_renderer.LandmarkFaceRenderer`, SDEdit-style: the lower
   face of the warp crop is noised to ``strength`` of the schedule with a noise image drawn once per ``prepare`` and
   shared by all frames, then denoised in ``int(num_inference_steps * strength)`` steps of the given scheduler (DDIM,
   DPM-Solver, ...), with the rest of the crop held at the warp frame at every step (DiffTalker's kept upper face);
3. adds what the model changed (refined crop minus warp crop) to the output-size warp frame with a feathered mask
   computed from the frame's landmarks in output pixels, so the warp frame's own detail stays where the model leaves
   it alone (an upscaled model crop would soften it); the mask is exactly zero on and above the line through the nose
   tip, so the upper face is the warp frame's, pixel for pixel, and with ``mouth_margin`` it is also zero farther
   than that from the lips (the pipeline's setting: only the mouth takes the refined pixels); with
   ``keep_mouth_inside`` it is zero inside the inner lips too, so the teeth and the dark of an open mouth stay the
   warp frame's (the photo's own teeth moved with the lips, or the drawn ones) and the model refines the lips and
   the skin around them.

Temporal state and chunking: the model also sees the previous output crop (with Gaussian noise of level
``previous_noise``, from a noise image drawn at ``prepare``, as in training; ``previous_noise=None`` never shows it
the previous frame), so frames are refined in order and the last refined crop is carried in the context
(``ctx.previous``, with ``ctx.frames_rendered``). Successive ``render`` calls on one context therefore continue one
video: rendering frames ``[0, 64)`` then ``[64, 128)`` gives exactly the frames of one call on ``[0, 128)`` (same
noise, same previous frame, frame-by-frame numerics), which is what :func:`pipeline.render.export.render_to_mp4` does.
A context is one video stream: call :meth:`DiffusionRenderer.reset` (or ``prepare`` again) before rendering another
track from the start; nothing else in the context changes.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import torch

from ..canonical import apply_transform, invert_transform
from ..errors import InputError
from ..models.face_renderer import (
    HULL_MARGIN,
    HULL_POINTS,
    LandmarkFaceRenderer,
    add_masked_noise,
    condition_channels,
    from_model_pixels,
    inside_mouth_weight,
    mouth_weight,
    normalise_landmarks,
    region_masks,
    to_model_pixels,
)
from ..regions import NUM_POINTS
from ..sampling import extra_step_kwargs
from .warp import WarpContext, WarpRenderer

logger = logging.getLogger(__name__)


@dataclass
class DiffusionContext:
    """Per-photo state of :class:`DiffusionRenderer`; everything but the last two fields is fixed by ``prepare``."""

    warp: WarpContext  # the output warp (size / full mode as asked)
    crop: WarpContext  # the model's face crop (crop mode at model resolution, same box as crop mode)
    reference: np.ndarray  # (R, R, 3) uint8 the photo's face crop
    to_output: np.ndarray  # (2, 3) model-crop pixels -> output pixels
    noise: torch.Tensor  # (1, 3, R, R) the noise shared by all frames
    previous_noise: np.ndarray  # (3, R, R) float32 the noise added to every previous frame
    previous: np.ndarray | None = None  # (R, R, 3) uint8 last refined crop; None before the first frame
    frames_rendered: int = 0  # frames rendered since prepare / reset


class DiffusionRenderer:
    """Warp + diffusion refinement of the lower face (see the module docstring).

    Args:
        model: a trained :class:`LandmarkFaceRenderer`.
        scheduler: a diffusers scheduler (DDIM or DPM-Solver multistep are good few-step choices) whose
            ``prediction_type`` is the model's.
        size, full: output as :class:`WarpRenderer` (``size``-pixel face crop, or the whole photo with ``full``).
        num_inference_steps: length of the sampling schedule; ``int(num_inference_steps * strength)`` steps run.
        strength: how far into the schedule the warp crop is noised (0: the warp frame unchanged, 1: from pure noise).
        generator: draws the shared noise at ``prepare`` (fix it for reproducible videos).
        previous_noise: noise level sigma of the previous frame given to the model (training draws it in
            ``[0, train.previous_noise_max]``); None gives no previous frame (every frame as a first frame).
        mouth_fill: passed to the warp renderers.
        mouth_margin: when given, only the mouth and the skin within this many inter-ocular units of the lips take
            the refined pixels (feathered); the rest of the lower face stays the warp frame's. None: the whole
            generated region is pasted.
        keep_mouth_inside: the inside of the mouth (within the inner lips, feathered) keeps the warp frame's pixels.
    """

    def __init__(
        self,
        model: LandmarkFaceRenderer,
        scheduler,
        size: int = 256,
        full: bool = False,
        num_inference_steps: int = 8,
        strength: float = 0.5,
        generator: torch.Generator | None = None,
        previous_noise: float | None = 0.25,
        mouth_fill: bool = True,
        mouth_margin: float | None = None,
        keep_mouth_inside: bool = False,
    ) -> None:
        if previous_noise is not None and not 0.0 <= float(previous_noise) < 1.0:
            raise ValueError(f"previous_noise must be in [0, 1) or None; got {previous_noise}.")
        if not 0.0 <= float(strength) <= 1.0:
            raise ValueError(f"strength must be in [0, 1]; got {strength}.")
        if int(num_inference_steps) < 1:
            raise ValueError(f"num_inference_steps must be at least 1; got {num_inference_steps}.")
        prediction = scheduler.config.get("prediction_type", "epsilon")
        if prediction != model.config.prediction_type:
            raise ValueError(
                f"The scheduler predicts {prediction!r} but the model {model.config.prediction_type!r}; build the "
                "scheduler with the model's prediction_type."
            )
        self.model = model.eval()
        self.scheduler = scheduler
        self.resolution = int(model.config.resolution)
        self.num_inference_steps = int(num_inference_steps)
        self.strength = float(strength)
        self.generator = generator
        self.previous_noise = None if previous_noise is None else float(previous_noise)
        self.mouth_margin = None if mouth_margin is None else float(mouth_margin)
        self.keep_mouth_inside = bool(keep_mouth_inside)
        self.warp = WarpRenderer(size, full, mouth_fill)
        self.size, self.full = self.warp.size, self.warp.full
        self.crop_warp = WarpRenderer(self.resolution, False, mouth_fill)

    @classmethod
    def from_pretrained(
        cls,
        model_path: str | Path,
        scheduler_path: str | Path,
        scheduler_cls=None,
        device: str | torch.device = "cpu",
        **kwargs,
    ) -> DiffusionRenderer:
        """Load the model and scheduler folders written by ``training/train_renderer.py`` (``save_pretrained``).

        ``scheduler_cls`` (default DDIM) may be another diffusers scheduler class built from the same config."""
        from diffusers import DDIMScheduler

        model = LandmarkFaceRenderer.from_pretrained(str(model_path), use_safetensors=True).to(device)
        scheduler = (scheduler_cls or DDIMScheduler).from_pretrained(str(scheduler_path))
        return cls(model, scheduler, **kwargs)

    # --- per photo --------------------------------------------------------------------------------------------
    def prepare(self, image: np.ndarray, reference: np.ndarray) -> DiffusionContext:
        """image: (H,W,3) uint8 RGB photo; reference: (68,2) landmarks of the face in that photo (pixels)."""
        warp_ctx = self.warp.prepare(image, reference)
        same = not self.full and self.size == self.resolution
        crop_ctx = warp_ctx if same else self.crop_warp.prepare(warp_ctx.photo, reference)
        from_photo = np.eye(2, 3) if self.full else warp_ctx.to_canvas  # photo px -> output px
        to_output = _compose(from_photo, invert_transform(crop_ctx.to_canvas))
        r = self.resolution
        noise = torch.randn((2, 3, r, r), generator=self.generator, dtype=torch.float32)
        return DiffusionContext(warp_ctx, crop_ctx, np.asarray(crop_ctx.source), to_output, noise[:1],
                                noise[1].numpy())

    @staticmethod
    def reset(ctx: DiffusionContext) -> None:
        """Start a new video on this context: forget the previous frame (the shared noise stays)."""
        ctx.previous, ctx.frames_rendered = None, 0

    def crop_landmarks(self, ctx: DiffusionContext, points: np.ndarray) -> np.ndarray:
        """Photo pixels -> output-frame pixels, ``(..., 68, 2)`` (full mode: unchanged)."""
        return self.warp.crop_landmarks(ctx.warp, points)

    # --- frames -----------------------------------------------------------------------------------------------
    def render(self, ctx: DiffusionContext, frames: np.ndarray) -> np.ndarray:
        """frames: (T,68,2) target landmarks in the PHOTO's pixel space -> (T,S,S,3) uint8 (crop mode) or
        (T,H,W,3) uint8 (full mode). Continues the video of ``ctx`` (see the module docstring)."""
        frames = np.asarray(frames, dtype=np.float64)
        if frames.ndim != 3 or frames.shape[1:] != (NUM_POINTS, 2) or not np.isfinite(frames).all():
            raise InputError(f"Landmark frames must be finite, shaped (T, {NUM_POINTS}, 2); got {frames.shape}.")
        out = self.warp.render(ctx.warp, frames)  # (T, S, S, 3) or (T, H, W, 3)
        if len(frames) == 0 or self._num_steps() == 0:
            return out
        crops = out if ctx.crop is ctx.warp else self.crop_warp.render(ctx.crop, frames)  # (T, R, R, 3)
        points = self.crop_warp.crop_landmarks(ctx.crop, frames)  # (T, 68, 2) model-crop pixels
        out_points = apply_transform(ctx.to_output, points)  # (T, 68, 2) output pixels
        for t in range(len(frames)):
            refined = self.refine(ctx, crops[t], points[t], ctx.previous)
            ctx.previous, ctx.frames_rendered = refined, ctx.frames_rendered + 1
            change = refined.astype(np.float32) - crops[t].astype(np.float32)
            _paste(out[t], change, out_points[t], ctx.to_output, self.mouth_margin, self.keep_mouth_inside)
        return out

    def _num_steps(self) -> int:
        return min(int(self.num_inference_steps * self.strength), self.num_inference_steps)

    def _timesteps(self) -> torch.Tensor:
        """Set the scheduler up for one frame and return the timesteps to run (img2img-style truncation)."""
        self.scheduler.set_timesteps(self.num_inference_steps)
        start = (self.num_inference_steps - self._num_steps()) * getattr(self.scheduler, "order", 1)
        if hasattr(self.scheduler, "set_begin_index"):
            self.scheduler.set_begin_index(start)
        return self.scheduler.timesteps[start:]

    @torch.no_grad()
    def refine(
        self, ctx: DiffusionContext, warp_crop: np.ndarray, points: np.ndarray, previous: np.ndarray | None
    ) -> np.ndarray:
        """One frame: the warp crop ``(R, R, 3)`` uint8 with its lower face resampled, ``(R, R, 3)`` uint8.

        points: (68, 2) target landmarks in crop pixels; previous: the last refined crop or None."""
        device, dtype = self.model.device, self.model.dtype
        r = self.resolution
        hard = region_masks(points, (r, r))[1]
        if self.previous_noise is None:
            previous = None
        condition = torch.from_numpy(condition_channels(warp_crop, ctx.reference, points, previous, hard,
                                                        self.previous_noise or 0.0, ctx.previous_noise))
        condition = condition[None].to(device, dtype)  # (1, C, R, R)
        landmarks = torch.from_numpy(normalise_landmarks(points, r))[None].to(device, dtype)  # (1, 68, 2)
        mask = torch.from_numpy(hard)[None, None].to(device, dtype)  # (1, 1, R, R)
        known = torch.from_numpy(to_model_pixels(warp_crop))[None].to(device, dtype)  # (1, 3, R, R)
        timesteps = self._timesteps()
        x = add_masked_noise(self.scheduler, known, ctx.noise.to(device, dtype), timesteps[:1], mask)
        step_kwargs = extra_step_kwargs(self.scheduler, self.generator)
        for t in timesteps:
            model_input = self.scheduler.scale_model_input(x, t)  # identity for DDIM; sigma scaling for Euler types
            prediction = self.model(model_input, t, landmarks, condition).sample  # (1, 3, R, R)
            x = self.scheduler.step(prediction, t, x, **step_kwargs).prev_sample
            x = mask * x + (1.0 - mask) * known  # the face outside the region stays the warp frame's
        return from_model_pixels(x[0].clamp(-1.0, 1.0))


def _compose(outer: np.ndarray, inner: np.ndarray) -> np.ndarray:
    """2x3 affine ``outer ∘ inner``."""
    matrix = np.empty((2, 3))
    matrix[:, :2] = outer[:, :2] @ inner[:, :2]
    matrix[:, 2] = outer[:, :2] @ inner[:, 2] + outer[:, 2]
    return matrix


def _paste(frame: np.ndarray, change: np.ndarray, points: np.ndarray, to_output: np.ndarray,
           mouth_margin: float | None = None, keep_mouth_inside: bool = False) -> None:
    """Add the model's ``change`` (refined crop minus the warp crop it refined, ``(R, R, 3)`` float32, model-crop
    pixels) to the output ``frame`` (in place), weighted by the soft region mask of ``points`` (output pixels),
    narrowed to the mouth by ``mouth_margin`` when given and kept off the inside of the mouth with
    ``keep_mouth_inside``; only pixels with a nonzero weight change.

    Adding the change rather than pasting the refined crop keeps the output-size warp frame's own detail where the
    model leaves the crop alone: a 128-pixel crop pasted into a 256-pixel frame would be an upscaled, softer mouth
    (detail transfer, as in guided upsampling). At the model's own resolution both are the same."""
    height, width = frame.shape[:2]
    hull = points[list(HULL_POINTS)]
    pad = HULL_MARGIN * float(np.linalg.norm(points[45] - points[36])) + 2.0
    x0, y0 = np.maximum(np.floor(hull.min(axis=0) - pad).astype(int), 0)
    x1, y1 = np.minimum(np.ceil(hull.max(axis=0) + pad).astype(int) + 1, (width, height))
    if x1 <= x0 or y1 <= y0:
        return
    soft = region_masks(points, (y1 - y0, x1 - x0), origin=(x0, y0))[0]
    if mouth_margin is not None:
        soft *= mouth_weight(points, (y1 - y0, x1 - x0), origin=(x0, y0), margin=mouth_margin)
    if keep_mouth_inside:
        soft *= 1.0 - inside_mouth_weight(points, (y1 - y0, x1 - x0), origin=(x0, y0))
    inside = soft > 0
    if not inside.any():
        return
    shift = to_output.copy()
    shift[:, 2] -= (x0, y0)
    scale = float(np.sqrt(abs(np.linalg.det(to_output[:, :2]))))
    interpolation = cv2.INTER_CUBIC if scale > 1.0 else cv2.INTER_AREA if scale < 1.0 else cv2.INTER_LINEAR
    if interpolation == cv2.INTER_AREA:  # warpAffine has no area filter: shrink first, then place
        side = max(int(round(change.shape[0] * scale)), 1)
        factor = side / change.shape[0]
        change = cv2.resize(change, (side, side), interpolation=cv2.INTER_AREA)
        # small pixel q sits at crop pixel (q + 0.5) / factor - 0.5
        shift[:, 2] += shift[:, :2] @ np.full(2, 0.5 / factor - 0.5)
        shift[:, :2] /= factor
        interpolation = cv2.INTER_LINEAR
    patch = cv2.warpAffine(change, shift, (x1 - x0, y1 - y0), flags=interpolation, borderMode=cv2.BORDER_REPLICATE)
    roi = frame[y0:y1, x0:x1]
    alpha = soft[inside][:, None]
    roi[inside] = np.clip(roi[inside] + patch[inside] * alpha + 0.5, 0, 255).astype(np.uint8)

"""Landmark-conditioned diffusion model that repaints the lower face of an aligned face crop (pixel space).

The model sees a ``resolution`` x ``resolution`` face crop (the warp renderer's crop: about 2.2 face sizes, centred a
little above the nose) and denoises only the part of it below a line through the nose tip, inside the lower face
(DiffTalker): the rest of the crop is given clean, so it has two noise scales, none above the line and the
scheduler's below it (:func:`add_masked_noise`), and the loss is taken on the generated region only.

Conditioning, as in TalkFormer / MC-VDM:

* **landmark tokens** (cross-attention): the target frame's 68 points, normalised to the crop (``[-1, 1]``), go
  through a coordinate MLP on Fourier features plus a learned per-point position embedding
  (:class:`LandmarkEncoder`), one token per point, and every cross-attention block of the UNet attends to them;
* **image channels** concatenated to the noisy sample (:func:`condition_channels`): the warp renderer's frame of the
  target (an aligned reference: feature warping done by the mesh warp), the reference photo crop, a rasterised
  landmark map (outer lip outline, filled inner mouth, jaw and nose lines; :func:`landmark_map`), the mask of the
  generated region, and the previous output frame, for temporal consistency (zeros for the first frame). Training
  gives the real previous frame, randomly dropped, with Gaussian noise of a random level sigma added (conditioning
  augmentation, as in cascaded / video diffusion): a clean real previous frame is so close to the target that the
  model learns to copy it, and at inference, fed its own outputs, it then drifts. The last channel says what the
  previous frame is: 0 when absent, ``1 - sigma`` when present;
* the **timestep**, through the UNet's own ``TimestepEmbedding``.

The backbone is diffusers' :class:`~diffusers.UNet2DConditionModel` in a tiny configuration. The prediction target is
``config.prediction_type`` ("epsilon", "sample" or "v_prediction"), and schedulers must be built with the same.
Pixels are in ``[-1, 1]``; images enter as ``(B, C, H, W)``.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass

import cv2
import numpy as np
import torch
from diffusers import ModelMixin, UNet2DConditionModel
from diffusers.configuration_utils import ConfigMixin, register_to_config
from diffusers.utils import BaseOutput
from torch import nn

from ..canonical import inter_ocular
from ..regions import INNER_LIP, JAW, NOSE_BASE, NOSE_BRIDGE, NUM_POINTS, OUTER_LIP

#: Channels concatenated to the noisy sample: warp frame (3), reference crop (3), landmark map (3), region mask (1),
#: previous frame (3) and its presence / noise-level flag (1).
CONDITION_CHANNELS = 14
#: The generated region lies below the line through this point (the nose tip), parallel to the eye line ...
NOSE_POINT = 30
#: ... and inside the convex hull of these jaw points (the lower face), grown by HULL_MARGIN inter-ocular units.
HULL_POINTS = JAW[1:16]
HULL_MARGIN = 0.15
#: Width of the soft edge of the blending mask, inter-ocular units.
FEATHER = 0.08
#: Width of the soft edge around the inside of the mouth (:func:`inside_mouth_weight`), inter-ocular units.
INSIDE_FEATHER = 0.02


@dataclass
class LandmarkFaceRendererOutput(BaseOutput):
    """Output of [`LandmarkFaceRenderer`].

    Args:
        sample (`torch.Tensor` of shape `(B, 3, H, W)`): the prediction named by `config.prediction_type`.
    """

    sample: torch.Tensor


# ---------------------------------------------------------------------------------------------------
# Conditioning helpers (numpy, shared by the renderer, the data preparation and training)


def _smoothstep(edge0: float, edge1: float, x: np.ndarray) -> np.ndarray:
    t = np.clip((x - edge0) / (edge1 - edge0), 0.0, 1.0)
    return t * t * (3.0 - 2.0 * t)


def _down_vector(points: np.ndarray) -> np.ndarray:
    """Unit vector perpendicular to the outer-eye-corner line, pointing from the eyes to the chin."""
    eye = points[45] - points[36]
    down = np.array([-eye[1], eye[0]])
    return down / max(float(np.hypot(*down)), 1e-9)


def normalise_landmarks(points: np.ndarray, resolution: int) -> np.ndarray:
    """Crop pixels ``(..., 68, 2)`` (pixel centres at integers) -> ``[-1, 1]`` crop coordinates, float32."""
    return ((np.asarray(points, np.float64) + 0.5) / resolution * 2.0 - 1.0).astype(np.float32)


def region_masks(
    points: np.ndarray, shape: tuple[int, int], origin: tuple[float, float] = (0.0, 0.0)
) -> tuple[np.ndarray, np.ndarray]:
    """Masks ``(soft, hard)``, each ``(h, w)`` float32, of the generated region of a face with landmarks ``points``
    ``(68, 2)``, on a pixel grid of ``shape`` whose pixel ``(0, 0)`` sits at ``origin`` in the points' frame.

    ``hard`` (0/1) is where the model generates: below the nose line and within :data:`HULL_MARGIN` of the lower-face
    hull. ``soft`` is the blending weight inside it: zero on and above the nose line (so everything above is kept
    exactly), rising to one over :data:`FEATHER`, and fading out towards the edge of the hull margin. Distances are in
    inter-ocular units, so the masks agree at any resolution."""
    points = np.asarray(points, dtype=np.float64)
    assert points.shape == (NUM_POINTS, 2), f"landmarks must be ({NUM_POINTS}, 2), got {points.shape}"
    h, w = shape
    iod = max(float(inter_ocular(points)), 1e-6)
    feather, margin = FEATHER * iod, HULL_MARGIN * iod
    local = points - np.asarray(origin, dtype=np.float64)
    down = _down_vector(points)
    xs = np.arange(w, dtype=np.float64)[None, :] - local[NOSE_POINT, 0]
    ys = np.arange(h, dtype=np.float64)[:, None] - local[NOSE_POINT, 1]
    below = xs * down[0] + ys * down[1]  # (h, w) signed distance below the nose line
    hull = np.zeros((h, w), np.uint8)
    corners = np.round(cv2.convexHull(local[list(HULL_POINTS)].astype(np.float32)) * 16).astype(np.int32)
    cv2.fillConvexPoly(hull, corners, 1, cv2.LINE_8, 4)
    outside = cv2.distanceTransform(1 - hull, cv2.DIST_L2, 5)  # (h, w) pixels to the hull (0 inside)
    hard = (below > 0) & (outside < margin)
    soft = _smoothstep(0.0, feather, below) * _smoothstep(margin, margin - feather, outside)
    return (soft * hard).astype(np.float32), hard.astype(np.float32)


def _hull_distance(
    points: np.ndarray, outline: Iterable[int], shape: tuple[int, int], origin: tuple[float, float]
) -> tuple[np.ndarray, float]:
    """Pixels from each grid cell to the convex hull of ``points[outline]`` (0 inside), ``(h, w)`` float32, and the
    face's inter-ocular distance in pixels."""
    points = np.asarray(points, dtype=np.float64)
    iod = max(float(inter_ocular(points)), 1e-6)
    local = points[list(outline)] - np.asarray(origin, dtype=np.float64)
    hull = np.zeros(shape, np.uint8)
    corners = np.round(cv2.convexHull(local.astype(np.float32)) * 16).astype(np.int32)
    cv2.fillConvexPoly(hull, corners, 1, cv2.LINE_8, 4)
    return cv2.distanceTransform(1 - hull, cv2.DIST_L2, 5), iod


def mouth_weight(
    points: np.ndarray, shape: tuple[int, int], origin: tuple[float, float] = (0.0, 0.0), *, margin: float
) -> np.ndarray:
    """``(h, w)`` float32 weight: one within ``margin - FEATHER`` inter-ocular units of the outer lips' convex hull,
    fading to zero at ``margin`` (same grid conventions as :func:`region_masks`)."""
    outside, iod = _hull_distance(points, OUTER_LIP, shape, origin)
    return _smoothstep(margin * iod, (margin - FEATHER) * iod, outside).astype(np.float32)


def inside_mouth_weight(
    points: np.ndarray, shape: tuple[int, int], origin: tuple[float, float] = (0.0, 0.0)
) -> np.ndarray:
    """``(h, w)`` float32 weight: one inside the inner lips' convex hull (the teeth and the dark of an open mouth),
    fading to zero within ``INSIDE_FEATHER`` inter-ocular units outside it (same grid conventions as
    :func:`region_masks`)."""
    outside, iod = _hull_distance(points, INNER_LIP, shape, origin)
    return _smoothstep(INSIDE_FEATHER * iod, 0.0, outside).astype(np.float32)


def landmark_map(points: np.ndarray, resolution: int) -> np.ndarray:
    """Rasterised landmarks ``(R, R, 3)`` float32 in ``[0, 1]`` from crop pixels ``(68, 2)``: the outer lip outline,
    the filled inner mouth, and the jaw and nose lines, each drawn anti-aliased and softened by a small blur."""
    points = np.asarray(points, dtype=np.float64)
    fixed = np.round(points * 16).astype(np.int32)  # 4 fractional bits for cv2's sub-pixel drawing
    out = np.zeros((resolution, resolution, 3), np.float32)
    canvases = [np.zeros((resolution, resolution), np.float32) for _ in range(3)]
    cv2.polylines(canvases[0], [fixed[list(OUTER_LIP)]], True, 1.0, 1, cv2.LINE_AA, 4)
    cv2.fillPoly(canvases[1], [fixed[list(INNER_LIP)]], 1.0, cv2.LINE_AA, 4)
    cv2.polylines(canvases[1], [fixed[list(INNER_LIP)]], True, 1.0, 1, cv2.LINE_AA, 4)
    for chain in (JAW, NOSE_BRIDGE, NOSE_BASE):
        cv2.polylines(canvases[2], [fixed[list(chain)]], False, 1.0, 1, cv2.LINE_AA, 4)
    sigma = max(resolution / 128.0, 0.5) * 0.7
    for c, canvas in enumerate(canvases):
        out[..., c] = np.clip(cv2.GaussianBlur(canvas, (0, 0), sigma) * 2.0, 0.0, 1.0)
    return out


def to_model_pixels(images: np.ndarray) -> np.ndarray:
    """uint8 ``(..., H, W, 3)`` -> float32 ``(..., 3, H, W)`` in ``[-1, 1]``."""
    x = np.asarray(images, dtype=np.float32) / 127.5 - 1.0
    return np.moveaxis(x, -1, -3)


def from_model_pixels(x: torch.Tensor | np.ndarray) -> np.ndarray:
    """float ``(..., 3, H, W)`` in ``[-1, 1]`` -> uint8 ``(..., H, W, 3)``."""
    if isinstance(x, torch.Tensor):
        x = x.detach().float().cpu().numpy()
    x = np.moveaxis(np.asarray(x), -3, -1)
    return np.clip((x + 1.0) * 127.5 + 0.5, 0, 255).astype(np.uint8)


def condition_channels(
    warp: np.ndarray,
    reference: np.ndarray,
    points: np.ndarray,
    previous: np.ndarray | None,
    hard_mask: np.ndarray | None = None,
    previous_noise: float = 0.0,
    noise_image: np.ndarray | None = None,
) -> np.ndarray:
    """The channels concatenated to the noisy sample, ``(CONDITION_CHANNELS, R, R)`` float32.

    warp, reference: ``(R, R, 3)`` uint8 crops (the warp renderer's frame of the target, the reference photo);
    points: ``(68, 2)`` target landmarks in crop pixels; previous: ``(R, R, 3)`` uint8 previous output frame, or None
    (first frame / dropped): zeros and a zero flag; hard_mask: ``(R, R)`` from :func:`region_masks` (computed when
    not given); previous_noise: sigma of the Gaussian noise ``noise_image`` ``(3, R, R)`` (standard normal) added to the
    previous frame (pixels in [-1, 1]), told to the model by the flag ``1 - sigma``."""
    resolution = warp.shape[0]
    assert warp.shape == (resolution, resolution, 3), f"warp crop must be square RGB, got {warp.shape}"
    assert reference.shape == warp.shape, f"reference {reference.shape} must match warp {warp.shape}"
    if hard_mask is None:
        hard_mask = region_masks(points, (resolution, resolution))[1]
    lmk = landmark_map(points, resolution) * 2.0 - 1.0  # (R, R, 3)
    if previous is None:
        prev, flag = np.zeros((3, resolution, resolution), np.float32), 0.0
    else:
        assert 0.0 <= previous_noise < 1.0, f"previous_noise must be in [0, 1), got {previous_noise}"
        prev, flag = to_model_pixels(previous), 1.0 - float(previous_noise)
        if previous_noise > 0.0:
            assert noise_image is not None and noise_image.shape == prev.shape, "previous_noise needs a noise_image"
            prev = prev + np.float32(previous_noise) * noise_image
    return np.concatenate(
        [
            to_model_pixels(warp),  # (3, R, R)
            to_model_pixels(reference),  # (3, R, R)
            np.moveaxis(lmk, -1, 0),  # (3, R, R)
            hard_mask[None] * 2.0 - 1.0,  # (1, R, R)
            prev,  # (3, R, R)
            np.full((1, resolution, resolution), flag, np.float32),  # (1, R, R)
        ]
    ).astype(np.float32)


def add_masked_noise(scheduler, clean: torch.Tensor, noise: torch.Tensor, timesteps: torch.Tensor,
                     mask: torch.Tensor) -> torch.Tensor:
    """DiffTalker's two noise scales: the scheduler's forward noise where ``mask`` (B, 1, H, W) is 1, none elsewhere.

    clean, noise: (B, 3, H, W); timesteps: (B,) -> (B, 3, H, W)."""
    noisy = scheduler.add_noise(clean, noise, timesteps)
    return mask * noisy + (1.0 - mask) * clean


# ---------------------------------------------------------------------------------------------------
# The model


class LandmarkEncoder(nn.Module):
    """TalkFormer-style landmark tokens: ``(B, 68, 2)`` normalised points -> ``(B, 68, D)``.

    Each point's coordinates go through Fourier features (``2 * 2 * num_frequencies`` sines and cosines plus the raw
    coordinates) and a two-layer MLP, plus a learned embedding of the point's index."""

    def __init__(self, dim: int, num_points: int = NUM_POINTS, num_frequencies: int = 6):
        super().__init__()
        self.register_buffer("frequencies", math.pi * 2.0 ** torch.arange(num_frequencies, dtype=torch.float32),
                             persistent=False)
        in_dim = 2 + 4 * num_frequencies
        self.mlp = nn.Sequential(nn.Linear(in_dim, dim), nn.SiLU(), nn.Linear(dim, dim))
        self.position = nn.Parameter(torch.randn(num_points, dim) * 0.02)
        self.norm = nn.LayerNorm(dim)

    def forward(self, points: torch.Tensor) -> torch.Tensor:
        points = points.float()  # Fourier features in float32 whatever the model's dtype (bf16 sin(32πx) is noise)
        angles = points[..., None] * self.frequencies.float()  # (B, 68, 2, F)
        features = torch.cat([points, angles.sin().flatten(-2), angles.cos().flatten(-2)], dim=-1)  # (B, 68, 2+4F)
        return self.norm(self.mlp(features.to(self.position.dtype)) + self.position)  # (B, 68, D)


class LandmarkFaceRenderer(ModelMixin, ConfigMixin):
    r"""
    Denoiser of the lower face of a ``resolution``-pixel face crop, conditioned on landmarks and images (see the module
    docstring).

    Parameters:
        resolution (`int`): side of the square face crop.
        block_out_channels, down_block_types, up_block_types, layers_per_block, attention_heads, norm_num_groups,
        only_cross_attention: the [`UNet2DConditionModel`] backbone (``attention_heads`` is its per-block number of
            heads, which diffusers calls ``attention_head_dim``). With ``only_cross_attention`` the attention blocks
            attend to the landmark tokens only (no pixel self-attention), which keeps them cheap at high resolution.
        cross_attention_dim (`int`): width of the landmark tokens.
        num_frequencies (`int`): Fourier frequencies of the landmark coordinate features.
        prediction_type (`str`): "epsilon", "sample" or "v_prediction"; schedulers must use the same.
        warp_residual (`bool`): with "sample" prediction, predict the clean crop as the warp frame (the first condition
            channels) plus the UNet's output, whose last convolution starts at zero: an untrained model reproduces the
            warp frame and training learns the correction, which trains much faster than predicting whole pixels.
    """

    @register_to_config
    def __init__(
        self,
        resolution: int = 128,
        block_out_channels: tuple[int, ...] = (32, 64, 128),
        down_block_types: tuple[str, ...] = ("DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types: tuple[str, ...] = ("CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"),
        layers_per_block: int = 1,
        attention_heads: int = 4,
        norm_num_groups: int = 8,
        only_cross_attention: bool = True,
        cross_attention_dim: int = 128,
        num_frequencies: int = 6,
        num_points: int = NUM_POINTS,
        prediction_type: str = "sample",
        warp_residual: bool = False,
    ):
        super().__init__()
        assert prediction_type in ("epsilon", "sample", "v_prediction"), f"unknown prediction_type {prediction_type}"
        assert not warp_residual or prediction_type == "sample", "warp_residual needs prediction_type 'sample'"
        assert len(down_block_types) == len(up_block_types) == len(block_out_channels), "one block type per level"
        factor = 2 ** (len(block_out_channels) - 1)
        assert resolution % factor == 0, f"resolution {resolution} must be divisible by {factor}"
        self.landmark_encoder = LandmarkEncoder(cross_attention_dim, num_points, num_frequencies)
        self.unet = UNet2DConditionModel(
            sample_size=resolution,
            in_channels=3 + CONDITION_CHANNELS,
            out_channels=3,
            down_block_types=tuple(down_block_types),
            up_block_types=tuple(up_block_types),
            block_out_channels=tuple(block_out_channels),
            layers_per_block=layers_per_block,
            attention_head_dim=attention_heads,
            norm_num_groups=norm_num_groups,
            cross_attention_dim=cross_attention_dim,
            only_cross_attention=only_cross_attention,
        )
        if warp_residual:
            nn.init.zeros_(self.unet.conv_out.weight)
            nn.init.zeros_(self.unet.conv_out.bias)

    def forward(
        self,
        sample: torch.Tensor,
        timestep: torch.Tensor | float | int,
        landmarks: torch.Tensor,
        condition: torch.Tensor,
        return_dict: bool = True,
    ) -> LandmarkFaceRendererOutput | tuple:
        """
        Args:
            sample: (B, 3, R, R) noisy crop (clean outside the generated region), in [-1, 1].
            timestep: (B,) or scalar diffusion step.
            landmarks: (B, 68, 2) target landmarks in [-1, 1] crop coordinates (:func:`normalise_landmarks`).
            condition: (B, CONDITION_CHANNELS, R, R) from :func:`condition_channels`.
        """
        b, c, h, w = sample.shape
        r = self.config.resolution
        assert (c, h, w) == (3, r, r), f"sample must be (B, 3, {r}, {r}), got {tuple(sample.shape)}"
        assert condition.shape == (b, CONDITION_CHANNELS, r, r), (
            f"condition must be (B, {CONDITION_CHANNELS}, {r}, {r}), got {tuple(condition.shape)}"
        )
        assert landmarks.shape == (b, self.config.num_points, 2), f"landmarks must be (B, 68, 2), got {landmarks.shape}"
        tokens = self.landmark_encoder(landmarks.to(sample.dtype))  # (B, 68, D)
        x = torch.cat([sample, condition.to(sample.dtype)], dim=1)  # (B, 3 + C, R, R)
        out = self.unet(x, timestep, encoder_hidden_states=tokens).sample  # (B, 3, R, R)
        if self.config.warp_residual:
            out = out + condition[:, :3].to(out.dtype)  # the warp frame's channels (condition_channels puts them first)
        if not return_dict:
            return (out,)
        return LandmarkFaceRendererOutput(sample=out)

"""AToM-Net-style landmark motion denoiser: a two-stream transformer over a window of frames.

The model denoises a window of 68-point facial motion (canonical offsets from the neutral face, multiplied by
``config.motion_scale`` so the values are about unit variance) and predicts the clean motion (``prediction_type
"sample"``, the x0 of a diffusers scheduler). Every frame is two tokens, one per stream:

- the **lip stream** holds the speech-driven points (``regions.LOWER_FACE``: lower jaw line and lips) and is the
  only place audio enters (a small temporal conv stack over the per-frame audio features, added at the input and
  again in every block);
- the **non-lip stream** holds the other points (upper jaw ends, brows, nose, eyes: blinks and head motion) and never
  sees audio. Its hidden states flow one way into the lip stream through cross-attention, so the mouth can follow the
  head, but nothing goes back: the non-lip output is exactly independent of the audio (and of the lip points).

Both streams are pre-norm transformer blocks over time (self-attention with rotary positions, so any window length
works) modulated by FiLM (scale and shift) from the diffusion timestep plus the reference (neutral) face. Known motion
(the overlap with the previous window, or upper-face points copied from a driving video) enters as extra input
channels: the known values and the mask, zeros where unknown. An ``audio_mask`` swaps in a learned null audio
embedding for classifier-free guidance.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from diffusers import ModelMixin
from diffusers.configuration_utils import ConfigMixin, register_to_config
from diffusers.models.embeddings import TimestepEmbedding, Timesteps
from diffusers.utils import BaseOutput
from torch import nn

from ..regions import LOWER_FACE, NUM_POINTS

#: The lip stream's points (speech-driven) and the non-lip stream's points (everything else), in index order.
LIP_POINTS: tuple[int, ...] = tuple(sorted(LOWER_FACE))
NON_LIP_POINTS: tuple[int, ...] = tuple(i for i in range(NUM_POINTS) if i not in set(LOWER_FACE))


@dataclass
class LandmarkDenoiserOutput(BaseOutput):
    """Output of [`LandmarkDenoiser`].

    Args:
        sample (`torch.Tensor` of shape `(B, W, 68, 2)`): the prediction named by `config.prediction_type`
            (by default the clean, scaled motion x0).
    """

    sample: torch.Tensor


def _rotary(length: int, dim: int, device: torch.device, dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
    """Rotary position tables ``(cos, sin)``, each ``(length, dim)``, for frame positions ``0..length-1``."""
    inv_freq = 1.0 / (10000.0 ** (torch.arange(0, dim, 2, device=device, dtype=torch.float32) / dim))
    angles = torch.arange(length, device=device, dtype=torch.float32)[:, None] * inv_freq[None]  # (L, dim/2)
    angles = torch.cat([angles, angles], dim=-1)  # (L, dim)
    return angles.cos().to(dtype), angles.sin().to(dtype)


def _apply_rotary(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotate ``x (B, H, L, hd)`` by position; pairs are (first half, second half) of the head dimension."""
    x1, x2 = x.chunk(2, dim=-1)
    return x * cos + torch.cat([-x2, x1], dim=-1) * sin


class Attention(nn.Module):
    """Multi-head attention over frames with rotary positions; self-attention when ``context`` is None."""

    def __init__(self, dim: int, num_heads: int, dropout: float = 0.0):
        super().__init__()
        assert dim % num_heads == 0, f"d_model {dim} must be divisible by num_heads {num_heads}"
        assert (dim // num_heads) % 2 == 0, f"head dim {dim // num_heads} must be even for rotary positions"
        self.num_heads = num_heads
        self.dropout = dropout
        self.to_q = nn.Linear(dim, dim)
        self.to_kv = nn.Linear(dim, 2 * dim)
        self.to_out = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor, rotary: tuple[torch.Tensor, torch.Tensor], context: torch.Tensor | None = None):
        b, length, dim = x.shape  # (B, W, d)
        context = x if context is None else context  # (B, W, d)
        q = self.to_q(x)
        k, v = self.to_kv(context).chunk(2, dim=-1)
        q, k, v = (t.view(b, -1, self.num_heads, dim // self.num_heads).transpose(1, 2) for t in (q, k, v))
        q, k = _apply_rotary(q, *rotary), _apply_rotary(k, *rotary)  # (B, H, W, hd)
        out = F.scaled_dot_product_attention(q, k, v, dropout_p=self.dropout if self.training else 0.0)
        return self.to_out(out.transpose(1, 2).reshape(b, length, dim))  # (B, W, d)


class StreamBlock(nn.Module):
    """Pre-norm transformer block over frames with FiLM (timestep + reference) on the attention and MLP inputs,
    optional cross-attention to another stream and an optional per-block audio injection (lip stream only).

    The FiLM scales and shifts come from the stream's shared modulation ``(B, 4d)`` plus this block's learned offset
    (PixArt-alpha's "adaLN-single"), which keeps the parameter count of per-block FiLM small."""

    def __init__(self, dim: int, num_heads: int, mlp_ratio: float, dropout: float, cross: bool, audio: bool):
        super().__init__()
        self.norm_attn = nn.LayerNorm(dim, elementwise_affine=False)
        self.attn = Attention(dim, num_heads, dropout)
        self.norm_cross = nn.LayerNorm(dim) if cross else None
        self.cross_attn = Attention(dim, num_heads, dropout) if cross else None
        self.audio_proj = nn.Linear(dim, dim) if audio else None
        self.norm_mlp = nn.LayerNorm(dim, elementwise_affine=False)
        hidden = int(dim * mlp_ratio)
        self.mlp = nn.Sequential(nn.Linear(dim, hidden), nn.GELU(), nn.Dropout(dropout), nn.Linear(hidden, dim))
        self.film_offset = nn.Parameter(torch.randn(4 * dim) / dim**0.5)

    def forward(self, x, modulation, rotary, context=None, audio=None):
        # x (B, W, d), modulation (B, 4d), context (B, W, d) other stream, audio (B, W, d)
        film = (modulation + self.film_offset)[:, None]  # (B, 1, 4d)
        shift_a, scale_a, shift_m, scale_m = film.chunk(4, dim=-1)  # each (B, 1, d)
        if self.audio_proj is not None:
            assert audio is not None, "the lip stream needs the audio embedding"
            x = x + self.audio_proj(audio)
        x = x + self.attn(self.norm_attn(x) * (1 + scale_a) + shift_a, rotary)
        if self.cross_attn is not None:
            assert context is not None, "a cross-attending block needs the other stream's states"
            x = x + self.cross_attn(self.norm_cross(x), rotary, context=context)
        return x + self.mlp(self.norm_mlp(x) * (1 + scale_m) + shift_m)


class LandmarkDenoiser(ModelMixin, ConfigMixin):
    r"""Two-stream (lip / non-lip) transformer denoiser for 68-point landmark motion windows (AToM-Net style).

    Parameters:
        window (`int`, defaults to 50): the frames per window used for sampling (2 s at 25 fps); any length works.
        audio_dim (`int`, defaults to 320): size of the per-frame audio features (`LogMelFeatures` gives 320).
        d_model (`int`, defaults to 192): width of both streams.
        num_layers (`int`, defaults to 3): transformer blocks per stream.
        num_heads (`int`, defaults to 4): attention heads.
        mlp_ratio (`float`, defaults to 2.0): MLP hidden size over `d_model`.
        audio_kernel_size (`int`, defaults to 5): kernel of the second temporal audio conv (after a kernel-3 one):
            5 gives each frame +-3 frames of audio context before attention.
        dropout (`float`, defaults to 0.1): dropout in attention and MLPs (training only).
        motion_scale (`float`, defaults to 10.0): canonical offsets are multiplied by this before diffusion.
        prediction_type (`str`, defaults to `"sample"`): what the output is, as in diffusers schedulers
            (`"sample"` = clean motion x0, `"epsilon"`, `"v_prediction"`).
    """

    @register_to_config
    def __init__(
        self,
        window: int = 50,
        audio_dim: int = 320,
        d_model: int = 192,
        num_layers: int = 3,
        num_heads: int = 4,
        mlp_ratio: float = 2.0,
        audio_kernel_size: int = 5,
        dropout: float = 0.1,
        motion_scale: float = 10.0,
        prediction_type: str = "sample",
    ):
        super().__init__()
        assert prediction_type in ("sample", "epsilon", "v_prediction"), f"unknown prediction_type {prediction_type!r}"
        assert audio_kernel_size % 2 == 1, f"audio_kernel_size must be odd, got {audio_kernel_size}"
        self.register_buffer("lip_index", torch.tensor(LIP_POINTS), persistent=False)
        self.register_buffer("non_lip_index", torch.tensor(NON_LIP_POINTS), persistent=False)
        n_lip, n_other = len(LIP_POINTS), len(NON_LIP_POINTS)

        # conditioning shared by both streams: timestep (sinusoidal + MLP) plus the reference face
        self.time_proj = Timesteps(d_model, flip_sin_to_cos=True, downscale_freq_shift=0)
        self.time_embedding = TimestepEmbedding(d_model, d_model)
        self.reference_embedding = nn.Sequential(
            nn.Linear(NUM_POINTS * 2, d_model), nn.SiLU(), nn.Linear(d_model, d_model)
        )

        # audio: per-frame features -> temporal convs -> d_model; a learned null embedding for guidance
        pad = audio_kernel_size // 2
        self.audio_encoder = nn.Sequential(
            nn.Conv1d(audio_dim, d_model, 3, padding=1),
            nn.GELU(),
            nn.Conv1d(d_model, d_model, audio_kernel_size, padding=pad),
        )
        self.null_audio = nn.Parameter(torch.randn(d_model) * 0.02)

        # per-stream FiLM modulation (4 x d: attention and MLP scale/shift), shared by the stream's blocks
        self.non_lip_film = nn.Sequential(nn.SiLU(), nn.Linear(d_model, 4 * d_model))
        self.lip_film = nn.Sequential(nn.SiLU(), nn.Linear(d_model, 4 * d_model))
        for film in (self.non_lip_film, self.lip_film):  # start near an identity modulation
            nn.init.zeros_(film[1].weight)
            nn.init.zeros_(film[1].bias)

        # per-frame tokens: noisy motion, known values (zeros where unknown) and the known mask of the stream's points
        self.lip_in = nn.Linear(n_lip * 5, d_model)
        self.non_lip_in = nn.Linear(n_other * 5, d_model)
        self.non_lip_blocks = nn.ModuleList(
            StreamBlock(d_model, num_heads, mlp_ratio, dropout, cross=False, audio=False) for _ in range(num_layers)
        )
        self.lip_blocks = nn.ModuleList(
            StreamBlock(d_model, num_heads, mlp_ratio, dropout, cross=True, audio=True) for _ in range(num_layers)
        )
        self.lip_out = nn.Sequential(nn.LayerNorm(d_model), nn.Linear(d_model, n_lip * 2))
        self.non_lip_out = nn.Sequential(nn.LayerNorm(d_model), nn.Linear(d_model, n_other * 2))

    def encode_audio(self, audio: torch.Tensor, audio_mask: torch.Tensor | None) -> torch.Tensor:
        """Per-frame audio ``(B, W, audio_dim)`` -> ``(B, W, d)``; where ``audio_mask`` is False (per sample ``(B,)``
        or per frame ``(B, W)``) the learned null embedding replaces it."""
        h = self.audio_encoder(audio.transpose(1, 2)).transpose(1, 2)  # (B, W, d)
        if audio_mask is not None:
            mask = audio_mask.to(device=h.device, dtype=torch.bool)
            mask = mask[:, None, None] if mask.ndim == 1 else mask[:, :, None]  # (B, 1|W, 1)
            h = torch.where(mask, h, self.null_audio.to(h.dtype))
        return h

    def forward(
        self,
        sample: torch.Tensor,
        timestep: torch.Tensor | float | int,
        audio: torch.Tensor,
        reference: torch.Tensor,
        known: torch.Tensor | None = None,
        known_mask: torch.Tensor | None = None,
        audio_mask: torch.Tensor | None = None,
        return_dict: bool = True,
    ) -> LandmarkDenoiserOutput | tuple:
        r"""
        Args:
            sample (`torch.Tensor` `(B, W, 68, 2)`): noisy scaled motion x_t.
            timestep (`torch.Tensor` or number): diffusion timestep, a scalar or `(B,)`.
            audio (`torch.Tensor` `(B, W, audio_dim)`): per-frame audio features aligned with the frames.
            reference (`torch.Tensor` `(B, 68, 2)`): the neutral face in canonical coordinates (not scaled).
            known (`torch.Tensor` `(B, W, 68, 2)`, *optional*): known scaled motion; read only where `known_mask`.
            known_mask (`torch.Tensor` `(B, W, 68)` bool, *optional*): which entries of `known` are given.
            audio_mask (`torch.Tensor` `(B,)` or `(B, W)` bool, *optional*): False swaps in the null audio
                embedding (classifier-free guidance); None means all audio is used.
            return_dict (`bool`, defaults to True): return a [`LandmarkDenoiserOutput`] instead of a tuple.
        """
        b, w, n, two = sample.shape
        assert (n, two) == (NUM_POINTS, 2), f"sample must be (B, W, {NUM_POINTS}, 2), got {tuple(sample.shape)}"
        assert audio.shape[:2] == (b, w), f"audio {tuple(audio.shape)} must be (B, W, D) with B, W = {b}, {w}"
        assert audio.shape[2] == self.config.audio_dim, f"audio dim {audio.shape[2]} != {self.config.audio_dim}"
        assert reference.shape == (b, NUM_POINTS, 2), f"reference must be (B, 68, 2), got {tuple(reference.shape)}"
        dtype = self.dtype
        sample, audio, reference = sample.to(dtype), audio.to(dtype), reference.to(dtype)
        if known_mask is None:
            known_mask = torch.zeros(b, w, n, dtype=torch.bool, device=sample.device)
        assert known_mask.shape == (b, w, n), f"known_mask must be (B, W, 68), got {tuple(known_mask.shape)}"
        mask = known_mask.to(device=sample.device, dtype=dtype)[..., None]  # (B, W, 68, 1)
        known = torch.zeros_like(sample) if known is None else known.to(dtype)
        assert known.shape == sample.shape, f"known must be like sample {tuple(sample.shape)}, got {tuple(known.shape)}"
        features = torch.cat([sample, known * mask, mask], dim=-1)  # (B, W, 68, 5)

        # 1. conditioning vector: timestep + reference face
        timestep = torch.as_tensor(timestep, device=sample.device)
        timestep = timestep.reshape(-1).expand(b) if timestep.numel() == 1 else timestep.reshape(b)
        cond = self.time_embedding(self.time_proj(timestep).to(dtype))  # (B, d)
        cond = cond + self.reference_embedding(reference.reshape(b, -1))  # (B, d)
        rotary = _rotary(w, self.config.d_model // self.config.num_heads, sample.device, dtype)

        # 2. non-lip stream: never sees audio (nor the lip points)
        other = self.non_lip_in(features[:, :, self.non_lip_index].flatten(2))  # (B, W, d)
        non_lip_modulation = self.non_lip_film(cond)  # (B, 4d)
        other_states = []
        for block in self.non_lip_blocks:
            other = block(other, non_lip_modulation, rotary)
            other_states.append(other)

        # 3. lip stream: audio at the input and in every block, cross-attention to the non-lip stream
        audio_h = self.encode_audio(audio, audio_mask)  # (B, W, d)
        lip = self.lip_in(features[:, :, self.lip_index].flatten(2)) + audio_h  # (B, W, d)
        lip_modulation = self.lip_film(cond)  # (B, 4d)
        for block, context in zip(self.lip_blocks, other_states, strict=False):
            lip = block(lip, lip_modulation, rotary, context=context, audio=audio_h)

        # 4. back to the 68 points
        lip_points = self.lip_out(lip).view(b, w, -1, 2)
        out = lip_points.new_zeros(b, w, n, 2)  # (B, W, 68, 2) in the layers' dtype (bf16 under autocast too)
        out[:, :, self.lip_index] = lip_points
        out[:, :, self.non_lip_index] = self.non_lip_out(other).view(b, w, -1, 2).to(out.dtype)
        if not return_dict:
            return (out,)
        return LandmarkDenoiserOutput(sample=out)

"""A deterministic mouth-opening regressor: speech features to how far the lips part, frame by frame.

The landmark diffusion model samples lip motion; with the few real talking faces we train on, one sample follows a
new voice less closely than the conditional mean does (sampling noise and the synthetic voices it also learns from
blur which sound opens the mouth). This model is that conditional mean for one number per frame, the inner-lip
opening in inter-ocular units above the face at rest: a linear filter over the log-mel bands of the surrounding
frames (``2 * context + 1`` video frames), fitted by ridge regression on real talking clips
(``training/train_mouth_regressor.py``) and scaled so its spread matches the real mouths'. The pipeline mixes it
with the sampled mouth (:func:`pipeline.motion.steer_mouth_opening`), as SadTalker keeps a deterministic lip network
beside a sampled pose.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from diffusers import ModelMixin
from diffusers.configuration_utils import ConfigMixin, register_to_config
from torch import nn


class MouthOpeningRegressor(ModelMixin, ConfigMixin):
    """Log-mel features ``(T, n_mels * sub_frames)`` (``pipeline.audio.LogMelFeatures``) to the mouth opening
    ``(T,)`` above rest, in inter-ocular units, never below 0.

    Parameters:
        n_mels (`int`): mel bands per sub-frame of the features.
        sub_frames (`int`): sub-frames per video frame in the features (averaged here).
        context (`int`): video frames seen on each side of the predicted one.
    """

    @register_to_config
    def __init__(self, n_mels: int = 80, sub_frames: int = 4, context: int = 5) -> None:
        super().__init__()
        self.filter = nn.Conv1d(n_mels, 1, kernel_size=2 * context + 1)

    @property
    def feature_dim(self) -> int:
        return self.config.n_mels * self.config.sub_frames

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        """``features`` ``(T, D)`` or ``(B, T, D)`` with ``D = n_mels * sub_frames``; returns ``(T,)`` or
        ``(B, T)``. The first and last frames are repeated to give the edge frames their context."""
        single = features.dim() == 2
        x = features[None] if single else features  # (B, T, D)
        assert x.shape[-1] == self.feature_dim, f"expected {self.feature_dim} features a frame, got {x.shape[-1]}"
        bands = x.reshape(*x.shape[:2], self.config.sub_frames, self.config.n_mels).mean(dim=2)  # (B, T, n_mels)
        padded = F.pad(bands.transpose(1, 2), (self.config.context,) * 2, mode="replicate")  # (B, n_mels, T + 2c)
        opening = self.filter(padded)[:, 0].clamp(min=0.0)  # (B, T)
        return opening[0] if single else opening

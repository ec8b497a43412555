"""A deterministic mouth-opening regressor: speech to how far the lips part, frame by frame.

The landmark diffusion model samples lip motion; with the few real talking faces we train on, one sample follows a
new voice less closely than the conditional mean does (sampling noise and the synthetic voices it also learns from
blur which sound opens the mouth). This model is that conditional mean for one number per frame, the inner-lip
opening in inter-ocular units above the face at rest: a linear filter over the speech features of the surrounding
frames (``2 * context + 1`` video frames), fitted by ridge regression on real talking clips
(``training/train_mouth_regressor.py``) and scaled so its spread matches the real mouths', then smoothed over time
(lips move slower than a per-frame linear filter jitters), and lowered by a small dead zone so that lips it brings
within that distance of touching touch (a conditional mean seldom reaches a full closure: the 40-100 ms of an m, b or
p come out as a shallow dip). A second linear filter over the same features, fitted by logistic regression on the
frames where the real lips touch, gives the chance that they touch; the opening is lowered by ``closure_depth`` times
that chance, so the lips shut where the voice says they do (the closure of a stop, the hum of an m) rather than only
where the mean happens to dip. The pipeline mixes it
with the sampled mouth (:func:`pipeline.landmarks.blend_mouth_opening`), as SadTalker keeps a deterministic lip
network beside a sampled pose.

Its features are either the log-mel bands (:class:`pipeline.audio.LogMelFeatures`) or, when ``speech_encoder`` is
set, the hidden states of a pretrained Whisper encoder that the model carries (the first layers of OpenAI's
whisper-tiny.en in the shipped checkpoint; ``training/convert_whisper_encoder.py``). Whisper learned from 680,000 hours
of speech what sounds are being made, whoever makes them, which our few hundred seconds of real faces cannot teach a
filter over the spectrum; LatentSync and MuseTalk drive lips from the same encoder.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from diffusers import ModelMixin
from diffusers.configuration_utils import ConfigMixin, register_to_config
from torch import nn

from ..audio import SAMPLE_RATE, LogMelFeatures, _interpolate_rows, _video_frame_count

#: Seconds of audio the Whisper encoder sees at once (its 1500 positions at 50 per second).
WHISPER_WINDOW_SECONDS = 30
#: Whisper encoder positions per second (one per two 10 ms mel frames).
WHISPER_POSITIONS_PER_SECOND = 50


class MouthOpeningRegressor(ModelMixin, ConfigMixin):
    """Speech features ``(T, in_channels * sub_frames)`` to the mouth opening ``(T,)`` above rest, in inter-ocular
    units, never below 0. :meth:`features` makes those features from 16 kHz samples.

    Parameters:
        in_channels (`int`): features per sub-frame (80 log-mel bands, or the concatenated encoder hidden states).
        sub_frames (`int`): sub-frames per video frame in the features (averaged here): log-mel slices, or Whisper
            positions evenly spaced across the frame.
        context (`int`): video frames seen on each side of the predicted one.
        smoothing (`float`): standard deviation, in video frames, of the Gaussian that smooths the opening over time
            (0: none).
        dead_zone (`float`): inter-ocular units taken off the smoothed opening before it is kept at 0 or above, so
            openings that small shut the lips (0: none).
        closure_depth (`float`): inter-ocular units taken off the opening where the closure filter is sure that the
            lips touch, in proportion to its (smoothed) probability (0: no closure filter).
        speech_encoder (`dict`, *optional*): the ``transformers.WhisperConfig`` arguments of the Whisper encoder whose
            hidden states after each layer, concatenated, are the features; without it they are the log-mel bands.
    """

    @register_to_config
    def __init__(self, in_channels: int = 80, sub_frames: int = 4, context: int = 5,
                 speech_encoder: dict[str, Any] | None = None, smoothing: float = 0.0, dead_zone: float = 0.0,
                 closure_depth: float = 0.0) -> None:
        super().__init__()
        if smoothing < 0:
            raise ValueError(f"smoothing must be >= 0 frames, not {smoothing}")
        if dead_zone < 0:
            raise ValueError(f"dead_zone must be >= 0 inter-ocular units, not {dead_zone}")
        if closure_depth < 0:
            raise ValueError(f"closure_depth must be >= 0 inter-ocular units, not {closure_depth}")
        self.filter = nn.Conv1d(in_channels, 1, kernel_size=2 * context + 1)
        # the logit of "the lips touch" over the same taps (only with a closure depth: older checkpoints have none)
        self.closure_filter = nn.Conv1d(in_channels, 1, kernel_size=2 * context + 1) if closure_depth else None
        self.encoder = None
        if speech_encoder is not None:
            from transformers import WhisperConfig
            from transformers.models.whisper.modeling_whisper import WhisperEncoder

            encoder_config = WhisperConfig(**speech_encoder)
            if encoder_config.encoder_layers * encoder_config.d_model != in_channels:
                raise ValueError(f"A {encoder_config.encoder_layers}-layer encoder of width {encoder_config.d_model} "
                                 f"gives {encoder_config.encoder_layers * encoder_config.d_model} features a "
                                 f"position, not in_channels = {in_channels}.")
            self.encoder = WhisperEncoder(encoder_config)
        self._whisper_mel = None  # the encoder's feature extractor, made on first use

    @property
    def feature_dim(self) -> int:
        return self.config.in_channels * self.config.sub_frames

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        """``features`` ``(T, D)`` or ``(B, T, D)`` with ``D = in_channels * sub_frames``; returns ``(T,)`` or
        ``(B, T)``. The first and last frames are repeated to give the edge frames their context."""
        single = features.dim() == 2
        x = features[None] if single else features  # (B, T, D)
        assert x.shape[-1] == self.feature_dim, f"expected {self.feature_dim} features a frame, got {x.shape[-1]}"
        bands = x.reshape(*x.shape[:2], self.config.sub_frames, self.config.in_channels).mean(dim=2)  # (B, T, C)
        padded = F.pad(bands.transpose(1, 2), (self.config.context,) * 2, mode="replicate")  # (B, C, T + 2c)
        opening = self.smooth(self.filter(padded)[:, 0]) - self.config.dead_zone  # (B, T)
        if self.closure_filter is not None:
            opening = opening - self.config.closure_depth * self.smooth(self.closure_filter(padded)[:, 0].sigmoid())
        opening = opening.clamp(min=0.0)
        return opening[0] if single else opening

    def smooth(self, opening: torch.Tensor) -> torch.Tensor:
        """``opening`` ``(B, T)`` convolved over time with the config's Gaussian (edge frames repeated)."""
        sigma = self.config.smoothing
        if not sigma:
            return opening
        radius = max(1, round(3 * sigma))
        taps = torch.arange(-radius, radius + 1, dtype=opening.dtype, device=opening.device)
        kernel = torch.exp(-0.5 * (taps / sigma) ** 2)
        padded = F.pad(opening[:, None], (radius, radius), mode="replicate")
        return F.conv1d(padded, (kernel / kernel.sum())[None, None])[:, 0]

    def predict(self, samples: np.ndarray, fps: float) -> np.ndarray:
        """The mouth opening ``(T,)`` for 16 kHz mono ``samples``, one value per video frame at ``fps``."""
        with torch.inference_mode():
            values = torch.from_numpy(self.features(samples, fps)).to(self.device, self.dtype)
            return self(values).float().cpu().numpy()

    def features(self, samples: np.ndarray, fps: float) -> np.ndarray:
        """The model's input features ``(num_video_frames(len(samples), fps), feature_dim)`` for 16 kHz samples."""
        samples = np.asarray(samples, dtype=np.float32)
        if self.encoder is None:
            return LogMelFeatures()(samples, fps)
        frames = _video_frame_count(samples, fps)
        hidden = self._encode(samples)  # (P, D) at WHISPER_POSITIONS_PER_SECOND, position p centred at p / 50 s
        subs = self.config.sub_frames
        rows = np.concatenate([_interpolate_rows(hidden, (np.arange(frames) + (j + 0.5) / subs) / fps
                                                 * WHISPER_POSITIONS_PER_SECOND) for j in range(subs)], axis=1)
        return (rows - rows.mean(axis=0)).astype(np.float32)  # centred over the recording, as log-mel is normalised

    def _encode(self, samples: np.ndarray) -> np.ndarray:
        """The encoder's hidden states after each layer, concatenated ``(P, D)``, over 30 s windows (each padded to
        30 s, as Whisper was trained; a window sees no audio of its neighbours)."""
        window = WHISPER_WINDOW_SECONDS * SAMPLE_RATE
        extractor = self._whisper_log_mel()
        pieces = []
        for start in range(0, len(samples), window):
            chunk = samples[start:start + window]
            mel = extractor(chunk, sampling_rate=SAMPLE_RATE, return_tensors="pt").input_features
            with torch.inference_mode():
                states = self.encoder(mel.to(self.device, self.dtype), output_hidden_states=True).hidden_states
            positions = -(-len(chunk) * WHISPER_POSITIONS_PER_SECOND // SAMPLE_RATE)
            pieces.append(torch.cat(states[1:], dim=-1)[0, :positions].float().cpu().numpy())
        return np.concatenate(pieces)

    def _whisper_log_mel(self):
        """transformers' Whisper feature extractor for this encoder (log-mel as Whisper computes it, padded to 30 s)."""
        if self._whisper_mel is None:
            from transformers import WhisperFeatureExtractor

            self._whisper_mel = WhisperFeatureExtractor(feature_size=self.encoder.config.num_mel_bins)
        return self._whisper_mel

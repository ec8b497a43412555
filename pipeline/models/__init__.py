"""Learned models of the pipeline (diffusers `ModelMixin`/`ConfigMixin` classes)."""

from .landmark_denoiser import LandmarkDenoiser, LandmarkDenoiserOutput

__all__ = ["LandmarkDenoiser", "LandmarkDenoiserOutput"]

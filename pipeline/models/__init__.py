"""Learned models of the pipeline (diffusers `ModelMixin`/`ConfigMixin` classes)."""

from .landmark_denoiser import LandmarkDenoiser, LandmarkDenoiserOutput
from .mouth_regressor import MouthOpeningRegressor

__all__ = ["LandmarkDenoiser", "LandmarkDenoiserOutput", "MouthOpeningRegressor"]

"""Talking-face generation: ``TalkingFacePipeline`` and its stages.

Heavy modules (torch, diffusers) load only when their names are first used, so ``python -m pipeline extract``
and the front ends stay quick to start.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "TalkingFacePipeline": "pipeline.pipeline_talking_face",
    "TalkingFacePipelineOutput": "pipeline.pipeline_talking_face",
    "TalkingFaceInputs": "pipeline.pipeline_talking_face",
    "LandmarkDenoiser": "pipeline.models.landmark_denoiser",
    "MouthOpeningRegressor": "pipeline.models.mouth_regressor",
    "LandmarkTrack": "pipeline.landmarks",
    "InputError": "pipeline.errors",
}

__all__ = list(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'pipeline' has no attribute {name!r}")

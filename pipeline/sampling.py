"""What every sampling loop here shares with diffusers' pipelines."""

from __future__ import annotations

import inspect
from typing import Any

import torch


def extra_step_kwargs(scheduler: Any, generator: torch.Generator | None, eta: float = 0.0) -> dict[str, Any]:
    """The keyword arguments of ``scheduler.step`` beyond the model output, timestep and sample that this scheduler
    accepts (``generator`` for stochastic samplers, ``eta`` for DDIM), as diffusers' ``prepare_extra_step_kwargs``
    does: schedulers differ (UniPC's ``step`` takes neither)."""
    accepted = inspect.signature(scheduler.step).parameters
    extra: dict[str, Any] = {}
    if "generator" in accepted:
        extra["generator"] = generator
    if "eta" in accepted:
        extra["eta"] = eta
    return extra

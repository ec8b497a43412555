"""Running as one of several processes (``accelerate launch``, ``torchrun``)."""

from __future__ import annotations

import os


def launched_on_cpu() -> bool:
    """Whether this process is one of several started by a launcher on a host without CUDA.

    accelerate joins such processes into one group (gloo) only when asked for the CPU (``cpu=True``); otherwise each
    one would run alone and repeat the others' work. ``accelerate launch --cpu`` itself starts a single process
    (several need MPI), so on CPUs several processes come from ``accelerate launch --multi_gpu --num_processes N`` or
    ``torchrun --nproc_per_node N``, which set ``WORLD_SIZE``.
    """
    import torch

    return int(os.environ.get("WORLD_SIZE", "1")) > 1 and not torch.cuda.is_available()

"""How many intra-op threads each stage uses: torch for the face front end, the landmark model, the mouth regressor's
speech encoder and the diffusion renderer; OpenCV for the warp renderer.

The policy is measured, not guessed: ``python bench/threads.py`` times every stage on 1 and 2 threads on the
reference host (2 cores), idle and with another job keeping one core busy, and picks per stage the count whose
worst case is lowest (README, "Speed and memory"). ``"all"`` means every core of the host. Overrides, for every
stage: ``TALKING_FACE_THREADS=N``, else ``OMP_NUM_THREADS`` when it is set, or the command line's ``--threads N``
(which sets ``TALKING_FACE_THREADS``).
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator

#: Environment variable that fixes the thread count of every stage.
THREADS_ENV = "TALKING_FACE_THREADS"
#: Threads per stage (an int, or "all" for every core), from bench/threads.py on the reference host.
POLICY: dict[str, int | str] = {"face": 1, "landmarks": 1, "speech": "all", "warp": "all", "diffusion": 1}


def threads_for(stage: str) -> int:
    """The thread count for ``stage`` on this host (see the module docstring)."""
    override = os.environ.get(THREADS_ENV) or os.environ.get("OMP_NUM_THREADS")
    if override:
        return max(1, int(override))
    cores = os.cpu_count() or 1
    wanted = POLICY[stage]
    return cores if wanted == "all" else max(1, min(int(wanted), cores))


@contextlib.contextmanager
def use_threads(count: int) -> Iterator[None]:
    """torch and OpenCV run on ``count`` intra-op threads inside the block (process-wide settings, restored after)."""
    import cv2
    import torch

    before = torch.get_num_threads(), cv2.getNumThreads()
    torch.set_num_threads(count)
    cv2.setNumThreads(count)
    try:
        yield
    finally:
        torch.set_num_threads(before[0])
        cv2.setNumThreads(before[1])


def stage_threads(stage: str) -> contextlib.AbstractContextManager[None]:
    """``with stage_threads("landmarks"): ...`` runs the block on that stage's threads."""
    return use_threads(threads_for(stage))

"""Stream rendered frames into an mp4, chunk by chunk, so memory stays flat for any length."""

from __future__ import annotations

import os
from typing import Callable, Optional, Union

import numpy as np

from ..video import Mp4Writer

#: Frames rendered and encoded per chunk.
CHUNK_FRAMES = 64


def render_to_mp4(
    renderer,
    context,
    frames: np.ndarray,
    output: Union[str, os.PathLike],
    fps: float,
    audio: Optional[np.ndarray] = None,
    chunk_frames: int = CHUNK_FRAMES,
    progress: Optional[Callable[[int, int], None]] = None,
) -> int:
    """Render landmark ``frames`` (T, 68, 2) with ``renderer`` and encode them; returns frames written.

    ``progress(done, total)`` is called after each chunk.
    """
    total = len(frames)
    with Mp4Writer(output, fps=fps, audio=audio) as writer:
        for start in range(0, total, chunk_frames):
            writer.write(renderer.render(context, frames[start : start + chunk_frames]))
            if progress is not None:
                progress(min(start + chunk_frames, total), total)
        return writer.frames_written

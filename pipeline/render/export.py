"""Stream rendered frames into an mp4, chunk by chunk, so memory stays flat for any length."""

from __future__ import annotations

import os
from collections.abc import Iterator

import numpy as np

from ..video import Mp4Writer

#: Frames rendered and encoded per chunk.
CHUNK_FRAMES = 64


def iter_render_to_mp4(
    renderer,
    context,
    frames: np.ndarray,
    output: str | os.PathLike,
    fps: float,
    audio: np.ndarray | None = None,
    chunk_frames: int = CHUNK_FRAMES,
) -> Iterator[int]:
    """Render landmark ``frames`` (T, 68, 2) with ``renderer`` into the mp4 ``output``, yielding the number of
    frames written after each chunk. The file appears, complete, once the iterator is exhausted; closing it earlier
    (or an error) stops the work at the next chunk boundary and leaves ``output`` as it was (:class:`Mp4Writer`)."""
    with Mp4Writer(output, fps=fps, audio=audio) as writer:
        for start in range(0, len(frames), chunk_frames):
            writer.write(renderer.render(context, frames[start : start + chunk_frames]))
            yield writer.frames_written


def render_to_mp4(
    renderer,
    context,
    frames: np.ndarray,
    output: str | os.PathLike,
    fps: float,
    audio: np.ndarray | None = None,
    chunk_frames: int = CHUNK_FRAMES,
) -> int:
    """:func:`iter_render_to_mp4` run to the end; returns the frames written."""
    return max(iter_render_to_mp4(renderer, context, frames, output, fps, audio, chunk_frames), default=0)

"""Stream rendered frames into an mp4, chunk by chunk, so memory stays flat for any length."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from ..audio import SAMPLE_RATE
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
    segments: str | os.PathLike | None = None,
) -> Iterator[tuple[int, Path | None]]:
    """Render landmark ``frames`` (T, 68, 2) with ``renderer`` into the mp4 ``output``, yielding the number of
    frames written after each chunk, and the chunk's own segment: with a ``segments`` folder, each chunk also goes
    there as a short playable mp4 with its slice of the speech (``segment-0000.mp4``, ...: live playback while the
    rest renders), else ``None``. The file appears, complete, once the iterator is exhausted; closing it earlier (or
    an error) stops the work at the next chunk boundary and leaves ``output`` as it was (:class:`Mp4Writer`)."""
    if segments is not None:
        Path(segments).mkdir(parents=True, exist_ok=True)
    with Mp4Writer(output, fps=fps, audio=audio) as writer:
        for index, start in enumerate(range(0, len(frames), chunk_frames)):
            video = renderer.render(context, frames[start : start + chunk_frames])
            writer.write(video)
            segment = None
            if segments is not None:
                segment = Path(segments) / f"segment-{index:04d}.mp4"
                write_segment(segment, video, fps, audio, start, last=start + len(video) >= len(frames))
            yield writer.frames_written, segment


def write_segment(path: Path, video: np.ndarray, fps: float, audio: np.ndarray | None, start: int,
                  last: bool = False) -> Path:
    """``video`` (the frames from frame ``start`` on) as an mp4 of its own with the speech it covers (the last
    segment takes the speech to its end)."""
    speech = None
    if audio is not None:
        first = round(start / fps * SAMPLE_RATE)
        end = len(audio) if last else round((start + len(video)) / fps * SAMPLE_RATE)
        speech = audio[first:end] if end > first else None
    with Mp4Writer(path, fps=fps, audio=speech, sample_rate=SAMPLE_RATE) as writer:
        writer.write(video)
    return path


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
    return max((done for done, _ in iter_render_to_mp4(renderer, context, frames, output, fps, audio,
                                                      chunk_frames)), default=0)

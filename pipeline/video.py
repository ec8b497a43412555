"""Video in and out through the ffmpeg binary that imageio-ffmpeg bundles (no system ffmpeg needed).

* :func:`iter_video_frames` / :func:`video_fps` read any video ffmpeg understands.
* :class:`Mp4Writer` streams frames into a browser-playable H.264 (yuv420p) mp4 with the speech
  muxed as AAC; frames are written as they come, so memory does not grow with length.
* :func:`extract_track` turns a talking-face video into a :class:`LandmarkTrack`.
"""

from __future__ import annotations

import logging
import math
import os
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .canonical import pose_from_transform
from .errors import InputError, NoFaceError
from .landmarks import LandmarkTrack, face_points, rest_frame
from .outputs import partial_path
from .threads import stage_threads

logger = logging.getLogger(__name__)

PathLike = str | os.PathLike


def _reader(path: PathLike):
    import imageio_ffmpeg

    path = Path(path)
    if not path.is_file():
        raise InputError(f"Video file '{path.name}' does not exist.")
    gen = imageio_ffmpeg.read_frames(str(path), pix_fmt="rgb24")
    try:
        meta = next(gen)
    except (RuntimeError, OSError, StopIteration):
        raise InputError(f"'{path.name}' is not a video we can read.") from None
    return gen, meta


def video_fps(path: PathLike) -> float:
    """The frame rate a video declares."""
    gen, meta = _reader(path)
    gen.close()
    return float(meta["fps"])


def iter_video_frames(path: PathLike) -> Iterator[np.ndarray]:
    """Yield each frame of a video as ``(H, W, 3)`` uint8 RGB."""
    gen, meta = _reader(path)
    w, h = meta["size"]
    try:
        for buf in gen:
            yield np.frombuffer(buf, dtype=np.uint8).reshape(h, w, 3)
    finally:
        gen.close()


class Mp4Writer:
    """Write RGB frames to an H.264 mp4, optionally with audio (AAC), in a streaming fashion.

    Use as a context manager::

        with Mp4Writer("out.mp4", fps=25, audio=samples) as writer:
            for chunk in chunks:
                writer.write(chunk)      # (N, H, W, 3) uint8

    The video is encoded into a hidden temporary file beside ``path`` and renamed to ``path`` only when the block
    ends without an error, so ``path`` is either the complete new video or whatever was there before (an error, an
    interruption or :meth:`abort` deletes the temporary file).
    """

    def __init__(
        self,
        path: PathLike,
        fps: float,
        audio: np.ndarray | None = None,
        sample_rate: int = 16000,
        quality: int = 20,
    ) -> None:
        self.path = Path(path)
        self.fps = fps
        self.audio = audio
        self.sample_rate = sample_rate
        self.crf = quality
        self._gen = None
        self._size: tuple[int, int] | None = None
        self._tmpdir: tempfile.TemporaryDirectory | None = None
        self._partial: Path | None = None
        self.frames_written = 0

    def __enter__(self) -> Mp4Writer:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()

    def _start(self, width: int, height: int) -> None:
        import imageio_ffmpeg

        audio_path = None
        if self.audio is not None:
            from .audio import write_wav

            self._tmpdir = tempfile.TemporaryDirectory(prefix="talking-face-")
            audio_path = str(Path(self._tmpdir.name) / "speech.wav")
            write_wav(audio_path, self.audio, self.sample_rate)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._partial = partial_path(self.path)  # ffmpeg creates it, with the usual permissions
        self._gen = imageio_ffmpeg.write_frames(
            str(self._partial),
            (width, height),
            fps=self.fps,
            codec="libx264",
            pix_fmt_out="yuv420p",
            macro_block_size=2,
            quality=None,
            output_params=["-crf", str(self.crf), "-preset", "veryfast", "-movflags", "+faststart"]
            + (["-ar", "44100", "-b:a", "128k"] if audio_path else []),
            audio_path=audio_path,
            audio_codec="aac" if audio_path else None,
            ffmpeg_log_level="error",
        )
        self._gen.send(None)
        self._size = (width, height)

    def write(self, frames: np.ndarray) -> None:
        """Append ``(N, H, W, 3)`` or one ``(H, W, 3)`` uint8 RGB frame(s)."""
        frames = np.asarray(frames, dtype=np.uint8)
        if frames.ndim == 3:
            frames = frames[None]
        height, width = frames.shape[1:3]
        if self._gen is None:
            self._start(width - width % 2, height - height % 2)
        w, h = self._size  # type: ignore[misc]
        for frame in frames:
            self._gen.send(np.ascontiguousarray(frame[:h, :w]))  # type: ignore[union-attr]
        self.frames_written += len(frames)

    def close(self) -> None:
        """Finish the video and move it to ``path``."""
        try:
            if self._gen is not None:
                self._gen.close()
                self._gen = None
            if self._partial is not None:
                os.replace(self._partial, self.path)
                self._partial = None
        finally:
            self.abort()

    def abort(self) -> None:
        """Stop encoding and delete the unfinished video; ``path`` is left as it was."""
        if self._gen is not None:
            try:
                self._gen.close()
            except Exception:  # noqa: BLE001 - the encoder's own failure is not the error being reported
                pass
            self._gen = None
        if self._partial is not None:
            self._partial.unlink(missing_ok=True)
            self._partial = None
        if self._tmpdir is not None:
            self._tmpdir.cleanup()
            self._tmpdir = None


def probe_duration(path: PathLike) -> tuple[int, float]:
    """Number of frames and duration in seconds that ffmpeg counts in a video (decodes it)."""
    import imageio_ffmpeg

    return imageio_ffmpeg.count_frames_and_secs(str(path))


@dataclass
class ExtractionReport:
    """What :func:`extract_track` could not see."""

    missing_frames: list[int] = field(default_factory=list)
    num_frames: int = 0

    def summary(self) -> str:
        if not self.missing_frames:
            return f"Face found in all {self.num_frames} frames."
        shown = ", ".join(map(str, self.missing_frames[:10])) + (" ..." if len(self.missing_frames) > 10 else "")
        return (
            f"No face in {len(self.missing_frames)} of {self.num_frames} frames ({shown}); "
            "their landmarks were filled in from the neighbouring frames."
        )


def extract_track(
    video: PathLike,
    analyzer=None,
    smoothing: float = 0.7,
    progress: Callable[[int], None] | None = None,
    max_seconds: float | None = None,
) -> tuple[LandmarkTrack, ExtractionReport]:
    """Detect 68 landmarks (in 3D: :func:`~pipeline.landmarks.face_points`) on every frame of a talking-face video
    (the frames of its first ``max_seconds`` when given, whatever its frame rate).

    The face is tracked from frame to frame (:meth:`~pipeline.face.FaceAnalyzer.tracker`). Frames without a face
    are filled by linear interpolation from their neighbours and listed in the report; detector jitter is reduced
    by a light temporal Gaussian (``smoothing`` frames sigma). The track's ``reference`` is the video's rest face
    (:func:`~pipeline.landmarks.rest_frame`: a typical head pose with the mouth closed), from which retargeting
    reads expression and head motion.
    """
    from .edits import smooth
    from .face import FaceAnalyzer

    analyzer = analyzer or FaceAnalyzer()
    fps = video_fps(video)
    max_frames = None if max_seconds is None else max(1, math.ceil(max_seconds * fps))
    points: list[np.ndarray | None] = []
    size = (0, 0)
    tracker = analyzer.tracker()
    with stage_threads("face"):
        for i, frame in enumerate(iter_video_frames(video)):
            if max_frames is not None and i >= max_frames:
                break
            size = (frame.shape[1], frame.shape[0])
            detection = tracker.update(frame)
            points.append(None if detection is None else face_points(detection))
            if progress is not None:
                progress(i)
    report = ExtractionReport([i for i, p in enumerate(points) if p is None], len(points))
    if not points:
        raise InputError(f"'{Path(video).name}' contains no frames.")
    if len(report.missing_frames) == len(points):
        raise NoFaceError(f"No face was found in any frame of '{Path(video).name}'.")
    frames = _fill_missing(points)
    track = LandmarkTrack(frames, fps, size, info={"source": "extracted", "missing_frames": report.missing_frames})
    if smoothing > 0:
        track = smooth(track, smoothing)
    canonical, to_canonical = track.canonical()
    rest = rest_frame(canonical, pose_from_transform(to_canonical))
    track = LandmarkTrack(track.frames, fps, size, track.frames[rest], {**track.info, "rest_frame": rest})
    return track, report


def _fill_missing(points: list[np.ndarray | None]) -> np.ndarray:
    """Linear interpolation over time for frames with no detection (nearest at the ends)."""
    known = np.array([i for i, p in enumerate(points) if p is not None])
    values = np.stack([points[i] for i in known]).reshape(len(known), -1)
    t = np.arange(len(points))
    filled = np.stack([np.interp(t, known, values[:, k]) for k in range(values.shape[1])], axis=1)
    return filled.reshape(len(points), -1, 3).astype(np.float32)

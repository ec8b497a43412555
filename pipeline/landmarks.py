"""The landmark track: the plain, editable intermediate between audio and video.

A track is ``T`` frames of 68 ``(x, y)`` points in the pixel space of the image it belongs to, plus the
frame rate and that image's size. It is saved as JSON::

    {"format": "talking-face-landmarks", "version": 1, "fps": 25, "image_size": [W, H],
     "frames": [[[x, y], ... 68 points], ... T frames],
     "reference": [[x, y], ... 68 points],   # optional: the face's neutral landmarks
     "info": {...}}                           # optional: free-form provenance

Loading validates everything and raises :class:`TrackError` with a readable reason.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional, Union

import numpy as np

from .canonical import apply_transform, inter_ocular, invert_transform, to_canonical
from .errors import TrackError
from .regions import NUM_POINTS

FORMAT = "talking-face-landmarks"
VERSION = 1
#: Largest landmark file we read (bytes): about an hour of frames at 25 fps.
MAX_TRACK_BYTES = int(os.environ.get("TALKING_FACE_MAX_TRACK_BYTES", 64 * 1024 * 1024))
MAX_FRAMES = 25 * 3600
MAX_IMAGE_SIDE = 20000
#: Points may lie this far outside the image (as a fraction of its size) before a file is refused.
OUTSIDE_MARGIN = 0.5


@dataclass
class LandmarkTrack:
    """``frames``: ``(T, 68, 2)`` float32 pixel coordinates; ``image_size``: ``(W, H)``."""

    frames: np.ndarray
    fps: float
    image_size: tuple[int, int]
    reference: Optional[np.ndarray] = None
    info: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.frames = np.asarray(self.frames, dtype=np.float32)
        assert self.frames.ndim == 3 and self.frames.shape[1:] == (NUM_POINTS, 2), (
            f"frames must be (T, 68, 2), got {self.frames.shape}"
        )
        if self.reference is not None:
            self.reference = np.asarray(self.reference, dtype=np.float32)
            assert self.reference.shape == (NUM_POINTS, 2), f"reference must be (68, 2), got {self.reference.shape}"
        self.image_size = (int(self.image_size[0]), int(self.image_size[1]))
        self.fps = float(self.fps)

    @property
    def num_frames(self) -> int:
        return int(self.frames.shape[0])

    @property
    def duration(self) -> float:
        return self.num_frames / self.fps

    @property
    def neutral(self) -> np.ndarray:
        """The face's rest pose: ``reference`` when known, else the first frame."""
        return self.reference if self.reference is not None else self.frames[0]

    def replace(self, frames: np.ndarray, **info: Any) -> "LandmarkTrack":
        """A copy with new frames (same fps, size and reference); ``info`` entries are merged in."""
        return LandmarkTrack(frames, self.fps, self.image_size, self.reference, {**self.info, **info})

    # --- canonical space ---------------------------------------------------------------------
    def canonical(self) -> tuple[np.ndarray, np.ndarray]:
        """Per-frame canonical points ``(T, 68, 2)`` and pixel-to-canonical transforms ``(T, 2, 3)``."""
        return to_canonical(self.frames)

    # --- JSON ----------------------------------------------------------------------------------
    def to_dict(self, decimals: int = 2) -> dict[str, Any]:
        data: dict[str, Any] = {
            "format": FORMAT,
            "version": VERSION,
            "fps": self.fps,
            "image_size": list(self.image_size),
            "frames": np.round(self.frames.astype(np.float64), decimals).tolist(),
        }
        if self.reference is not None:
            data["reference"] = np.round(self.reference.astype(np.float64), decimals).tolist()
        if self.info:
            data["info"] = self.info
        return data

    def save(self, path: Union[str, os.PathLike]) -> Path:
        path = Path(path)
        path.write_text(json.dumps(self.to_dict(), separators=(",", ":")))
        return path

    @classmethod
    def load(cls, source: Union[str, os.PathLike, bytes]) -> "LandmarkTrack":
        """Read and validate a track from a JSON file path or JSON bytes."""
        if isinstance(source, bytes):
            raw = source
            name = "landmark file"
        else:
            path = Path(source)
            name = f"landmark file '{path.name}'"
            if not path.is_file():
                raise TrackError(f"The {name} does not exist.")
            if path.stat().st_size > MAX_TRACK_BYTES:
                raise TrackError(f"The {name} is larger than {MAX_TRACK_BYTES // 2**20} MB.")
            raw = path.read_bytes()
        if len(raw) > MAX_TRACK_BYTES:
            raise TrackError(f"The {name} is larger than {MAX_TRACK_BYTES // 2**20} MB.")
        try:
            data = json.loads(raw)
        except RecursionError:
            raise TrackError(f"The {name} is nested too deeply to be a landmark track.") from None
        except ValueError as exc:  # JSONDecodeError, bad UTF-8, integers of thousands of digits
            raise TrackError(f"The {name} is not valid JSON ({str(exc)[:200]}).") from None
        return cls.from_dict(data)

    @classmethod
    def from_dict(cls, data: Any) -> "LandmarkTrack":
        if not isinstance(data, dict):
            raise TrackError("A landmark track must be a JSON object with 'format', 'version', 'fps', 'image_size' and 'frames'.")
        if data.get("format") != FORMAT:
            raise TrackError(f"This is not a landmark track: 'format' must be \"{FORMAT}\".")
        if data.get("version") != VERSION:
            raise TrackError(
                f"Landmark track version {str(data.get('version'))[:20]} is not supported; this program reads version {VERSION}."
            )
        fps = data.get("fps")
        if isinstance(fps, bool) or not isinstance(fps, (int, float)) or not 1 <= fps <= 120 or not math.isfinite(fps):
            raise TrackError(f"'fps' must be a number between 1 and 120; got {str(fps)[:20]}.")
        size = data.get("image_size")
        if (
            not isinstance(size, list)
            or len(size) != 2
            or not all(isinstance(v, int) and not isinstance(v, bool) and 1 <= v <= MAX_IMAGE_SIDE for v in size)
        ):
            raise TrackError(f"'image_size' must be [width, height] in pixels (1 to {MAX_IMAGE_SIDE}); got {size!r}.")
        frames = _points_array(data.get("frames"), "frames", ndim=3)
        if not 1 <= frames.shape[0] <= MAX_FRAMES:
            raise TrackError(f"'frames' must hold between 1 and {MAX_FRAMES} frames; it holds {frames.shape[0]}.")
        reference = None
        if data.get("reference") is not None:
            reference = _points_array(data["reference"], "reference", ndim=2)
        for name, pts in (("frames", frames), ("reference", reference)):
            if pts is not None:
                _check_range(pts, size, name)
        info = data.get("info") if isinstance(data.get("info"), dict) else {}
        return cls(frames, float(fps), (size[0], size[1]), reference, info)


def _points_array(value: Any, name: str, ndim: int) -> np.ndarray:
    expected = "[[[x, y] x 68] per frame]" if ndim == 3 else "[[x, y] x 68]"
    if not isinstance(value, list):
        raise TrackError(f"'{name}' must be a list {expected}.")
    try:
        arr = np.array(value, dtype=np.float64)
    except (ValueError, TypeError, OverflowError):
        raise TrackError(f"'{name}' must be a regular list of numbers shaped {expected}.") from None
    if arr.ndim != ndim or arr.shape[-2:] != (NUM_POINTS, 2):
        raise TrackError(f"'{name}' has shape {list(arr.shape)}; expected {expected}.")
    if not np.isfinite(arr).all():
        raise TrackError(f"'{name}' contains NaN or infinite coordinates.")
    return arr


def _check_range(points: np.ndarray, size: list[int], name: str) -> None:
    w, h = size
    lo = np.array([-OUTSIDE_MARGIN * w, -OUTSIDE_MARGIN * h])
    hi = np.array([(1 + OUTSIDE_MARGIN) * w, (1 + OUTSIDE_MARGIN) * h])
    if (points < lo).any() or (points > hi).any():
        raise TrackError(f"'{name}' has points far outside the {w}x{h} image; is 'image_size' right?")


def retarget(track: LandmarkTrack, photo_landmarks: np.ndarray, photo_size: tuple[int, int],
             head_motion: float = 1.0) -> LandmarkTrack:
    """Transfer a track's motion onto another face.

    The driving track's expression (its canonical offsets from its own neutral face) is added to the
    photo's canonical face, and its head motion (relative to its neutral pose) is applied about the
    photo's pose, scaled by ``head_motion`` (0 keeps the photo's head still).
    """
    canon, to_canon = track.canonical()  # (T, 68, 2), (T, 2, 3)
    neutral_canon, neutral_to_canon = to_canonical(track.neutral)
    photo_canon, photo_to_canon = to_canonical(photo_landmarks)
    target_canon = photo_canon[None] + (canon - neutral_canon[None])
    # Head motion as a canonical-to-canonical map: pose at frame t, then read with the neutral pose.
    relative = _compose(neutral_to_canon[None], invert_transform(to_canon))  # (T, 2, 3)
    identity = np.array([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]])
    relative = identity + head_motion * (relative - identity)
    posed = apply_transform(invert_transform(photo_to_canon)[None], apply_transform(relative, target_canon))
    return LandmarkTrack(posed, track.fps, photo_size, np.asarray(photo_landmarks), {**track.info, "retargeted": True})


def _compose(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """2x3 transforms ``a∘b`` (apply ``b`` first), broadcasting over leading axes."""
    out = np.empty(np.broadcast_shapes(a.shape, b.shape))
    out[..., :2] = a[..., :2] @ b[..., :2]
    out[..., 2] = np.einsum("...ij,...j->...i", a[..., :2], b[..., 2]) + a[..., 2]
    return out


def belongs_to(track: LandmarkTrack, photo_landmarks: np.ndarray, photo_size: tuple[int, int],
               tolerance: float = 0.15) -> bool:
    """Whether a track was made for this photo's face: same image size and a neutral face within
    ``tolerance`` inter-ocular distances (mean point error) of the photo's landmarks."""
    if tuple(track.image_size) != tuple(photo_size):
        return False
    error = np.linalg.norm(track.neutral - photo_landmarks, axis=-1).mean()
    return bool(error <= tolerance * inter_ocular(photo_landmarks))

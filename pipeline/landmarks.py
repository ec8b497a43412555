"""The landmark track: the plain, editable intermediate between audio and video.

A track is ``T`` frames of 68 points in 3D: ``x, y`` in the pixel space of the image it belongs to, ``z`` in the
same pixel units, away from the camera; plus the frame rate and that image's size. It is saved as JSON::

    {"format": "talking-face-landmarks", "version": 2, "fps": 25, "image_size": [W, H],
     "frames": [[[x, y, z], ... 68 points], ... T frames],
     "pose": [[yaw, pitch, roll, tx, ty, scale], ... T frames],   # optional: each frame's head pose
     "reference": [[x, y, z], ... 68 points],   # optional: the face's neutral landmarks
     "info": {...}}                              # optional: free-form provenance

``pose`` is written from the frames (convention: :mod:`pipeline.canonical`). A reader that finds a frame's pose
changed re-poses that frame with it, keeping its expression, so a head pose can be edited as six numbers; without
``pose`` the frames alone count. Version 1 files (``[x, y]`` frames and reference, no pose) still load: their
points get the mean face's depth (:func:`~pipeline.canonical.lift_to_3d`). Loading validates everything and raises
:class:`TrackError` with a readable reason; saving always writes version 2.
"""

from __future__ import annotations

import itertools
import json
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from scipy.spatial.transform import Rotation

from .canonical import (
    apply_transform,
    from_canonical,
    inter_ocular,
    invert_transform,
    lift_to_3d,
    pose_from_transform,
    to_canonical,
    transform_from_pose,
)
from .errors import TrackError
from .regions import INNER_LIP_PAIRS, JAW, LOWER_FACE, NUM_POINTS

FORMAT = "talking-face-landmarks"
VERSION = 2
#: Versions this program reads (it writes :data:`VERSION`).
READABLE_VERSIONS = (1, 2)
#: Largest landmark file we read (bytes): about 25 minutes of frames at 25 fps.
MAX_TRACK_BYTES = int(os.environ.get("TALKING_FACE_MAX_TRACK_BYTES", 64 * 1024 * 1024))
MAX_FRAMES = 25 * 3600
MAX_IMAGE_SIDE = 20000
#: Points may lie this far outside the image (as a fraction of its size) before a file is refused.
OUTSIDE_MARGIN = 0.5
#: Depths (z) may reach this many times the image's larger side before a file is refused: a face's depths stay
#: within its own size, and this leaves room for 2D faces lifted with the mean face's depth that fill the margins.
DEPTH_RANGE = 4.0
#: A frame whose ``pose`` in the file moves some point by more than this (pixels) from where the frame has it is
#: re-posed with it (the pose written with a frame moves nothing).
POSE_TOLERANCE = 0.01
#: :func:`rest_frame` looks for the rest face among this share of the frames (those nearest the median head pose)...
REST_POSE_QUANTILE = 0.5
#: ...and prefers the first frame when its mouth is within this many inter-ocular distances of the most closed one.
FIRST_FRAME_TOLERANCE = 0.02
#: A face whose inner lips are further apart than this (inter-ocular distances) is brought to a closed mouth
#: (:func:`closed_mouth`) before it is animated. Faces at rest measure up to 0.022 (the portraits in
#: ../shared/data); the bundled astronaut, smiling with her teeth showing, 0.136.
OPEN_MOUTH = 0.03
#: How much of the jaw's drop each lower-lip point follows (the upper lip stays; the jaw line: :func:`opening_weights`).
LOWER_LIP_WEIGHTS = {55: 0.75, 56: 1.0, 57: 1.0, 58: 1.0, 59: 0.75, 65: 1.0, 66: 1.0, 67: 1.0,
                     48: 0.5, 54: 0.5, 60: 0.5, 64: 0.5}


@dataclass
class LandmarkTrack:
    """``frames``: ``(T, 68, 3)`` float32, ``x, y`` in image pixels and ``z`` in the same units away from the camera
    (``(T, 68, 2)`` is accepted and lifted to 3D); ``reference``: ``(68, 3)`` (or ``(68, 2)``) likewise;
    ``image_size``: ``(W, H)``."""

    frames: np.ndarray
    fps: float
    image_size: tuple[int, int]
    reference: np.ndarray | None = None
    info: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.frames = _as_3d(self.frames, 3, "frames must be (T, 68, 3) or (T, 68, 2)")
        if self.reference is not None:
            self.reference = _as_3d(self.reference, 2, "reference must be (68, 3) or (68, 2)")
        self.image_size = (int(self.image_size[0]), int(self.image_size[1]))
        self.fps = float(self.fps)

    @property
    def num_frames(self) -> int:
        return int(self.frames.shape[0])

    @property
    def duration(self) -> float:
        return self.num_frames / self.fps

    @property
    def points2d(self) -> np.ndarray:
        """The frames' image points ``(T, 68, 2)`` (a view of ``frames``)."""
        return self.frames[..., :2]

    @property
    def neutral(self) -> np.ndarray:
        """The face's rest pose ``(68, 3)``: ``reference`` when known, else the first frame."""
        return self.reference if self.reference is not None else self.frames[0]

    def replace(self, frames: np.ndarray, **info: Any) -> LandmarkTrack:
        """A copy with new frames (same fps, size and reference); ``info`` entries are merged in."""
        return LandmarkTrack(frames, self.fps, self.image_size, self.reference, {**self.info, **info})

    def at_fps(self, fps: float) -> LandmarkTrack:
        """The same motion at another frame rate (``self`` when it already has it): frame ``k`` is the track at
        time ``k / fps``, linearly interpolated between its two nearest frames (the last frame held at the end). A
        30 fps video's track drives a 25 fps render at the video's own speed."""
        if math.isclose(fps, self.fps):
            return self
        count = max(1, round(self.num_frames * fps / self.fps))
        times = np.minimum(np.arange(count) * self.fps / fps, self.num_frames - 1)
        low = np.floor(times).astype(int)
        high = np.minimum(low + 1, self.num_frames - 1)
        weight = (times - low)[:, None, None]
        frames = self.frames[low] * (1 - weight) + self.frames[high] * weight
        return LandmarkTrack(frames.astype(np.float32), fps, self.image_size, self.reference,
                             {**self.info, "resampled_from_fps": self.fps})

    # --- canonical space ---------------------------------------------------------------------
    def canonical(self) -> tuple[np.ndarray, np.ndarray]:
        """Per-frame canonical points ``(T, 68, 3)`` and pixel-to-canonical transforms ``(T, 3, 4)``."""
        return to_canonical(self.frames)

    @property
    def pose(self) -> np.ndarray:
        """Each frame's head pose ``(T, 6)``: ``[yaw, pitch, roll, tx, ty, scale]`` (see :mod:`pipeline.canonical`)."""
        return pose_from_transform(self.canonical()[1])

    # --- JSON ----------------------------------------------------------------------------------
    def to_dict(self, decimals: int = 2) -> dict[str, Any]:
        frames = np.round(self.frames.astype(np.float64), decimals)
        data: dict[str, Any] = {
            "format": FORMAT,
            "version": VERSION,
            "fps": self.fps,
            "image_size": list(self.image_size),
            "frames": frames.tolist(),
            # the pose of the frames as a reader gets them (rounded, float32), so that loading moves nothing
            "pose": pose_from_transform(to_canonical(frames.astype(np.float32))[1]).tolist(),
        }
        if self.reference is not None:
            data["reference"] = np.round(self.reference.astype(np.float64), decimals).tolist()
        if self.info:
            data["info"] = self.info
        return data

    def save(self, path: str | os.PathLike) -> Path:
        """Write the track as JSON, whole or not at all (an earlier file at ``path`` stays until the new one is
        complete)."""
        from .outputs import write_atomically

        return write_atomically(path, json.dumps(self.to_dict(), separators=(",", ":")).encode())

    @classmethod
    def load(cls, source: str | os.PathLike | bytes) -> LandmarkTrack:
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
    def from_dict(cls, data: Any) -> LandmarkTrack:
        if not isinstance(data, dict):
            raise TrackError("A landmark track must be a JSON object with 'format', 'version', 'fps', 'image_size' "
                             "and 'frames'.")
        if data.get("format") != FORMAT:
            raise TrackError(f"This is not a landmark track: 'format' must be \"{FORMAT}\".")
        version = data.get("version")
        if isinstance(version, bool) or version not in READABLE_VERSIONS:
            raise TrackError(
                f"Landmark track version {str(version)[:20]} is not supported; this program reads versions 1 and 2."
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
        dim = 2 if version == 1 else 3
        frames = _points_array(data.get("frames"), "frames", ndim=3, dim=dim)
        if not 1 <= frames.shape[0] <= MAX_FRAMES:
            raise TrackError(f"'frames' must hold between 1 and {MAX_FRAMES} frames; it holds {frames.shape[0]}.")
        reference = None
        if data.get("reference") is not None:
            reference = _points_array(data["reference"], "reference", ndim=2, dim=dim)
        for name, pts in (("frames", frames), ("reference", reference)):
            if pts is not None:
                _check_range(pts, size, name)
        if dim == 3 and data.get("pose") is not None:
            frames = _posed(frames.astype(np.float32), _pose_array(data["pose"], len(frames), size), size)
        info = data.get("info") if isinstance(data.get("info"), dict) else {}
        return cls(frames, float(fps), (size[0], size[1]), reference, info)


def _as_3d(points: Any, ndim: int, message: str) -> np.ndarray:
    """``points`` as float32 ``(..., 68, 3)``; ``(..., 68, 2)`` lifted to 3D."""
    points = np.asarray(points)
    assert points.ndim == ndim and points.shape[-2] == NUM_POINTS and points.shape[-1] in (2, 3), (
        f"{message}, got {points.shape}"
    )
    return np.asarray(lift_to_3d(points) if points.shape[-1] == 2 else points, dtype=np.float32)


def _numbers(value: Any, name: str, expected: str) -> np.ndarray:
    """A JSON list as a float array, or a :class:`TrackError` naming the key ``name`` and the ``expected`` shape."""
    if not isinstance(value, list):
        raise TrackError(f"'{name}' must be a list {expected}.")
    try:
        arr = np.array(value, dtype=np.float64)
    except (ValueError, TypeError, OverflowError):
        raise TrackError(f"'{name}' must be a regular list of numbers shaped {expected}.") from None
    leaves: Any = value
    for _ in range(arr.ndim - 1):  # the structure is regular (the array was built), so this reaches every number
        leaves = itertools.chain.from_iterable(leaves)
    if not set(map(type, leaves)) <= {int, float}:  # numpy would have read "1.5" and true as numbers
        raise TrackError(f"'{name}' must hold numbers only (no strings or true/false), shaped {expected}.")
    return arr


def _points_array(value: Any, name: str, ndim: int, dim: int) -> np.ndarray:
    point = "[x, y]" if dim == 2 else "[x, y, z]"
    expected = f"[[{point} x 68] per frame]" if ndim == 3 else f"[{point} x 68]"
    arr = _numbers(value, name, expected)
    if arr.ndim != ndim or arr.shape[-2:] != (NUM_POINTS, dim):
        raise TrackError(f"'{name}' has shape {list(arr.shape)}; expected {expected}.")
    if not np.isfinite(arr).all():
        raise TrackError(f"'{name}' contains NaN or infinite coordinates.")
    return arr


def _check_range(points: np.ndarray, size: list[int], name: str) -> None:
    """Points ``(..., 2|3)``: x, y within :data:`OUTSIDE_MARGIN` of the image, z within :data:`DEPTH_RANGE`."""
    w, h = size
    if not _inside(points[..., :2], size):
        raise TrackError(f"'{name}' has points far outside the {w}x{h} image; is 'image_size' right?")
    if points.shape[-1] == 3 and not (np.abs(points[..., 2]) <= DEPTH_RANGE * max(w, h)).all():
        raise TrackError(f"'{name}' has depths (z) far beyond the {w}x{h} image's size; z must be in pixels.")


def _inside(xy: np.ndarray, size: list[int]) -> bool:
    w, h = size
    lo = np.array([-OUTSIDE_MARGIN * w, -OUTSIDE_MARGIN * h])
    hi = np.array([(1 + OUTSIDE_MARGIN) * w, (1 + OUTSIDE_MARGIN) * h])
    return bool(((xy >= lo) & (xy <= hi)).all())  # NaN is not inside


def _pose_array(value: Any, num_frames: int, size: list[int]) -> np.ndarray:
    expected = f"[[yaw, pitch, roll, tx, ty, scale] per frame] for {num_frames} frames"
    pose = _numbers(value, "pose", expected)
    if pose.shape != (num_frames, 6):
        raise TrackError(f"'pose' has shape {list(pose.shape)}; expected {expected}.")
    if not np.isfinite(pose).all():
        raise TrackError("'pose' contains NaN or infinite numbers.")
    if (np.abs(pose[:, [0, 2]]) > 180).any() or (np.abs(pose[:, 1]) > 90).any():
        raise TrackError("'pose' angles are degrees: yaw and roll within -180..180, pitch within -90..90.")
    if (pose[:, 5] <= 0).any():
        raise TrackError("'pose' scale (pixels per canonical unit) must be positive.")
    if not _inside(pose[:, 3:5], size):
        raise TrackError(f"'pose' has (tx, ty) far outside the {size[0]}x{size[1]} image.")
    return pose


def _posed(frames: np.ndarray, pose: np.ndarray, size: list[int]) -> np.ndarray:
    """``frames`` with each frame whose pose differs from ``pose`` re-posed with it, its expression kept."""
    with np.errstate(all="ignore"):
        try:
            canon, to_canon = to_canonical(frames)
            depth = invert_transform(to_canon)[:, 2, 3]  # the pixel z of the canonical origin, which a pose lacks
            posed = from_canonical(canon, transform_from_pose(pose, depth))
        except np.linalg.LinAlgError:
            raise TrackError("'pose' cannot be applied to these frames.") from None
        edited = ~(np.abs(posed - frames).max(axis=(1, 2)) <= POSE_TOLERANCE)
    if not edited.any():
        return frames
    frames = frames.astype(np.float64)
    frames[edited] = posed[edited]
    if not (_inside(frames[..., :2], size) and (np.abs(frames[..., 2]) <= DEPTH_RANGE * max(size)).all()):
        raise TrackError(f"'pose' puts the face far outside the {size[0]}x{size[1]} image.")
    return frames


def face_points(detection: Any) -> np.ndarray:
    """A face detection's 68 points ``(68, 3)``: its 3D points when the front end measures them (``points3d``),
    else its 2D ``landmarks`` lifted to 3D."""
    points = getattr(detection, "points3d", None)
    return lift_to_3d(detection.landmarks) if points is None else np.asarray(points, dtype=np.float64)


def retarget(track: LandmarkTrack, photo_landmarks: np.ndarray, photo_size: tuple[int, int],
             head_motion: float = 1.0) -> LandmarkTrack:
    """Transfer a track's motion onto another face (``photo_landmarks``: ``(68, 3)``, or ``(68, 2)`` lifted).

    Expression, in the pose-free space: the driver's canonical offsets from its own neutral face, added to the
    photo's canonical face, both with the mouth closed (:func:`closed_mouth`: a photo's open mouth closes where the
    driver's mouth closes). Head motion, relative to the driver's rest pose: rotation ``R_t R_0ᵀ``, scale ratio
    ``s_t / s_0`` and translation ``(t_t - t_0) / s_0`` (in units of the driver's scale), applied about the photo's
    own pose (rotation ``R_t R_0ᵀ R_photo``, in the image's axes; translation times the photo's scale). They are
    scaled by ``head_motion``: the rotation's angle about its axis, the log of the scale ratio and the translation
    (0 keeps the photo's head still, 1 copies the driver's motion).
    """
    canon, to_canon = track.canonical()  # (T, 68, 3), (T, 3, 4)
    neutral_canon, neutral_to_canon = to_canonical(track.neutral)
    photo = np.asarray(photo_landmarks, dtype=np.float64)
    photo = lift_to_3d(photo) if photo.shape[-1] == 2 else photo
    photo_canon, photo_to_canon = to_canonical(photo)
    target_canon = closed_mouth(photo_canon)[None] + (canon - closed_mouth(neutral_canon)[None])
    drive, rest, still = (invert_transform(m) for m in (to_canon, neutral_to_canon, photo_to_canon))  # canon -> px
    drive_scale, rest_scale, photo_scale = (np.cbrt(np.linalg.det(m[..., :3])) for m in (drive, rest, still))
    turn = (drive[:, :, :3] / drive_scale[:, None, None]) @ (rest[:, :3] / rest_scale).T  # R_t R_0ᵀ, (T, 3, 3)
    turn = Rotation.from_rotvec(head_motion * Rotation.from_matrix(turn).as_rotvec()).as_matrix()
    posed = np.empty_like(drive)
    posed[:, :, :3] = ((drive_scale / rest_scale) ** head_motion)[:, None, None] * turn @ still[:, :3]
    posed[:, :, 3] = still[:, 3] + head_motion * photo_scale / rest_scale * (drive[:, :, 3] - rest[:, 3])
    frames = apply_transform(posed, target_canon)
    return LandmarkTrack(frames, track.fps, photo_size, photo, {**track.info, "retargeted": True})


def opening_weights(face: np.ndarray) -> np.ndarray:
    """``(68,)`` share of a jaw drop each point of the upright ``face`` (canonical, ``(68, 2|3)``) follows: lower lip 1
    (corners 0.5), upper lip 0, and the jaw line (a LOWER_FACE point) by its height between the mouth corners (0) and
    the chin (1)."""
    face = np.asarray(face, dtype=np.float64)
    weights = np.zeros(NUM_POINTS)
    for point, weight in LOWER_LIP_WEIGHTS.items():
        weights[point] = weight
    corner_y, chin_y = face[[48, 54], 1].mean(), face[8, 1]
    for point in set(JAW) & set(LOWER_FACE):
        weights[point] = np.clip((face[point, 1] - corner_y) / max(chin_y - corner_y, 1e-6), 0.0, 1.0)
    return weights


def closed_mouth(face: np.ndarray) -> np.ndarray:
    """The pose-free ``face`` (canonical, ``(68, 2|3)``) at rest with its mouth closed: the lower inner lip on the
    upper one, the lower lip and the jaw raised with it (:func:`opening_weights`), everything else as it is.

    Motion is generated and retargeted as offsets from a face at rest; a photo with an open mouth (most portraits
    that smile or speak, every first frame of a talking clip) would otherwise keep it open on every frame, the
    closed mouth out of reach. A face whose lips already meet (a gap under :data:`OPEN_MOUTH`) is returned as it
    is."""
    face = np.array(face, dtype=np.float64)
    gap = float(inner_lip_gap(face))
    if gap <= OPEN_MOUTH:
        return face
    face[:, 1] -= gap * opening_weights(face)
    for upper, lower in INNER_LIP_PAIRS:
        face[lower, 1] = face[upper, 1]
    return face


def inner_lip_gap(faces: np.ndarray) -> np.ndarray:
    """Signed inner-lip opening of upright faces ``(..., 68, 2|3)`` (canonical), ``(...)`` in their units."""
    faces = np.asarray(faces, dtype=np.float64)
    return np.mean([faces[..., lower, 1] - faces[..., upper, 1] for upper, lower in INNER_LIP_PAIRS], axis=0)


def blend_mouth_opening(motion: np.ndarray, neutral: np.ndarray, opening: np.ndarray, share: float) -> np.ndarray:
    """``motion`` (canonical offsets ``(T, 68, 2|3)`` from the upright ``neutral`` face) with its mouth opening moved
    ``share`` of the way to ``opening`` ``(T,)`` (inter-ocular units above ``neutral``'s): the lower lip and the jaw
    drop or rise by the difference, as :func:`opening_weights` shares a jaw drop out; lip shape, the upper face and
    the upper lip are kept. ``share`` 0 returns the motion unchanged, 1 gives the opening exactly."""
    motion = np.array(motion, dtype=np.float64)
    neutral = np.asarray(neutral, dtype=np.float64)
    if not 0.0 <= share <= 1.0:
        raise ValueError(f"share must be between 0 and 1, not {share!r}")
    if len(opening) != len(motion):
        raise ValueError(f"{len(opening)} openings for {len(motion)} frames")
    current = inner_lip_gap(neutral[None] + motion) - inner_lip_gap(neutral)  # (T,)
    change = share * (np.asarray(opening, dtype=np.float64) - current)
    motion[..., 1] += change[:, None] * opening_weights(neutral)[None]
    return motion


def rest_frame(canonical: np.ndarray, pose: np.ndarray) -> int:
    """Index of the frame of a talking face that is its rest (neutral) face.

    Candidates are the share :data:`REST_POSE_QUANTILE` of the frames whose head rotation (yaw, pitch, roll of
    ``pose`` ``(T, 6)``) is closest to the median. Among them the frame with the most closed mouth (smallest signed
    inner-lip gap of ``canonical`` ``(T, 68, 2|3)``) wins, except that the first frame is preferred when it is a
    candidate and its mouth is within :data:`FIRST_FRAME_TOLERANCE` of that: videos usually start at rest.
    """
    canonical = np.asarray(canonical, dtype=np.float64)
    angles = np.asarray(pose, dtype=np.float64)[:, :3]
    distance = np.linalg.norm(angles - np.median(angles, axis=0)[None], axis=-1)
    candidates = np.flatnonzero(distance <= np.quantile(distance, REST_POSE_QUANTILE))
    aperture = inner_lip_gap(canonical)
    best = int(candidates[np.argmin(aperture[candidates])])
    if 0 in candidates and aperture[0] <= aperture[best] + FIRST_FRAME_TOLERANCE:
        return 0
    return best


def belongs_to(track: LandmarkTrack, photo_landmarks: np.ndarray, photo_size: tuple[int, int],
               tolerance: float = 0.15) -> bool:
    """Whether a track was made for this photo's face: same image size and a neutral face (or first frame: a track
    extracted from a video belongs to that video's first frame) within ``tolerance`` inter-ocular distances (mean
    point error in x, y) of the photo's landmarks ``(68, 2|3)``."""
    if tuple(track.image_size) != tuple(photo_size):
        return False
    photo = np.asarray(photo_landmarks, dtype=np.float64)[:, :2]
    error = min(np.linalg.norm(face[:, :2] - photo, axis=-1).mean() for face in (track.neutral, track.frames[0]))
    return bool(error <= tolerance * inter_ocular(photo))

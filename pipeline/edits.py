"""Edits users make to a landmark track. Each takes a track and returns a new one (inputs are not changed).

Motion edits work in the canonical space (see :mod:`pipeline.canonical`), so they mean the same thing
whatever the head pose and photo size, and are posed back with each frame's own transform.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
from scipy.ndimage import gaussian_filter1d

from .canonical import apply_transform, from_canonical, rotation_matrix, to_canonical
from .landmarks import LandmarkTrack
from .regions import EYELID_PAIRS, LOWER_FACE, NUM_POINTS

#: Smoothing narrower than this (in frames) changes nothing visible, and far smaller values break the filter.
MIN_SIGMA = 1e-3
#: Frames a blink takes to close and to reopen at 25 fps (scaled with the frame rate).
BLINK_CLOSE_S = 0.08
BLINK_OPEN_S = 0.16
#: The canonical point the head turns about: below the chin and behind it, on the neck.
NECK_PIVOT = np.array([0.0, 1.6, 0.5])


def smooth(track: LandmarkTrack, sigma_frames: float = 1.0) -> LandmarkTrack:
    """Temporal Gaussian smoothing of every point (``sigma_frames`` in frames; 0 leaves it as is)."""
    if not math.isfinite(sigma_frames) or sigma_frames < 0:
        raise ValueError(f"smoothing must be a finite number >= 0, not {sigma_frames!r}")
    if sigma_frames < MIN_SIGMA or track.num_frames < 2:
        return track.replace(track.frames.copy())
    frames = gaussian_filter1d(track.frames.astype(np.float64), sigma_frames, axis=0, mode="nearest")
    return track.replace(frames)


def scale_motion(
    track: LandmarkTrack, factor: float, points: Sequence[int] = LOWER_FACE
) -> LandmarkTrack:
    """Scale the motion of ``points`` (default: lips and jaw) about the face's neutral shape.

    ``factor`` 1 keeps the track, 0 freezes those points at rest, 1.5 exaggerates the motion.
    """
    canon, matrices = track.canonical()
    neutral, _ = to_canonical(track.neutral)
    idx = list(points)
    canon[:, idx] = neutral[idx] + factor * (canon[:, idx] - neutral[idx])
    return track.replace(from_canonical(canon, matrices))


def blink_profile(num_frames: int, fps: float, starts: Sequence[float]) -> np.ndarray:
    """Eyelid closure per frame (0 open, 1 shut) for blinks starting at ``starts`` seconds."""
    t = np.arange(num_frames) / fps
    closure = np.zeros(num_frames)
    for start in starts:
        rel = t - start
        closing = np.clip(rel / BLINK_CLOSE_S, 0, 1)
        opening = np.clip(1 - (rel - BLINK_CLOSE_S) / BLINK_OPEN_S, 0, 1)
        one = np.where(rel < BLINK_CLOSE_S, closing, opening) * (rel >= 0)
        closure = np.maximum(closure, 0.5 - 0.5 * np.cos(np.pi * one))
    return closure


def random_blink_times(duration: float, rate_per_minute: float, rng: np.random.Generator) -> list[float]:
    """Blink start times with natural spacing (gamma-distributed gaps around the mean rate)."""
    if rate_per_minute <= 0:
        return []
    mean_gap = 60.0 / rate_per_minute
    blink = BLINK_CLOSE_S + BLINK_OPEN_S
    times, t = [], float(rng.uniform(0.3, 0.8) * mean_gap)
    while t < duration - BLINK_CLOSE_S:
        times.append(t)
        t += float(rng.gamma(4.0, max(mean_gap - blink, 0.1) / 4.0)) + blink  # start to start: mean_gap
    return times


def add_blinks(
    track: LandmarkTrack,
    times: Sequence[float] | None = None,
    rate_per_minute: float = 15.0,
    seed: int = 0,
) -> LandmarkTrack:
    """Close the eyelids at ``times`` (seconds), or at random natural times at ``rate_per_minute``."""
    if times is None:
        times = random_blink_times(track.duration, rate_per_minute, np.random.default_rng(seed))
    closure = blink_profile(track.num_frames, track.fps, times)
    if not closure.any():
        return track.replace(track.frames.copy())
    canon, matrices = track.canonical()
    for upper, lower in EYELID_PAIRS:
        meet = 0.5 * (canon[:, upper] + canon[:, lower])
        # the upper lid travels most of the way, the lower lid a little, as in real blinks
        canon[:, upper] += closure[:, None] * 0.85 * 2 * (meet - canon[:, upper])
        canon[:, lower] += closure[:, None] * 0.15 * 2 * (meet - canon[:, lower])
    return track.replace(from_canonical(canon, matrices), blinks=[round(float(t), 3) for t in times])


def move_point(
    track: LandmarkTrack,
    frame: int,
    point: int,
    position: Sequence[float],
    radius_frames: int = 4,
) -> LandmarkTrack:
    """Move one point on one frame to ``position`` (pixels: ``(x, y)``, keeping its depth, or ``(x, y, z)``),
    easing the change into the neighbouring ``radius_frames`` frames on each side with a raised-cosine weight."""
    if not 0 <= frame < track.num_frames:
        raise IndexError(f"frame {frame} is outside the track (0..{track.num_frames - 1})")
    if not 0 <= point < NUM_POINTS:
        raise IndexError(f"point {point} is not one of the 68 landmarks")
    position = np.asarray(position, dtype=np.float64)
    delta = np.zeros(3)
    delta[: len(position)] = position - track.frames[frame, point, : len(position)]
    frames = track.frames.astype(np.float64)
    frames[:, point] += eased(track.num_frames, frame, radius_frames)[:, None] * delta
    return track.replace(frames)


def eased(num_frames: int, frame: int, radius_frames: int) -> np.ndarray:
    """``(num_frames,)`` weights: 1 on ``frame``, falling off as a raised cosine to 0 beyond ``radius_frames``
    frames on each side (an edit on one frame, eased in and out)."""
    offsets = np.arange(num_frames) - frame
    weights = 0.5 + 0.5 * np.cos(np.pi * offsets / (radius_frames + 1))
    return np.where(np.abs(offsets) <= radius_frames, weights, 0.0)


def _smooth_wander(num_frames: int, fps: float, rng: np.random.Generator, amplitude: float) -> np.ndarray:
    """A slow random curve starting at 0 and never leaving ``[-amplitude, amplitude]``."""
    t = np.arange(num_frames) / fps
    freqs = rng.uniform(0.07, 0.45, size=3)
    phases = rng.uniform(0, 2 * np.pi, size=3)
    weights = rng.dirichlet(np.ones(3)) * rng.uniform(0.6, 1.0)
    curve = sum(w * (np.sin(2 * np.pi * f * t + p) - np.sin(p))
                for w, f, p in zip(weights, freqs, phases, strict=True))
    return 0.5 * amplitude * np.asarray(curve, dtype=np.float64)


def head_motion_transforms(num_frames: int, fps: float, seed: int = 0, max_degrees: float = 2.0,
                           max_shift: float = 0.015, max_scale: float = 0.006) -> np.ndarray:
    """Subtle natural head sway as canonical-to-canonical 3x4 transforms ``(T, 3, 4)``: yaw, pitch and roll about a
    pivot in the neck (each up to ``max_degrees``), shifts up to ``max_shift`` IOD and scale changes (leaning) up to
    ``max_scale``; identity at frame 0. Applied before a frame's pose, they change only the pose."""
    rng = np.random.default_rng([seed, 7])
    angles = np.stack([_smooth_wander(num_frames, fps, rng, max_degrees) for _ in range(3)], axis=-1)  # (T, 3)
    shift = np.stack([_smooth_wander(num_frames, fps, rng, max_shift) for _ in range(2)] + [np.zeros(num_frames)], -1)
    scale = 1.0 + _smooth_wander(num_frames, fps, rng, max_scale)
    return _about_the_neck(angles, shift, scale)


def _about_the_neck(angles: np.ndarray, shift: np.ndarray | None = None,
                    scale: np.ndarray | None = None) -> np.ndarray:
    """Canonical-to-canonical transforms ``(T, 3, 4)`` turning the head by ``angles`` ``(T, 3)`` (yaw, pitch, roll
    in degrees) about :data:`NECK_PIVOT`, then scaling it by ``scale`` ``(T,)`` and shifting it by ``shift``
    ``(T, 3)``."""
    lin = rotation_matrix(angles)  # (T, 3, 3)
    if scale is not None:
        lin = scale[:, None, None] * lin
    moved = NECK_PIVOT - lin @ NECK_PIVOT
    return np.concatenate([lin, (moved if shift is None else moved + shift)[..., None]], axis=-1)


def turn_head(track: LandmarkTrack, angles: np.ndarray | Sequence[float]) -> LandmarkTrack:
    """Turn the head by ``angles`` (degrees ``[yaw, pitch, roll]``: one triple for every frame or ``(T, 3)``, one per
    frame) on top of each frame's own pose, about the neck; the expression is kept."""
    angles = np.broadcast_to(np.asarray(angles, dtype=np.float64), (track.num_frames, 3))
    if not np.isfinite(angles).all():
        raise ValueError("head turn angles must be finite numbers")
    if not angles.any():
        return track.replace(track.frames.copy())
    canon, matrices = track.canonical()
    return track.replace(from_canonical(apply_transform(_about_the_neck(angles), canon), matrices))


def add_head_motion(track: LandmarkTrack, amount: float = 1.0, seed: int = 0) -> LandmarkTrack:
    """Add a subtle natural head sway (see :func:`head_motion_transforms`), scaled by ``amount`` (0 = none)."""
    if amount == 0:
        return track.replace(track.frames.copy())
    canon, matrices = track.canonical()
    sway = head_motion_transforms(track.num_frames, track.fps, seed, max_degrees=2.0 * amount,
                                  max_shift=0.015 * amount, max_scale=0.006 * amount)
    return track.replace(from_canonical(apply_transform(sway, canon), matrices), head_motion=float(amount))

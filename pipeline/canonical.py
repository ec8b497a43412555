"""The pose-free canonical landmark space, in 3D.

A face is brought into canonical space by the similarity transform (rotation, uniform scale, translation)
that best maps its stable points (nose, eye corners) onto the project's 3D mean face (least squares,
Umeyama). Canonical axes are x right, y down, z away from the camera (right-handed; the sign of MediaPipe's
z); the outer eye corners are one unit apart and level, and the origin is the centroid of the stable points.
There the mouth and jaw motion of different people and head poses can be compared and transferred. The
per-frame pixel-to-canonical transform ``(3, 4)`` is kept so a canonical track can be posed back onto any
photo. 2D points (old tracks, the dlib front end) are first lifted to 3D with the mean face's depth
(:func:`lift_to_3d`).

Pose convention (:func:`pose_from_transform`, :func:`transform_from_pose`): canonical ``c`` to pixel ``p`` is
``p = scale * R @ c + t`` with ``R = Rz(roll) @ Rx(pitch) @ Ry(yaw)`` (right-handed rotations about the
x-right / y-down / z-away axes). A pose is ``[yaw, pitch, roll, tx, ty, scale]``: angles in degrees,
``(tx, ty)`` the pixel position of the canonical origin, ``scale`` pixels per canonical unit (about the
inter-ocular distance in pixels). Positive yaw turns the nose towards the image's left (the person turns to
their own right), positive pitch tips the nose down (looking down), positive roll turns the face clockwise in
the image. Mirroring an image (``x -> W - x``) flips the signs of yaw and roll and keeps pitch. ``t``'s depth
(the pixel z of the canonical origin) is not part of the pose: an orthographic view does not see it.
"""

from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path

import numpy as np

from .regions import EYE_OUTER_CORNERS, NUM_POINTS, STABLE

MEAN_FACE_FILE = Path(__file__).parent / "assets" / "mean_face.json"

@lru_cache(maxsize=1)
def mean_face() -> np.ndarray:
    """The 3D mean face in canonical units, ``(68, 3)`` float64, centred on its stable points
    (``pipeline/assets/mean_face.json``, made by ``training/make_mean_face.py``)."""
    points = np.asarray(json.loads(MEAN_FACE_FILE.read_text())["points"], dtype=np.float64)
    assert points.shape == (NUM_POINTS, 3), f"mean face has shape {points.shape}"
    points = points - points[list(STABLE)].mean(axis=0)
    points.setflags(write=False)
    return points


def similarity_transform(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """Least-squares similarity ``A`` ``(..., D, D+1)`` with ``dst ~ src @ A[:, :D].T + A[:, D]`` (Umeyama 1991).

    ``src`` and ``dst`` are point sets ``(..., N, D)`` whose leading axes broadcast. A degenerate fit (no
    correlation between the sets) gets scale 1.
    """
    src = np.asarray(src, dtype=np.float64)
    dst = np.asarray(dst, dtype=np.float64)
    n = src.shape[-2]
    mu_s, mu_d = src.mean(axis=-2, keepdims=True), dst.mean(axis=-2, keepdims=True)  # (..., 1, D)
    s_c, d_c = src - mu_s, dst - mu_d
    cov = np.swapaxes(d_c, -1, -2) @ s_c / n  # (..., D, D)
    u, sig, vt = np.linalg.svd(cov)
    d = np.ones(sig.shape)
    d[..., -1] = np.where(np.linalg.det(u) * np.linalg.det(vt) < 0, -1.0, 1.0)
    rot = (u * d[..., None, :]) @ vt
    var_s = (s_c**2).sum(axis=(-2, -1)) / n
    num = (sig * d).sum(axis=-1)
    scale = np.divide(num, var_s, out=np.ones_like(num), where=num > 0)  # num > 0 implies var_s > 0
    lin = scale[..., None, None] * rot
    shift = mu_d[..., 0, :] - (lin @ mu_s[..., 0, :, None])[..., 0]
    return np.concatenate([lin, shift[..., None]], axis=-1)


def apply_transform(matrix: np.ndarray, points: np.ndarray) -> np.ndarray:
    """Apply ``(..., D, D+1)`` transform(s) to points ``(..., N, D)``, broadcasting over leading axes."""
    matrix = np.asarray(matrix, dtype=np.float64)
    points = np.asarray(points, dtype=np.float64)
    dim = matrix.shape[-2]
    return np.einsum("...ij,...nj->...ni", matrix[..., :dim], points) + matrix[..., None, :, dim]


def invert_transform(matrix: np.ndarray) -> np.ndarray:
    """Inverse of similarity/affine transform(s) ``(..., D, D+1)``."""
    matrix = np.asarray(matrix, dtype=np.float64)
    dim = matrix.shape[-2]
    lin_inv = np.linalg.inv(matrix[..., :dim])
    out = np.empty_like(matrix)
    out[..., :dim] = lin_inv
    out[..., dim] = -np.einsum("...ij,...j->...i", lin_inv, matrix[..., dim])
    return out


def lift_to_3d(points2d: np.ndarray) -> np.ndarray:
    """2D faces ``(..., 68, 2)`` made 3D ``(..., 68, 3)``: x and y kept, z the mean face's depth in pixels.

    The mean face's x, y are fitted onto the stable points by a 2D similarity, and its z is scaled by that
    similarity's scale (the canonical origin at pixel depth 0), so a lifted face has roll but no yaw or pitch
    (beyond what its differences from the mean face suggest: about half a degree for a real face).
    """
    points2d = np.asarray(points2d, dtype=np.float64)
    stable = list(STABLE)
    fit = similarity_transform(mean_face()[stable, :2], points2d[..., stable, :])  # canonical -> pixels
    scale = np.sqrt(np.abs(np.linalg.det(fit[..., :2])))  # (...,)
    depth = scale[..., None] * mean_face()[:, 2]  # (..., 68)
    return np.concatenate([points2d, depth[..., None]], axis=-1)


def to_canonical(points: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Align one face ``(68, 2|3)`` or a track ``(T, 68, 2|3)`` to the mean face (2D points lifted first).

    Returns the canonical points ``(..., 68, 3)`` and the pixel-to-canonical transforms ``(..., 3, 4)``.
    """
    points = np.asarray(points, dtype=np.float64)
    if points.shape[-1] == 2:
        points = lift_to_3d(points)
    stable = list(STABLE)
    matrix = similarity_transform(points[..., stable, :], mean_face()[stable])
    return apply_transform(matrix, points), matrix


def from_canonical(points: np.ndarray, matrix: np.ndarray) -> np.ndarray:
    """Pose canonical points back into pixels with the pixel-to-canonical transform(s) ``matrix``."""
    return apply_transform(invert_transform(matrix), points)


def inter_ocular(points: np.ndarray) -> np.ndarray:
    """Outer-eye-corner distance (in x, y) of a face ``(68, 2|3)`` or of each frame ``(T, 68, 2|3)``."""
    points = np.asarray(points, dtype=np.float64)[..., :2]
    return np.linalg.norm(points[..., EYE_OUTER_CORNERS[1], :] - points[..., EYE_OUTER_CORNERS[0], :], axis=-1)


# --- head pose -----------------------------------------------------------------------------------------------


def rotation_matrix(angles: np.ndarray | tuple[float, float, float]) -> np.ndarray:
    """``R = Rz(roll) @ Rx(pitch) @ Ry(yaw)`` ``(..., 3, 3)`` from ``(..., 3)`` angles ``[yaw, pitch, roll]`` in
    degrees (see the module docstring for their signs)."""
    yaw, pitch, roll = np.moveaxis(np.deg2rad(np.asarray(angles, dtype=np.float64)), -1, 0)
    cy, sy, cp, sp, cr, sr = np.cos(yaw), np.sin(yaw), np.cos(pitch), np.sin(pitch), np.cos(roll), np.sin(roll)
    zero, one = np.zeros_like(yaw), np.ones_like(yaw)
    ry = np.stack([np.stack([cy, zero, sy], -1), np.stack([zero, one, zero], -1), np.stack([-sy, zero, cy], -1)], -2)
    rx = np.stack([np.stack([one, zero, zero], -1), np.stack([zero, cp, -sp], -1), np.stack([zero, sp, cp], -1)], -2)
    rz = np.stack([np.stack([cr, -sr, zero], -1), np.stack([sr, cr, zero], -1), np.stack([zero, zero, one], -1)], -2)
    return rz @ rx @ ry


def rotation_angles(rotation: np.ndarray) -> np.ndarray:
    """``[yaw, pitch, roll]`` ``(..., 3)`` in degrees of rotation matrices ``(..., 3, 3)`` (inverse of
    :func:`rotation_matrix`; pitch within +-90)."""
    r = np.asarray(rotation, dtype=np.float64)
    yaw = np.arctan2(-r[..., 2, 0], r[..., 2, 2])
    pitch = np.arctan2(r[..., 2, 1], np.hypot(r[..., 2, 0], r[..., 2, 2]))
    roll = np.arctan2(-r[..., 0, 1], r[..., 1, 1])
    return np.rad2deg(np.stack([yaw, pitch, roll], axis=-1))


def pose_from_transform(matrix: np.ndarray) -> np.ndarray:
    """Head pose ``(..., 6)`` ``[yaw, pitch, roll, tx, ty, scale]`` of pixel-to-canonical similarity transform(s)
    ``(..., 3, 4)`` (as :func:`to_canonical` returns them)."""
    to_pixel = invert_transform(matrix)
    scale = np.cbrt(np.linalg.det(to_pixel[..., :3]))
    angles = rotation_angles(to_pixel[..., :3] / scale[..., None, None])
    return np.concatenate([angles, to_pixel[..., :2, 3], scale[..., None]], axis=-1)


def transform_from_pose(pose: np.ndarray, depth: float | np.ndarray = 0.0) -> np.ndarray:
    """Pixel-to-canonical transform(s) ``(..., 3, 4)`` of head pose(s) ``(..., 6)`` (inverse of
    :func:`pose_from_transform`); ``depth`` is the pixel z of the canonical origin, which a pose leaves out."""
    pose = np.asarray(pose, dtype=np.float64)
    to_pixel = np.zeros(pose.shape[:-1] + (3, 4))
    to_pixel[..., :3] = pose[..., 5, None, None] * rotation_matrix(pose[..., :3])
    to_pixel[..., :2, 3] = pose[..., 3:5]
    to_pixel[..., 2, 3] = depth
    return invert_transform(to_pixel)

"""The pose-free canonical landmark space.

A face is brought into canonical space by the similarity transform (scale, rotation, translation) that
best maps its stable points (nose, eye corners) onto the project's mean face (least squares, Umeyama).
In that space the outer eye corners are one unit apart and level, so the mouth and jaw motion of
different people and poses can be compared and transferred. The per-frame 2x3 transform is kept so a
canonical track can be posed back onto any photo.
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
    """The mean 68-point face in canonical units, ``(68, 2)`` float64 (see ``training/make_mean_face.py``)."""
    data = json.loads(MEAN_FACE_FILE.read_text())
    points = np.asarray(data["points"], dtype=np.float64)
    assert points.shape == (NUM_POINTS, 2), f"mean face has shape {points.shape}"
    points.setflags(write=False)
    return points


def normalise_shape(points: np.ndarray) -> np.ndarray:
    """Centre a shape on its stable points, level and scale it to unit outer-eye-corner distance."""
    points = np.asarray(points, dtype=np.float64)
    left, right = points[EYE_OUTER_CORNERS[0]], points[EYE_OUTER_CORNERS[1]]
    dx, dy = right - left
    iod = float(np.hypot(dx, dy))
    cos, sin = dx / iod, dy / iod
    rot = np.array([[cos, sin], [-sin, cos]])  # rotates the eye line onto +x
    centred = points - points[list(STABLE)].mean(axis=0)
    return centred @ rot.T / iod


def similarity_transform(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """Least-squares similarity ``A`` (2x3) with ``dst ~ src @ A[:, :2].T + A[:, 2]`` (Umeyama 1991)."""
    src = np.asarray(src, dtype=np.float64)
    dst = np.asarray(dst, dtype=np.float64)
    mu_s, mu_d = src.mean(axis=0), dst.mean(axis=0)
    s_c, d_c = src - mu_s, dst - mu_d
    cov = d_c.T @ s_c / len(src)
    u, sig, vt = np.linalg.svd(cov)
    d = np.ones(2)
    if np.linalg.det(u) * np.linalg.det(vt) < 0:
        d[-1] = -1.0
    rot = u @ np.diag(d) @ vt
    var_s = (s_c**2).sum() / len(src)
    scale = float((sig * d).sum() / var_s) if var_s > 0 else 1.0
    matrix = np.zeros((2, 3))
    matrix[:, :2] = scale * rot
    matrix[:, 2] = mu_d - matrix[:, :2] @ mu_s
    return matrix


def apply_transform(matrix: np.ndarray, points: np.ndarray) -> np.ndarray:
    """Apply 2x3 transform(s) to points; broadcasts over leading axes: ``(..., 2, 3)`` with ``(..., N, 2)``."""
    matrix = np.asarray(matrix, dtype=np.float64)
    points = np.asarray(points, dtype=np.float64)
    return np.einsum("...ij,...nj->...ni", matrix[..., :2], points) + matrix[..., None, :, 2]


def invert_transform(matrix: np.ndarray) -> np.ndarray:
    """Inverse of 2x3 similarity/affine transform(s), ``(..., 2, 3)``."""
    matrix = np.asarray(matrix, dtype=np.float64)
    lin_inv = np.linalg.inv(matrix[..., :2])
    out = np.empty_like(matrix)
    out[..., :2] = lin_inv
    out[..., 2] = -np.einsum("...ij,...j->...i", lin_inv, matrix[..., 2])
    return out


def to_canonical(points: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Align one face ``(68, 2)`` or a track ``(T, 68, 2)`` to the mean face.

    Returns the canonical points (same shape) and the pixel-to-canonical transforms ``(2, 3)`` or
    ``(T, 2, 3)``.
    """
    points = np.asarray(points, dtype=np.float64)
    if points.ndim == 2:
        matrix = similarity_transform(points[list(STABLE)], mean_face()[list(STABLE)])
        return apply_transform(matrix, points), matrix
    matrices = np.stack([similarity_transform(p[list(STABLE)], mean_face()[list(STABLE)]) for p in points])
    return apply_transform(matrices, points), matrices


def from_canonical(points: np.ndarray, matrix: np.ndarray) -> np.ndarray:
    """Pose canonical points back into pixels with the pixel-to-canonical transform(s) ``matrix``."""
    return apply_transform(invert_transform(matrix), points)


def inter_ocular(points: np.ndarray) -> np.ndarray:
    """Outer-eye-corner distance of a face ``(68, 2)`` or of each frame ``(T, 68, 2)``."""
    points = np.asarray(points, dtype=np.float64)
    return np.linalg.norm(points[..., EYE_OUTER_CORNERS[1], :] - points[..., EYE_OUTER_CORNERS[0], :], axis=-1)

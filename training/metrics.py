"""Lip-motion metrics on canonical landmark tracks.

Every function takes canonical tracks ``(T, 68, 2)`` (see :mod:`pipeline.canonical`: the outer eye
corners are one unit apart and level, y points down), so distances are in inter-ocular units (IOD) and
mean the same thing for every face, photo size and head pose.

* :func:`mouth_aperture`: how far the mouth is open, per frame.
* :func:`aperture_correlation`: do predicted and real mouths open and close together (Pearson r), and at
  which time offset they agree best (lip-sync delay).
* :func:`lmd` / :func:`lmd_motion`: landmark distance of the mouth points (plain, and of the motion
  relative to each track's own neutral face).
* :func:`landmark_jitter`: frame-to-frame roughness (mean second difference).
* :func:`silent_opening`, :func:`dynamics`, :func:`sync_gap`: the mouth in silence, how lively mouth and brows are
  next to the real ones, and THEval's landmark-only lip sync (openness against loudness on voiced frames).
* :func:`lip_closures`: of the brief closures of the real lips (an m, b or p, a stop), the share on which the
  predicted lips touch too: closure rate without a transcript.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from pipeline.landmarks import inner_lip_gap
from pipeline.regions import BROWS, EYES, LOWER_FACE, MOUTH

#: Apertures whose standard deviation is below this (IOD) count as constant: their correlation is 0.
CONSTANT_STD = 1e-6


def _track(points: np.ndarray) -> np.ndarray:
    points = np.asarray(points, dtype=np.float64)
    if points.ndim == 2:
        points = points[None]
    if points.ndim != 3 or points.shape[1:] != (68, 2):
        raise ValueError(f"expected canonical landmarks shaped (T, 68, 2), got {points.shape}")
    return points


def mouth_aperture(canonical: np.ndarray) -> np.ndarray:
    """Mouth opening per frame, ``(T,)`` in IOD: the mean inner-lip gap over ``pipeline.regions.INNER_LIP_PAIRS``
    (:func:`pipeline.landmarks.inner_lip_gap`).

    The gap of a pair is the vertical distance ``y_lower - y_upper`` (canonical space is level, so this is
    the opening perpendicular to the eye line). It is signed: when the detector lets the lips overlap it
    is slightly negative instead of being folded back to a positive distance, so averages and correlations
    are not biased near a closed mouth. A single face ``(68, 2)`` gives a ``(1,)`` array.
    """
    return inner_lip_gap(_track(canonical))


def _pearson(a: np.ndarray, b: np.ndarray) -> float:
    """Pearson r, defined as 0 (not NaN) when either series is constant or shorter than 2."""
    if len(a) < 2 or a.std() < CONSTANT_STD or b.std() < CONSTANT_STD:
        return 0.0
    return float(np.corrcoef(a, b)[0, 1])


def aperture_correlation(pred: np.ndarray, real: np.ndarray, max_lag: int = 5) -> tuple[float, float, int]:
    """Pearson correlation of predicted and real mouth apertures: ``(r_at_0, best_r, best_lag)``.

    ``pred`` and ``real`` are canonical tracks of the same length (or already aperture series ``(T,)``).
    The prediction is shifted by ``lag`` frames for every ``|lag| <= max_lag``; ``r(lag)`` correlates
    ``pred[t + lag]`` with ``real[t]`` over the overlap, so a **positive lag means the prediction is late**
    (it shows a mouth shape ``lag`` frames after the real face did). ``best_r`` is the largest ``r`` and
    ``best_lag`` its lag (the smallest ``|lag|`` on ties). A constant series (the static baseline) has no
    defined correlation; it scores 0 rather than NaN so that means over clips stay finite.
    """
    a = np.asarray(pred, dtype=np.float64)
    b = np.asarray(real, dtype=np.float64)
    a = a if a.ndim == 1 else mouth_aperture(a)
    b = b if b.ndim == 1 else mouth_aperture(b)
    if len(a) != len(b):
        raise ValueError(f"tracks differ in length: {len(a)} predicted vs {len(b)} real frames")
    r0 = _pearson(a, b)
    best_r, best_lag = r0, 0
    for lag in sorted(range(-max_lag, max_lag + 1), key=abs):
        if abs(lag) >= len(a) - 1:
            continue
        r = _pearson(a[lag:], b[: len(b) - lag]) if lag >= 0 else _pearson(a[:lag], b[-lag:])
        if r > best_r + 1e-12:
            best_r, best_lag = r, lag
    return r0, best_r, best_lag


def lmd(pred: np.ndarray, real: np.ndarray, points: Sequence[int] = MOUTH) -> float:
    """Plain landmark distance: mean Euclidean distance (IOD) of ``points`` between two canonical tracks.

    This mixes two errors: wrong motion and a different rest shape (a prediction driven from another
    neutral face than the real clip's is penalised for the shape difference in every frame). Use
    :func:`lmd_motion` to score the motion alone.
    """
    a, b = _track(pred), _track(real)
    if a.shape != b.shape:
        raise ValueError(f"tracks differ in shape: {a.shape} vs {b.shape}")
    idx = list(points)
    return float(np.linalg.norm(a[:, idx] - b[:, idx], axis=-1).mean())


def lmd_motion(
    pred: np.ndarray,
    real: np.ndarray,
    pred_neutral: np.ndarray | None = None,
    real_neutral: np.ndarray | None = None,
    points: Sequence[int] = MOUTH,
) -> float:
    """Motion landmark distance: :func:`lmd` of ``pred - pred_neutral`` against ``real - real_neutral``.

    Each track's own rest face is subtracted first, so only the displacements (how far and where each
    mouth point moves) are compared; a neutral defaults to the track's first frame. When both tracks
    share one neutral face (a prediction driven from the real clip's neutral) this equals plain LMD.
    """
    a, b = _track(pred), _track(real)
    pn = a[0] if pred_neutral is None else np.asarray(pred_neutral, dtype=np.float64)
    rn = b[0] if real_neutral is None else np.asarray(real_neutral, dtype=np.float64)
    return lmd(a - pn[None], b - rn[None], points)


def landmark_jitter(canonical: np.ndarray, points: Sequence[int] = LOWER_FACE) -> float:
    """Roughness: mean magnitude (IOD per frame²) of the second time difference of ``points``.

    ``|x[t+1] - 2 x[t] + x[t-1]|`` averaged over frames and points; 0 for a still or uniformly moving
    track, high for detector noise or flicker. Tracks shorter than 3 frames give 0.
    """
    c = _track(canonical)[:, list(points)]
    if len(c) < 3:
        return 0.0
    return float(np.linalg.norm(c[2:] - 2 * c[1:-1] + c[:-2], axis=-1).mean())


def silent_opening(pred: np.ndarray, real: np.ndarray, silent: np.ndarray) -> float:
    """How much wider the predicted mouth is than the real one in silence: the mean of ``aperture(pred) -
    aperture(real)`` (IOD) over the ``silent`` frames (a ``(T,)`` mask); NaN when no frame is silent."""
    silent = np.asarray(silent, dtype=bool)
    if not silent.any():
        return float("nan")
    return float((mouth_aperture(pred) - mouth_aperture(real))[silent].mean())


#: Mouth opening above the face at rest (IOD) at or under which the lips count as touching (also bench/bilabial.py's).
TOUCH = 0.02
#: Longest run of touching frames that counts as a brief closure within speech (8 frames: 320 ms at 25 fps).
BRIEF_CLOSURE_FRAMES = 8


def lip_closures(pred: np.ndarray, real: np.ndarray, pred_neutral: np.ndarray, real_neutral: np.ndarray,
                 touch: float = TOUCH, longest: int = BRIEF_CLOSURE_FRAMES) -> float:
    """The share of the real lips' brief closures on which the predicted lips touch too: a closure is a run of at
    most ``longest`` frames, not at either end of the clip, where the real opening above its rest face is at most
    ``touch``; the prediction touches on it when its own opening above rest is at most ``touch`` on one of those
    frames or the frame either side. NaN when the real lips never close briefly."""
    opening = mouth_aperture(real) - mouth_aperture(real_neutral)[0]
    predicted = mouth_aperture(pred) - mouth_aperture(pred_neutral)[0]
    touching = np.concatenate([[False], opening <= touch, [False]])
    edges = np.flatnonzero(np.diff(touching.astype(np.int8)))
    runs = [(start, end) for start, end in zip(edges[::2], edges[1::2], strict=True)
            if end - start <= longest and start > 0 and end < len(opening)]
    if not runs:
        return float("nan")
    return float(np.mean([predicted[start - 1:end + 1].min() <= touch for start, end in runs]))  # start >= 1


def brow_height(canonical: np.ndarray) -> np.ndarray:
    """Brows above the eyes per frame ``(T,)`` (IOD; y points down, so raised brows give smaller values)."""
    c = _track(canonical)
    return c[:, list(BROWS), 1].mean(axis=1) - c[:, list(EYES), 1].mean(axis=1)


def dynamics(pred: np.ndarray, real: np.ndarray) -> float:
    """How lively a predicted series ``(T,)`` is next to the real one (after THEval's lip and brow dynamics): the
    spread of its frame-to-frame changes over the real one's; 1 = as lively, 0 = still (0 too when both are still)."""
    a, b = np.diff(np.asarray(pred, dtype=np.float64)), np.diff(np.asarray(real, dtype=np.float64))
    if len(b) < 2 or b.std() < CONSTANT_STD:
        return 0.0
    return float(a.std() / b.std())


def sync_gap(canonical: np.ndarray, loudness: np.ndarray, voiced: np.ndarray) -> float:
    """Lip sync as THEval scores it from landmarks: the mean ``|openness - loudness|`` over the ``voiced`` frames,
    openness being the mouth aperture mapped onto 0..1 by its 5th..95th percentile over the clip (0 for a mouth that
    never moves) and ``loudness`` ``(T,)`` in 0..1; NaN without voiced frames. Lower is closer."""
    voiced = np.asarray(voiced, dtype=bool)
    if not voiced.any():
        return float("nan")
    aperture = mouth_aperture(canonical)
    low, high = np.percentile(aperture, [5, 95])
    openness = np.clip((aperture - low) / (high - low), 0.0, 1.0) if high - low > CONSTANT_STD else 0.0 * aperture
    return float(np.abs(openness - np.asarray(loudness, dtype=np.float64))[voiced].mean())


def score(pred: np.ndarray, real: np.ndarray, pred_neutral: np.ndarray, real_neutral: np.ndarray,
          max_lag: int = 5, silent: np.ndarray | None = None,
          loudness: np.ndarray | None = None, voiced: np.ndarray | None = None) -> dict[str, float]:
    """All metrics of one predicted track against the real one, as a flat dict (for tables and JSON): with a
    ``silent`` frame mask, also ``silent_opening`` (:func:`silent_opening`); with ``loudness`` (0..1) and a
    ``voiced`` mask, also ``sync_gap`` (:func:`sync_gap`)."""
    r0, best_r, best_lag = aperture_correlation(pred, real, max_lag)
    extra = {} if silent is None else {"silent_opening": silent_opening(pred, real, silent)}
    if loudness is not None and voiced is not None:
        extra["sync_gap"] = sync_gap(pred, loudness, voiced)
    return {
        "r0": r0,
        "best_r": best_r,
        "best_lag": best_lag,
        "lmd_motion": lmd_motion(pred, real, pred_neutral, real_neutral),
        "lmd": lmd(pred, real),
        "jitter": landmark_jitter(pred),
        "lip_dynamics": dynamics(mouth_aperture(pred), mouth_aperture(real)),
        "brow_dynamics": dynamics(brow_height(pred), brow_height(real)),
        "lip_closures": lip_closures(pred, real, pred_neutral, real_neutral),
        "aperture_mean": float(mouth_aperture(pred).mean()),
        "aperture_std": float(mouth_aperture(pred).std()),
        **extra,
    }

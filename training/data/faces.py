"""Random face shapes and audio-independent upper-face motion for the synthetic data sources.

The espeak and speech-only sources (:mod:`training.data.prepare_espeak`, :mod:`training.data.prepare_speech`)
have no video, so their landmark tracks are made up: the lips and jaw from phoneme timings
(:func:`training.data.visemes.phonemes_to_motion`), everything else from here:

* :func:`random_neutral_face` varies the project mean face (jaw width, face length, mouth width, lip
  thickness, eye size, brow height, a little asymmetry, a resting mouth opening of 0-0.08 IOD and now
  and then a slight smile), so the model does not learn one single face;
* :func:`natural_upper_motion` gives the points speech does not drive (brows, eyes, nose, upper jaw
  line) the motion real faces have while talking: blinks, short brow raises and a tiny, slow residual of
  head pose (what remains of yaw and pitch after the canonical alignment). The lips and the moving jaw
  (points 3-13) are never touched, so the mouth stays purely audio-driven.

Everything is in the x, y plane of the (frontal, pose-free) canonical space of :mod:`pipeline.canonical`
(inter-ocular distance 1, +y down) and
seeded only by the ``rng`` passed in.
"""

from __future__ import annotations

from typing import Optional

import numpy as np

from pipeline.canonical import apply_transform, mean_face, similarity_transform
from pipeline.edits import blink_profile, random_blink_times
from pipeline.regions import (
    EYELID_PAIRS,
    INNER_LIP_PAIRS,
    JAW,
    LEFT_BROW,
    LEFT_EYE,
    MOUTH,
    NOSE,
    NUM_POINTS,
    RIGHT_BROW,
    RIGHT_EYE,
    STABLE,
)

#: Resting inner-lip opening of the random faces, IOD (real photos are often slightly open or smiling).
REST_GAP_RANGE = (0.0, 0.08)
#: Blinks per minute, drawn per clip.
BLINK_RATE_RANGE = (10.0, 25.0)
#: Jaw points that speech moves (see :mod:`training.data.visemes`); never touched by the upper motion.
SPEECH_JAW = JAW[3:14]
#: Points :func:`natural_upper_motion` may move: everything but the lips and the speech-driven jaw.
UPPER_POINTS = tuple(i for i in range(NUM_POINTS) if i not in set(MOUTH) | set(SPEECH_JAW))
#: Upper-lid / lower-lid points (from :data:`pipeline.regions.EYELID_PAIRS`).
_UPPER_LIDS = tuple(u for u, _ in EYELID_PAIRS)
_UPPER_OUTER_LIP = (49, 50, 51, 52, 53)
_LOWER_OUTER_LIP = (55, 56, 57, 58, 59)
_UPPER_INNER_LIP = (61, 62, 63)
_LOWER_INNER_LIP = (65, 66, 67)
_CORNERS = (48, 54, 60, 64)


def _clipped_normal(rng: np.random.Generator, sd: float, limit: float = 2.5) -> float:
    return float(np.clip(rng.normal(0.0, sd), -limit * sd, limit * sd))


def _midline_profile(face: np.ndarray, idx, cx: float, half_width: float) -> np.ndarray:
    """1 on the mouth's midline, 0 at its corners (an ellipse across the width)."""
    dx = (face[list(idx), 0] - cx) / max(half_width, 1e-6)
    return np.sqrt(np.clip(1.0 - dx**2, 0.0, 1.0))


def random_neutral_face(rng: np.random.Generator) -> np.ndarray:
    """A plausible resting face ``(68, 2)`` in canonical space, varied around :func:`mean_face`.

    Varies (standard deviations in brackets, all clipped at 2.5 sd): jaw width (4 %), face length below
    the eyes (5 %), mouth width (7 %), lip thickness (15 %), eye opening (12 %) and width (inner corners,
    0.015), brow height (0.035 IOD), mild left/right asymmetry (brows, eyes, mouth corners, jaw) and
    per-point jitter (0.004). The resting inner-lip gap is uniform in :data:`REST_GAP_RANGE` (the chin
    follows), and one face in four smiles a little (corners up and out). The result is re-aligned to the
    mean face on the stable points, as :func:`pipeline.canonical.to_canonical` would, so its
    inter-ocular distance stays about 1.
    """
    face = np.array(mean_face()[:, :2], dtype=np.float64)
    jaw, mouth = list(JAW), list(MOUTH)
    eye_y = float(face[[36, 39, 42, 45], 1].mean())

    # face length: everything below the eye line stretches from it
    length = 1.0 + _clipped_normal(rng, 0.05)
    below = face[:, 1] > eye_y
    face[below, 1] = eye_y + (face[below, 1] - eye_y) * length

    # jaw width, growing towards the chin (the upper jaw line sits by the ears)
    jaw_width = 1.0 + _clipped_normal(rng, 0.04)
    face[jaw, 0] *= jaw_width

    # mouth width about the mouth centre
    cx = 0.5 * (face[48, 0] + face[54, 0])
    face[mouth, 0] = cx + (face[mouth, 0] - cx) * (1.0 + _clipped_normal(rng, 0.07))

    # lip thickness: the outer lip lines move away from / towards the inner ones
    half = 0.5 * abs(face[54, 0] - face[48, 0])
    for outer, inner_ref, scale in ((_UPPER_OUTER_LIP, 62, 1.0 + _clipped_normal(rng, 0.15)),
                                    (_LOWER_OUTER_LIP, 66, 1.0 + _clipped_normal(rng, 0.15))):
        prof = _midline_profile(face, outer, cx, half)
        thickness = face[list(outer), 1] - face[inner_ref, 1]
        face[list(outer), 1] += (scale - 1.0) * thickness * prof

    # eyes: opening (lids about each eye's corner line) and width (inner corners), a little per side
    opening = 1.0 + _clipped_normal(rng, 0.12)
    for eye in (RIGHT_EYE, LEFT_EYE):
        idx = list(eye)
        line_y = 0.5 * (face[eye[0], 1] + face[eye[3], 1])
        side = opening * (1.0 + _clipped_normal(rng, 0.04))
        lids = [i for i in idx if i not in (eye[0], eye[3])]
        face[lids, 1] = line_y + (face[lids, 1] - line_y) * side
    inner_shift = _clipped_normal(rng, 0.015)
    face[39, 0] += inner_shift
    face[42, 0] -= inner_shift

    # brows: height, and each side a little
    brow_up = _clipped_normal(rng, 0.035)
    for brow in (RIGHT_BROW, LEFT_BROW):
        face[list(brow), 1] -= brow_up + _clipped_normal(rng, 0.01)

    # resting mouth: set the inner-lip gap (lower lip most, chin follows as in speech)
    gap_now = float(np.mean([face[lo, 1] - face[up, 1] for up, lo in INNER_LIP_PAIRS]))
    delta = float(rng.uniform(*REST_GAP_RANGE)) - gap_now
    half_inner = 0.5 * abs(face[64, 0] - face[60, 0])
    cx_in = 0.5 * (face[60, 0] + face[64, 0])
    for idx, share, centre, half_width in ((_LOWER_INNER_LIP, 0.8, cx_in, half_inner),
                                           (_UPPER_INNER_LIP, -0.2, cx_in, half_inner),
                                           (_LOWER_OUTER_LIP, 0.8, cx, half),
                                           (_UPPER_OUTER_LIP, -0.2, cx, half)):
        face[list(idx), 1] += share * delta * _midline_profile(face, idx, centre, half_width)
    for corner in _CORNERS:
        face[corner, 1] += 0.3 * delta
    pivot_y = face[2, 1]
    reach = max(face[8, 1] - pivot_y, 1e-6)
    moving = list(SPEECH_JAW)
    weight = np.clip((face[moving, 1] - pivot_y) / reach, 0.0, 1.0) ** 1.5
    face[moving, 1] += 0.6 * max(delta, -0.05) * weight

    # a slight smile now and then: corners up and out
    if rng.uniform() < 0.25:
        smile = float(rng.uniform(0.005, 0.025))
        for left, right in ((48, 54), (60, 64)):
            face[left] += (-smile, -smile)
            face[right] += (smile, -smile)

    # asymmetry: one mouth corner higher, jaw a little to one side
    face[[48, 60], 1] += _clipped_normal(rng, 0.006)
    face[[54, 64], 1] += _clipped_normal(rng, 0.006)
    face[jaw[4:13], 0] += _clipped_normal(rng, 0.008) * np.sin(np.linspace(0, np.pi, 9))
    # per-point jitter, keeping the lips from crossing
    face += np.clip(rng.normal(0.0, 0.004, size=face.shape), -0.01, 0.01)
    for up, lo in INNER_LIP_PAIRS:
        if face[lo, 1] < face[up, 1]:
            mid = 0.5 * (face[lo, 1] + face[up, 1])
            face[up, 1] = face[lo, 1] = mid

    # back onto the mean face's stable points (canonical space)
    matrix = similarity_transform(face[list(STABLE)], mean_face()[list(STABLE), :2])
    return apply_transform(matrix, face)


def _slow_curve(num_frames: int, fps: float, rng: np.random.Generator, amplitude: float,
                freq_range: tuple[float, float] = (0.05, 0.35)) -> np.ndarray:
    """A smooth random curve in ``[-amplitude, amplitude]`` (sum of three slow sines)."""
    t = np.arange(num_frames) / fps
    freqs = rng.uniform(*freq_range, size=3)
    phases = rng.uniform(0, 2 * np.pi, size=3)
    weights = rng.dirichlet(np.ones(3))
    curve = sum(w * np.sin(2 * np.pi * f * t + p) for w, f, p in zip(weights, freqs, phases))
    return amplitude * np.asarray(curve, dtype=np.float64)


def _brow_raises(num_frames: int, fps: float, rng: np.random.Generator) -> np.ndarray:
    """Brow height per frame (IOD, positive = raised): a few short smooth raises."""
    duration = num_frames / fps
    rate = float(rng.uniform(3.0, 12.0))  # per minute
    out = np.zeros(num_frames)
    t = np.arange(num_frames) / fps
    start = float(rng.exponential(60.0 / rate))
    while start < duration:
        length = float(rng.uniform(0.3, 0.9))
        height = float(rng.uniform(0.015, 0.05))
        rel = np.clip((t - start) / length, 0.0, 1.0)
        out = np.maximum(out, height * np.sin(np.pi * rel) ** 2)
        start += length + float(rng.exponential(60.0 / rate))
    return out


def natural_upper_motion(num_frames: int, fps: float, rng: np.random.Generator,
                         neutral: Optional[np.ndarray] = None) -> np.ndarray:
    """Offsets ``(num_frames, 68, 2)`` to add to a canonical track for the audio-independent points.

    * blinks at a random rate of 10-25 per minute (:func:`pipeline.edits.random_blink_times` and
      :func:`~pipeline.edits.blink_profile`): the upper lids travel 85 % of the lid gap, the lower 15 %;
    * brow raises (3-12 per minute, 0.015-0.05 IOD, 0.3-0.9 s), inner brow points a little less;
    * a tiny slow pose residual: the upper jaw line sways sideways (yaw, up to ~0.01 IOD), brows and
      nose a fraction of that, and brows move up and down with pitch (~0.006 IOD).

    ``neutral`` (default: the mean face) gives the lid gaps. Lips and jaw points 3-13 stay exactly zero.
    """
    if num_frames < 0:
        raise ValueError(f"num_frames must not be negative, got {num_frames}.")
    face = mean_face()[:, :2] if neutral is None else np.asarray(neutral, dtype=np.float64)
    out = np.zeros((num_frames, NUM_POINTS, 2))
    if num_frames == 0:
        return out

    # blinks
    rate = float(rng.uniform(*BLINK_RATE_RANGE))
    closure = blink_profile(num_frames, fps, random_blink_times(num_frames / fps, rate, rng))
    for up, lo in EYELID_PAIRS:
        gap = max(float(face[lo, 1] - face[up, 1]), 0.0)
        out[:, up, 1] += 0.85 * gap * closure
        out[:, lo, 1] -= 0.15 * gap * closure

    # brow raises (the lids' upper line follows a little)
    raise_ = _brow_raises(num_frames, fps, rng)
    for brow, inner in ((RIGHT_BROW, 21), (LEFT_BROW, 22)):
        for i in brow:
            out[:, i, 1] -= raise_ * (0.8 if i == inner else 1.0)
    out[:, list(_UPPER_LIDS), 1] -= 0.1 * raise_[:, None]

    # pose residual: yaw moves the side outline, pitch the brows relative to the eyes
    yaw = _slow_curve(num_frames, fps, rng, float(rng.uniform(0.003, 0.01)))
    pitch = _slow_curve(num_frames, fps, rng, float(rng.uniform(0.002, 0.006)))
    for i in (0, 1, 2, 14, 15, 16):
        out[:, i, 0] += yaw
    for i in RIGHT_BROW + LEFT_BROW:
        out[:, i, 0] += 0.4 * yaw
        out[:, i, 1] += pitch
    for i in NOSE:
        out[:, i, 0] -= 0.2 * yaw * (1.0 if i >= 30 else (i - 26) / 4.0)

    assert not out[:, list(MOUTH) + list(SPEECH_JAW)].any()
    return out

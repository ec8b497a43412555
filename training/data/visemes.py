"""Phonemes to coarticulated mouth motion: 68-point landmark tracks for synthetic talking faces.

Each espeak phoneme symbol (English set) maps to a viseme, a handful of articulation parameters:

* ``gap``: inner-lip opening, absolute, in inter-ocular units (IOD; ``a`` ~0.3, ``i:`` ~0.08);
  the jaw (chin, point 8) drops :data:`JAW_RATIO` of the opening change, the lower lip most of it and the
  upper lip a little;
* ``spread``: mouth-corner travel outwards, per side, in IOD (``i:`` spreads, negative never needed);
* ``round``: lip rounding and protrusion, 0-1 (corners come in, the lip bodies bulge, ``u:``, ``w``);
* ``raise_``: upper-lip raise in IOD (postalveolars and ``f``/``v`` show the upper teeth);
* ``close``: bilabial closure (``p b m``): the inner lips meet, gap exactly 0;
* ``tuck``: labiodental (``f v``): the lower lip rises to the upper teeth.

Coarticulation follows Cohen & Massaro's dominance model: every segment pulls the continuous ``gap`` and
lip-shape parameters towards its target with a weight that is flat over the segment and falls smoothly to
zero within a look-ahead (anticipatory) and a carry-over window after it; the parameters are the
weight-normalised average. Low-dominance consonants (``k``, ``h``, ``t``) therefore take their lip shape
from the vowels around them, ``w`` and ``u:`` round the consonants before them, and short vowels undershoot.
The closure and tuck constraints are not averaged away: they are smooth bumps that reach 1 over the
whole segment (and on at least one frame of every bilabial), so a ``p`` or ``m`` always shuts the lips.
All weights have compact support, so in a long enough pause the face is exactly at rest.

Motion is produced in the canonical space of :mod:`pipeline.canonical` (IOD 1, +y down) as displacements
of the lower face (jaw 3-13 and the lips) from a neutral face, the project mean face by default. Frame
``i`` shows the mouth at time ``(i + 0.5) / fps``, the centre of the frame, as the audio features do.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, replace
from typing import Iterable, Optional, Sequence

import numpy as np

from pipeline.canonical import apply_transform, from_canonical, mean_face, to_canonical
from pipeline.edits import add_blinks, head_motion_transforms
from pipeline.landmarks import LandmarkTrack
from pipeline.regions import INNER_LIP_PAIRS, JAW, NUM_POINTS

Phoneme = tuple[float, float, str]

#: Chin drop per unit of inner-lip opening: the lips part more than the jaw drops.
JAW_RATIO = 0.6
#: Share of an opening change taken by the lower lip; the upper lip takes the rest.
LOWER_LIP_SHARE = 0.8
#: Inner-lip gap left under the upper teeth in a labiodental.
TUCK_GAP = 0.012


@dataclass(frozen=True)
class Viseme:
    """Articulation target of one phoneme (see the module docstring) and its dominance."""

    gap: float
    spread: float = 0.0
    round: float = 0.0
    raise_: float = 0.0
    close: bool = False
    tuck: bool = False
    #: dominance over the opening and over the lip shape (spread, round, raise)
    dom_gap: float = 1.0
    dom_shape: float = 1.0
    #: look-ahead and carry-over windows (seconds) of the dominance
    ahead: float = 0.12
    behind: float = 0.09


# --- the viseme inventory ----------------------------------------------------------------------------
_V = Viseme


def _C(gap: float, **kw) -> Viseme:
    """A consonant: shorter coarticulation windows than vowels, so vowels reach their targets."""
    kw.setdefault("ahead", 0.08)
    kw.setdefault("behind", 0.06)
    return Viseme(gap, **kw)


VOWELS: dict[str, Viseme] = {
    "a": _V(0.30, spread=0.02),  # trap
    "aa": _V(0.31),  # bath (en-GB)
    "a#": _V(0.22),  # reduced a (en-US "about")
    "a2": _V(0.20),
    "A:": _V(0.32),  # father
    "A": _V(0.30),
    "V": _V(0.23),  # strut
    "0": _V(0.28, round=0.05),  # lot (en-US: unrounded)
    "0#": _V(0.24, round=0.1),
    "O:": _V(0.22, round=0.55),  # thought
    "O": _V(0.22, round=0.5),
    "O2": _V(0.20, round=0.4),
    "o": _V(0.17, round=0.6),  # onset of goat
    "E": _V(0.20, spread=0.02),  # dress
    "e": _V(0.18, spread=0.025),  # onset of face
    "I": _V(0.12, spread=0.025),  # kit
    "I2": _V(0.11, spread=0.025),
    "I#": _V(0.11, spread=0.02),
    "i": _V(0.10, spread=0.03),  # happY
    "i:": _V(0.08, spread=0.04),  # fleece
    "@": _V(0.13, dom_gap=0.7, dom_shape=0.5),  # schwa: reduced, takes colour from its neighbours
    "@2": _V(0.12, dom_gap=0.7, dom_shape=0.5),
    "@5": _V(0.12, dom_gap=0.7, dom_shape=0.5),
    "@L": _V(0.08, dom_gap=0.8, dom_shape=0.5),  # syllabic l (bottle)
    "3:": _V(0.12, round=0.35),  # nurse
    "3": _V(0.10, round=0.3, dom_shape=0.7),  # letter (en-US r-coloured schwa)
    "U": _V(0.09, round=0.7),  # foot
    "u:": _V(0.06, round=1.0, ahead=0.18),  # goose
    "u": _V(0.07, round=0.9),
}
#: Diphthongs and triphthongs: (vowel, share of the duration) in order.
GLIDES: dict[str, tuple[tuple[str, float], ...]] = {
    "aI": (("a", 0.55), ("I", 0.45)),
    "aU": (("a", 0.5), ("U", 0.5)),
    "eI": (("e", 0.55), ("I", 0.45)),
    "oU": (("o", 0.5), ("U", 0.5)),
    "OI": (("O:", 0.55), ("I", 0.45)),
    "e@": (("E", 0.6), ("@", 0.4)),
    "i@": (("i", 0.5), ("@", 0.5)),
    "i@3": (("i", 0.4), ("3", 0.6)),
    "U@": (("U", 0.5), ("@", 0.5)),
    "O@": (("O:", 0.6), ("3", 0.4)),
    "o@": (("o", 0.6), ("3", 0.4)),
    "A@": (("A:", 0.6), ("3", 0.4)),
    "aI@": (("a", 0.4), ("I", 0.3), ("@", 0.3)),
    "aI3": (("a", 0.4), ("I", 0.3), ("3", 0.3)),
    "aU@": (("a", 0.4), ("U", 0.3), ("@", 0.3)),
}
CONSONANTS: dict[str, Viseme] = {
    # bilabials: lips shut; jaw fairly high; lip shape from the neighbours
    "p": _C(0.02, close=True, dom_gap=0.8, dom_shape=0.3),
    "b": _C(0.02, close=True, dom_gap=0.8, dom_shape=0.3),
    "m": _C(0.02, close=True, dom_gap=0.8, dom_shape=0.3),
    # labiodentals: lower lip to the upper teeth
    "f": _C(0.03, raise_=0.015, tuck=True, dom_gap=1.5, dom_shape=0.4),
    "v": _C(0.03, raise_=0.015, tuck=True, dom_gap=1.5, dom_shape=0.4),
    # dentals: tongue tip between the teeth, jaw a little open
    "T": _C(0.06, dom_gap=0.8, dom_shape=0.2),
    "D": _C(0.05, dom_gap=0.6, dom_shape=0.2),
    # alveolar sibilants: teeth nearly together, lips slightly spread, strong jaw constraint
    "s": _C(0.03, spread=0.015, dom_gap=2.5, dom_shape=0.5),
    "z": _C(0.03, spread=0.015, dom_gap=2.0, dom_shape=0.5),
    # postalveolars: protruded, squarish lips showing the teeth
    "S": _C(0.04, round=0.6, raise_=0.015, dom_gap=2.0, dom_shape=1.2),
    "Z": _C(0.04, round=0.6, raise_=0.015, dom_gap=2.0, dom_shape=1.2),
    "tS": _C(0.04, round=0.55, raise_=0.015, dom_gap=2.0, dom_shape=1.2),
    "dZ": _C(0.04, round=0.55, raise_=0.015, dom_gap=2.0, dom_shape=1.2),
    # alveolar stops, nasal, lateral, flap: jaw fairly high, lips from context
    "t": _C(0.05, dom_gap=0.9, dom_shape=0.15),
    "d": _C(0.05, dom_gap=0.8, dom_shape=0.15),
    "n": _C(0.05, dom_gap=0.7, dom_shape=0.15),
    "l": _C(0.07, dom_gap=0.6, dom_shape=0.15),
    "t#": _C(0.07, dom_gap=0.4, dom_shape=0.1),  # en-US flap (water)
    "n-": _C(0.05, dom_gap=0.6, dom_shape=0.15),  # syllabic n (button)
    # velars, glottals: almost no constraint on the lips or jaw
    "k": _C(0.09, dom_gap=0.4, dom_shape=0.1),
    "g": _C(0.09, dom_gap=0.35, dom_shape=0.1),
    "N": _C(0.08, dom_gap=0.35, dom_shape=0.1),
    "x": _C(0.09, dom_gap=0.35, dom_shape=0.1),
    "h": _C(0.12, dom_gap=0.05, dom_shape=0.05),
    "?": _C(0.08, dom_gap=0.1, dom_shape=0.05),
    # approximants
    "w": _C(0.03, round=1.0, dom_gap=1.0, dom_shape=2.0, ahead=0.15),
    "r": _C(0.06, round=0.45, raise_=0.008, dom_gap=0.6, dom_shape=1.0),
    "r-": _C(0.07, round=0.35, dom_gap=0.6, dom_shape=0.8),  # linking r
    "j": _C(0.04, spread=0.03, dom_gap=0.7, dom_shape=0.7),
}
#: Stand-in for symbols this table does not know: a neutral, half-open vowel.
UNKNOWN = _V(0.18, dom_gap=0.8, dom_shape=0.5)
#: Pauses hold the face at rest; their dominance grows with their length (see :func:`_pause_viseme`).
REST = _V(0.0, dom_gap=1.0, dom_shape=1.0, ahead=0.06, behind=0.06)
del _V, _C

#: Every symbol :func:`viseme_for` maps directly (pauses, starting with ``_``, aside).
PHONEME_TABLE: dict[str, object] = {**VOWELS, **GLIDES, **CONSONANTS}

_STRIP = re.compile(r"[#:;\-0-9']+$")


def is_pause(symbol: str) -> bool:
    return symbol.startswith("_") or symbol.strip() == ""


def viseme_for(symbol: str) -> tuple[tuple[Viseme, float], ...]:
    """The viseme(s) of an espeak phoneme symbol, each with its share of the phoneme's duration.

    Unknown symbols are looked up without trailing modifiers (``"t#"`` -> ``"t"``), else become
    :data:`UNKNOWN`. Pauses are not handled here.
    """
    for candidate in (symbol, _STRIP.sub("", symbol)):
        entry = PHONEME_TABLE.get(candidate)
        if entry is None:
            continue
        if isinstance(entry, Viseme):
            return ((entry, 1.0),)
        return tuple((VOWELS[v], share) for v, share in entry)  # type: ignore[union-attr]
    return ((UNKNOWN, 1.0),)


# --- timeline ------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Segment:
    start: float
    end: float
    viseme: Viseme
    pause: bool = False


def _pause_viseme(duration: float, internal: bool) -> Viseme:
    """Long pauses bring the face to rest; a 20 ms gap between words barely slows it down."""
    if not internal:
        return replace(REST, dom_gap=3.0, dom_shape=3.0)
    weight = float(np.clip(duration / 0.2, 0.1, 1.5))
    return replace(REST, dom_gap=weight, dom_shape=weight)


def _segments(phonemes: Sequence[Phoneme], rng: np.random.Generator, intensity: float) -> list[_Segment]:
    """Turn phonemes into viseme segments: glides split, pauses merged, gaps filled with rest, targets
    jittered a little (per segment, by ``rng``) and scaled by ``intensity``; rest extends to +-infinity."""
    items = sorted(((float(s), float(e), str(p)) for s, e, p in phonemes), key=lambda x: x[0])
    raw: list[tuple[float, float, Optional[Viseme]]] = []  # None: pause
    cursor = -math.inf
    for start, end, symbol in items:
        if not (math.isfinite(start) and math.isfinite(end)) or end <= start:
            continue
        start = max(start, cursor) if math.isfinite(cursor) else start
        if end <= start:
            continue
        if math.isfinite(cursor) and start > cursor + 1e-9:
            raw.append((cursor, start, None))
        if is_pause(symbol):
            raw.append((start, end, None))
        else:
            t = start
            for viseme, share in viseme_for(symbol):
                t_end = t + share * (end - start)
                raw.append((t, t_end, viseme))
                t = t_end
        cursor = end
    # merge neighbouring pauses
    merged: list[tuple[float, float, Optional[Viseme]]] = []
    for seg in raw:
        if merged and seg[2] is None and merged[-1][2] is None:
            merged[-1] = (merged[-1][0], seg[1], None)
        else:
            merged.append(seg)
    segments: list[_Segment] = []
    for k, (start, end, viseme) in enumerate(merged):
        if viseme is None:
            internal = 0 < k < len(merged) - 1
            segments.append(_Segment(start, end, _pause_viseme(end - start, internal), pause=True))
            continue
        jitter = float(np.clip(rng.normal(1.0, 0.07), 0.85, 1.15))
        shape_jitter = float(np.clip(rng.normal(1.0, 0.1), 0.8, 1.2))
        target = replace(
            viseme,
            gap=viseme.gap * jitter,
            spread=viseme.spread * shape_jitter * intensity,
            round=float(np.clip(viseme.round * shape_jitter, 0.0, 1.0)) * intensity,
            raise_=viseme.raise_ * intensity,
        )
        segments.append(_Segment(start, end, target))
    first = segments[0].start if segments else 0.0
    last = segments[-1].end if segments else 0.0
    rest = replace(REST, dom_gap=3.0, dom_shape=3.0)
    return [_Segment(-math.inf, first, rest, True), *segments, _Segment(last, math.inf, rest, True)]


def _window(distance: np.ndarray, reach: float) -> np.ndarray:
    """Smooth compact falloff: 1 at distance 0, 0 from ``reach`` on (biweight)."""
    x = np.clip(distance / reach, 0.0, 1.0)
    return (1.0 - x**2) ** 2


def _dominance(t: np.ndarray, seg: _Segment, weight: float) -> np.ndarray:
    """Dominance of ``seg`` at times ``t``: ``weight`` inside it, fading before (look-ahead) and after."""
    before = np.clip(seg.start - t, 0.0, None)
    after = np.clip(t - seg.end, 0.0, None)
    return weight * np.where(before > 0, _window(before, seg.viseme.ahead), 1.0) * np.where(
        after > 0, _window(after, seg.viseme.behind), 1.0
    )


def _bump(t: np.ndarray, start: float, end: float, ramp_in: float, ramp_out: float) -> np.ndarray:
    """1 on ``[start, end]``, raised-cosine ramps of ``ramp_in`` before and ``ramp_out`` after."""
    rise = np.clip((t - (start - ramp_in)) / ramp_in, 0.0, 1.0)
    fall = np.clip(((end + ramp_out) - t) / ramp_out, 0.0, 1.0)
    return 0.5 - 0.5 * np.cos(np.pi * np.minimum(rise, fall))


def _constraint(t: np.ndarray, segments: Sequence[_Segment], which: str, fps: float,
                ramp_in: float, ramp_out: float) -> np.ndarray:
    """Closure / tuck strength per time: max of bumps over the segments that need it. A segment that
    holds no frame time is widened to the nearest one, so even a 20 ms ``p`` shuts the lips on screen."""
    out = np.zeros_like(t)
    for seg in segments:
        if not getattr(seg.viseme, which):
            continue
        start, end = seg.start, seg.end
        if len(t) and not ((t >= start) & (t <= end)).any():
            nearest = float(t[np.argmin(np.abs(t - 0.5 * (start + end)))])
            if abs(nearest - 0.5 * (start + end)) <= 0.5 / fps + 1e-9:
                start, end = min(start, nearest), max(end, nearest)
        out = np.maximum(out, _bump(t, start, end, ramp_in, ramp_out))
    return out


@dataclass
class ArticulationCurves:
    """Per-frame articulation: ``gap`` (absolute, IOD), ``spread``, ``round``, ``raise_``, ``close``, ``tuck``."""

    gap: np.ndarray
    spread: np.ndarray
    round: np.ndarray
    raise_: np.ndarray
    close: np.ndarray
    tuck: np.ndarray


def articulation(phonemes: Sequence[Phoneme], num_frames: int, fps: float, rest_gap: float,
                 intensity: float = 1.0, seed: int = 0) -> ArticulationCurves:
    """The coarticulated parameter curves sampled at the frame centres (see the module docstring)."""
    rng = np.random.default_rng(seed)
    segments = _segments(phonemes, rng, intensity)
    t = (np.arange(num_frames) + 0.5) / fps
    sums = {k: np.zeros(num_frames) for k in ("gap", "spread", "round", "raise_")}
    w_gap_total = np.zeros(num_frames)
    w_shape_total = np.zeros(num_frames)
    for seg in segments:
        v = seg.viseme
        w_gap = _dominance(t, seg, v.dom_gap)
        w_shape = _dominance(t, seg, v.dom_shape)
        gap_target = rest_gap if seg.pause else rest_gap + intensity * (v.gap - rest_gap)
        sums["gap"] += w_gap * gap_target
        sums["spread"] += w_shape * v.spread
        sums["round"] += w_shape * v.round
        sums["raise_"] += w_shape * v.raise_
        w_gap_total += w_gap
        w_shape_total += w_shape
    w_gap_total = np.maximum(w_gap_total, 1e-12)
    w_shape_total = np.maximum(w_shape_total, 1e-12)
    return ArticulationCurves(
        gap=sums["gap"] / w_gap_total,
        spread=sums["spread"] / w_shape_total,
        round=sums["round"] / w_shape_total,
        raise_=sums["raise_"] / w_shape_total,
        close=_constraint(t, segments, "close", fps, ramp_in=0.07, ramp_out=0.05),
        tuck=_constraint(t, segments, "tuck", fps, ramp_in=0.06, ramp_out=0.05),
    )


# --- geometry -----------------------------------------------------------------------------------------

_UPPER_OUTER = (49, 50, 51, 52, 53)
_LOWER_OUTER = (55, 56, 57, 58, 59)
_UPPER_INNER = (61, 62, 63)
_LOWER_INNER = (65, 66, 67)
_OUTER_CORNERS = (48, 54)
_INNER_CORNERS = (60, 64)
_MOVING_JAW = JAW[3:14]


def inner_gap(points: np.ndarray) -> np.ndarray:
    """Mean vertical inner-lip opening of ``(..., 68, 2)`` points (same units), over the three pairs."""
    points = np.asarray(points)
    return np.mean([points[..., lo, 1] - points[..., up, 1] for up, lo in INNER_LIP_PAIRS], axis=0)


def _lip_profile(neutral: np.ndarray, idx: Sequence[int], corners: Sequence[int], cx: float) -> np.ndarray:
    """How much of the lip-centre vertical motion each point takes: 1 at the midline, 0 at the corners
    (an ellipse across the mouth width)."""
    half = 0.5 * abs(neutral[corners[1], 0] - neutral[corners[0], 0])
    dx = (neutral[list(idx), 0] - cx) / max(half, 1e-6)
    return np.sqrt(np.clip(1.0 - dx**2, 0.0, 1.0))


def pose_mouth(neutral: np.ndarray, curves: ArticulationCurves) -> np.ndarray:
    """Apply articulation curves to a neutral canonical face: ``(T, 68, 2)``."""
    neutral = np.asarray(neutral, dtype=np.float64)
    T = len(curves.gap)
    out = np.repeat(neutral[None], T, axis=0)
    cx = 0.5 * (neutral[48, 0] + neutral[54, 0])
    rest_gap = float(neutral[66, 1] - neutral[62, 1])
    delta = curves.gap - rest_gap  # (T,) opening change at the lip centre
    col = lambda a: np.asarray(a)[:, None]  # noqa: E731  (T,) -> (T, 1)

    f_uo = _lip_profile(neutral, _UPPER_OUTER, _OUTER_CORNERS, cx)
    f_lo = _lip_profile(neutral, _LOWER_OUTER, _OUTER_CORNERS, cx)
    f_ui = _lip_profile(neutral, _UPPER_INNER, _INNER_CORNERS, cx)
    f_li = _lip_profile(neutral, _LOWER_INNER, _INNER_CORNERS, cx)

    # 1. opening: lower lip down, upper lip up a little, corners halfway, chin by JAW_RATIO
    lower = LOWER_LIP_SHARE * delta
    upper = -(1.0 - LOWER_LIP_SHARE) * delta
    corner_dy = 0.5 * (lower + upper)
    corner_dy = corner_dy - 0.25 * curves.spread  # spreading lifts the corners a little (smile)
    for idx, prof, centre in ((_UPPER_OUTER, f_uo, upper), (_UPPER_INNER, f_ui, upper),
                              (_LOWER_OUTER, f_lo, lower), (_LOWER_INNER, f_li, lower)):
        out[:, list(idx), 1] += col(corner_dy) + col(centre - corner_dy) * prof[None]
    for idx in _OUTER_CORNERS + _INNER_CORNERS:
        out[:, idx, 1] += corner_dy

    # 2. rounding / protrusion: the lip bodies bulge outwards, upper lip raised (teeth) where asked
    out[:, list(_UPPER_OUTER), 1] -= col(0.02 * curves.round + curves.raise_) * f_uo[None]
    out[:, list(_UPPER_INNER), 1] -= col(curves.raise_) * f_ui[None]
    out[:, list(_LOWER_OUTER), 1] += col(0.025 * curves.round) * f_lo[None]

    # 3. width: corners out with spread, in with rounding and (a little) with wide opening
    open_narrow = 0.05 * np.clip(delta, 0.0, None)
    for ids, corners, inward in ((tuple(range(48, 60)), _OUTER_CORNERS, 0.085), (tuple(range(60, 68)), _INNER_CORNERS, 0.10)):
        half = 0.5 * abs(neutral[corners[1], 0] - neutral[corners[0], 0])
        new_half = np.maximum(half + curves.spread - inward * curves.round - open_narrow, 0.25 * half)
        scale = new_half / half
        dx = neutral[list(ids), 0] - cx
        out[:, list(ids), 0] = cx + col(scale) * dx[None]

    # 4. labiodental: lower lip up under the upper teeth (only ever upwards)
    up_centre = out[:, 62, 1]
    lo_centre = out[:, 66, 1]
    lift = curves.tuck * np.minimum(0.0, (up_centre + TUCK_GAP) - lo_centre)  # <= 0
    out[:, list(_LOWER_INNER), 1] += col(lift) * f_li[None]
    out[:, list(_LOWER_OUTER), 1] += col(0.75 * lift) * f_lo[None]

    # 5. bilabial closure: each inner pair meets (upper lip 40 %, lower lip 60 % of the way); the outer
    #    lips follow the centre, pressed a little thinner
    c = curves.close
    centre_gap = out[:, 66, 1] - out[:, 62, 1]
    for up, lo in INNER_LIP_PAIRS:
        gap = out[:, lo, 1] - out[:, up, 1]
        out[:, up, 1] += c * 0.4 * gap
        out[:, lo, 1] -= c * 0.6 * gap
    press = 0.006 * c
    out[:, list(_UPPER_OUTER), 1] += col(c * 0.4 * centre_gap + press) * f_uo[None]
    out[:, list(_LOWER_OUTER), 1] -= col(c * 0.6 * centre_gap + press) * f_lo[None]

    # 6. lips never cross
    for up, lo in INNER_LIP_PAIRS:
        cross = out[:, lo, 1] < out[:, up, 1]
        mid = 0.5 * (out[:, lo, 1] + out[:, up, 1])
        out[cross, up, 1] = mid[cross]
        out[cross, lo, 1] = mid[cross]

    # 7. jaw: points 3-13 drop with the opening, most at the chin, rotating about the jaw angle
    jaw = list(_MOVING_JAW)
    pivot_y = neutral[2, 1]
    reach = max(neutral[8, 1] - pivot_y, 1e-6)
    w = np.clip((neutral[jaw, 1] - pivot_y) / reach, 0.0, 1.0) ** 1.5
    chin = JAW_RATIO * delta
    out[:, jaw, 1] += col(chin) * w[None]
    side = np.sign(neutral[jaw, 0] - cx)
    out[:, jaw, 0] -= col(0.08 * chin) * (w * side)[None]
    return out


# --- public API ---------------------------------------------------------------------------------------


def phonemes_to_motion(
    phonemes: Iterable[Phoneme],
    num_frames: int,
    fps: float,
    neutral_canonical: Optional[np.ndarray] = None,
    intensity: float = 1.0,
    seed: int = 0,
) -> np.ndarray:
    """Coarticulated lower-face motion for ``phonemes`` ``[(start_s, end_s, symbol), ...]`` (espeak symbols).

    Returns ``(num_frames, 68, 2)`` canonical points: the neutral face (default: :func:`mean_face`) with the
    jaw and lips moved. ``intensity`` scales the opening and lip-shape excursions (bilabial closures still
    close); ``seed`` varies the per-phoneme targets slightly.
    """
    if num_frames < 0:
        raise ValueError(f"num_frames must not be negative, got {num_frames}.")
    if not fps > 0:
        raise ValueError(f"fps must be positive, got {fps!r}.")
    neutral = mean_face()[:, :2] if neutral_canonical is None else np.asarray(neutral_canonical, dtype=np.float64)
    assert neutral.shape == (NUM_POINTS, 2), f"neutral face must be (68, 2), got {neutral.shape}"
    rest_gap = float(neutral[66, 1] - neutral[62, 1])
    curves = articulation(list(phonemes), num_frames, fps, rest_gap, intensity=intensity, seed=seed)
    return pose_mouth(neutral, curves)


def speech_track_for_face(
    face_landmarks: np.ndarray,
    image_size: tuple[int, int],
    phonemes: Sequence[Phoneme],
    num_frames: int,
    fps: float,
    seed: int = 0,
    head_motion: bool = True,
    blinks: bool = True,
    intensity: float = 1.0,
) -> LandmarkTrack:
    """A talking :class:`LandmarkTrack` for a photo: the face's own lower face articulates ``phonemes`` in the
    pose-free canonical space (depth kept), the head sways a little (``head_motion``) and the eyes blink
    (``blinks``), all seeded by ``seed``. ``face_landmarks`` is ``(68, 3)`` (or ``(68, 2)``, depth estimated)."""
    face = np.asarray(face_landmarks, dtype=np.float64)
    canon, to_canon = to_canonical(face)  # (68, 3), (3, 4)
    motion = phonemes_to_motion(phonemes, num_frames, fps, neutral_canonical=canon[:, :2], intensity=intensity,
                                seed=seed)  # (T, 68, 2)
    depth = np.broadcast_to(canon[None, :, 2:], (num_frames, NUM_POINTS, 1))
    motion = np.concatenate([motion, depth], axis=-1)  # (T, 68, 3)
    if head_motion and num_frames:
        motion = apply_transform(head_motion_transforms(num_frames, fps, seed), motion)
    frames = from_canonical(motion, to_canon)
    phoneme_list = [[round(float(s), 3), round(float(e), 3), str(p)] for s, e, p in phonemes]
    info = {"source": "espeak-visemes", "seed": int(seed), "head_motion": bool(head_motion),
            "intensity": float(intensity), "phonemes": phoneme_list}
    track = LandmarkTrack(frames, fps, image_size, reference=face, info=info)
    if blinks and num_frames:
        track = add_blinks(track, seed=seed)
    return track

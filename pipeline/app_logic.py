"""What the web app (``app.py``) does with a landmark track, kept apart from Gradio so it can be tested alone.

One browser tab edits one :class:`EditSession`: the photo and speech it was made for, the *base* track (as the
landmark model made it, or as uploaded), the global :class:`Controls` (mouth intensity, smile, smoothing, blinks,
head motion, head turn), the per-frame edits (:class:`PointEdit` point moves and :class:`PoseKey` head-pose keyframes)
and an undo stack. Every change builds a new session (they are immutable), so a session can sit in a ``gr.State`` and
nothing is shared between users. The shown track is always recomputed from the base: ``base -> controls -> edits``
(:func:`edited_track`), so a slider can be moved back and forth without the model running again.

Drawing (:func:`draw_landmarks`, :func:`frame_view`), the preview video (:func:`write_preview`) and the
mouth-opening / blink plot against the waveform (:func:`plot_timeline`) use numpy, OpenCV and PIL only.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING

import cv2
import numpy as np
from PIL import Image, ImageDraw, ImageFont

from .audio import SAMPLE_RATE
from .canonical import from_canonical, to_canonical
from .defaults import DEFAULT_BLINK_RATE
from .edits import add_blinks, add_head_motion, eased, move_point, scale_motion, smooth, turn_head
from .landmarks import LandmarkTrack
from .regions import EYELID_PAIRS, INNER_LIP_PAIRS, NUM_POINTS
from .video import Mp4Writer

if TYPE_CHECKING:
    from .pipeline_talking_face import TalkingFaceInputs

#: Side in pixels of the zoomed face image on which points are picked and moved.
VIEW_SIZE = 512
#: Side in pixels of the landmark preview video.
PREVIEW_SIZE = 384
#: Undo steps kept per session.
MAX_UNDO = 50
#: A click selects the nearest landmark within this many view pixels.
PICK_RADIUS = 24.0
#: Smile offsets (canonical units: outer eye corners are 1 apart) at smile = 1: outward and upward.
SMILE_OUT = 0.05
SMILE_UP = 0.05
#: Mouth points the smile moves, with their weight: the corners fully, their neighbours partly.
SMILE_POINTS = {48: 1.0, 54: 1.0, 60: 1.0, 64: 1.0, 49: 0.4, 59: 0.4, 53: 0.4, 55: 0.4, 61: 0.3, 67: 0.3,
                63: 0.3, 65: 0.3}

# Contours drawn through the landmarks: (first, last, closed, colour RGB).
_CONTOURS = (
    (0, 16, False, (90, 190, 255)),  # jaw
    (17, 21, False, (90, 190, 255)),  # brows
    (22, 26, False, (90, 190, 255)),
    (27, 30, False, (90, 190, 255)),  # nose
    (31, 35, False, (90, 190, 255)),
    (36, 41, True, (110, 240, 120)),  # eyes
    (42, 47, True, (110, 240, 120)),
    (48, 59, True, (255, 90, 130)),  # lips
    (60, 67, True, (255, 90, 130)),
)
_SELECTED_COLOUR = (255, 220, 0)


# ----------------------------------------------------------------------------------------------------
# Global controls and per-frame edits


@dataclass(frozen=True)
class Controls:
    """The app's global sliders. ``intensity`` scales lip and jaw motion (1 = as generated); ``smile`` moves the
    mouth corners out and up (negative: down); ``smoothing`` is a temporal Gaussian sigma in frames;
    ``blink_rate`` adds blinks per minute (the model alone hardly blinks, so by default as often as people do);
    ``head_motion`` scales an added sway; ``yaw``, ``pitch`` and ``roll`` turn the head on every frame (degrees, on
    top of its own pose: positive yaw turns the face to the photo's right, positive pitch tilts it down, positive roll
    tilts it clockwise on screen)."""

    intensity: float = 1.0
    smile: float = 0.0
    smoothing: float = 0.0
    blink_rate: float = DEFAULT_BLINK_RATE
    head_motion: float = 1.0
    yaw: float = 0.0
    pitch: float = 0.0
    roll: float = 0.0


#: Controls that leave a track as it is (used for uploaded tracks, which already hold their motion).
NEUTRAL_CONTROLS = Controls(blink_rate=0.0, head_motion=0.0)


@dataclass(frozen=True)
class PointEdit:
    """Landmark ``point`` moved by ``(dx, dy)`` pixels on ``frame``, eased over ``radius`` frames each side."""

    frame: int
    point: int
    dx: float
    dy: float
    radius: int = 4


@dataclass(frozen=True)
class PoseKey:
    """A head-pose keyframe: the head turned by ``yaw``, ``pitch``, ``roll`` degrees more on ``frame``, eased in and
    out over ``radius`` frames each side."""

    frame: int
    yaw: float
    pitch: float
    roll: float
    radius: int = 12


#: What the app's editing tools add to a track, in order: point moves and head-pose keyframes.
Edit = PointEdit | PoseKey


def apply_smile(track: LandmarkTrack, amount: float) -> LandmarkTrack:
    """Move the mouth corners (and partly their neighbours) outward and up by ``amount`` (1 = a clear smile,
    negative = corners down), in canonical space so it means the same at any pose and photo size."""
    if amount == 0:
        return track
    canon, matrices = track.canonical()  # (T, 68, 3), (T, 3, 4)
    centre_x = canon[:, [48, 54], 0].mean(axis=1)  # (T,)
    for point, weight in SMILE_POINTS.items():
        outward = np.sign(canon[:, point, 0] - centre_x)
        canon[:, point, 0] += amount * weight * SMILE_OUT * outward
        canon[:, point, 1] -= amount * weight * SMILE_UP  # canonical y points down
    return track.replace(from_canonical(canon, matrices), smile=float(amount))


def apply_controls(base: LandmarkTrack, controls: Controls, seed: int = 0) -> LandmarkTrack:
    """The base track with the global controls applied: intensity, smile, smoothing, then blinks and head motion
    (placed at random natural times drawn from ``seed``, so a seed always gives the same ones)."""
    track = base
    if controls.intensity != 1.0:
        track = scale_motion(track, controls.intensity)
    track = apply_smile(track, controls.smile)
    if controls.smoothing > 0:
        track = smooth(track, controls.smoothing)
    if controls.blink_rate > 0:
        track = add_blinks(track, rate_per_minute=controls.blink_rate, seed=seed)
    if controls.head_motion > 0:
        track = add_head_motion(track, controls.head_motion, seed)
    if controls.yaw or controls.pitch or controls.roll:
        track = turn_head(track, (controls.yaw, controls.pitch, controls.roll))
    return track if track is not base else base.replace(base.frames.copy())


def apply_edits(track: LandmarkTrack, edits: Sequence[Edit]) -> LandmarkTrack:
    """Apply point moves and head-pose keyframes in order (each eased into its neighbouring frames)."""
    for edit in edits:
        if edit.frame >= track.num_frames:
            continue  # the track got shorter (e.g. another recording); the edit no longer applies
        if isinstance(edit, PoseKey):
            weights = eased(track.num_frames, edit.frame, edit.radius)[:, None]
            track = turn_head(track, weights * [edit.yaw, edit.pitch, edit.roll])
            continue
        target = track.points2d[edit.frame, edit.point] + np.array([edit.dx, edit.dy])
        track = move_point(track, edit.frame, edit.point, target, radius_frames=edit.radius)
    return track


def edited_track(base: LandmarkTrack, controls: Controls, edits: Sequence[Edit], seed: int = 0) -> LandmarkTrack:
    """What the user sees and renders: ``base`` with the controls, then the edits, applied."""
    track = apply_edits(apply_controls(base, controls, seed), edits)
    info = {"controls": controls.__dict__.copy(), "point_edits": sum(isinstance(e, PointEdit) for e in edits),
            "pose_keys": sum(isinstance(e, PoseKey) for e in edits)}
    return track.replace(track.frames, **info)


#: Largest difference (pixels) between an uploaded track's frames and its recorded edits re-applied, for the edits to
#: count as the track's own (the base is stored rounded to 1/1000 pixel).
RESTORE_TOLERANCE = 0.05


def exported_track(session: EditSession) -> LandmarkTrack:
    """The track the app hands out (download, render): what is shown, plus ``info["edits"]``: the base track, the
    controls, the edits (point moves and pose keyframes, in order) and the seed that make it, so that loading it again
    restores the sliders (:func:`recorded_edits`) instead of applying them a second time."""
    record = {"controls": dict(session.controls.__dict__), "point_edits": [dict(e.__dict__) for e in session.edits],
              "seed": session.seed, "base_frames": np.round(session.base.frames.astype(np.float64), 3).tolist()}
    return session.track.replace(session.track.frames, edits=record, seed=session.seed)


def recorded_edits(track: LandmarkTrack) -> tuple[LandmarkTrack, Controls, tuple[Edit, ...], int] | None:
    """``(base, controls, edits, seed)`` recorded in a track exported by :func:`exported_track`, when applying
    them to the base gives the track's own frames again; ``None`` for a track without a record, or one changed since
    (edited elsewhere: then its frames are all there is)."""
    record = track.info.get("edits")
    if not isinstance(record, dict):
        return None
    try:
        base_frames = np.asarray(record["base_frames"], dtype=np.float32)
        controls = Controls(**{key: float(value) for key, value in record["controls"].items()})
        edits = tuple(_recorded_edit(e) for e in record["point_edits"])
        seed = int(record["seed"])
    except (KeyError, TypeError, ValueError, AttributeError):
        return None
    if base_frames.shape != track.frames.shape or not np.isfinite(base_frames).all():
        return None
    base = LandmarkTrack(base_frames, track.fps, track.image_size, track.reference)
    try:
        again = edited_track(base, controls, edits, seed)
    except (ValueError, IndexError, FloatingPointError):
        return None
    if not np.all(np.abs(again.frames - track.frames) <= RESTORE_TOLERANCE):  # also False for NaN
        return None
    return base, controls, edits, seed


def _recorded_edit(record: dict) -> Edit:
    """A point move or pose keyframe from its record in ``info.edits`` (a pose keyframe has no ``point``)."""
    if "point" in record:
        return PointEdit(int(record["frame"]), int(record["point"]), float(record["dx"]), float(record["dy"]),
                         int(record["radius"]))
    return PoseKey(int(record["frame"]), float(record["yaw"]), float(record["pitch"]), float(record["roll"]),
                   int(record["radius"]))


# ----------------------------------------------------------------------------------------------------
# The zoomed face view


@dataclass(frozen=True)
class ViewBox:
    """A square of the photo (left, top, side in photo pixels) shown as ``size`` x ``size`` pixels."""

    left: float
    top: float
    side: float
    size: int = VIEW_SIZE

    @classmethod
    def around(cls, points: np.ndarray, image_size: tuple[int, int], size: int = VIEW_SIZE,
               margin: float = 0.3) -> ViewBox:
        """The square around ``points`` (``(68, 2)`` or ``(T, 68, 2)``) with ``margin`` of its side on each side,
        slid inside the photo where the photo is big enough."""
        pts = np.asarray(points, dtype=np.float64).reshape(-1, 2)
        lo, hi = pts.min(axis=0), pts.max(axis=0)
        side = max(float((hi - lo).max()) * (1 + 2 * margin), 32.0)
        left, top = (lo + hi) / 2 - side / 2
        width, height = image_size
        if side <= width:
            left = min(max(left, 0.0), width - side)
        if side <= height:
            top = min(max(top, 0.0), height - side)
        return cls(float(left), float(top), side, size)

    @property
    def scale(self) -> float:
        return self.size / self.side

    def to_view(self, points: np.ndarray) -> np.ndarray:
        return (np.asarray(points, dtype=np.float64) - [self.left, self.top]) * self.scale

    def to_image(self, points: np.ndarray) -> np.ndarray:
        return np.asarray(points, dtype=np.float64) / self.scale + [self.left, self.top]

    def crop(self, image: np.ndarray) -> np.ndarray:
        """The view of ``image`` (``(size, size, 3)`` uint8); outside the photo is dark grey."""
        s = self.scale
        matrix = np.array([[s, 0.0, -self.left * s], [0.0, s, -self.top * s]])
        if s < 1:  # shrink the part in view with area averaging first: warpAffine alone would alias
            height, width = image.shape[:2]
            x0, y0 = max(int(np.floor(self.left)), 0), max(int(np.floor(self.top)), 0)
            x1 = min(int(np.ceil(self.left + self.side)), width)
            y1 = min(int(np.ceil(self.top + self.side)), height)
            if x1 > x0 and y1 > y0:
                small = (max(1, round((x1 - x0) * s)), max(1, round((y1 - y0) * s)))
                image = cv2.resize(image[y0:y1, x0:x1], small, interpolation=cv2.INTER_AREA)
                sx, sy = small[0] / (x1 - x0), small[1] / (y1 - y0)
                matrix = np.array([[s / sx, 0.0, (x0 - self.left) * s], [0.0, s / sy, (y0 - self.top) * s]])
        return cv2.warpAffine(image, matrix, (self.size, self.size), flags=cv2.INTER_LINEAR,
                              borderMode=cv2.BORDER_CONSTANT, borderValue=(40, 40, 40))

    def resized(self, size: int) -> ViewBox:
        return replace(self, size=size)


def draw_landmarks(image: np.ndarray, points: np.ndarray, selected: int | None = None,
                   radius: float = 2.5) -> np.ndarray:
    """A copy of ``image`` with the 68 ``points`` (same pixel space) drawn as coloured contours and dots;
    the ``selected`` point is ringed in yellow and numbered."""
    out = np.ascontiguousarray(image, dtype=np.uint8).copy()
    shift = 4  # sub-pixel precision for OpenCV drawing
    fixed = np.round(np.asarray(points, dtype=np.float64) * (1 << shift)).astype(np.int32)
    thickness = max(1, int(round(radius / 2)))
    for first, last, closed, colour in _CONTOURS:
        cv2.polylines(out, [fixed[first : last + 1]], closed, colour, thickness, cv2.LINE_AA, shift)
    for first, last, _, colour in _CONTOURS:
        for p in fixed[first : last + 1]:
            cv2.circle(out, tuple(int(v) for v in p), int(radius * (1 << shift)), (20, 20, 20), -1, cv2.LINE_AA, shift)
            cv2.circle(out, tuple(int(v) for v in p), int((radius - 0.8) * (1 << shift)), colour, -1, cv2.LINE_AA,
                       shift)
    if selected is not None:
        p = tuple(int(v) for v in fixed[selected])
        cv2.circle(out, p, int(radius * 3.2 * (1 << shift)), _SELECTED_COLOUR, max(2, thickness), cv2.LINE_AA, shift)
        x, y = (np.asarray(points[selected]) + [radius * 4, -radius * 4]).astype(int)
        for colour, weight in (((20, 20, 20), 4), (_SELECTED_COLOUR, 2)):
            cv2.putText(out, str(selected), (int(x), int(y)), cv2.FONT_HERSHEY_SIMPLEX, 0.6, colour, weight,
                        cv2.LINE_AA)
    return out


def nearest_point(points: np.ndarray, xy: Sequence[float], max_distance: float = np.inf) -> int | None:
    """Index of the point of ``points`` ``(N, 2)`` nearest to ``xy``, or ``None`` if none is within
    ``max_distance``."""
    distances = np.linalg.norm(np.asarray(points, dtype=np.float64) - np.asarray(xy, dtype=np.float64), axis=-1)
    best = int(np.argmin(distances))
    return best if distances[best] <= max_distance else None


# ----------------------------------------------------------------------------------------------------
# The editing session (one per browser tab, kept in gr.State)


@dataclass(frozen=True)
class Snapshot:
    """What undo restores."""

    inputs: TalkingFaceInputs
    base: LandmarkTrack
    controls: Controls
    edits: tuple[Edit, ...]
    seed: int


@dataclass(frozen=True)
class EditSession:
    """One user's photo, speech and track being edited. Build with :func:`new_session`; change with the
    ``with_*`` functions, :func:`undo` and :func:`reset`, which return new sessions."""

    inputs: TalkingFaceInputs
    base: LandmarkTrack
    seed: int
    controls: Controls
    initial_controls: Controls
    view: ViewBox
    track: LandmarkTrack  # edited_track(base, controls, edits, seed), cached
    edits: tuple[Edit, ...] = ()
    history: tuple[Snapshot, ...] = field(default=(), repr=False)
    future: tuple[Snapshot, ...] = field(default=(), repr=False)  # what redo brings back, nearest last
    label: str = "talking-face"  # what the session's files are called (the photo, the speech and the seed)
    selected: int | None = None

    @property
    def can_undo(self) -> bool:
        return bool(self.history)


def new_session(inputs: TalkingFaceInputs, base: LandmarkTrack, controls: Controls, seed: int = 0,
                edits: tuple[Edit, ...] = (), label: str = "talking-face") -> EditSession:
    """A session editing ``base`` (whose frames are in the photo's pixel space) with ``controls`` and point ``edits``
    applied; ``label`` names its files."""
    view = ViewBox.around(base.points2d, inputs.image_size)
    track = edited_track(base, controls, edits, seed)
    return EditSession(inputs, base, seed, controls, controls, view, track, tuple(edits), label=label)


def _snapshot(session: EditSession) -> Snapshot:
    return Snapshot(session.inputs, session.base, session.controls, session.edits, session.seed)


def _change(session: EditSession, base: LandmarkTrack | None = None, controls: Controls | None = None,
            edits: tuple[Edit, ...] | None = None, inputs: TalkingFaceInputs | None = None,
            record: bool = True) -> EditSession:
    """The session with these parts replaced; ``record``: a new change, undoable, which ends what redo could bring
    back."""
    inputs = session.inputs if inputs is None else inputs
    base = session.base if base is None else base
    controls = session.controls if controls is None else controls
    edits = session.edits if edits is None else edits
    history = session.history
    if record:
        history = (history + (_snapshot(session),))[-MAX_UNDO:]
        session = replace(session, future=())
    track = edited_track(base, controls, edits, session.seed)
    view = session.view if base is session.base else ViewBox.around(base.points2d, inputs.image_size)
    return replace(session, inputs=inputs, base=base, controls=controls, edits=edits, track=track, view=view,
                   history=history, selected=None)


def with_controls(session: EditSession, controls: Controls) -> EditSession:
    """The session with new global controls (undoable); unchanged controls return the session itself."""
    if controls == session.controls:
        return session
    return _change(session, controls=controls)


def with_point_moved(session: EditSession, frame: int, point: int, target: Sequence[float],
                     radius: int = 4) -> EditSession:
    """Move ``point`` on ``frame`` of the shown track to ``target`` (photo pixels), easing into ``radius``
    frames each side (undoable)."""
    if not 0 <= frame < session.track.num_frames:
        raise IndexError(f"frame {frame} is outside the track (0..{session.track.num_frames - 1})")
    if not 0 <= point < NUM_POINTS:
        raise IndexError(f"point {point} is not one of the 68 landmarks")
    dx, dy = np.asarray(target, dtype=np.float64) - session.track.points2d[frame, point]
    edit = PointEdit(int(frame), int(point), float(dx), float(dy), int(radius))
    return _change(session, edits=session.edits + (edit,))


def with_pose_key(session: EditSession, frame: int, angles: Sequence[float], radius: int = 12) -> EditSession:
    """Turn the head on ``frame`` by ``angles`` (yaw, pitch, roll degrees) more than the shown track has it, easing
    in and out over ``radius`` frames each side (undoable)."""
    if not 0 <= frame < session.track.num_frames:
        raise IndexError(f"frame {frame} is outside the track (0..{session.track.num_frames - 1})")
    yaw, pitch, roll = (float(a) for a in angles)
    if not all(np.isfinite((yaw, pitch, roll))):
        raise ValueError("pose keyframe angles must be finite numbers")
    return _change(session, edits=session.edits + (PoseKey(int(frame), yaw, pitch, roll, int(radius)),))


def with_base(session: EditSession, base: LandmarkTrack, controls: Controls = NEUTRAL_CONTROLS,
              inputs: TalkingFaceInputs | None = None, edits: tuple[Edit, ...] = (),
              seed: int | None = None) -> EditSession:
    """Replace the base track (e.g. an uploaded one, already fitted to the photo of ``inputs``, by default the
    session's own) with ``controls`` and point ``edits`` on it (none by default), drawing blinks and head motion from
    ``seed`` (by default the session's); undoable, with the photo and speech."""
    if seed is not None:
        session = replace(session, seed=int(seed))
    changed = _change(session, base=base, controls=controls, edits=tuple(edits), inputs=inputs)
    return replace(changed, initial_controls=controls)


def undo(session: EditSession) -> EditSession:
    """The session as it was before its last change (the session itself when there is nothing to undo); redo
    brings the change back."""
    if not session.history:
        return session
    last = session.history[-1]
    future = (session.future + (_snapshot(session),))[-MAX_UNDO:]
    return _change(replace(session, history=session.history[:-1], future=future, seed=last.seed), last.base,
                   last.controls, last.edits, last.inputs, record=False)


def redo(session: EditSession) -> EditSession:
    """The change the last undo took back (the session itself when there is none)."""
    if not session.future:
        return session
    nearest = session.future[-1]
    history = (session.history + (_snapshot(session),))[-MAX_UNDO:]
    return _change(replace(session, history=history, future=session.future[:-1], seed=nearest.seed), nearest.base,
                   nearest.controls, nearest.edits, nearest.inputs, record=False)


def reset(session: EditSession) -> EditSession:
    """Drop all point edits and pose keyframes and return the controls to their values when the track was made
    (undoable)."""
    if not session.edits and session.controls == session.initial_controls:
        return session
    return _change(session, controls=session.initial_controls, edits=())


def with_selection(session: EditSession, point: int | None) -> EditSession:
    return replace(session, selected=point)


def click(session: EditSession, frame: int, view_xy: Sequence[float], radius: int = 4) -> tuple[EditSession, str]:
    """Handle a click at ``view_xy`` (pixels of the zoomed face view) on ``frame``: with no point selected, select
    the nearest landmark; with one selected, move it there (clicking on it again deselects it).
    Returns the new session and a one-line message for the user."""
    frame = int(min(max(frame, 0), session.track.num_frames - 1))
    points = session.view.to_view(session.track.points2d[frame])
    if session.selected is None:
        point = nearest_point(points, view_xy, PICK_RADIUS)
        if point is None:
            return session, "No landmark there: click on one of the dots to select it."
        return with_selection(session, point), (
            f"Point {point} ({point_name(point)}) selected on frame {frame}: click where it should go "
            "(click it again to cancel)."
        )
    point = session.selected
    if np.linalg.norm(points[point] - np.asarray(view_xy, dtype=np.float64)) < 4.0:
        return with_selection(session, None), f"Point {point} deselected."
    target = session.view.to_image(np.asarray(view_xy, dtype=np.float64))
    moved = with_point_moved(session, frame, point, target, radius)
    span = f"frames {max(0, frame - radius)}-{min(moved.track.num_frames - 1, frame + radius)}"
    return moved, f"Moved point {point} ({point_name(point)}) on frame {frame}, eased over {span}."


def point_name(point: int) -> str:
    """A short human name for a landmark index."""
    from .regions import REGIONS

    for name, indices in REGIONS.items():
        if point in indices:
            return name.replace("_", " ")
    return "landmark"


def frame_view(session: EditSession, frame: int) -> np.ndarray:
    """The zoomed face view of the photo with ``frame``'s landmarks drawn (the selected one ringed)."""
    frame = int(min(max(frame, 0), session.track.num_frames - 1))
    background = session.view.crop(session.inputs.image)
    return draw_landmarks(background, session.view.to_view(session.track.points2d[frame]), session.selected,
                          radius=3.0)


# ----------------------------------------------------------------------------------------------------
# Preview video and timeline plot


def write_preview(image: np.ndarray, track: LandmarkTrack, audio: np.ndarray | None, path: str | Path,
                  view: ViewBox, size: int = PREVIEW_SIZE,
                  progress: Callable[[int, int], None] | None = None, chunk: int = 64) -> Path:
    """An mp4 (H.264 + AAC) of the landmark track drawn over the still photo (zoomed on the face), with the
    speech. Returns ``path``."""
    view = view.resized(size)
    background = view.crop(image)
    points = view.to_view(track.points2d)  # (T, 68, 2)
    radius = max(1.5, 2.5 * size / VIEW_SIZE)
    with Mp4Writer(path, fps=track.fps, audio=audio, sample_rate=SAMPLE_RATE) as writer:
        for start in range(0, track.num_frames, chunk):
            batch = points[start : start + chunk]
            writer.write(np.stack([draw_landmarks(background, p, radius=radius) for p in batch]))
            if progress is not None:
                progress(min(start + chunk, track.num_frames), track.num_frames)
    return Path(path)


def mouth_opening(track: LandmarkTrack) -> np.ndarray:
    """Per-frame gap between the inner lips ``(T,)``, in inter-ocular units (pose-free)."""
    canon, _ = track.canonical()
    upper, lower = zip(*INNER_LIP_PAIRS, strict=False)
    return np.linalg.norm(canon[:, list(lower)] - canon[:, list(upper)], axis=-1).mean(axis=1)


def eye_openness(track: LandmarkTrack) -> np.ndarray:
    """Per-frame eyelid gap ``(T,)`` relative to the face at rest (1 = as open as at rest, 0 = shut)."""
    canon, _ = track.canonical()
    rest, _ = to_canonical(track.neutral)
    upper, lower = zip(*EYELID_PAIRS, strict=False)
    gap = np.linalg.norm(canon[:, list(lower)] - canon[:, list(upper)], axis=-1).mean(axis=1)
    rest_gap = float(np.linalg.norm(rest[list(lower)] - rest[list(upper)], axis=-1).mean())
    return gap / max(rest_gap, 1e-6)


_PLOT_BG = (255, 255, 255)
_GRID = (228, 228, 232)
_TEXT = (60, 60, 70)
_WAVE = (200, 204, 214)
_MOUTH = (220, 50, 90)
_EYES = (40, 110, 220)
_CURSOR = (255, 160, 0)
_POSE_KEY = (30, 160, 90)
_POINT_EDIT = (150, 70, 200)


def _font(size: int) -> ImageFont.ImageFont:
    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow without FreeType
        return ImageFont.load_default()


def plot_timeline(audio: np.ndarray, track: LandmarkTrack, frame: int | None = None,
                  width: int = 960, height: int = 260, edits: Sequence[Edit] = ()) -> np.ndarray:
    """An ``(height, width, 3)`` uint8 chart: the speech waveform (grey) with the mouth opening (red) over it,
    the eye openness (blue; dips are blinks) below, seconds along the bottom, ``frame`` marked, and the frames of the
    ``edits`` ticked along the top (pose keyframes as green triangles, point moves as purple dots)."""
    image = Image.new("RGB", (width, height), _PLOT_BG)
    draw = ImageDraw.Draw(image)
    font = _font(12)
    left, right, top, bottom = 44, width - 12, 24, height - 22
    split = top + int((bottom - top) * 0.68)  # mouth panel above, eyes panel below
    duration = max(track.duration, len(audio) / SAMPLE_RATE, 1e-3)
    x_of = lambda t: left + (right - left) * np.asarray(t) / duration  # noqa: E731

    # time grid
    step = next(s for s in (0.5, 1, 2, 5, 10, 15, 30, 60, 120, 300, 600) if duration / s <= 12)
    for t in np.arange(0, duration + 1e-9, step):
        x = float(x_of(t))
        draw.line([(x, top), (x, bottom)], fill=_GRID)
        draw.text((x, bottom + 4), f"{t:g}s", fill=_TEXT, font=font, anchor="mt")
    draw.line([(left, split), (right, split)], fill=_GRID)

    # waveform: min/max per pixel column in the top panel
    mid, half = (top + split) / 2, (split - top) / 2 - 2
    if len(audio):
        columns = np.linspace(0, len(audio), right - left + 1).astype(int)
        peak = max(float(np.abs(audio).max()), 1e-6)
        for i in range(right - left):
            chunk = audio[columns[i] : max(columns[i + 1], columns[i] + 1)]
            lo, hi = float(chunk.min()) / peak, float(chunk.max()) / peak
            draw.line([(left + i, mid - hi * half), (left + i, mid - lo * half)], fill=_WAVE)

    times = (np.arange(track.num_frames) + 0.5) / track.fps
    xs = x_of(times)
    opening = mouth_opening(track)
    scale = max(0.25, float(opening.max()) * 1.1)
    ys = split - 2 - (split - top - 4) * np.clip(opening / scale, 0, 1)
    draw.line(list(zip(xs.tolist(), ys.tolist(), strict=False)), fill=_MOUTH, width=2, joint="curve")
    eyes = eye_openness(track)
    ys = bottom - 2 - (bottom - split - 6) * np.clip(eyes / 1.3, 0, 1)
    draw.line(list(zip(xs.tolist(), ys.tolist(), strict=False)), fill=_EYES, width=2, joint="curve")

    draw.text((4, (top + split) / 2), "mouth", fill=_MOUTH, font=font, anchor="lm")
    draw.text((4, (split + bottom) / 2), "eyes", fill=_EYES, font=font, anchor="lm")
    x = right  # legend, right-aligned above the chart
    for label, colour in (("eye openness (dips are blinks)", _EYES), ("mouth opening", _MOUTH), ("speech", _WAVE)):
        x -= draw.textlength(label, font=font)
        draw.text((x, top / 2), label, fill=_TEXT, font=font, anchor="lm")
        draw.line([(x - 18, top / 2), (x - 4, top / 2)], fill=colour, width=3)
        x -= 34
    for edit in edits:
        if edit.frame < track.num_frames:
            x = float(x_of((edit.frame + 0.5) / track.fps))
            if isinstance(edit, PoseKey):
                draw.polygon([(x - 5, top - 9), (x + 5, top - 9), (x, top - 1)], fill=_POSE_KEY)
            else:
                draw.ellipse([x - 3, top - 8, x + 3, top - 2], fill=_POINT_EDIT)
    if frame is not None and track.num_frames:
        x = float(x_of((min(max(frame, 0), track.num_frames - 1) + 0.5) / track.fps))
        draw.line([(x, top), (x, bottom)], fill=_CURSOR, width=2)
        draw.text((min(x + 4, right - 60), top + 2), f"frame {frame}", fill=_CURSOR, font=font)
    draw.rectangle([left, top, right, bottom], outline=(200, 200, 206))
    return np.asarray(image)


# ----------------------------------------------------------------------------------------------------
# Render time estimates


#: Seconds a frame at 256², encoding and streaming included, before a server has measured its own: the warp renderer
#: as the app ran it with the shipped checkpoint on the 2-core CPU host (181 frames in 3.5 s), the diffusion renderer
#: likewise (181 frames in 15.6-16.3 s; README, "Threads").
DEFAULT_SECONDS_PER_FRAME = {"warp": 0.02, "diffusion": 0.09}


class RenderRates:
    """How long each renderer takes a frame on this server (at 256²; other sizes scale by area), from what it
    has rendered so far: the estimate shown before a render starts. Shared by the server's requests (it holds
    measurements, nothing of any user's), so it is thread-safe."""

    def __init__(self, seconds_per_frame: dict[str, float] | None = None, weight: float = 0.3) -> None:
        self._rates = dict(DEFAULT_SECONDS_PER_FRAME if seconds_per_frame is None else seconds_per_frame)
        self._weight = weight  # of each new measurement in the running average
        self._lock = threading.Lock()

    def estimate(self, renderer: str, size: int, frames: int) -> float:
        """Seconds ``frames`` frames of ``renderer`` at ``size``² should take."""
        with self._lock:
            return self._rates[renderer] * (size / 256) ** 2 * frames

    def record(self, renderer: str, size: int, frames: int, seconds: float) -> None:
        """``frames`` frames of ``renderer`` at ``size``² took ``seconds``."""
        if frames <= 0 or not seconds > 0:
            return
        rate = seconds / frames / (size / 256) ** 2
        with self._lock:
            self._rates[renderer] += self._weight * (rate - self._rates[renderer])


def duration_text(seconds: float) -> str:
    """``"about 40 s"``, ``"about 3 min"``: a time estimate in words."""
    if seconds < 1.5:
        return "about a second"
    if seconds < 90:
        return f"about {seconds:.0f} s"
    return f"about {seconds / 60:.0f} min"

"""Talking face web app: a portrait photo and a speech recording in; an editable landmark track and a lip-synced
video out.

Run ``python app.py`` (``GRADIO_SERVER_NAME`` / ``GRADIO_SERVER_PORT`` choose the address; the checkpoint comes
from ``$TALKING_FACE_CHECKPOINT``, a folder or Hub repo id, else ``checkpoints/``).

API endpoints (``gradio_client``; files with ``handle_file``)::

    from gradio_client import Client, handle_file
    client = Client("http://127.0.0.1:7860/")
    track_json, preview_mp4, plot_png, frame_png, frame, status, *sliders = client.predict(
        handle_file("photo.jpg"), handle_file("speech.wav"),
        0, 2.0, 6,                     # seed, guidance, sampling steps
        1.0, 0.0, 0.0, 17.0, 1.0,      # intensity, smile, smoothing, blinks/min, head motion
        0.0, 0.0, 0.0,                 # head turn: yaw, pitch, roll (degrees, added on every frame)
        None,                          # or handle_file("clip.mp4"): dub, head and eyes from that video
        0.9,                           # mouth share from the voice regressor (gradio_client fills in the default)
        api_name="/landmarks")
    video, video_file, status = client.predict(
        handle_file("photo.jpg"), handle_file("speech.wav"), handle_file(track_json),
        "Fast warp", 256, False, api_name="/render")   # renderer, size, whole photo

* ``/landmarks`` (photo, speech, seed, guidance, steps, intensity, smile, smoothing, blink_rate, head_motion, yaw,
  pitch, roll, driving video or None, mouth blend 0..1: gradio_client fills in the checkpoint's when left out, the
  raw HTTP API needs it) -> (track JSON file, landmark preview mp4 with audio, timeline plot png, frame png, frame
  slider update ``{"value", "maximum"}``, status, the eight slider values). The same seed gives the same track. With
  a driving video, the head pose, eyes and brows come from it and mouth and jaw from the speech
  (``TalkingFacePipeline.dub_landmarks``); its own head motion and blinks replace the sliders' (set to 0).
* ``/render`` (photo, speech, track JSON file, renderer, size 256|512, whole photo) -> (the video, the mp4 to
  download, status). In the page the video plays while it renders, chunk by chunk, when the server has the ffmpeg
  and ffprobe programs (:data:`LIVE_RENDER`). Any track in the documented JSON schema works (edited elsewhere, or
  made for another face: it is retargeted).
* ``/apply_controls`` (intensity, smile, smoothing, blink_rate, head_motion, yaw, pitch, roll, frame) re-applies the
  global controls to the track of the same client's session (after ``/landmarks``; the model does not run again) ->
  (track JSON, preview, plot, frame png, status). ``/pose_keyframe`` (frame, ease radius in frames, yaw, pitch,
  roll) turns the head on that frame by so much more, eased in and out -> the same outputs. ``/load_track`` (track
  JSON, photo, speech, frame) makes a track the session's base -> the same outputs as ``/landmarks`` and the eight
  slider values: a track this app exported comes back with its base, sliders, point edits and pose keyframes
  (``info.edits``), so nothing is applied twice; any other track is taken as it is, with the sliders at neutral.

Each browser tab keeps its own session (photo, speech, base track, controls, edits, undo stack, selected
point) in a ``gr.State``; see :mod:`pipeline.app_logic`.
"""

try:  # ZeroGPU Spaces: `spaces` must be imported before torch (and anything that imports it)
    import spaces
except ImportError:
    spaces = None

import contextlib
import dataclasses
import functools
import inspect
import math
import os
import random
import re
import shutil
import signal
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import gradio as gr
import torch

from pipeline.app_logic import (
    NEUTRAL_CONTROLS,
    Controls,
    EditSession,
    PointEdit,
    RenderRates,
    click,
    duration_text,
    exported_track,
    frame_view,
    new_session,
    plot_timeline,
    recorded_edits,
    redo,
    reset,
    undo,
    with_base,
    with_controls,
    with_pose_key,
    write_preview,
)
from pipeline.audio import load_audio
from pipeline.defaults import DEFAULT_BLINK_RATE, DEFAULT_STEPS
from pipeline.errors import InputError
from pipeline.images import load_image
from pipeline.landmarks import LandmarkTrack, belongs_to
from pipeline.loading import load_pipeline
from pipeline.pipeline_talking_face import RenderStep
from pipeline.video import extract_track

ROOT = Path(__file__).parent
EXAMPLES = [[str(ROOT / "examples" / "astronaut.png"), str(ROOT / "examples" / "speech.wav")]]
#: The renderers' names in the page -> the pipeline's (the diffusion one only when the checkpoint has it).
WARP = "Fast warp"
DIFFUSION = "Diffusion (lips repainted; slow without a GPU)"
RENDERER_NAMES = {WARP: "warp", DIFFUSION: "diffusion"}
#: Generate and render requests run this many at a time (each uses the model or all CPU cores).
PIPELINE_CONCURRENCY = int(os.environ.get("TALKING_FACE_CONCURRENCY", 1))
#: Generated files (previews, tracks, videos) are deleted this many seconds after they were made.
CACHE_SECONDS = 3600
#: Largest upload the server takes (Gradio refuses bigger files before they reach the app).
MAX_UPLOAD = os.environ.get("TALKING_FACE_MAX_UPLOAD", "200mb")
#: Longest speech one request of the shared app may animate (the library and CLI take up to MAX_AUDIO_SECONDS):
#: one request cannot hold the pipeline for long while others wait.
APP_MAX_SECONDS = float(os.environ.get("TALKING_FACE_APP_MAX_SECONDS", 300))
#: Whether the video plays while it renders: Gradio's streaming video output needs the ffmpeg and ffprobe programs
#: (on Spaces, ``packages.txt`` installs them); without them the video appears when it is complete.
LIVE_RENDER = bool(shutil.which("ffmpeg") and shutil.which("ffprobe"))
#: What the diffusion renderer costs, shown where a user picks it: the app's own render of the example on the 2-core
#: host, encoding and streaming included (181 frames in 15.6-16.3 s; README, "Threads").
DIFFUSION_COST = ("Diffusion: about 0.09 s a frame on a 2-core CPU, so about 2 s for each second of video; the "
                  "render shows its estimate before it starts")

INSTRUCTIONS = (
    "**1.** Add a portrait and some speech (or pick the example) → **2.** *Generate landmarks* and check the "
    "preview → **3.** tweak the sliders, or click a dot on the frame and then where it should go → "
    "**4.** *Render video*."
)


def _gpu(duration: Callable[..., int]) -> Callable[[Callable], Callable]:
    """``@spaces.GPU(duration=...)`` on Hugging Face Spaces; does nothing elsewhere."""
    if spaces is None:
        return lambda fn: fn
    return spaces.GPU(duration=duration)


def _user_errors(fn: Callable) -> Callable:
    """Show problems with the user's input as a readable message in the page (no traceback); works for plain
    functions and generators."""
    if inspect.isgeneratorfunction(fn):

        @functools.wraps(fn)
        def generator_wrapper(*args, **kwargs):
            try:
                yield from fn(*args, **kwargs)
            except InputError as exc:
                raise gr.Error(str(exc), print_exception=False) from None

        return generator_wrapper

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except InputError as exc:
            raise gr.Error(str(exc), print_exception=False) from None

    return wrapper


class _SnapshotSet(set):
    """A set whose iteration walks a copy (``set.copy`` runs without releasing the GIL), so Gradio's cleanup
    thread can walk it while requests add to it."""

    def __iter__(self) -> Iterator[str]:
        return iter(set.copy(self))


class OutputFiles:
    """The files the app writes (tracks, previews, videos), for the whole server. ``paths`` joins the Blocks'
    ``temp_file_sets``, so ``delete_cache`` and closing the app remove every output, also those of requests that
    failed or were cancelled before Gradio saw them."""

    def __init__(self) -> None:
        self.paths: set[str] = _SnapshotSet()

    def new(self, name: str) -> Path:
        """A new empty file called ``name`` (what the user's download is called) for one request's output, in a
        folder of its own inside Gradio's cache."""
        folder = Path(gr.utils.get_upload_folder()) / "talking-face"
        folder.mkdir(parents=True, exist_ok=True)
        path = Path(tempfile.mkdtemp(dir=folder)) / name
        path.touch()
        return self.add(path)

    def add(self, path: Path) -> Path:
        """Count ``path`` (a file written in a folder of :meth:`new`) among the outputs."""
        self.paths.add(str(path))
        return path


T = TypeVar("T")


def _upload_path(payload: Any) -> str | None:
    """The local file of an input the handlers take unprocessed (``preprocess=False``): Gradio's file payload
    (``{"path": ...}``) or a path. Gradio then decodes nothing: our own loaders check every file first."""
    if payload is None:
        return None
    return payload.get("path") if isinstance(payload, dict) else str(payload)


def _discard_upload(path: str | None) -> None:
    """Delete a refused upload at once (only files in Gradio's upload cache: the examples stay)."""
    if path:
        cache = Path(gr.utils.get_upload_folder()).resolve()
        if cache in Path(path).resolve().parents:
            Path(path).unlink(missing_ok=True)


def _label(photo: Any, speech: Any, seed: Any) -> str:
    """``<photo>-<speech>-<seed>``, from the uploads' own names, in letters, digits, ``_`` and ``-`` only."""
    def stem(payload: Any) -> str:
        name = payload.get("orig_name") if isinstance(payload, dict) else None
        name = Path(str(name or _upload_path(payload) or "input")).stem
        return re.sub(r"[^A-Za-z0-9_-]+", "_", name).strip("_")[:40] or "input"

    parts = [stem(photo), stem(speech)] + ([str(int(seed))] if isinstance(seed, int) else [])
    return "-".join(parts)


def _load_upload(payload: Any, load: Callable[[str], T]) -> T:
    """``load(path)`` of an unprocessed upload; a file it refuses (unreadable, too big, not what it claims to be) is
    deleted and the reason shown."""
    path = _upload_path(payload)
    try:
        return load(path)
    except InputError:
        _discard_upload(path)
        raise


def _read_inputs(pipe, photo: Any, speech: Any):
    """The prepared photo and speech of one request, each file checked by our loaders before anything decodes it."""
    image = _load_upload(photo, load_image)
    samples = _load_upload(speech, functools.partial(load_audio, max_seconds=APP_MAX_SECONDS))
    return pipe.prepare(image, samples)


def _holding(slots: threading.BoundedSemaphore, steps: Iterator[T]) -> Iterator[T]:
    """``steps`` run while holding one of the pipeline's ``slots``, released when it ends or is closed (Gradio
    closes a cancelled generator as soon as its current step returns), so a cancelled request cannot keep
    working beside the next one."""
    with slots:
        try:
            yield from steps
        finally:
            steps.close()


def _renderers(pipe) -> list[str]:
    """The renderers offered in the page: the warp renderer always (the default), the diffusion renderer when
    the checkpoint has one."""
    return [name for name, kind in RENDERER_NAMES.items() if kind in pipe.renderers]


def _landmark_seconds(inputs, steps: int, *_: Any) -> int:
    """GPU time to ask Spaces for: grows with the recording and the number of sampling steps."""
    return int(20 + len(inputs.audio) / 16000 * steps / 10)


def _render_seconds(inputs, track, size: int, full: bool, renderer: str, *_: Any) -> int:
    """GPU time to ask Spaces for, generously: warp at 50 frames a second at 256² and a quarter of that at 512²
    (bench/speed.py measures 75-150 on a CPU core); diffusion 10 frames a second more (no GPU timing measured)."""
    per_frame = (size / 256) ** 2 / 50 + (0.1 if renderer == "diffusion" else 0.0)
    return int(20 + inputs.num_frames * per_frame)


#: The global sliders, in the order of the page and the API: one per :class:`Controls` field.
CONTROL_NAMES = tuple(f.name for f in dataclasses.fields(Controls))


def _controls(*values: float) -> Controls:
    return Controls(*(float(v) for v in values))


def _preview_outputs(outputs: OutputFiles, session: EditSession, frame: int,
                     progress: gr.Progress | None = None) -> tuple:
    """(track JSON file, preview mp4, plot, frame image) for the session's current track."""
    track_path = exported_track(session).save(outputs.new(f"{session.label}.json"))
    report = None if progress is None else (lambda done, total: progress((done, total), desc="preview"))
    preview = write_preview(session.inputs.image, session.track, session.inputs.audio,
                            outputs.new(f"{session.label}-preview.mp4"), session.view, progress=report)
    plot = plot_timeline(session.inputs.audio, session.track, frame, edits=session.edits)
    return str(track_path), str(preview), plot, frame_view(session, frame)


def _slider_values(controls: Controls) -> list[gr.Slider]:
    """The global sliders showing ``controls``."""
    return [gr.Slider(value=getattr(controls, name)) for name in CONTROL_NAMES]


def frame_slider_update(session: EditSession, frame: int) -> gr.Slider:
    return gr.Slider(value=frame, maximum=session.track.num_frames - 1)


def _status(session: EditSession, note: str = "") -> str:
    track = session.track
    moves = sum(isinstance(e, PointEdit) for e in session.edits)
    keys = len(session.edits) - moves
    edits = (f", {moves} point edit(s)" if moves else "") + (f", {keys} pose keyframe(s)" if keys else "")
    text = f"{track.num_frames} frames at {track.fps:g} fps ({track.duration:.1f} s){edits}."
    return f"{note} {text}".strip()


def create_demo(pipe) -> gr.Blocks:
    """The app around a loaded :class:`~pipeline.TalkingFacePipeline` (loaded once, shared read-only)."""
    renderers = _renderers(pipe)
    outputs = OutputFiles()
    rates = RenderRates()  # seconds a frame, as measured on this server: the estimates shown before a render
    slots = threading.BoundedSemaphore(PIPELINE_CONCURRENCY)  # bounds the work even when Gradio lets go of a job

    @_gpu(_landmark_seconds)
    def sample_track(inputs, steps: int, guidance: float, seed: int, driving: LandmarkTrack | None,
                     mouth_blend: float) -> LandmarkTrack:
        """The model's track (head sway and blinks come from the sliders), or with a driving video's track the
        dubbed one (head, eyes and brows from the video, mouth and jaw from the model)."""
        generator = torch.Generator().manual_seed(int(seed) % 2**63)
        if driving is not None:
            return pipe.dub_landmarks(inputs, driving, int(steps), float(guidance), generator, mouth_blend=mouth_blend)
        return pipe.generate_landmarks(inputs, int(steps), float(guidance), generator, head_motion=0.0,
                                       blink_rate=0.0, mouth_blend=mouth_blend)

    @_gpu(_render_seconds)
    def render_video(inputs, track: LandmarkTrack, size: int, full: bool, renderer: str, path: str,
                     segments: str | None) -> Iterator[RenderStep]:
        yield from pipe.render_chunks(inputs, track, path, size=int(size), full=bool(full), renderer=renderer,
                                      generator=torch.Generator().manual_seed(0), segments=segments)

    def checked(component: gr.components.Component, value: Any) -> Any:
        """What Gradio's own preprocessing gives for a number or slider (bounds, precision), plus finiteness: the
        handlers that take files run with ``preprocess=False`` so that the files reach our checks undecoded, and
        check their other inputs here. (``component`` is one of the page's, defined below.)"""
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            raise gr.Error(f"{component.label} must be a number, not {str(value)[:20]!r}.", print_exception=False)
        return component.preprocess(value)

    @_user_errors
    def generate(photo, speech, seed, guidance, steps, intensity, smile, smoothing, blink_rate, head_motion, yaw,
                 pitch, roll, driving_video=None, lip_sync=None, progress=gr.Progress(track_tqdm=True)):
        slider_values = (intensity, smile, smoothing, blink_rate, head_motion, yaw, pitch, roll)
        if photo is None or speech is None:
            raise gr.Error("Add a portrait photo and a speech recording first.", print_exception=False)
        seed, guidance, steps, *slider_values = (
            checked(c, v) for c, v in zip(numeric_inputs, (seed, guidance, steps, *slider_values), strict=True))
        lip_sync = pipe.config.mouth_blend if lip_sync is None else checked(mouth_blend, lip_sync)
        with slots:
            progress(0, desc="reading the photo and the speech")
            inputs = _read_inputs(pipe, photo, speech)
            if inputs.face.message:
                gr.Info(inputs.face.message)
            driving = None
            if driving_video is not None:
                progress(0, desc="tracking the driving video")
                driving = _load_upload(driving_video, lambda path: extract_track(
                    path, pipe.face_analyzer, max_seconds=inputs.num_frames / inputs.fps)[0])  # no work past the speech
            progress(0, desc="landmarks")
            seed = int(seed or 0)
            base = sample_track(inputs, int(steps), float(guidance), seed, driving, float(lip_sync))
            base = base.replace(base.frames, seed=seed)  # the track records the seed the page shows
            controls = _controls(*slider_values)
            if driving is not None:  # the video brings its own head motion and blinks
                controls = dataclasses.replace(controls, blink_rate=0.0, head_motion=0.0)
            session = new_session(inputs, base, controls, seed=seed, label=_label(photo, speech, seed))
            frame = 0
            views = _preview_outputs(outputs, session, frame, progress)
        note = "Dubbed (head, eyes and brows from the video):" if driving is not None else "Landmarks ready:"
        return (session, *views, frame_slider_update(session, frame), _status(session, note),
                *_slider_values(session.controls))

    def _require(session: EditSession | None) -> EditSession:
        if session is None:
            raise gr.Error("Generate landmarks (or upload a track) first.", print_exception=False)
        return session

    def _clamp(session: EditSession, frame) -> int:
        return int(min(max(int(frame or 0), 0), session.track.num_frames - 1))

    @_user_errors
    def apply_controls(session, intensity, smile, smoothing, blink_rate, head_motion, yaw, pitch, roll, frame):
        session = _require(session)
        changed = with_controls(session, _controls(intensity, smile, smoothing, blink_rate, head_motion, yaw, pitch,
                                                   roll))
        if changed is session:
            return (session,) + (gr.skip(),) * 5
        frame = _clamp(changed, frame)
        return (changed, *_preview_outputs(outputs, changed, frame), _status(changed, "Controls applied:"))

    @_user_errors
    def load_track(session, track_file, photo, speech, frame, progress=gr.Progress(track_tqdm=True)):
        if track_file is None:
            return (session,) + (gr.skip(),) * 11
        if isinstance(frame, bool) or not isinstance(frame, (int, float)) or not math.isfinite(frame):
            frame = 0  # the frame slider's range changes per session: _clamp bounds it to this track
        track = _load_upload(track_file, LandmarkTrack.load)
        if (photo is None or speech is None) and session is None:
            raise gr.Error("Add the portrait and the speech the track is for, then upload it again.",
                           print_exception=False)
        with slots:
            if photo is not None and speech is not None:
                progress(0, desc="reading the photo and the speech")
                inputs = _read_inputs(pipe, photo, speech)
            else:
                inputs = session.inputs
            ours = belongs_to(track, inputs.points3d, inputs.image_size) and track.num_frames == inputs.num_frames
            restored = recorded_edits(track) if ours else None
            if restored is not None:  # exported by this app: its base, sliders and point edits come back
                base, controls, edits, seed = restored
                note = "Track loaded with its edits (the sliders show them; undo restores the previous track):"
            else:  # made or changed elsewhere: its frames as they are, sliders at neutral, so nothing stacks
                base = LandmarkTrack(pipe.fitted_track(track, inputs).frames, inputs.fps, inputs.image_size,
                                     inputs.points3d, {**track.info, "uploaded": True})
                controls, edits, seed = NEUTRAL_CONTROLS, (), 0
                note = "Track loaded as it is, sliders at neutral (undo restores the previous track):"
            if session is None:
                session = new_session(inputs, base, controls, seed, edits, label=_label(photo, speech, seed))
            else:
                session = with_base(session, base, controls, inputs, edits, seed)
            frame = _clamp(session, frame)
            views = _preview_outputs(outputs, session, frame, progress)
        return (session, *views, frame_slider_update(session, frame), _status(session, note),
                *_slider_values(session.controls))

    def show_frame(session, frame):
        if session is None:
            return gr.skip(), gr.skip()
        frame = _clamp(session, frame)
        return frame_view(session, frame), plot_timeline(session.inputs.audio, session.track, frame,
                                                         edits=session.edits)

    def on_click(session, frame, radius, evt: gr.SelectData):
        session = _require(session)
        frame = _clamp(session, frame)
        changed, message = click(session, frame, evt.index[:2], int(radius))
        if changed.track is session.track:  # only the selection changed
            return changed, gr.skip(), gr.skip(), gr.skip(), frame_view(changed, frame), message
        return (changed, *_preview_outputs(outputs, changed, frame), _status(changed, message))

    @_user_errors
    def on_pose_key(session, frame, key_radius, key_yaw, key_pitch, key_roll):
        session = _require(session)
        frame, key_radius = _clamp(session, frame), int(key_radius)
        changed = with_pose_key(session, frame, (key_yaw, key_pitch, key_roll), key_radius)
        last = changed.track.num_frames - 1
        note = (f"Pose keyframe on frame {frame}: yaw {key_yaw:+g}°, pitch {key_pitch:+g}°, roll {key_roll:+g}°, "
                f"eased over frames {max(0, frame - key_radius)}-{min(last, frame + key_radius)}.")
        return (changed, *_preview_outputs(outputs, changed, frame), _status(changed, note))

    def _restore(session: EditSession, changed: EditSession, frame, note: str):
        sliders = _slider_values(changed.controls)
        if changed is session:
            return (session, *(gr.skip(),) * 5, f"Nothing to {note}.", *sliders)
        frame = _clamp(changed, frame)
        done = {"undo": "Undone:", "redo": "Redone:", "reset": "Reset:"}[note]
        return (changed, *_preview_outputs(outputs, changed, frame), frame_slider_update(changed, frame),
                _status(changed, done), *sliders)

    def on_undo(session, frame):
        session = _require(session)
        return _restore(session, undo(session), frame, "undo")

    def on_redo(session, frame):
        session = _require(session)
        return _restore(session, redo(session), frame, "redo")

    def on_reset(session, frame):
        session = _require(session)
        return _restore(session, reset(session), frame, "reset")

    @_user_errors
    def render(photo, speech, track_file, renderer, size, full, progress=gr.Progress(track_tqdm=True)):
        if photo is None or speech is None:
            raise gr.Error("Add a portrait photo and a speech recording first.", print_exception=False)
        if track_file is None:
            raise gr.Error("Generate landmarks (or upload a track) first.", print_exception=False)
        if renderer not in renderers:
            raise gr.Error(f"The renderer {renderer!r} is not available here; choose one of {renderers}.",
                           print_exception=False)
        if size not in (256, 512) or not isinstance(full, bool):
            raise gr.Error("Size must be 256 or 512, and 'whole photo' true or false.", print_exception=False)
        progress(0, desc="reading the photo, the speech and the track")
        track = _load_upload(track_file, LandmarkTrack.load)
        with slots:
            inputs = _read_inputs(pipe, photo, speech)
        path = outputs.new(f"{_label(photo, speech, track.info.get('seed'))}.mp4")
        kind, total = RENDERER_NAMES[renderer], inputs.num_frames
        yield gr.skip(), gr.skip(), (f"Rendering {total} frames, {duration_text(rates.estimate(kind, size, total))}"
                                     "…")
        steps = render_video(inputs, track, int(size), bool(full), kind, str(path),
                             str(path.parent) if LIVE_RENDER else None)
        done, clock = 0, time.monotonic()
        with contextlib.closing(_holding(slots, steps)) as chunks:  # a cancel stops this between two chunks
            for step in chunks:
                now = time.monotonic()
                rates.record(kind, size, step.done - done, now - clock)
                done, clock = step.done, now
                left = duration_text(rates.estimate(kind, size, total - done))
                progress((done, total), desc="render", unit="frames")
                live = gr.skip() if step.segment is None else str(outputs.add(step.segment))
                yield live, gr.skip(), f"Rendering: {done} of {total} frames, {left} left…"
        finished = f"Rendered {total} frames ({len(inputs.audio) / 16000:.1f} s)."
        yield (gr.skip() if LIVE_RENDER else str(path)), str(path), finished

    with gr.Blocks(title="Talking face", delete_cache=(CACHE_SECONDS, CACHE_SECONDS)) as demo:
        session = gr.State(None, time_to_live=CACHE_SECONDS)
        gr.Markdown("## Talking face\n" + INSTRUCTIONS)
        # the first row holds what a user needs on one 1080-pixel screen: inputs, preview and result
        with gr.Row(equal_height=False):
            with gr.Column(scale=4, min_width=300):
                photo = gr.Image(label="Portrait photo", type="filepath", sources=["upload", "webcam", "clipboard"],
                                 height=230, elem_id="photo")
                speech = gr.Audio(label=f"Speech (up to {APP_MAX_SECONDS:g} s)", type="filepath",
                                  sources=["upload", "microphone"], elem_id="speech")
                gr.Examples(EXAMPLES, inputs=[photo, speech], label="Example (works offline)",
                            cache_examples=False)
                with gr.Row():
                    seed = gr.Number(0, label="Seed", precision=0, minimum=0, scale=1, min_width=90)
                    variation = gr.Button("Another variation", scale=1, min_width=120)
                generate_btn = gr.Button("Generate landmarks", variant="primary", elem_id="generate")
            with gr.Column(scale=5, min_width=340):
                preview = gr.Video(label="Landmark preview (with the speech)", height=380, elem_id="preview",
                                   interactive=False)
                with gr.Row():
                    undo_btn = gr.Button("Undo", size="sm", min_width=70, elem_id="undo")
                    redo_btn = gr.Button("Redo", size="sm", min_width=70, elem_id="redo")
                    reset_btn = gr.Button("Reset edits", size="sm", min_width=90, elem_id="reset")
                status = gr.Markdown("Add a photo and speech, then click **Generate landmarks**.", label="Status",
                                     elem_id="status")
            with gr.Column(scale=5, min_width=340):
                video = gr.Video(label="Talking face video (plays while it renders)", interactive=False, height=380,
                                 elem_id="video", streaming=LIVE_RENDER, autoplay=LIVE_RENDER)
                render_btn = gr.Button("Render video", variant="primary", elem_id="render")
                render_status = gr.Markdown("", label="Render status", elem_id="render-status")
                video_file = gr.File(label="Video (mp4, to download)", interactive=False, elem_id="video-file",
                                     height=60)
        with gr.Tabs():
            with gr.Tab("Whole track"):
                with gr.Row(equal_height=False):
                    with gr.Column(min_width=300):
                        intensity = gr.Slider(0.0, 2.0, 1.0, step=0.05, label="Mouth and jaw intensity",
                                              elem_id="intensity")
                        smile = gr.Slider(-1.0, 1.0, 0.0, step=0.05, label="Smile",
                                          info="Mouth corners up (or down)", elem_id="smile")
                        smoothing = gr.Slider(0.0, 4.0, 0.0, step=0.1, label="Smoothing (frames)")
                        blink_rate = gr.Slider(0.0, 40.0, DEFAULT_BLINK_RATE, step=1, label="Blinks per minute",
                                               info="People blink about 15-20 times a minute")
                    with gr.Column(min_width=300):
                        head_motion = gr.Slider(0.0, 2.0, 1.0, step=0.05, label="Head motion",
                                                info="How much the head sways")
                        yaw = gr.Slider(-30.0, 30.0, 0.0, step=1, label="Head turn (yaw, degrees)",
                                        info="Positive: the face turns to the photo's right", elem_id="yaw")
                        pitch = gr.Slider(-20.0, 20.0, 0.0, step=1, label="Head tilt (pitch, degrees)",
                                          info="Positive: the face tilts down")
                        roll = gr.Slider(-20.0, 20.0, 0.0, step=1, label="Head roll (degrees)",
                                         info="Positive: clockwise on screen")
            with gr.Tab("Frames: move points, key the head pose"):
                with gr.Row(equal_height=False):
                    with gr.Column(scale=3, min_width=300):
                        frame_image = gr.Image(label="Frame (click a dot, then where it should go)",
                                               interactive=False, height=400, format="png", buttons=["fullscreen"],
                                               elem_id="frame")
                    with gr.Column(scale=4, min_width=340):
                        frame = gr.Slider(0, 1, 0, step=1, label="Frame", elem_id="frame-slider")
                        plot = gr.Image(label="Timeline", height=180, interactive=False, buttons=[], format="png",
                                        elem_id="timeline")
                        radius = gr.Slider(0, 12, 4, step=1, label="Point moves ease over ± frames")
                        with gr.Group():
                            gr.Markdown("**Head pose on this frame** (added to the track's, eased in and out)")
                            with gr.Row():
                                key_yaw = gr.Slider(-30.0, 30.0, 0.0, step=1, label="Yaw", min_width=100)
                                key_pitch = gr.Slider(-20.0, 20.0, 0.0, step=1, label="Pitch", min_width=100)
                                key_roll = gr.Slider(-20.0, 20.0, 0.0, step=1, label="Roll", min_width=100)
                            with gr.Row():
                                key_radius = gr.Slider(1, 50, 12, step=1, label="Ease over ± frames", scale=2)
                                pose_key_btn = gr.Button("Add pose keyframe", scale=1, elem_id="pose-key")
            with gr.Tab("Render settings and track file"):
                with gr.Row(equal_height=False):
                    with gr.Column(min_width=300):
                        renderer = gr.Radio(renderers, value=renderers[0], label="Renderer",
                                            info=DIFFUSION_COST if DIFFUSION in renderers else None)
                        size = gr.Radio([256, 512], value=256, label="Size (pixels)")
                        full = gr.Checkbox(False, label="Whole photo (instead of a square crop around the face)")
                    with gr.Column(min_width=300):
                        # type="binary": the handlers read the JSON bytes (a "filepath" input leaves an empty temp
                        # file)
                        track_file = gr.File(label="Landmark track (JSON, to download)", interactive=False,
                                             elem_id="track", type="binary")
                        upload_track = gr.UploadButton("Upload an edited track (JSON)", file_types=[".json"],
                                                       elem_id="upload-track", size="sm", type="binary")
            with gr.Tab("Dub a video"):
                driving_video = gr.Video(label="Driving video: head, eyes and brows from it, the mouth from the "
                                               "speech (then Generate landmarks)", sources=["upload"],
                                         elem_id="driving-video", height=300)
            with gr.Tab("Sampling"):
                guidance = gr.Slider(0.0, 6.0, 2.0, step=0.1, label="Guidance",
                                     info="How closely the mouth follows the speech (regenerates)")
                steps = gr.Slider(2, 50, DEFAULT_STEPS, step=1, label="Sampling steps", info="More is slower")
                mouth_blend = gr.Slider(0.0, 1.0, float(pipe.config.mouth_blend), step=0.05,
                                        label="Mouth from the voice regressor",
                                        info="Share of the mouth opening that follows the speech deterministically; "
                                             "lower shuts the lips more often on m, b, p; 0: the sampled mouth alone "
                                             "(regenerates)",
                                        visible=pipe.mouth_regressor is not None)

        control_inputs = [intensity, smile, smoothing, blink_rate, head_motion, yaw, pitch, roll]
        numeric_inputs = (seed, guidance, steps, *control_inputs)  # a tuple: nothing per-user can go in
        edit_outputs = [session, track_file, preview, plot, frame_image]
        generate_event = dict(
            fn=generate, inputs=[photo, speech, seed, guidance, steps, *control_inputs, driving_video, mouth_blend],
            outputs=[*edit_outputs, frame, status, *control_inputs], concurrency_id="pipeline",
            concurrency_limit=PIPELINE_CONCURRENCY,
            preprocess=False,  # files reach our own checks undecoded (see _read_inputs)
        )
        unchanged = dict(fn=lambda: "Nothing changed: see the message above.", inputs=None, outputs=status,
                         queue=False, api_visibility="private")  # the status never claims a result that failed
        generate_btn.click(**generate_event, api_name="landmarks").failure(**unchanged)
        variation.click(lambda: random.randrange(2**31 - 1), None, seed, api_visibility="private",
                        queue=False).then(**generate_event, api_visibility="private").failure(**unchanged)
        for slider in control_inputs:
            # "input": a drag (the last value once it stops), the arrow keys and a number typed then Enter all apply
            slider.input(apply_controls, [session, *control_inputs, frame], [*edit_outputs, status],
                         api_name="apply_controls" if slider is intensity else None,
                         api_visibility="public" if slider is intensity else "private", trigger_mode="always_last",
                         show_progress="minimal")
        upload_track.upload(load_track, [session, upload_track, photo, speech, frame],
                            [*edit_outputs, frame, status, *control_inputs],
                            api_name="load_track", concurrency_id="pipeline", concurrency_limit=PIPELINE_CONCURRENCY,
                            preprocess=False).failure(**unchanged)
        frame.input(show_frame, [session, frame], [frame_image, plot], show_progress="hidden",
                    trigger_mode="always_last", api_visibility="private")
        frame_image.select(on_click, [session, frame, radius], [*edit_outputs, status], api_visibility="private",
                           show_progress="minimal")
        pose_key_btn.click(on_pose_key, [session, frame, key_radius, key_yaw, key_pitch, key_roll],
                           [*edit_outputs, status], api_name="pose_keyframe")
        redo_btn.click(on_redo, [session, frame], [*edit_outputs, frame, status, *control_inputs],
                       api_visibility="private")
        undo_btn.click(on_undo, [session, frame], [*edit_outputs, frame, status, *control_inputs],
                       api_visibility="private")
        reset_btn.click(on_reset, [session, frame], [*edit_outputs, frame, status, *control_inputs],
                        api_visibility="private")
        for component in (photo, speech):
            component.change(lambda current: gr.skip() if current is None else
                             "New input: click **Generate landmarks** to use it (or *Render video* to apply the "
                             "current track to it).", component, status, queue=False, api_visibility="private")
        render_btn.click(render, [photo, speech, track_file, renderer, size, full], [video, video_file, render_status],
                         api_name="render", concurrency_id="pipeline", concurrency_limit=PIPELINE_CONCURRENCY,
                         preprocess=False).failure(**{**unchanged, "outputs": render_status})
    demo.temp_file_sets.append(outputs.paths)
    return demo


def warm_up(pipe) -> None:
    """Run each stage once on one second of the example, so the first user does not wait for lazy loading."""
    inputs = pipe.prepare(*EXAMPLES[0])
    inputs = dataclasses.replace(inputs, audio=inputs.audio[:16000])
    track = pipe.generate_landmarks(inputs, num_inference_steps=2, generator=torch.Generator().manual_seed(0))
    pipe.render(inputs, track, output_type="np")


def serve(pipe) -> None:
    """Run the app until SIGTERM or Ctrl-C, then close it: Gradio deletes every upload and output it cached."""
    demo = create_demo(pipe).queue(default_concurrency_limit=4, max_size=32)
    demo.launch(max_file_size=MAX_UPLOAD, prevent_thread_lock=True)
    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())
    stop.wait()
    demo.close()


if __name__ == "__main__":  # threads per stage: pipeline/threads.py (TALKING_FACE_THREADS=N overrides)
    pipeline = load_pipeline()
    warm_up(pipeline)
    serve(pipeline)

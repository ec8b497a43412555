"""Command line: ``python -m pipeline {extract,render} ...``.

Every problem with the user's files ends with a one-line reason on stderr and a non-zero exit code.
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import logging
import math
import os
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import NoReturn

import numpy as np

from .defaults import (
    DEFAULT_BLINK_RATE,
    DEFAULT_STEPS,
    MAX_BLINK_RATE,
    MAX_GUIDANCE,
    MAX_HEAD_MOTION,
    MAX_SEED,
    MAX_SMOOTHING,
    MAX_STEPS,
)
from .errors import InputError
from .outputs import check_output

logger = logging.getLogger("pipeline")


class _Parser(argparse.ArgumentParser):
    """Mistakes in the options end with one line, ``error: ...``, and exit code 2 (no usage dump)."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"error: {message} (see {self.prog} --help)\n")


def _number(kind: type, low: float, high: float) -> Callable[[str], float]:
    """An option type: a finite ``kind`` (int or float) from ``low`` to ``high``."""
    def parse(text: str):
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"'{text}' is not a {'whole ' if kind is int else ''}number") from None
        if not math.isfinite(value) or not low <= value <= high:
            show = (lambda v: f"{v:g}") if kind is float else str
            raise argparse.ArgumentTypeError(f"must be from {show(low)} to {show(high)}, not {text}")
        return value

    parse.__name__ = kind.__name__
    return parse


def _add_render_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--size", type=int, default=256, choices=(256, 512), help="side of the square face crop")
    parser.add_argument("--full", action="store_true", help="paste the animated face back into the whole photo")
    parser.add_argument(
        "--renderer", choices=("warp", "diffusion"), default="warp",
        help="warp (fast, default) or diffusion (the warp frames with the lips repainted by the checkpoint's diffusion "
             "model; about 0.06 s a frame on a 2-core CPU)",
    )


def build_parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("-q", "--quiet", action="store_true", help="print only errors")
    common.add_argument("--threads", type=_number(int, 1, 256),
                        help="intra-op threads for every stage (default: the measured per-stage policy of "
                             "pipeline/threads.py)")
    common.add_argument(
        "--landmark-backend", choices=("mesh", "dlib", "fan"), default="mesh",
        help="face landmark detector: mesh (MediaPipe face mesh, Apache-2.0, the default) or the optional "
        "research-use dlib / face-alignment FAN backends (pip install -r requirements-optional.txt)",
    )
    model_options = argparse.ArgumentParser(add_help=False)
    model_options.add_argument("--checkpoint", help="folder or Hub repo id of the pipeline (default: checkpoints/)")
    model_options.add_argument("--seed", type=_number(int, 0, MAX_SEED), default=0,
                               help="another seed gives another natural variation")
    model_options.add_argument("--steps", type=_number(int, 1, MAX_STEPS), default=DEFAULT_STEPS,
                               help="denoising steps of the landmark model")
    model_options.add_argument("--guidance", type=_number(float, 0, MAX_GUIDANCE), default=2.0,
                               help="audio guidance scale")
    model_options.add_argument("--head-motion", type=_number(float, 0, MAX_HEAD_MOTION), default=1.0,
                               help="amount of natural head sway")
    model_options.add_argument("--blink-rate", type=_number(float, 0, MAX_BLINK_RATE), default=DEFAULT_BLINK_RATE,
                               help=f"blinks added per minute (default {DEFAULT_BLINK_RATE:g}, as people blink; "
                                    "0 for none)")
    model_options.add_argument("--mouth-blend", type=_number(float, 0, 1),
                               help="share of the mouth opening taken from the checkpoint's mouth regressor, 0..1 "
                                    "(default: the checkpoint's mouth_blend; 0: the sampled mouth alone)")
    parser = _Parser(prog="python -m pipeline", description="Talking-face generator.")
    sub = parser.add_subparsers(dest="command", required=True)

    extract = sub.add_parser("extract", parents=[common],
                             help="landmark track (JSON) of every frame of a talking-face video")
    extract.add_argument("--video", required=True, type=Path)
    extract.add_argument("-o", "--output", required=True, type=Path, help="track.json to write")
    extract.add_argument("--smoothing", type=_number(float, 0, MAX_SMOOTHING), default=0.7,
                         help="temporal smoothing (frames, 0 = none)")

    render = sub.add_parser("render", parents=[common], help="render a photo driven by a landmark track into an mp4")
    render.add_argument("--image", required=True, type=Path, help="portrait photo")
    render.add_argument("--landmarks", required=True, type=Path, help="track.json (from extract, or edited)")
    render.add_argument("--audio", type=Path, help="speech to mux in; the video lasts as long as the audio")
    render.add_argument("-o", "--output", required=True, type=Path, help="out.mp4")
    render.add_argument(
        "--retarget", choices=("auto", "always", "never"), default="auto",
        help="map the track's motion onto the photo's face (auto: unless the track was made for this photo)",
    )
    render.add_argument("--head-motion", type=_number(float, 0, MAX_HEAD_MOTION), default=1.0,
                        help="scale of the track's head motion when retargeting")
    render.add_argument("--checkpoint", help="with --renderer diffusion: folder or Hub repo id of the pipeline "
                                             "(default: checkpoints/)")
    render.add_argument("--seed", type=_number(int, 0, MAX_SEED), default=0,
                        help="with --renderer diffusion: seed of its noise")
    _add_render_options(render)

    landmarks = sub.add_parser("landmarks", parents=[common, model_options],
                               help="speech-driven landmark track (JSON) for a photo, from the landmark model")
    landmarks.add_argument("--image", required=True, type=Path)
    landmarks.add_argument("--audio", required=True, type=Path)
    landmarks.add_argument("-o", "--output", required=True, type=Path, help="track.json to write")

    generate = sub.add_parser("generate", parents=[common, model_options],
                              help="photo + speech -> talking-face mp4 (one pair, or a batch)")
    generate.add_argument("--image", type=Path, help="portrait photo")
    generate.add_argument("--audio", type=Path, help="speech recording")
    generate.add_argument("--batch", type=Path,
                          help="a CSV with columns image,audio[,output] or a folder of photos with same-named audio")
    generate.add_argument("-o", "--output", required=True, type=Path, help="out.mp4 (a folder with --batch)")
    generate.add_argument("--landmarks-out", type=Path, help="also save the generated track (JSON)")
    generate.add_argument("--driving-video", type=Path,
                          help="dubbing: head pose, eyes and brows from this video (anyone's), mouth and jaw "
                               "generated from the speech")
    _add_render_options(generate)
    return parser


class Stopwatch:
    """Wall seconds per stage of one command, for its closing message."""

    def __init__(self, started: float) -> None:
        self.started = started  # time.time() when the process (or the call of main) began
        self.seconds: dict[str, float] = {}

    @contextlib.contextmanager
    def __call__(self, stage: str) -> Iterator[None]:
        start = time.perf_counter()
        try:
            yield
        finally:
            self.seconds[stage] = self.seconds.get(stage, 0.0) + time.perf_counter() - start

    def mark_start_up(self) -> None:
        self.seconds["start-up"] = time.time() - self.started

    def summary(self) -> str:
        """``"4.8 s: start-up 2.9 s, prepare 0.1 s, ..."``."""
        parts = ", ".join(f"{stage} {seconds:.1f} s" for stage, seconds in self.seconds.items())
        return f"{time.time() - self.started:.1f} s" + (f": {parts}" if parts else "")


def ready() -> None:
    """Start-up is over: when ``python -m pipeline`` paused garbage collection for it, freeze what start-up made out of
    later collections and resume them (a no-op for callers of :func:`main` with collection on)."""
    if not gc.isenabled():
        gc.freeze()
        gc.enable()


def _say(args: argparse.Namespace, message: str) -> None:
    if not args.quiet and message:
        print(message, file=sys.stderr)


def cmd_extract(args: argparse.Namespace) -> int:
    from .face import FaceAnalyzer
    from .video import extract_track

    check_output(args.output, (".json",))
    analyzer = FaceAnalyzer(args.landmark_backend)
    ready()
    args.clock.mark_start_up()
    with args.clock("tracking"):
        track, report = extract_track(args.video, analyzer, smoothing=args.smoothing)
    track.save(args.output)
    _say(args, report.summary())
    _say(args, f"Wrote {track.num_frames} frames at {track.fps:g} fps to {args.output} in {args.clock.summary()}.")
    return 0


def fit_length(frames: np.ndarray, num_frames: int, rest: np.ndarray) -> tuple[np.ndarray, str]:
    """Cut or extend a track to ``num_frames``; extra frames hold the face at ``rest``."""
    have = len(frames)
    if have == num_frames:
        return frames, ""
    if have > num_frames:
        return frames[:num_frames], f"The track is longer than the audio; using its first {num_frames} frames."
    pad = np.repeat(rest[None].astype(frames.dtype), num_frames - have, axis=0)
    return np.concatenate([frames, pad]), (
        f"The track has {have} frames but the audio needs {num_frames}; the face rests for the remainder."
    )


def cmd_render(args: argparse.Namespace) -> int:
    from .audio import load_audio, num_video_frames
    from .face import FaceAnalyzer
    from .images import load_image
    from .landmarks import LandmarkTrack, belongs_to, face_points, retarget
    from .render.export import render_to_mp4
    from .render.warp import WarpRenderer
    from .threads import stage_threads

    check_output(args.output, (".mp4",))
    if args.renderer == "diffusion":
        import torch

        from .loading import load_pipeline

        renderer = load_pipeline(args.checkpoint, warm=False).make_renderer(
            "diffusion", args.size, args.full, torch.Generator().manual_seed(args.seed))
    else:
        renderer = WarpRenderer(size=args.size, full=args.full)
    image = load_image(args.image)
    track = LandmarkTrack.load(args.landmarks)
    samples = load_audio(args.audio) if args.audio else None
    analyzer = FaceAnalyzer(args.landmark_backend)
    ready()
    args.clock.mark_start_up()
    with args.clock("prepare"), stage_threads("face"):
        detection = analyzer.detect(image)
    _say(args, detection.message)
    photo_size = (image.shape[1], image.shape[0])
    own = belongs_to(track, detection.landmarks, photo_size)
    if args.retarget == "always" or (args.retarget == "auto" and not own):
        track = retarget(track, face_points(detection), photo_size, head_motion=args.head_motion)
        _say(args, "Retargeted the track's motion onto the photo's face.")
    frames = track.points2d
    if samples is not None:
        frames, note = fit_length(frames, num_video_frames(len(samples), track.fps), detection.landmarks)
        _say(args, note)
    with args.clock("render"), stage_threads(args.renderer):
        context = renderer.prepare(image, detection.landmarks)
        written = render_to_mp4(renderer, context, frames, args.output, track.fps, samples)
    _say(args, f"Wrote {written} frames ({written / track.fps:.2f} s) to {args.output} in {args.clock.summary()}.")
    return 0


def _load_pipeline(args: argparse.Namespace, device: str | None = None):
    from .loading import load_pipeline

    if args.quiet:
        from diffusers.utils import logging as diffusers_logging

        diffusers_logging.disable_progress_bar()
    pipe = load_pipeline(args.checkpoint, device=device, warm=False)
    pipe.register_to_config(landmark_backend=args.landmark_backend)
    pipe.set_progress_bar_config(disable=args.quiet)
    ready()
    args.clock.mark_start_up()
    return pipe


def _generator(args: argparse.Namespace):
    import torch

    return torch.Generator().manual_seed(args.seed)


def _generate_track(pipe, generator, args: argparse.Namespace, image, audio):
    with args.clock("prepare"):
        inputs = pipe.prepare(image, audio)
    _say(args, inputs.face.message)
    driving_video = getattr(args, "driving_video", None)
    if driving_video is not None:
        from .video import extract_track

        with args.clock("tracking"):
            driving, report = extract_track(driving_video, pipe.face_analyzer,
                                            max_seconds=inputs.num_frames / inputs.fps)
        _say(args, f"Driving video: {report.summary()}")
        with args.clock("landmarks"):
            return inputs, pipe.dub_landmarks(inputs, driving, args.steps, args.guidance, generator,
                                              mouth_blend=args.mouth_blend)
    with args.clock("landmarks"):
        track = pipe.generate_landmarks(inputs, args.steps, args.guidance, generator, head_motion=args.head_motion,
                                        blink_rate=args.blink_rate, mouth_blend=args.mouth_blend)
    return inputs, track


def cmd_landmarks(args: argparse.Namespace) -> int:
    check_output(args.output, (".json",))
    pipe = _load_pipeline(args)
    _, track = _generate_track(pipe, _generator(args), args, args.image, args.audio)
    track.save(args.output)
    _say(args, f"Wrote {track.num_frames} frames ({track.duration:.2f} s) to {args.output} in "
               f"{args.clock.summary()}.")
    return 0


def batch_items(source: Path, out_dir: Path) -> list[tuple[Path, Path, Path]]:
    """(image, audio, output) triples from a CSV (columns image,audio[,output]; relative paths are taken from
    the CSV's folder) or from a folder where each photo has an audio file of the same name."""
    from .audio import AUDIO_SUFFIXES
    from .images import IMAGE_SUFFIXES

    if source.is_dir():
        audio = {p.stem: p for p in sorted(source.iterdir()) if p.suffix.lower() in AUDIO_SUFFIXES}
        return [(p, audio[p.stem], out_dir / f"{p.stem}.mp4") for p in sorted(source.iterdir())
                if p.suffix.lower() in IMAGE_SUFFIXES and p.stem in audio]
    if not source.is_file():
        raise InputError(f"Batch list '{source.name}' does not exist.")
    import csv

    items = []
    with source.open(newline="") as handle:
        for row in csv.DictReader(handle):
            if not row.get("image") or not row.get("audio"):
                raise InputError(f"Every row of '{source.name}' needs 'image' and 'audio' columns.")
            image, audio = source.parent / row["image"], source.parent / row["audio"]
            name = row.get("output") or f"{Path(row['image']).stem}.mp4"
            items.append((image, audio, out_dir / Path(name).name))
    return items


def cmd_generate(args: argparse.Namespace) -> int:
    if (args.batch is None) == (args.image is None or args.audio is None):
        raise InputError("Give either --image and --audio, or --batch.")
    if args.batch is not None:
        if args.driving_video is not None:
            raise InputError("--driving-video works with --image and --audio, not with --batch.")
        return _generate_batch(args)
    check_output(args.output, (".mp4",))
    if args.landmarks_out is not None:
        check_output(args.landmarks_out, (".json",))
    pipe = _load_pipeline(args)
    _check_renderer(pipe, args.renderer)
    _generate_one(pipe, _generator(args), args, args.image, args.audio, args.output, args.landmarks_out)
    _say(args, f"Wrote {args.output} in {args.clock.summary()}.")
    return 0


def _check_renderer(pipe, renderer: str) -> None:
    if renderer not in pipe.renderers:
        raise InputError(f"The checkpoint has no {renderer} renderer; it offers: {', '.join(pipe.renderers)}.")


def _generate_batch(args: argparse.Namespace) -> int:
    """Every (image, audio) pair of ``--batch``, shared out among the processes of ``accelerate launch`` (one process
    without it; one GPU each where there are GPUs): each item is made exactly once, by one process, with the seed of
    ``--seed`` (as ``generate --image --audio`` would make it alone); the main process lists the failures at the
    end."""
    from accelerate import PartialState
    from accelerate.utils import gather_object

    if args.output.exists() and not args.output.is_dir():
        raise InputError(f"With --batch, -o names a folder; '{args.output}' is a file.")
    items = batch_items(args.batch, args.output)
    if not items:
        raise InputError(f"No (image, audio) pairs found in '{args.batch.name}'.")
    from .distributed import launched_on_cpu

    state = PartialState(cpu=launched_on_cpu())
    pipe = _load_pipeline(args, device=str(state.device))
    _check_renderer(pipe, args.renderer)
    failures = []
    with state.split_between_processes(list(enumerate(items, start=1))) as share:
        for i, (image, audio, output) in share:
            start = time.perf_counter()
            try:
                check_output(output, (".mp4",))
                _generate_one(pipe, _generator(args), args, image, audio, output, None)
                print(f"[{i}/{len(items)}] {image.name} + {audio.name} -> {output} "
                      f"({time.perf_counter() - start:.1f} s)", flush=True)
            except InputError as exc:
                failures.append((i, image.name, str(exc)))
                print(f"[{i}/{len(items)}] {image.name} + {audio.name}: FAILED: {exc}", flush=True)
    if state.num_processes > 1:
        failures = sorted(gather_object(failures))
    if state.is_main_process:
        print(f"{len(items) - len(failures)} of {len(items)} done"
              + (f"; {len(failures)} failed:" if failures else "."))
        for _, name, reason in failures:
            print(f"  {name}: {reason}")
    return 1 if failures else 0


def _generate_one(pipe, generator, args, image: Path, audio: Path, output: Path, track_out: Path | None) -> None:
    inputs, track = _generate_track(pipe, generator, args, image, audio)
    if track_out is not None:
        track.save(track_out)
    with args.clock("render"):
        pipe.render(inputs, track, size=args.size, full=args.full, output_type="mp4", output_path=output,
                    renderer=args.renderer, generator=generator)


COMMANDS = {"extract": cmd_extract, "render": cmd_render, "landmarks": cmd_landmarks, "generate": cmd_generate}


def _stop(signum: int, frame) -> None:
    """SIGTERM ends the command like Ctrl-C: unfinished outputs are deleted on the way out."""
    raise KeyboardInterrupt


def main(argv: Sequence[str] | None = None, started: float | None = None) -> int:
    """Run one command; ``started`` (``time.time()`` when the process began) dates the start-up figure of the closing
    message, else the call of this function."""
    args = build_parser().parse_args(argv)
    args.clock = Stopwatch(time.time() if started is None else started)
    if args.threads is not None:
        from .threads import THREADS_ENV

        os.environ[THREADS_ENV] = str(args.threads)
    logging.basicConfig(level=logging.WARNING if args.quiet else logging.INFO, format="%(message)s")
    in_main_thread = threading.current_thread() is threading.main_thread()
    previous = signal.signal(signal.SIGTERM, _stop) if in_main_thread else None
    try:
        return COMMANDS[args.command](args)
    except InputError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except (RuntimeError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("Stopped; unfinished outputs were not written.", file=sys.stderr)
        return 130
    finally:
        if in_main_thread:
            signal.signal(signal.SIGTERM, previous if previous is not None else signal.SIG_DFL)

"""Command line: ``python -m pipeline {extract,render} ...``.

Every problem with the user's files ends with a one-line reason on stderr and a non-zero exit code.
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from pathlib import Path
from typing import Optional, Sequence

import numpy as np

from .errors import InputError

logger = logging.getLogger("pipeline")


def _add_render_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--size", type=int, default=256, choices=(256, 512), help="side of the square face crop")
    parser.add_argument("--full", action="store_true", help="paste the animated face back into the whole photo")
    parser.add_argument(
        "--landmark-backend", choices=("dlib", "fan"), default="dlib",
        help="face landmark detector: dlib (offline default, research-use model) or face-alignment's FAN",
    )


def build_parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("-q", "--quiet", action="store_true", help="print only errors")
    parser = argparse.ArgumentParser(prog="python -m pipeline", description="Talking-face generator.")
    sub = parser.add_subparsers(dest="command", required=True)

    extract = sub.add_parser("extract", parents=[common],
                             help="landmark track (JSON) of every frame of a talking-face video")
    extract.add_argument("--video", required=True, type=Path)
    extract.add_argument("-o", "--output", required=True, type=Path, help="track.json to write")
    extract.add_argument("--smoothing", type=float, default=0.7, help="temporal smoothing (frames, 0 = none)")
    extract.add_argument("--landmark-backend", choices=("dlib", "fan"), default="dlib")

    render = sub.add_parser("render", parents=[common], help="render a photo driven by a landmark track into an mp4")
    render.add_argument("--image", required=True, type=Path, help="portrait photo")
    render.add_argument("--landmarks", required=True, type=Path, help="track.json (from extract, or edited)")
    render.add_argument("--audio", type=Path, help="speech to mux in; the video lasts as long as the audio")
    render.add_argument("-o", "--output", required=True, type=Path, help="out.mp4")
    render.add_argument(
        "--retarget", choices=("auto", "always", "never"), default="auto",
        help="map the track's motion onto the photo's face (auto: unless the track was made for this photo)",
    )
    render.add_argument("--head-motion", type=float, default=1.0, help="scale of the track's head motion when retargeting")
    _add_render_options(render)
    return parser


def _say(args: argparse.Namespace, message: str) -> None:
    if not args.quiet and message:
        print(message, file=sys.stderr)


def cmd_extract(args: argparse.Namespace) -> int:
    from .face import FaceAnalyzer
    from .video import extract_track

    start = time.perf_counter()
    track, report = extract_track(args.video, FaceAnalyzer(args.landmark_backend), smoothing=args.smoothing)
    track.save(args.output)
    _say(args, report.summary())
    _say(args, f"Wrote {track.num_frames} frames at {track.fps:g} fps to {args.output} "
               f"({time.perf_counter() - start:.1f} s).")
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
    from .landmarks import LandmarkTrack, belongs_to, retarget
    from .render.export import render_to_mp4
    from .render.warp import WarpRenderer

    start = time.perf_counter()
    image = load_image(args.image)
    track = LandmarkTrack.load(args.landmarks)
    samples = load_audio(args.audio) if args.audio else None
    detection = FaceAnalyzer(args.landmark_backend).detect(image)
    _say(args, detection.message)
    photo_size = (image.shape[1], image.shape[0])
    own = belongs_to(track, detection.landmarks, photo_size)
    if args.retarget == "always" or (args.retarget == "auto" and not own):
        track = retarget(track, detection.landmarks, photo_size, head_motion=args.head_motion)
        _say(args, "Retargeted the track's motion onto the photo's face.")
    frames = track.frames
    if samples is not None:
        frames, note = fit_length(frames, num_video_frames(len(samples), track.fps), detection.landmarks)
        _say(args, note)
    renderer = WarpRenderer(size=args.size, full=args.full)
    context = renderer.prepare(image, detection.landmarks)
    written = render_to_mp4(renderer, context, frames, args.output, track.fps, samples)
    _say(args, f"Wrote {written} frames ({written / track.fps:.2f} s) to {args.output} "
               f"in {time.perf_counter() - start:.1f} s.")
    return 0


COMMANDS = {"extract": cmd_extract, "render": cmd_render}


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.WARNING if args.quiet else logging.INFO, format="%(message)s")
    try:
        return COMMANDS[args.command](args)
    except InputError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except (RuntimeError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1

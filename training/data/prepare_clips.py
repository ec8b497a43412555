"""Turn real talking-face videos into training examples (:mod:`training.data.format`).

    python training/data/prepare_clips.py --clips ../shared/data/clips --out data/clips \\
        --holdout grid_lrwp9a,vox_00098

Videos are found recursively under ``--clips``, so the project's clip folders (``<clip>/video.mp4`` with
``audio16k.wav``) and HDTF / LRS3 / VoxCeleb2-style trees (``<speaker>/<video>/<utterance>.mp4``) both
work. For each video:

1. audio: ``<stem>.wav`` beside the video, or ``audio16k.wav`` when the video is alone in its folder,
   otherwise the video's own sound track, decoded by :func:`pipeline.audio.load_audio`;
2. landmarks on every frame with the project's 3D front end (:func:`pipeline.video.extract_track`; frames
   without a face are interpolated from their neighbours and counted), brought into the pose-free canonical
   space (a 3D similarity on the stable points removes yaw, pitch and roll); the examples keep its x, y plane;
3. the neutral face (see :func:`choose_neutral`);
4. the track is trimmed or padded (last frame repeated) to exactly
   ``num_video_frames(len(audio), fps)`` frames, so audio and landmarks cover the same time;
5. one :class:`~training.data.format.Example` (``source="clips"``) in ``<out>/holdout/`` for held-out
   videos, else in ``<out>/train/`` together with a left-right mirrored copy (``<name>-mirror``).

A clip's name is its folder path below ``--clips`` when the folder holds one video (``grid_bbaf2n``),
else the video's path without suffix (``id00012_abc_00001``), parts joined by ``_``. A ``--holdout``
entry holds out every video whose name equals it or whose path below ``--clips`` contains it as a
folder or file stem, so ``--holdout id00012`` holds out a whole VoxCeleb2 speaker.

Only landmarks and audio arrays are written, under ``--out`` (keep it out of version control).
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

import numpy as np

if __package__ in (None, ""):  # run as a script: make the repository importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from pipeline.audio import SAMPLE_RATE, load_audio, num_video_frames  # noqa: E402
from pipeline.canonical import pose_from_transform  # noqa: E402
from pipeline.errors import AudioError, InputError, NoFaceError  # noqa: E402
from pipeline.landmarks import rest_frame  # noqa: E402
from pipeline.regions import MIRROR  # noqa: E402
from training.data.format import Example  # noqa: E402

VIDEO_SUFFIXES = {".mp4", ".mpg", ".mpeg", ".mov", ".avi", ".mkv", ".webm", ".m4v"}
SOURCE = "clips"
MIRROR_SUFFIX = "-mirror"


@dataclass
class ClipResult:
    name: str
    video: str
    holdout: bool
    example: Optional[Example] = None
    video_frames: int = 0
    missing_frames: list[int] = field(default_factory=list)
    neutral_frame: int = -1
    audio_from: str = ""
    seconds: float = 0.0
    took: float = 0.0
    error: str = ""


# ---------------------------------------------------------------------------------------------------
# Finding videos and naming them


def find_videos(root: Path) -> list[Path]:
    """Every video file below ``root`` (or ``root`` itself when it is a video), in a stable order."""
    root = Path(root)
    if root.is_file():
        return [root]
    return sorted(p for p in root.rglob("*") if p.is_file() and p.suffix.lower() in VIDEO_SUFFIXES)


def _videos_in(folder: Path) -> int:
    return sum(1 for p in folder.iterdir() if p.is_file() and p.suffix.lower() in VIDEO_SUFFIXES)


def clip_name(video: Path, root: Path) -> str:
    """A stable, file-name-safe id for a video (see the module docstring)."""
    root = Path(root)
    if root.is_file():
        rel, root_name = Path(video.name), root.parent.name
    else:
        rel, root_name = video.relative_to(root), root.name
    if _videos_in(video.parent) == 1:
        parts = rel.parent.parts or (root_name,)
    else:
        parts = rel.with_suffix("").parts
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", "_".join(parts)).strip("-") or "clip"


def is_held_out(video: Path, root: Path, name: str, holdout: set[str]) -> bool:
    if name in holdout:
        return True
    rel = Path(video.name) if Path(root).is_file() else video.relative_to(root)
    return bool(holdout & (set(rel.parent.parts) | {rel.stem}))


def find_audio(video: Path) -> Optional[Path]:
    """The separate 16 kHz recording of a video, if there is one (else its own sound track is used)."""
    same_stem = video.with_suffix(".wav")
    if same_stem.is_file():
        return same_stem
    sibling = video.parent / "audio16k.wav"
    if sibling.is_file() and _videos_in(video.parent) == 1:
        return sibling
    return None


# ---------------------------------------------------------------------------------------------------
# Track processing


def choose_neutral(canonical: np.ndarray, pose: np.ndarray) -> int:
    """Index of the frame used as the clip's neutral face: :func:`pipeline.landmarks.rest_frame` (a typical head
    pose with the mouth closed; the first frame when it is nearly so, as it is the reference photo a user gives)."""
    return rest_frame(canonical, pose)


def fit_length(canonical: np.ndarray, num_frames: int) -> np.ndarray:
    """Trim, or pad by repeating the last frame, to exactly ``num_frames`` frames."""
    if len(canonical) >= num_frames:
        return canonical[:num_frames]
    pad = np.repeat(canonical[-1:], num_frames - len(canonical), axis=0)
    return np.concatenate([canonical, pad])


def mirror_points(points: np.ndarray) -> np.ndarray:
    """Flip canonical points left-right: ``x -> -x`` and each point swapped with its mirror partner.

    Works on one face ``(68, 2)`` or a track ``(T, 68, 2)``; mirroring twice gives the input back.
    """
    points = np.asarray(points)
    return points[..., list(MIRROR), :] * np.array([-1.0, 1.0], dtype=points.dtype)


def mirror_example(example: Example) -> Example:
    """The left-right mirrored copy of a training example (same audio), named ``<name>-mirror``."""
    return Example(example.audio, mirror_points(example.canonical), mirror_points(example.neutral),
                   example.fps, example.source, example.name + MIRROR_SUFFIX)


# ---------------------------------------------------------------------------------------------------
# One clip


_ANALYZER = None


def _analyzer():
    global _ANALYZER
    if _ANALYZER is None:
        from pipeline.face import FaceAnalyzer

        _ANALYZER = FaceAnalyzer()
    return _ANALYZER


def prepare_clip(video: Path, name: str, holdout: bool, smoothing: float = 0.7, analyzer=None) -> ClipResult:
    """Build the example of one video (not written); errors are reported in the result, not raised."""
    from pipeline.video import extract_track

    start = time.perf_counter()
    result = ClipResult(name=name, video=str(video), holdout=holdout)
    try:
        audio_path = find_audio(video)
        audio = load_audio(audio_path if audio_path is not None else video)
        result.audio_from = audio_path.name if audio_path is not None else "video"
        track, report = extract_track(video, analyzer or _analyzer(), smoothing=smoothing)
    except (AudioError, InputError, NoFaceError) as exc:
        result.error = str(exc)
        result.took = time.perf_counter() - start
        return result
    canonical, to_canonical = track.canonical()
    canonical = canonical[..., :2]  # (T, 68, 2): the pose-free x, y plane
    result.video_frames = track.num_frames
    result.missing_frames = list(report.missing_frames)
    result.neutral_frame = choose_neutral(canonical, pose_from_transform(to_canonical))
    neutral = canonical[result.neutral_frame]
    canonical = fit_length(canonical, num_video_frames(len(audio), track.fps))
    result.seconds = len(audio) / SAMPLE_RATE
    result.example = Example(audio, canonical, neutral, track.fps, SOURCE, name)
    result.took = time.perf_counter() - start
    return result


def _prepare_job(args: tuple) -> ClipResult:
    return prepare_clip(*args)


# ---------------------------------------------------------------------------------------------------
# Driver


def _write(result: ClipResult, out: Path, mirror: bool) -> list[Path]:
    """Save one clip's example(s), and remove copies of it left in the other split by an earlier run."""
    assert result.example is not None
    split, other = ("holdout", "train") if result.holdout else ("train", "holdout")
    for stale in (f"{SOURCE}-{result.name}.npz", f"{SOURCE}-{result.name}{MIRROR_SUFFIX}.npz"):
        (out / other / stale).unlink(missing_ok=True)
    paths = [result.example.save(out / split)]
    if not result.holdout and mirror:
        paths.append(mirror_example(result.example).save(out / split))
    elif not mirror:
        (out / split / f"{SOURCE}-{result.name}{MIRROR_SUFFIX}.npz").unlink(missing_ok=True)
    return paths


def _describe(result: ClipResult) -> str:
    split = "holdout" if result.holdout else "train"
    if result.example is None:
        return f"{result.name:<24} {split:<7} SKIPPED: {result.error}"
    frames = len(result.example.canonical)
    fitted = frames - result.video_frames
    fit = "" if fitted == 0 else (f", padded {fitted}" if fitted > 0 else f", trimmed {-fitted}")
    missing = len(result.missing_frames)
    return (
        f"{result.name:<24} {split:<7} {frames:4d} frames{fit:<12} {missing:3d} missing-face "
        f"({missing / max(result.video_frames, 1):4.0%})  {result.seconds:5.2f} s audio ({result.audio_from})  "
        f"neutral=frame {result.neutral_frame:<3d} [{result.took:.1f} s]"
    )


def prepare(clips: Path, out: Path, holdout: set[str] = frozenset(), mirror: bool = True, jobs: int = 1,
            smoothing: float = 0.7, max_missing: float = 0.5, analyzer=None, log=print) -> list[ClipResult]:
    """Prepare every video under ``clips`` into ``out/train`` and ``out/holdout``; returns the results.

    Clips where more than ``max_missing`` of the frames have no face are skipped.
    """
    clips, out = Path(clips), Path(out)
    videos = find_videos(clips)
    if not videos:
        raise SystemExit(f"No videos ({', '.join(sorted(VIDEO_SUFFIXES))}) under {clips}.")
    names = [clip_name(v, clips) for v in videos]
    duplicates = {n for n in names if names.count(n) > 1}
    if duplicates:
        raise SystemExit(f"Several videos would be named {sorted(duplicates)}; give each its own folder.")
    jobs_args = [(v, n, is_held_out(v, clips, n, set(holdout)), smoothing) for v, n in zip(videos, names)]
    unused = {h for h in holdout if not any(is_held_out(v, clips, n, {h}) for v, n in zip(videos, names))}
    if unused:
        log(f"warning: --holdout entries matching no video: {', '.join(sorted(unused))}")
    start = time.perf_counter()
    if jobs > 1:
        with ProcessPoolExecutor(max_workers=jobs) as pool:
            results_iter = pool.map(_prepare_job, jobs_args)
            results = []
            for result in results_iter:
                results.append(_finish(result, out, mirror, max_missing, log))
    else:
        results = [_finish(prepare_clip(*a, analyzer=analyzer), out, mirror, max_missing, log) for a in jobs_args]
    done = [r for r in results if r.example is not None]
    log(
        f"{len(done)} of {len(results)} clips prepared ({sum(not r.holdout for r in done)} train"
        f"{' + mirrored copies' if mirror else ''}, {sum(r.holdout for r in done)} held out), "
        f"{sum(r.seconds for r in done):.1f} s of audio, "
        f"{sum(len(r.missing_frames) for r in done)} missing-face frames, in {time.perf_counter() - start:.1f} s"
    )
    _write_manifest(results, out)
    return results


def _finish(result: ClipResult, out: Path, mirror: bool, max_missing: float, log) -> ClipResult:
    if result.example is not None and len(result.missing_frames) > max_missing * result.video_frames:
        result.error = f"no face in {len(result.missing_frames)} of {result.video_frames} frames"
        result.example = None
    if result.example is not None:
        _write(result, out, mirror)
    log(_describe(result))
    return result


def _write_manifest(results: list[ClipResult], out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    rows = [
        {
            "name": r.name, "video": r.video, "split": "holdout" if r.holdout else "train",
            "frames": None if r.example is None else len(r.example.canonical), "video_frames": r.video_frames,
            "missing_frames": r.missing_frames, "neutral_frame": r.neutral_frame, "audio_from": r.audio_from,
            "seconds": round(r.seconds, 3), "error": r.error,
        }
        for r in results
    ]
    (out / "manifest.json").write_text(json.dumps(rows, indent=1))


def main(argv: Optional[list[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clips", type=Path, required=True,
                        help="folder of clip folders / videos (searched recursively)")
    parser.add_argument("--out", type=Path, required=True, help="dataset folder; gets train/ and holdout/")
    parser.add_argument("--holdout", default="", help="comma-separated clip names (or path parts) to hold out")
    parser.add_argument("--no-mirror", action="store_true", help="do not write mirrored training copies")
    parser.add_argument("--jobs", type=int, default=1, help="videos processed in parallel")
    parser.add_argument("--smoothing", type=float, default=0.7, help="temporal Gaussian sigma in frames (0: none)")
    parser.add_argument("--max-missing", type=float, default=0.5,
                        help="skip clips with a larger share of frames without a face")
    args = parser.parse_args(argv)
    holdout = {h.strip() for h in args.holdout.split(",") if h.strip()}
    results = prepare(args.clips, args.out, holdout, mirror=not args.no_mirror, jobs=args.jobs,
                      smoothing=args.smoothing, max_missing=args.max_missing)
    return 0 if any(r.example is not None for r in results) else 1


if __name__ == "__main__":
    raise SystemExit(main())

"""Turn talking-face videos into training pairs for the diffusion face renderer (``pipeline.models.face_renderer``).

    python training/data/prepare_renderer_data.py --clips ../shared/data/clips --out data/renderer \\
        --holdout grid_lrwp9a,vox_00098 --jobs 2

Videos are found and named like ``training/data/prepare_clips.py`` does (``find_videos``, ``clip_name``,
``--holdout`` by name or path part). For each video:

1. 68 landmarks on every frame (:func:`pipeline.video.extract_track`: the project's detector, missing frames
   interpolated, light temporal smoothing);
2. a fixed face crop for the whole clip, from the first frame's landmarks, exactly the warp renderer's crop
   (:meth:`pipeline.render.warp.WarpRenderer.prepare` at ``--resolution``): every frame is cut from the same box
   and resized like the renderer resizes its photo, so frame 0's crop is the renderer's source crop pixel for pixel;
3. each frame's landmarks in crop pixels;
4. the warp renderer's output from the clip's reference frame (frame 0) driven by each frame's own landmarks: the
   input the diffusion model refines, paired with the real frame as its target.

One compressed ``<name>.npz`` per clip goes to ``<out>/train/`` or ``<out>/holdout/`` with

* ``frames`` (T, R, R, 3) uint8 real crops, ``warp`` (T, R, R, 3) uint8 warp renders, ``landmarks`` (T, 68, 2)
  float32 crop pixels, ``photo_landmarks`` (T, 68, 2) float32 video pixels, ``box`` (4,) the crop in video pixels,
  ``reference_index`` (0), ``fps``, ``video`` (path), ``missing_frames``;

plus ``<out>/manifest.json``. These are frames of the source videos: keep ``--out`` out of version control
(``data/`` is git-ignored) and never commit them.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

import numpy as np

if __package__ in (None, ""):  # run as a script: make the repository importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from pipeline.errors import InputError, NoFaceError  # noqa: E402
from pipeline.render.warp import WarpRenderer, resized_crop  # noqa: E402
from pipeline.video import extract_track, iter_video_frames  # noqa: E402
from training.data.prepare_clips import clip_name, find_videos, is_held_out  # noqa: E402

REFERENCE_INDEX = 0


@dataclass
class RendererClip:
    """One prepared clip (see the module docstring for the arrays)."""

    name: str
    frames: np.ndarray  # (T, R, R, 3) uint8
    warp: np.ndarray  # (T, R, R, 3) uint8
    landmarks: np.ndarray  # (T, 68, 2) float32 crop pixels
    photo_landmarks: np.ndarray  # (T, 68, 2) float32 video pixels
    box: np.ndarray  # (4,) int x0, y0, x1, y1
    fps: float
    video: str = ""
    missing_frames: list[int] = field(default_factory=list)
    reference_index: int = REFERENCE_INDEX

    def save(self, folder: Path) -> Path:
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / f"{self.name}.npz"
        np.savez_compressed(
            path, frames=self.frames, warp=self.warp, landmarks=self.landmarks,
            photo_landmarks=self.photo_landmarks, box=self.box, fps=np.float32(self.fps), video=np.str_(self.video),
            missing_frames=np.asarray(self.missing_frames, np.int32), reference_index=np.int32(self.reference_index),
        )
        return path

    @classmethod
    def load(cls, path: Path) -> "RendererClip":
        with np.load(path) as data:
            return cls(
                name=Path(path).stem, frames=data["frames"], warp=data["warp"], landmarks=data["landmarks"],
                photo_landmarks=data["photo_landmarks"], box=data["box"], fps=float(data["fps"]),
                video=str(data["video"]), missing_frames=data["missing_frames"].tolist(),
                reference_index=int(data["reference_index"]),
            )


def find_clips(folder: Path) -> list[Path]:
    """The prepared clips in ``folder``, in name order."""
    return sorted(Path(folder).glob("*.npz"))


def prepare_clip(video: Path, name: str, resolution: int = 128, smoothing: float = 0.7, analyzer=None,
                 max_frames: Optional[int] = None) -> RendererClip:
    """Crops, landmarks and warp renders of one video (see the module docstring); raises InputError without a face."""
    track, report = extract_track(video, analyzer, smoothing=smoothing)
    photo_points = np.asarray(track.points2d, np.float64)
    frames = []
    for i, frame in enumerate(iter_video_frames(video)):
        if i == len(photo_points) or (max_frames is not None and i == max_frames):
            break
        frames.append(frame)
    photo_points = photo_points[: len(frames)]
    renderer = WarpRenderer(resolution)
    ctx = renderer.prepare(frames[REFERENCE_INDEX], photo_points[REFERENCE_INDEX])
    crops = np.stack([resized_crop(f, ctx.box, resolution) for f in frames])  # (T, R, R, 3)
    assert np.array_equal(crops[REFERENCE_INDEX], ctx.source), "the reference crop must be the renderer's source"
    return RendererClip(
        name=name,
        frames=crops,
        warp=renderer.render(ctx, photo_points),  # (T, R, R, 3)
        landmarks=renderer.crop_landmarks(ctx, photo_points).astype(np.float32),  # (T, 68, 2)
        photo_landmarks=photo_points.astype(np.float32),
        box=np.asarray(ctx.box, np.int32),
        fps=float(track.fps),
        video=str(video),
        missing_frames=list(report.missing_frames),
    )


def _job(args: tuple) -> tuple[str, bool, Optional[RendererClip], str, float]:
    video, name, holdout, resolution, smoothing, max_frames = args
    start = time.perf_counter()
    try:
        clip = prepare_clip(video, name, resolution, smoothing, max_frames=max_frames)
    except (InputError, NoFaceError) as exc:
        return name, holdout, None, str(exc), time.perf_counter() - start
    return name, holdout, clip, "", time.perf_counter() - start


def prepare(clips: Path, out: Path, holdout: set[str] = frozenset(), resolution: int = 128, jobs: int = 1,
            smoothing: float = 0.7, max_missing: float = 0.5, max_frames: Optional[int] = None,
            log=print) -> list[dict]:
    """Prepare every video under ``clips`` (its first ``max_frames`` frames, when given) into ``out/train`` and
    ``out/holdout``; returns the manifest rows."""
    clips, out = Path(clips), Path(out)
    videos = find_videos(clips)
    if not videos:
        raise SystemExit(f"No videos under {clips}.")
    names = [clip_name(v, clips) for v in videos]
    args = [(v, n, is_held_out(v, clips, n, set(holdout)), resolution, smoothing, max_frames)
            for v, n in zip(videos, names)]
    if jobs > 1:
        with ProcessPoolExecutor(max_workers=jobs) as pool:
            results = list(pool.map(_job, args))
    else:
        results = [_job(a) for a in args]
    rows = []
    for (name, held, clip, error, took), video in zip(results, videos):
        split, other = ("holdout", "train") if held else ("train", "holdout")
        (out / other / f"{name}.npz").unlink(missing_ok=True)  # a clip moved between splits by a new --holdout
        if clip is not None and len(clip.missing_frames) > max_missing * len(clip.frames):
            error, clip = f"no face in {len(clip.missing_frames)} of {len(clip.frames)} frames", None
        if clip is not None:
            clip.save(out / split)
        frames = 0 if clip is None else len(clip.frames)
        log(f"{name:<24} {split:<7} " + (f"SKIPPED: {error}" if clip is None else
            f"{frames:4d} frames, {len(clip.missing_frames):3d} missing-face, box {clip.box.tolist()} [{took:.1f} s]"))
        rows.append({"name": name, "video": str(video), "split": split, "frames": frames, "error": error,
                     "missing_frames": [] if clip is None else clip.missing_frames, "resolution": resolution})
    out.mkdir(parents=True, exist_ok=True)
    (out / "manifest.json").write_text(json.dumps(rows, indent=1))
    return rows


def main(argv: Optional[list[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clips", type=Path, required=True, help="folder of clip folders / videos")
    parser.add_argument("--out", type=Path, required=True, help="dataset folder; gets train/ and holdout/")
    parser.add_argument("--holdout", default="", help="comma-separated clip names (or path parts) to hold out")
    parser.add_argument("--resolution", type=int, default=128, help="side of the face crops (the model's)")
    parser.add_argument("--jobs", type=int, default=1, help="videos processed in parallel")
    parser.add_argument("--smoothing", type=float, default=0.7, help="temporal Gaussian sigma of the landmarks")
    parser.add_argument("--max-missing", type=float, default=0.5, help="skip clips with more frames without a face")
    parser.add_argument("--max-frames", type=int, help="use only the first frames of each video")
    args = parser.parse_args(argv)
    holdout = {h.strip() for h in args.holdout.split(",") if h.strip()}
    rows = prepare(args.clips, args.out, holdout, args.resolution, args.jobs, args.smoothing, args.max_missing,
                   args.max_frames)
    return 0 if any(r["frames"] for r in rows) else 1


if __name__ == "__main__":
    raise SystemExit(main())

"""Turn talking-face videos into training pairs for the diffusion face renderer (``pipeline.models.face_renderer``).

    python training/data/prepare_renderer_data.py --clips ../shared/data/clips --out data/renderer \\
        --holdout grid_lrwp9a,vox_00098 --jobs 2 --references 3

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

With ``--references N`` a training video gives up to N such clips, each warped from another of its frames (steps 2-4
again): frame 0, the frame with the mouth open widest and the one with it most closed, then frames spread over the
openings in between (:func:`reference_frames`). A user's photo can show any mouth (teeth, a smile, an open mouth),
and the model should learn to keep what the warp takes from such a photo, not only to mend warps of closed mouths.
Held-out videos keep frame 0 only: the evaluation drives each clip from its first frame.

One compressed ``<name>.npz`` per clip goes to ``<out>/train/`` or ``<out>/holdout/`` (``<name>@<frame>.npz`` for
the further references) with

* ``frames`` (T, R, R, 3) uint8 real crops, ``warp`` (T, R, R, 3) uint8 warp renders, ``landmarks`` (T, 68, 2)
  float32 crop pixels, ``photo_landmarks`` (T, 68, 2) float32 video pixels, ``box`` (4,) the crop in video pixels,
  ``reference_index``, ``fps``, ``video`` (path), ``missing_frames``;

plus ``<out>/manifest.json``. These are frames of the source videos: keep ``--out`` out of version control
(``data/`` is git-ignored) and never commit them.
"""

from __future__ import annotations

import argparse
import glob
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
from pipeline.render.mouth import inner_opening  # noqa: E402
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


def reference_frames(points: np.ndarray, count: int) -> list[int]:
    """Up to ``count`` distinct frames to warp from, for landmarks ``(T, 68, 2)``: frame 0, then the widest and the
    most closed mouth (inner-lip opening), then frames at openings evenly spread between those two."""
    openings = inner_opening(points)  # (T,)
    order = np.argsort(openings, kind="stable")
    chosen = [REFERENCE_INDEX, int(order[-1]), int(order[0])]
    chosen += [int(order[round(q * (len(order) - 1))]) for q in np.linspace(0, 1, max(count - 1, 2))[1:-1]]
    unique = list(dict.fromkeys(chosen))
    return unique[: max(count, 1)]


def prepare_clip(video: Path, name: str, resolution: int = 128, smoothing: float = 0.7, analyzer=None,
                 max_frames: Optional[int] = None, references: int = 1) -> list[RendererClip]:
    """Crops, landmarks and warp renders of one video (see the module docstring), one clip per reference frame
    (:func:`reference_frames`; frame 0's first, named ``name``); raises InputError without a face."""
    track, report = extract_track(video, analyzer, smoothing=smoothing)
    photo_points = np.asarray(track.points2d, np.float64)
    frames = []
    for i, frame in enumerate(iter_video_frames(video)):
        if i == len(photo_points) or (max_frames is not None and i == max_frames):
            break
        frames.append(frame)
    photo_points = photo_points[: len(frames)]
    renderer = WarpRenderer(resolution)
    clips = []
    for k in reference_frames(photo_points, references):
        ctx = renderer.prepare(frames[k], photo_points[k])
        crops = np.stack([resized_crop(f, ctx.box, resolution) for f in frames])  # (T, R, R, 3)
        assert np.array_equal(crops[k], ctx.source), "the reference crop must be the renderer's source"
        clips.append(RendererClip(
            name=name if k == REFERENCE_INDEX else f"{name}@{k}",
            frames=crops,
            warp=renderer.render(ctx, photo_points),  # (T, R, R, 3)
            landmarks=renderer.crop_landmarks(ctx, photo_points).astype(np.float32),  # (T, 68, 2)
            photo_landmarks=photo_points.astype(np.float32),
            box=np.asarray(ctx.box, np.int32),
            fps=float(track.fps),
            video=str(video),
            missing_frames=list(report.missing_frames),
            reference_index=k,
        ))
    return clips


def _job(args: tuple) -> tuple[str, bool, list[RendererClip], str, float]:
    video, name, holdout, resolution, smoothing, max_frames, references = args
    start = time.perf_counter()
    try:
        clips = prepare_clip(video, name, resolution, smoothing, max_frames=max_frames, references=references)
    except (InputError, NoFaceError) as exc:
        return name, holdout, [], str(exc), time.perf_counter() - start
    return name, holdout, clips, "", time.perf_counter() - start


def prepare(clips: Path, out: Path, holdout: set[str] = frozenset(), resolution: int = 128, jobs: int = 1,
            smoothing: float = 0.7, max_missing: float = 0.5, max_frames: Optional[int] = None,
            references: int = 1, log=print) -> list[dict]:
    """Prepare every video under ``clips`` (its first ``max_frames`` frames, when given) into ``out/train`` (up to
    ``references`` clips per video) and ``out/holdout`` (frame 0's only); returns the manifest rows."""
    clips, out = Path(clips), Path(out)
    videos = find_videos(clips)
    if not videos:
        raise SystemExit(f"No videos under {clips}.")
    names = [clip_name(v, clips) for v in videos]
    held = [is_held_out(v, clips, n, set(holdout)) for v, n in zip(videos, names)]
    args = [(v, n, h, resolution, smoothing, max_frames, 1 if h else references)
            for v, n, h in zip(videos, names, held)]
    if jobs > 1:
        with ProcessPoolExecutor(max_workers=jobs) as pool:
            results = list(pool.map(_job, args))
    else:
        results = [_job(a) for a in args]
    rows = []
    for (name, held, prepared, error, took), video in zip(results, videos):
        split = "holdout" if held else "train"
        for folder in (out / "train", out / "holdout"):  # earlier runs' clips of this video (other split, references)
            for stale in (*folder.glob(glob.escape(name) + ".npz"), *folder.glob(glob.escape(name) + "@*.npz")):
                stale.unlink()
        first = prepared[0] if prepared else None
        if first is not None and len(first.missing_frames) > max_missing * len(first.frames):
            error, prepared = f"no face in {len(first.missing_frames)} of {len(first.frames)} frames", []
        for clip in prepared:
            clip.save(out / split)
        frames = len(prepared[0].frames) if prepared else 0
        log(f"{name:<24} {split:<7} " + (f"SKIPPED: {error}" if not prepared else
            f"{frames:4d} frames, {len(first.missing_frames):3d} missing-face, box {first.box.tolist()}, "
            f"references {[c.reference_index for c in prepared]} [{took:.1f} s]"))
        rows.append({"name": name, "video": str(video), "split": split, "frames": frames, "error": error,
                     "missing_frames": first.missing_frames if prepared else [], "resolution": resolution,
                     "references": [c.reference_index for c in prepared]})
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
    parser.add_argument("--references", type=int, default=1,
                        help="training clips per video, each warped from another frame (see reference_frames)")
    args = parser.parse_args(argv)
    holdout = {h.strip() for h in args.holdout.split(",") if h.strip()}
    rows = prepare(args.clips, args.out, holdout, args.resolution, args.jobs, args.smoothing, args.max_missing,
                   args.max_frames, args.references)
    return 0 if any(r["frames"] for r in rows) else 1


if __name__ == "__main__":
    raise SystemExit(main())

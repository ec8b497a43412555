"""Compute the canonical mean face (``pipeline/assets/mean_face.json``) by generalised Procrustes analysis.

Landmarks are detected on every ``--stride``-th frame of each talking-face clip under ``--clips`` and on
every portrait under ``--portraits``; only the averaged 68 coordinates are written, never any media.

    python training/make_mean_face.py --clips ../shared/data/clips --portraits ../shared/data/portraits
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from pipeline.canonical import MEAN_FACE_FILE, normalise_shape, similarity_transform, apply_transform
from pipeline.face import FaceAnalyzer
from pipeline.images import IMAGE_SUFFIXES
from pipeline.regions import MIRROR, STABLE
from pipeline.video import iter_video_frames


VIDEO_SUFFIXES = {".mp4", ".mpg", ".mov", ".avi", ".mkv", ".webm"}


def collect_shapes(clips: Path | None, portraits: Path | None, stride: int) -> list[np.ndarray]:
    analyzer = FaceAnalyzer()
    shapes = []
    if clips is not None:
        for video in sorted(p for p in clips.rglob("*") if p.suffix.lower() in VIDEO_SUFFIXES):
            for i, frame in enumerate(iter_video_frames(video)):
                if i % stride == 0 and (det := analyzer.try_detect(frame)) is not None:
                    shapes.append(det.landmarks)
    if portraits is not None:
        for image in sorted(p for p in portraits.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES):
            if (det := analyzer.try_detect(image)) is not None:
                shapes.append(det.landmarks)
    return shapes


def procrustes_mean(shapes: list[np.ndarray], iterations: int = 10) -> np.ndarray:
    """Generalised Procrustes mean of the shapes and their mirror images (so the mean face is symmetric)."""
    mirrored = [s[list(MIRROR)] * np.array([-1.0, 1.0]) for s in shapes]
    aligned = np.stack([normalise_shape(s) for s in shapes + mirrored])
    mean = normalise_shape(aligned.mean(axis=0))
    for _ in range(iterations):
        aligned = np.stack([apply_transform(similarity_transform(s[list(STABLE)], mean[list(STABLE)]), s) for s in aligned])
        mean = normalise_shape(aligned.mean(axis=0))
    return mean


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clips", type=Path)
    parser.add_argument("--portraits", type=Path)
    parser.add_argument("--stride", type=int, default=5, help="use every N-th video frame")
    parser.add_argument("-o", "--output", type=Path, default=MEAN_FACE_FILE)
    args = parser.parse_args()
    shapes = collect_shapes(args.clips, args.portraits, args.stride)
    if not shapes:
        raise SystemExit("no faces found")
    mean = procrustes_mean(shapes)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(
        json.dumps(
            {
                "description": "68-point mean face, canonical units (outer eye corners 1 apart, level, "
                "centred on the stable points); made by training/make_mean_face.py",
                "num_shapes": len(shapes),
                "points": np.round(mean, 5).tolist(),
            }
        )
        + "\n"
    )
    print(f"mean face from {len(shapes)} faces -> {args.output}")


if __name__ == "__main__":
    main()

"""Compute the 3D canonical mean face (``pipeline/assets/mean_face.json``) by generalised Procrustes analysis.

The 68 points with depth (the default mesh front end) are taken on every ``--stride``-th frame of each
talking-face clip under ``--clips`` (clips named in ``--exclude`` are skipped: keep held-out people out) and on
every portrait under ``--portraits``. Each face and its mirror image are aligned by 3D similarity transforms on
the stable points, and the mean is put in the canonical frame: outer eye corners 1 apart, centred on the stable
points, x from the subject's right to left (the image's left to right), y down, z away from the camera, turned
about x so that the median face of the data has zero pitch (a face looking into the camera is frontal). Only the
averaged coordinates are written, never any media.

    python training/make_mean_face.py --clips ../shared/data/clips --portraits ../shared/data/portraits \\
        --exclude grid_lrwp9a,vox_00098,...
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from pipeline.canonical import (
    MEAN_FACE_FILE,
    apply_transform,
    pose_from_transform,
    rotation_matrix,
    similarity_transform,
)
from pipeline.face import FaceAnalyzer
from pipeline.images import IMAGE_SUFFIXES
from pipeline.regions import EYE_OUTER_CORNERS, MIRROR, STABLE
from pipeline.video import iter_video_frames

VIDEO_SUFFIXES = {".mp4", ".mpg", ".mov", ".avi", ".mkv", ".webm"}


def collect_shapes(clips: Path | None, portraits: Path | None, stride: int, exclude: set[str]) -> list[np.ndarray]:
    """68 x 3 points of the faces in the clips (every ``stride``-th frame, tracked) and portraits."""
    analyzer = FaceAnalyzer()
    shapes = []
    if clips is not None:
        for video in sorted(p for p in clips.rglob("*") if p.suffix.lower() in VIDEO_SUFFIXES):
            if exclude & set(video.relative_to(clips).parts):
                continue
            tracker = analyzer.tracker()
            for i, frame in enumerate(iter_video_frames(video)):
                det = tracker.update(frame)
                if i % stride == 0 and det is not None:
                    shapes.append(det.points3d.astype(np.float64))
    if portraits is not None:
        for image in sorted(p for p in portraits.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES):
            if (det := analyzer.try_detect(image)) is not None:
                shapes.append(det.points3d.astype(np.float64))
    return shapes


def mirror(points: np.ndarray) -> np.ndarray:
    """The face of the left-right mirrored image: ``x -> -x``, each point swapped with its partner."""
    return points[list(MIRROR)] * np.array([-1.0, 1.0, 1.0])


def frontal_frame(points: np.ndarray) -> np.ndarray:
    """Put a 3D face in the canonical frame (see the module docstring)."""
    pairs = [(i, j) for i, j in enumerate(MIRROR) if i < j]
    x_axis = np.mean([points[j] - points[i] for i, j in pairs], axis=0)
    x_axis /= np.linalg.norm(x_axis)
    eyes = points[list(EYE_OUTER_CORNERS)].mean(axis=0)
    down = points[[48, 54]].mean(axis=0) - eyes
    y_axis = down - (down @ x_axis) * x_axis
    y_axis /= np.linalg.norm(y_axis)
    rotation = np.stack([x_axis, y_axis, np.cross(x_axis, y_axis)])  # rows: the new axes
    centred = (points - points[list(STABLE)].mean(axis=0)) @ rotation.T
    iod = np.linalg.norm(centred[EYE_OUTER_CORNERS[1]] - centred[EYE_OUTER_CORNERS[0]])
    return centred / iod


def procrustes_mean(shapes: list[np.ndarray], iterations: int = 10) -> np.ndarray:
    """Generalised Procrustes mean in 3D of the shapes and their mirror images (so the mean face is symmetric),
    turned so the median shape has zero pitch."""
    aligned = np.stack([frontal_frame(s) for s in shapes + [mirror(s) for s in shapes]])
    mean = frontal_frame(aligned.mean(axis=0))
    stable = list(STABLE)
    for _ in range(iterations):
        aligned = np.stack([apply_transform(similarity_transform(s[stable], mean[stable]), s) for s in aligned])
        mean = frontal_frame(aligned.mean(axis=0))
    pitch = np.median([pose_from_transform(similarity_transform(s[stable], mean[stable]))[1] for s in shapes])
    return mean @ rotation_matrix([0.0, pitch, 0.0]).T


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clips", type=Path)
    parser.add_argument("--portraits", type=Path)
    parser.add_argument("--exclude", default="", help="comma-separated clip folder names to leave out")
    parser.add_argument("--stride", type=int, default=5, help="use every N-th video frame")
    parser.add_argument("-o", "--output", type=Path, default=MEAN_FACE_FILE)
    args = parser.parse_args()
    exclude = {e.strip() for e in args.exclude.split(",") if e.strip()}
    shapes = collect_shapes(args.clips, args.portraits, args.stride, exclude)
    if not shapes:
        raise SystemExit("no faces found")
    mean = procrustes_mean(shapes)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps({
        "description": "68-point 3D mean face, canonical units (outer eye corners 1 apart, centred on the stable "
        "points; x to the image's right, y down, z away from the camera); made by training/make_mean_face.py "
        "from the mesh front end",
        "num_shapes": len(shapes),
        "excluded": sorted(exclude),
        "points": np.round(mean, 5).tolist(),
    }) + "\n")
    print(f"mean face from {len(shapes)} faces (and their mirror images) -> {args.output}")


if __name__ == "__main__":
    main()

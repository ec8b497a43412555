"""The face front end, measured: tracking speed, agreement with an independent 68-point detector, and pose.

* **speed**: frames per second of :func:`pipeline.video.extract_track`'s face tracking (decoded frames in memory,
  so the figure is the front end's own) on a talking clip whose face is about 256 px wide, at 1 and 2 threads;
  without ``--clips`` on a synthetic sliding-and-turning copy of scikit-image's astronaut, scaled to the same size;
* **agreement**: per clip, the correlation of the mouth opening (mean inner-lip gap over the eye distance) of our 68
  points with that of dlib's 68-point predictor (the optional, research-use backend), on the first ``--frames``
  frames of every clip under ``--clips``;
* **pose**: for each portrait under ``--portraits``, the yaw of the photo and of its mirror image, and the roll
  change when the photo is turned 15 degrees in-plane.

    python bench/front_end.py --clips ../shared/data/clips --portraits ../shared/data/portraits --out results/front_end
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pipeline.canonical import pose_from_transform, to_canonical  # noqa: E402
from pipeline.face import FaceAnalyzer  # noqa: E402
from pipeline.images import IMAGE_SUFFIXES, load_image  # noqa: E402
from pipeline.regions import INNER_LIP_PAIRS  # noqa: E402
from pipeline.video import iter_video_frames  # noqa: E402

SPEED_CLIP = "hdtf_theresamay"  # 512 x 512 frames, a face about 245 px wide


def mouth_opening(points: np.ndarray) -> np.ndarray:
    """Mean inner-lip gap over the outer-eye-corner distance, per frame ``(T,)``."""
    points = np.asarray(points, dtype=np.float64)[..., :2]
    iod = np.linalg.norm(points[:, 45] - points[:, 36], axis=1)
    gaps = [np.linalg.norm(points[:, i] - points[:, j], axis=1) for i, j in INNER_LIP_PAIRS]
    return np.mean(gaps, axis=0) / iod


def video_of(clip: Path) -> Path:
    return next(p for p in sorted(clip.iterdir()) if p.stem == "video")


def synthetic_frames(num: int = 150) -> list[np.ndarray]:
    import skimage.data

    base = Image.fromarray(skimage.data.astronaut()).resize((1024, 1024), Image.BICUBIC)  # face about 250 px
    return [np.roll(np.asarray(base.rotate(3 * np.sin(k / 10), center=(460, 260))), int(20 * np.sin(k / 15)), axis=1)
            for k in range(num)]


def tracking_speed(analyzer: FaceAnalyzer, frames: list[np.ndarray], threads: int, repeats: int = 3) -> float:
    """Median frames per second of tracking the face through ``frames``."""
    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    rates = []
    try:
        for _ in range(repeats):
            tracker = analyzer.tracker()
            start = time.perf_counter()
            for frame in frames:
                tracker.update(frame)
            rates.append(len(frames) / (time.perf_counter() - start))
    finally:
        torch.set_num_threads(previous)
    return float(np.median(rates))


def agreement(analyzer: FaceAnalyzer, clips: Path, max_frames: int) -> dict[str, dict[str, float]]:
    """Mouth-opening correlation with dlib's 68 points, per clip."""
    reference = FaceAnalyzer("dlib")
    rows = {}
    for clip in sorted(p for p in clips.iterdir() if p.is_dir()):
        ours, theirs = [], []
        tracker = analyzer.tracker()
        for i, frame in enumerate(iter_video_frames(video_of(clip))):
            if i >= max_frames:
                break
            mine, other = tracker.update(frame), reference.try_detect(frame)
            if mine is not None and other is not None:
                ours.append(mine.landmarks)
                theirs.append(other.landmarks)
        if len(ours) < 10:
            continue
        a, b = mouth_opening(np.stack(ours)), mouth_opening(np.stack(theirs))
        rows[clip.name] = {"frames": len(ours), "r": float(np.corrcoef(a, b)[0, 1]),
                           "opening_ours": float(a.mean()), "opening_dlib": float(b.mean())}
        print(f"{clip.name:<24} {len(ours):4d} frames  r = {rows[clip.name]['r']:.3f}", flush=True)
    return rows


def pose_of(analyzer: FaceAnalyzer, image: np.ndarray) -> np.ndarray:
    return pose_from_transform(to_canonical(analyzer.detect(image).points3d)[1])


def pose_checks(analyzer: FaceAnalyzer, portraits: list[Path]) -> dict[str, dict[str, float]]:
    rows = {}
    for path in portraits:
        image = load_image(path)
        pose = pose_of(analyzer, image)
        mirrored = pose_of(analyzer, np.ascontiguousarray(image[:, ::-1]))
        turned = pose_of(analyzer, np.asarray(Image.fromarray(image).rotate(15, resample=Image.BICUBIC)))
        rows[path.name] = {"yaw": float(pose[0]), "pitch": float(pose[1]), "roll": float(pose[2]),
                           "yaw_mirrored": float(mirrored[0]), "yaw_sum": float(pose[0] + mirrored[0]),
                           "roll_change_15": float(turned[2] - pose[2])}
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clips", type=Path)
    parser.add_argument("--portraits", type=Path)
    parser.add_argument("--frames", type=int, default=250, help="frames per clip for the agreement figure")
    parser.add_argument("--speed", action=argparse.BooleanOptionalAction, default=True,
                        help="measure the tracking speed (give the machine to it: no other jobs)")
    parser.add_argument("--out", type=Path, default=Path("results/front_end"))
    args = parser.parse_args()
    analyzer = FaceAnalyzer()
    report: dict[str, object] = {}

    if args.speed:
        if args.clips is not None and (args.clips / SPEED_CLIP).is_dir():
            frames, source = list(iter_video_frames(video_of(args.clips / SPEED_CLIP))), SPEED_CLIP
        else:
            frames, source = synthetic_frames(), "synthetic astronaut, 1024 x 1024"
        box = analyzer.detect(frames[0]).box
        report["speed"] = {"source": source, "frames": len(frames), "face_width_px": box[2] - box[0],
                           **{f"fps_{t}_threads": tracking_speed(analyzer, frames, t) for t in (1, 2)}}
        print("speed:", report["speed"], flush=True)

    if args.clips is not None and importlib.util.find_spec("dlib") is not None:
        rows = agreement(analyzer, args.clips, args.frames)
        values = np.array([r["r"] for r in rows.values()])
        report["agreement"] = {"clips": rows, "median_r": float(np.median(values)), "mean_r": float(values.mean()),
                               "share_at_least_0.85": float((values >= 0.85).mean())}
        print(f"agreement: median r {np.median(values):.3f}, mean {values.mean():.3f}", flush=True)

    if args.portraits is not None:
        portraits = sorted(p for p in args.portraits.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
        report["pose"] = pose_checks(analyzer, portraits)
        for name, row in report["pose"].items():
            print(f"{name:<20} yaw {row['yaw']:6.1f}  mirrored {row['yaw_mirrored']:6.1f}  "
                  f"roll change for a 15 deg turn {row['roll_change_15']:6.1f}", flush=True)

    args.out.mkdir(parents=True, exist_ok=True)
    name = "front_end.json" if args.speed else "front_end_quality.json"
    (args.out / name).write_text(json.dumps(report, indent=1) + "\n")
    print(f"-> {args.out / name}")


if __name__ == "__main__":
    main()

"""How closely the rendered video follows its driving track.

Extracts the landmark track of a real talking-face clip, retargets it onto a portrait, renders it with the warp
renderer, re-detects the landmarks on every rendered frame and reports the mean error against the track (all 68
points and the mouth alone), in inter-ocular units.

    python bench/track_fidelity.py --clips ../shared/data/clips --portraits ../shared/data/portraits
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pipeline.canonical import inter_ocular  # noqa: E402
from pipeline.face import FaceAnalyzer  # noqa: E402
from pipeline.images import load_image  # noqa: E402
from pipeline.landmarks import retarget  # noqa: E402
from pipeline.regions import MOUTH  # noqa: E402
from pipeline.render.warp import WarpRenderer  # noqa: E402
from pipeline.video import extract_track  # noqa: E402


def fidelity(analyzer: FaceAnalyzer, video: Path, portrait: Path, size: int) -> dict[str, float]:
    track, _ = extract_track(video, analyzer)
    image = load_image(portrait)
    reference = analyzer.detect(image).landmarks
    target = retarget(track, reference, (image.shape[1], image.shape[0])).points2d
    renderer = WarpRenderer(size=size)
    ctx = renderer.prepare(image, reference)
    frames = renderer.render(ctx, target)
    expected = renderer.crop_landmarks(ctx, target)  # (T, 68, 2) in output pixels
    errors, mouth, missed = [], [], 0
    for frame, want in zip(frames, expected, strict=False):
        found = analyzer.try_detect(frame)
        if found is None:
            missed += 1
            continue
        dist = np.linalg.norm(found.landmarks - want, axis=1) / inter_ocular(want)
        errors.append(dist.mean())
        mouth.append(dist[list(MOUTH)].mean())
    return {"all": float(np.mean(errors)), "mouth": float(np.mean(mouth)), "missed": missed, "frames": len(frames)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clips", type=Path, required=True)
    parser.add_argument("--portraits", type=Path, required=True)
    parser.add_argument("--pairs", default="hdtf_theresamay:lp_s1.jpg,grid_bbaf2n:people_0.png,"
                        "vox_00015:hallo_6.jpg,grid_lbax4n:sad.png")
    parser.add_argument("--size", type=int, default=256)
    args = parser.parse_args()
    analyzer = FaceAnalyzer()
    print("| clip | portrait | frames | error, 68 points (IOD) | error, mouth (IOD) | no face re-detected |")
    print("|---|---|---|---|---|---|")
    rows = []
    for pair in args.pairs.split(","):
        clip, portrait = pair.split(":")
        video = next((args.clips / clip).glob("video.*"))
        r = fidelity(analyzer, video, args.portraits / portrait, args.size)
        rows.append(r)
        print(f"| {clip} | {portrait} | {r['frames']} | {r['all']:.3f} | {r['mouth']:.3f} | {r['missed']} |")
    print(f"| mean | | | {np.mean([r['all'] for r in rows]):.3f} | {np.mean([r['mouth'] for r in rows]):.3f} | |")


if __name__ == "__main__":
    main()

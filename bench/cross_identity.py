"""The warp renderer under real motion: held-out portraits driven by other held-out people's real clips.

    H=$(python -c "from training.data.clip_sources import HOLDOUT; print(','.join(HOLDOUT))")
    python bench/cross_identity.py --clips ../shared/data/clips --holdout $H --out results/cross_identity

Pair ``i`` animates the photo (``ref.png``) of held-out person ``i`` with the tracked landmarks of held-out person
``i + 1``'s video (retargeted, as ``python -m pipeline render`` does), at 256². On the rendered frames, re-tracked
with the mesh front end:

* ``face``: the share of frames where a face is found;
* ``identity``: dlib's face-descriptor distance (Euclidean; dlib calls two faces the same person below 0.6; a torn
  face measures about 0.5) of each rendered frame to the portrait, median and 90th percentile;
* ``mouth r`` / ``turn r``: Pearson r of the rendered mouth aperture and yaw with the driver's own (re-tracked
  frames against the driver's tracked ones);
* ``folds``: frames of the warp in which a destination triangle folds over (its signed area turns negative), as the
  track asks for them and as rendered (the renderer unfolds them: ``pipeline.render.warp.unfold``).

``--pair PHOTO:DRIVER`` (repeatable) adds pairs of any photo (a path) driven by a clip folder's video in ``--clips``,
e.g. the smiling portrait ``../shared/data/portraits/happy.png:latentsync_demo2``.

Also the renderer's speed (frames a second, 256², all pairs; ``--renderer diffusion`` judges the checkpoint's
diffusion renderer instead of the warp renderer; ``--strength``, ``--mouth-margin``, ``--mouth-inside`` and
``--seed`` change its settings and noise) and a contact sheet per pair (driver above, rendered below, five
frames) in ``--out``, beside ``cross_identity.md`` / ``.json``. The contact sheets show ``../shared/data`` people:
they stay in the git-ignored results folder.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench.quality import FaceEmbedder  # noqa: E402
from pipeline.canonical import pose_from_transform  # noqa: E402
from pipeline.face import FaceAnalyzer  # noqa: E402
from pipeline.images import load_image  # noqa: E402
from pipeline.landmarks import LandmarkTrack, face_points, retarget  # noqa: E402
from pipeline.render.warp import WarpRenderer, destinations, folded_triangles, track_destinations  # noqa: E402
from pipeline.threads import stage_threads  # noqa: E402
from pipeline.video import extract_track, iter_video_frames  # noqa: E402
from training.metrics import mouth_aperture  # noqa: E402


def _r(a: np.ndarray, b: np.ndarray) -> float:
    if len(a) < 3 or np.std(a) < 1e-9 or np.std(b) < 1e-9:
        return 0.0
    return float(np.corrcoef(a, b)[0, 1])


def folded_frames(ctx, frames: np.ndarray) -> tuple[int, int]:
    """Frames in which a warp triangle folds over (:func:`pipeline.render.warp.folded_triangles`; all are
    counter-clockwise on the photo's own layout): as the track asks for them, and as rendered (unfolded)."""
    asked = folded_triangles(ctx, track_destinations(ctx, frames)[0]).any(axis=1)
    rendered = folded_triangles(ctx, destinations(ctx, frames)).any(axis=1)
    return int(asked.sum()), int(rendered.sum())


def diffusion_renderer(checkpoint: str | None, strength: float | None = None, mouth_margin: float | None = None,
                       seed: int = 0, mouth_inside: str | None = None):
    """The checkpoint's diffusion renderer at 256², with the pipeline's settings (``strength``, ``mouth_margin`` and
    ``mouth_inside``, "keep" or "repaint", instead where given) and its noise drawn from a generator seeded with
    ``seed``."""
    import torch

    from pipeline.loading import load_pipeline

    pipe = load_pipeline(checkpoint, warm=False)
    renderer = pipe.make_renderer("diffusion", 256, generator=torch.Generator().manual_seed(seed))
    if strength is not None:
        renderer.strength = strength
    if mouth_margin is not None:
        renderer.mouth_margin = mouth_margin
    if mouth_inside is not None:
        renderer.keep_mouth_inside = mouth_inside == "keep"
    return renderer


def retrack(analyzer: FaceAnalyzer, frames: np.ndarray) -> list:
    tracker = analyzer.tracker()
    return [tracker.update(frame) for frame in frames]


def contact_sheet(driver_frames: list[np.ndarray], rendered: np.ndarray, path: Path, count: int = 5) -> None:
    from PIL import Image

    picks = np.linspace(0, len(rendered) - 1, count).round().astype(int)
    side = rendered.shape[1]
    top = [np.asarray(Image.fromarray(driver_frames[i]).resize((side, side))) for i in picks]
    sheet = np.concatenate([np.concatenate(top, axis=1), np.concatenate(list(rendered[picks]), axis=1)], axis=0)
    Image.fromarray(sheet).save(path)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clips", type=Path, required=True)
    parser.add_argument("--holdout", required=True, help="comma-separated held-out clip names (at least 2)")
    parser.add_argument("--pair", action="append", default=[], metavar="PHOTO:DRIVER",
                        help="also animate this photo (a path) with this clip's video (a name in --clips)")
    parser.add_argument("--out", type=Path, default=REPO / "results" / "cross_identity")
    parser.add_argument("--renderer", choices=("warp", "diffusion"), default="warp",
                        help="diffusion: the checkpoint's diffusion renderer (warp + refined lower face)")
    parser.add_argument("--checkpoint", help="pipeline folder for --renderer diffusion (default: checkpoints/)")
    parser.add_argument("--strength", type=float, help="--renderer diffusion: instead of the pipeline's strength")
    parser.add_argument("--mouth-margin", type=float,
                        help="--renderer diffusion: instead of the pipeline's mouth_margin (inter-ocular units)")
    parser.add_argument("--mouth-inside", choices=("keep", "repaint"),
                        help="--renderer diffusion: instead of the pipeline's setting (keep: the inside of the mouth "
                             "stays the warp frame's)")
    parser.add_argument("--seed", type=int, default=0, help="--renderer diffusion: seed of the renderer's noise")
    args = parser.parse_args()
    names = args.holdout.split(",")
    analyzer, embedder = FaceAnalyzer(), FaceEmbedder()
    renderer = (WarpRenderer(size=256) if args.renderer == "warp"
                else diffusion_renderer(args.checkpoint, args.strength, args.mouth_margin, args.seed,
                                        args.mouth_inside))
    args.out.mkdir(parents=True, exist_ok=True)
    rows, render_seconds, rendered_frames = {}, 0.0, 0
    pairs = [(args.clips / names[i] / "ref.png", names[i], names[i + 1]) for i in range(len(names) - 1)]
    for extra in args.pair:
        photo_path, _, driver_name = extra.rpartition(":")
        if not photo_path or not (args.clips / driver_name).is_dir() or not Path(photo_path).is_file():
            parser.error(f"--pair {extra!r}: give PHOTO:DRIVER, a photo file and a clip folder name in --clips")
        pairs.append((Path(photo_path), Path(photo_path).stem, driver_name))
    for photo_path, person_name, driver_name in pairs:
        driver = args.clips / driver_name
        video = next(iter(sorted(driver.glob("video.*"))))
        photo = load_image(photo_path)
        face = analyzer.detect(photo)
        track, _ = extract_track(video, analyzer)
        driven = retarget(track, face_points(face), (photo.shape[1], photo.shape[0])).points2d
        ctx = renderer.prepare(photo, face.landmarks)
        start = time.perf_counter()
        with stage_threads(args.renderer):
            rendered = renderer.render(ctx, driven)
        render_seconds += time.perf_counter() - start
        rendered_frames += len(rendered)
        found = retrack(analyzer, rendered)
        ok = [k for k, d in enumerate(found) if d is not None]
        portrait = embedder.embed(photo, face.landmarks)
        distances = [float(np.linalg.norm(embedder.embed(rendered[k], found[k].landmarks) - portrait)) for k in ok]
        real = track.canonical()
        if ok:
            redetected = LandmarkTrack(np.stack([face_points(found[k]) for k in ok]), track.fps,
                                       (rendered.shape[2], rendered.shape[1]))
            canon, transforms = redetected.canonical()
            mouth_r = _r(mouth_aperture(canon[:, :, :2]), mouth_aperture(real[0][ok][:, :, :2]))
            turn_r = _r(pose_from_transform(transforms)[:, 0], pose_from_transform(real[1][ok])[:, 0])
        else:
            mouth_r = turn_r = 0.0
        name = f"{person_name} <- {driver_name}"
        rows[name] = {
            "frames": len(rendered), "face": len(ok) / len(rendered),
            "identity_median": float(np.median(distances)) if distances else float("nan"),
            "identity_p90": float(np.percentile(distances, 90)) if distances else float("nan"),
            "mouth_r": mouth_r, "turn_r": turn_r,
            **dict(zip(("folds_asked", "folds"), folded_frames(getattr(ctx, "warp", ctx), driven), strict=True))}
        contact_sheet(list(iter_video_frames(video)), rendered, args.out / f"{person_name}_from_{driver_name}.png")
        print(name, {k: round(v, 3) for k, v in rows[name].items()}, flush=True)
    fps = rendered_frames / render_seconds
    lines = ["| portrait <- driver | frames | face found | identity median | identity p90 | mouth r | turn r | "
             "frames with folds asked / rendered |", "|---|---|---|---|---|---|---|---|"]
    for name, r in rows.items():
        lines.append(f"| {name} | {r['frames']} | {r['face']:.1%} | {r['identity_median']:.3f} | "
                     f"{r['identity_p90']:.3f} | {r['mouth_r']:.3f} | {r['turn_r']:.3f} | "
                     f"{r['folds_asked']} / {r['folds']} |")
    lines.append(f"\n{args.renderer.capitalize()} renderer: {fps:.0f} frames/s at 256² over {rendered_frames} frames "
                 "(this machine).")
    (args.out / "cross_identity.md").write_text("\n".join(lines) + "\n")
    (args.out / "cross_identity.json").write_text(json.dumps({"pairs": rows, "warp_fps": fps}, indent=2))
    print("\n".join(lines))


if __name__ == "__main__":
    main()

"""Video-driven dubbing (``generate --driving-video``) measured on held-out people, on the landmark track and, with
``--video``, on the rendered video.

    H=$(python -c "from training.data.clip_sources import HOLDOUT; print(','.join(HOLDOUT))")
    python bench/dubbing.py --clips ../shared/data/clips --holdout $H --out results/dubbing [--video]

Each held-out clip drives the photo (``ref.png``) of the next held-out person in the list with its own video and its
own speech, as :meth:`TalkingFacePipeline.dub_landmarks` does for the command line. Against the clip's own tracked
landmarks (the mesh front end), in the pose-free space: Pearson r of yaw, pitch and roll (head turn), of eye openness
and brow height (upper face: these come from the video), and of the mouth aperture at lag 0 (the lower face: generated
from the speech). ``--video`` also renders each dubbed track with the warp renderer (256² crop) and scores the
landmarks the front end finds in that video the same way, as a user's output would be judged. Writes ``dubbing.md``
and ``dubbing.json``.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from pipeline.app_logic import eye_openness  # noqa: E402
from pipeline.canonical import pose_from_transform  # noqa: E402
from pipeline.regions import BROWS, EYES  # noqa: E402
from training.metrics import mouth_aperture  # noqa: E402

COLUMNS = ("yaw", "pitch", "roll", "eyes", "brows", "mouth")


def _r(a: np.ndarray, b: np.ndarray) -> float:
    if np.std(a) < 1e-9 or np.std(b) < 1e-9:
        return 0.0
    return float(np.corrcoef(a, b)[0, 1])


def _brow_height(canon: np.ndarray) -> np.ndarray:
    """Brows above the eyes per frame (canonical units; y points down, so larger is lower brows)."""
    return canon[:, list(BROWS), 1].mean(axis=1) - canon[:, list(EYES), 1].mean(axis=1)


def follow(dubbed, driving) -> dict[str, float]:
    """Correlations of the dubbed track with the driving video's own track, frame by frame (at the dubbed track's
    frame rate)."""
    driving = driving.at_fps(dubbed.fps)
    n = min(dubbed.num_frames, driving.num_frames)
    (cd, td), (cr, tr) = dubbed.canonical(), driving.canonical()
    pd, pr = pose_from_transform(td)[:n], pose_from_transform(tr)[:n]
    out = {name: _r(pd[:, i], pr[:, i]) for i, name in enumerate(("yaw", "pitch", "roll"))}
    out["eyes"] = _r(eye_openness(dubbed)[:n], eye_openness(driving)[:n])
    out["brows"] = _r(_brow_height(cd[:n]), _brow_height(cr[:n]))
    out["mouth"] = _r(mouth_aperture(cd[:n, :, :2]), mouth_aperture(cr[:n, :, :2]))
    return out


def main() -> None:
    import torch

    from pipeline.loading import load_pipeline
    from pipeline.video import extract_track

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clips", type=Path, required=True, help="folder of clip folders (video.*, audio16k.wav)")
    parser.add_argument("--holdout", required=True, help="comma-separated held-out clip names")
    parser.add_argument("--checkpoint", help="pipeline folder or Hub id (default: checkpoints/)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=REPO / "results" / "dubbing")
    parser.add_argument("--video", action="store_true", help="also render each dubbed track and score the video")
    args = parser.parse_args()

    pipe = load_pipeline(args.checkpoint)
    pipe.set_progress_bar_config(disable=True)
    names = args.holdout.split(",")
    rows = {}
    for i, name in enumerate(names):
        folder, photo_of = args.clips / name, args.clips / names[(i + 1) % len(names)]
        video = next(p for p in sorted(folder.glob("video.*")))
        driving, _ = extract_track(video, pipe.face_analyzer)
        inputs = pipe.prepare(photo_of / "ref.png", folder / "audio16k.wav")
        dubbed = pipe.dub_landmarks(inputs, driving, generator=torch.Generator().manual_seed(args.seed))
        rows[name] = {"photo": photo_of.name, "frames": dubbed.num_frames, **follow(dubbed, driving)}
        if args.video:
            with tempfile.TemporaryDirectory() as tmp:
                rendered = Path(tmp) / "dubbed.mp4"
                pipe.render(inputs, dubbed, output_type="mp4", output_path=rendered)
                seen, _ = extract_track(rendered, pipe.face_analyzer)
            rows[name] |= {f"video {c}": v for c, v in follow(seen, driving).items()}
        print(name, {k: round(v, 3) for k, v in rows[name].items() if not isinstance(v, str)}, flush=True)
    columns = [*COLUMNS, *(f"video {c}" for c in COLUMNS if args.video)]
    median = {c: float(np.median([r[c] for r in rows.values()])) for c in columns}
    lines = ["| driving clip (own speech) | photo | frames | " + " | ".join(f"r {c}" for c in columns) + " |",
             "|---" * (3 + len(columns)) + "|"]
    lines += [f"| {name} | {r['photo']} | {r['frames']} | " + " | ".join(f"{r[c]:.3f}" for c in columns) + " |"
              for name, r in rows.items()]
    lines.append("| **median** | | | " + " | ".join(f"**{median[c]:.3f}**" for c in columns) + " |")
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "dubbing.md").write_text("\n".join(lines) + "\n")
    (args.out / "dubbing.json").write_text(json.dumps({"clips": rows, "median": median}, indent=2))
    print("\n".join(lines))


if __name__ == "__main__":
    main()

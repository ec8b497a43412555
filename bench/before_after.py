"""Before/after frames of two checkouts on the bundled example (the astronaut: a NASA photo, public domain).

    git worktree add /tmp/before <commit>
    python bench/before_after.py --before /tmp/before --out docs/before_after_astronaut.png

Each checkout runs the same commands a user would, with its own code and checkpoints (``python -m pipeline`` from
its folder):

* ``generate`` on ``examples/astronaut.png`` + ``examples/speech.wav``, seed 0 (the speech row: frames where this
  checkout's mouth is most closed and most open);
* ``render`` of one shared track with a strong head turn (this checkout's track from ``generate``, turned by up to
  22° yaw, 12° pitch and 14° roll with ``pipeline.edits.turn_head``), so both warp the very same landmarks (the turn
  row).

The sheet has four rows (before/after × turn/speech) of 256² frames.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from pipeline.app_logic import _font, mouth_opening  # noqa: E402
from pipeline.edits import turn_head  # noqa: E402
from pipeline.landmarks import LandmarkTrack  # noqa: E402
from pipeline.video import iter_video_frames  # noqa: E402

EXAMPLE = ("--image", "examples/astronaut.png", "--audio", "examples/speech.wav")
TURN_FRAMES = (5, 40, 95, 150)


def run(checkout: Path, *args: str) -> None:
    subprocess.run([sys.executable, "-m", "pipeline", *args, "-q"], cwd=checkout, check=True)


def turned(track: LandmarkTrack) -> LandmarkTrack:
    """The track with the head turning through yaw ±22°, pitch ±12° and roll ±14°."""
    phase = np.linspace(0, 2 * np.pi, track.num_frames)
    angles = np.stack([22 * np.sin(phase), 12 * np.cos(phase), 14 * np.sin(2 * phase)], axis=-1)
    return turn_head(track, angles)


def frames(path: Path, picks: list[int]) -> list[np.ndarray]:
    chosen = {i: f for i, f in enumerate(iter_video_frames(path)) if i in picks}
    return [chosen[i] for i in picks]


def row(label: str, images: list[np.ndarray]) -> np.ndarray:
    strip = np.concatenate(images, axis=1)
    image = Image.fromarray(np.concatenate([np.full((strip.shape[0], 150, 3), 255, np.uint8), strip], axis=1))
    ImageDraw.Draw(image).text((8, strip.shape[0] // 2), label, fill=(30, 30, 30), font=_font(16), anchor="lm")
    return np.asarray(image)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--before", type=Path, required=True, help="the older checkout")
    parser.add_argument("--after", type=Path, default=REPO, help="the newer checkout (default: this one)")
    parser.add_argument("--out", type=Path, required=True, help="the PNG to write")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        for side, checkout in (("before", args.before), ("after", args.after)):
            run(checkout.resolve(), "generate", *EXAMPLE, "--seed", "0", "-o", str(work / f"{side}-speech.mp4"),
                "--landmarks-out", str(work / f"{side}-speech.json"))
        turned(LandmarkTrack.load(work / "after-speech.json")).save(work / "turning.json")
        for side, checkout in (("before", args.before), ("after", args.after)):
            run(checkout.resolve(), "render", *EXAMPLE, "--landmarks", str(work / "turning.json"),
                "-o", str(work / f"{side}-turning.mp4"))
        opening = mouth_opening(LandmarkTrack.load(work / "after-speech.json"))
        order = np.argsort(opening)
        speech = [int(order[0]), int(order[len(order) // 4]), int(order[-len(order) // 10]), int(order[-1])]
        rows = [row(f"{side}: turn", frames(work / f"{side}-turning.mp4", list(TURN_FRAMES)))
                for side in ("before", "after")]
        rows += [row(f"{side}: speech", frames(work / f"{side}-speech.mp4", speech)) for side in ("before", "after")]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.concatenate(rows, axis=0)).save(args.out)
    print(f"wrote {args.out} (speech frames {speech})")


if __name__ == "__main__":
    main()

"""Benchmark and eyeball the warping renderer on a synthetic talking track.

    python bench/bench_warp.py [--image PATH] [--frames 250] [--save-png DIR]

Detects the face of the photo (skimage's astronaut by default), makes a talking-like track from its
landmarks (mouth opening syllables, a blink, small head motion), and prints the rendering speed in
frames per second, without ``prepare``, for 256 and 512 crops and full mode, plus the time of
``prepare``. ``--save-png`` writes a contact sheet of a few frames (whole crops above, mouth and eyes
enlarged below) for a person to look at.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import cv2
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pipeline.canonical import inter_ocular  # noqa: E402
from pipeline.face import FaceAnalyzer  # noqa: E402
from pipeline.images import load_image  # noqa: E402
from pipeline.render.warp import WarpRenderer  # noqa: E402

FPS = 25
CHUNK = 48


def talking_track(reference: np.ndarray, frames: int) -> np.ndarray:
    """A ``(frames, 68, 2)`` track: syllable-like mouth opening, a blink at 2 s, slow small head motion."""
    ref = np.asarray(reference, dtype=np.float64)
    iod = float(inter_ocular(ref))
    t = np.arange(frames) / FPS
    eye = ref[45] - ref[36]
    down = np.array([-eye[1], eye[0]]) / np.hypot(*eye)
    loudness = 0.55 + 0.45 * np.sin(2 * np.pi * 0.37 * t) ** 2
    opening = 0.2 * iod * np.clip(np.sin(2 * np.pi * 2.2 * t), 0, None) ** 0.8 * loudness
    track = np.repeat(ref[None], frames, axis=0)
    lower = {i: 1.0 for i in (55, 56, 57, 58, 59, 65, 66, 67)} | {48: 0.45, 54: 0.45, 60: 0.5, 64: 0.5}
    lower |= {i: 0.9 * np.sin(np.pi * (i - 3) / 10) ** 0.7 for i in range(4, 13)}  # the jaw follows the chin
    for i, weight in lower.items():
        track[:, i] += weight * opening[:, None] * down
    for i in (50, 51, 52, 61, 62, 63):
        track[:, i] -= 0.12 * opening[:, None] * down
    blink = np.exp(-0.5 * ((t - 2.0) / 0.06) ** 2)
    for upper, lower_lid in ((37, 41), (38, 40), (43, 47), (44, 46)):
        track[:, upper] += blink[:, None] * (ref[lower_lid] - ref[upper])
    angle = np.deg2rad(3.0) * np.sin(2 * np.pi * 0.21 * t)
    shift = 0.08 * iod * np.stack([np.sin(2 * np.pi * 0.13 * t), 0.5 * np.sin(2 * np.pi * 0.29 * t)], axis=1)
    cos, sin = np.cos(angle)[:, None, None], np.sin(angle)[:, None, None]
    rotation = np.concatenate([np.concatenate([cos, -sin], 2), np.concatenate([sin, cos], 2)], 1)
    centre = ref[27:36].mean(axis=0)
    return np.einsum("tij,tnj->tni", rotation, track - centre) + centre + shift[:, None]


def measure(renderer: WarpRenderer, image: np.ndarray, reference: np.ndarray, track: np.ndarray) -> tuple[float, float]:
    """Seconds for ``prepare`` and frames per second of ``render`` over the track in chunks."""
    start = time.perf_counter()
    ctx = renderer.prepare(image, reference)
    prepare_s = time.perf_counter() - start
    renderer.render(ctx, track[:4])  # warm up
    start = time.perf_counter()
    for i in range(0, len(track), CHUNK):
        renderer.render(ctx, track[i : i + CHUNK])
    return prepare_s, len(track) / (time.perf_counter() - start)


def contact_sheet(image: np.ndarray, reference: np.ndarray, track: np.ndarray) -> np.ndarray:
    """Six frames at 256 (reference, widest mouth, closing, blink, head turned, last), details below."""
    opening = np.linalg.norm(track[:, 66] - track[:, 62], axis=1)
    widest = int(np.argmax(opening))
    turned = int(np.argmax(np.abs(track[:, 27, 0] - reference[27, 0])))
    picks = [min(p, len(track) - 1) for p in (0, widest, widest + 3, 2 * FPS, turned, len(track) - 1)]
    small = WarpRenderer(256)
    top = np.concatenate(list(small.render(small.prepare(image, reference), track[picks])), axis=1)
    big = WarpRenderer(512)
    ctx = big.prepare(image, reference)
    frames = big.render(ctx, track[picks])
    points = big.crop_landmarks(ctx, track[picks])
    details = []
    for frame, pts in zip(frames, points, strict=False):
        mouth = _zoom(frame, pts[48:68], 128, 0.3)
        eyes = _zoom(frame, pts[36:48], 128, 0.1)
        details.append(np.concatenate([eyes, mouth], axis=0))
    return np.concatenate([top, np.concatenate(details, axis=1)], axis=0)


def _zoom(frame: np.ndarray, points: np.ndarray, side: int, margin: float) -> np.ndarray:
    """A ``(side, 2 * side)`` enlargement around ``points``."""
    lo, hi = points.min(axis=0), points.max(axis=0)
    width = (hi[0] - lo[0]) * (1.0 + 2.0 * margin)
    x0, y0 = (lo + hi) / 2 - (width / 2, width / 4)
    zoom = 2 * side / width
    matrix = np.array([[zoom, 0.0, -x0 * zoom], [0.0, zoom, -y0 * zoom]])
    return cv2.warpAffine(frame, matrix, (2 * side, side), flags=cv2.INTER_CUBIC, borderMode=cv2.BORDER_REPLICATE)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--image", help="portrait photo (default: skimage's astronaut)")
    parser.add_argument("--frames", type=int, default=10 * FPS, help="frames in the synthetic track")
    parser.add_argument("--save-png", metavar="DIR", help="write a contact sheet PNG into this folder")
    args = parser.parse_args()
    if args.image:
        image = load_image(args.image)
        name = Path(args.image).stem
    else:
        from skimage import data

        image, name = data.astronaut(), "astronaut"
    reference = FaceAnalyzer().detect(image).landmarks.astype(np.float64)
    track = talking_track(reference, args.frames)
    width = np.ptp(reference[:, 0])
    print(f"{name}: {image.shape[1]}x{image.shape[0]} photo, face {width:.0f} px wide, {len(track)} frames")
    renderers = {"crop 256": WarpRenderer(256), "crop 512": WarpRenderer(512), "full": WarpRenderer(full=True)}
    for label, renderer in renderers.items():
        prepare_s, fps = measure(renderer, image, reference, track)
        print(f"  {label:9s} {fps:7.1f} frames/s   prepare {1000 * prepare_s:6.1f} ms")
    if args.save_png:
        folder = Path(args.save_png)
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / f"warp_{name}.png"
        cv2.imwrite(str(path), cv2.cvtColor(contact_sheet(image, reference, track), cv2.COLOR_RGB2BGR))
        print(f"  contact sheet: {path}")


if __name__ == "__main__":
    main()

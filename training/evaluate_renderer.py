"""Compare the warp renderer and the diffusion renderer on held-out clips driven by their own landmarks.

    python training/evaluate_renderer.py --data data/renderer/holdout --model checkpoints/face_renderer \\
        --scheduler checkpoints/renderer_scheduler --out results/renderer_eval

For each clip prepared by ``training/data/prepare_renderer_data.py`` the video's frame 0 is the photo and the clip's
extracted landmarks (video pixels) drive both renderers in crop mode at the model's resolution, so every output
frame lines up with the real crop of the same frame. Against the real frames:

* PSNR and SSIM of the whole crop and of the mouth region (a square of ``MOUTH_SIDE`` inter-ocular distances centred
  on the real lips of each frame);
* identity: cosine similarity of dlib face descriptors (``dlib_face_recognition_resnet_model_v1``, aligned with the
  frame's 68 landmarks) between each rendered frame and the real frame, every ``--identity_every`` frames;
* sharpness: variance of the Laplacian of the mouth region (the real frames' value is given too);
* flicker: mean absolute difference of consecutive frames (whole crop and mouth region) minus the real video's;
* time per frame (CPU unless ``--device``), each renderer's whole ``prepare`` + ``render``.

The diffusion renderer's settings default to the pipeline's (``DIFFUSION_SETTINGS``); ``--strength`` takes several
values (a row each), ``--previous_noise``, ``--mouth_margin`` and ``--mouth_inside`` the alternatives. A
person-specific fine-tune is scored on the part of the person's video it did not see: ``--only NAME --score_from K``
renders the whole clip (so the reference stays frame 0) and scores frames K onwards. The diffusion renderer
renders in chunks of ``--chunk`` frames, as the mp4 export does. Frame 0 is the photo itself, which the warp
renderer gives back exactly (a PSNR of 100 dB and more, enough to lift a 100-frame mean by a decibel), so scoring
starts at frame 1 unless ``--score_from`` says otherwise. Results: ``metrics.json`` and ``metrics.md`` (a table per
clip and the frame-weighted mean) in ``--out``; ``--save_video`` also writes a side-by-side
mp4 (real | warp | diffusion) per clip there (frames of the source videos: never commit them).
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from pipeline.canonical import inter_ocular  # noqa: E402
from pipeline.pipeline_talking_face import DIFFUSION_SETTINGS  # noqa: E402
from pipeline.render.diffusion import DiffusionRenderer  # noqa: E402
from pipeline.render.warp import WarpRenderer  # noqa: E402
from pipeline.video import Mp4Writer, iter_video_frames  # noqa: E402
from training.data.prepare_renderer_data import RendererClip, find_clips  # noqa: E402

#: Side of the mouth square, in inter-ocular distances, centred on the outer lips.
MOUTH_SIDE = 0.9
METRICS = ("psnr", "ssim", "psnr_mouth", "ssim_mouth", "identity", "sharpness_mouth", "flicker", "flicker_mouth",
           "seconds_per_frame")
PRECISE = ("ssim", "ssim_mouth", "identity", "seconds_per_frame")


# ---------------------------------------------------------------------------------------------------
# Metrics


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    return float(10 * np.log10(255.0**2 / max(mse, 1e-10)))


def ssim(a: np.ndarray, b: np.ndarray) -> float:
    from skimage.metrics import structural_similarity

    win = min(7, min(a.shape[:2]) // 2 * 2 - 1)
    return float(structural_similarity(a, b, channel_axis=2, data_range=255, win_size=win))


def mouth_boxes(points: np.ndarray, size: int) -> np.ndarray:
    """Per-frame mouth squares ``(T, 4)`` x0, y0, x1, y1 (inside the crop) from landmarks ``(T, 68, 2)``."""
    side = int(round(MOUTH_SIDE * float(np.median(inter_ocular(points)))))
    centres = points[:, 48:60].mean(axis=1)
    x0 = np.clip(np.round(centres - side / 2).astype(int), 0, size - side)
    return np.concatenate([x0, x0 + side], axis=1)


def sharpness(patch: np.ndarray) -> float:
    gray = cv2.cvtColor(patch, cv2.COLOR_RGB2GRAY)
    return float(cv2.Laplacian(gray, cv2.CV_64F).var())


def flicker(frames: np.ndarray) -> float:
    if len(frames) < 2:
        return 0.0
    return float(np.abs(np.diff(frames.astype(np.float32), axis=0)).mean())


class IdentityEmbedder:
    """dlib's face descriptor of a face given its 68 landmarks (no detection: the landmarks are known)."""

    def __init__(self) -> None:
        import dlib

        spec = importlib.util.find_spec("face_recognition_models")
        if spec is None or not spec.submodule_search_locations:
            raise RuntimeError("The package 'face_recognition_models' is not installed.")
        folder = Path(next(iter(spec.submodule_search_locations)))
        path = folder / "models" / "dlib_face_recognition_resnet_model_v1.dat"
        self._dlib = dlib
        self._model = dlib.face_recognition_model_v1(str(path))

    def __call__(self, image: np.ndarray, points: np.ndarray) -> np.ndarray:
        dlib = self._dlib
        x0, y0 = np.floor(points.min(axis=0)).astype(int)
        x1, y1 = np.ceil(points.max(axis=0)).astype(int)
        parts = [dlib.point(int(round(x)), int(round(y))) for x, y in points]
        shape = dlib.full_object_detection(dlib.rectangle(int(x0), int(y0), int(x1), int(y1)), parts)
        vector = np.asarray(self._model.compute_face_descriptor(np.ascontiguousarray(image), shape))
        return vector / max(float(np.linalg.norm(vector)), 1e-12)


def score(video: np.ndarray, real: np.ndarray, points: np.ndarray, embedder: IdentityEmbedder,
          identity_every: int) -> dict[str, float]:
    """Metrics of rendered frames ``(T, R, R, 3)`` against the real crops; points: the real frames' landmarks."""
    size = real.shape[1]
    boxes = mouth_boxes(points, size)
    mouths = np.stack([v[y0:y1, x0:x1] for v, (x0, y0, x1, y1) in zip(video, boxes, strict=False)])
    real_mouths = np.stack([v[y0:y1, x0:x1] for v, (x0, y0, x1, y1) in zip(real, boxes, strict=False)])
    picked = range(0, len(video), identity_every)
    identity = [float(embedder(video[t], points[t]) @ embedder(real[t], points[t])) for t in picked]
    return {
        "psnr": float(np.mean([psnr(a, b) for a, b in zip(video, real, strict=False)])),
        "ssim": float(np.mean([ssim(a, b) for a, b in zip(video, real, strict=False)])),
        "psnr_mouth": float(np.mean([psnr(a, b) for a, b in zip(mouths, real_mouths, strict=False)])),
        "ssim_mouth": float(np.mean([ssim(a, b) for a, b in zip(mouths, real_mouths, strict=False)])),
        "identity": float(np.mean(identity)),
        "sharpness_mouth": float(np.mean([sharpness(m) for m in mouths])),
        "flicker": flicker(video) - flicker(real),
        "flicker_mouth": flicker(mouths) - flicker(real_mouths),
    }


# ---------------------------------------------------------------------------------------------------
# Rendering


def first_frame(video: str) -> np.ndarray:
    for frame in iter_video_frames(video):
        return np.array(frame)
    raise ValueError(f"{video} has no frames")


def render_timed(renderer, photo: np.ndarray, points: np.ndarray, chunk: int) -> tuple[np.ndarray, float]:
    start = time.perf_counter()
    ctx = renderer.prepare(photo, points[0])
    video = np.concatenate([renderer.render(ctx, points[i : i + chunk]) for i in range(0, len(points), chunk)])
    return video, (time.perf_counter() - start) / len(points)


def evaluate_clip(clip: RendererClip, renderers: dict, embedder: IdentityEmbedder, chunk: int, identity_every: int,
                  video_dir: Path | None = None, max_frames: int | None = None,
                  score_from: int = 1) -> dict[str, dict[str, float]]:
    """Render the clip's frames ``[0, max_frames)`` with each renderer and score frames ``[score_from, max_frames)``
    (e.g. the part of a video a person-specific model was not fine-tuned on)."""
    assert clip.reference_index == 0, "the evaluation drives the clip's frame 0"
    n = len(clip.frames) if max_frames is None else min(max_frames, len(clip.frames))
    assert 0 <= score_from < n, f"score_from {score_from} must be below the {n} frames rendered"
    photo, driving = first_frame(clip.video), np.asarray(clip.photo_landmarks[:n], np.float64)
    real, points = clip.frames[score_from:n], np.asarray(clip.landmarks[score_from:n], np.float64)
    results, videos = {}, {}
    for name, renderer in renderers.items():
        video, seconds = render_timed(renderer, photo, driving, chunk)
        video = video[score_from:]
        assert video.shape == real.shape, f"{name} rendered {video.shape}, real crops are {real.shape}"
        results[name] = {**score(video, real, points, embedder, identity_every), "seconds_per_frame": seconds}
        videos[name] = video
    results["real"] = {"sharpness_mouth": score(real, real, points, embedder, len(real))["sharpness_mouth"]}
    if video_dir is not None:
        video_dir.mkdir(parents=True, exist_ok=True)
        with Mp4Writer(video_dir / f"{clip.name}.mp4", fps=clip.fps) as writer:
            writer.write(np.concatenate([real] + list(videos.values()), axis=2))
    return results


def markdown(per_clip: dict, mean: dict, names: list[str], setup: str) -> str:
    header = "| clip | renderer | " + " | ".join(METRICS) + " |"
    lines = ["# Warp vs diffusion renderer (held-out clips, own landmarks, reference = frame 0)", "", setup, "",
             header, "|" + "---|" * (len(METRICS) + 2)]
    for clip, rows in list(per_clip.items()) + [("**mean**", mean)]:
        for name in names + ["real"]:
            row = rows[name]
            cells = ["" if m not in row else f"{row[m]:.4f}" if m in PRECISE else f"{row[m]:.2f}" for m in METRICS]
            lines.append(f"| {clip} | {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def _float_or_none(text: str) -> float | None:
    return None if text == "none" else float(text)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=REPO / "data/renderer/holdout", help="prepared held-out clips")
    parser.add_argument("--model", type=Path, default=REPO / "checkpoints/face_renderer")
    parser.add_argument("--scheduler", type=Path, default=REPO / "checkpoints/renderer_scheduler")
    parser.add_argument("--out", type=Path, default=REPO / "results/renderer_eval")
    parser.add_argument("--num_inference_steps", type=int, default=DIFFUSION_SETTINGS["num_inference_steps"])
    parser.add_argument("--strength", type=float, nargs="+", default=[DIFFUSION_SETTINGS["strength"]],
                        help="one diffusion row per value")
    parser.add_argument("--previous_noise", type=_float_or_none,
                        default=DIFFUSION_SETTINGS["previous_noise"],
                        help="noise level of the previous frame shown to the model ('none': no previous frame)")
    parser.add_argument("--mouth_margin", type=_float_or_none,
                        default=DIFFUSION_SETTINGS["mouth_margin"],
                        help="paste the refined pixels only this close to the lips (inter-ocular units; 'none': "
                             "the whole generated lower face)")
    parser.add_argument("--mouth_inside", choices=("keep", "repaint"),
                        default="keep" if DIFFUSION_SETTINGS["keep_mouth_inside"] else "repaint",
                        help="keep: the inside of the mouth stays the warp frame's; repaint: it takes the model's "
                             "change")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--chunk", type=int, default=64, help="frames per render call (as the mp4 export)")
    parser.add_argument("--identity_every", type=int, default=5)
    parser.add_argument("--max_frames", type=int, help="evaluate only the first frames of each clip")
    parser.add_argument("--score_from", type=int, default=1,
                        help="render from frame 0 but score only from this frame on (default 1: frame 0 is the photo "
                             "itself; higher for person-specific fine-tunes)")
    parser.add_argument("--only", help="comma-separated clip names to evaluate (default: all in --data)")
    parser.add_argument("--model_label", default="diffusion", help="name of the diffusion rows in the table")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--num_threads", type=int, default=2)
    parser.add_argument("--save_video", action="store_true", help="side-by-side mp4 per clip in --out")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.num_threads)

    clips = [RendererClip.load(p) for p in find_clips(args.data) if not args.only or p.stem in args.only.split(",")]
    if not clips:
        raise SystemExit(f"No prepared clips in {args.data}.")
    resolution = clips[0].frames.shape[1]
    renderers: dict = {"warp": WarpRenderer(resolution)}
    for strength in args.strength:
        renderer = DiffusionRenderer.from_pretrained(
            args.model, args.scheduler, device=args.device, size=resolution,
            num_inference_steps=args.num_inference_steps,
            strength=strength, generator=torch.Generator().manual_seed(args.seed), previous_noise=args.previous_noise,
            mouth_margin=args.mouth_margin, keep_mouth_inside=args.mouth_inside == "keep",
        )
        assert renderer.resolution == resolution, f"model resolution {renderer.resolution}, crops {resolution}"
        renderers[f"{args.model_label} s={strength:g}"] = renderer
    embedder = IdentityEmbedder()
    per_clip, weights = {}, []
    for clip in clips:
        for renderer in renderers.values():  # the same shared noise for every clip
            if isinstance(renderer, DiffusionRenderer):
                renderer.generator = torch.Generator().manual_seed(args.seed)
        per_clip[clip.name] = evaluate_clip(clip, renderers, embedder, args.chunk, args.identity_every,
                                            args.out if args.save_video else None, args.max_frames, args.score_from)
        rendered = len(clip.frames) if args.max_frames is None else min(args.max_frames, len(clip.frames))
        weights.append(rendered - args.score_from)
        print(clip.name, json.dumps(per_clip[clip.name], indent=None))
    w = np.asarray(weights, np.float64) / sum(weights)
    names = list(renderers)
    mean = {name: {m: float(sum(wi * per_clip[c][name][m] for wi, c in zip(w, per_clip, strict=False)))
                   for m in per_clip[clips[0].name][name]} for name in names + ["real"]}
    setup = (f"Crop mode at {resolution} px; diffusion: {args.model}, {args.num_inference_steps}-step schedule "
             f"({DiffusionRenderer.__name__}, DDIM), previous frame noise {args.previous_noise}, mouth margin "
             f"{args.mouth_margin}, mouth inside: {args.mouth_inside}, seed {args.seed}, chunks of {args.chunk} "
             f"frames, device {args.device}, {args.num_threads} threads. Flicker: minus the real video's.")
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "metrics.json").write_text(json.dumps({"setup": setup, "clips": per_clip, "mean": mean}, indent=1))
    table = markdown(per_clip, mean, names, setup)
    (args.out / "metrics.md").write_text(table)
    print(table)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

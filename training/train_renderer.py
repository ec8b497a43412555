"""Train the diffusion face renderer (``pipeline.models.face_renderer.LandmarkFaceRenderer``).

General model, on the prepared clips (``training/data/prepare_renderer_data.py``)::

    python training/data/prepare_renderer_data.py --clips ../shared/data/clips --out data/renderer \\
        --holdout grid_lrwp9a,vox_00098 --jobs 2 --references 3
    accelerate launch training/train_renderer.py --config training/configs/renderer.yaml

Person-specific fine-tune (DiffTalker trains on one speaker): prepare one user's own video (a minute of them
talking, face to the camera) and continue from the general model at a lower learning rate::

    python training/data/prepare_renderer_data.py --clips my_video.mp4 --out data/renderer_me
    accelerate launch training/train_renderer.py --config training/configs/renderer.yaml \\
        --init_from checkpoints/face_renderer --data data/renderer_me/train --validation none \\
        --max_steps 600 --learning_rate 1e-4 --output_dir outputs/renderer_me --final_dir checkpoints/me

Each step draws frames uniformly from the clips (by sampling weight per data folder), mirrors some left-right, and
builds the model's inputs exactly as the renderer does: the frame's warp render from the clip's reference frame (frame
0, or another frame of the video with ``--references``), that frame's crop as reference, the landmark map and region
mask of the frame's landmarks, and the real previous frame (dropped to zeros with probability ``1 - p_previous``, else
noised at a level drawn in ``[0, previous_noise_max)``). The real frame is noised in the generated region only
(DiffTalker's two noise scales) and the loss is the masked MSE of ``model.config.prediction_type``'s target. Every
``validate_every`` steps the one-step x0 estimate from the noised *warp* crop (how SDEdit sampling starts) is scored
on held-out clips against the real frames, next to the warp crop itself (without previous frames by default: a real
previous frame flatters the model, which at inference only gets its own). The state is saved every
``checkpointing_steps`` (``--resume_from_checkpoint latest`` picks up after an interruption), EMA weights are kept,
and at the end the EMA model goes to ``<final_dir>/face_renderer`` and a DDIM scheduler with the training noise
schedule to ``<final_dir>/renderer_scheduler``, with ``training_info.json`` (command, seed, data, steps). Both join
the ``TalkingFacePipeline`` saved in ``final_dir`` (``save_pretrained``; a copy of the shipped ``checkpoints/``
pipeline when ``final_dir`` has none), so ``--checkpoint checkpoints/me`` / ``load_pipeline("checkpoints/me")``
renders with the fine-tuned model.
"""

from __future__ import annotations

import argparse
import copy
import json
import logging
import shlex
import sys
import time
from pathlib import Path

import numpy as np
import torch
from accelerate.utils import extract_model_from_parallel
from diffusers import DDIMScheduler, DDPMScheduler
from diffusers.training_utils import EMAModel

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from pipeline.loading import DEFAULT_CHECKPOINT  # noqa: E402
from pipeline.models.face_renderer import (  # noqa: E402
    LandmarkFaceRenderer,
    add_masked_noise,
    condition_channels,
    mouth_weight,
    normalise_landmarks,
    region_masks,
    to_model_pixels,
)
from pipeline.pipeline_talking_face import DIFFUSION_SETTINGS  # noqa: E402
from pipeline.regions import MIRROR  # noqa: E402
from training import loop  # noqa: E402
from training.checkpointing import save_into_pipeline  # noqa: E402
from training.data.prepare_renderer_data import RendererClip, find_clips  # noqa: E402

logger = logging.getLogger("train_renderer")
MOUTH_MARGIN = DIFFUSION_SETTINGS["mouth_margin"]  # the pipeline pastes the model's change this close to the lips


def parse_args(argv=None) -> argparse.Namespace:
    parser = loop.argument_parser(__doc__.splitlines()[0], REPO / "training/configs/renderer.yaml")
    parser.add_argument("--learning_rate", type=float, help="override train.learning_rate")
    parser.add_argument("--max_minutes", type=float, help="override train.max_minutes")
    parser.add_argument("--data", type=Path, nargs="+", help="override the data folders (equal weights)")
    parser.add_argument("--validation", help="override the validation folder ('none' to skip)")
    parser.add_argument("--prediction_type", choices=("epsilon", "sample", "v_prediction"),
                        help="override model.prediction_type")
    return parser.parse_args(argv)


def load_config(args: argparse.Namespace) -> dict:
    config = loop.load_config(args)
    train = config["train"]
    for key in ("learning_rate", "max_minutes"):
        if getattr(args, key) is not None:
            train[key] = getattr(args, key)
    if args.data:
        config["data"] = [{"path": str(p), "weight": 1.0} for p in args.data]
    if args.validation is not None:
        config["validation"] = None if args.validation.lower() == "none" else args.validation
    if args.prediction_type:
        config["model"]["prediction_type"] = args.prediction_type
        if args.prediction_type != "sample":  # the warp residual is an x0 parametrisation
            config["model"]["warp_residual"] = False
    return config


# ---------------------------------------------------------------------------------------------------
# Data


def load_clips(folder: str | Path) -> list[RendererClip]:
    folder = Path(folder)
    folder = folder if folder.is_absolute() else REPO / folder
    return [RendererClip.load(p) for p in find_clips(folder)]


def mirror_sample(images: list[np.ndarray | None], points: np.ndarray, resolution: int):
    """Flip crops ``(R, R, 3)`` (None stays None) and their landmarks ``(68, 2)`` left-right."""
    flipped = [None if im is None else np.ascontiguousarray(im[:, ::-1]) for im in images]
    mirrored = points[list(MIRROR)].copy()
    mirrored[:, 0] = resolution - 1 - mirrored[:, 0]
    return flipped, mirrored


def make_example(clip: RendererClip, t: int, keep_previous: bool, flip: bool, previous_noise: float = 0.0,
                 rng: np.random.Generator | None = None) -> dict[str, np.ndarray]:
    """The model inputs and target of frame ``t`` of ``clip``, as the renderer would build them; the real previous
    frame (if kept) gets Gaussian noise of level ``previous_noise`` (drawn from ``rng``). ``mouth`` weighs the mouth
    (the lips, their inside and ``MOUTH_MARGIN`` around them), for the validation's mouth PSNR."""
    r = clip.frames.shape[1]
    target, warp, reference = clip.frames[t], clip.warp[t], clip.frames[clip.reference_index]
    previous = clip.frames[t - 1] if keep_previous and t > 0 else None
    points = np.asarray(clip.landmarks[t], np.float64)
    if flip:
        (target, warp, reference, previous), points = mirror_sample([target, warp, reference, previous], points, r)
    hard = region_masks(points, (r, r))[1]
    noise = None
    if previous is not None and previous_noise > 0:
        noise = (rng or np.random.default_rng()).standard_normal((3, r, r)).astype(np.float32)
    return {
        "target": to_model_pixels(target),  # (3, R, R)
        "condition": condition_channels(warp, reference, points, previous, hard, previous_noise, noise),  # (C, R, R)
        "landmarks": normalise_landmarks(points, r),  # (68, 2)
        "mask": hard[None],  # (1, R, R)
        "mouth": (hard * mouth_weight(points, (r, r), margin=MOUTH_MARGIN))[None],  # (1, R, R)
        "warp": to_model_pixels(warp),  # (3, R, R)
    }


def collate(examples: list[dict[str, np.ndarray]]) -> dict[str, torch.Tensor]:
    return {k: torch.from_numpy(np.stack([e[k] for e in examples])) for k in examples[0]}


class FrameSampler:
    """Draws training frames: a data folder by weight, then a frame uniformly among all of its clips' frames."""

    def __init__(self, sources: list[tuple[list[RendererClip], float]], p_previous: float, p_flip: float, seed: int,
                 previous_noise_max: float = 0.0):
        self.sources = [c for c, w in sources if c and w > 0]
        weights = np.array([w for c, w in sources if c and w > 0], dtype=np.float64)
        assert self.sources, "no training data found: run training/data/prepare_renderer_data.py first"
        self.weights = weights / weights.sum()
        self.p_previous, self.p_flip, self.previous_noise_max = p_previous, p_flip, previous_noise_max
        self.rng = np.random.default_rng(seed)

    def batch(self, size: int) -> dict[str, torch.Tensor]:
        examples = []
        for _ in range(size):
            clips = self.sources[self.rng.choice(len(self.sources), p=self.weights)]
            lengths = np.array([len(c.frames) for c in clips], dtype=np.float64)
            clip = clips[self.rng.choice(len(clips), p=lengths / lengths.sum())]
            t = int(self.rng.integers(len(clip.frames)))
            keep, flip = self.rng.random() < self.p_previous, self.rng.random() < self.p_flip
            sigma = float(self.rng.uniform(0.0, self.previous_noise_max))
            examples.append(make_example(clip, t, keep, flip, sigma, self.rng))
        return collate(examples)


# ---------------------------------------------------------------------------------------------------
# Loss and validation


def prediction_target(scheduler, clean: torch.Tensor, noise: torch.Tensor, timesteps: torch.Tensor,
                      prediction_type: str) -> torch.Tensor:
    if prediction_type == "epsilon":
        return noise
    if prediction_type == "sample":
        return clean
    return scheduler.get_velocity(clean, noise, timesteps)


def predicted_original(scheduler, prediction: torch.Tensor, noisy: torch.Tensor, timesteps: torch.Tensor,
                       prediction_type: str) -> torch.Tensor:
    """The x0 estimate behind a model output, for any prediction type. All tensors (B, 3, R, R), timesteps (B,)."""
    alpha = scheduler.alphas_cumprod.to(noisy.device)[timesteps].view(-1, 1, 1, 1).to(noisy.dtype)
    if prediction_type == "sample":
        return prediction
    if prediction_type == "epsilon":
        return (noisy - (1 - alpha).sqrt() * prediction) / alpha.sqrt()
    return alpha.sqrt() * noisy - (1 - alpha).sqrt() * prediction


def training_loss(model: torch.nn.Module, scheduler, batch: dict[str, torch.Tensor],
                  generator: torch.Generator | None = None, max_timestep: int | None = None) -> torch.Tensor:
    """Masked MSE of the model's prediction on the generated region. batch: ``target`` (B, 3, R, R), ``condition``
    (B, C, R, R), ``landmarks`` (B, 68, 2), ``mask`` (B, 1, R, R). ``model`` is a :class:`LandmarkFaceRenderer` or
    that model prepared for distributed training: the forward pass goes through the wrapper (gradient all-reduce)."""
    prediction_type = extract_model_from_parallel(model).config.prediction_type
    clean, mask = batch["target"], batch["mask"]
    b = clean.shape[0]
    high = int(max_timestep or scheduler.config.num_train_timesteps)
    noise = torch.randn(clean.shape, generator=generator).to(clean.device)
    timesteps = torch.randint(0, high, (b,), generator=generator).to(clean.device)
    noisy = add_masked_noise(scheduler, clean, noise, timesteps, mask)  # (B, 3, R, R)
    prediction = model(noisy, timesteps, batch["landmarks"], batch["condition"]).sample
    target = prediction_target(scheduler, clean, noise, timesteps, prediction_type)
    squared = (prediction.float() - target.float()) ** 2 * mask  # (B, 3, R, R)
    return squared.sum() / (3.0 * mask.sum()).clamp(min=1.0)


@torch.no_grad()
def validation_scores(model: LandmarkFaceRenderer, scheduler, batch: dict[str, torch.Tensor], timesteps: list[int],
                      generator: torch.Generator) -> dict[str, float]:
    """PSNR (dB, pixels in [-1, 1] mapped to [0, 1]) against the real frame, on the generated region and (``mouth
    ...``) on the mouth: of the warp crop, and of the one-step x0 estimate from the warp crop noised to each of
    ``timesteps``."""
    def psnr(x: torch.Tensor, region: torch.Tensor) -> float:
        mse = (((x.clamp(-1, 1) - batch["target"]) / 2) ** 2 * region).sum() / (3 * region.sum()).clamp(min=1e-6)
        return float(-10 * torch.log10(mse.clamp(min=1e-10)))

    def score(name: str, x: torch.Tensor) -> None:
        scores[name], scores[f"mouth {name}"] = psnr(x, batch["mask"]), psnr(x, batch["mouth"])

    model.eval()
    scores: dict[str, float] = {}
    score("warp", batch["warp"])
    noise = torch.randn(batch["warp"].shape, generator=generator).to(batch["warp"].device)
    for t in timesteps:
        steps = torch.full((len(noise),), int(t), dtype=torch.long, device=noise.device)
        noisy = add_masked_noise(scheduler, batch["warp"], noise, steps, batch["mask"])
        prediction = model(noisy, steps, batch["landmarks"], batch["condition"]).sample
        score(f"x0@{t}", predicted_original(scheduler, prediction, noisy, steps, model.config.prediction_type))
    model.train()
    return scores


# ---------------------------------------------------------------------------------------------------
# Main


def main(args: argparse.Namespace) -> LandmarkFaceRenderer:
    """Train; returns this process's trained model (the replicas are identical; the final save holds its EMA)."""
    config = load_config(args)
    train = config["train"]
    out_dir: Path = config["output_dir"]
    accelerator = loop.start(config, args.report_to)

    folders = [load_clips(e["path"]) for e in config["data"]]
    counts = {e["path"]: {"clips": len(c), "frames": int(sum(len(x.frames) for x in c))}
              for e, c in zip(config["data"], folders, strict=False)}
    sources = [(loop.shard(c, accelerator), float(e["weight"])) for e, c in zip(config["data"], folders, strict=False)]
    logger.info("data: %s (process %d of %d)", counts, accelerator.process_index + 1, accelerator.num_processes)
    validation = load_clips(config["validation"]) if config.get("validation") and accelerator.is_main_process else []

    if args.init_from is not None:
        model = LandmarkFaceRenderer.from_pretrained(str(args.init_from), use_safetensors=True)
        config["model"] = {k: v for k, v in model.config.items() if not k.startswith("_")}
        logger.info("fine-tuning from %s", args.init_from)
    else:
        model = LandmarkFaceRenderer(**config["model"])
    resolution = model.config.resolution
    for clips in folders:
        for clip in clips:
            assert clip.frames.shape[1] == resolution, \
                f"{clip.name}: crops of {clip.frames.shape[1]} px, model {resolution}"
    logger.info("model: %.2fM parameters", sum(p.numel() for p in model.parameters()) / 1e6)
    noise_scheduler = DDPMScheduler(**config["scheduler"], prediction_type=model.config.prediction_type,
                                    clip_sample=False)
    model, optimizer, lr_scheduler, ema, progress = loop.optimisation(accelerator, model, train)
    step = loop.resume(accelerator, out_dir, args.resume_from_checkpoint, progress)
    seed = loop.process_seed(config["seed"], accelerator, step)
    sampler = FrameSampler(sources, train["p_previous"], train["p_flip"], seed=seed,
                           previous_noise_max=train.get("previous_noise_max", 0.0))
    generator = torch.Generator().manual_seed(seed)
    val_batch = _validation_batch(validation, train["validation_samples"], config["seed"], accelerator.device,
                                  train.get("validation_previous_noise"))
    loop.init_trackers(accelerator, "train_renderer", config)

    model.train()
    started, history = time.perf_counter(), []
    losses = loop.LossLog(accelerator, lr_scheduler, train["log_every"])
    deadline = None if train.get("max_minutes") is None else started + 60.0 * float(train["max_minutes"])
    while step < train["max_steps"]:
        batch = {k: v.to(accelerator.device) for k, v in sampler.batch(train["batch_size"]).items()}
        loss = loop.optimisation_step(
            accelerator, model, optimizer, lr_scheduler, train["max_grad_norm"],
            lambda b=batch: training_loss(model, noise_scheduler, b, generator, train.get("max_timestep")))
        if not accelerator.sync_gradients:
            continue
        ema.step(accelerator.unwrap_model(model).parameters())
        step += 1
        mean_loss = losses.add(step, loss)
        if mean_loss is not None:
            history.append({"step": step, "loss": mean_loss})
        if val_batch is not None and (step % train["validate_every"] == 0 or step == train["max_steps"]):
            scores = _validate_ema(accelerator.unwrap_model(model), ema, noise_scheduler, val_batch,
                                   train["validation_timesteps"], config["seed"])
            logger.info("step %d validation PSNR (generated region, dB): %s", step,
                        ", ".join(f"{k} {v:.2f}" for k, v in scores.items()))
            accelerator.log({f"validation/{k}": v for k, v in scores.items()}, step=step)
            history.append({"step": step, "validation": scores})
        if step % train["checkpointing_steps"] == 0:
            loop.save_state(accelerator, progress, step)
        if deadline is not None and time.perf_counter() > deadline:
            accelerator.set_trigger()  # any process past the deadline stops them all at the same step
        if accelerator.check_trigger() and step < train["max_steps"]:
            if step % train["checkpointing_steps"]:
                loop.save_state(accelerator, progress, step)
            logger.warning("stopped at step %d of %d after max_minutes=%s; resume with --resume_from_checkpoint "
                           "latest (nothing saved to %s)", step, train["max_steps"], train["max_minutes"],
                           config["final_dir"])
            accelerator.end_training()
            return accelerator.unwrap_model(model)

    accelerator.wait_for_everyone()
    trained = accelerator.unwrap_model(model)
    if accelerator.is_main_process:
        minutes = (time.perf_counter() - started) / 60.0
        save_final(trained, ema, noise_scheduler, config, counts, step, accelerator.num_processes, minutes, history,
                   args.init_from)
    accelerator.end_training()
    return trained


def _validation_batch(clips: list[RendererClip], size: int, seed: int, device,
                      previous_noise: float | None) -> dict[str, torch.Tensor] | None:
    """A fixed set of held-out frames (evenly spread over the clips), with their real previous frames at noise level
    ``previous_noise`` (None: without previous frames, the honest setting: at inference it is the model's own)."""
    if not clips or size <= 0:
        return None
    rng = np.random.default_rng(seed)
    examples = []
    for i in range(size):
        clip = clips[i % len(clips)]
        t = int(rng.integers(1, len(clip.frames)))
        examples.append(make_example(clip, t, previous_noise is not None, False, previous_noise or 0.0, rng))
    return {k: v.to(device) for k, v in collate(examples).items()}


def _validate_ema(model, ema: EMAModel, noise_scheduler, batch, timesteps, seed: int) -> dict[str, float]:
    ema.store(model.parameters())
    ema.copy_to(model.parameters())
    try:
        return validation_scores(model, noise_scheduler, batch, timesteps, torch.Generator().manual_seed(seed))
    finally:
        ema.restore(model.parameters())


def save_final(model, ema: EMAModel, noise_scheduler, config: dict, counts: dict, steps: int, processes: int,
               minutes: float, history: list, init_from: Path | None) -> None:
    """Write the EMA weights and a DDIM sampling scheduler with ``save_pretrained``, plus how they were made."""
    final: Path = config["final_dir"]
    model = copy.deepcopy(model)  # the training replica keeps its own weights
    ema.copy_to(model.parameters())
    # face_renderer/ and renderer_scheduler/ join the pipeline in final_dir (else a copy of the shipped one)
    save_into_pipeline(final, base=DEFAULT_CHECKPOINT, face_renderer=model,
                       renderer_scheduler=DDIMScheduler.from_config(noise_scheduler.config))
    info = {
        "command": "accelerate launch training/train_renderer.py " + " ".join(map(shlex.quote, sys.argv[1:])),
        "seed": config["seed"],
        "steps": steps,
        "processes": processes,  # each step saw batch_size x processes frames
        "wall_minutes": round(minutes, 1),
        "data": counts,
        "validation": config.get("validation"),
        "init_from": None if init_from is None else str(init_from),
        "history": history,
        "config": {k: v for k, v in config.items() if k not in ("output_dir", "final_dir")},
    }
    (final / "face_renderer" / "training_info.json").write_text(json.dumps(info, indent=2, default=str) + "\n")
    logger.info("saved %s (%.1f min)", final, minutes)


if __name__ == "__main__":
    main(parse_args())

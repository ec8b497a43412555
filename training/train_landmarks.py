"""Train the landmark diffusion model (``pipeline.models.LandmarkDenoiser``).

    accelerate launch training/train_landmarks.py --config training/configs/landmarks.yaml

Runs on CPU here and on GPUs elsewhere (accelerate decides). Windows of ``model.window`` frames are drawn from
every data folder in the config with its sampling weight; audio features are computed once at start. The state
is saved every ``checkpointing_steps`` (``--resume_from_checkpoint latest`` picks up after an interruption), EMA
weights are kept, and the pipeline (EMA model plus its sampling scheduler) is written with ``save_pretrained`` to
``final_dir``, ready for ``TalkingFacePipeline.from_pretrained``.
"""

from __future__ import annotations

import argparse
import copy
import json
import logging
import shlex
import sys
from dataclasses import dataclass
from pathlib import Path

import librosa
import numpy as np
import torch
from diffusers import DDIMScheduler, DDPMScheduler
from diffusers.training_utils import EMAModel

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from pipeline.audio import SAMPLE_RATE, make_audio_features  # noqa: E402
from pipeline.models import LandmarkDenoiser  # noqa: E402
from pipeline.motion import random_known_mask, training_loss  # noqa: E402
from training import loop  # noqa: E402
from training.checkpointing import save_into_pipeline  # noqa: E402
from training.data.clip_sources import licence_summary  # noqa: E402
from training.data.format import Example, find_examples  # noqa: E402

logger = logging.getLogger("train_landmarks")
#: Where the landmark targets come from (recorded in training_info.json): no research-use landmark model.
LABELS = ("real clips: the MediaPipe face mesh front end (Apache-2.0), its 68-point map, pose removed in 3D "
          "(pipeline.canonical); synthetic corpora: visemes on faces varied around the mesh-derived mean face")


def parse_args(argv=None) -> argparse.Namespace:
    return loop.argument_parser(__doc__.splitlines()[0], REPO / "training/configs/landmarks.yaml").parse_args(argv)


@dataclass
class Utterance:
    motion: np.ndarray  # (T, 68, 2) canonical offsets from neutral
    neutral: np.ndarray  # (68, 2)
    audio: np.ndarray  # (T, D) features


class WindowSampler:
    """Draws training windows: a source by weight, an utterance uniformly, a start uniformly."""

    def __init__(self, sources: list[tuple[list[Utterance], float]], window: int, seed: int):
        self.sources = [s for s, w in sources if s and w > 0]
        weights = np.array([w for s, w in sources if s and w > 0], dtype=np.float64)
        assert self.sources, "no training data found: run the training/data/prepare_*.py scripts first"
        self.weights = weights / weights.sum()
        self.window = window
        self.rng = np.random.default_rng(seed)

    def batch(self, size: int) -> dict[str, torch.Tensor]:
        w = self.window
        motion, audio, reference, valid = [], [], [], []
        for _ in range(size):
            source = self.sources[self.rng.choice(len(self.sources), p=self.weights)]
            utt = source[self.rng.integers(len(source))]
            t = len(utt.motion)
            start = int(self.rng.integers(0, max(t - w, 0) + 1))
            m, a = utt.motion[start : start + w], utt.audio[start : start + w]
            pad = w - len(m)
            motion.append(np.pad(m, ((0, pad), (0, 0), (0, 0))))  # rest pose after the end
            audio.append(np.pad(a, ((0, pad), (0, 0))))
            valid.append(np.arange(w) < len(m))
            reference.append(utt.neutral)
        return {
            "motion": torch.from_numpy(np.stack(motion)).float(),  # (B, W, 68, 2)
            "audio": torch.from_numpy(np.stack(audio)).float(),  # (B, W, D)
            "reference": torch.from_numpy(np.stack(reference)).float(),  # (B, 68, 2)
            "valid": torch.from_numpy(np.stack(valid)),  # (B, W) frames with audio
        }


def lead_motion(motion: np.ndarray, frames: int) -> np.ndarray:
    """``motion`` made to happen ``frames`` earlier against its audio (the last frame held at the end).

    Real mouths move ahead of the sound they make: on the real training clips the loudness peaks come 1-2 frames
    after the mouth's opening peaks, on the synthetic corpora (mouth shapes timed from phone boundaries) at 0-1. A
    data entry's ``lead_seconds`` gives its synthetic motion such a lead. Measured (README, lip sync): it did not
    help people outside the training set on both held-out splits, so no shipped config uses it."""
    if frames <= 0:
        return motion
    frames = min(frames, len(motion) - 1)
    return np.concatenate([motion[frames:], np.repeat(motion[-1:], frames, axis=0)])


def pitch_variants(audio: np.ndarray, semitones) -> list[np.ndarray]:
    """The recording, then a pitch-shifted copy per entry of ``semitones`` (a data entry's ``pitch_semitones``).

    librosa's shift moves the formants with the pitch, like a shorter or longer vocal tract: copies of the few real
    speakers that sound like other people, so the model has to learn what their mouths do rather than who they are.
    Measured (README, lip sync): no gain on the held-out people, so no shipped config uses it."""
    return [audio] + [librosa.effects.pitch_shift(audio, sr=SAMPLE_RATE, n_steps=float(s)).astype(np.float32)
                      for s in semitones]


def load_sources(config: dict, featurizer, accelerator
                 ) -> tuple[list[tuple[list[Utterance], float]], dict[str, int], list[str]]:
    """This process's shard of the utterances of each data folder (:func:`training.loop.shard`) with the folder's
    weight, the number of examples per folder, and the names of the real clips among them (for the licence record);
    the counts and names cover every process's shard."""
    sources, counts, clip_names = [], {}, []
    for entry in config["data"]:
        examples = [Example.load(path) for path in find_examples(REPO / entry["path"])]
        counts[entry["path"]] = len(examples)
        clip_names += [ex.name for ex in examples if ex.source == "clips"]
        utterances = []
        for ex in loop.shard(examples, accelerator):
            motion = lead_motion(ex.canonical - ex.neutral, round(entry.get("lead_seconds", 0.0) * ex.fps))
            for audio in pitch_variants(ex.audio, entry.get("pitch_semitones", ())):
                feats = featurizer(audio, fps=ex.fps)
                n = min(len(feats), len(motion))
                utterances.append(Utterance(motion[:n], ex.neutral, feats[:n]))
        sources.append((utterances, float(entry["weight"])))
    return sources, counts, clip_names


def main(args: argparse.Namespace) -> LandmarkDenoiser:
    """Train; returns this process's trained model (the replicas are identical; the final save holds its EMA)."""
    config = loop.load_config(args)
    train = config["train"]
    out_dir: Path = config["output_dir"]
    accelerator = loop.start(config, args.report_to)

    featurizer = make_audio_features(None if config["audio_features"] == "logmel" else config["audio_features"])
    sources, counts, clip_names = load_sources(config, featurizer, accelerator)
    logger.info("data: %s (process %d of %d)", counts, accelerator.process_index + 1, accelerator.num_processes)
    if args.init_from is not None:
        model = LandmarkDenoiser.from_pretrained(args.init_from, use_safetensors=True)
        assert model.config.audio_dim == featurizer.dim, "the initial model was trained on other audio features"
    else:
        model = LandmarkDenoiser(audio_dim=featurizer.dim, **config["model"])
    noise_scheduler = DDPMScheduler(num_train_timesteps=1000, beta_schedule="squaredcos_cap_v2",
                                    prediction_type=model.config.prediction_type, clip_sample=False)
    model, optimizer, lr_scheduler, ema, progress = loop.optimisation(accelerator, model, train)
    step = loop.resume(accelerator, out_dir, args.resume_from_checkpoint, progress)
    seed = loop.process_seed(config["seed"], accelerator, step)
    sampler = WindowSampler(sources, config["model"]["window"], seed=seed)
    generator = torch.Generator().manual_seed(seed)
    loop.init_trackers(accelerator, "train_landmarks", config)

    model.train()
    losses = loop.LossLog(accelerator, lr_scheduler, train["log_every"])
    while step < train["max_steps"]:
        batch = sampler.batch(train["batch_size"])
        b, w = batch["valid"].shape
        keep_audio = torch.rand(b, generator=generator) >= train["audio_dropout"]
        batch["audio_mask"] = batch.pop("valid") & keep_audio[:, None]  # (B, W)
        batch["known_mask"] = random_known_mask(b, w, generator, p_prefix=train["p_prefix"],
                                                p_upper=train["p_upper"])
        batch = {k: v.to(accelerator.device) for k, v in batch.items()}
        loss = loop.optimisation_step(accelerator, model, optimizer, lr_scheduler, train["max_grad_norm"],
                                      lambda b=batch: training_loss(model, noise_scheduler, b, generator=generator))
        if not accelerator.sync_gradients:
            continue
        ema.step(accelerator.unwrap_model(model).parameters())
        step += 1
        losses.add(step, loss)
        if step % train["checkpointing_steps"] == 0:
            loop.save_state(accelerator, progress, step)

    accelerator.wait_for_everyone()
    trained = accelerator.unwrap_model(model)
    if accelerator.is_main_process:
        save_final(trained, ema, noise_scheduler, config, counts, clip_names, step, accelerator.num_processes,
                   args)
    accelerator.end_training()
    return trained


def save_final(model, ema: EMAModel, noise_scheduler, config: dict, counts: dict, clip_names: list[str],
               steps: int, processes: int, args: argparse.Namespace) -> None:
    """Write the EMA weights and the sampling scheduler with ``save_pretrained``, plus how they were made."""
    final: Path = config["final_dir"]
    model = copy.deepcopy(model)  # the training replica keeps its own weights
    ema.copy_to(model.parameters())
    # model_index.json, landmark_denoiser/, scheduler/ (a face renderer already in final_dir stays)
    save_into_pipeline(final, settings={"audio_features": config["audio_features"]}, landmark_denoiser=model,
                       scheduler=DDIMScheduler.from_config(noise_scheduler.config))
    previous_info = args.init_from / "training_info.json" if args.init_from else None
    previous = json.loads(previous_info.read_text()) if previous_info and previous_info.is_file() else None
    info = {
        "command": "accelerate launch training/train_landmarks.py " + " ".join(map(shlex.quote, sys.argv[1:])),
        "initialised_from": previous,
        "seed": config["seed"],
        "steps": steps,
        "processes": processes,  # each step saw batch_size x processes windows
        "data_examples": counts,
        "labels": LABELS,
        "real_clips": licence_summary(clip_names),
        "audio_features": config["audio_features"],
        "config": {k: v for k, v in config.items() if k not in ("output_dir", "final_dir")},
    }
    (final / "landmark_denoiser" / "training_info.json").write_text(json.dumps(info, indent=2) + "\n")
    logger.info("saved %s", final)


if __name__ == "__main__":
    main(parse_args())

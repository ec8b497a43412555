"""The accelerate scaffolding shared by the training scripts: command line and YAML config, accelerator (trackers,
rotated checkpoints), optimisation (AdamW, cosine schedule with warm-up, EMA registered for checkpointing), per-process
seeds and data shards, resuming and one optimisation step. Each script keeps its own data, loss and saving; the
``train`` section of its config holds the keys read here.

Distributed training (``accelerate launch --num_processes N``) follows diffusers' example scripts: the loss is computed
through the *prepared* model (DistributedDataParallel all-reduces the gradients, so the replicas stay identical),
every process draws its own batches and noise from its own shard of the data, and the learning-rate schedule is
counted in ``num_processes`` ticks per step (the prepared scheduler steps once per process), so warm-up and decay end
at ``max_steps`` whatever the number of processes. Each step then sees ``batch_size × num_processes`` examples.
"""

from __future__ import annotations

import argparse
import logging
import os
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TypeVar

import numpy as np
import torch
import yaml
from accelerate import Accelerator
from accelerate.utils import ProjectConfiguration, set_seed
from diffusers.optimization import get_cosine_schedule_with_warmup
from diffusers.training_utils import EMAModel

from pipeline.distributed import launched_on_cpu

logger = logging.getLogger(__name__)
REPO = Path(__file__).resolve().parents[1]
T = TypeVar("T")


def argument_parser(description: str, default_config: Path) -> argparse.ArgumentParser:
    """The options every training script has; scripts add their own overrides."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--config", type=Path, default=default_config)
    parser.add_argument("--max_steps", type=int, help="override train.max_steps")
    parser.add_argument("--init_from", type=Path,
                        help="start from these model weights (a save_pretrained folder): fine-tuning")
    parser.add_argument("--output_dir", type=Path, help="override output_dir")
    parser.add_argument("--final_dir", type=Path, help="override final_dir")
    parser.add_argument("--resume_from_checkpoint",
                        help="'latest' or a checkpoint folder (<output_dir>/checkpoints/checkpoint_<n>)")
    parser.add_argument("--report_to", default="tensorboard",
                        help="trackers for the loss and learning rate: tensorboard (default, offline, in "
                             "<output_dir>/logs), wandb, all (every one installed) or none")
    return parser


def load_config(args: argparse.Namespace) -> dict:
    """The YAML config with the common overrides applied; ``output_dir`` / ``final_dir`` as paths (relative ones
    from the repository root)."""
    config = yaml.safe_load(args.config.read_text())
    if args.max_steps is not None:
        config["train"]["max_steps"] = args.max_steps
    for key in ("output_dir", "final_dir"):
        value = getattr(args, key)
        config[key] = Path(value) if value is not None else REPO / config[key]
    return config


def start(config: dict, report_to: str = "none") -> Accelerator:
    """Threads (``train.num_threads``, shared out among this machine's processes), accelerator, logging and the
    seed. Training states go to ``<output_dir>/checkpoints/checkpoint_<n>`` (accelerate's automatic naming; only the
    newest ``train.checkpoints_total_limit`` are kept), tracker logs to ``<output_dir>/logs``. The global seed is the
    same on every process, so every replica starts from the same weights; the data and the noise then differ per
    process (:func:`process_seed`)."""
    train = config["train"]
    out_dir = Path(config["output_dir"])
    torch.set_num_threads(_threads(int(train.get("num_threads", 2))))
    project = ProjectConfiguration(project_dir=str(out_dir), logging_dir=str(out_dir / "logs"),
                                   automatic_checkpoint_naming=True, total_limit=train["checkpoints_total_limit"])
    saved = _saved_states(out_dir)
    project.iteration = _save_index(saved[-1]) + 1 if saved else 0  # a new run in an old folder numbers on
    accelerator = Accelerator(
        cpu=launched_on_cpu(),
        gradient_accumulation_steps=train["gradient_accumulation_steps"],
        mixed_precision=train["mixed_precision"],
        log_with=None if report_to == "none" else report_to,
        project_config=project,
    )
    logging.basicConfig(level=logging.INFO if accelerator.is_main_process else logging.WARNING,
                        format="%(asctime)s %(message)s")  # one progress log, from the main process
    set_seed(config["seed"])
    return accelerator


def _threads(wanted: int) -> int:
    """``wanted`` intra-op threads, fewer where this machine's processes would otherwise share cores."""
    processes_here = int(os.environ.get("LOCAL_WORLD_SIZE", "1"))
    return max(1, min(wanted, (os.cpu_count() or 1) // processes_here))


def init_trackers(accelerator: Accelerator, name: str, config: dict) -> None:
    """Start the trackers chosen by ``--report_to`` with the run's config (flattened to scalars and strings, which
    every tracker accepts)."""
    if accelerator.log_with:
        accelerator.init_trackers(name, config=_flat(config))


def _flat(values: dict, prefix: str = "") -> dict[str, int | float | str | bool]:
    flat: dict[str, int | float | str | bool] = {}
    for key, value in values.items():
        if isinstance(value, dict):
            flat.update(_flat(value, f"{prefix}{key}."))
        elif isinstance(value, (int, float, str, bool)):
            flat[prefix + key] = value
        else:
            flat[prefix + key] = str(value)
    return flat


def process_seed(seed: int, accelerator: Accelerator, step: int) -> int:
    """A seed of its own for each process and starting step: per-process batches and noise, which continue
    differently after a resume."""
    return int(np.random.SeedSequence([seed, accelerator.process_index, step]).generate_state(1)[0])


def shard(items: Sequence[T], accelerator: Accelerator) -> list[T]:
    """This process's share of ``items`` (every ``num_processes``-th one); all of them when there are fewer items than
    processes."""
    n = accelerator.num_processes
    if len(items) < n:
        return list(items)
    return list(items[accelerator.process_index :: n])


class Progress:
    """The optimisation step, saved and restored with the training state (a checkpoint's folder number counts
    saves, not steps)."""

    def __init__(self) -> None:
        self.step = 0

    def state_dict(self) -> dict[str, int]:
        return {"step": self.step}

    def load_state_dict(self, state: dict[str, int]) -> None:
        self.step = int(state["step"])


def optimisation(accelerator: Accelerator, model: torch.nn.Module, train: dict):
    """``(model, optimizer, lr_scheduler, ema, progress)``, prepared by ``accelerator``; the EMA of the model's weights
    and the step counter are saved and restored with the training state."""
    optimizer = torch.optim.AdamW(model.parameters(), lr=train["learning_rate"], weight_decay=train["weight_decay"])
    ticks = accelerator.num_processes  # the prepared scheduler steps once per process per optimisation step
    lr_scheduler = get_cosine_schedule_with_warmup(optimizer, train["warmup_steps"] * ticks,
                                                   train["max_steps"] * ticks)
    model, optimizer, lr_scheduler = accelerator.prepare(model, optimizer, lr_scheduler)
    unwrapped = accelerator.unwrap_model(model)
    ema = EMAModel(unwrapped.parameters(), decay=train["ema_decay"], model_cls=type(unwrapped),
                   model_config=unwrapped.config)
    ema.to(accelerator.device)
    progress = Progress()
    accelerator.register_for_checkpointing(ema)
    accelerator.register_for_checkpointing(progress)
    return model, optimizer, lr_scheduler, ema, progress


def _saved_states(out_dir: Path) -> list[Path]:
    """The saved training states under ``out_dir``, oldest first."""
    return sorted((out_dir / "checkpoints").glob("checkpoint_*"), key=_save_index)


def _save_index(folder: Path) -> int:
    return int(folder.name.rsplit("_", 1)[-1])


def resume(accelerator: Accelerator, out_dir: Path, which: str | None, progress: Progress) -> int:
    """Load the training state named by ``--resume_from_checkpoint`` (``"latest"`` or a folder) and return its
    step; 0 when there is nothing to resume."""
    if not which:
        return 0
    saved = _saved_states(out_dir)
    folder = (saved[-1] if saved else None) if which == "latest" else Path(which)
    if folder is None:
        logger.info("no saved state in %s: starting afresh", out_dir / "checkpoints")
        return 0
    accelerator.load_state(str(folder))
    logger.info("resumed from %s at step %d", folder, progress.step)
    return progress.step


def save_state(accelerator: Accelerator, progress: Progress, step: int) -> None:
    """Save the full training state (every process must call this; the oldest states beyond the limit go)."""
    progress.step = step
    accelerator.save_state()


def mean_over_processes(accelerator: Accelerator, value: torch.Tensor) -> float:
    """The mean of a scalar over all processes (every process must call this)."""
    return float(accelerator.gather(value.detach().float().reshape(1)).mean())


class LossLog:
    """The loss of every step, averaged over the processes, sent to the trackers with the learning rate; every
    ``log_every`` steps also to the console (with seconds per step)."""

    def __init__(self, accelerator: Accelerator, lr_scheduler, log_every: int) -> None:
        self.accelerator, self.lr_scheduler, self.log_every = accelerator, lr_scheduler, log_every
        self.running: list[float] = []
        self.started = time.perf_counter()
        self.steps = 0

    def add(self, step: int, loss: torch.Tensor) -> float | None:
        """Record ``step``'s loss (every process must call this); returns the mean since the last console line when
        this step writes one, else ``None``."""
        self.steps += 1
        self.running.append(mean_over_processes(self.accelerator, loss))
        lr = self.lr_scheduler.get_last_lr()[0]
        self.accelerator.log({"loss": self.running[-1], "lr": lr}, step=step)
        if step % self.log_every:
            return None
        mean, self.running = float(np.mean(self.running)), []
        logger.info("step %d loss %.4f lr %.2e (%.2f s/step)", step, mean, lr,
                    (time.perf_counter() - self.started) / self.steps)
        return mean


def optimisation_step(accelerator: Accelerator, model, optimizer, lr_scheduler, max_grad_norm: float,
                      compute_loss: Callable[[], torch.Tensor]) -> torch.Tensor:
    """One (possibly accumulated) step: ``compute_loss()`` (through the prepared ``model``, so that gradients are
    all-reduced), backward, clipping when gradients sync, update."""
    with accelerator.accumulate(model):
        loss = compute_loss()
        accelerator.backward(loss)
        if accelerator.sync_gradients:
            accelerator.clip_grad_norm_(model.parameters(), max_grad_norm)
        optimizer.step()
        lr_scheduler.step()
        optimizer.zero_grad()
    return loss

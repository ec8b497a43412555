"""The accelerate scaffolding shared by the training scripts: command line and YAML config, accelerator,
optimisation (AdamW, cosine schedule with warm-up, EMA registered for checkpointing), resuming and one optimisation
step. Each script keeps its own data, loss, logging and saving; the ``train`` section of its config holds the keys
read here."""

from __future__ import annotations

import argparse
import logging
from collections.abc import Callable
from pathlib import Path

import torch
import yaml
from accelerate import Accelerator
from accelerate.utils import ProjectConfiguration, set_seed
from diffusers.optimization import get_cosine_schedule_with_warmup
from diffusers.training_utils import EMAModel

from training.checkpointing import checkpoint_to_resume

logger = logging.getLogger(__name__)
REPO = Path(__file__).resolve().parents[1]


def argument_parser(description: str, default_config: Path) -> argparse.ArgumentParser:
    """The options every training script has; scripts add their own overrides."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--config", type=Path, default=default_config)
    parser.add_argument("--max_steps", type=int, help="override train.max_steps")
    parser.add_argument("--init_from", type=Path,
                        help="start from these model weights (a save_pretrained folder): fine-tuning")
    parser.add_argument("--output_dir", type=Path, help="override output_dir")
    parser.add_argument("--final_dir", type=Path, help="override final_dir")
    parser.add_argument("--resume_from_checkpoint", help="'latest' or a checkpoint folder")
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


def start(config: dict) -> Accelerator:
    """Threads, accelerator (checkpoints under ``config["output_dir"]``), logging and the seed."""
    train = config["train"]
    torch.set_num_threads(int(train.get("num_threads", 2)))
    accelerator = Accelerator(
        gradient_accumulation_steps=train["gradient_accumulation_steps"],
        mixed_precision=train["mixed_precision"],
        project_config=ProjectConfiguration(project_dir=str(config["output_dir"])),
    )
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    set_seed(config["seed"])
    return accelerator


def optimisation(accelerator: Accelerator, model: torch.nn.Module, train: dict):
    """``(model, optimizer, lr_scheduler, ema)``, prepared by ``accelerator``; the EMA of the model's weights is
    saved and restored with the training state."""
    optimizer = torch.optim.AdamW(model.parameters(), lr=train["learning_rate"], weight_decay=train["weight_decay"])
    lr_scheduler = get_cosine_schedule_with_warmup(optimizer, train["warmup_steps"], train["max_steps"])
    model, optimizer, lr_scheduler = accelerator.prepare(model, optimizer, lr_scheduler)
    unwrapped = accelerator.unwrap_model(model)
    ema = EMAModel(unwrapped.parameters(), decay=train["ema_decay"], model_cls=type(unwrapped),
                   model_config=unwrapped.config)
    ema.to(accelerator.device)
    accelerator.register_for_checkpointing(ema)
    return model, optimizer, lr_scheduler, ema


def resume(accelerator: Accelerator, out_dir: Path, which: str | None) -> int:
    """Load the training state named by ``--resume_from_checkpoint`` (``"latest"`` or a folder) and return its
    step; 0 when there is nothing to resume."""
    folder = checkpoint_to_resume(out_dir, which) if which else None
    if folder is None:
        return 0
    accelerator.load_state(str(folder))
    step = int(folder.name.split("-")[-1])
    logger.info("resumed from %s at step %d", folder, step)
    return step


def optimisation_step(accelerator: Accelerator, model, optimizer, lr_scheduler, max_grad_norm: float,
                      compute_loss: Callable[[], torch.Tensor]) -> torch.Tensor:
    """One (possibly accumulated) step: ``compute_loss()``, backward, clipping when gradients sync, update."""
    with accelerator.accumulate(model):
        loss = compute_loss()
        accelerator.backward(loss)
        if accelerator.sync_gradients:
            accelerator.clip_grad_norm_(model.parameters(), max_grad_norm)
        optimizer.step()
        lr_scheduler.step()
        optimizer.zero_grad()
    return loss

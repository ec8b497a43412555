"""Training-state checkpoints shared by the training scripts (``checkpoint-<step>`` folders, accelerate state)."""

from __future__ import annotations

import shutil
from pathlib import Path

from accelerate import Accelerator


def checkpoints(out_dir: Path) -> list[Path]:
    """The ``checkpoint-<step>`` folders under ``out_dir``, oldest first."""
    return sorted(out_dir.glob("checkpoint-*"), key=lambda p: int(p.name.split("-")[-1]))


def checkpoint_to_resume(out_dir: Path, which: str) -> Path | None:
    """``which`` is a folder, or ``"latest"`` for the newest checkpoint (``None`` when there is none)."""
    if which != "latest":
        return Path(which)
    folders = checkpoints(out_dir)
    return folders[-1] if folders else None


def save_checkpoint(accelerator: Accelerator, out_dir: Path, step: int, keep: int) -> None:
    """Save the full training state as ``checkpoint-<step>``, keeping only the newest ``keep``."""
    accelerator.save_state(str(out_dir / f"checkpoint-{step}"))
    for old in checkpoints(out_dir)[:-keep]:
        shutil.rmtree(old)

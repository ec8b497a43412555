"""Where the pipeline's weights come from: the shipped ``checkpoints/`` folder, another folder, or a Hub repo."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Optional, Union

#: The checkpoints shipped with the repository (loaded when nothing else is asked for).
DEFAULT_CHECKPOINT = Path(__file__).resolve().parents[1] / "checkpoints"
#: Environment variable naming a folder or Hub repo id to load instead (e.g. on a Space).
CHECKPOINT_ENV = "TALKING_FACE_CHECKPOINT"


def resolve_checkpoint(source: Optional[Union[str, os.PathLike]] = None, revision: Optional[str] = None,
                       local_files_only: bool = False) -> Path:
    """A local folder holding ``model_index.json``.

    ``source`` is a folder, a Hub repo id (``"user/name"``, fetched with ``snapshot_download``; with
    ``local_files_only`` only the local Hugging Face cache is used), or ``None`` for ``$TALKING_FACE_CHECKPOINT``,
    falling back to the shipped ``checkpoints/``.
    """
    source = source if source is not None else os.environ.get(CHECKPOINT_ENV) or DEFAULT_CHECKPOINT
    path = Path(source)
    if path.is_dir():
        if not (path / "model_index.json").is_file():
            raise RuntimeError(f"{path} is not a saved TalkingFacePipeline (no model_index.json).")
        return path
    if str(source).count("/") != 1 or path.suffix:
        raise RuntimeError(f"Checkpoint {source} is neither a folder nor a Hub repo id like 'user/name'.")
    from huggingface_hub import snapshot_download

    return Path(snapshot_download(str(source), revision=revision, local_files_only=local_files_only))


def load_pipeline(source: Optional[Union[str, os.PathLike]] = None, device: Optional[str] = None,
                  torch_dtype=None, local_files_only: bool = False, warm: bool = True):
    """Load :class:`TalkingFacePipeline` from :func:`resolve_checkpoint`'s folder onto ``device`` (CUDA when
    available, else CPU), warmed up (see :func:`warm_up`) unless ``warm`` is False (a command that runs once pays
    those costs in its first stage anyway)."""
    import torch

    from .pipeline_talking_face import TalkingFacePipeline

    folder = resolve_checkpoint(source, local_files_only=local_files_only)
    kwargs = {"use_safetensors": True}  # weights never come from pickle files
    if torch_dtype is not None:
        kwargs["torch_dtype"] = torch_dtype
    pipe = TalkingFacePipeline.from_pretrained(str(folder), **kwargs)
    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    pipe = pipe.to(device)
    if warm:
        warm_up(pipe)
    return pipe


def warm_up(pipe) -> None:
    """Load the face models and run the audio features once, so the first request pays no one-time costs
    (reading the face models, librosa's first-call compilation)."""
    import numpy as np

    pipe.face_analyzer  # noqa: B018
    pipe.audio_featurizer(np.zeros(8000, dtype=np.float32), fps=pipe.config.fps)

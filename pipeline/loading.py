"""Where the pipeline's weights come from: the shipped ``checkpoints/`` folder, another folder, or a Hub repo."""

from __future__ import annotations

import json
import os
from pathlib import Path

#: The checkpoints shipped with the repository (loaded when nothing else is asked for).
DEFAULT_CHECKPOINT = Path(__file__).resolve().parents[1] / "checkpoints"
#: Environment variable naming a folder or Hub repo id to load instead (e.g. on a Space).
CHECKPOINT_ENV = "TALKING_FACE_CHECKPOINT"
#: What a pipeline folder on the Hub may contribute: its index, configs and safetensors weights (never pickles or code).
HUB_FILES = ["model_index.json", "*/config.json", "*/scheduler_config.json", "*/*.safetensors",
             "*/training_info.json"]
#: The components a checkpoint may name in model_index.json, with the classes allowed for them.
COMPONENTS = {
    "landmark_denoiser": {("pipeline.models.landmark_denoiser", "LandmarkDenoiser")},
    "face_renderer": {("pipeline.models.face_renderer", "LandmarkFaceRenderer")},
    "mouth_regressor": {("pipeline.models.mouth_regressor", "MouthOpeningRegressor")},
    "scheduler": None,  # any diffusers scheduler class
    "renderer_scheduler": None,
}
MAX_INDEX_BYTES = 64 * 1024


def resolve_checkpoint(source: str | os.PathLike | None = None, revision: str | None = None,
                       local_files_only: bool = False) -> Path:
    """A local folder holding ``model_index.json``.

    ``source`` is a folder, a Hub repo id (``"user/name"``, any name the Hub accepts; fetched with
    ``snapshot_download`` at ``revision``, only the files a pipeline needs (:data:`HUB_FILES`); with
    ``local_files_only`` only the local Hugging Face cache is used), or ``None`` for ``$TALKING_FACE_CHECKPOINT``,
    falling back to the shipped ``checkpoints/``.
    """
    source = source if source is not None else os.environ.get(CHECKPOINT_ENV) or DEFAULT_CHECKPOINT
    path = Path(source)
    if path.is_dir():
        if not (path / "model_index.json").is_file():
            raise RuntimeError(f"{path} is not a saved TalkingFacePipeline (no model_index.json).")
        return path
    from huggingface_hub import snapshot_download
    from huggingface_hub.utils import HFValidationError, validate_repo_id

    try:
        validate_repo_id(str(source))
        if str(source).count("/") != 1:
            raise HFValidationError("not owner/name")
    except HFValidationError:
        raise RuntimeError(f"Checkpoint {source} is neither a folder nor a Hub repo id like 'user/name'.") from None
    return Path(snapshot_download(str(source), revision=revision, local_files_only=local_files_only,
                                  allow_patterns=HUB_FILES))


def check_model_index(folder: Path) -> None:
    """Refuse (``RuntimeError``, one line) a ``model_index.json`` that names anything but this pipeline's own
    components: diffusers would import whatever module an entry names (``["subprocess", "Popen"]``)."""
    index = Path(folder) / "model_index.json"
    try:
        if index.stat().st_size > MAX_INDEX_BYTES:
            raise ValueError("too large")
        entries = json.loads(index.read_text())
        if not isinstance(entries, dict):
            raise ValueError("not an object")
    except (OSError, ValueError):
        raise RuntimeError(f"{index} is not a readable pipeline index.") from None
    if entries.get("_class_name") != "TalkingFacePipeline":
        raise RuntimeError(f"{index} describes a {str(entries.get('_class_name'))[:40]}, not a TalkingFacePipeline.")
    for name, value in entries.items():
        if not isinstance(value, list):
            continue  # settings (fps, audio_features, ...) are checked by the pipeline's config
        empty = value == [None, None]  # an optional component saved as absent
        if name not in COMPONENTS or not (empty or len(value) == 2 and _allowed(name, *value)):
            raise RuntimeError(f"{index} names {str(value)[:80]} for '{str(name)[:40]}': not a component of this "
                               "pipeline; refusing to load it.")


def _allowed(name: str, library: object, cls: object) -> bool:
    allowed = COMPONENTS[name]
    if allowed is not None:
        return (library, cls) in allowed
    if library != "diffusers" or not isinstance(cls, str) or not cls.isidentifier():
        return False
    import diffusers
    from diffusers import SchedulerMixin

    scheduler = getattr(diffusers, cls, None) if cls.endswith("Scheduler") else None
    return isinstance(scheduler, type) and issubclass(scheduler, SchedulerMixin)


def load_pipeline(source: str | os.PathLike | None = None, device: str | None = None,
                  dtype=None, local_files_only: bool = False, warm: bool = True, revision: str | None = None):
    """Load :class:`TalkingFacePipeline` from :func:`resolve_checkpoint`'s folder onto ``device`` (CUDA when
    available, else CPU), warmed up (see :func:`warm_up`) unless ``warm`` is False (a command that runs once pays
    those costs in its first stage anyway)."""
    import torch

    from .pipeline_talking_face import TalkingFacePipeline

    folder = resolve_checkpoint(source, revision=revision, local_files_only=local_files_only)
    kwargs = {"use_safetensors": True}  # weights never come from pickle files (from_pretrained insists too)
    if dtype is not None:  # e.g. torch.bfloat16 (diffusers' current name for torch_dtype)
        kwargs["dtype"] = dtype
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

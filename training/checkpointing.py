"""Saving a trained model into a :class:`~pipeline.pipeline_talking_face.TalkingFacePipeline` folder."""

from __future__ import annotations

import json
from pathlib import Path


def save_into_pipeline(final: Path, base: Path | None = None, settings: dict | None = None, **components) -> None:
    """Save ``components`` (e.g. ``face_renderer=model``) and pipeline ``settings`` (e.g. ``audio_features``) as part
    of the :class:`TalkingFacePipeline` in ``final`` (``save_pretrained``: model_index.json and a folder per
    component). The other components come from the pipeline already in ``final``, else from the one in ``base``;
    with neither, ``components`` must be complete."""
    from pipeline.pipeline_talking_face import TalkingFacePipeline

    source = next((folder for folder in (final, base) if folder and (folder / "model_index.json").is_file()), None)
    if source is None:
        pipe = TalkingFacePipeline(**components, **(settings or {}))
    else:
        pipe = TalkingFacePipeline.from_pretrained(str(source), use_safetensors=True)
        pipe.register_modules(**components)
        pipe.register_to_config(**(settings or {}))
    pipe.save_pretrained(final)
    for config in [final / "model_index.json", *final.glob("*/config.json")]:  # no paths of this machine
        values = json.loads(config.read_text())
        if values.pop("_name_or_path", None) is not None:
            config.write_text(json.dumps(values, indent=2, sort_keys=True) + "\n")

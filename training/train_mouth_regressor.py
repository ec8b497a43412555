"""Fit the mouth-opening regressor (``pipeline.models.MouthOpeningRegressor``) on real talking faces.

    python training/train_mouth_regressor.py --config training/configs/mouth_regressor.yaml

Ridge regression in closed form (no sampling, no seed: the same data give the same weights): the mouth opening above
each clip's face at rest (``training.metrics.mouth_aperture`` of the canonical track minus the neutral face's) from
the speech features of the surrounding frames, each feature scaled to unit variance for the fit. The features are
the hidden states of the Whisper encoder in the config's ``speech_encoder`` folder (made by
``training/convert_whisper_encoder.py``; the regressor carries a copy), or the log-mel bands without one. The fitted
filter is scaled so that its predictions spread as much as the real openings do (the ridge fit alone is the
conditional mean, flatter than any real mouth), and written into the pipeline in ``final_dir`` with
``save_pretrained``, beside the other components already there. Mirrored copies (``*-mirror``) are skipped: they carry
the same audio and the same opening.
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
from pathlib import Path

import numpy as np
import torch
import yaml

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from pipeline.models import MouthOpeningRegressor  # noqa: E402
from training.checkpointing import save_into_pipeline  # noqa: E402
from training.data.clip_sources import licence_summary  # noqa: E402
from training.data.format import Example, find_examples  # noqa: E402
from training.metrics import mouth_aperture  # noqa: E402


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", type=Path, default=REPO / "training/configs/mouth_regressor.yaml")
    parser.add_argument("--final_dir", type=Path, help="override final_dir")
    return parser.parse_args(argv)


def band_context(features: np.ndarray, model: MouthOpeningRegressor) -> np.ndarray:
    """``(T, (2c + 1) * in_channels)`` rows: the sub-frame-averaged features of frames ``t - c .. t + c`` (edge
    frames repeated), in the order of the model's filter taps."""
    c, channels = model.config.context, model.config.in_channels
    bands = features.reshape(len(features), model.config.sub_frames, channels).mean(axis=1)
    padded = np.pad(bands, ((c, c), (0, 0)), mode="edge")
    return np.concatenate([padded[i:i + len(bands)] for i in range(2 * c + 1)], axis=1)


def fit(examples: list[Example], model: MouthOpeningRegressor, ridge: float) -> dict[str, float]:
    """Set ``model``'s filter to the ridge fit over ``examples``; returns the fit's statistics."""
    rows, targets = [], []
    for ex in examples:
        features = model.features(ex.audio, ex.fps)[: len(ex.canonical)]
        rows.append(band_context(features, model))
        targets.append((mouth_aperture(ex.canonical) - mouth_aperture(ex.neutral)[0])[: len(features)])
    x, y = np.concatenate(rows), np.concatenate(targets)
    x_mean, y_mean = x.mean(axis=0), float(y.mean())
    x_scale = np.maximum(x.std(axis=0), 1e-6)
    scaled = (x - x_mean) / x_scale
    weights = np.linalg.solve(scaled.T @ scaled + ridge * np.eye(x.shape[1]), scaled.T @ (y - y_mean)) / x_scale
    with torch.no_grad():  # as the model smooths it, clip by clip
        fitted = np.concatenate([model.smooth(torch.from_numpy((part - x_mean) @ weights)[None])[0].numpy()
                                 for part in rows])
    gain = float(y.std() / max(fitted.std(), 1e-12))  # spread like the real openings
    weights *= gain
    c, channels = model.config.context, model.config.in_channels
    with torch.no_grad():  # filter taps (1, in_channels, 2c + 1): tap i sees frame t + i - c
        model.filter.weight.copy_(torch.from_numpy(weights.reshape(2 * c + 1, channels).T[None].copy()))
        model.filter.bias.fill_(y_mean - float(x_mean @ weights))
    return {"frames": int(len(y)), "pearson_r_in_sample": float(np.corrcoef(fitted, y)[0, 1]), "gain": gain,
            "mean_opening": y_mean, "std_opening": float(y.std())}


def build_model(config: dict) -> MouthOpeningRegressor:
    """The regressor the config describes, carrying the Whisper encoder in ``speech_encoder["path"]`` (a folder
    relative to the repository) when there is one."""
    settings = dict(config.get("model", {}))
    if not config.get("speech_encoder"):
        return MouthOpeningRegressor(**settings)
    from transformers.models.whisper.modeling_whisper import WhisperEncoder

    folder = REPO / config["speech_encoder"]["path"]
    if not (folder / "config.json").is_file():
        raise SystemExit(f"no Whisper encoder in {folder}: make it with training/convert_whisper_encoder.py")
    encoder = WhisperEncoder.from_pretrained(folder, use_safetensors=True)
    keys = ("d_model", "encoder_layers", "encoder_attention_heads", "encoder_ffn_dim", "num_mel_bins",
            "max_source_positions", "activation_function")
    model = MouthOpeningRegressor(in_channels=encoder.config.encoder_layers * encoder.config.d_model,
                                  speech_encoder={key: getattr(encoder.config, key) for key in keys},
                                  **{"sub_frames": 1, **settings})
    model.encoder.load_state_dict(encoder.state_dict())
    return model.eval()


def main(args: argparse.Namespace) -> MouthOpeningRegressor:
    config = yaml.safe_load(args.config.read_text())
    final = args.final_dir if args.final_dir is not None else REPO / config["final_dir"]
    by_folder = {folder: [ex for ex in map(Example.load, find_examples(REPO / folder))
                          if not ex.name.endswith("-mirror")] for folder in config["data"]}
    examples = [ex for found in by_folder.values() for ex in found]
    if not examples:
        raise SystemExit(f"no training examples in {config['data']}: run the training/data/prepare_*.py scripts")
    model = build_model(config)
    stats = fit(examples, model, float(config["ridge"]))
    save_into_pipeline(Path(final), mouth_regressor=model.eval())
    info = {
        "command": "python training/train_mouth_regressor.py " + " ".join(map(shlex.quote, sys.argv[1:])),
        "seed": None,  # closed form: no randomness
        "data_examples": {folder: len(found) for folder, found in by_folder.items()},
        "fit": stats,
        "real_clips": licence_summary([ex.name for ex in examples]),
        "speech_encoder": _encoder_source(config),
        "config": config,
    }
    (Path(final) / "mouth_regressor" / "training_info.json").write_text(json.dumps(info, indent=2) + "\n")
    return model


def _encoder_source(config: dict) -> dict | None:
    """Where the regressor's Whisper encoder came from (``source.json`` of the converted folder)."""
    if not config.get("speech_encoder"):
        return None
    record = REPO / config["speech_encoder"]["path"] / "source.json"
    return {**config["speech_encoder"], "converted": json.loads(record.read_text()) if record.is_file() else None}


if __name__ == "__main__":
    main(parse_args())

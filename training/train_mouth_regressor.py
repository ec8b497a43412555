"""Fit the mouth-opening regressor (``pipeline.models.MouthOpeningRegressor``) on real talking faces.

    python training/train_mouth_regressor.py --config training/configs/mouth_regressor.yaml

Ridge regression in closed form (no sampling, no seed: the same data give the same weights): the mouth opening above
each clip's face at rest (``training.metrics.mouth_aperture`` of the canonical track minus the neutral face's) from
the speech features of the surrounding frames, each feature scaled to unit variance for the fit. The features are
the hidden states of the Whisper encoder in the config's ``speech_encoder`` folder (made by
``training/convert_whisper_encoder.py``; the regressor carries a copy), or the log-mel bands without one. The fitted
filter is scaled so that its predictions spread as much as the real openings do (the ridge fit alone is the
conditional mean, flatter than any real mouth). When the model has a ``closure_depth``, a second filter over the same
rows, the closure filter, is fitted by L2-regularised logistic regression (scikit-learn, deterministic) to tell the
frames where the real lips touch (opening at or under the config's ``closure.touch``) from the rest. The model is
written into the pipeline in ``final_dir`` with ``save_pretrained``, beside the other components already there.
Mirrored copies (``*-mirror``) are skipped: they carry the same audio and the same opening.
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


def design(examples: list[Example], model: MouthOpeningRegressor) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Each example's :func:`band_context` rows of ``model``'s features and its real opening above rest ``(T,)``."""
    rows, targets = [], []
    for ex in examples:
        features = model.features(ex.audio, ex.fps)[: len(ex.canonical)]
        rows.append(band_context(features, model))
        targets.append((mouth_aperture(ex.canonical) - mouth_aperture(ex.neutral)[0])[: len(features)])
    return rows, targets


def _standardise(x: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``x`` scaled to zero mean and unit variance per column, with the mean and scale."""
    x_mean, x_scale = x.mean(axis=0), np.maximum(x.std(axis=0), 1e-6)
    return (x - x_mean) / x_scale, x_mean, x_scale


def _set_taps(conv: torch.nn.Conv1d, weights: np.ndarray, bias: float, model: MouthOpeningRegressor) -> None:
    """Copy tap-major ``weights`` (as :func:`band_context` orders the rows) into ``conv``: tap i sees frame
    t + i - c, giving ``(1, in_channels, 2c + 1)``."""
    c, channels = model.config.context, model.config.in_channels
    with torch.no_grad():
        conv.weight.copy_(torch.from_numpy(weights.reshape(2 * c + 1, channels).T[None].copy()))
        conv.bias.fill_(bias)


def fit(examples: list[Example], model: MouthOpeningRegressor, ridge: float,
        closure: dict | None = None) -> dict[str, float]:
    """Set ``model``'s filter to the ridge fit over ``examples`` (and its closure filter, when the model has one, to
    the logistic fit ``closure`` describes: ``touch`` and ``regularisation``); returns the fits' statistics."""
    rows, targets = design(examples, model)
    x, y = np.concatenate(rows), np.concatenate(targets)
    scaled, x_mean, x_scale = _standardise(x)
    y_mean = float(y.mean())
    weights = np.linalg.solve(scaled.T @ scaled + ridge * np.eye(x.shape[1]), scaled.T @ (y - y_mean)) / x_scale
    with torch.no_grad():  # as the model smooths it, clip by clip
        fitted = np.concatenate([model.smooth(torch.from_numpy((part - x_mean) @ weights)[None])[0].numpy()
                                 for part in rows])
    gain = float(y.std() / max(fitted.std(), 1e-12))  # spread like the real openings
    weights *= gain
    _set_taps(model.filter, weights, y_mean - float(x_mean @ weights), model)
    stats = {"frames": int(len(y)), "pearson_r_in_sample": float(np.corrcoef(fitted, y)[0, 1]), "gain": gain,
             "mean_opening": y_mean, "std_opening": float(y.std())}
    if model.closure_filter is not None:
        if not closure:
            raise SystemExit("the model has a closure_depth: give the config a closure section (touch, "
                             "regularisation)")
        stats |= fit_closure(scaled, x_mean, x_scale, y <= float(closure["touch"]), model,
                             float(closure["regularisation"]))
    return stats


def fit_closure(scaled: np.ndarray, x_mean: np.ndarray, x_scale: np.ndarray, touching: np.ndarray,
                model: MouthOpeningRegressor, regularisation: float) -> dict[str, float]:
    """Set ``model``'s closure filter to the logistic regression of ``touching`` on the standardised rows (penalty
    ``regularisation`` times half the squared weights, against the summed log-loss)."""
    from sklearn.linear_model import LogisticRegression

    if touching.all() or not touching.any():
        raise SystemExit("the real lips touch on every frame or on none: nothing to fit a closure filter on")
    classifier = LogisticRegression(C=1.0 / regularisation, max_iter=500).fit(scaled, touching)
    weights = classifier.coef_[0] / x_scale
    _set_taps(model.closure_filter, weights, float(classifier.intercept_[0]) - float(x_mean @ weights), model)
    chance = classifier.predict_proba(scaled)[:, 1]
    return {"touching_share": float(touching.mean()), "closure_chance_touching": float(chance[touching].mean()),
            "closure_chance_apart": float(chance[~touching].mean())}


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
    stats = fit(examples, model, float(config["ridge"]), config.get("closure"))
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

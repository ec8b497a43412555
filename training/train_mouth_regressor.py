"""Fit the mouth-opening regressor (``pipeline.models.MouthOpeningRegressor``) on real talking faces.

    python training/train_mouth_regressor.py --config training/configs/mouth_regressor.yaml

Ridge regression in closed form (no sampling, no seed: the same data give the same weights): the mouth opening above
each clip's face at rest (``training.metrics.mouth_aperture`` of the canonical track minus the neutral face's) from
the log-mel bands of the surrounding frames. The fitted filter is scaled so that its predictions spread as much as the
real openings do (the ridge fit alone is the conditional mean, flatter than any real mouth), and written into the
pipeline in ``final_dir`` with ``save_pretrained``, beside the other components already there. Mirrored copies
(``*-mirror``) are skipped: they carry the same audio and the same opening.
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

from pipeline.audio import LogMelFeatures  # noqa: E402
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
    """``(T, (2c + 1) * n_mels)`` rows: the sub-frame-averaged mel bands of frames ``t - c .. t + c`` (edge frames
    repeated), in the order of the model's filter taps."""
    c, n_mels = model.config.context, model.config.n_mels
    bands = features.reshape(len(features), model.config.sub_frames, n_mels).mean(axis=1)
    padded = np.pad(bands, ((c, c), (0, 0)), mode="edge")
    return np.concatenate([padded[i:i + len(bands)] for i in range(2 * c + 1)], axis=1)


def fit(examples: list[Example], model: MouthOpeningRegressor, ridge: float) -> dict[str, float]:
    """Set ``model``'s filter to the ridge fit over ``examples``; returns the fit's statistics."""
    featurize = LogMelFeatures()
    rows, targets = [], []
    for ex in examples:
        features = featurize(ex.audio, ex.fps)[: len(ex.canonical)]
        rows.append(band_context(features, model))
        targets.append((mouth_aperture(ex.canonical) - mouth_aperture(ex.neutral)[0])[: len(features)])
    x, y = np.concatenate(rows), np.concatenate(targets)
    x_mean, y_mean = x.mean(axis=0), float(y.mean())
    centred = x - x_mean
    weights = np.linalg.solve(centred.T @ centred + ridge * np.eye(x.shape[1]), centred.T @ (y - y_mean))
    fitted = centred @ weights
    gain = float(y.std() / max(fitted.std(), 1e-12))  # spread like the real openings
    weights *= gain
    c, n_mels = model.config.context, model.config.n_mels
    with torch.no_grad():  # filter taps (1, n_mels, 2c + 1): tap i sees frame t + i - c
        model.filter.weight.copy_(torch.from_numpy(weights.reshape(2 * c + 1, n_mels).T[None].copy()))
        model.filter.bias.fill_(y_mean - float(x_mean @ weights))
    return {"frames": int(len(y)), "pearson_r_in_sample": float(np.corrcoef(fitted, y)[0, 1]), "gain": gain,
            "mean_opening": y_mean, "std_opening": float(y.std())}


def main(args: argparse.Namespace) -> MouthOpeningRegressor:
    config = yaml.safe_load(args.config.read_text())
    final = args.final_dir if args.final_dir is not None else REPO / config["final_dir"]
    by_folder = {folder: [ex for ex in map(Example.load, find_examples(REPO / folder))
                          if not ex.name.endswith("-mirror")] for folder in config["data"]}
    examples = [ex for found in by_folder.values() for ex in found]
    if not examples:
        raise SystemExit(f"no training examples in {config['data']}: run the training/data/prepare_*.py scripts")
    model = MouthOpeningRegressor(**config.get("model", {}))
    stats = fit(examples, model, float(config["ridge"]))
    save_into_pipeline(Path(final), mouth_regressor=model.eval())
    info = {
        "command": "python training/train_mouth_regressor.py " + " ".join(map(shlex.quote, sys.argv[1:])),
        "seed": None,  # closed form: no randomness
        "data_examples": {folder: len(found) for folder, found in by_folder.items()},
        "fit": stats,
        "real_clips": licence_summary([ex.name for ex in examples]),
        "config": config,
    }
    (Path(final) / "mouth_regressor" / "training_info.json").write_text(json.dumps(info, indent=2) + "\n")
    return model


if __name__ == "__main__":
    main(parse_args())

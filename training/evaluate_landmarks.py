"""Measure audio-driven lip motion against real talking faces, in canonical landmark space.

    python training/evaluate_landmarks.py --data data/clips/holdout --fit-data data/clips/train \\
        [--model checkpoints/landmark_denoiser --steps 10 --guidance 2 --seed 0] [--out results/landmarks]

For every example (``training.data.format``) the example's own neutral face is driven with the example's own
audio, and the resulting track is compared with the real canonical track (``training.metrics``) for

* ``static``: the neutral face on every frame (what no lip motion scores; its correlation is defined as 0);
* ``energy``: an audio-energy heuristic, see :func:`energy_envelope` and :func:`energy_track`; its one
  gain ``k`` is fitted on ``--fit-data`` (training examples) so that the mean opening matches the real one,
  or is :data:`DEFAULT_ENERGY_GAIN` without fit data;
* ``model``: the landmark diffusion model in ``--model`` (``LandmarkDenoiser`` sampled with DDIM through
  ``pipeline.motion.generate_motion``), when given;
* ``regressor`` / ``model+regressor``: with ``--mouth-regressor``, the ``MouthOpeningRegressor``'s mouth opening
  alone, and the model's mouth opening moved ``--mouth-blend`` of the way to it (as the pipeline does).

Columns: ``r@0`` Pearson correlation of the mouth apertures at lag 0, ``best r`` / ``lag`` the best one within
``--max-lag`` frames (positive lag = the prediction is late), ``LMD-motion`` and ``LMD`` the mean mouth-point
distance (inter-ocular units) of the motions and of the plain tracks, ``jitter`` the mean second difference
of the lower face, ``silent +open`` how much wider the mouth is than the real one in silence, ``lip dyn`` /
``brow dyn`` how lively mouth and brows are next to the real ones and ``sync gap`` THEval's openness-against-loudness
gap (``training.metrics``); each as the median and the mean over clips. Because every method here starts
from the example's own neutral face, LMD-motion and LMD coincide; they differ for predictions driven from another
face. The table goes to ``<out>/landmarks.md`` (and stdout), the numbers to ``<out>/landmarks.json``. Mirrored
training copies (``*-mirror``) are skipped unless ``--include-mirror``.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import warnings
from collections.abc import Callable
from pathlib import Path

import numpy as np
from scipy.ndimage import binary_opening, gaussian_filter1d

if __package__ in (None, ""):  # run as a script: make the repository importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pipeline.audio import SAMPLE_RATE, make_audio_features  # noqa: E402
from pipeline.defaults import DEFAULT_MOUTH_BLEND, DEFAULT_STEPS  # noqa: E402
from pipeline.landmarks import blend_mouth_opening, opening_weights  # noqa: E402
from training.data.format import Example, find_examples  # noqa: E402
from training.metrics import landmark_jitter, lip_closures, mouth_aperture, score, sync_gap  # noqa: E402

#: Energy-to-opening gain (IOD at full normalised energy) used when no training data is given to fit it;
#: about what the 10 training clips of ``../shared/data/clips`` give (0.097).
DEFAULT_ENERGY_GAIN = 0.10
#: Loudness range (dB below the utterance's 95th-percentile frame) mapped onto energy 1 .. 0.
ENERGY_RANGE_DB = 30.0
#: Temporal smoothing of the energy envelope (frames sigma): the jaw cannot follow every syllable edge.
ENERGY_SMOOTHING = 1.0
#: Silence, for the silent-mouth column: frames at least 27 dB under the utterance's loud frames (energy envelope
#: below 0.1)...
SILENT_ENERGY = 0.1
#: ...in runs of at least this many frames (200 ms at 25 fps; shorter gaps are stops within words).
MIN_SILENT_FRAMES = 5
#: Voiced frames, for the lip-sync gap: loud ones (energy envelope at least 0.5: within 15 dB of the loud frames).
VOICED_ENERGY = 0.5

COLUMNS = (("r0", "r@0", "{:.3f}"), ("best_r", "best r", "{:.3f}"), ("best_lag", "lag", "{:+.1f}"),
           ("lmd_motion", "LMD-motion", "{:.4f}"), ("lmd", "LMD", "{:.4f}"), ("jitter", "jitter", "{:.4f}"),
           ("silent_opening", "silent +open", "{:+.4f}"), ("lip_dynamics", "lip dyn", "{:.2f}"),
           ("brow_dynamics", "brow dyn", "{:.2f}"), ("sync_gap", "sync gap", "{:.3f}"),
           ("lip_closures", "closures", "{:.2f}"))

Predictor = Callable[[Example], np.ndarray]


# ---------------------------------------------------------------------------------------------------
# The audio-energy baseline


def energy_envelope(audio: np.ndarray, fps: float, num_frames: int) -> np.ndarray:
    """Normalised loudness per video frame, ``(num_frames,)`` in [0, 1].

    The RMS of the samples within each frame's time span, in dB, mapped linearly from
    ``ref - ENERGY_RANGE_DB`` (0) to ``ref`` (1), where ``ref`` is the utterance's 95th-percentile frame
    level (so the normalisation is per utterance and a few loud peaks do not set it), clipped, then
    smoothed by a Gaussian of :data:`ENERGY_SMOOTHING` frames.
    """
    audio = np.asarray(audio, dtype=np.float64)
    edges = np.round(np.arange(num_frames + 1) * SAMPLE_RATE / fps).astype(int)
    rms = np.array([np.sqrt(np.mean(audio[a:b] ** 2)) if b > a and a < len(audio) else 0.0
                    for a, b in zip(edges[:-1], np.minimum(edges[1:], len(audio)), strict=False)])
    db = 20 * np.log10(rms + 1e-8)
    ref = np.percentile(db, 95)
    energy = np.clip((db - (ref - ENERGY_RANGE_DB)) / ENERGY_RANGE_DB, 0.0, 1.0)
    if ENERGY_SMOOTHING > 0 and num_frames > 1:
        energy = gaussian_filter1d(energy, ENERGY_SMOOTHING, mode="nearest")
    return energy


def silent_frames(audio: np.ndarray, fps: float, num_frames: int) -> np.ndarray:
    """``(num_frames,)`` mask of the frames in silence: :data:`SILENT_ENERGY`, runs of :data:`MIN_SILENT_FRAMES`."""
    return _silent(energy_envelope(audio, fps, num_frames))


def _silent(loudness: np.ndarray) -> np.ndarray:
    """:func:`silent_frames` from the clip's :func:`energy_envelope`."""
    if len(loudness) < MIN_SILENT_FRAMES:
        return np.zeros(len(loudness), dtype=bool)
    return binary_opening(loudness < SILENT_ENERGY, structure=np.ones(MIN_SILENT_FRAMES, dtype=bool))


def energy_track(neutral: np.ndarray, energy: np.ndarray, gain: float) -> np.ndarray:
    """The neutral face with the lower lip and jaw moved down (canonical +y) by ``gain * energy``.

    The inner lower lip follows fully, so the mouth aperture is ``aperture(neutral) + gain * energy``.
    """
    neutral = np.asarray(neutral, dtype=np.float64)
    track = np.repeat(neutral[None], len(energy), axis=0)
    track[:, :, 1] += gain * np.asarray(energy)[:, None] * opening_weights(neutral)[None]
    return track


def fit_energy_gain(examples: list[Example]) -> tuple[float, int]:
    """Gain ``k`` with which the energy baseline's mean opening equals the real one over ``examples``.

    ``k = mean(aperture(real) - aperture(neutral)) / mean(energy)`` pooled over all frames; returns ``(k,
    number of frames)``.
    """
    opening, energy = [], []
    for ex in examples:
        opening.append(mouth_aperture(ex.canonical) - mouth_aperture(ex.neutral)[0])
        energy.append(energy_envelope(ex.audio, ex.fps, len(ex.canonical)))
    opening_all, energy_all = np.concatenate(opening), np.concatenate(energy)
    if energy_all.mean() <= 0:
        return DEFAULT_ENERGY_GAIN, len(energy_all)
    return float(opening_all.mean() / energy_all.mean()), len(energy_all)


def static_predictor() -> Predictor:
    return lambda ex: np.repeat(ex.neutral[None].astype(np.float64), len(ex.canonical), axis=0)


def energy_predictor(gain: float) -> Predictor:
    return lambda ex: energy_track(ex.neutral, energy_envelope(ex.audio, ex.fps, len(ex.canonical)), gain)


# ---------------------------------------------------------------------------------------------------
# The model


def load_scheduler(folder: Path, prediction_type: str = "sample"):
    """A DDIM scheduler from ``folder/scheduler/`` or ``folder``'s ``scheduler_config.json`` (any diffusers
    scheduler's config, e.g. the DDPM one used in training), else the training default of ``pipeline.motion``."""
    from diffusers import DDIMScheduler

    for candidate in (folder / "scheduler", folder):
        if (candidate / "scheduler_config.json").is_file():
            return DDIMScheduler.from_config(DDIMScheduler.load_config(candidate))
    return DDIMScheduler(num_train_timesteps=1000, beta_schedule="squaredcos_cap_v2",
                         prediction_type=prediction_type, clip_sample=False)


def _feature_spec(model, folder: Path, override: str | None) -> str | None:
    """Which audio features the model was trained on: ``--audio-features``, else an ``audio_features`` entry
    of the model config or of a ``training_config.json`` / ``train_config.json`` beside it, else log-mel."""
    if override:
        return override
    spec = dict(model.config).get("audio_features")
    for name in ("training_config.json", "train_config.json"):
        if spec is None and (folder / name).is_file():
            spec = json.loads((folder / name).read_text()).get("audio_features")
    return spec


def mouth_opening_predictor(folder: Path) -> Callable[[Example], np.ndarray]:
    """The saved ``MouthOpeningRegressor`` in ``folder``: a clip's mouth opening above rest ``(T,)``."""
    from pipeline.models.mouth_regressor import MouthOpeningRegressor

    model = MouthOpeningRegressor.from_pretrained(folder, use_safetensors=True).eval()
    return lambda ex: model.predict(ex.audio, ex.fps)[: len(ex.canonical)]


def regressor_predictor(folder: Path) -> Predictor:
    """The face at rest with only its mouth opening, as the ``MouthOpeningRegressor`` in ``folder`` gives it."""
    opening = mouth_opening_predictor(folder)
    return lambda ex: ex.neutral[None] + blend_mouth_opening(np.zeros_like(ex.canonical), ex.neutral,
                                                              opening(ex), 1.0)


def model_predictor(folder: Path, steps: int = 10, guidance: float = 2.0, seed: int = 0,
                    audio_features: str | None = None, device: str = "cpu",
                    mouth_regressor: Path | None = None, mouth_blend: float = 0.0) -> Predictor:
    """Predict with a saved ``LandmarkDenoiser``: neutral + sampled offsets (one seeded generator per clip), their
    mouth opening moved ``mouth_blend`` of the way to a ``MouthOpeningRegressor``'s, as the pipeline does."""
    import torch

    from pipeline.models.landmark_denoiser import LandmarkDenoiser
    from pipeline.motion import generate_motion

    folder = Path(folder)
    model = LandmarkDenoiser.from_pretrained(folder, use_safetensors=True).to(device).eval()
    scheduler = load_scheduler(folder, model.config.prediction_type)
    spec = _feature_spec(model, folder, audio_features)
    features = make_audio_features(spec) if spec in (None, "logmel") else make_audio_features(spec, device=device)
    if features.dim != model.config.audio_dim:
        raise SystemExit(f"The model expects {model.config.audio_dim}-dim audio features; {spec or 'logmel'} gives "
                         f"{features.dim}. Name the right ones with --audio-features.")

    overlap = min(10, model.config.window // 2)  # generate_motion's default, for windows of 20 frames or more
    opening = mouth_opening_predictor(mouth_regressor) if mouth_regressor is not None and mouth_blend else None

    def predict(ex: Example) -> np.ndarray:
        feats = features(ex.audio, ex.fps)[: len(ex.canonical)]
        generator = torch.Generator(device).manual_seed(seed)
        offsets = generate_motion(model, scheduler, feats, ex.neutral, num_inference_steps=steps,
                                  guidance_scale=guidance, generator=generator, overlap=overlap)
        if opening is not None:
            offsets = blend_mouth_opening(offsets, ex.neutral, opening(ex), mouth_blend)
        return ex.neutral[None].astype(np.float64) + offsets

    return predict


# ---------------------------------------------------------------------------------------------------
# Evaluation and reporting


def evaluate(examples: list[Example], predictors: dict[str, Predictor], max_lag: int = 5) -> dict:
    """``{method: {"clips": {name: metrics}, "mean": metrics}}``, plus ``"real"`` (the real tracks' own jitter
    and aperture statistics, for reference)."""
    loudness = {ex.name: energy_envelope(ex.audio, ex.fps, len(ex.canonical)) for ex in examples}
    results: dict[str, dict] = {}
    for method, predict in predictors.items():
        clips = {}
        for ex in examples:
            pred = np.asarray(predict(ex), dtype=np.float64)
            assert pred.shape == ex.canonical.shape, f"{method} gave {pred.shape} for {ex.canonical.shape}"
            loud = loudness[ex.name]
            metrics = score(pred, ex.canonical, ex.neutral, ex.neutral, max_lag, _silent(loud), loud,
                            loud >= VOICED_ENERGY)
            clips[ex.name] = {"frames": len(ex.canonical), **metrics}
        results[method] = {"clips": clips, "mean": _summary(clips, np.nanmean),
                           "median": _summary(clips, np.nanmedian)}
    real = {ex.name: {"frames": len(ex.canonical), "r0": 1.0, "best_r": 1.0, "best_lag": 0, "lmd_motion": 0.0,
                      "lmd": 0.0, "jitter": landmark_jitter(ex.canonical), "silent_opening": 0.0,
                      "lip_dynamics": 1.0, "brow_dynamics": 1.0,
                      "lip_closures": lip_closures(ex.canonical, ex.canonical, ex.neutral, ex.neutral),
                      # the real track's own sync gap:
                      "sync_gap": sync_gap(ex.canonical, loudness[ex.name], loudness[ex.name] >= VOICED_ENERGY),
                      "aperture_mean": float(mouth_aperture(ex.canonical).mean()),
                      "aperture_std": float(mouth_aperture(ex.canonical).std())} for ex in examples}
    results["real"] = {"clips": real, "mean": _summary(real, np.nanmean), "median": _summary(real, np.nanmedian)}
    return results


def _summary(clips: dict[str, dict], over: Callable[[np.ndarray], float]) -> dict[str, float]:
    """Each metric taken ``over`` the clips (NaN, a clip without silence, left out)."""
    keys = next(iter(clips.values())).keys() if clips else ()
    with warnings.catch_warnings():  # a metric that is NaN on every clip stays NaN, quietly
        warnings.simplefilter("ignore", RuntimeWarning)
        return {k: float(over(np.array([c[k] for c in clips.values()], dtype=np.float64)))
                for k in keys if k != "frames"}


def _row(label: str, metrics: dict, frames: str = "") -> str:
    cells = [fmt.format(metrics[key]) for key, _, fmt in COLUMNS]
    return "| " + " | ".join([label, frames, *cells]) + " |"


def format_table(results: dict, title: str, notes: list[str]) -> str:
    header = "| {} | frames | " + " | ".join(name for _, name, _ in COLUMNS) + " |"
    rule = "|" + "---|" * (len(COLUMNS) + 2)
    lines = [f"# {title}", "", *notes]
    for summary in ("median", "mean"):
        lines += ["", f"## {summary.capitalize()} over clips", "", header.format("method"), rule]
        for method, res in results.items():
            label = "real (reference)" if method == "real" else method
            lines.append(_row(label, res[summary], str(sum(c["frames"] for c in res["clips"].values()))))
    for method, res in results.items():
        if method == "real":
            continue
        lines += ["", f"## {method}", "", header.format("clip"), rule]
        lines += [_row(name, m, str(m["frames"])) for name, m in res["clips"].items()]
        lines.append(_row("**median**", res["median"]))
        lines.append(_row("**mean**", res["mean"]))
    lines += ["", "r@0 / best r: Pearson r of mouth apertures (0 for a constant track); lag: frames, positive = "
              "prediction late; LMD-motion / LMD: mean mouth-point distance in inter-ocular units of the motions "
              "from each track's neutral / of the tracks (equal here: every method starts from the clip's own "
              "neutral face); jitter: mean |second difference| of the lower face, IOD per frame^2; silent +open: "
              "how much wider the mouth is than the real one in silence (runs of 200 ms or more 27 dB under the "
              "loud frames), IOD (nan: no silence in the clip); lip dyn / brow dyn: spread of the frame-to-frame "
              "changes of the mouth opening / brow height over the real video's (1 = as lively); sync gap: mean "
              "|openness - loudness| on voiced frames, both 0..1 (lower is closer; the real video has its own); "
              "closures: share of the real lips' brief closures (runs of up to 8 frames within 0.02 IOD of rest: "
              "m, b, p, stops) on which the predicted lips touch too (nan: none in the clip)."]
    return "\n".join(lines) + "\n"


def plot(results: dict, path: Path, title: str) -> None:
    """Per clip and method, side by side: r@0 of the mouth opening and the mouth LMD, with each method's median as a
    line across (the real video's r is 1 and LMD 0 by definition, so it is left out)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    methods = [m for m in results if m != "real"]
    clips = list(results[methods[0]]["clips"])
    x = np.arange(len(clips))
    width = 0.8 / len(methods)
    fig, axes = plt.subplots(2, 1, figsize=(max(8.0, 1.3 * len(clips)), 7), sharex=True)
    for ax, key, label in zip(axes, ("r0", "lmd"), ("mouth opening r@0", "mouth LMD (IOD)"), strict=True):
        for i, method in enumerate(methods):
            values = [results[method]["clips"][c][key] for c in clips]
            bars = ax.bar(x + (i - (len(methods) - 1) / 2) * width, values, width, label=method)
            ax.axhline(float(np.nanmedian(values)), color=bars.patches[0].get_facecolor(), lw=1, ls="--")
        ax.set_ylabel(label)
        ax.grid(axis="y", alpha=0.3)
    axes[0].legend(ncol=len(methods), fontsize=8, loc="upper left")
    axes[0].set_title(f"{title} (dashed: median over clips)")
    axes[1].set_xticks(x, clips, rotation=30, ha="right", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def load_examples(folder: Path, include_mirror: bool = False) -> list[Example]:
    paths = find_examples(folder)
    examples = [Example.load(p) for p in paths]
    return [ex for ex in examples if include_mirror or not ex.name.endswith("-mirror")]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, required=True, help="folder of examples to evaluate on")
    parser.add_argument("--fit-data", type=Path, help="training examples to fit the energy baseline's gain on")
    parser.add_argument("--energy-gain", type=float, help="use this gain instead of fitting it")
    parser.add_argument("--model", type=Path, help="a saved LandmarkDenoiser folder")
    parser.add_argument("--steps", type=int, default=DEFAULT_STEPS, help="DDIM steps (the pipeline's default)")
    parser.add_argument("--guidance", type=float, default=2.0, help="classifier-free guidance scale")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--audio-features",
                        help="'logmel' or a HuBERT/wav2vec2 model (default: from the model's config, else logmel)")
    parser.add_argument("--mouth-regressor", type=Path,
                        help="a saved MouthOpeningRegressor folder: scored alone ('regressor') and mixed into the "
                             "model's mouth opening (--mouth-blend), as the pipeline does")
    parser.add_argument("--mouth-blend", type=float, default=DEFAULT_MOUTH_BLEND,
                        help="share of the mouth opening taken from --mouth-regressor (the pipeline's default)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--max-lag", type=int, default=5, help="frames searched for the best correlation")
    parser.add_argument("--include-mirror", action="store_true", help="also score mirrored training copies")
    parser.add_argument("--out", type=Path, default=Path("results/landmarks"))
    args = parser.parse_args(argv)

    examples = load_examples(args.data, args.include_mirror)
    if not examples:
        raise SystemExit(f"No examples under {args.data}.")
    notes = [f"{len(examples)} clips from `{args.data}`, {sum(len(e.canonical) for e in examples)} frames; "
             f"correlation searched over +-{args.max_lag} frames."]
    if args.energy_gain is not None:
        gain, how = args.energy_gain, "given"
    elif args.fit_data is not None:
        fit = load_examples(args.fit_data)
        if not fit:
            raise SystemExit(f"No examples under {args.fit_data} to fit the energy gain on.")
        gain, n = fit_energy_gain(fit)
        how = f"fitted on {len(fit)} clips ({n} frames) of `{args.fit_data}`"
    else:
        gain, how = DEFAULT_ENERGY_GAIN, "default constant (no --fit-data)"
    notes.append(f"energy baseline gain k = {gain:.4f} IOD, {how}.")
    predictors: dict[str, Predictor] = {"static": static_predictor(), "energy": energy_predictor(gain)}
    if args.mouth_regressor is not None:
        predictors["regressor"] = regressor_predictor(args.mouth_regressor)
    if args.model is not None:
        predictors["model"] = model_predictor(args.model, args.steps, args.guidance, args.seed,
                                              args.audio_features, args.device)
        notes.append(f"model `{args.model}`: DDIM {args.steps} steps, guidance {args.guidance:g}, seed {args.seed}.")
        if args.mouth_regressor is not None and args.mouth_blend:
            predictors["model+regressor"] = model_predictor(
                args.model, args.steps, args.guidance, args.seed, args.audio_features, args.device,
                args.mouth_regressor, args.mouth_blend)
            notes.append(f"model+regressor: the model's mouth opening moved {args.mouth_blend:g} of the way to "
                         f"`{args.mouth_regressor}`'s (as the pipeline does).")

    start = time.perf_counter()
    results = evaluate(examples, predictors, args.max_lag)
    table = format_table(results, f"Landmark evaluation: {args.data}", notes)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "landmarks.md").write_text(table)
    payload = {"data": str(args.data), "energy_gain": gain, "energy_gain_source": how, "max_lag": args.max_lag,
               "model": None if args.model is None else {"path": str(args.model), "steps": args.steps,
                                                         "guidance": args.guidance, "seed": args.seed},
               "methods": results}
    (args.out / "landmarks.json").write_text(json.dumps(payload, indent=1))
    plot(results, args.out / "landmarks.png", f"{args.data}, seed {args.seed}")
    print(table)
    print(f"Wrote {args.out / 'landmarks.md'}, landmarks.json and landmarks.png "
          f"({time.perf_counter() - start:.1f} s).")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""Do the lips close on m, b and p? Bilabial closure on real clips whose words are known (GRID's fixed grammar).

    python bench/bilabial.py --data data/clips --out results/bilabial

Each GRID clip's name spells its sentence (``grid_lbbc2a``: "lay blue by c two again"). PocketSphinx aligns that text
to the clip's audio (its bundled US-English model, as ``training/data/prepare_speech.py`` does), which gives the time of
every ``P``, ``B`` and ``M``. A bilabial is **closed** when the mouth opening (inner-lip gap above the face at rest, in
inter-ocular units, pose-free) falls to ``--touch`` or less on at least one of its frames. So that a mouth that never
opens cannot win, the table also gives the median opening on vowel frames. Methods, as in
``training/evaluate_landmarks.py``: the real video, the mouth regressor alone, the landmark model alone and the
pipeline's mix (``--mouth-blend``, seeds 0-3 for the sampled ones). Needs the prepared clips (``data/clips/train``,
``data/clips/holdout``) and ``pocketsphinx`` (requirements-dev.txt). Writes ``bilabial.md`` and ``bilabial.json``.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from pipeline.defaults import DEFAULT_MOUTH_BLEND, DEFAULT_STEPS  # noqa: E402
from pipeline.landmarks import inner_lip_gap  # noqa: E402
from training.data.clip_sources import HOLDOUT  # noqa: E402
from training.data.format import Example, find_examples  # noqa: E402
from training.metrics import TOUCH  # noqa: E402

_GRID = (  # the six slots of a GRID sentence, by the letter its code uses
    {"b": "bin", "l": "lay", "p": "place", "s": "set"},
    {"b": "blue", "g": "green", "r": "red", "w": "white"},
    {"a": "at", "b": "by", "i": "in", "w": "with"},
    None,  # a letter, said as itself
    {"z": "zero", **{str(d): w for d, w in enumerate("zero one two three four five six seven eight nine".split())}},
    {"a": "again", "n": "now", "p": "please", "s": "soon"},
)
BILABIALS = ("P", "B", "M")
VOWELS = ("AA", "AE", "AH", "AO", "AW", "AY", "EH", "ER", "EY", "IH", "IY", "OW", "OY", "UH", "UW")


def grid_sentence(code: str) -> str:
    """The words of a GRID sentence code (``"lbbc2a"`` -> ``"lay blue by c two again"``)."""
    if len(code) != 6:
        raise ValueError(f"a GRID code has 6 letters, not {code!r}")
    return " ".join(code[3] if slot is None else slot[code[i]] for i, slot in enumerate(_GRID))


def phone_frames(phones: list[tuple[float, float, str]], fps: float, frames: int) -> tuple[list[np.ndarray],
                                                                                         np.ndarray]:
    """The frames (by their centres) of each bilabial, and a mask of the vowel frames."""
    centres = (np.arange(frames) + 0.5) / fps
    bilabials, vowels = [], np.zeros(frames, dtype=bool)
    for start, end, phone in phones:
        inside = (centres >= start) & (centres < end)
        if phone in BILABIALS:
            # a bilabial shorter than a frame still owns the frame nearest its middle
            bilabials.append(np.flatnonzero(inside) if inside.any()
                             else np.array([min(frames - 1, int((start + end) / 2 * fps))]))
        elif phone.rstrip("012") in VOWELS:
            vowels |= inside
    return bilabials, vowels


def score(opening: np.ndarray, bilabials: list[np.ndarray], vowels: np.ndarray, touch: float) -> dict[str, float]:
    """Closure rate over the bilabials and the median vowel opening of one mouth-opening curve."""
    closed = [bool(opening[idx].min() <= touch) for idx in bilabials]
    return {"bilabials": len(closed), "closed": int(sum(closed)),
            "vowel_opening": float(np.median(opening[vowels])) if vowels.any() else float("nan")}


def main(argv: list[str] | None = None) -> int:
    from training.data.prepare_speech import PhoneTimer
    from training.evaluate_landmarks import model_predictor, regressor_predictor

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=REPO / "data" / "clips", help="prepared clips (train/, holdout/)")
    parser.add_argument("--checkpoint", type=Path, default=REPO / "checkpoints")
    parser.add_argument("--mouth-blend", type=float, default=DEFAULT_MOUTH_BLEND)
    parser.add_argument("--seeds", default="0,1,2,3")
    parser.add_argument("--touch", type=float, default=TOUCH, help="opening (IOD) at or under which the lips touch")
    parser.add_argument("--out", type=Path, default=REPO / "results" / "bilabial")
    args = parser.parse_args(argv)

    examples = [ex for ex in map(Example.load, find_examples(args.data))
                if ex.name.startswith("grid_") and not ex.name.endswith("-mirror")]
    if not examples:
        raise SystemExit(f"no prepared GRID clips under {args.data}: run training/data/prepare_clips.py")
    seeds = [int(s) for s in args.seeds.split(",")]
    denoiser, regressor = args.checkpoint / "landmark_denoiser", args.checkpoint / "mouth_regressor"
    methods = {"regressor": [regressor_predictor(regressor)],
               "model": [model_predictor(denoiser, DEFAULT_STEPS, seed=s) for s in seeds],
               f"model+regressor ({args.mouth_blend:g})": [
                   model_predictor(denoiser, DEFAULT_STEPS, seed=s, mouth_regressor=regressor,
                                   mouth_blend=args.mouth_blend) for s in seeds]}
    timer = PhoneTimer()
    results: dict[str, dict[str, dict]] = {}
    for ex in sorted(examples, key=lambda e: e.name):
        phones = timer.align(ex.audio, grid_sentence(ex.name.split("_", 1)[1]))
        if phones is None:
            print(f"{ex.name}: no alignment, skipped", flush=True)
            continue
        frames = len(ex.canonical)
        bilabials, vowels = phone_frames(phones, ex.fps, frames)
        rest = inner_lip_gap(ex.neutral[None])[0]
        clip = {"real": [score(inner_lip_gap(ex.canonical) - rest, bilabials, vowels, args.touch)]}
        for name, predictors in methods.items():
            clip[name] = [score(inner_lip_gap(predict(ex)) - rest, bilabials, vowels, args.touch)
                          for predict in predictors]
        for name, runs in clip.items():
            results.setdefault(name, {})[ex.name] = {
                "held_out": ex.name in HOLDOUT, "bilabials": runs[0]["bilabials"],
                "closed": float(np.mean([r["closed"] for r in runs])),
                "vowel_opening": float(np.mean([r["vowel_opening"] for r in runs]))}
        print(ex.name, {name: (runs[ex.name]["closed"], runs[ex.name]["bilabials"]) for name, runs in results.items()},
              flush=True)
    lines = [f"# Bilabial closure on GRID clips (lips touch: opening ≤ {args.touch:g} IOD; sampled methods averaged "
             f"over seeds {args.seeds})", "",
             "| method | bilabials closed (all clips) | closed, held-out clips | median vowel opening (IOD) |",
             "|---|---|---|---|"]
    for name, clips in results.items():
        total = sum(c["bilabials"] for c in clips.values())
        held = [c for c in clips.values() if c["held_out"]]
        held_total = sum(c["bilabials"] for c in held)
        lines.append(f"| {name} | {sum(c['closed'] for c in clips.values()):.2f} / {total} "
                     f"({sum(c['closed'] for c in clips.values()) / max(total, 1):.0%}) | "
                     f"{sum(c['closed'] for c in held):.2f} / {held_total} | "
                     f"{np.median([c['vowel_opening'] for c in clips.values()]):.3f} |")
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "bilabial.md").write_text("\n".join(lines) + "\n")
    (args.out / "bilabial.json").write_text(json.dumps(results, indent=2) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())

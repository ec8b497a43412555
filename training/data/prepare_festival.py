"""Synthetic training corpus from Festival voices: other synthesisers' voices and timing than espeak-ng's.

    python training/data/prepare_festival.py --out data/festival --num 600 --seed 0 --workers 2

Example ``i`` (seeded by ``(seed, i)`` only) is an English sentence from the espeak corpus's generator
(:func:`training.data.prepare_espeak.make_sentence`), spoken by a random installed Festival voice
(:data:`training.data.festival.VOICES`) at a random duration stretch, with Festival's segment times as phonemes;
then the same augmentation and landmark synthesis as the espeak corpus
(:func:`training.data.prepare_espeak.example_from_speech`), ``source="festival"``.

Needs Festival and its voices (Debian / Ubuntu: ``apt-get install festival festvox-kallpc16k festvox-kdlpc16k
festvox-us-slt-hts``).
"""

from __future__ import annotations

import argparse
import sys
import time
from multiprocessing import Pool
from pathlib import Path
from typing import Optional, Sequence

import numpy as np

if __package__ in (None, ""):  # run as a script: make the repository importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from pipeline.audio import SAMPLE_RATE  # noqa: E402
from training.data import festival  # noqa: E402
from training.data.format import Example  # noqa: E402
from training.data.prepare_espeak import (  # noqa: E402
    MAX_SPEECH_S,
    MIN_SPEECH_S,
    example_from_speech,
    make_sentence,
    speech_seconds,
)

SOURCE = "festival"
STRETCH_RANGE = (0.8, 1.3)


def make_example(index: int, seed: int, voices: Sequence[str], fps: float = 25.0) -> Example:
    """Example ``index`` of the corpus for ``seed`` and these voices (a pure function of the three)."""
    rng = np.random.default_rng([seed, index])
    voice = str(voices[int(rng.integers(len(voices)))])
    length = 1.0
    for _ in range(12):
        text = make_sentence(rng, "en", length)
        stretch = float(rng.uniform(*STRETCH_RANGE))
        utt = festival.synthesize(text, voice, stretch)
        speech_s = speech_seconds(utt.phonemes)
        if MIN_SPEECH_S <= speech_s <= MAX_SPEECH_S:
            break
        length = max(0.0, length - 0.25) if speech_s > MAX_SPEECH_S else min(1.5, length + 0.25)
    return example_from_speech(utt.samples, utt.sample_rate, utt.phonemes, rng, fps, SOURCE, f"{index:05d}")


def _work(job: tuple[int, int, tuple[str, ...], float, str]) -> float:
    index, seed, voices, fps, out = job
    example = make_example(index, seed, voices, fps)
    example.save(Path(out))
    return len(example.audio) / SAMPLE_RATE


def run(out: Path, num: int, seed: int = 0, workers: int = 1, fps: float = 25.0, start: int = 0) -> int:
    """Write examples ``start .. start+num-1``; returns how many."""
    voices = tuple(festival.installed_voices())
    if not voices:
        raise SystemExit("No Festival voice found (apt-get install festival festvox-kallpc16k festvox-kdlpc16k "
                         "festvox-us-slt-hts).")
    out.mkdir(parents=True, exist_ok=True)
    jobs = [(i, seed, voices, fps, str(out)) for i in range(start, start + num)]
    t0, seconds = time.time(), 0.0
    with Pool(max(1, workers)) as pool:
        for seconds_i in pool.imap_unordered(_work, jobs, chunksize=4):
            seconds += seconds_i
    print(f"done {num} examples ({', '.join(voices)}), {seconds / 60:.1f} min of speech in {time.time() - t0:.0f} s")
    return num


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, required=True, help="folder for the .npz examples")
    parser.add_argument("--num", type=int, default=600, help="number of examples")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--start", type=int, default=0, help="first example index (to extend a corpus)")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--fps", type=float, default=25.0)
    args = parser.parse_args(argv)
    run(args.out, args.num, args.seed, args.workers, args.fps, args.start)
    return 0


if __name__ == "__main__":
    sys.exit(main())

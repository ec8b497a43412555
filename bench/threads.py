"""Intra-op threads per stage: how fast each stage runs on 1..N threads, on an idle host and on a busy one.

    python bench/threads.py                       # examples/ photo and speech, 1 and 2 threads (2-core host)
    python bench/threads.py --threads 1,2,4 --busy 2

Stages: ``face`` (face detection and mesh on the photo, torch), ``landmarks`` (audio features and the landmark
diffusion model, torch; the mouth regressor inside it keeps its own policy), ``speech`` (the mouth regressor's
Whisper encoder and filter, torch), ``warp`` (the warp renderer, OpenCV), ``diffusion`` (the diffusion renderer,
torch; seconds per frame). "Busy" runs ``--busy`` background processes that each keep one core computing (another
job on the same machine), the situation of a shared CPU Space or a laptop doing other work. Each figure is the median of
``--repeats`` runs. The policy in ``pipeline/threads.py`` is the thread count with the lowest worst case (idle or
busy) per stage; writes ``threads.md`` and ``threads.json`` to ``--out``.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import platform
import statistics
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def _keep_busy() -> None:
    """One core's worth of unrelated work, until terminated."""
    import numpy as np

    a = np.random.default_rng(0).random((400, 400))
    while True:
        a = np.tanh(a @ a.T / 400.0)


def measure(repeats: int, thread_counts: list[int], diffusion_frames: int) -> dict[str, dict[int, float]]:
    import torch

    from pipeline.loading import load_pipeline
    from pipeline.threads import use_threads

    pipe = load_pipeline()
    pipe.set_progress_bar_config(disable=True)
    inputs = pipe.prepare(REPO / "examples" / "astronaut.png", REPO / "examples" / "speech.wav")
    track = pipe.generate_landmarks(inputs, generator=torch.Generator().manual_seed(0))
    stages = {
        "face": lambda: pipe.face_analyzer.detect(inputs.image),
        "landmarks": lambda: pipe.generate_landmarks(inputs, generator=torch.Generator().manual_seed(0)),
        "warp": lambda: pipe.render(inputs, track, output_type="np"),
    }
    if pipe.mouth_regressor is not None:
        stages["speech"] = lambda: pipe.mouth_regressor.predict(inputs.audio, inputs.fps)
    if "diffusion" in pipe.renderers:
        short = track.replace(track.frames[:diffusion_frames])
        clip = type(inputs)(inputs.image, inputs.face, inputs.audio[: diffusion_frames * 640], inputs.fps)
        stages["diffusion"] = lambda: pipe.render(clip, short, renderer="diffusion", output_type="np",
                                                  generator=torch.Generator().manual_seed(0))
    seconds: dict[str, dict[int, float]] = {}
    for name, run in stages.items():
        seconds[name] = {}
        for threads in thread_counts:
            with use_threads(threads):
                run()  # first call: lazy loading, allocations
                times = []
                for _ in range(repeats):
                    start = time.perf_counter()
                    run()
                    times.append(time.perf_counter() - start)
            per = diffusion_frames if name == "diffusion" else 1
            seconds[name][threads] = statistics.median(times) / per
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", default="1,2", help="thread counts to try, comma-separated")
    parser.add_argument("--busy", type=int, default=1, help="background processes keeping a core busy each")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--diffusion-frames", type=int, default=4)
    parser.add_argument("--out", type=Path, default=REPO / "results" / "threads")
    args = parser.parse_args()
    counts = [int(x) for x in args.threads.split(",")]

    results = {"idle": measure(args.repeats, counts, args.diffusion_frames)}
    load = [multiprocessing.Process(target=_keep_busy, daemon=True) for _ in range(args.busy)]
    for p in load:
        p.start()
    try:
        time.sleep(1.0)
        results["busy"] = measure(args.repeats, counts, args.diffusion_frames)
    finally:
        for p in load:
            p.terminate()
    policy = {stage: min(counts, key=lambda n: (max(results[c][stage][n] for c in results), n))
              for stage in results["idle"]}

    rows = ["| stage | " + " | ".join(f"{c}, {n} thread{'s' * (n > 1)}" for c in results for n in counts)
            + " | fastest worst case |", "|---" * (1 + len(results) * len(counts) + 1) + "|"]
    for stage in results["idle"]:
        unit = " s/frame" if stage == "diffusion" else " s"
        cells = [f"{results[c][stage][n]:.3f}{unit}" for c in results for n in counts]
        rows.append(f"| {stage} | " + " | ".join(cells) + f" | {policy[stage]} |")
    host = f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, busy = {args.busy} busy process(es)"
    table = "\n".join(rows)
    print(host)
    print(table)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "threads.md").write_text(f"{host}\n\n{table}\n")
    (args.out / "threads.json").write_text(json.dumps({"host": host, "seconds": results, "policy": policy},
                                                      indent=2) + "\n")


if __name__ == "__main__":
    main()

"""End-to-end speed and memory of the pipeline, per stage, against audio length and output size.

    python bench/speed.py                           # 10 s, 60 s and 600 s of speech at 256² and 512²
    python bench/speed.py --lengths 10 --sizes 256  # one quick row

Each (length, size) runs in a fresh process, so peak memory (max RSS) and cold start (imports + loading the
pipeline) are measured cleanly. The speech is ``examples/speech.wav`` repeated to the length. Writes
``speed.md``, ``speed.json`` and ``speed.png`` (time and memory against audio length) to ``--out``.
"""

from __future__ import annotations

import argparse
import json
import platform
import resource
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def run_one(seconds: float, size: int, checkpoint: str | None, device: str | None) -> dict:
    """Time one full run in this process; returns per-stage seconds and peak RSS."""
    start = time.perf_counter()
    import numpy as np
    import torch

    from pipeline.audio import load_audio
    from pipeline.loading import load_pipeline

    imported = time.perf_counter()
    pipe = load_pipeline(checkpoint, device=device)
    pipe.set_progress_bar_config(disable=True)
    loaded = time.perf_counter()
    speech = load_audio(REPO / "examples" / "speech.wav")
    audio = np.resize(speech, int(seconds * 16000))
    marks = {"import_s": imported - start, "load_s": loaded - imported}
    t = time.perf_counter()
    inputs = pipe.prepare(REPO / "examples" / "astronaut.png", audio)
    marks["prepare_s"] = time.perf_counter() - t
    t = time.perf_counter()
    track = pipe.generate_landmarks(inputs, generator=torch.Generator().manual_seed(0))
    if pipe.device.type == "cuda":
        torch.cuda.synchronize()
    marks["landmarks_s"] = time.perf_counter() - t
    out = REPO / "outputs" / f"bench_{int(seconds)}s_{size}.mp4"
    out.parent.mkdir(exist_ok=True)
    t = time.perf_counter()
    pipe.render(inputs, track, size=size, output_type="mp4", output_path=out)
    marks["render_s"] = time.perf_counter() - t
    marks["end_to_end_s"] = marks["prepare_s"] + marks["landmarks_s"] + marks["render_s"]
    marks.update(
        audio_s=seconds, size=size, frames=track.num_frames, device=str(pipe.device),
        peak_rss_mb=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        x_real_time=marks["end_to_end_s"] / seconds, fps=track.num_frames / marks["end_to_end_s"],
    )
    out.unlink()
    return marks


def table(rows: list[dict]) -> str:
    lines = [
        "| audio | size | frames | prepare | landmarks | render | end to end | × real time | frames/s | peak RSS | cold start |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['audio_s']:.0f} s | {r['size']}² | {r['frames']} | {r['prepare_s']:.2f} s | {r['landmarks_s']:.2f} s "
            f"| {r['render_s']:.2f} s | {r['end_to_end_s']:.2f} s | {r['x_real_time']:.3f} | {r['fps']:.0f} "
            f"| {r['peak_rss_mb']:.0f} MB | {r['import_s'] + r['load_s']:.2f} s |"
        )
    return "\n".join(lines)


def plot(rows: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax_t, ax_m) = plt.subplots(1, 2, figsize=(10, 4))
    for size in sorted({r["size"] for r in rows}):
        sel = sorted((r for r in rows if r["size"] == size), key=lambda r: r["audio_s"])
        xs = [r["audio_s"] for r in sel]
        ax_t.plot(xs, [r["end_to_end_s"] for r in sel], "o-", label=f"{size}²")
        ax_m.plot(xs, [r["peak_rss_mb"] for r in sel], "o-", label=f"{size}²")
    longest = max(r["audio_s"] for r in rows)
    ax_t.plot([0, longest], [0, longest], "k:", label="real time")
    ax_t.set(xlabel="audio (s)", ylabel="end-to-end time (s)", title="time")
    ax_m.set(xlabel="audio (s)", ylabel="peak RSS (MB)", title="memory")
    for ax in (ax_t, ax_m):
        ax.grid(alpha=0.3)
        ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lengths", default="10,60,600", help="seconds of audio, comma-separated")
    parser.add_argument("--sizes", default="256,512")
    parser.add_argument("--checkpoint", help="pipeline folder or Hub id (default: checkpoints/)")
    parser.add_argument("--device", help="cpu or cuda (default: cuda when available)")
    parser.add_argument("--out", type=Path, default=REPO / "results" / "speed")
    parser.add_argument("--one", nargs=2, type=float, metavar=("SECONDS", "SIZE"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        print(json.dumps(run_one(args.one[0], int(args.one[1]), args.checkpoint, args.device)))
        return
    rows = []
    for seconds in [float(s) for s in args.lengths.split(",")]:
        for size in [int(s) for s in args.sizes.split(",")]:
            cmd = [sys.executable, __file__, "--one", str(seconds), str(size)]
            cmd += ["--checkpoint", args.checkpoint] if args.checkpoint else []
            cmd += ["--device", args.device] if args.device else []
            result = subprocess.run(cmd, capture_output=True, text=True, check=True)
            rows.append(json.loads(result.stdout.strip().splitlines()[-1]))
            print(table(rows[-1:]).splitlines()[-1], flush=True)
    args.out.mkdir(parents=True, exist_ok=True)
    machine = f"{platform.processor() or platform.machine()}, {__import__('os').cpu_count()} cores, device {rows[0]['device']}"
    text = f"Machine: {machine}\n\n{table(rows)}\n"
    (args.out / "speed.md").write_text(text)
    (args.out / "speed.json").write_text(json.dumps(rows, indent=2))
    plot(rows, args.out / "speed.png")
    print(text)


if __name__ == "__main__":
    main()

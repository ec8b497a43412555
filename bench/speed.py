"""End-to-end speed and memory of the pipeline, per stage, in process and from the command line as a user runs it.

    python bench/speed.py                           # 10 s, 60 s and 600 s of speech at 256² and 512²
    python bench/speed.py --lengths 10 --sizes 256  # one quick row
    python bench/speed.py --lengths 8 --sizes 256 --image photo.jpg --audio speech.wav --cli-runs 3

In process: each (length, size) runs in a fresh process, so peak memory (max RSS) and cold start (imports + loading
the pipeline) are measured cleanly; the stages are timed on the first call (what a one-off script pays) and again
warm (what the app pays per request). The photo is ``--image`` and the speech ``--audio`` repeated or cut to each
length (default: the examples). From the command line: ``python -m pipeline generate`` on ``--image`` and
``--audio`` as they are, wall clock of the whole command, with the start-up and per-stage seconds it prints.
Writes ``speed.md``, ``speed.json`` and ``speed.png`` (time and memory against audio length) to ``--out``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import resource
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from pipeline.threads import POLICY, threads_for  # noqa: E402


def run_one(seconds: float, size: int, checkpoint: str | None, device: str | None, image: Path,
            speech: Path) -> dict:
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
    audio = np.resize(load_audio(speech), int(seconds * 16000))
    marks = {"import_s": imported - start, "load_s": loaded - imported}
    t = time.perf_counter()
    inputs = pipe.prepare(image, audio)
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
    marks["first_call_s"] = marks["prepare_s"] + marks["landmarks_s"] + marks["render_s"]
    seeded = torch.Generator().manual_seed
    for stage, run in (("prepare", lambda: pipe.prepare(image, audio)),
                       ("landmarks", lambda: pipe.generate_landmarks(inputs, generator=seeded(0))),
                       ("render", lambda: pipe.render(inputs, track, size=size, output_type="mp4", output_path=out))):
        t = time.perf_counter()
        run()
        marks[f"{stage}_s"] = time.perf_counter() - t  # warm: the second call
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
        "| audio | size | frames | prepare | landmarks | render | end to end (warm) | × real time | frames/s "
        "| first call | peak RSS | cold start |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['audio_s']:.0f} s | {r['size']}² | {r['frames']} | {r['prepare_s']:.2f} s "
            f"| {r['landmarks_s']:.2f} s "
            f"| {r['render_s']:.2f} s | {r['end_to_end_s']:.2f} s | {r['x_real_time']:.3f} | {r['fps']:.0f} "
            f"| {r['first_call_s']:.2f} s | {r['peak_rss_mb']:.0f} MB | {r['import_s'] + r['load_s']:.2f} s |"
        )
    return "\n".join(lines)


#: The closing line of ``python -m pipeline generate``: "Wrote out.mp4 in 4.8 s: start-up 2.9 s, prepare 0.1 s, ..."
CLI_SUMMARY = re.compile(r"in [0-9.]+ s: (?P<stages>.*)\.$", re.M)


def cli_runs(image: Path, audio: Path, size: int, runs: int) -> list[dict]:
    """``python -m pipeline generate`` as a user runs it, ``runs`` times: wall seconds of the whole command and the
    start-up and stage seconds it reports."""
    import soundfile

    seconds = soundfile.info(str(audio)).duration
    results = []
    for _ in range(runs):
        out = REPO / "outputs" / "bench_cli.mp4"
        start = time.perf_counter()
        done = subprocess.run([sys.executable, "-m", "pipeline", "generate", "--image", str(image), "--audio",
                               str(audio), "--size", str(size), "-o", str(out)], cwd=REPO, capture_output=True,
                              text=True, check=True)
        wall = time.perf_counter() - start
        out.unlink()
        stages = {}
        for part in CLI_SUMMARY.search(done.stderr).group("stages").split(", "):
            name, value, _ = part.rsplit(" ", 2)
            stages[f"{name}_s"] = float(value)
        results.append({"audio_s": seconds, "size": size, "wall_s": wall, "x_real_time": wall / seconds, **stages})
    return results


def cli_table(rows: list[dict], image: Path, audio: Path) -> str:
    lines = [f"`python -m pipeline generate --image {image.name} --audio {audio.name}` ({rows[0]['audio_s']:.1f} s of "
             f"speech, {rows[0]['size']}²), {len(rows)} runs:", "",
             "| run | start-up | prepare | landmarks | render | wall clock | × audio |",
             "|---|---|---|---|---|---|---|"]
    for i, r in enumerate(rows, 1):
        lines.append(f"| {i} | {r['start-up_s']:.1f} s | {r['prepare_s']:.1f} s | {r['landmarks_s']:.1f} s "
                     f"| {r['render_s']:.1f} s | {r['wall_s']:.2f} s | {r['x_real_time']:.2f} |")
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
    parser.add_argument("--image", type=Path, default=REPO / "examples" / "astronaut.png", help="portrait photo")
    parser.add_argument("--audio", type=Path, default=REPO / "examples" / "speech.wav", help="speech recording")
    parser.add_argument("--cli-runs", type=int, default=3, help="runs of the command line (0: none)")
    parser.add_argument("--one", nargs=2, type=float, metavar=("SECONDS", "SIZE"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        print(json.dumps(run_one(args.one[0], int(args.one[1]), args.checkpoint, args.device, args.image,
                                 args.audio)))
        return
    rows = []
    for seconds in [float(s) for s in args.lengths.split(",")]:
        for size in [int(s) for s in args.sizes.split(",")]:
            cmd = [sys.executable, __file__, "--one", str(seconds), str(size), "--image", str(args.image),
                   "--audio", str(args.audio)]
            cmd += ["--checkpoint", args.checkpoint] if args.checkpoint else []
            cmd += ["--device", args.device] if args.device else []
            result = subprocess.run(cmd, capture_output=True, text=True, check=True)
            rows.append(json.loads(result.stdout.strip().splitlines()[-1]))
            print(table(rows[-1:]).splitlines()[-1], flush=True)
    args.out.mkdir(parents=True, exist_ok=True)
    machine = (f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, device {rows[0]['device']}, "
               f"threads per stage {json.dumps({s: threads_for(s) for s in POLICY})}")
    text = f"Machine: {machine}\n\n{table(rows)}\n"
    cli = []
    if args.cli_runs > 0:
        cli = cli_runs(args.image, args.audio, int(args.sizes.split(",")[0]), args.cli_runs)
        text += "\n" + cli_table(cli, args.image, args.audio) + "\n"
    (args.out / "speed.md").write_text(text)
    (args.out / "speed.json").write_text(json.dumps({"in_process": rows, "cli": cli}, indent=2))
    plot(rows, args.out / "speed.png")
    print(text)


if __name__ == "__main__":
    main()

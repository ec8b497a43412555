"""A battery of hostile and odd inputs through the command line and the app's API, judged as a user would.

    python bench/battery.py --out results/battery                       # this checkout
    python bench/battery.py --repo /path/to/older/checkout --out results/battery_before

Every case runs against the code in ``--repo`` (a child process with that checkout first on the path), on a tiny
pipeline made there, with inputs made here (no ``../shared``). A case expecting an error is answered well when the
command ends with exit code 1 or 2 and exactly one line ``error: ...`` (no traceback, nothing else), and leaves no
output file behind; in the app, when the error shown is a specific message (not Gradio's generic "Error") and a
refused upload is gone from the server's cache. A case expecting success is answered well when it succeeds and
writes its output. Writes ``battery.md`` (every case, its group and verdict) and ``battery.json``.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import shutil
import signal
import struct
import subprocess
import sys
import tempfile
import time
import zlib
from pathlib import Path

HERE = Path(__file__).resolve()
REPO = HERE.parents[1]


# ----------------------------------------------------------------------------------------------------
# Inputs


def png_claiming(width: int, height: int) -> bytes:
    """A tiny PNG whose header claims ``width`` x ``height`` grey pixels (a decompression bomb's shape)."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"\0")) + chunk(b"IEND", b"")


def _speechlike(seconds: float, rate: int = 16000, seed: int = 0):
    import numpy as np

    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * rate)) / rate
    envelope = 0.5 + 0.5 * np.sin(2 * np.pi * 3.0 * t) ** 2
    return (0.3 * envelope * np.sin(2 * np.pi * (140 + 30 * np.sin(2 * np.pi * 0.5 * t)) * t)
            + 0.02 * rng.standard_normal(len(t))).astype(np.float32)


def make_inputs(d: Path) -> dict[str, Path]:
    """Good and bad files in ``d``; returns name -> path."""
    import numpy as np
    import skimage.data
    import soundfile as sf
    from PIL import Image

    f: dict[str, Path] = {}

    def put(name: str, data: bytes) -> None:
        f[name] = d / name
        f[name].write_bytes(data)

    face = skimage.data.astronaut()
    Image.fromarray(face).save(d / "photo.png")
    f["photo"] = d / "photo.png"
    sf.write(d / "speech.wav", _speechlike(1.0), 16000)
    f["speech"] = d / "speech.wav"
    # photos
    put("empty.png", b"")
    put("text.png", b"this is a note, not a photo\n")
    put("truncated.png", (d / "photo.png").read_bytes()[:300])
    put("bomb.png", png_claiming(100_000, 100_000))
    put("grey12000.png", png_claiming(12_000, 12_000))
    put("phone.heic", b"\0\0\0\x18ftypheic" + bytes(100))
    Image.new("RGB", (1, 1)).save(d / "tiny.png")
    Image.new("RGB", (400, 400), (120, 130, 140)).save(d / "wall.png")
    Image.fromarray(face).convert("L").save(d / "grey.png")
    Image.fromarray(face).convert("RGBA").save(d / "rgba.png")
    Image.fromarray(face).save(d / "photo.jpg", quality=90)
    exif = Image.Exif()
    exif[0x0112] = 6  # rotated: EXIF orientation 6
    Image.fromarray(np.ascontiguousarray(np.rot90(face))).save(d / "rotated.jpg", exif=exif)
    for name in ("tiny.png", "wall.png", "grey.png", "rgba.png", "photo.jpg", "rotated.jpg"):
        f[name] = d / name
    (d / "a_folder.png").mkdir()
    f["a_folder.png"] = d / "a_folder.png"
    # audio
    put("empty.wav", b"")
    put("text.wav", b"not audio at all\n")
    put("truncated.wav", (d / "speech.wav").read_bytes()[:60])
    put("garbage.mp3", bytes(range(256)) * 8)
    sf.write(d / "silent.wav", np.zeros(16000, np.float32), 16000)
    sf.write(d / "blip.wav", _speechlike(0.05), 16000)
    sf.write(d / "nan.wav", np.full(16000, np.nan, np.float32), 16000, subtype="FLOAT")
    sf.write(d / "8k.wav", _speechlike(1.0, 8000), 8000)
    sf.write(d / "stereo48k.wav", np.stack([_speechlike(1.0, 48000)] * 2, axis=1), 48000)
    sf.write(d / "u8.wav", _speechlike(1.0), 16000, subtype="PCM_U8")
    sf.write(d / "float.wav", _speechlike(1.0), 16000, subtype="FLOAT")
    for name in ("silent.wav", "blip.wav", "nan.wav", "8k.wav", "stereo48k.wav", "u8.wav", "float.wav"):
        f[name] = d / name
    return f


def make_tracks(d: Path, good: dict) -> dict[str, Path]:
    """Bad landmark files, variations of a good one (``good``: its JSON)."""
    def variant(name: str, change) -> None:
        data = json.loads(json.dumps(good))
        change(data)
        (d / name).write_text(json.dumps(data))
        out[name] = d / name

    out: dict[str, Path] = {}
    for name, text in (("empty.json", ""), ("notjson.json", "{frames: nope"), ("list.json", "[1, 2, 3]"),
                       ("nested.json", "[" * 100_000 + "]" * 100_000)):
        (d / name).write_text(text)
        out[name] = d / name
    variant("format.json", lambda t: t.update(format="something-else"))
    variant("version.json", lambda t: t.update(version=99))
    variant("fps0.json", lambda t: t.update(fps=0))
    variant("fpsbool.json", lambda t: t.update(fps=True))
    variant("size.json", lambda t: t.update(image_size=[10**9, 5]))
    variant("noframes.json", lambda t: t.update(frames=[]))
    variant("shape.json", lambda t: t.update(frames=[[[1, 2, 3]] * 5]))
    variant("strings.json", lambda t: t["frames"][0][0].__setitem__(0, "1.5"))
    variant("bools.json", lambda t: t["frames"][0][0].__setitem__(0, True))
    variant("nulls.json", lambda t: t["frames"][0][0].__setitem__(0, None))
    variant("outside.json", lambda t: [p.__setitem__(0, 1e7) for frame in t["frames"] for p in frame])
    variant("posebad.json", lambda t: t.update(pose=[[0.0] * 6]))
    return out


def make_checkpoints(d: Path, good: Path) -> dict[str, Path]:
    """Crafted pipeline folders, variations of the good one."""
    def variant(name: str, change) -> None:
        folder = d / name
        shutil.copytree(good, folder)
        change(folder)
        out[name] = folder

    def index_entry(key: str, value) -> callable:
        def change(folder: Path) -> None:
            index = json.loads((folder / "model_index.json").read_text())
            index[key] = value
            (folder / "model_index.json").write_text(json.dumps(index))
        return change

    def pickled(folder: Path) -> None:
        import torch
        from safetensors.torch import load_file

        weights = folder / "landmark_denoiser" / "diffusion_pytorch_model.safetensors"
        torch.save(load_file(weights), weights.with_suffix(".bin"))
        weights.unlink()

    out: dict[str, Path] = {}
    variant("popen", index_entry("landmark_denoiser", ["subprocess", "Popen"]))
    variant("os_system", index_entry("scheduler", ["os", "system"]))
    variant("autoencoder", index_entry("scheduler", ["diffusers", "AutoencoderKL"]))
    variant("extra_component", index_entry("evil", ["builtins", "eval"]))
    variant("pickle_only", pickled)
    variant("index_not_json", lambda f: (f / "model_index.json").write_text("{not json"))
    variant("index_list", lambda f: (f / "model_index.json").write_text("[]"))
    variant("no_index", lambda f: (f / "model_index.json").unlink())
    return out


# ----------------------------------------------------------------------------------------------------
# Cases


def cli_cases(f: dict, tracks: dict, ckpts: dict, tmp: Path) -> list[dict]:
    photo, speech, ckpt = str(f["photo"]), str(f["speech"]), str(f["ckpt"])
    gen = ["generate", "--image", photo, "--audio", speech, "--checkpoint", ckpt, "--steps", "2", "-q"]
    cases: list[dict] = []

    def case(group: str, name: str, argv: list[str], expect: str = "error", output: str | None = None) -> None:
        cases.append({"kind": "cli", "group": group, "name": name, "argv": argv, "expect": expect,
                      "output": output})

    n = 0
    for option, values in (("--steps", ["0", "-3", "100000", "2.5", "abc", "nan"]),
                           ("--guidance", ["nan", "inf", "-1", "1e9", "abc"]),
                           ("--seed", ["-1", "1e30", "abc", str(2**64)]),
                           ("--head-motion", ["nan", "-inf", "1e9"]),
                           ("--blink-rate", ["nan", "-5", "1e12"]),
                           ("--size", ["300"]), ("--threads", ["0", "-1"])):
        for value in values:
            n += 1
            out = str(tmp / f"num{n}.mp4")
            case("numbers", f"generate {option} {value}", [*gen, "-o", out, option, value], output=out)
    for value in ("nan", "-1", "1e9"):
        out = str(tmp / f"ext_{value}.json")
        case("numbers", f"extract --smoothing {value}", ["extract", "--video", str(tmp / "nothing.mp4"), "-o", out,
                                                         "--smoothing", value, "-q"], output=out)
    out = str(tmp / "render_hm.mp4")
    case("numbers", "render --head-motion nan", ["render", "--image", photo, "--landmarks", str(f["track"]),
                                                 "-o", out, "--head-motion", "nan", "-q"], output=out)

    (tmp / "a_file.txt").write_text("x")
    for target in ("/dev/full", "/proc/battery.mp4", str(tmp / "no_extension"), str(tmp),
                   str(tmp / "a_file.txt" / "x.mp4")):
        case("outputs", f"generate -o {target.replace(str(tmp), '<tmp>')}", [*gen, "-o", target])
        case("outputs", f"render -o {target.replace(str(tmp), '<tmp>')}",
             ["render", "--image", photo, "--landmarks", str(f["track"]), "-o", target, "-q"])
    for target in ("/dev/full", str(tmp / "no_extension"), str(tmp)):
        case("outputs", f"landmarks -o {target.replace(str(tmp), '<tmp>')}",
             ["landmarks", "--image", photo, "--audio", speech, "--checkpoint", ckpt, "--steps", "2", "-o", target,
              "-q"])

    def generate_with(group: str, label: str, image: Path, audio: Path, expect: str = "error") -> None:
        out = str(tmp / f"{group}_{len(cases)}.mp4")
        case(group, label, ["generate", "--image", str(image), "--audio", str(audio), "--checkpoint", ckpt,
                            "--steps", "2", "-q", "-o", out], expect=expect, output=out)

    for name in ("empty.png", "text.png", "truncated.png", "bomb.png", "grey12000.png", "phone.heic", "tiny.png",
                 "wall.png", "a_folder.png", "missing.png"):
        generate_with("photos", f"generate --image {name}", f.get(name, tmp / name), f["speech"])
    for name in ("grey.png", "rgba.png", "photo.jpg", "rotated.jpg"):
        generate_with("photos", f"generate --image {name} (odd, valid)", f[name], f["speech"], expect="ok")
    for name in ("empty.wav", "text.wav", "truncated.wav", "garbage.mp3", "silent.wav", "blip.wav", "nan.wav",
                 "missing.wav"):
        generate_with("audio", f"generate --audio {name}", f["photo"], f.get(name, tmp / name))
    for name in ("8k.wav", "stereo48k.wav", "u8.wav", "float.wav"):
        generate_with("audio", f"generate --audio {name} (odd, valid)", f["photo"], f[name], expect="ok")

    for name, path in {**tracks, "missing.json": tmp / "missing.json"}.items():
        out = str(tmp / f"track_{name}.mp4")
        case("tracks", f"render --landmarks {name}", ["render", "--image", photo, "--landmarks", str(path), "-o", out,
                                                      "-q"], output=out)

    odd_sources = {"missing_folder": tmp / "missing_ckpt", "hub_id_not_cached": "someone/talking.face-v1",
                   "not_a_repo_id": "a/b/c"}
    for name, folder in {**ckpts, **odd_sources}.items():
        out = str(tmp / f"ckpt_{name}.mp4")
        case("checkpoints", f"generate --checkpoint {name}", ["generate", "--image", photo, "--audio", speech,
                                                              "--checkpoint", str(folder), "--steps", "2", "-q", "-o",
                                                              out], output=out)

    (tmp / "nocols.csv").write_text("photo,voice\na,b\n")
    (tmp / "badrows.csv").write_text(f"image,audio\n{tmp / 'missing.png'},{speech}\n")
    (tmp / "empty_folder").mkdir()
    for name, source, expect in (("missing.csv", tmp / "missing.csv", "error"), ("nocols.csv", tmp / "nocols.csv",
                                                                                  "error"),
                                 ("an empty folder", tmp / "empty_folder", "error"),
                                 ("badrows.csv (one item fails)", tmp / "badrows.csv", "listed")):
        case("batch", f"generate --batch {name}", ["generate", "--batch", str(source), "-o", str(tmp / "batch_out"),
                                                   "--checkpoint", ckpt, "--steps", "2", "-q"], expect=expect)
    case("batch", "generate --batch with -o a file", ["generate", "--batch", str(tmp / "badrows.csv"), "-o",
                                                      str(tmp / "a_file.txt"), "--checkpoint", ckpt, "-q"])
    return cases


def run_cli_case(c: dict) -> dict:
    """Run one command in this process, as ``python -m pipeline`` would; an exception escaping is a traceback."""
    from pipeline.cli import main

    if c["output"]:
        Path(c["output"]).unlink(missing_ok=True)
    err, out = io.StringIO(), io.StringIO()
    escaped = None
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(out):
        try:
            code = main(c["argv"])
        except SystemExit as stop:
            code = stop.code if isinstance(stop.code, int) else 1
        except BaseException as exc:  # noqa: BLE001 - what a user would see as a traceback
            code, escaped = 1, f"{type(exc).__name__}: {exc}"
    lines = [line for line in err.getvalue().splitlines() if line.strip()]
    written = bool(c["output"]) and Path(c["output"]).is_file()
    if c["expect"] == "ok":
        good = code == 0 and written and escaped is None
    elif c["expect"] == "listed":
        good = code == 1 and escaped is None and "failed" in out.getvalue()
    else:
        good = (escaped is None and code in (1, 2) and len(lines) == 1 and lines[0].startswith("error:")
                and not written)
    said = escaped or " | ".join(lines)[:200] or out.getvalue().strip()[-200:]
    return {**c, "code": code, "said": said, "good": good}


def kill_cases(f: dict, tmp: Path, repo: Path) -> list[dict]:
    """A render stopped half-way (SIGTERM, then SIGKILL): the earlier video at the path must stay byte for byte."""
    import numpy as np

    from pipeline.landmarks import LandmarkTrack

    track = LandmarkTrack.load(f["track"])
    long = LandmarkTrack(np.repeat(track.frames[:1], 20000, axis=0), track.fps, track.image_size, track.reference)
    long.save(tmp / "long.json")
    results = []
    for sig in (signal.SIGTERM, signal.SIGKILL):
        out = tmp / f"killed_{sig.name}.mp4"
        shutil.copy(f["previous"], out)
        before = out.read_bytes()
        child = subprocess.Popen([sys.executable, "-m", "pipeline", "render", "--image", str(f["photo"]),
                                  "--landmarks", str(tmp / "long.json"), "-o", str(out), "-q"], cwd=repo,
                                 env={**os.environ, "PYTHONPATH": str(repo)}, stderr=subprocess.PIPE, text=True)
        stamp, deadline = out.stat().st_mtime_ns, time.monotonic() + 120
        while time.monotonic() < deadline and child.poll() is None:  # until the render writes (there or beside)
            if out.stat().st_mtime_ns != stamp or list(out.parent.glob(f".{out.stem}.*")):
                break
            time.sleep(0.05)
        time.sleep(0.5)
        child.send_signal(sig)
        _, err = child.communicate(timeout=60)
        kept = out.read_bytes() == before
        results.append({"kind": "cli", "group": "interrupted", "name": f"render stopped by {sig.name}",
                        "expect": "previous output kept", "code": child.returncode,
                        "said": err.strip()[-200:], "good": kept})
    return results


def app_cases(f: dict, tmp: Path) -> list[dict]:
    """The app's API (gradio_client), on the checkout's own app with the tiny pipeline."""
    import socket

    from gradio_client import Client, handle_file
    from gradio_client.exceptions import AppError

    import app as app_module
    from pipeline.loading import load_pipeline

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    cache = tmp / "gradio"
    os.environ["GRADIO_TEMP_DIR"] = str(cache)
    pipe = load_pipeline(str(f["ckpt"]))
    demo = app_module.create_demo(pipe).queue(default_concurrency_limit=4)
    demo.launch(prevent_thread_lock=True, server_name="127.0.0.1", server_port=port, quiet=True)
    client = Client(f"http://127.0.0.1:{port}/", verbose=False, download_files=str(tmp / "downloads"))
    # seed, guidance, steps, intensity, smile, smoothing, blinks, head motion, yaw, pitch, roll
    numbers = [0, 2.0, 2, 1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0]
    results = []

    def call(group: str, name: str, args: list, api: str, upload: str | None = None, expect: str = "error") -> None:
        said, good = "", False
        try:
            client.predict(*args, api_name=api)
            said, good = "ok", expect == "ok"
        except AppError as exc:
            said = str(exc)[:200]
            specific = said.strip() not in ("", "Error", "None") and "Traceback" not in said
            gone = upload is None or not [p for p in cache.rglob(upload) if p.is_file()]
            good = expect == "error" and specific and gone
        except Exception as exc:  # noqa: BLE001 - anything else is a failure of the app
            said = f"{type(exc).__name__}: {exc}"[:200]
        results.append({"kind": "app", "group": group, "name": name, "expect": expect, "said": said, "good": good})

    photo, speech = handle_file(str(f["photo"])), handle_file(str(f["speech"]))
    for name in ("empty.png", "text.png", "truncated.png", "bomb.png", "grey12000.png", "phone.heic", "tiny.png",
                 "wall.png"):
        refused_file = name not in ("tiny.png", "wall.png")  # those are images; only their faces are missing
        call("app uploads", f"/landmarks photo {name}", [handle_file(str(f[name])), speech, *numbers],
             "/landmarks", upload=name if refused_file else None)
    for name in ("empty.wav", "text.wav", "truncated.wav", "garbage.mp3", "silent.wav", "blip.wav", "nan.wav"):
        call("app uploads", f"/landmarks speech {name}", [photo, handle_file(str(f[name])), *numbers], "/landmarks",
             upload=name)
    track_json = client.predict(photo, speech, *numbers, api_name="/landmarks")[0]
    for name in ("empty.json", "notjson.json", "strings.json", "bools.json", "outside.json", "nested.json"):
        call("app uploads", f"/load_track {name}", [handle_file(str(f["tracks"][name])), photo, speech, 0],
             "/load_track")
        call("app uploads", f"/render with track {name}", [photo, speech, handle_file(str(f["tracks"][name])),
                                                           "Fast warp", 256, False], "/render")
    for index, label, value in ((2, "steps", 0), (2, "steps", 1000), (1, "guidance", -1.0), (1, "guidance", 100.0),
                                (0, "seed", -5), (3, "intensity", 50.0), (6, "blinks", 1e9), (7, "head motion", -3.0),
                                (2, "steps", "abc"), (1, "guidance", None)):
        args = list(numbers)
        args[index] = value
        call("app numbers", f"/landmarks {label} = {value!r}", [photo, speech, *args], "/landmarks")
    call("app numbers", "/render renderer 'gan'", [photo, speech, handle_file(track_json), "gan", 256, False],
         "/render")
    call("app numbers", "/render size 300", [photo, speech, handle_file(track_json), "Fast warp", 300, False],
         "/render")
    call("app numbers", "/landmarks, valid (control)", [photo, speech, *numbers], "/landmarks", expect="ok")
    demo.close()
    return results


# ----------------------------------------------------------------------------------------------------
# Running


def worker(out_json: Path) -> None:
    """Runs inside the checkout under test (its ``pipeline`` and ``app`` first on the path)."""
    import torch
    from diffusers import DDIMScheduler

    from pipeline import LandmarkDenoiser, TalkingFacePipeline

    repo = Path.cwd()
    tmp = Path(tempfile.mkdtemp(prefix="battery-"))
    try:
        f = make_inputs(tmp)
        torch.manual_seed(0)
        tiny = TalkingFacePipeline(
            landmark_denoiser=LandmarkDenoiser(window=16, audio_dim=320, d_model=32, num_layers=1, num_heads=2),
            scheduler=DDIMScheduler(num_train_timesteps=1000, beta_schedule="squaredcos_cap_v2",
                                    prediction_type="sample", clip_sample=False))
        tiny.save_pretrained(tmp / "ckpt")
        f["ckpt"] = tmp / "ckpt"
        from pipeline.cli import main

        with contextlib.redirect_stderr(io.StringIO()):
            main(["landmarks", "--image", str(f["photo"]), "--audio", str(f["speech"]), "--checkpoint", str(f["ckpt"]),
                  "--steps", "2", "-o", str(tmp / "track.json"), "-q"])
            main(["render", "--image", str(f["photo"]), "--landmarks", str(tmp / "track.json"), "-o",
                  str(tmp / "previous.mp4"), "-q"])
        f["track"], f["previous"] = tmp / "track.json", tmp / "previous.mp4"
        good_track = json.loads(f["track"].read_text())
        (tmp / "tracks").mkdir()
        f["tracks"] = make_tracks(tmp / "tracks", good_track)
        (tmp / "ckpts").mkdir()
        ckpts = make_checkpoints(tmp / "ckpts", f["ckpt"])
        work = tmp / "work"
        work.mkdir()
        results = [run_cli_case(c) for c in cli_cases(f, f["tracks"], ckpts, work)]
        results += kill_cases(f, work, repo)
        results += app_cases(f, tmp)
        out_json.write_text(json.dumps(results, indent=1, default=str))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repo", type=Path, default=REPO, help="checkout to test (default: this one)")
    parser.add_argument("--out", type=Path, default=REPO / "results" / "battery")
    parser.add_argument("--worker", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker(args.worker)
        return
    args.out.mkdir(parents=True, exist_ok=True)
    raw = args.out / "battery.json"
    env = {**os.environ, "PYTHONPATH": str(args.repo.resolve()), "HF_HUB_OFFLINE": "1",
           "GRADIO_ANALYTICS_ENABLED": "False"}
    subprocess.run([sys.executable, str(HERE), "--worker", str(raw.resolve())], cwd=args.repo, env=env, check=True)
    results = json.loads(raw.read_text())
    bad = [r for r in results if not r["good"]]
    groups = sorted({r["group"] for r in results})
    lines = [f"{len(results)} cases against {args.repo.resolve()}: **{len(bad)} bad answers**", "",
             "| group | cases | bad |", "|---|---|---|"]
    lines += [f"| {g} | {sum(r['group'] == g for r in results)} | "
              f"{sum(r['group'] == g and not r['good'] for r in results)} |" for g in groups]
    lines += ["", "| group | case | expected | verdict | what it said |", "|---|---|---|---|---|"]
    for r in results:
        said = str(r["said"]).replace("|", "/").replace("\n", " ")[:160]
        lines.append(f"| {r['group']} | {r['name']} | {r['expect']} | {'ok' if r['good'] else '**bad**'} | {said} |")
    (args.out / "battery.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines[:4 + len(groups)]))


if __name__ == "__main__":
    main()

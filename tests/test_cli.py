"""The command line as a user runs it: real files in, an mp4 or a one-line error out."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from PIL import Image

from pipeline.cli import fit_length, main
from pipeline.landmarks import LandmarkTrack
from pipeline.video import Mp4Writer, probe_duration
from tests.conftest import speechlike
from tests.test_video import ffprobe_text

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def files(tmp_path_factory, astronaut, astronaut_landmarks):
    """A photo, speech, and a driving video of another 'person' (the astronaut mirrored and scaled)."""
    d = tmp_path_factory.mktemp("cli")
    Image.fromarray(astronaut).save(d / "photo.png")
    sf.write(d / "speech.wav", speechlike(1.0), 16000)
    other = np.asarray(Image.fromarray(astronaut[:, ::-1]).resize((400, 400)))
    with Mp4Writer(d / "driver.mp4", fps=25) as writer:
        for i in range(30):
            writer.write(np.roll(other, i // 3, axis=0))
    return d


def test_extract_then_render_onto_another_face(files, capsys):
    track_path = files / "track.json"
    assert main(["extract", "--video", str(files / "driver.mp4"), "-o", str(track_path)]) == 0
    track = LandmarkTrack.load(track_path)
    assert track.num_frames == 30 and track.image_size == (400, 400)
    out = files / "out.mp4"
    code = main(["render", "--image", str(files / "photo.png"), "--landmarks", str(track_path),
                 "--audio", str(files / "speech.wav"), "-o", str(out)])
    assert code == 0
    err = capsys.readouterr().err
    assert "Retargeted" in err and "longer than the audio" in err
    frames, seconds = probe_duration(out)
    assert frames == 25 and abs(seconds - 1.0) < 1 / 25
    info = ffprobe_text(out)
    assert "256x256" in info and "aac" in info


@pytest.fixture(scope="module")
def still_track(files, astronaut_landmarks) -> Path:
    """Ten frames of the photo's own face at rest."""
    track = LandmarkTrack(np.repeat(astronaut_landmarks[None], 10, axis=0), 25, (512, 512))
    return track.save(files / "still.json")


def test_render_full_photo(files, still_track):
    out = files / "full.mp4"
    assert main(["render", "--image", str(files / "photo.png"), "--landmarks", str(still_track),
                 "-o", str(out), "--full", "-q"]) == 0
    assert "512x512" in ffprobe_text(out)


@pytest.mark.parametrize(
    "setup, words",
    [
        (lambda d: (d / "photo.png", d / "nope.json", d / "speech.wav"), "does not exist"),
        (lambda d: (d / "speech.wav", d / "track.json", d / "speech.wav"), "not an image"),
        (lambda d: (d / "photo.png", d / "speech.wav", d / "speech.wav"), "not valid JSON"),
        (lambda d: (d / "photo.png", d / "track.json", d / "photo.png"), "not a recording"),
    ],
)
def test_bad_input_gives_one_line_and_nonzero_exit(files, setup, words):
    if not (files / "track.json").exists():
        main(["extract", "--video", str(files / "driver.mp4"), "-o", str(files / "track.json"), "-q"])
    image, landmarks, audio = setup(files)
    run = subprocess.run(
        [sys.executable, "-m", "pipeline", "render", "--image", str(image), "--landmarks", str(landmarks),
         "--audio", str(audio), "-o", str(files / "x.mp4")],
        capture_output=True, text=True, cwd=REPO,
    )
    assert run.returncode == 2
    lines = run.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and words in lines[0], run.stderr


def test_no_face_photo(files, still_track, capsys):
    Image.new("RGB", (300, 300), (120, 140, 160)).save(files / "wall.png")
    code = main(["render", "--image", str(files / "wall.png"), "--landmarks", str(still_track),
                 "-o", str(files / "y.mp4")])
    assert code == 2 and "No face" in capsys.readouterr().err


def test_fit_length(astronaut_landmarks):
    frames = np.zeros((5, 68, 2), np.float32)
    same, note = fit_length(frames, 5, astronaut_landmarks)
    assert same is frames and note == ""
    longer, note = fit_length(frames, 8, astronaut_landmarks)
    assert longer.shape == (8, 68, 2) and np.allclose(longer[-1], astronaut_landmarks) and "rests" in note
    shorter, note = fit_length(frames, 3, astronaut_landmarks)
    assert shorter.shape == (3, 68, 2) and "longer" in note


def test_default_commands_never_import_research_use_models(files, tmp_path):
    """landmarks, extract, render and generate on the default (mesh) front end, in one fresh interpreter: none of
    them imports dlib, face_recognition_models or face_alignment, and extract writes a version-2 track with depth
    and a pose whose first three values are angles in degrees."""
    track, extracted = tmp_path / "speech.json", tmp_path / "driver.json"
    photo, speech = str(files / "photo.png"), str(files / "speech.wav")
    commands = [
        ["landmarks", "--image", photo, "--audio", speech, "-o", str(track)],
        ["extract", "--video", str(files / "driver.mp4"), "-o", str(extracted)],
        ["render", "--image", photo, "--landmarks", str(extracted), "--audio", speech, "-o", str(tmp_path / "r.mp4")],
        ["generate", "--image", photo, "--audio", speech, "-o", str(tmp_path / "g.mp4")],
    ]
    code = (
        "import sys; from pipeline.cli import main\n"
        f"for argv in {commands!r}:\n"
        "    assert main(argv) == 0, argv\n"
        "bad = sorted(m for m in ('dlib', 'face_recognition_models', 'face_alignment') if m in sys.modules)\n"
        "assert not bad, bad\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd=REPO, timeout=300)
    data = json.loads(extracted.read_text())
    assert data["version"] == 2 and np.asarray(data["frames"]).shape == (30, 68, 3)
    pose = np.asarray(data["pose"])
    assert pose.shape == (30, 6) and np.abs(pose[:, :3]).max() < 90 and (pose[:, 5] > 0).all()
    assert LandmarkTrack.load(track).frames.shape[-1] == 3


def test_a_killed_render_leaves_the_previous_video_as_it_was(files, astronaut_landmarks, tmp_path):
    """SIGTERM in the middle of a render: exit 130 with one line, the earlier good video at the output path byte for
    byte, and no half-written file beside it."""
    import signal
    import time

    out_dir = tmp_path / "out"
    out_dir.mkdir()
    out = out_dir / "talk.mp4"
    with Mp4Writer(out, fps=25) as writer:
        writer.write(np.zeros((5, 64, 64, 3), np.uint8))
    previous = out.read_bytes()
    long_track = LandmarkTrack(np.repeat(astronaut_landmarks[None], 20000, axis=0), 25, (512, 512))
    long_track.save(tmp_path / "long.json")
    child = subprocess.Popen(
        [sys.executable, "-m", "pipeline", "render", "--image", str(files / "photo.png"), "--landmarks",
         str(tmp_path / "long.json"), "-o", str(out), "-q"],
        cwd=REPO, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 60
        while not list(out_dir.glob(".talk.*.partial.mp4")) and child.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        assert child.poll() is None, "the render ended before it could be interrupted"
        child.send_signal(signal.SIGTERM)
        _, err = child.communicate(timeout=60)
    finally:
        child.kill()
    assert child.returncode == 130 and err.strip() == "Stopped; unfinished outputs were not written."
    assert out.read_bytes() == previous and sorted(p.name for p in out_dir.iterdir()) == ["talk.mp4"]


@pytest.mark.parametrize("option", [("--steps", "0"), ("--steps", "100000"), ("--steps", "-3"), ("--steps", "2.5"),
                                    ("--guidance", "nan"), ("--guidance", "-1"), ("--seed", "-1"),
                                    ("--head-motion", "inf"), ("--blink-rate", "1e9"), ("--threads", "0")])
def test_bad_numbers_get_one_line_and_exit_2(files, option, capsys):
    """Every numeric option is checked (finite, in range) before anything runs."""
    with pytest.raises(SystemExit) as stop:
        main(["generate", "--image", str(files / "photo.png"), "--audio", str(files / "speech.wav"),
              "-o", str(files / "never.mp4"), *option])
    lines = capsys.readouterr().err.strip().splitlines()
    assert stop.value.code == 2 and len(lines) == 1 and lines[0].startswith(f"error: argument {option[0]}")
    assert not (files / "never.mp4").exists()


@pytest.mark.parametrize("target", ["/dev/full", "/proc/talk.mp4", "{tmp}/no_extension", "{tmp}"])
def test_unusable_output_paths_are_named(files, target, tmp_path, capsys):
    target = target.format(tmp=tmp_path)
    code = main(["generate", "--image", str(files / "photo.png"), "--audio", str(files / "speech.wav"), "-o", target])
    lines = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(lines) == 1 and lines[0].startswith(f"error: Cannot write '{target}': ")
    assert sorted(p.name for p in tmp_path.iterdir()) == []  # no probe or partial file left behind


def test_folders_and_files_in_the_wrong_place_are_named(files, tmp_path, capsys):
    (tmp_path / "notes.txt").write_text("x")
    code = main(["generate", "--image", str(files / "photo.png"), "--audio", str(files / "speech.wav"),
                 "-o", str(tmp_path / "notes.txt" / "talk.mp4")])
    err = capsys.readouterr().err.replace(str(tmp_path) + "/", "")
    assert code == 2 and "'notes.txt' is a file, not a folder" in err

"""A matrix of hostile and odd inputs, each through the Python pipeline and the command line.

Every case either works (odd but valid files) or ends in one readable line; none may crash with a traceback.
"""

from __future__ import annotations

import io
import json
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from PIL import Image

from pipeline import InputError, LandmarkTrack
from pipeline.cli import main
from pipeline.video import Mp4Writer
from tests.conftest import speechlike

REPO = Path(__file__).resolve().parents[1]


def _write(path: Path, data: str | bytes) -> Path:
    if isinstance(data, str):
        path.write_text(data)
    else:
        path.write_bytes(data)
    return path


# --- photos ----------------------------------------------------------------------------------------
def _png(img: Image.Image, path: Path, **kw) -> Path:
    img.save(path, **kw)
    return path


def photo_cases(astronaut: np.ndarray) -> dict[str, tuple[Callable[[Path], Path], str | None]]:
    """name -> (make the file in a folder, expected error words or None when it must work)."""
    face = Image.fromarray(astronaut)

    def truncated(d: Path) -> Path:
        buf = io.BytesIO()
        face.save(buf, format="jpeg")
        (d / "cut.jpg").write_bytes(buf.getvalue()[:5000])
        return d / "cut.jpg"

    def exif(d: Path) -> Path:
        info = Image.Exif()
        info[0x0112] = 6
        return _png(face.rotate(90, expand=True), d / "exif.jpg", exif=info)

    def animated(d: Path) -> Path:
        face.save(d / "anim.gif", save_all=True, append_images=[face.rotate(10)], duration=100)
        return d / "anim.gif"

    def video(d: Path) -> Path:
        with Mp4Writer(d / "clip.mp4", fps=25) as writer:
            writer.write(np.stack([astronaut] * 3))
        return d / "clip.mp4"

    def sixteen_bit(d: Path) -> Path:
        grey = np.asarray(face.convert("L"), dtype=np.uint16) * 257
        return _png(Image.fromarray(grey), d / "deep.png")

    return {
        "no face": (lambda d: _png(Image.new("RGB", (400, 400), (120, 140, 160)), d / "wall.png"), "No face"),
        "two faces": (lambda d: _png(Image.fromarray(np.concatenate([astronaut, astronaut[:, ::-1]], 1)),
                                     d / "two.png"), None),
        "tiny face": (lambda d: _png(face.resize((180, 180)), d / "tiny.png"), "too small"),
        "corrupt": (lambda d: _write(d / "bad.png", b"\x89PNG\r\n\x1a\n garbage"), "damaged"),
        "truncated": (truncated, "damaged or truncated"),
        "zero-byte": (lambda d: _write(d / "empty.jpg", b""), "empty"),
        "huge 12000x12000": (lambda d: _png(Image.new("1", (12000, 12000)), d / "huge.png"), "limit"),
        "CMYK": (lambda d: _png(face.convert("CMYK"), d / "cmyk.jpg"), None),
        "16-bit": (sixteen_bit, None),
        "palette": (lambda d: _png(face.convert("P"), d / "palette.png"), None),
        "animated": (animated, None),
        "EXIF-rotated": (exif, None),
        "video as photo": (video, "not an image"),
    }


# --- recordings ------------------------------------------------------------------------------------
def _wav(path: Path, samples: np.ndarray, rate: int = 16000) -> Path:
    sf.write(path, samples, rate)
    return path


AUDIO_CASES: dict[str, tuple[Callable[[Path], Path], str | None]] = {
    "silent": (lambda d: _wav(d / "silent.wav", np.zeros(32000, np.float32)), "silent"),
    "0.1 s": (lambda d: _wav(d / "short.wav", speechlike(0.1)), "too short"),
    "clipped": (lambda d: _wav(d / "clip.wav", np.clip(speechlike(1.0) * 20, -1, 1)), None),
    "8 kHz": (lambda d: _wav(d / "8k.wav", speechlike(1.0, sr=8000), 8000), None),
    "96 kHz": (lambda d: _wav(d / "96k.wav", speechlike(1.0, sr=96000), 96000), None),
    "6 channels": (lambda d: _wav(d / "six.wav", np.tile(speechlike(1.0)[:, None], (1, 6))), None),
    "corrupt": (lambda d: _write(d / "bad.wav", b"RIFF\x24\x00\x00\x00WAVEfmt garbage"),
                "not a recording"),
    "zero-byte": (lambda d: _write(d / "empty.mp3", b""), "empty"),
    "not audio": (lambda d: _write(d / "notes.wav", "hello, this is text"),
                  "not a recording"),
}


# --- landmark files --------------------------------------------------------------------------------
def _track_doc(**over) -> dict:
    doc = {"format": "talking-face-landmarks", "version": 1, "fps": 25, "image_size": [512, 512],
           "frames": [[[250.0, 250.0]] * 68] * 5}
    doc.update(over)
    return doc


TRACK_CASES: dict[str, tuple[Callable[[Path], Path], str]] = {
    "malformed": (lambda d: _write(d / "t.json", "{'frames': ["), "not valid JSON"),
    "wrong shape": (lambda d: _write(d / "t.json", json.dumps(_track_doc(frames=[[[1, 2]] * 60]))), "shape"),
    "NaN": (lambda d: _write(d / "t.json", json.dumps(_track_doc(frames=[[[float("nan"), 2]] * 68]))), "NaN"),
    "out of range": (lambda d: _write(d / "t.json", json.dumps(_track_doc(frames=[[[9e6, 2]] * 68]))),
                     "far outside"),
    "deeply nested": (lambda d: _write(d / "t.json", "[" * 50000 + "]" * 50000), "nested too deeply"),
    "other version": (lambda d: _write(d / "t.json", json.dumps(_track_doc(version=7))), "version 7"),
    "huge": (lambda d: _huge_track(d / "t.json"), "larger than"),
}


def _huge_track(path: Path) -> Path:
    with path.open("w") as handle:  # a 70 MB file: refused by size before parsing
        handle.write('{"format": "talking-face-landmarks", "frames": [' + "0," * 35_000_000 + "0]}")
    return path


@pytest.fixture(scope="module")
def checkpoint(pipe, tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("ckpt")
    pipe.save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def good(tmp_path_factory, astronaut) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("good")
    Image.fromarray(astronaut).save(d / "photo.png")
    _wav(d / "speech.wav", speechlike(1.0))
    LandmarkTrack(np.full((5, 68, 2), 250.0), 25, (512, 512)).save(d / "track.json")
    return {"image": d / "photo.png", "audio": d / "speech.wav", "track": d / "track.json"}


def _check_cli(argv: list[str], words: str | None, capsys) -> None:
    code = main(argv)
    err = capsys.readouterr().err.strip()
    if words is None:
        assert code == 0, err
    else:
        lines = err.splitlines()
        assert code == 2 and lines[-1].startswith("error: ") and words in lines[-1], err
        assert "Traceback" not in err


@pytest.mark.parametrize("case", list(photo_cases(np.zeros((1, 1, 3), np.uint8))))
def test_photos(case, pipe, checkpoint, good, astronaut, tmp_path, capsys):
    make, words = photo_cases(astronaut)[case]
    path = make(tmp_path)
    if words is None:
        assert pipe.prepare(path, good["audio"]).face.landmarks.shape == (68, 2)
    else:
        with pytest.raises(InputError, match=words):
            pipe.prepare(path, good["audio"])
    _check_cli(["landmarks", "--image", str(path), "--audio", str(good["audio"]), "-o", str(tmp_path / "o.json"),
                "--checkpoint", str(checkpoint), "--steps", "1", "-q"], words, capsys)


@pytest.mark.parametrize("case", list(AUDIO_CASES))
def test_recordings(case, pipe, checkpoint, good, tmp_path, capsys):
    make, words = AUDIO_CASES[case]
    path = make(tmp_path)
    if words is None:
        assert pipe.prepare(good["image"], path).num_frames == 25
    else:
        with pytest.raises(InputError, match=words):
            pipe.prepare(good["image"], path)
    _check_cli(["landmarks", "--image", str(good["image"]), "--audio", str(path), "-o", str(tmp_path / "o.json"),
                "--checkpoint", str(checkpoint), "--steps", "1", "-q"], words, capsys)


def test_audio_over_the_host_limit(good, checkpoint, tmp_path):
    path = _wav(tmp_path / "long.wav", speechlike(3.0))
    run = subprocess.run(
        [sys.executable, "-m", "pipeline", "landmarks", "--image", str(good["image"]), "--audio", str(path),
         "-o", str(tmp_path / "o.json"), "--checkpoint", str(checkpoint), "-q"],
        capture_output=True, text=True, cwd=REPO, env={**__import__("os").environ,
                                                      "TALKING_FACE_MAX_AUDIO_SECONDS": "2"},
    )
    assert run.returncode == 2 and run.stderr.count("\n") == 1 and "TALKING_FACE_MAX_AUDIO_SECONDS" in run.stderr


@pytest.mark.parametrize("case", list(TRACK_CASES))
def test_landmark_files(case, good, tmp_path, capsys):
    make, words = TRACK_CASES[case]
    path = make(tmp_path)
    with pytest.raises(InputError, match=words):
        LandmarkTrack.load(path)
    _check_cli(["render", "--image", str(good["image"]), "--landmarks", str(path), "-o", str(tmp_path / "o.mp4"),
                "-q"], words, capsys)


def test_matrix_is_at_least_twenty_bad_inputs(astronaut):
    bad = [c for c in photo_cases(astronaut).values() if c[1]] + [c for c in AUDIO_CASES.values() if c[1]]
    assert len(bad) + len(TRACK_CASES) + 1 >= 20

"""Regenerate the example inputs shipped in ``examples/`` (needs espeak-ng: ``apt-get install espeak-ng``).

    python examples/make_examples.py

Writes, next to this script:

* ``astronaut.png``: scikit-image's ``astronaut`` (Eileen Collins, NASA, public domain);
* ``speech.wav``: a few sentences spoken by espeak-ng's ``en-us`` voice, 16 kHz mono PCM16;
* ``speech_astronaut_track.json``: a landmark track of the astronaut saying them (phoneme visemes with
  coarticulation, subtle head motion and blinks; 25 fps, seed 0), one frame per 40 ms of audio.
"""

from __future__ import annotations

import math
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))  # the repository root, for `pipeline` and `training`

import librosa  # noqa: E402
import numpy as np  # noqa: E402
import skimage.data  # noqa: E402
import soundfile as sf  # noqa: E402
from PIL import Image  # noqa: E402

from pipeline.face import FaceAnalyzer  # noqa: E402
from training.data.espeak import synthesize  # noqa: E402
from training.data.visemes import speech_track_for_face  # noqa: E402

TEXT = "Hello! I am an astronaut, and this is a short demo of a talking face. My lips move with every word you hear."
VOICE = "en-us"
SAMPLE_RATE = 16000
FPS = 25
SEED = 0
PEAK = 0.89  # about -1 dBFS


def make_image(out: Path) -> np.ndarray:
    image = skimage.data.astronaut()
    Image.fromarray(image).save(out, format="PNG", optimize=True)
    return image


def make_speech(out: Path) -> tuple[np.ndarray, list[tuple[float, float, str]]]:
    utterance = synthesize(TEXT, voice=VOICE)
    audio = librosa.resample(utterance.samples, orig_sr=utterance.sample_rate, target_sr=SAMPLE_RATE)
    audio = (audio * (PEAK / max(float(np.abs(audio).max()), 1e-9))).astype(np.float32)
    sf.write(out, audio, SAMPLE_RATE, subtype="PCM_16")
    return audio, utterance.phonemes


def main() -> None:
    image = make_image(HERE / "astronaut.png")
    audio, phonemes = make_speech(HERE / "speech.wav")
    num_frames = math.ceil(len(audio) / SAMPLE_RATE * FPS)
    face = FaceAnalyzer().detect(image).points3d
    track = speech_track_for_face(face, (image.shape[1], image.shape[0]), phonemes, num_frames, FPS, seed=SEED)
    track.info.update({"text": TEXT, "voice": VOICE})
    track.save(HERE / "speech_astronaut_track.json")
    sizes = {p.name: p.stat().st_size for p in sorted(HERE.iterdir()) if p.suffix in {".png", ".wav", ".json"}}
    print(f"{len(audio) / SAMPLE_RATE:.2f} s of speech, {num_frames} frames, {len(phonemes)} phonemes")
    for name, size in sizes.items():
        print(f"  {name}: {size / 1024:.0f} KiB")


if __name__ == "__main__":
    main()

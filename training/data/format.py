"""The on-disk training format shared by every data source.

One utterance per ``.npz`` file in a dataset folder (any nesting), holding:

==============  ================  ==========================================================
key             shape / type      meaning
==============  ================  ==========================================================
``audio``       (N,) float32      speech, 16 kHz mono, as :func:`pipeline.audio.load_audio` gives
``canonical``   (T, 68, 2) f32    the face's landmarks per video frame, in canonical space
``neutral``     (68, 2) f32       the same face at rest, canonical (the model's reference)
``fps``         () float          video frame rate; ``T == ceil(N / 16000 * fps)``
``source``      () str            "clips", "espeak", "speech", ... (for per-source reporting)
``name``        () str            a stable id (clip folder, sentence number, ...)
==============  ================  ==========================================================

Audio features are not stored: they are computed (and cached) when training starts, so the same data
serves log-mel and HuBERT/wav2vec2 encoders alike.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from pipeline.audio import SAMPLE_RATE


@dataclass
class Example:
    audio: np.ndarray
    canonical: np.ndarray
    neutral: np.ndarray
    fps: float
    source: str
    name: str

    def __post_init__(self) -> None:
        self.audio = np.asarray(self.audio, dtype=np.float32)
        self.canonical = np.asarray(self.canonical, dtype=np.float32)
        self.neutral = np.asarray(self.neutral, dtype=np.float32)
        assert self.audio.ndim == 1, f"audio must be mono, got {self.audio.shape}"
        assert self.canonical.ndim == 3 and self.canonical.shape[1:] == (68, 2), self.canonical.shape
        assert self.neutral.shape == (68, 2), self.neutral.shape
        expected = math.ceil(len(self.audio) * self.fps / SAMPLE_RATE)
        assert abs(len(self.canonical) - expected) <= 1, (
            f"{self.name}: {len(self.canonical)} frames for {len(self.audio) / SAMPLE_RATE:.2f} s at {self.fps} fps"
        )

    def save(self, folder: Path) -> Path:
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / f"{self.source}-{self.name}.npz"
        np.savez_compressed(path, audio=self.audio, canonical=self.canonical, neutral=self.neutral,
                            fps=np.float64(self.fps), source=self.source, name=self.name)
        return path

    @classmethod
    def load(cls, path: Path) -> "Example":
        with np.load(path, allow_pickle=False) as data:
            return cls(data["audio"], data["canonical"], data["neutral"], float(data["fps"]),
                       str(data["source"]), str(data["name"]))


def find_examples(folder: Path) -> list[Path]:
    """Every example file under ``folder``, in a stable order."""
    return sorted(Path(folder).rglob("*.npz"))

"""Reading a voice recording and turning it into features at the video frame rate.

:func:`load_audio` accepts a file path or the ``(sample_rate, samples)`` tuple that Gradio's Audio
component gives, and returns float32 mono samples at :data:`SAMPLE_RATE`. WAV, FLAC, OGG and MP3 are
read with ``soundfile``; anything else (M4A/AAC, MP4, WebM, ...) is decoded by the ffmpeg binary that
``imageio-ffmpeg`` bundles. Every problem with the recording raises :class:`~pipeline.errors.AudioError`
with one readable sentence.

Two feature extractors produce one row per video frame, for any frame rate:

* :class:`LogMelFeatures` (default): 80-band log-mel spectrogram, numpy and librosa only.
* :class:`PretrainedSpeechFeatures`: hidden states of a HuBERT or wav2vec2 encoder from ``transformers``
  (imported only when this class is used, so importing this module stays light).
"""

from __future__ import annotations

import io
import logging
import math
import os
import subprocess
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import imageio_ffmpeg
import librosa
import numpy as np
import soundfile as sf

from .errors import AudioError

if TYPE_CHECKING:
    import torch

logger = logging.getLogger(__name__)

#: Sample rate of everything :func:`load_audio` returns and the features expect.
SAMPLE_RATE = 16000

#: Longest recording accepted, in seconds. Change with the environment variable
#: TALKING_FACE_MAX_AUDIO_SECONDS.
MAX_AUDIO_SECONDS = float(os.environ.get("TALKING_FACE_MAX_AUDIO_SECONDS", 600 * 2))

#: Shortest recording accepted, in seconds.
MIN_AUDIO_SECONDS = 0.2
#: File name endings taken as audio when a folder is scanned (any format ffmpeg reads also loads).
AUDIO_SUFFIXES = frozenset({".wav", ".mp3", ".m4a", ".aac", ".ogg", ".opus", ".flac"})

#: Recordings whose loudest sample is below this level (dB relative to full scale) count as silent.
SILENCE_DBFS = -60.0

#: Longest time ffmpeg may spend decoding one file.
FFMPEG_TIMEOUT_SECONDS = 300

#: Containers ffmpeg may open. Playlists (HLS, concat, ...) are left out so that a crafted upload cannot
#: make ffmpeg read other files or reach the network.
_FFMPEG_FORMATS = (
    "mov,mp4,m4a,3gp,3g2,mj2,matroska,webm,aac,mp3,ogg,flac,wav,w64,aiff,caf,amr,asf,avi,"
    "mpeg,mpegts,flv,ac3,eac3"
)

_READ_BLOCK_FRAMES = 1 << 18

AudioInput = str | os.PathLike | tuple[int, np.ndarray]


class AudioFeatures(Protocol):
    """Anything that turns 16 kHz mono samples into one ``dim``-sized row per video frame."""

    dim: int

    def __call__(self, samples: np.ndarray, fps: float = 25.0) -> np.ndarray:
        """Return ``(num_video_frames(len(samples), fps), dim)`` float32 features."""
        ...


# ----------------------------------------------------------------------------------------------------
# Loading


def load_audio(source: AudioInput, max_seconds: float = MAX_AUDIO_SECONDS) -> np.ndarray:
    """Load a recording as float32 mono samples at :data:`SAMPLE_RATE`.

    ``source`` is a path or a Gradio-style ``(sample_rate, samples)`` tuple whose samples are integer
    or float, shaped ``(N,)`` or ``(N, channels)``. Channels are averaged and the result is resampled.
    Raises :class:`AudioError` for a missing, empty, unreadable, too short, too long or silent
    recording, or one with NaN/infinite samples.
    """
    if not 0 < max_seconds < math.inf:
        raise ValueError(f"max_seconds must be a positive finite number, got {max_seconds!r}.")
    if source is None:
        raise AudioError("No audio was given; upload or record a voice clip.")
    if isinstance(source, tuple):
        mono, rate = _mono_from_tuple(source)
        subject = "The recording"
    else:
        path = Path(source)
        subject = f"The recording in '{path.name}'"
        mono, rate = _read_file(path, subject, max_seconds)
    _check_samples(mono, rate, subject, max_seconds)
    if rate != SAMPLE_RATE:
        mono = librosa.resample(mono, orig_sr=rate, target_sr=SAMPLE_RATE, res_type="soxr_hq")
    return np.ascontiguousarray(mono, dtype=np.float32)


def _mono_from_tuple(source: tuple) -> tuple[np.ndarray, int]:
    """Validate a ``(sample_rate, samples)`` tuple and return float mono samples and the rate."""
    if len(source) != 2:
        raise AudioError("Recorded audio must be a (sample rate, samples) pair.")
    rate, samples = source
    if isinstance(rate, bool) or not isinstance(rate, (int, np.integer)) or rate <= 0:
        raise AudioError(f"The recording has an invalid sample rate ({rate!r}).")
    samples = np.asarray(samples)
    if samples.ndim not in (1, 2) or (samples.ndim == 2 and samples.shape[1] == 0):
        raise AudioError(
            f"The recording must be shaped (samples,) or (samples, channels); got shape {samples.shape}."
        )
    return _downmix(_to_float(samples)), int(rate)


def _to_float(samples: np.ndarray) -> np.ndarray:
    """Scale integer PCM to [-1, 1) float32; pass float samples through as float32."""
    kind = samples.dtype.kind
    if kind == "f":
        return samples.astype(np.float32, copy=False)
    if kind == "i":
        return samples.astype(np.float32) / np.float32(-np.iinfo(samples.dtype).min)
    if kind == "u":
        middle = np.float32((int(np.iinfo(samples.dtype).max) + 1) // 2)
        return (samples.astype(np.float32) - middle) / middle
    raise AudioError(f"The recording has an unsupported sample type ({samples.dtype}).")


def _downmix(samples: np.ndarray) -> np.ndarray:
    """Average the channels of ``(N, channels)`` samples; ``(N,)`` is returned unchanged."""
    return samples if samples.ndim == 1 else samples.mean(axis=1, dtype=np.float32)


def _read_file(path: Path, subject: str, max_seconds: float) -> tuple[np.ndarray, int]:
    """Decode a file to float mono samples with soundfile, or with ffmpeg where soundfile cannot."""
    name = f"'{path.name}'"
    if not path.is_file():
        raise AudioError(f"Audio {name} is a folder, not a file." if path.is_dir()
                         else f"Audio file {name} does not exist.")
    if path.stat().st_size == 0:
        raise AudioError(f"Audio file {name} is empty (0 bytes).")
    decoded = _read_with_soundfile(path, subject, max_seconds)
    if decoded is None:
        au_stream = io.BytesIO(_decode_with_ffmpeg(path, name, max_seconds))
        decoded = _read_with_soundfile(au_stream, subject, max_seconds)
    if decoded is None:
        raise _unreadable(name)
    return decoded


def _unreadable(name: str) -> AudioError:
    """The error for a file that neither soundfile nor ffmpeg can decode."""
    return AudioError(
        f"Audio file {name} is not a recording we can read (try WAV, MP3, FLAC, OGG or M4A), "
        "or it is damaged."
    )


def _read_with_soundfile(
    source: Path | io.BytesIO, subject: str, max_seconds: float
) -> tuple[np.ndarray, int] | None:
    """Read block by block, downmixing as we go; ``None`` when libsndfile cannot decode the data.

    The duration in the header is checked before anything is decoded, so very long files are refused
    at once.
    """
    try:
        with sf.SoundFile(source) as audio:
            _check_not_too_long(audio.frames / audio.samplerate, subject, max_seconds)
            blocks = [
                _downmix(block)
                for block in audio.blocks(blocksize=_READ_BLOCK_FRAMES, dtype="float32", always_2d=True)
            ]
            rate = audio.samplerate
    except sf.SoundFileRuntimeError as exc:
        logger.debug("soundfile could not read %s: %s", source, exc)
        return None
    return (np.concatenate(blocks) if blocks else np.zeros(0, np.float32)), rate


def _decode_with_ffmpeg(path: Path, name: str, max_seconds: float) -> bytes:
    """Decode the first audio stream with imageio-ffmpeg's bundled ffmpeg to a 16 kHz float Sun AU stream.

    The channels are kept (ffmpeg's own downmix is not an average) and the AU header carries their
    count. At most ``max_seconds + 1`` seconds are decoded: enough to tell that a file is too long
    without holding all of it in memory.
    """
    command = [
        imageio_ffmpeg.get_ffmpeg_exe(),
        "-nostdin",
        "-v", "error",
        "-protocol_whitelist", "file",
        "-format_whitelist", _FFMPEG_FORMATS,
        "-i", f"file:{path.resolve()}",
        "-map", "0:a:0",
        "-vn",
        "-t", f"{max_seconds + 1:.3f}",
        "-ar", str(SAMPLE_RATE),
        "-c:a", "pcm_f32be",
        "-f", "au",
        "-",
    ]  # fmt: skip
    try:
        result = subprocess.run(command, capture_output=True, timeout=FFMPEG_TIMEOUT_SECONDS, check=False)
    except subprocess.TimeoutExpired:
        raise AudioError(
            f"Decoding audio file {name} took more than {FFMPEG_TIMEOUT_SECONDS} s; convert it to WAV first."
        ) from None
    if result.returncode != 0:
        logger.debug("ffmpeg could not read %s: %s", path, result.stderr.decode(errors="replace"))
        raise _unreadable(name)
    return result.stdout


def _check_samples(mono: np.ndarray, rate: int, subject: str, max_seconds: float) -> None:
    """Refuse recordings with invalid samples, or that are too long, too short or silent."""
    if not np.isfinite(mono).all():
        raise AudioError(f"{subject} contains invalid samples (NaN or infinity) and cannot be used.")
    seconds = len(mono) / rate
    _check_not_too_long(seconds, subject, max_seconds)
    if seconds < MIN_AUDIO_SECONDS:
        raise AudioError(
            f"{subject} is too short ({seconds:.2f} s); at least {MIN_AUDIO_SECONDS:g} s of speech is needed."
        )
    peak = float(np.abs(mono).max())
    if peak < 10 ** (SILENCE_DBFS / 20):
        level = f"{20 * math.log10(peak):.0f} dBFS" if peak > 0 else "digital silence"
        raise AudioError(
            f"{subject} is silent (its loudest sample is {level}); "
            "check the microphone or choose another file."
        )


def _check_not_too_long(seconds: float, subject: str, max_seconds: float) -> None:
    """Refuse a recording longer than ``max_seconds``, naming the limit and how to change it."""
    if seconds > max_seconds:
        raise AudioError(
            f"{subject} is longer than the limit of {max_seconds:g} s; shorten it or raise the limit "
            "with the environment variable TALKING_FACE_MAX_AUDIO_SECONDS."
        )


def write_wav(path: str | os.PathLike, samples: np.ndarray, sample_rate: int = SAMPLE_RATE) -> None:
    """Write samples (``(N,)`` or ``(N, channels)``, float in [-1, 1]) as 16-bit PCM WAV.

    Values outside [-1, 1] are clipped rather than wrapped.
    """
    sf.write(path, np.clip(np.asarray(samples, dtype=np.float32), -1.0, 1.0), sample_rate, subtype="PCM_16")


# ----------------------------------------------------------------------------------------------------
# Timing


def audio_duration(samples: np.ndarray) -> float:
    """Duration in seconds of samples at :data:`SAMPLE_RATE`."""
    return len(samples) / SAMPLE_RATE


def num_video_frames(num_samples: int, fps: float) -> int:
    """Number of video frames needed to cover ``num_samples`` at ``fps`` (at least one).

    A margin far below one audio sample keeps float rounding (e.g. at 29.97 fps) from adding a frame.
    """
    if not 0 < fps < math.inf:
        raise ValueError(f"fps must be a positive finite number, got {fps!r}.")
    if num_samples < 0:
        raise ValueError(f"num_samples must not be negative, got {num_samples}.")
    return max(1, math.ceil(num_samples * fps / SAMPLE_RATE - 1e-6))


def _video_frame_count(samples: np.ndarray, fps: float) -> int:
    """Validate 1-D samples for feature extraction and return how many video frames they cover."""
    if samples.ndim != 1 or len(samples) == 0:
        raise ValueError(f"Expected non-empty 1-D samples at {SAMPLE_RATE} Hz, got shape {samples.shape}.")
    return num_video_frames(len(samples), fps)


def _interpolate_rows(values: np.ndarray, positions: np.ndarray) -> np.ndarray:
    """Interpolate the rows of ``values`` (F, D) linearly at fractional ``positions``, clamped at the ends."""
    positions = np.clip(positions, 0, len(values) - 1)
    low = np.floor(positions).astype(np.int64)
    high = np.minimum(low + 1, len(values) - 1)
    weight = (positions - low)[:, None]
    return values[low] * (1 - weight) + values[high] * weight


# ----------------------------------------------------------------------------------------------------
# Features


class LogMelFeatures:
    """Normalised log-mel spectrogram, four sub-frames per video frame (``dim`` = 320 at any fps).

    80 mel bands from 25 ms windows every 10 ms; ``log10`` of the mel power (floored at 1e-10), then
    each band is normalised to zero mean and unit variance over the utterance, so the overall loudness
    hardly matters. Each output row stacks the 100 Hz mel sequence interpolated at the centres of four
    equal slices of that video frame.
    """

    n_mels = 80
    sub_frames = 4
    dim = n_mels * sub_frames
    _n_fft = 400  # 25 ms
    _hop = 160  # 10 ms
    _power_floor = 1e-10
    _min_band_std = 0.01  # log10 units (0.1 dB): flatter bands are not blown up to unit variance

    def __call__(self, samples: np.ndarray, fps: float = 25.0) -> np.ndarray:
        """Return ``(num_video_frames(len(samples), fps), 320)`` float32 features."""
        samples = np.asarray(samples, dtype=np.float32)
        frames = _video_frame_count(samples, fps)
        log_mel = self._normalised_log_mel(samples)
        slice_centres = (np.arange(frames * self.sub_frames) + 0.5) / (self.sub_frames * fps)
        rows = _interpolate_rows(log_mel, slice_centres * SAMPLE_RATE / self._hop)
        return rows.reshape(frames, self.dim).astype(np.float32)

    def _normalised_log_mel(self, samples: np.ndarray) -> np.ndarray:
        """``(mel frames, 80)`` log-mel, frame ``i`` centred at ``i * 10 ms``, normalised per band."""
        padded = np.pad(samples, (0, max(0, self._n_fft - len(samples))))
        mel = librosa.feature.melspectrogram(
            y=padded, sr=SAMPLE_RATE, n_fft=self._n_fft, hop_length=self._hop, n_mels=self.n_mels
        ).T
        log_mel = np.log10(np.maximum(mel, self._power_floor))
        std = np.maximum(log_mel.std(axis=0), self._min_band_std)
        return (log_mel - log_mel.mean(axis=0)) / std


class PretrainedSpeechFeatures:
    """Hidden states of a HuBERT / wav2vec2 encoder, interpolated to the video frames.

    ``model`` is a Hub model id or a local folder holding the model and its feature extractor config.
    With ``local_files_only=True`` nothing is fetched from the network. ``layer`` indexes the hidden
    states (0 = the input to the first transformer layer, -1 = the last layer). Recordings longer than
    ``chunk_seconds`` are encoded in chunks that see ``overlap_seconds`` of extra context on each side;
    each encoder frame is taken from the chunk where it lies away from the edges, so memory stays
    bounded. Chunked output is close to, not equal to, a single pass: the encoder's group norm and
    attention see less of the recording.
    """

    def __init__(
        self,
        model: str | os.PathLike,
        *,
        layer: int = -1,
        device: str = "cpu",
        dtype: str | torch.dtype = "float32",
        local_files_only: bool = False,
        chunk_seconds: float = 30.0,
        overlap_seconds: float = 2.0,
    ) -> None:
        import torch
        from transformers import AutoFeatureExtractor, AutoModel

        self.extractor = AutoFeatureExtractor.from_pretrained(model, local_files_only=local_files_only)
        if getattr(self.extractor, "sampling_rate", SAMPLE_RATE) != SAMPLE_RATE:
            raise ValueError(
                f"Model {model} expects {self.extractor.sampling_rate} Hz audio, not {SAMPLE_RATE}."
            )
        self.dtype = getattr(torch, dtype) if isinstance(dtype, str) else dtype
        self.device = torch.device(device)
        self.model = AutoModel.from_pretrained(model, local_files_only=local_files_only, use_safetensors=True)
        self.model.to(device=self.device, dtype=self.dtype).eval()
        config = self.model.config
        if not -(config.num_hidden_layers + 1) <= layer <= config.num_hidden_layers:
            raise ValueError(f"layer must be within ±{config.num_hidden_layers} for this model, not {layer}.")
        self.layer = layer
        self.dim: int = config.hidden_size
        self._stride = math.prod(config.conv_stride)
        self._receptive_field = 1 + sum(
            (kernel - 1) * math.prod(config.conv_stride[:i]) for i, kernel in enumerate(config.conv_kernel)
        )
        self._chunk_samples = round(chunk_seconds * SAMPLE_RATE)
        self._context_frames = round(overlap_seconds * SAMPLE_RATE / self._stride)
        frames_per_chunk = (self._chunk_samples - self._receptive_field) // self._stride + 1
        self._step_frames = frames_per_chunk - 2 * self._context_frames
        if self._step_frames < 1:
            raise ValueError("chunk_seconds is too small for overlap_seconds; make it longer.")

    def __call__(self, samples: np.ndarray, fps: float = 25.0) -> np.ndarray:
        """Return ``(num_video_frames(len(samples), fps), dim)`` float32 features."""
        samples = np.asarray(samples, dtype=np.float32)
        frames = _video_frame_count(samples, fps)
        hidden = self._encode(self._prepare(samples))
        video_centres = (np.arange(frames) + 0.5) / fps * SAMPLE_RATE
        positions = (video_centres - (self._receptive_field - 1) / 2) / self._stride
        return _interpolate_rows(hidden, positions).astype(np.float32)

    def _prepare(self, samples: np.ndarray) -> np.ndarray:
        """Apply the model's input normalisation to the whole recording; pad to one receptive field."""
        values = self.extractor(samples, sampling_rate=SAMPLE_RATE, return_tensors="np")["input_values"][0]
        return np.pad(values.astype(np.float32), (0, max(0, self._receptive_field - len(values))))

    def _encode(self, values: np.ndarray) -> np.ndarray:
        """Encoder frames ``(F, dim)`` for the whole input, frame ``j`` starting at sample ``j * stride``."""
        if len(values) <= self._chunk_samples:
            return self._run(values)
        total = (len(values) - self._receptive_field) // self._stride + 1
        pieces = []
        for first in range(0, total, self._step_frames):
            last = min(first + self._step_frames, total)
            begin = max(0, first - self._context_frames)
            end = (last + self._context_frames - 1) * self._stride + self._receptive_field
            hidden = self._run(values[begin * self._stride : end])
            pieces.append(hidden[first - begin : last - begin])
        return np.concatenate(pieces)

    def _run(self, values: np.ndarray) -> np.ndarray:
        """One forward pass; returns the chosen layer's hidden states as float32 ``(frames, dim)``."""
        import torch

        inputs = torch.from_numpy(np.ascontiguousarray(values))[None].to(self.device, self.dtype)
        with torch.inference_mode():
            output = self.model(inputs, output_hidden_states=True)
        return output.hidden_states[self.layer][0].float().cpu().numpy()


def make_audio_features(spec: str | None = None, **kw: Any) -> AudioFeatures:
    """Build the feature extractor named by ``spec``.

    ``None`` or ``"logmel"`` gives :class:`LogMelFeatures`; anything else is a model id or folder for
    :class:`PretrainedSpeechFeatures`, which receives the keyword arguments.
    """
    if spec is None or spec == "logmel":
        return LogMelFeatures(**kw)
    return PretrainedSpeechFeatures(spec, **kw)

"""Speech with phoneme timings from libespeak-ng, through ``ctypes``.

Training and example-making use this to get audio whose phonemes are known exactly; the app never needs it.
The library is loaded and initialised once per process (espeak-ng keeps global state, so calls are
serialised with a lock)::

    utt = synthesize("Hello there.", voice="en-us")
    utt.samples, utt.sample_rate, utt.phonemes  # float32 in [-1, 1], 22050, [(start_s, end_s, "h"), ...]

Phoneme symbols are espeak's own ASCII mnemonics (``"h"``, ``"@"``, ``"l"``, ``"oU"``, ``"_:"`` ...), not IPA.
Pauses are reported with symbols starting with ``"_"``.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import threading
from dataclasses import dataclass, field

import numpy as np

# --- constants from <espeak-ng/speak_lib.h> (API revision 12) ---------------------------------------
AUDIO_OUTPUT_SYNCHRONOUS = 2
espeakINITIALIZE_PHONEME_EVENTS = 0x0001
espeakCHARS_UTF8 = 1
espeakENDPAUSE = 0x1000
POS_CHARACTER = 1
espeakRATE = 1
espeakPITCH = 3
EE_OK = 0
espeakEVENT_LIST_TERMINATED = 0
espeakEVENT_END = 5
espeakEVENT_MSG_TERMINATED = 6
espeakEVENT_PHONEME = 7

LIBRARY_NAMES = ("libespeak-ng.so.1", "libespeak-ng.so", "libespeak-ng.dylib", "libespeak-ng.1.dylib")


class _EventId(ctypes.Union):
    _fields_ = [("number", ctypes.c_int), ("name", ctypes.c_char_p), ("string", ctypes.c_char * 8)]


class _Event(ctypes.Structure):
    """``espeak_EVENT``; ctypes applies the C alignment (the pointer and the union start at 8-byte offsets)."""

    _fields_ = [
        ("type", ctypes.c_int),
        ("unique_identifier", ctypes.c_uint),
        ("text_position", ctypes.c_int),
        ("length", ctypes.c_int),
        ("audio_position", ctypes.c_int),  # ms from the start of the message
        ("sample", ctypes.c_int),
        ("user_data", ctypes.c_void_p),
        ("id", _EventId),
    ]


_SynthCallback = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.POINTER(ctypes.c_short), ctypes.c_int, ctypes.POINTER(_Event))


@dataclass
class Utterance:
    """``samples``: mono float32 in [-1, 1]; ``phonemes``: ``(start_s, end_s, symbol)`` in time order."""

    samples: np.ndarray
    sample_rate: int
    phonemes: list[tuple[float, float, str]] = field(default_factory=list)

    @property
    def duration(self) -> float:
        return len(self.samples) / self.sample_rate


class _Espeak:
    """The loaded library, its sample rate and the callback that collects one message's output."""

    def __init__(self) -> None:
        self.lib = _load_library()
        lib = self.lib
        lib.espeak_Initialize.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_char_p, ctypes.c_int]
        lib.espeak_Initialize.restype = ctypes.c_int
        lib.espeak_SetSynthCallback.argtypes = [_SynthCallback]
        lib.espeak_SetSynthCallback.restype = None
        lib.espeak_SetVoiceByName.argtypes = [ctypes.c_char_p]
        lib.espeak_SetVoiceByName.restype = ctypes.c_int
        lib.espeak_SetParameter.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int]
        lib.espeak_SetParameter.restype = ctypes.c_int
        lib.espeak_Synth.argtypes = [
            ctypes.c_void_p, ctypes.c_size_t, ctypes.c_uint, ctypes.c_int, ctypes.c_uint, ctypes.c_uint,
            ctypes.POINTER(ctypes.c_uint), ctypes.c_void_p,
        ]
        lib.espeak_Synth.restype = ctypes.c_int
        lib.espeak_Synchronize.argtypes = []
        lib.espeak_Synchronize.restype = ctypes.c_int

        self.sample_rate = lib.espeak_Initialize(AUDIO_OUTPUT_SYNCHRONOUS, 0, None, espeakINITIALIZE_PHONEME_EVENTS)
        if self.sample_rate <= 0:
            raise RuntimeError("espeak-ng could not be initialised (is its data folder, espeak-ng-data, installed?).")
        self.lock = threading.Lock()
        self._chunks: list[np.ndarray] = []
        self._events: list[tuple[int, str]] = []
        self._callback = _SynthCallback(self._collect)  # kept referenced: the C side holds the pointer
        lib.espeak_SetSynthCallback(self._callback)

    def _collect(self, wav, num_samples, events) -> int:
        if num_samples > 0 and wav:
            self._chunks.append(np.ctypeslib.as_array(wav, shape=(num_samples,)).copy())
        i = 0
        while events[i].type != espeakEVENT_LIST_TERMINATED:
            event = events[i]
            if event.type == espeakEVENT_PHONEME:
                symbol = bytes(event.id.string).split(b"\0", 1)[0].decode("utf-8", errors="replace")
                self._events.append((int(event.audio_position), symbol))
            i += 1
        return 0  # 0: continue synthesis

    def synthesize(self, text: str, voice: str, rate: int, pitch: int) -> Utterance:
        with self.lock:
            if self.lib.espeak_SetVoiceByName(voice.encode("utf-8")) != EE_OK:
                raise ValueError(f"espeak-ng has no voice named {voice!r} (see `espeak-ng --voices`).")
            self.lib.espeak_SetParameter(espeakRATE, int(rate), 0)
            self.lib.espeak_SetParameter(espeakPITCH, int(pitch), 0)
            self._chunks, self._events = [], []
            data = text.encode("utf-8") + b"\0"
            buffer = ctypes.create_string_buffer(data, len(data))
            error = self.lib.espeak_Synth(buffer, len(data), 0, POS_CHARACTER, 0, espeakCHARS_UTF8 | espeakENDPAUSE,
                                          None, None)
            if error != EE_OK:
                raise RuntimeError(f"espeak_Synth failed with error {error}.")
            self.lib.espeak_Synchronize()
            chunks, events = self._chunks, self._events
            self._chunks, self._events = [], []
        pcm = np.concatenate(chunks) if chunks else np.zeros(0, dtype=np.int16)
        samples = (pcm.astype(np.float32) / 32768.0).astype(np.float32)
        return Utterance(samples, self.sample_rate, _phoneme_intervals(events, len(samples) / self.sample_rate))


def _phoneme_intervals(events: list[tuple[int, str]], duration: float) -> list[tuple[float, float, str]]:
    """Turn (start ms, symbol) events into (start_s, end_s, symbol), each ending where the next begins."""
    events = sorted(events, key=lambda e: e[0])  # stable: keeps espeak's order at equal times
    out: list[tuple[float, float, str]] = []
    for k, (ms, symbol) in enumerate(events):
        start = min(ms / 1000.0, duration)
        end = min(events[k + 1][0] / 1000.0, duration) if k + 1 < len(events) else duration
        if end > start and symbol:
            out.append((start, end, symbol))
    return out


def _load_library() -> ctypes.CDLL:
    names = list(LIBRARY_NAMES)
    found = ctypes.util.find_library("espeak-ng")
    if found:
        names.insert(0, found)
    for name in names:
        try:
            return ctypes.CDLL(name)
        except OSError:
            continue
    raise RuntimeError(
        "libespeak-ng is not installed; install espeak-ng (e.g. `apt-get install espeak-ng`, "
        "or `brew install espeak-ng` on macOS) to synthesise speech."
    )


_ENGINE: _Espeak | None = None
_ENGINE_LOCK = threading.Lock()


def _engine() -> _Espeak:
    global _ENGINE
    with _ENGINE_LOCK:
        if _ENGINE is None:
            _ENGINE = _Espeak()
        return _ENGINE


def is_available() -> bool:
    """Whether libespeak-ng can be loaded (without initialising it)."""
    try:
        _load_library()
    except RuntimeError:
        return False
    return True


def synthesize(text: str, voice: str = "en", rate: int = 160, pitch: int = 50) -> Utterance:
    """Speak ``text`` with espeak-ng; return the audio and its phonemes with start and end times (seconds).

    ``rate`` is in words per minute (80-450), ``pitch`` 0-100 (50 normal).
    """
    if not text.strip():
        raise ValueError("Nothing to say: the text is empty.")
    return _engine().synthesize(text, voice, rate, pitch)

"""Festival speech synthesis with segment (phone) times, through the ``festival`` program in batch mode.

Festival's English voices use the "radio" phone set (ARPAbet in lower case, ``ax`` for schwa, ``pau`` for
silence); their segment end times come from the utterance's ``Segment`` relation, so the phones are exactly
where the audio has them. Debian / Ubuntu: ``apt-get install festival festvox-kallpc16k festvox-kdlpc16k
festvox-us-slt-hts`` (three US-English voices: two male diphone voices and a female HTS voice).
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from pathlib import Path

import soundfile as sf

from training.data.espeak import Utterance
from training.data.prepare_speech import PAUSE, arpabet_symbol

#: Voices tried, as Festival names them (``voice_<name>``); only installed ones are used.
VOICES = ("kal_diphone", "ked_diphone", "cmu_us_slt_arctic_hts")
#: Festival's radio phones that are not plain ARPAbet.
RADIO_TO_ARPABET = {"ax": "AH0", "pau": "SIL", "h#": "SIL", "brth": "SIL"}

_SCRIPT = """(voice_{voice})
(Parameter.set 'Duration_Stretch {stretch})
(set! utt (Utterance Text "{text}"))
(utt.synth utt)
(utt.save.wave utt "{wav}" 'riff)
(mapcar (lambda (s) (format t "%s %f\\n" (item.name s) (item.feat s "end"))) (utt.relation.items utt 'Segment))
"""


def is_available() -> bool:
    return shutil.which("festival") is not None


def installed_voices() -> list[str]:
    """The :data:`VOICES` this machine's Festival has."""
    if not is_available():
        return []
    found = subprocess.run(["festival", "-b", "(print (voice.list))"], capture_output=True, text=True, timeout=60)
    names = set(found.stdout.replace("(", " ").replace(")", " ").split())
    return [voice for voice in VOICES if voice in names]


def symbol(phone: str, duration: float) -> str:
    """A Festival radio phone as the espeak symbol :mod:`training.data.visemes` knows (silence -> pause)."""
    return arpabet_symbol(RADIO_TO_ARPABET.get(phone, phone), 0.0 if phone == "ax" else duration)


def synthesize(text: str, voice: str = "kal_diphone", stretch: float = 1.0) -> Utterance:
    """Speak ``text`` with Festival's ``voice``; ``stretch`` > 1 speaks slower (diphone voices; HTS voices keep
    their own timing). Phones are ``(start_s, end_s, symbol)`` in espeak symbols, pauses as ``_``."""
    if not is_available():
        raise RuntimeError("festival is not installed (apt-get install festival festvox-kallpc16k).")
    clean = "".join(c for c in text if c.isalnum() or c in " ,.?!'-")  # nothing that could end the Scheme string
    with tempfile.TemporaryDirectory(prefix="festival-") as folder:
        wav = Path(folder) / "speech.wav"
        script = Path(folder) / "say.scm"
        script.write_text(_SCRIPT.format(voice=voice, stretch=float(stretch), text=clean, wav=wav))
        result = subprocess.run(["festival", "-b", str(script)], capture_output=True, text=True, timeout=120)
        if result.returncode != 0 or not wav.is_file():
            raise RuntimeError(f"festival failed for voice {voice}: {result.stderr.strip()[:300]}")
        samples, rate = sf.read(wav, dtype="float32", always_2d=True)
    phones, start = [], 0.0
    for line in result.stdout.splitlines():
        parts = line.split()
        if len(parts) != 2:
            continue
        end = float(parts[1])
        phones.append((start, end, symbol(parts[0], end - start)))
        start = end
    return Utterance(samples.mean(axis=1), int(rate), merge_pauses(phones))


def merge_pauses(phones: list[tuple[float, float, str]]) -> list[tuple[float, float, str]]:
    """Join neighbouring pauses into one."""
    out: list[tuple[float, float, str]] = []
    for start, end, name in phones:
        if out and name == PAUSE and out[-1][2] == PAUSE:
            out[-1] = (out[-1][0], end, PAUSE)
        else:
            out.append((start, end, name))
    return out

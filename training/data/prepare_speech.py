"""Real speech without video: phone timings from PocketSphinx, lip motion from the visemes.

    python training/data/prepare_speech.py --speech ../shared/data/speech --out data/speech \\
        --transcripts ../shared/data/speech/LJSpeech-LICENSE_NOTE.txt

Real recordings teach the audio encoder what real voices, rooms and microphones sound like; their landmark
tracks are made as for the espeak corpus, from phone timings. For each audio file under ``--speech``
(recursively; wav, flac, ogg, mp3, m4a):

1. the audio via :func:`pipeline.audio.load_audio` (16 kHz mono);
2. cut into pieces of 2-8 s at silences (:func:`split_points`: ``librosa.effects.split`` finds the
   pauses, a small dynamic programme picks cuts in the longest ones, at quiet frames if speech runs on);
3. phone timings from PocketSphinx 5 (its bundled US-English acoustic model):

   * **aligned**: when a transcript is known, forced alignment of the whole file to it
     (``Decoder.set_align_text``, then a second pass with ``set_alignment`` / ``get_alignment`` for
     phones). Numbers are spelt out; words missing from CMUdict get a pronunciation from espeak-ng
     when it is installed, else the file is recognised instead;
   * **recognised**: otherwise phone-loop recognition of each piece with the bundled phone language model
     (``en-us-phone.lm.bin``; English phones, so only approximate for other languages, which is still
     good enough for when and how wide the mouth opens);

   then pauses longer than 0.15 s that the audio shows (``librosa.effects.split``) are carved out, as the
   aligner lets the phone before a pause run on through it;
4. the ARPAbet phones become espeak symbols (:data:`ARPABET_TO_ESPEAK`; stress digits stripped,
   SIL and noise -> pause; a long ``AH`` is the open strut vowel, a short one a schwa);
5. ``--faces-per-utterance`` examples per piece, each with its own
   :func:`training.data.faces.random_neutral_face`, ``intensity`` 0.7-1.3 and
   :func:`~training.data.faces.natural_upper_motion`, motion from
   :func:`training.data.visemes.phonemes_to_motion`; written as :class:`~training.data.format.Example`
   ``source="speech"``, ``name=f"{file}-{piece:02d}-f{k}"``.

Transcripts (``--transcripts``, repeatable) are read from lines ``<id> "<text>"`` (as in the LJSpeech note
shipped with the project's data), LJSpeech ``metadata.csv`` lines ``<id>|<text>[|<normalised>]``, or a
``<stem>.txt`` / ``<stem>.lab`` file beside the audio. Only landmarks and audio arrays are written.
Needs the ``pocketsphinx`` Python package (5.x); espeak-ng is optional (pronunciations of unknown words).
"""

from __future__ import annotations

import argparse
import re
import sys
import time
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional, Sequence

import librosa
import numpy as np

if __package__ in (None, ""):  # run as a script: make the repository importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from pipeline.audio import SAMPLE_RATE, load_audio, num_video_frames  # noqa: E402
from pipeline.errors import AudioError  # noqa: E402
from training.data.faces import natural_upper_motion, random_neutral_face  # noqa: E402
from training.data.format import Example  # noqa: E402
from training.data.text import number_words  # noqa: E402
from training.data.visemes import phonemes_to_motion  # noqa: E402

SOURCE = "speech"
AUDIO_SUFFIXES = {".wav", ".flac", ".ogg", ".mp3", ".m4a", ".opus"}
PAUSE = "_"
INTENSITY_RANGE = (0.7, 1.3)
#: PocketSphinx's frame rate (frames per second of its features).
PS_FRAME_RATE = 100.0
#: Silences at least this long in the audio become pauses in the phone timings.
MIN_PAUSE_S = 0.15
#: An ``AH`` at least this long is the stressed strut vowel ("but"); shorter, a schwa ("about").
LONG_AH_S = 0.09

#: The 39 CMU / ARPAbet phones (stress digits stripped) as the espeak symbols :mod:`training.data.visemes`
#: knows. ``AH`` covers both the strut vowel and schwa (see :data:`LONG_AH_S`).
ARPABET_TO_ESPEAK: dict[str, str] = {
    "AA": "A:", "AE": "a", "AH": "@", "AO": "O:", "AW": "aU", "AY": "aI", "EH": "E", "ER": "3:", "EY": "eI",
    "IH": "I", "IY": "i:", "OW": "oU", "OY": "OI", "UH": "U", "UW": "u:",
    "B": "b", "CH": "tS", "D": "d", "DH": "D", "F": "f", "G": "g", "HH": "h", "JH": "dZ", "K": "k", "L": "l",
    "M": "m", "N": "n", "NG": "N", "P": "p", "R": "r", "S": "s", "SH": "S", "T": "t", "TH": "T", "V": "v",
    "W": "w", "Y": "j", "Z": "z", "ZH": "Z",
}
#: espeak (English) symbols to ARPAbet, for pronouncing words CMUdict lacks.
ESPEAK_TO_ARPABET: dict[str, str] = {
    **{v: k for k, v in ARPABET_TO_ESPEAK.items()},
    "@": "AH", "@2": "AH", "@5": "AH", "a#": "AH", "V": "AH", "3": "ER", "3:": "ER", "A": "AA", "0": "AA",
    "aa": "AE", "O": "AO", "o": "OW", "e": "EH", "i": "IY", "I2": "IH", "I#": "IH", "u": "UW", "t#": "T",
    "n-": "N", "r-": "R", "@L": "AH L", "e@": "EH R", "i@": "IY AH", "i@3": "IY R", "U@": "UH R",
    "O@": "AO R", "o@": "OW R", "A@": "AA R", "aI@": "AY AH", "aI3": "AY ER", "aU@": "AW AH", "x": "K",
    "?": "",
}


def arpabet_symbol(phone: str, duration: float = 0.0) -> str:
    """The espeak symbol for an ARPAbet phone (``"AH0"`` -> ``"@"``); silence and noise -> pause."""
    base = re.sub(r"\d+$", "", phone.strip().upper())
    if base == "AH" and duration >= LONG_AH_S:
        return "V"
    return ARPABET_TO_ESPEAK.get(base, PAUSE)


# --- transcripts ----------------------------------------------------------------------------------------


def read_transcripts(paths: Sequence[Path]) -> dict[str, str]:
    """``{utterance id: text}`` from ``id "text"`` lines / runs or ``id|text|normalised`` lines."""
    out: dict[str, str] = {}
    for path in paths:
        text = Path(path).read_text(encoding="utf-8", errors="replace")
        for line in text.splitlines():
            parts = line.split("|")
            if len(parts) in (2, 3) and parts[0].strip() and " " not in parts[0].strip():
                out[parts[0].strip()] = (parts[2] if len(parts) == 3 and parts[2].strip() else parts[1]).strip()
        for match in re.finditer(r'([A-Za-z0-9_][\w.-]*)\s+"([^"]+)"', text):
            out[match.group(1)] = match.group(2)
    return out


def spell_number(digits: str) -> str:
    """"1455" -> "fourteen fifty five" (years), "42" -> "forty two", "2000" -> "two thousand"."""
    n = int(digits)
    if len(digits) == 4 and 1100 <= n <= 1999 or (2010 <= n <= 2099):
        head, tail = divmod(n, 100)
        return number_words(head) + (" hundred" if tail == 0 else
                                      (" oh " + number_words(tail) if tail < 10 else " " + number_words(tail)))
    return number_words(n)


def normalise_text(text: str) -> list[str]:
    """Lower-case words for the aligner: numbers spelt out, punctuation dropped (apostrophes kept)."""
    text = re.sub(r"\d+", lambda m: f" {spell_number(m.group(0))} ", text.lower())
    text = text.replace("&", " and ").replace("%", " percent ")
    text = re.sub(r"[^a-z' ]+", " ", text)
    return [w.strip("'") for w in text.split() if w.strip("'")]


# --- splitting --------------------------------------------------------------------------------------------


def split_points(audio: np.ndarray, min_s: float = 2.0, max_s: float = 8.0,
                 top_db: float = 35.0) -> list[tuple[int, int]]:
    """Cut a recording into pieces of ``min_s``-``max_s`` seconds (sample ranges), preferring long pauses.

    Leading/trailing silence beyond 0.4 s is dropped from every piece. A recording shorter than
    ``min_s`` (but at least 1 s of sound) stays whole; nothing comes back for one with no sound.
    """
    sr = SAMPLE_RATE
    hop = 160
    if len(audio) == 0 or float(np.max(np.abs(audio))) < 1e-4:
        return []
    intervals = librosa.effects.split(audio, top_db=top_db, frame_length=640, hop_length=hop)
    if len(intervals) == 0:
        return []
    margin = int(0.4 * sr)
    lo = max(0, int(intervals[0][0]) - margin)
    hi = min(len(audio), int(intervals[-1][1]) + margin)
    if hi - lo < max(1.0, min_s) * sr:
        return [(lo, hi)] if hi - lo >= 1.0 * sr else []
    if hi - lo <= max_s * sr:
        return [(lo, hi)]

    # candidate cuts and their costs: the middle of every pause (the longer, the cheaper) and the quietest
    # frame of every 0.25 s of sound (so that speech without pauses can still be cut; expensive)
    candidates: dict[int, float] = {}
    for (_, end), (start, _) in zip(intervals[:-1], intervals[1:]):
        gap = (start - end) / sr
        candidates[int((start + end) // 2)] = 1.0 - min(gap, 0.6)
    rms = librosa.feature.rms(y=audio, frame_length=640, hop_length=hop)[0]
    block = int(0.25 * sr / hop)
    for b in range(lo // hop, hi // hop, block):
        seg = rms[b: b + block]
        if len(seg):
            pos = (b + int(np.argmin(seg))) * hop
            candidates.setdefault(pos, 3.0)
    cuts = sorted(p for p in candidates if lo + min_s * sr <= p <= hi - min_s * sr)
    nodes = [lo, *cuts, hi]
    cost = {n: candidates.get(n, 0.0) for n in cuts}
    best = [np.inf] * len(nodes)
    back = [-1] * len(nodes)
    best[0] = 0.0
    for j in range(1, len(nodes)):
        for i in range(j - 1, -1, -1):
            length = (nodes[j] - nodes[i]) / sr
            if length > max_s:
                break
            if length < min_s or not np.isfinite(best[i]):
                continue
            c = best[i] + 0.05 * (length - 5.0) ** 2 + (cost.get(nodes[j], 0.0) if j < len(nodes) - 1 else 0.0)
            if c < best[j]:
                best[j], back[j] = c, i
    if not np.isfinite(best[-1]):  # should not happen with cuts every 0.25 s; split evenly
        count = int(np.ceil((hi - lo) / (max_s * sr)))
        edges = np.linspace(lo, hi, count + 1).astype(int)
        return [(int(a), int(b)) for a, b in zip(edges[:-1], edges[1:])]
    path = [len(nodes) - 1]
    while path[-1] > 0:
        path.append(back[path[-1]])
    edges = [nodes[k] for k in reversed(path)]
    pieces = []
    for a, b in zip(edges[:-1], edges[1:]):
        inside = [(s, e) for s, e in intervals if e > a and s < b]
        if inside:  # trim silence beyond the margin at either end
            a2 = max(a, int(inside[0][0]) - margin)
            b2 = min(b, int(inside[-1][1]) + margin)
            if (b2 - a2) >= min(min_s, 1.0) * sr:
                a, b = a2, b2
        pieces.append((int(a), int(b)))
    return pieces


# --- phone timings --------------------------------------------------------------------------------------

Phone = tuple[float, float, str]  # (start_s, end_s, ARPAbet or "SIL")


def _pcm(audio: np.ndarray) -> bytes:
    return (np.clip(audio, -1.0, 1.0) * 32767.0).astype("<i2").tobytes()


class PhoneTimer:
    """PocketSphinx decoders (loaded once): forced alignment and phone-loop recognition."""

    def __init__(self) -> None:
        import pocketsphinx

        self._ps = pocketsphinx
        self.aligner = pocketsphinx.Decoder(bestpath=False, loglevel="FATAL")  # bestpath breaks alignment
        self.recogniser = pocketsphinx.Decoder(
            allphone=pocketsphinx.get_model_path("en-us/en-us-phone.lm.bin"), lm=None, loglevel="FATAL")
        self._added: set[str] = set()

    def _pronounce_missing(self, words: Sequence[str]) -> Optional[str]:
        """Add CMUdict-missing words with pronunciations from espeak-ng; returns the first it cannot."""
        for word in words:
            if word in self._added or self.aligner.lookup_word(word) is not None:
                continue
            phones = _espeak_pronunciation(word)
            if not phones:
                return word
            self.aligner.add_word(word, phones, True)
            self._added.add(word)
        return None

    def align(self, audio: np.ndarray, text: str) -> Optional[list[Phone]]:
        """Phones of ``text`` aligned to ``audio``, or None when that fails (unknown word, no path)."""
        words = normalise_text(text)
        if not words or self._pronounce_missing(words) is not None:
            return None
        pcm = _pcm(audio)
        d = self.aligner
        try:
            d.set_align_text(" ".join(words))
            d.start_utt()
            d.process_raw(pcm, full_utt=True)
            d.end_utt()
            if d.hyp() is None:
                return None
            d.set_alignment()
            d.start_utt()
            d.process_raw(pcm, full_utt=True)
            d.end_utt()
            alignment = d.get_alignment()
        except RuntimeError:
            return None
        if alignment is None:
            return None
        phones = []
        for word in alignment:
            for phone in word:
                start = phone.start / PS_FRAME_RATE
                phones.append((start, start + phone.duration / PS_FRAME_RATE, phone.name))
        return phones or None

    def recognise(self, audio: np.ndarray) -> list[Phone]:
        """Phone-loop recognition (the bundled English phone LM)."""
        d = self.recogniser
        d.start_utt()
        d.process_raw(_pcm(audio), full_utt=True)
        d.end_utt()
        return [(s.start_frame / PS_FRAME_RATE, (s.end_frame + 1) / PS_FRAME_RATE, s.word) for s in d.seg()]


def _espeak_pronunciation(word: str) -> str:
    """ARPAbet for ``word`` from espeak-ng's (US English) phonemes; "" without espeak-ng."""
    try:
        from training.data import espeak

        if not espeak.is_available():
            return ""
        utt = espeak.synthesize(word, voice="en-us")
    except Exception:  # noqa: BLE001  (no library, no voice: just no pronunciation)
        return ""
    out = []
    for _, _, symbol in utt.phonemes:
        if symbol.startswith("_"):
            continue
        arpa = ESPEAK_TO_ARPABET.get(symbol, ESPEAK_TO_ARPABET.get(re.sub(r"[#:;\-0-9']+$", "", symbol)))
        if arpa:
            out.append(arpa)
    return " ".join(out)


def carve_pauses(phones: Sequence[tuple[float, float, str]], audio: np.ndarray, top_db: float = 40.0,
                 min_pause: float = MIN_PAUSE_S) -> list[tuple[float, float, str]]:
    """Make the audio's silences of at least ``min_pause`` seconds pauses: phones in them are cut back
    (or dropped, bilabials excepted: their closure belongs in the silence before a release)."""
    sr = SAMPLE_RATE
    duration = len(audio) / sr
    intervals = librosa.effects.split(audio, top_db=top_db, frame_length=640, hop_length=160) / sr
    edges = [0.0, *[x for iv in intervals for x in iv], duration]
    silences = [(a, b) for a, b in zip(edges[0::2], edges[1::2]) if b - a >= min_pause]
    out = list(phones)
    for a, b in silences:
        kept = []
        for s, e, p in out:
            if p == PAUSE or e <= a or s >= b:
                kept.append((s, e, p))
            elif s < a and e > b:  # spans the whole pause: keep the part before it
                kept.append((s, a, p))
            elif s < a:
                kept.append((s, a, p))
            elif e > b:
                kept.append((b, e, p))
            elif p in ("p", "b", "m"):
                kept.append((s, e, p))
        kept.append((a, b, PAUSE))
        out = sorted(kept, key=lambda x: x[0])
    # overlapping pause/bilabial leftovers: trim the pause around them
    cleaned: list[tuple[float, float, str]] = []
    for s, e, p in out:
        if cleaned and s < cleaned[-1][1]:
            ps_, pe_, pp = cleaned[-1]
            if pp == PAUSE:
                cleaned[-1] = (ps_, s, pp)
                if s <= ps_:
                    cleaned.pop()
            else:
                s = pe_
        if e > s:
            cleaned.append((s, e, p))
    return cleaned


def to_visemes(phones: Sequence[Phone], start: float = 0.0, end: float = np.inf) -> list[tuple[float, float, str]]:
    """ARPAbet phones -> espeak symbols, cut to ``[start, end)`` and shifted to start at 0."""
    out = []
    for s, e, p in phones:
        s2, e2 = max(s, start), min(e, end)
        if e2 - s2 <= 1e-6:
            continue
        out.append((s2 - start, e2 - start, arpabet_symbol(p, e - s)))
    return out


# --- per file --------------------------------------------------------------------------------------------


@dataclass
class FileReport:
    name: str
    pieces: int = 0
    seconds: float = 0.0
    mode: str = ""
    examples: int = 0
    notes: list[str] = field(default_factory=list)


def find_audio(paths: Sequence[Path]) -> list[Path]:
    out: list[Path] = []
    for path in paths:
        path = Path(path)
        if path.is_file():
            out.append(path)
        else:
            out.extend(p for p in sorted(path.rglob("*")) if p.is_file() and p.suffix.lower() in AUDIO_SUFFIXES)
    return out


def transcript_for(path: Path, transcripts: dict[str, str]) -> Optional[str]:
    if path.stem in transcripts:
        return transcripts[path.stem]
    for suffix in (".txt", ".lab"):
        side = path.with_suffix(suffix)
        if side.is_file():
            return side.read_text(encoding="utf-8", errors="replace").strip() or None
    return None


def process_file(path: Path, out: Path, timer: PhoneTimer, transcripts: dict[str, str], faces: int = 3,
                 seed: int = 0, fps: float = 25.0, min_s: float = 2.0, max_s: float = 8.0,
                 name: Optional[str] = None) -> FileReport:
    name = name or re.sub(r"[^A-Za-z0-9_.-]+", "_", path.stem)
    report = FileReport(name)
    try:
        audio = load_audio(path)
    except AudioError as error:
        report.notes.append(f"skipped: {error}")
        return report
    pieces = split_points(audio, min_s, max_s)
    text = transcript_for(path, transcripts)
    aligned = timer.align(audio, text) if text else None
    if text and aligned is None:
        report.notes.append("alignment failed; recognised instead")
    report.mode = "aligned" if aligned is not None else "recognised"
    rng = np.random.default_rng([seed, zlib.crc32(name.encode())])
    for k, (a, b) in enumerate(pieces):
        piece = audio[a:b]
        start, end = a / SAMPLE_RATE, b / SAMPLE_RATE
        if aligned is not None:
            phones = [(s - start, e - start, p) for s, e, p in aligned if e > start and s < end]
            phones = [(max(s, 0.0), min(e, end - start), p) for s, e, p in phones]
        else:
            phones = timer.recognise(piece)
        symbols = carve_pauses(to_visemes(phones), piece)
        num_frames = num_video_frames(len(piece), fps)
        for f in range(faces):
            neutral = random_neutral_face(rng)
            intensity = float(rng.uniform(*INTENSITY_RANGE))
            motion = phonemes_to_motion(symbols, num_frames, fps, neutral_canonical=neutral, intensity=intensity,
                                        seed=int(rng.integers(2**31)))
            motion = motion + natural_upper_motion(num_frames, fps, rng, neutral)
            Example(piece, motion, neutral, fps, SOURCE, f"{name}-{k:02d}-f{f}").save(out)
            report.examples += 1
        report.pieces += 1
        report.seconds += len(piece) / SAMPLE_RATE
    return report


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--speech", type=Path, nargs="+", required=True, help="audio files or folders")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--transcripts", type=Path, action="append", default=[],
                        help="transcript file (repeatable): 'id \"text\"' or 'id|text|normalised' lines")
    parser.add_argument("--faces-per-utterance", type=int, default=3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--fps", type=float, default=25.0)
    parser.add_argument("--min-piece", type=float, default=2.0, help="seconds")
    parser.add_argument("--max-piece", type=float, default=8.0, help="seconds")
    args = parser.parse_args(argv)

    files = find_audio(args.speech)
    if not files:
        raise SystemExit(f"No audio files under {', '.join(map(str, args.speech))}.")
    transcripts = read_transcripts(args.transcripts)
    timer = PhoneTimer()
    args.out.mkdir(parents=True, exist_ok=True)
    t0 = time.time()
    totals = {"pieces": 0, "seconds": 0.0, "examples": 0, "aligned": 0, "recognised": 0}
    for path in files:
        t = time.time()
        report = process_file(path, args.out, timer, transcripts, args.faces_per_utterance, args.seed, args.fps,
                              args.min_piece, args.max_piece)
        notes = f" ({'; '.join(report.notes)})" if report.notes else ""
        print(f"{path.name}: {report.pieces} pieces, {report.seconds:.1f} s, {report.mode or '-'}, "
              f"{report.examples} examples, {time.time() - t:.1f} s{notes}", flush=True)
        totals["pieces"] += report.pieces
        totals["seconds"] += report.seconds
        totals["examples"] += report.examples
        if report.mode:
            totals[report.mode] += 1
    print(f"done: {len(files)} files ({totals['aligned']} aligned, {totals['recognised']} recognised), "
          f"{totals['pieces']} pieces, {totals['seconds'] / 60:.1f} min of speech, {totals['examples']} examples "
          f"in {time.time() - t0:.0f} s", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())

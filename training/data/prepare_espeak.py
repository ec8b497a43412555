"""Synthetic training corpus: espeak-ng speech with exactly known phonemes, and the lip motion they imply.

    python training/data/prepare_espeak.py --out data/espeak --num 3000 --seed 0 --workers 2

For example ``i`` (everything seeded by ``(seed, i)`` only, so the output does not depend on the number
of workers or the order they finish in):

1. a sentence from a built-in generator (:func:`make_sentence`): English templates over a few hundred
   phonetically varied words (statements, questions, commands, numbers, names, exclamations, and
   now and then a meaningless word string), or with ``--foreign-share`` a German, French or Spanish one;
2. spoken by a random espeak-ng voice and variant (:data:`ENGLISH_VOICES` x :data:`VARIANTS`; only
   those installed are used), rate 120-220 words per minute, pitch 25-80; sentences outside 1-6 s of
   speech are redrawn;
3. the audio resampled to 16 kHz and degraded (:func:`augment`): a little silence before and after,
   sometimes a synthetic room reverb, a low-pass or telephone band, additive white/pink/brown noise at
   10-40 dB SNR, and a random level;
4. the landmarks: :func:`training.data.visemes.phonemes_to_motion` on a
   :func:`training.data.faces.random_neutral_face` with a random ``intensity`` of 0.7-1.3, plus
   :func:`training.data.faces.natural_upper_motion` (blinks, brows, pose residual);
5. one :class:`~training.data.format.Example` (``source="espeak"``, ``name=f"{i:05d}"``) in ``--out``.

Needs libespeak-ng (Debian/Ubuntu: ``apt-get install espeak-ng``), nothing else outside Python.
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import pickle
import sys
import time
from pathlib import Path
from typing import Optional, Sequence

import numpy as np
from scipy import signal

if __package__ in (None, ""):  # run as a script: make the repository importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from pipeline.audio import SAMPLE_RATE, num_video_frames  # noqa: E402
from training.data import espeak  # noqa: E402
from training.data.faces import natural_upper_motion, random_neutral_face  # noqa: E402
from training.data.format import Example  # noqa: E402
from training.data.text import number_words  # noqa: E402
from training.data.visemes import phonemes_to_motion  # noqa: E402

SOURCE = "espeak"
MIN_SPEECH_S = 1.0
MAX_SPEECH_S = 6.0
RATE_RANGE = (120, 220)
PITCH_RANGE = (25, 80)
INTENSITY_RANGE = (0.7, 1.3)

#: English espeak-ng voices (accents) and voice variants (speakers); combined as ``voice+variant``.
ENGLISH_VOICES = ("en", "en-us", "en-gb-x-rp", "en-gb-scotland", "en-029", "en-us-nyc", "en-gb-x-gbclan",
                  "en-gb-x-gbcwmd")
VARIANTS = ("", "m1", "m2", "m3", "m4", "m5", "m6", "m7", "f1", "f2", "f3", "f4", "f5", "klatt", "klatt2",
            "Alicia", "Andrea", "Andy", "Annie", "belinda", "benjamin", "david", "linda", "max", "Mike",
            "paul", "quincy", "Lee", "edward", "steph", "robert", "victor")
FOREIGN_VOICES = ("de", "fr", "es")

# --- sentence generator ---------------------------------------------------------------------------------

NAMES = ("Anna", "Peter", "Maria", "Jack", "Sophie", "Oliver", "Grace", "Thomas", "Zoe", "Michael", "Olivia",
         "George", "Chloe", "Joseph", "Ruth", "Victor", "Judy", "Charles", "Vivian", "Matthew", "Beth", "Hugo",
         "Yusuf", "Priya", "Chen", "Fatima", "Lucas", "Isabel", "William", "Harriet", "Owen", "Theo")
PLACES = ("the kitchen", "the garden", "the station", "the library", "the market", "the office", "the beach",
          "the village", "the museum", "the bathroom", "the theatre", "the hospital", "the forest", "the bridge",
          "the harbour", "the church", "the school yard", "the shopping mall", "the big city", "the valley",
          "the cellar", "the north of Scotland", "New York", "Paris", "the mountains", "the airport")
# (singular, plural)
NOUNS = (("cat", "cats"), ("dog", "dogs"), ("house", "houses"), ("book", "books"), ("chair", "chairs"),
         ("window", "windows"), ("garden", "gardens"), ("teacher", "teachers"), ("child", "children"),
         ("woman", "women"), ("man", "men"), ("bottle", "bottles"), ("phone", "phones"), ("judge", "judges"),
         ("letter", "letters"), ("measure", "measures"), ("treasure", "treasures"), ("boy", "boys"),
         ("toy", "toys"), ("cloud", "clouds"), ("mouse", "mice"), ("wolf", "wolves"), ("knife", "knives"),
         ("leaf", "leaves"), ("box", "boxes"), ("church", "churches"), ("bridge", "bridges"), ("thief", "thieves"),
         ("thought", "thoughts"), ("voice", "voices"), ("picture", "pictures"), ("machine", "machines"),
         ("vision", "visions"), ("apple", "apples"), ("orange", "oranges"), ("banana", "bananas"),
         ("umbrella", "umbrellas"), ("engine", "engines"), ("wheel", "wheels"), ("feather", "feathers"),
         ("mother", "mothers"), ("father", "fathers"), ("brother", "brothers"), ("neighbour", "neighbours"),
         ("doctor", "doctors"), ("farmer", "farmers"), ("soldier", "soldiers"), ("queen", "queens"),
         ("king", "kings"), ("ship", "ships"), ("sheep", "sheep"), ("fish", "fish"), ("horse", "horses"),
         ("cow", "cows"), ("owl", "owls"), ("bee", "bees"), ("rope", "ropes"), ("map", "maps"),
         ("puzzle", "puzzles"), ("bubble", "bubbles"), ("pebble", "pebbles"), ("jewel", "jewels"),
         ("jacket", "jackets"), ("shoe", "shoes"), ("glove", "gloves"), ("sweater", "sweaters"),
         ("cup", "cups"), ("spoon", "spoons"), ("fork", "forks"), ("plate", "plates"), ("pizza", "pizzas"),
         ("sandwich", "sandwiches"), ("cookie", "cookies"), ("potato", "potatoes"), ("tomato", "tomatoes"),
         ("computer", "computers"), ("keyboard", "keyboards"), ("question", "questions"), ("answer", "answers"),
         ("problem", "problems"), ("idea", "ideas"), ("story", "stories"), ("song", "songs"), ("poem", "poems"),
         ("village", "villages"), ("mountain", "mountains"), ("river", "rivers"), ("ocean", "oceans"),
         ("yacht", "yachts"), ("yellow balloon", "yellow balloons"), ("zebra", "zebras"), ("giraffe", "giraffes"),
         ("violin", "violins"), ("trumpet", "trumpets"), ("guitar", "guitars"), ("photograph", "photographs"),
         ("envelope", "envelopes"), ("parcel", "parcels"), ("ticket", "tickets"), ("key", "keys"),
         ("wallet", "wallets"), ("watch", "watches"), ("bicycle", "bicycles"), ("truck", "trucks"),
         ("airplane", "airplanes"), ("rocket", "rockets"), ("planet", "planets"), ("moon", "moons"))
ADJECTIVES = ("big", "small", "old", "young", "new", "red", "blue", "green", "yellow", "purple", "orange",
              "heavy", "light", "quiet", "loud", "happy", "sad", "angry", "brave", "clever", "foolish", "shiny",
              "smooth", "rough", "soft", "sharp", "warm", "cold", "cheap", "expensive", "beautiful", "ugly",
              "strange", "famous", "hungry", "thirsty", "sleepy", "busy", "lazy", "noisy", "lovely", "enormous",
              "tiny", "broken", "frozen", "wooden", "golden", "musical", "mysterious", "careful", "gentle",
              "jolly", "wise", "vivid", "fuzzy", "juicy", "choppy", "zealous", "thoughtful", "awkward",
              "bright", "dark", "round", "square", "fresh", "rotten", "wet", "dry", "huge", "proud")
# (base, past)
VERBS = (("see", "saw"), ("find", "found"), ("bring", "brought"), ("buy", "bought"), ("carry", "carried"),
         ("move", "moved"), ("push", "pushed"), ("pull", "pulled"), ("watch", "watched"), ("catch", "caught"),
         ("throw", "threw"), ("choose", "chose"), ("wash", "washed"), ("paint", "painted"), ("fix", "fixed"),
         ("build", "built"), ("break", "broke"), ("open", "opened"), ("close", "closed"), ("lose", "lost"),
         ("borrow", "borrowed"), ("measure", "measured"), ("judge", "judged"), ("visit", "visited"),
         ("follow", "followed"), ("describe", "described"), ("imagine", "imagined"), ("remember", "remembered"),
         ("forget", "forgot"), ("love", "loved"), ("hate", "hated"), ("enjoy", "enjoyed"), ("share", "shared"),
         ("fetch", "fetched"), ("hide", "hid"), ("keep", "kept"), ("sell", "sold"), ("send", "sent"),
         ("check", "checked"), ("touch", "touched"), ("taste", "tasted"), ("smell", "smelled"),
         ("hear", "heard"), ("drop", "dropped"), ("lift", "lifted"), ("wrap", "wrapped"), ("sew", "sewed"),
         ("polish", "polished"), ("weigh", "weighed"), ("photograph", "photographed"), ("explore", "explored"))
INTRANSITIVE = (("sleep", "slept"), ("run", "ran"), ("laugh", "laughed"), ("cry", "cried"), ("sing", "sang"),
                ("dance", "danced"), ("wait", "waited"), ("work", "worked"), ("travel", "travelled"),
                ("swim", "swam"), ("jump", "jumped"), ("whisper", "whispered"), ("shout", "shouted"),
                ("arrive", "arrived"), ("vanish", "vanished"), ("breathe", "breathed"), ("smile", "smiled"))
ADVERBS = ("quickly", "slowly", "carefully", "quietly", "loudly", "happily", "badly", "gently", "suddenly",
           "easily", "really", "almost", "always", "never", "often", "rarely", "together", "again", "yesterday",
           "today", "tomorrow", "at once", "on purpose", "by mistake", "without a word", "with great joy")
TIMES = ("this morning", "last night", "on Monday", "on Thursday", "in the evening", "at noon", "in June",
         "every weekend", "after lunch", "before breakfast", "at midnight", "last summer", "next year",
         "two weeks ago", "during the storm", "in the winter of nineteen ninety nine")
PREPOSITIONS = ("in", "on", "under", "behind", "near", "beside", "above", "inside", "outside", "through",
                "across", "towards", "without", "with", "beneath", "between the chair and")
CONNECTORS = ("and", "but", "because", "so", "while", "although", "before", "after", "then", "until")
EXCLAMATIONS = ("Oh no!", "Yes, of course.", "Thank you very much.", "Good morning!", "Well done!",
                "Absolutely not.", "How wonderful!", "Wait a moment.", "I see.", "Hello there!", "Goodbye!",
                "Excuse me.", "Really?", "No way!", "Not at all.", "Why not?", "Oh, I forgot.", "Welcome back!",
                "Please sit down.", "Just a minute.", "Never mind.", "Sure thing.", "What a surprise!")
QUESTION_WORDS = ("Why", "Where", "When", "How")

FOREIGN: dict[str, dict[str, tuple[str, ...]]] = {
    "de": {
        "subject": ("Der Mann", "Die Frau", "Mein Bruder", "Das kleine Kind", "Unsere Nachbarin", "Der Lehrer",
                    "Meine Schwester", "Der alte Fischer", "Die Polizistin", "Jeder Schüler", "Herr Schmidt"),
        "verb": ("kauft", "sieht", "findet", "bringt", "sucht", "verkauft", "trägt", "malt", "öffnet", "vergisst",
                 "repariert", "versteckt", "braucht", "zeigt"),
        "object": ("einen roten Apfel", "das alte Buch", "die schwere Tasche", "ein neues Fahrrad",
                   "den grünen Schlüssel", "zwei Flaschen Wasser", "eine schöne Zeitung", "das kaputte Fenster",
                   "ein warmes Brötchen", "die große Uhr", "fünf kleine Fische"),
        "end": ("heute Morgen.", "im Garten.", "am Bahnhof.", "nach der Schule.", "jeden Freitag.",
                "mit großer Freude.", "in der Küche.", "ohne zu fragen.", "schon wieder.", "im Winter."),
    },
    "fr": {
        "subject": ("Le garçon", "La femme", "Mon frère", "Notre voisine", "Le vieux pêcheur", "La maîtresse",
                    "Ma sœur", "Le boulanger", "Chaque élève", "Monsieur Dupont", "La petite fille"),
        "verb": ("achète", "regarde", "trouve", "apporte", "cherche", "vend", "porte", "peint", "ouvre",
                 "oublie", "répare", "cache", "montre", "prépare"),
        "object": ("une pomme rouge", "le vieux livre", "un sac lourd", "un nouveau vélo", "la clé verte",
                   "deux bouteilles d'eau", "un journal du matin", "la fenêtre cassée", "un croissant chaud",
                   "la grande horloge", "cinq petits poissons"),
        "end": ("ce matin.", "dans le jardin.", "à la gare.", "après l'école.", "chaque vendredi.",
                "avec plaisir.", "dans la cuisine.", "sans rien dire.", "encore une fois.", "en hiver."),
    },
    "es": {
        "subject": ("El hombre", "La mujer", "Mi hermano", "Nuestra vecina", "El viejo pescador", "La maestra",
                    "Mi hermana", "El panadero", "Cada alumno", "El señor García", "La niña pequeña"),
        "verb": ("compra", "mira", "encuentra", "trae", "busca", "vende", "lleva", "pinta", "abre", "olvida",
                 "repara", "esconde", "muestra", "prepara"),
        "object": ("una manzana roja", "el libro viejo", "una bolsa pesada", "una bicicleta nueva",
                   "la llave verde", "dos botellas de agua", "el periódico de hoy", "la ventana rota",
                   "un pan caliente", "el reloj grande", "cinco peces pequeños"),
        "end": ("esta mañana.", "en el jardín.", "en la estación.", "después de la escuela.", "cada viernes.",
                "con mucho gusto.", "en la cocina.", "sin decir nada.", "otra vez.", "en invierno."),
    },
}


def _pick(rng: np.random.Generator, items: Sequence):
    return items[int(rng.integers(len(items)))]


def _noun_phrase(rng: np.random.Generator, plural: Optional[bool] = None) -> str:
    plural = bool(rng.uniform() < 0.3) if plural is None else plural
    noun = _pick(rng, NOUNS)[1 if plural else 0]
    words = []
    if rng.uniform() < 0.6:
        words.append(_pick(rng, ADJECTIVES))
    if rng.uniform() < 0.15:
        words.append(_pick(rng, ADJECTIVES))
    words.append(noun)
    if plural:
        det = _pick(rng, ("the", "some", "those", "many", "a few", "my", "our", number_words(int(rng.integers(2, 30)))))
    else:
        first = words[0]
        det = _pick(rng, ("the", "a", "this", "that", "my", "your", "her", "his", "every"))
        if det == "a" and first[0] in "aeiou":
            det = "an"
    return det + " " + " ".join(words)


def _clause(rng: np.random.Generator) -> str:
    kind = rng.uniform()
    subject = _pick(rng, NAMES) if rng.uniform() < 0.4 else _noun_phrase(rng)
    if kind < 0.55:
        verb = _pick(rng, VERBS)[1]
        out = f"{subject} {verb} {_noun_phrase(rng)}"
    elif kind < 0.8:
        verb = _pick(rng, INTRANSITIVE)[1]
        out = f"{subject} {verb}"
        if rng.uniform() < 0.5:
            out += f" {_pick(rng, PREPOSITIONS)} {_noun_phrase(rng)}"
    else:
        out = f"{subject} {_pick(rng, ('was', 'is', 'seemed', 'looked', 'felt'))} {_pick(rng, ADJECTIVES)}"
    if rng.uniform() < 0.35:
        out += " " + _pick(rng, ADVERBS)
    if rng.uniform() < 0.3:
        out += " in " + _pick(rng, PLACES) if rng.uniform() < 0.5 else " " + _pick(rng, TIMES)
    return out


def _capital(text: str) -> str:
    return text[:1].upper() + text[1:]


def make_sentence(rng: np.random.Generator, language: str = "en", length: float = 1.0) -> str:
    """A random sentence; ``length`` < 1 favours shorter forms (used when a draw came out too long)."""
    if language != "en":
        parts = FOREIGN[language]
        words = [_pick(rng, parts["subject"]), _pick(rng, parts["verb"]), _pick(rng, parts["object"])]
        if rng.uniform() < 0.7 * length:
            words.append(_pick(rng, parts["end"]))
        else:
            words[-1] += "."
        return " ".join(words)
    kind = rng.uniform()
    if kind < 0.12:
        text = _pick(rng, EXCLAMATIONS)
        if rng.uniform() < 0.4 * length:
            text += " " + _capital(_clause(rng)) + "."
        elif rng.uniform() < 0.4:
            text = text[:-1] + ", " + _pick(rng, NAMES) + text[-1]
        return text
    if kind < 0.3:
        q = rng.uniform()
        if q < 0.35:
            verb = _pick(rng, VERBS)[0]
            return f"Did {_pick(rng, NAMES + ('you', 'they', 'we'))} {verb} {_noun_phrase(rng)}?"
        if q < 0.7:
            return f"{_pick(rng, QUESTION_WORDS)} is {_noun_phrase(rng, False)} so {_pick(rng, ADJECTIVES)}?"
        return f"Where did {_pick(rng, NAMES)} put {_noun_phrase(rng)}?"
    if kind < 0.4:
        verb = _pick(rng, VERBS)[0]
        text = f"{_pick(rng, ('Please ', 'Now ', 'Just ', ''))}{verb} {_noun_phrase(rng)}"
        if rng.uniform() < 0.5:
            text += " " + _pick(rng, ADVERBS)
        return _capital(text) + _pick(rng, (".", "!"))
    if kind < 0.5:
        count = int(rng.integers(2, 2000)) if rng.uniform() < 0.7 else int(rng.integers(2, 100000))
        noun = _pick(rng, NOUNS)[1]
        return f"There {_pick(rng, ('were', 'are', 'will be'))} {number_words(count)} {noun} in {_pick(rng, PLACES)}."
    if kind < 0.58:
        # meaningless but pronounceable word strings: phonetic variety beyond the templates
        pool = [n for pair in NOUNS for n in pair] + list(ADJECTIVES) + [v for pair in VERBS for v in pair]
        count = int(rng.integers(3, 3 + int(9 * length)))
        return _capital(" ".join(_pick(rng, pool) for _ in range(count))) + "."
    text = _clause(rng)
    if rng.uniform() < 0.35 * length:
        text += f", {_pick(rng, CONNECTORS)} {_clause(rng)}"
    return _capital(text) + _pick(rng, (".", ".", ".", "!", "?"))


# --- voices -------------------------------------------------------------------------------------------------

def pick_voice(rng: np.random.Generator, language: str) -> str:
    """A random voice name for ``language`` ("en" or one of :data:`FOREIGN_VOICES`), ``accent+variant``;
    :func:`synthesize_clean` falls back to the accent, then to "en", where it is not installed."""
    base = _pick(rng, ENGLISH_VOICES) if language == "en" else language
    variant = _pick(rng, VARIANTS)
    return f"{base}+{variant}" if variant else base


def _synthesize_with_fallback(text: str, voice: str, rate: int, pitch: int) -> espeak.Utterance:
    for name in dict.fromkeys((voice, voice.split("+")[0], "en")):
        try:
            return espeak.synthesize(text, voice=name, rate=rate, pitch=pitch)
        except ValueError:
            continue
    raise RuntimeError("espeak-ng has no English voice.")


def synthesize_clean(text: str, voice: str, rate: int, pitch: int) -> espeak.Utterance:
    """:func:`training.data.espeak.synthesize` from a pristine engine state.

    libespeak-ng keeps state from one utterance to the next (pitch flutter, filter memories, its use of
    ``rand()``), so the same request gives slightly different audio depending on what was said before, and
    it cannot be re-initialised in a process. Each utterance is therefore synthesised in a forked child of
    a process whose engine was initialised but has not spoken, which makes the corpus reproducible.
    Without ``fork`` (Windows) it synthesises in-process.
    """
    if not hasattr(os, "fork"):
        return _synthesize_with_fallback(text, voice, rate, pitch)
    espeak._engine()  # initialise once, in this process, before forking (children inherit it)
    read_fd, write_fd = os.pipe()
    pid = os.fork()
    if pid == 0:  # child: speak, send the result, leave without running any clean-up of the parent's
        code = 0
        try:
            os.close(read_fd)
            utt = _synthesize_with_fallback(text, voice, rate, pitch)
            payload = pickle.dumps((utt.samples, utt.sample_rate, utt.phonemes))
        except BaseException as error:  # noqa: BLE001  (reported to the parent)
            payload, code = pickle.dumps(error), 1
        try:
            with os.fdopen(write_fd, "wb") as pipe:
                pipe.write(payload)
        finally:
            os._exit(code)
    os.close(write_fd)
    with os.fdopen(read_fd, "rb") as pipe:
        payload = pipe.read()
    _, status = os.waitpid(pid, 0)
    result = pickle.loads(payload) if payload else RuntimeError(f"espeak child failed (status {status})")
    if isinstance(result, BaseException):
        raise result
    samples, sample_rate, phonemes = result
    return espeak.Utterance(samples, sample_rate, phonemes)


# --- phonemes -----------------------------------------------------------------------------------------------

#: Non-English espeak symbols mapped to the nearest English viseme symbol (after ``~``/``^`` are dropped).
FOREIGN_SYMBOLS = {"B": "b", "G": "g", "*": "t#", "R": "h", "R2": "h", "C": "j", "y": "u:", "Y": "U",
                   "W": "3:", "ts": "t", "pf": "f", "tS": "tS", "rr": "r", "J": "n", "L": "l", "l^": "l",
                   "n^": "n", "ss": "s", "Q": "g", "X": "x", "y:": "u:", "A~": "A:", "O~": "O", "E~": "E",
                   "W~": "3:", "o~": "o", "e~": "E", "**": "t#", "OY": "OI", "oI": "OI",
                   "Y:": "U", "y-": "u:"}
#: espeak events that are not sounds: language switches ("(en)") and modifiers; their time goes to the next one.
_MARKERS = (";", "'", ",", "|", "||")


def clean_phonemes(phonemes: Sequence[tuple[float, float, str]]) -> list[tuple[float, float, str]]:
    """Drop espeak's language-switch markers ("(en)"), giving their time to the next phoneme, and map
    common German/French/Spanish symbols onto the English viseme set."""
    out: list[tuple[float, float, str]] = []
    carry: Optional[float] = None
    for start, end, symbol in phonemes:
        if symbol.startswith("(") or symbol in _MARKERS or not symbol.strip():
            carry = start if carry is None else carry
            continue
        if carry is not None:
            start, carry = carry, None
        symbol = FOREIGN_SYMBOLS.get(symbol, symbol)
        if symbol.endswith(("~", "^")):
            symbol = FOREIGN_SYMBOLS.get(symbol, symbol[:-1])
        out.append((start, end, symbol))
    if carry is not None and out:
        start, _, symbol = out[-1]
        out[-1] = (start, phonemes[-1][1], symbol)
    return out


# --- audio augmentation ---------------------------------------------------------------------------------------


def _coloured_noise(n: int, rng: np.random.Generator, exponent: float) -> np.ndarray:
    """Noise with power ~ 1/f^exponent (0 white, 1 pink, 2 brown), unit RMS."""
    spectrum = np.fft.rfft(rng.standard_normal(n))
    freqs = np.fft.rfftfreq(n, 1.0 / SAMPLE_RATE)
    freqs[0] = freqs[1] if n > 1 else 1.0
    spectrum *= np.maximum(freqs, 20.0) ** (-exponent / 2.0)
    noise = np.fft.irfft(spectrum, n)
    return noise / max(float(np.sqrt(np.mean(noise**2))), 1e-12)


def room_impulse_response(rng: np.random.Generator, rt60: float) -> np.ndarray:
    """A synthetic room: a direct path, a few early reflections and an exponentially decaying noise tail
    (amplitude -60 dB after ``rt60`` seconds), gently low-passed (air and walls absorb highs)."""
    n = int(rt60 * SAMPLE_RATE)
    t = np.arange(n) / SAMPLE_RATE
    tail = rng.standard_normal(n) * np.exp(-6.9078 * t / rt60)
    tail[: int(0.003 * SAMPLE_RATE)] = 0.0  # pre-delay before the diffuse part
    b, a = signal.butter(1, float(rng.uniform(2500, 7000)), fs=SAMPLE_RATE)
    tail = signal.lfilter(b, a, tail)
    ir = tail * float(rng.uniform(0.15, 0.5)) / max(float(np.sqrt(np.sum(tail**2))), 1e-12)
    ir[0] = 1.0
    for _ in range(int(rng.integers(2, 6))):
        ir[int(rng.uniform(0.002, 0.03) * SAMPLE_RATE)] += float(rng.uniform(-0.4, 0.4))
    return ir


def augment(audio: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, dict]:
    """Degrade clean 16 kHz speech like a real recording; returns the audio and what was done."""
    x = audio.astype(np.float64)
    info: dict = {}
    if rng.uniform() < 0.5:
        rt60 = float(rng.uniform(0.15, 0.7))
        x = signal.fftconvolve(x, room_impulse_response(rng, rt60))[: len(x)]
        info["rt60"] = round(rt60, 2)
    band = rng.uniform()
    if band < 0.08:  # telephone
        sos = signal.butter(4, [300, 3400], btype="bandpass", fs=SAMPLE_RATE, output="sos")
        x = signal.sosfilt(sos, x)
        info["band"] = "telephone"
    elif band < 0.2:
        cutoff = float(rng.uniform(2500, 6000))
        sos = signal.butter(4, cutoff, fs=SAMPLE_RATE, output="sos")
        x = signal.sosfilt(sos, x)
        info["band"] = f"lowpass{cutoff:.0f}"
    speech_rms = float(np.sqrt(np.mean(x[np.abs(x) > 1e-4] ** 2))) if np.any(np.abs(x) > 1e-4) else 0.0
    if rng.uniform() < 0.85 and speech_rms > 0:
        snr = float(rng.uniform(10.0, 40.0))
        exponent = float(_pick(rng, (0.0, 1.0, 1.0, 2.0)))
        x = x + _coloured_noise(len(x), rng, exponent) * speech_rms / 10 ** (snr / 20)
        info["snr_db"] = round(snr, 1)
    peak = float(np.max(np.abs(x))) if len(x) else 0.0
    level_db = float(rng.uniform(-26.0, -1.0))
    if peak > 0:
        x = x / peak * 10 ** (level_db / 20)
    info["peak_db"] = round(level_db, 1)
    return np.clip(x, -1.0, 1.0).astype(np.float32), info


# --- one example --------------------------------------------------------------------------------------------


def make_example(index: int, seed: int, fps: float = 25.0, foreign_share: float = 0.1) -> Example:
    """Example ``index`` of the corpus for ``seed`` (a pure function of both)."""
    rng = np.random.default_rng([seed, index])
    language = "en" if rng.uniform() >= foreign_share else str(_pick(rng, FOREIGN_VOICES))
    voice = pick_voice(rng, language)
    length = 1.0
    for _ in range(12):
        text = make_sentence(rng, language, length)
        rate = int(rng.integers(RATE_RANGE[0], RATE_RANGE[1] + 1))
        pitch = int(rng.integers(PITCH_RANGE[0], PITCH_RANGE[1] + 1))
        utt = synthesize_clean(text, voice, rate, pitch)
        speech_s = speech_seconds(utt.phonemes)
        if MIN_SPEECH_S <= speech_s <= MAX_SPEECH_S:
            break
        length = max(0.0, length - 0.25) if speech_s > MAX_SPEECH_S else min(1.5, length + 0.25)
    return example_from_speech(utt.samples, utt.sample_rate, clean_phonemes(utt.phonemes), rng, fps, SOURCE,
                               f"{index:05d}")


def speech_seconds(phonemes: Sequence[tuple[float, float, str]]) -> float:
    """From the first to the last sound (``_`` symbols are pauses)."""
    spoken = [p for p in phonemes if not p[2].startswith("_")]
    return (spoken[-1][1] - spoken[0][0]) if spoken else 0.0


def example_from_speech(samples: np.ndarray, sample_rate: int, phonemes: Sequence[tuple[float, float, str]],
                        rng: np.random.Generator, fps: float, source: str, name: str) -> Example:
    """A synthetic utterance with known phonemes (symbols of :mod:`training.data.visemes`) -> an Example: 16 kHz,
    the synthesiser's trailing pause cut to a random short one and a random lead added, degraded by
    :func:`augment`; landmarks from the phonemes on a random face with natural upper-face motion."""
    audio = signal.resample_poly(samples.astype(np.float64), SAMPLE_RATE, sample_rate)
    last_sound = max((e for s, e, p in phonemes if not p.startswith("_")), default=len(audio) / SAMPLE_RATE)
    tail = float(rng.uniform(0.05, 0.5))
    keep = int((last_sound + tail) * SAMPLE_RATE)
    audio = np.pad(audio[:keep], (0, max(0, keep - len(audio))))
    lead = float(rng.uniform(0.0, 0.5))
    audio = np.concatenate([np.zeros(int(lead * SAMPLE_RATE)), audio])
    duration = len(audio) / SAMPLE_RATE
    phonemes = [(s + lead, min(e + lead, duration), p) for s, e, p in phonemes if s + lead < duration]
    audio, _ = augment(audio, rng)

    num_frames = num_video_frames(len(audio), fps)
    neutral = random_neutral_face(rng)
    intensity = float(rng.uniform(*INTENSITY_RANGE))
    motion_seed = int(rng.integers(2**31))
    canonical = phonemes_to_motion(phonemes, num_frames, fps, neutral_canonical=neutral, intensity=intensity,
                                   seed=motion_seed)
    canonical = canonical + natural_upper_motion(num_frames, fps, rng, neutral)
    return Example(audio, canonical, neutral, fps, source, name)


def _init_worker() -> None:
    espeak._engine()


def _work(job: tuple[int, int, float, float, str]) -> tuple[int, float]:
    index, seed, fps, foreign_share, out = job
    example = make_example(index, seed, fps, foreign_share)
    example.save(Path(out))
    return index, len(example.audio) / SAMPLE_RATE


def run(out: Path, num: int, seed: int = 0, workers: int = 1, fps: float = 25.0, foreign_share: float = 0.1,
        start: int = 0, quiet: bool = False) -> tuple[int, float]:
    """Write examples ``start .. start+num-1``; returns (count, seconds of audio)."""
    if not espeak.is_available():
        raise SystemExit("libespeak-ng is not installed (apt-get install espeak-ng).")
    out.mkdir(parents=True, exist_ok=True)
    jobs = [(i, seed, fps, foreign_share, str(out)) for i in range(start, start + num)]
    t0 = time.time()
    done, audio_s = 0, 0.0

    def report(final: bool = False) -> None:
        elapsed = time.time() - t0
        if not quiet:
            print(f"{'done' if final else '...'} {done}/{num} examples, {audio_s / 60:.1f} min of audio in "
                  f"{elapsed:.0f} s ({done / max(elapsed, 1e-9):.1f} examples/s, "
                  f"{audio_s / max(elapsed, 1e-9):.0f}x real time)", flush=True)

    # spawned workers: a fresh espeak engine each, whatever the calling process did with espeak before
    pool = multiprocessing.get_context("spawn").Pool(max(1, workers), initializer=_init_worker)
    results = pool.imap_unordered(_work, jobs, chunksize=4)
    try:
        for _, seconds in results:
            done += 1
            audio_s += seconds
            if done % 250 == 0:
                report()
    finally:
        pool.close()
        pool.join()
    report(final=True)
    return done, audio_s


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, required=True, help="folder for the .npz examples")
    parser.add_argument("--num", type=int, default=3000, help="number of examples")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--start", type=int, default=0, help="first example index (to extend a corpus)")
    parser.add_argument("--workers", type=int, default=max(1, min(4, os.cpu_count() or 1)))
    parser.add_argument("--fps", type=float, default=25.0)
    parser.add_argument("--foreign-share", type=float, default=0.1,
                        help="share of German/French/Spanish sentences (0 for English only)")
    args = parser.parse_args(argv)
    run(args.out, args.num, args.seed, args.workers, args.fps, args.foreign_share, args.start)
    return 0


if __name__ == "__main__":
    sys.exit(main())

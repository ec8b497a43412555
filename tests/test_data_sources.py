"""The synthetic training-data sources: random faces, upper-face motion, the espeak corpus and the
speech-only source (PocketSphinx phones). Fast; needs no shared data (espeak-ng/pocketsphinx tests skip
when those are missing)."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
import soundfile as sf

from pipeline.audio import SAMPLE_RATE, num_video_frames
from pipeline.canonical import inter_ocular, mean_face
from pipeline.regions import EYELID_PAIRS, JAW, MOUTH, NUM_POINTS
from training.data.faces import REST_GAP_RANGE, natural_upper_motion, random_neutral_face
from training.data.format import Example, find_examples
from training.data.visemes import inner_gap

needs_espeak = pytest.mark.skipif(shutil.which("espeak-ng") is None, reason="espeak-ng is not installed")
needs_festival = pytest.mark.skipif(shutil.which("festival") is None, reason="festival is not installed")

#: The 39 phones of the CMU pronouncing dictionary (stress digits stripped).
CMU_PHONES = ("AA AE AH AO AW AY B CH D DH EH ER EY F G HH IH IY JH K L M N NG OW OY P R S SH T TH UH UW V W "
              "Y Z ZH").split()


def mouth_energy_correlation(example: Example) -> float:
    """Correlation of the inner-lip opening with the log energy of the audio in each video frame."""
    gap = inner_gap(example.canonical)
    hop = SAMPLE_RATE / example.fps
    frames = [example.audio[int(i * hop): int((i + 1) * hop)] for i in range(len(gap))]
    energy = np.array([np.log(np.sqrt(np.mean(f.astype(np.float64) ** 2)) + 1e-5) if len(f) else np.log(1e-5)
                       for f in frames])
    return float(np.corrcoef(gap, energy)[0, 1])


# --- faces -----------------------------------------------------------------------------------------------


def test_random_faces_are_valid_and_varied():
    rng = np.random.default_rng(0)
    faces = np.stack([random_neutral_face(rng) for _ in range(200)])
    assert faces.shape == (200, NUM_POINTS, 2) and np.isfinite(faces).all()
    iod = inter_ocular(faces)
    assert np.all(np.abs(iod - 1.0) < 0.1), (iod.min(), iod.max())
    # close to the mean face, but not all the same
    assert np.abs(faces - mean_face()[:, :2]).max() < 0.3
    assert faces.std(axis=0).mean() > 0.005
    assert np.ptp(faces[:, 54, 0] - faces[:, 48, 0]) > 0.05  # mouth widths differ
    assert np.ptp(faces[:, 8, 1]) > 0.05  # face lengths differ
    gaps = inner_gap(faces)
    assert gaps.min() >= -1e-3 and gaps.max() <= REST_GAP_RANGE[1] + 0.02
    assert np.ptp(gaps) > 0.04  # closed and open resting mouths
    # eyes open, lips not crossed, chin below the mouth below the nose below the eyes
    for up, lo in EYELID_PAIRS:
        assert np.all(faces[:, lo, 1] > faces[:, up, 1])
    assert np.all(faces[:, 8, 1] > faces[:, 57, 1]) and np.all(faces[:, 51, 1] > faces[:, 33, 1])
    # deterministic for a seed
    again = random_neutral_face(np.random.default_rng(0))
    np.testing.assert_array_equal(again, faces[0])


def test_upper_motion_blinks_and_leaves_the_mouth_alone():
    fps, seconds = 25.0, 30.0
    neutral = random_neutral_face(np.random.default_rng(1))
    offsets = natural_upper_motion(int(seconds * fps), fps, np.random.default_rng(2), neutral)
    assert offsets.shape == (750, NUM_POINTS, 2) and np.isfinite(offsets).all()
    assert not offsets[:, list(MOUTH) + list(JAW[3:14])].any()  # lips and speech jaw untouched
    track = neutral + offsets
    lid_gap = np.mean([track[:, lo, 1] - track[:, up, 1] for up, lo in EYELID_PAIRS], axis=0)
    rest = np.mean([neutral[lo, 1] - neutral[up, 1] for up, lo in EYELID_PAIRS])
    closed = lid_gap < 0.2 * rest
    blinks = int(np.sum(closed[1:] & ~closed[:-1]) + closed[0])
    assert 2 <= blinks <= 15, blinks  # 10-25 per minute over 30 s
    assert lid_gap.min() >= -1e-9 and np.median(lid_gap) == pytest.approx(rest, abs=0.01)
    # brows move a little, slowly; everything stays small
    assert np.abs(offsets[:, 17:27]).max() > 0.005
    assert np.abs(offsets).max() < 0.15
    assert natural_upper_motion(0, fps, np.random.default_rng(0)).shape == (0, NUM_POINTS, 2)


# --- espeak corpus -----------------------------------------------------------------------------------------


def test_sentences_vary():
    from training.data.prepare_espeak import make_sentence

    rng = np.random.default_rng(0)
    sentences = [make_sentence(rng) for _ in range(200)]
    assert len(set(sentences)) > 190
    assert all(s[0].isupper() and s[-1] in ".!?" for s in sentences)
    assert make_sentence(rng, "de") and make_sentence(rng, "fr") and make_sentence(rng, "es")


@needs_espeak
def test_prepare_espeak_writes_loadable_deterministic_examples(tmp_path):
    from training.data import prepare_espeak

    first, second = tmp_path / "a", tmp_path / "b"
    assert prepare_espeak.main(["--out", str(first), "--num", "4", "--seed", "0", "--workers", "1"]) == 0
    assert prepare_espeak.main(["--out", str(second), "--num", "4", "--seed", "0", "--workers", "2"]) == 0
    paths = find_examples(first)
    assert [p.name for p in paths] == [f"espeak-{i:05d}.npz" for i in range(4)]
    for path in paths:
        ex = Example.load(path)
        assert ex.source == "espeak" and ex.fps == 25.0
        assert 1.0 <= len(ex.audio) / SAMPLE_RATE <= 7.5
        assert len(ex.canonical) == num_video_frames(len(ex.audio), ex.fps)
        assert np.abs(ex.audio).max() <= 1.0 and np.isfinite(ex.canonical).all()
        assert np.ptp(inner_gap(ex.canonical)) > 0.05  # the mouth moves
        other = Example.load(second / path.name)  # same seed, other worker count: same data
        np.testing.assert_array_equal(ex.audio, other.audio)
        np.testing.assert_array_equal(ex.canonical, other.canonical)
    third = tmp_path / "c"
    prepare_espeak.main(["--out", str(third), "--num", "1", "--seed", "1", "--workers", "1"])
    assert not np.array_equal(Example.load(third / "espeak-00000.npz").canonical, Example.load(paths[0]).canonical)


def test_festival_radio_phones_map_to_visemes():
    from training.data.festival import merge_pauses, symbol
    from training.data.prepare_speech import PAUSE

    assert symbol("ax", 0.2) == "@" and symbol("ah", 0.2) == "V" and symbol("m", 0.05) == "m"
    assert symbol("pau", 0.3) == PAUSE and symbol("hh", 0.05) == "h" and symbol("er", 0.1) == "3:"
    assert merge_pauses([(0, 1, PAUSE), (1, 2, PAUSE), (2, 3, "m")]) == [(0, 2, PAUSE), (2, 3, "m")]


@needs_festival
def test_festival_speech_lines_up_with_its_phones():
    from training.data import festival

    voices = festival.installed_voices()
    assert voices, "festival without any of its English voices"
    for voice in voices:
        utt = festival.synthesize("Maps and apples, please.", voice)
        starts = np.array([s for s, _, _ in utt.phonemes])
        assert (np.diff(starts) > 0).all() and abs(utt.phonemes[-1][1] - utt.duration) < 0.05
        assert {"m", "p"} <= {p for _, _, p in utt.phonemes}
        loud = [np.sqrt(np.mean(utt.samples[int(s * utt.sample_rate): int(e * utt.sample_rate)] ** 2))
                for s, e, p in utt.phonemes if p in ("a", "{", "i:")]
        assert loud and min(loud) > 0.01  # the vowels are where Festival says
    with pytest.raises(RuntimeError, match="festival failed"):
        festival.synthesize("hello", "no_such_voice")


@needs_festival
def test_prepare_festival_writes_deterministic_examples(tmp_path):
    from training.data import prepare_festival

    assert prepare_festival.main(["--out", str(tmp_path / "a"), "--num", "3", "--seed", "0", "--workers", "2"]) == 0
    assert prepare_festival.main(["--out", str(tmp_path / "b"), "--num", "3", "--seed", "0", "--workers", "1"]) == 0
    paths = find_examples(tmp_path / "a")
    assert [p.name for p in paths] == [f"festival-{i:05d}.npz" for i in range(3)]
    for path in paths:
        ex = Example.load(path)
        assert ex.source == "festival" and len(ex.canonical) == num_video_frames(len(ex.audio), ex.fps)
        assert np.ptp(inner_gap(ex.canonical)) > 0.05 and mouth_energy_correlation(ex) > 0.2
        np.testing.assert_array_equal(ex.canonical, Example.load(tmp_path / "b" / path.name).canonical)


@needs_espeak
def test_espeak_language_markers_are_dropped():
    from training.data.prepare_espeak import clean_phonemes

    phones = [(0.0, 0.1, "(en)"), (0.1, 0.2, "D"), (0.2, 0.3, "@"), (0.3, 0.3, "(de)"), (0.3, 0.4, "B")]
    assert clean_phonemes(phones) == [(0.0, 0.2, "D"), (0.2, 0.3, "@"), (0.3, 0.4, "b")]


# --- speech-only source -------------------------------------------------------------------------------------


def test_arpabet_map_covers_cmu_phones():
    from training.data.prepare_speech import ARPABET_TO_ESPEAK, arpabet_symbol
    from training.data.visemes import PHONEME_TABLE

    assert set(CMU_PHONES) <= set(ARPABET_TO_ESPEAK) and len(CMU_PHONES) == 39
    for phone in CMU_PHONES:
        assert ARPABET_TO_ESPEAK[phone] in PHONEME_TABLE, phone
        assert arpabet_symbol(phone + "1") == arpabet_symbol(phone) != "_"
    assert arpabet_symbol("SIL") == "_" and arpabet_symbol("+NSN+") == "_"
    assert arpabet_symbol("AH0", 0.05) == "@" and arpabet_symbol("AH1", 0.15) == "V"


def test_text_normalisation_and_transcripts(tmp_path):
    from training.data.prepare_speech import normalise_text, read_transcripts

    assert normalise_text("Forty-two line Bible of about 1455,") == \
        "forty two line bible of about fourteen fifty five".split()
    note = tmp_path / "note.txt"
    note.write_text('Transcripts: A1 "Hello there"; B2 "Good night".\nC3|Plain text|plain text two\n')
    assert read_transcripts([note]) == {"A1": "Hello there", "B2": "Good night", "C3": "plain text two"}


def test_split_points_cut_long_audio_at_pauses():
    from training.data.prepare_speech import split_points

    rng = np.random.default_rng(0)
    sr = SAMPLE_RATE
    bursts = []
    for _ in range(9):  # 9 x (1.6 s sound + 0.4 s pause) = 18 s
        t = np.arange(int(1.6 * sr)) / sr
        bursts += [0.3 * np.sin(2 * np.pi * 150 * t) * (1 + rng.uniform()), np.zeros(int(0.4 * sr))]
    audio = np.concatenate(bursts).astype(np.float32)
    pieces = split_points(audio)
    assert len(pieces) >= 3
    for a, b in pieces:
        assert 2.0 * sr - 1 <= b - a <= 8.0 * sr + 1
        for cut in (a, b):
            if 0 < cut < len(audio):
                assert np.abs(audio[cut - 80: cut + 80]).max() < 1e-3  # cut in a pause
    assert split_points(np.zeros(sr * 3, dtype=np.float32)) == []


@needs_espeak
@pytest.mark.parametrize("with_transcript", [False, True])
def test_prepare_speech_on_synthetic_speech(tmp_path, with_transcript):
    pytest.importorskip("pocketsphinx")
    from scipy.signal import resample_poly

    from training.data import espeak, prepare_speech

    text = "Peter bought a big map, and Mary opened the window wide."
    utt = espeak.synthesize(text, voice="en-us", rate=150)
    audio = resample_poly(utt.samples.astype(np.float64), SAMPLE_RATE, utt.sample_rate)
    audio = np.concatenate([np.zeros(SAMPLE_RATE // 4), audio, np.zeros(SAMPLE_RATE // 4)])
    speech = tmp_path / "speech"
    speech.mkdir()
    sf.write(speech / "utt1.wav", audio.astype(np.float32), SAMPLE_RATE)
    args = ["--speech", str(speech), "--out", str(tmp_path / "out"), "--faces-per-utterance", "2"]
    if with_transcript:
        note = tmp_path / "transcripts.txt"
        note.write_text(f'utt1 "{text}"\n')
        args += ["--transcripts", str(note)]
    assert prepare_speech.main(args) == 0
    paths = find_examples(tmp_path / "out")
    assert [p.name for p in paths] == ["speech-utt1-00-f0.npz", "speech-utt1-00-f1.npz"]
    examples = [Example.load(p) for p in paths]
    for ex in examples:
        assert ex.source == "speech"
        assert len(ex.canonical) == num_video_frames(len(ex.audio), ex.fps)
        assert np.ptp(inner_gap(ex.canonical)) > 0.05
        assert mouth_energy_correlation(ex) > 0.2
    assert not np.array_equal(examples[0].neutral, examples[1].neutral)  # different faces

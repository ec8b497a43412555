"""bench/bilabial.py: GRID sentences from clip names, bilabial and vowel frames from phones, the closure score."""

from __future__ import annotations

import numpy as np
import pytest

from bench.bilabial import grid_sentence, phone_frames, score


def test_grid_codes_spell_their_sentences():
    assert grid_sentence("lbbc2a") == "lay blue by c two again"
    assert grid_sentence("bbaf2n") == "bin blue at f two now"
    assert grid_sentence("swiz9s") == "set white in z nine soon"
    with pytest.raises(ValueError):
        grid_sentence("lbbc2")


def test_bilabials_own_their_frames_and_short_ones_the_nearest():
    phones = [(0.0, 0.10, "SIL"), (0.10, 0.22, "B"), (0.22, 0.40, "AY1"), (0.40, 0.41, "P"), (0.41, 0.6, "S")]
    bilabials, vowels = phone_frames(phones, fps=25.0, frames=15)
    assert [list(b) for b in bilabials] == [[2, 3, 4], [10]]  # centres 0.1, 0.14, 0.18; a 10 ms P keeps frame 10
    assert list(np.flatnonzero(vowels)) == [5, 6, 7, 8, 9]


def test_a_bilabial_is_closed_when_the_lips_touch_on_any_of_its_frames():
    opening = np.array([0.05, 0.01, 0.06, 0.04, 0.03, 0.08])
    result = score(opening, [np.array([0, 1]), np.array([3, 4])], np.array([0, 0, 1, 0, 0, 1], bool), touch=0.02)
    assert result == {"bilabials": 2, "closed": 1, "vowel_opening": pytest.approx(0.07)}

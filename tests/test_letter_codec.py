"""The device runtime's letter coding: one-hot encoding and its errors for untrusted input."""

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from edgeseq.data import letter_patterns
from edgeseq_device.errors import InputError
from edgeseq_device.letters import LetterCodec

CODEC = LetterCodec("abcde", 4)


def test_patterns_are_the_tutorials_five_rotations():
    assert letter_patterns("abcde", 4) == [
        ("abcd", "e"),
        ("bcde", "a"),
        ("cdea", "b"),
        ("deab", "c"),
        ("eabc", "d"),
    ]


def test_encode_is_one_hot_in_vocabulary_order():
    x = CODEC.encode("abca")
    assert x.dtype == np.float32 and x.shape == (4, 5)
    assert x.sum() == 4
    assert [int(np.argmax(row)) for row in x] == [0, 1, 2, 0]


def test_all_sequences_is_the_whole_input_space():
    seqs = CODEC.all_sequences()
    assert len(seqs) == 5**4 == len(set(seqs))


@pytest.mark.parametrize(
    ("text", "message"),
    [("", "empty input"), ("abc", "got 3"), ("abcde", "got 5"), ("abcz", "'z' is not in the vocabulary")],
)
def test_bad_input_names_the_problem(text, message):
    with pytest.raises(InputError, match=message):
        CODEC.encode(text)


@given(st.text(max_size=8))
def test_any_text_encodes_or_raises_input_error(text):
    try:
        x = CODEC.encode(text)
    except InputError:
        assert len(text) != 4 or any(c not in "abcde" for c in text)
    else:
        decoded = "".join(CODEC.vocabulary[int(i)] for i in x.argmax(axis=1))
        assert decoded == text

"""The tutorial's letter data: each rotation of the vocabulary and the letter that follows it."""

from __future__ import annotations

import numpy as np

from edgeseq_device.letters import LetterCodec


def letter_patterns(vocabulary: str = "abcde", window: int = 4) -> list[tuple[str, str]]:
    """The tutorial's training set: each rotation of the vocabulary and the letter that follows it.

    For 'abcde' and window 4: abcd->e, bcde->a, cdea->b, deab->c, eabc->d.
    """
    cycle = vocabulary * (window // len(vocabulary) + 2)
    return [(cycle[i : i + window], cycle[i + window]) for i in range(len(vocabulary))]


def letter_arrays(codec: LetterCodec) -> tuple[np.ndarray, np.ndarray]:
    """(x [N, window, V] one-hot float32, y [N] int64 class indices), encoded by the device codec."""
    patterns = letter_patterns(codec.vocabulary, codec.window)
    x = codec.encode_batch([seq for seq, _ in patterns])
    y = np.array([codec.vocabulary.index(nxt) for _, nxt in patterns], dtype=np.int64)
    return x, y

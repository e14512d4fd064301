"""The letter model's pre/post-processing: letters -> one-hot window, probabilities -> next letter."""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

import numpy as np

from edgeseq_device.errors import InputError, ManifestError
from edgeseq_device.messages import shown
from edgeseq_device.model import Model


@dataclass(frozen=True)
class LetterCodec:
    """One-hot coding of fixed-length sequences over a vocabulary; training and the device both use it."""

    vocabulary: str
    window: int

    def __post_init__(self) -> None:
        if len(set(self.vocabulary)) != len(self.vocabulary) or not self.vocabulary:
            raise ValueError(f"vocabulary must be distinct letters, got {self.vocabulary!r}")
        if self.window < 1:
            raise ValueError(f"window must be positive, got {self.window}")

    def encode(self, sequence: str) -> np.ndarray:
        """`'abcd'` -> float32 array [window, len(vocabulary)]; InputError names what is wrong."""
        if not sequence:
            raise InputError("empty input: expected a sequence of letters")
        if len(sequence) != self.window:
            raise InputError(
                f"{shown(sequence)}: expected {self.window} letters from {self.vocabulary!r}, got {len(sequence):,}"
            )
        out = np.zeros((self.window, len(self.vocabulary)), dtype=np.float32)
        for i, letter in enumerate(sequence):
            index = self.vocabulary.find(letter)
            if index < 0:
                raise InputError(f"{shown(sequence)}: {letter!r} is not in the vocabulary {self.vocabulary!r}")
            out[i, index] = 1.0
        return out

    def encode_batch(self, sequences: list[str]) -> np.ndarray:
        return np.stack([self.encode(s) for s in sequences])

    def decode(self, probs: np.ndarray) -> str:
        return self.vocabulary[int(np.argmax(probs))]

    def all_sequences(self) -> list[str]:
        """Every sequence of `window` letters: the full input space, 5^4 = 625 for the default model."""
        return ["".join(p) for p in itertools.product(self.vocabulary, repeat=self.window)]


class LetterPredictor:
    """Answers `'abcd' -> 'e'` with an exported letter model, through onnxruntime only."""

    def __init__(self, model: Model) -> None:
        source = dict(model.manifest.data) if model.manifest is not None else dict(model.metadata)
        where = model.manifest.path if model.manifest is not None else f"{model.path} metadata"
        kind = source.get("kind")
        if kind != "letters":
            raise ManifestError(f"{model.path} is not a letter model (kind {shown(str(kind))} in {where})")
        try:
            self.codec = LetterCodec(str(source["vocabulary"]), int(source["window"]))
        except (KeyError, ValueError) as exc:
            raise ManifestError(f"{where}: no usable 'vocabulary' and 'window' ({exc})") from None
        expected = (1, self.codec.window, len(self.codec.vocabulary))
        if model.inputs[0].window_shape != expected:
            raise ManifestError(f"{model.path} takes {model.inputs[0]}, but {where} implies shape {list(expected)}")
        self.model = model
        self._x = np.zeros(expected, dtype=np.float32)

    def probabilities(self, sequence: str) -> np.ndarray:
        self._x[0] = self.codec.encode(sequence)
        return self.model.run(self._x)[0]

    def predict(self, sequence: str) -> str:
        return self.codec.decode(self.probabilities(sequence))


def numbered(label: str, sequences: Iterable[str]) -> Iterator[tuple[str, str]]:
    """Pair each input with where it came from ('argument 2', 'stdin line 7'), stripped of whitespace."""
    for number, sequence in enumerate(sequences, start=1):
        yield f"{label} {number}", sequence.strip()


def predict_each(predictor: LetterPredictor, inputs: Iterable[tuple[str, str]]) -> Iterator[tuple[str, str]]:
    """Yield (sequence, next letter) in order; the first bad input raises InputError naming where it was."""
    for where, sequence in inputs:
        try:
            letter = predictor.predict(sequence)
        except InputError as exc:
            raise InputError(f"{where}: {exc}") from None
        yield sequence, letter

"""Keras (tf.keras 2 via tf_keras) definitions of the models edgeseq exports."""

from __future__ import annotations

from typing import Any

from edgeseq import frameworks


def build_letter_rnn(window: int, vocab_size: int, units: int = 3) -> Any:
    """The tutorial's letter model: SimpleRNN(units) -> Dense(vocab, softmax), input [window, vocab]."""
    _, keras = frameworks.tensorflow()
    inputs = keras.Input(shape=(window, vocab_size), name="letters")
    hidden = keras.layers.SimpleRNN(units, name="rnn")(inputs)
    probs = keras.layers.Dense(vocab_size, activation="softmax", name="probs")(hidden)
    return keras.Model(inputs, probs, name="letter_rnn")

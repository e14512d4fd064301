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


def build_forecaster(window: int, n_features: int, units: tuple[int, int] = (80, 100), dropout: float = 0.2) -> Any:
    """The tutorial's forecaster: LSTM(80, return_sequences) -> Dropout -> LSTM(100) -> Dropout -> Dense(1)."""
    _, keras = frameworks.tensorflow()
    inputs = keras.Input(shape=(window, n_features), name="window")
    x = keras.layers.LSTM(units[0], return_sequences=True, name="lstm_1")(inputs)
    x = keras.layers.Dropout(dropout, name="dropout_1")(x)
    x = keras.layers.LSTM(units[1], name="lstm_2")(x)
    x = keras.layers.Dropout(dropout, name="dropout_2")(x)
    forecast = keras.layers.Dense(1, name="forecast")(x)
    return keras.Model(inputs, forecast, name="sensor_lstm")

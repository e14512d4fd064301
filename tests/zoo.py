"""Tiny Keras architectures, each built from a Keras module (Keras 3 or tf_keras), for the conversion tests.

Each entry: name -> (builder(keras) -> list of layers after the Input, the fused nodes expected).
"""

from __future__ import annotations

T, F = 6, 3


def _(**kwargs):
    return kwargs


ZOO = {
    # the table of the issue
    "lstm": (lambda k: [k.layers.LSTM(8), k.layers.Dense(1)], {"LSTM": 1}),
    "stacked_lstm": (
        lambda k: [k.layers.LSTM(6, return_sequences=True), k.layers.LSTM(5), k.layers.Dense(1)],
        {"LSTM": 2},
    ),
    "gru_reset_after": (lambda k: [k.layers.GRU(8, reset_after=True), k.layers.Dense(1)], {"GRU": 1}),
    "gru_reset_before": (lambda k: [k.layers.GRU(8, reset_after=False), k.layers.Dense(1)], {"GRU": 1}),
    "bidirectional_lstm": (
        lambda k: [k.layers.Bidirectional(k.layers.LSTM(4)), k.layers.Dense(1)],
        {"LSTM (bidirectional)": 1},
    ),
    "conv1d_lstm": (lambda k: [k.layers.Conv1D(4, 3), k.layers.LSTM(5), k.layers.Dense(1)], {"LSTM": 1}),
    "simple_rnn_softmax": (lambda k: [k.layers.SimpleRNN(3), k.layers.Dense(5, activation="softmax")], {"RNN": 1}),
    "lstm_dropouts": (lambda k: [k.layers.LSTM(5, dropout=0.2, recurrent_dropout=0.2), k.layers.Dense(1)], {"LSTM": 1}),
    # and beyond it
    "stacked_gru": (lambda k: [k.layers.GRU(6, return_sequences=True), k.layers.GRU(4), k.layers.Dense(1)], {"GRU": 2}),
    "bigru_lstm": (
        lambda k: [k.layers.Bidirectional(k.layers.GRU(4, return_sequences=True)), k.layers.LSTM(5), k.layers.Dense(1)],
        {"GRU (bidirectional)": 1, "LSTM": 1},
    ),
    "conv1d_strides": (
        lambda k: [
            k.layers.Conv1D(4, 3, strides=2, padding="same", activation="relu"),
            k.layers.GRU(4),
            k.layers.Dense(1),
        ],
        {"GRU": 1},
    ),
    "classifier": (
        lambda k: [k.layers.LSTM(6), k.layers.Dropout(0.3), k.layers.Dense(3, activation="softmax")],
        {"LSTM": 1},
    ),
    "multi_output_regressor": (lambda k: [k.layers.GRU(5), k.layers.Dense(3)], {"GRU": 1}),
    # go_backwards on its own: one node with direction="reverse", its sequence put back in Keras's order
    "lstm_backwards": (lambda k: [k.layers.LSTM(5, go_backwards=True), k.layers.Dense(1)], {"LSTM (reverse)": 1}),
    "gru_backwards_sequences": (
        lambda k: [k.layers.GRU(4, return_sequences=True, go_backwards=True), k.layers.LSTM(3), k.layers.Dense(1)],
        {"GRU (reverse)": 1, "LSTM": 1},
    ),
    "simple_rnn_backwards_sequences": (
        lambda k: [k.layers.SimpleRNN(3, return_sequences=True, go_backwards=True), k.layers.SimpleRNN(2)],
        {"RNN (reverse)": 1, "RNN": 1},
    ),
    "conv_bigru_seq_lstm": (
        lambda k: [
            k.layers.Conv1D(4, 2, padding="causal"),
            k.layers.Bidirectional(k.layers.GRU(3, return_sequences=True)),
            k.layers.LSTM(4),
            k.layers.Dense(2),
        ],
        {"GRU (bidirectional)": 1, "LSTM": 1},
    ),
    "activations": (
        lambda k: [
            k.layers.LSTM(4, activation="relu", recurrent_activation="hard_sigmoid", return_sequences=True),
            k.layers.GRU(4, activation="softsign", recurrent_activation="hard_sigmoid", return_sequences=True),
            k.layers.SimpleRNN(3, activation="elu", return_sequences=True),
            k.layers.LSTM(3, activation="linear", recurrent_activation="sigmoid"),
        ],
        {"LSTM": 2, "GRU": 1, "RNN": 1},
    ),
    "no_bias": (
        lambda k: [
            k.layers.LSTM(4, use_bias=False, return_sequences=True),
            k.layers.GRU(3, use_bias=False),
            k.layers.Dense(1, use_bias=False),
        ],
        {"LSTM": 1, "GRU": 1},
    ),
    "merge_modes": (
        lambda k: [
            k.layers.Bidirectional(k.layers.SimpleRNN(3, return_sequences=True), merge_mode="sum"),
            k.layers.Bidirectional(k.layers.GRU(3, return_sequences=True, reset_after=False), merge_mode="ave"),
            k.layers.Bidirectional(k.layers.LSTM(3), merge_mode="mul"),
        ],
        {"RNN (bidirectional)": 1, "GRU (bidirectional)": 1, "LSTM (bidirectional)": 1},
    ),
    "sequence_head": (
        lambda k: [
            k.layers.SpatialDropout1D(0.2),
            k.layers.LSTM(4, return_sequences=True),
            k.layers.LayerNormalization(),
            k.layers.TimeDistributed(k.layers.Dense(2)),
            k.layers.BatchNormalization(),
            k.layers.Activation("tanh"),
            k.layers.Flatten(),
            k.layers.Dense(1),
        ],
        {"LSTM": 1},
    ),
}


def build(keras, name: str, window: int | None = T, seed: int = 3):
    """The zoo model `name` in `keras` (the module), with random non-trivial weights."""
    import numpy as np

    layers, _ = ZOO[name]
    keras.utils.set_random_seed(seed)
    inputs = keras.Input(shape=(window, F), name="x")
    x = inputs
    for layer in layers(keras):
        x = layer(x)
    model = keras.Model(inputs, x, name=name)
    rng = np.random.default_rng(seed)
    for layer in model.layers:
        # BatchNormalization's moving statistics start at 0 and 1; move them so the test sees them used
        if type(layer).__name__ == "BatchNormalization":
            layer.set_weights([w + rng.uniform(0.1, 0.5, w.shape).astype(w.dtype) for w in layer.get_weights()])
        # Biases start at zero (an LSTM's forget gate at one): random ones, so a bias written in the wrong place
        # (a GRU's input and recurrent biases swapped, say) shows in the outputs
        values, names = layer.get_weights(), [w.name for w in layer.weights]
        if values and len(values) == len(names):
            biased = zip(values, names, strict=True)
            layer.set_weights([rng.normal(0, 0.3, w.shape).astype(w.dtype) if "bias" in n else w for w, n in biased])
    return model

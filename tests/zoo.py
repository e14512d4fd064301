"""Tiny Keras architectures, each built from a Keras module (Keras 3 or tf_keras), for the conversion tests.

ZOO: name -> (builder(keras) -> list of layers after the Input, the fused nodes expected): chains.
GRAPHS: name -> (builder(keras, inputs) -> the model's output tensor, the fused nodes expected): functional models
whose layers branch, merge, share weights or hand states on (issue 26).
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


def _residual(k, x):
    y = k.layers.LSTM(F, return_sequences=True)(x)
    return k.layers.Dense(1)(k.layers.LSTM(3)(k.layers.Add()([x, y])))


def _mha(k, x):  # the done-when model of issue 26, small
    x = k.layers.LSTM(8, return_sequences=True)(x)
    attended = k.layers.MultiHeadAttention(num_heads=2, key_dim=4)(x, x)
    x = k.layers.LayerNormalization()(k.layers.Add()([x, attended]))
    return k.layers.Dense(3, activation="softmax")(k.layers.GlobalAveragePooling1D()(x))


def _attention(k, x):
    x = k.layers.GRU(6, return_sequences=True)(x)
    context = k.layers.Attention()([x, x])
    return k.layers.Dense(1)(k.layers.GlobalAveragePooling1D()(k.layers.Concatenate()([x, context])))


def _parallel(k, x):
    branches = [
        k.layers.LSTM(4)(x),
        k.layers.GRU(3)(x),
        k.layers.Bidirectional(k.layers.SimpleRNN(2))(x),
        k.layers.Flatten()(x),
    ]
    return k.layers.Dense(2)(k.layers.Concatenate()(branches))


def _shared(k, x):
    shared = k.layers.LSTM(4)
    return k.layers.Dense(1)(k.layers.Add()([shared(x), shared(k.layers.Dense(F)(x))]))


def _states(k, x):
    sequence, h, c = k.layers.LSTM(4, return_sequences=True, return_state=True)(x)
    _, g = k.layers.GRU(3, return_state=True, go_backwards=True)(sequence)
    pooled = k.layers.GlobalAveragePooling1D()(sequence)
    return k.layers.Dense(2)(k.layers.Concatenate()([h, c, g, pooled]))


def _encoder_decoder(k, x):
    _, h, c = k.layers.LSTM(5, return_state=True)(x)
    decoded = k.layers.LSTM(5, return_sequences=True)(k.layers.Conv1D(4, 2, padding="causal")(x), initial_state=[h, c])
    _, s = k.layers.SimpleRNN(3, return_state=True)(decoded)
    return k.layers.Dense(1)(s)


def _bidirectional_states(k, x):
    y, hf, cf, hb, cb = k.layers.Bidirectional(k.layers.LSTM(3, return_state=True))(x)
    forward, backward = k.layers.Bidirectional(k.layers.GRU(2, return_sequences=True), merge_mode=None)(x)
    last = k.layers.Flatten()(k.layers.Concatenate()([forward, backward]))
    return k.layers.Dense(2)(k.layers.Concatenate()([y, hf, cf, hb, cb, last]))


def _nested(k, x):
    inner = k.Sequential([k.Input((T, F)), k.layers.LSTM(4, return_sequences=True), k.layers.GRU(3)], name="inner")
    return k.layers.Dense(1)(inner(x))


def _operations(k, x):  # TensorFlow ops between layers: Keras 3 operations, tf_keras's TFOpLambda layers
    y = k.layers.LSTM(4, return_sequences=True)(x * 2.0 - 1.0)
    return k.layers.Dense(1)(y[:, -1, :] + y[:, 0, :])


GRAPHS = {
    "residual_lstm": (_residual, {"LSTM": 2}),
    "lstm_multi_head_attention": (_mha, {"LSTM": 1}),
    "gru_attention": (_attention, {"GRU": 1}),
    "parallel_branches": (_parallel, {"LSTM": 1, "GRU": 1, "RNN (bidirectional)": 1}),
    "shared_lstm": (_shared, {"LSTM": 2}),
    "return_state": (_states, {"LSTM": 1, "GRU (reverse)": 1}),
    "encoder_decoder": (_encoder_decoder, {"LSTM": 2, "RNN": 1}),
    "bidirectional_states": (_bidirectional_states, {"LSTM (bidirectional)": 1, "GRU (bidirectional)": 1}),
    "nested_model": (_nested, {"LSTM": 1, "GRU": 1}),
    "operations_between_layers": (_operations, {"LSTM": 1}),
}


def expected(name: str) -> dict[str, int]:
    return (ZOO.get(name) or GRAPHS[name])[1]


def build(keras, name: str, window: int | None = T, seed: int = 3):
    """The zoo model `name` (of ZOO or GRAPHS) in `keras` (the module), with random non-trivial weights."""
    import numpy as np

    keras.utils.set_random_seed(seed)
    inputs = keras.Input(shape=(window, F), name="x")
    if name in GRAPHS:
        x = GRAPHS[name][0](keras, inputs)
    else:
        x = inputs
        for layer in ZOO[name][0](keras):
            x = layer(x)
    model = keras.Model(inputs, x, name=name)
    rng = np.random.default_rng(seed)
    for layer in [sub for top in model.layers for sub in getattr(top, "layers", [top])]:
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

"""Masking (issue 26, item 4): a masked recurrent call is written exactly (edgeseq.convert.masks), checked on
windows whose masked steps are at the start, at the end, in the middle, scattered, and everywhere; what cannot be
written exactly is refused with the layer and the reason."""

import numpy as np
import onnxruntime as ort
import pytest

from edgeseq.convert import convert, op_type_counts
from edgeseq.convert.audit import fused_nodes
from edgeseq.errors import ConversionError
from edgeseq_device.manifest import TensorSpec
from tests.test_convert_zoo import kerases

T, F, VOCABULARY = 8, 3, 20
FLAVOURS = ["keras3", "tf_keras"]
MASKED_STEPS = {"start": [0, 1, 2], "end": [6, 7], "middle": [3, 4], "scattered": [0, 2, 5, 7], "all": list(range(T))}


def _one_way(k, x):
    return k.layers.Dense(1)(k.layers.LSTM(5)(k.layers.Masking(0.0)(x)))


def _sequences(k, x):  # a sequence carried over masked steps, into a second masked layer
    x = k.layers.GRU(4, return_sequences=True)(k.layers.Masking(0.0)(x))
    return k.layers.Dense(2)(k.layers.SimpleRNN(3)(x))


def _bidirectional(k, x):  # a Bidirectional layer writes zero at masked steps of its sequence
    x = k.layers.Bidirectional(k.layers.LSTM(3, return_sequences=True))(k.layers.Masking(0.0)(x))
    return k.layers.Dense(1)(k.layers.Bidirectional(k.layers.GRU(2))(x))


def _backwards(k, x):
    return k.layers.Dense(1)(k.layers.LSTM(4, go_backwards=True)(k.layers.Masking(0.0)(x)))


def _pooled(k, x):  # the pooling averages the unmasked steps only: tf2onnx converts what Keras computes
    x = k.layers.LSTM(4, return_sequences=True)(k.layers.Masking(0.0)(x))
    return k.layers.Dense(1)(k.layers.GlobalAveragePooling1D()(x))


def _sequences_read_whole(k, x):  # what a masked step's output is, carried or zero, reaches the Dense
    x = k.layers.Masking(0.0)(x)
    carried = k.layers.Flatten()(k.layers.LSTM(3, return_sequences=True)(x))
    zeroed = k.layers.Flatten()(k.layers.Bidirectional(k.layers.GRU(2, return_sequences=True))(x))
    return k.layers.Dense(2)(k.layers.Concatenate()([carried, zeroed]))


def _ids(k, x):  # Embedding(mask_zero=True): id 0 is padding
    return k.layers.Dense(1)(k.layers.LSTM(4)(k.layers.Embedding(VOCABULARY, 3, mask_zero=True)(x)))


MODELS = {
    "masking_lstm": (_one_way, {"LSTM": 1}),
    "masking_gru_sequences_simple_rnn": (_sequences, {"GRU": 1, "RNN": 1}),
    "masking_bidirectional": (_bidirectional, {"LSTM (bidirectional)": 1, "GRU (bidirectional)": 1}),
    "masking_lstm_backwards": (_backwards, {"LSTM (reverse)": 1}),
    "masking_lstm_pooled": (_pooled, {"LSTM": 1}),
    "masking_sequences_read_whole": (_sequences_read_whole, {"LSTM": 1, "GRU (bidirectional)": 1}),
    "embedding_mask_zero": (_ids, {"LSTM": 1}),
}


def build(keras, name):
    """The model with random biases: from zero biases and state, a zero step leaves the state at zero, masked or not,
    and a mask at the start would go unchecked."""
    keras.utils.set_random_seed(8)
    inputs = keras.Input((T,) if name == "embedding_mask_zero" else (T, F), name="x")
    model = keras.Model(inputs, MODELS[name][0](keras, inputs), name=name)
    rng = np.random.default_rng(8)
    for layer in model.layers:
        values, names = layer.get_weights(), [w.name for w in layer.weights]
        if values and len(values) == len(names):
            pairs = zip(values, names, strict=True)
            layer.set_weights([rng.normal(0, 0.5, w.shape).astype(w.dtype) if "bias" in n else w for w, n in pairs])
    return model


def windows(name):
    """Each kind of masked window 8 times over (and 8 unmasked ones): zero rows for Masking(0.0), id 0 for ids."""
    rng = np.random.default_rng(0)
    if name == "embedding_mask_zero":
        x = rng.integers(1, VOCABULARY, (8 * (len(MASKED_STEPS) + 1), T)).astype(np.float32)
    else:
        x = rng.normal(size=(8 * (len(MASKED_STEPS) + 1), T, F)).astype(np.float32)
    for i, steps in enumerate(MASKED_STEPS.values()):
        x[8 * i : 8 * (i + 1), steps] = 0
    return x


def converted(model, x):
    out = (1, int(np.asarray(model(x[:1])).shape[1]))
    return convert(model, TensorSpec("x", (1, *x.shape[1:]), "float32"), TensorSpec("y", out, "float32"))


def max_diff(model, proto, x):
    """The largest difference; NaN where both give NaN counts as equal (Keras's masked mean of no step is 0 / 0)."""
    session = ort.InferenceSession(proto.SerializeToString(), providers=["CPUExecutionProvider"])
    got = np.concatenate([session.run(None, {"x": x[i : i + 1]})[0] for i in range(len(x))])
    want = np.asarray(model(x, training=False))
    both = np.isnan(got) & np.isnan(want)
    return float(np.nan_to_num(np.abs(np.where(both, 0, got - want)), nan=np.inf).max())


@pytest.mark.parametrize("flavour", FLAVOURS)
@pytest.mark.parametrize("name", list(MODELS))
def test_masked_steps_are_skipped_as_keras_skips_them(flavour, name):
    model = build(kerases()[flavour], name)
    x = windows(name)
    result = converted(model, x)
    counts = op_type_counts(result.proto.graph)
    assert counts["Loop"] == 0 and counts["Scan"] == 0 and result.audit["fused"] is True
    assert dict(fused_nodes(result.proto.graph)) == MODELS[name][1]
    diff = max_diff(model, result.proto, x)
    assert diff <= 1e-5, f"{flavour} {name}: max abs diff {diff:.3g}"


@pytest.mark.parametrize("flavour", FLAVOURS)
def test_the_mask_matters_on_these_windows(flavour):
    # the same weights without the mask give other outputs on the masked windows: the test above could not pass
    # by ignoring it
    keras = kerases()[flavour]
    model, x = build(keras, "masking_gru_sequences_simple_rnn"), windows("masking_gru_sequences_simple_rnn")
    unmasked = keras.Model(model.input, model.layers[-1](model.layers[-2](model.layers[-3](model.input))))
    for i in range(len(MASKED_STEPS)):
        masked = x[8 * i : 8 * (i + 1)]
        assert float(np.abs(np.asarray(model(masked)) - np.asarray(unmasked(masked))).max()) > 1e-2


@pytest.mark.parametrize("flavour", FLAVOURS)
def test_a_masked_layer_going_backwards_with_sequences_is_refused_by_name(flavour):
    keras = kerases()[flavour]
    inputs = keras.Input((T, F))
    x = keras.layers.Masking(0.0)(inputs)
    x = keras.layers.GRU(3, return_sequences=True, go_backwards=True, name="back")(x)
    model = keras.Model(inputs, keras.layers.Dense(1)(keras.layers.Flatten()(x)))
    with pytest.raises(ConversionError, match=r"back \(GRU\): masked steps with go_backwards=True and return_seq"):
        converted(model, windows("masking_lstm"))


@pytest.mark.parametrize("flavour", FLAVOURS)
@pytest.mark.parametrize("name", ["masking_sequences_read_whole", "embedding_mask_zero"])
def test_a_masked_models_batched_companion_computes_each_window_as_the_file_does(flavour, name, tmp_path):
    # each window of a batch has its own mask: its own count of steps, its own order
    import onnx

    from edgeseq.export.companions import TaskWindows, make_companion

    model, x = build(kerases()[flavour], name), windows(name)
    single = tmp_path / f"{name}.onnx"
    onnx.save(converted(model, x).proto, single)
    companion, entry = make_companion(single, TaskWindows(x, 1e-5, "masked windows"), sizes=(7, 48))
    assert companion is not None, entry["none"]
    assert entry["rewrites"] == [] and entry["max_abs_diff"] <= 1e-5


@pytest.mark.parametrize("flavour", FLAVOURS)
def test_export_checks_parity_on_windows_with_masked_steps(flavour, tmp_path):
    # before: N(0, 1) windows, not one step of which a Masking layer would mask
    from edgeseq.export import export_keras

    model = build(kerases()[flavour], "masking_sequences_read_whole")
    path = tmp_path / ("m.keras" if flavour == "keras3" else "m.h5")
    model.save(path)
    result = export_keras(path, features=("a", "b", "c"), out_dir=tmp_path / "o")
    parity = result.manifest["parity"]["windows"]
    assert "350 of them masked (every feature 0)" in parity["compared"] and parity["mask_value"] == 0.0
    assert parity["max_abs_diff"] <= 1e-5 and result.manifest["fusion"]["fused"] is True


def test_a_mask_from_a_layer_the_plan_does_not_know_is_still_refused_where_inexact():
    # the plan looks for Masking and mask_zero; a custom layer's compute_mask reaches the cut all the same
    keras = kerases()["keras3"]

    class ZeroSteps(keras.layers.Layer):
        def compute_mask(self, inputs, mask=None):
            return keras.ops.any(keras.ops.not_equal(inputs, 0.0), axis=-1)

        def call(self, inputs):
            return inputs

    inputs = keras.Input((T, F))
    x = keras.layers.GRU(3, return_sequences=True, go_backwards=True, name="back")(ZeroSteps()(inputs))
    model = keras.Model(inputs, keras.layers.Dense(1)(keras.layers.Flatten()(x)))
    with pytest.raises(ConversionError, match=r"back \(GRU\): masked steps with go_backwards=True"):
        converted(model, windows("masking_lstm"))

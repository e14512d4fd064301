"""The converter on a zoo of architectures, each built in Keras 3 and in tf.keras 2 (tf_keras): one fused
node per recurrent layer call (a Bidirectional one counted by its direction), no Loop or Scan, and onnxruntime
equal to the Keras that built the model within 1e-5 on random windows. The chains of tests/zoo.py's ZOO and the
branching functional models of its GRAPHS alike."""

import numpy as np
import onnxruntime as ort
import pytest

from edgeseq.convert import convert, op_type_counts
from edgeseq.convert.audit import fused_nodes
from edgeseq_device.manifest import TensorSpec
from tests.zoo import GRAPHS, ZOO, F, T, build, expected

WINDOWS = 32


def kerases():
    from edgeseq import frameworks

    _, tf_keras = frameworks.tensorflow()
    import keras

    return {"keras3": keras, "tf_keras": tf_keras}


def converted(model):
    out_shape = tuple(int(d) for d in np.asarray(model(np.zeros((1, T, F), np.float32))).shape)
    return convert(model, TensorSpec("x", (1, T, F), "float32"), TensorSpec("y", out_shape, "float32"))


def max_diff(model, proto):
    x = np.random.default_rng(0).normal(size=(WINDOWS, 1, T, F)).astype(np.float32)
    session = ort.InferenceSession(proto.SerializeToString(), providers=["CPUExecutionProvider"])
    got = np.concatenate([session.run(None, {"x": x[i]})[0] for i in range(WINDOWS)])
    want = np.concatenate([np.asarray(model(x[i], training=False)) for i in range(WINDOWS)])
    return float(np.abs(got - want).max())


@pytest.mark.parametrize("flavour", ["keras3", "tf_keras"])
@pytest.mark.parametrize("name", [*ZOO, *GRAPHS])
def test_every_recurrent_layer_becomes_one_fused_node_with_parity(flavour, name):
    model = build(kerases()[flavour], name)
    result = converted(model)
    counts = op_type_counts(result.proto.graph)
    assert counts["Loop"] == 0 and counts["Scan"] == 0, dict(counts)
    assert dict(fused_nodes(result.proto.graph)) == expected(name)
    assert result.audit["fused"] is True and result.warning is None
    diff = max_diff(model, result.proto)
    assert diff <= 1e-5, f"{flavour} {name}: max abs diff {diff:.3g}"


def test_the_zoo_is_at_least_twelve_architectures_and_covers_every_recurrent_op():
    assert len(ZOO) >= 12
    ops = {op for _, expected in ZOO.values() for op in expected}
    assert {"LSTM", "GRU", "RNN", "LSTM (bidirectional)", "GRU (bidirectional)", "RNN (bidirectional)"} <= ops


@pytest.mark.parametrize("flavour", ["keras3", "tf_keras"])
def test_hard_sigmoid_is_each_keras_own(flavour):
    # tf.keras 2: clip(0.2 x + 0.5); Keras 3: clip(x / 6 + 0.5). The node must carry the right alpha.
    keras = kerases()[flavour]
    inputs = keras.Input(shape=(T, F))
    model = keras.Model(inputs, keras.layers.GRU(3, recurrent_activation="hard_sigmoid")(inputs))
    gru = next(n for n in converted(model).proto.graph.node if n.op_type == "GRU")
    alpha = next(a.floats for a in gru.attribute if a.name == "activation_alpha")
    assert alpha[0] == pytest.approx(1 / 6 if flavour == "keras3" else 0.2)
    assert max_diff(model, converted(model).proto) <= 1e-5


@pytest.mark.parametrize("flavour", ["keras3", "tf_keras"])
def test_converting_leaves_the_keras_model_as_it_was(flavour):
    model = build(kerases()[flavour], "bigru_lstm")
    x = np.random.default_rng(1).normal(size=(4, T, F)).astype(np.float32)
    before = np.asarray(model(x, training=False))
    calls = [len(layer._inbound_nodes) for layer in model.layers]
    first, second = converted(model), converted(model)
    assert np.array_equal(before, np.asarray(model(x, training=False)))
    assert [len(layer._inbound_nodes) for layer in model.layers] == calls
    assert first.op_types == second.op_types

"""SimpleRNN -> one ONNX RNN node: parity and graph structure across layer configurations."""

import numpy as np
import onnx
import onnxruntime as ort
import pytest

from edgeseq import frameworks, rnn_fusion
from edgeseq.convert import convert, fusion_audit, op_type_counts, require_fused
from edgeseq.errors import ConversionError
from edgeseq_device.manifest import TensorSpec

T, F = 6, 4


def build(*layers, name="m"):
    _, keras = frameworks.tensorflow()
    keras.utils.set_random_seed(3)
    inputs = keras.Input(shape=(T, F), batch_size=1, name="x")
    x = inputs
    for make in layers:
        x = make(keras)(x)
    return keras.Model(inputs, x, name=name)


def rnn(units=3, **kwargs):
    return lambda keras: keras.layers.SimpleRNN(units, **kwargs)


def dense(units, **kwargs):
    return lambda keras: keras.layers.Dense(units, **kwargs)


def converted(model):
    out_shape = tuple(int(d) for d in model.output_shape)
    proto = convert(
        model, TensorSpec("x", (1, T, F), "float32"), TensorSpec(model.output_names[0], out_shape, "float32")
    )
    return proto


def max_diff(model, proto, n=64):
    x = np.random.default_rng(0).normal(size=(n, 1, T, F)).astype(np.float32)
    session = ort.InferenceSession(proto.SerializeToString(), providers=["CPUExecutionProvider"])
    got = np.concatenate([session.run(None, {"x": x[i]})[0] for i in range(n)])
    want = np.concatenate([model(x[i], training=False).numpy() for i in range(n)])
    return float(np.abs(got - want).max())


CASES = {
    "units=1": [rnn(1)],
    "units=3": [rnn(3), dense(5, activation="softmax")],
    "units=32": [rnn(32), dense(2)],
    "return_sequences": [rnn(4, return_sequences=True)],
    "no bias": [rnn(3, use_bias=False), dense(5)],
    "stacked": [rnn(8, return_sequences=True), rnn(5), dense(1)],
    "stacked with dense between": [rnn(8, return_sequences=True), dense(6), rnn(5), dense(1)],
    "relu": [rnn(4, activation="relu"), dense(2)],
    "sigmoid": [rnn(4, activation="sigmoid")],
}


@pytest.mark.parametrize("case", list(CASES))
def test_simple_rnn_becomes_one_rnn_node_per_layer_with_parity(case):
    model = build(*CASES[case])
    proto = converted(model)
    onnx.checker.check_model(proto, full_check=True)
    counts = op_type_counts(proto.graph)
    expected = sum(type(layer).__name__ == "SimpleRNN" for layer in model.layers)
    assert counts["RNN"] == expected and counts["Loop"] == 0 and counts["Scan"] == 0, dict(counts)
    assert fusion_audit(proto.graph, model)["fused"] is True
    diff = max_diff(model, proto)
    assert diff <= 1e-5, f"max abs diff {diff:.3g}"


def test_unsupported_activation_is_left_unfused_and_the_audit_refuses_it():
    model = build(rnn(3, activation="selu"), dense(2))
    chain, reasons = rnn_fusion.plan(model)
    assert chain is None and "activation 'selu' has no ONNX RNN equivalent" in reasons[0]
    proto = converted(model)
    assert op_type_counts(proto.graph)["Loop"] == 1
    assert max_diff(model, proto, n=8) <= 1e-5  # tf2onnx's Loop is slow, not wrong
    audit = fusion_audit(proto.graph, model)
    assert audit["fused"] is False
    with pytest.raises(ConversionError, match=r"not all fused: expected RNN x1, the graph has RNN x0, Loop x1 .*selu"):
        require_fused(audit, "m")
    warning = require_fused(audit, "m", allow_unfused=True)
    assert warning is not None and "selu" in warning


def test_a_branching_model_is_not_fused_here():
    _, keras = frameworks.tensorflow()
    inputs = keras.Input(shape=(T, F), batch_size=1, name="x")
    branch = keras.layers.SimpleRNN(3)(inputs)
    other = keras.layers.Flatten()(inputs)
    model = keras.Model(inputs, keras.layers.Concatenate()([branch, other]), name="branchy")
    chain, reasons = rnn_fusion.plan(model)
    assert chain is None and "single chain" in reasons[0]


def test_go_backwards_is_not_fused():
    model = build(rnn(3, go_backwards=True))
    assert "go_backwards=True is not supported" in rnn_fusion.fusable(model.layers[1])


def test_converting_leaves_the_keras_model_as_it_was():
    model = build(*CASES["stacked with dense between"])
    before = rnn_fusion.plan(model)
    first, second = converted(model), converted(model)
    assert rnn_fusion.plan(model) == before and before[0] is not None
    assert op_type_counts(first.graph)["RNN"] == op_type_counts(second.graph)["RNN"] == 2
    assert fusion_audit(second.graph, model)["not_fused_because"] == []

"""What the converter refuses, and says why: layers no fused ONNX op computes, stateful layers, masking. With
allow_unfused, tf2onnx's Loop is kept, slow but right, with a warning. (Branches, merges, return_state and
merge_mode=None are written: tests/zoo.py's GRAPHS.)"""

import numpy as np
import pytest

from edgeseq.convert import convert, op_type_counts
from edgeseq.errors import ConversionError
from edgeseq_device.manifest import TensorSpec
from tests.test_convert_zoo import converted, kerases, max_diff
from tests.zoo import F, T

FLAVOURS = ["keras3", "tf_keras"]


def chain_model(keras, *layers):
    inputs = keras.Input(shape=(T, F), name="x")
    x = inputs
    for layer in layers:
        x = layer(x)
    return keras.Model(inputs, x, name="m")


@pytest.mark.parametrize("flavour", FLAVOURS)
def test_an_activation_without_onnx_equivalent_is_refused_by_name_unless_allowed(flavour):
    keras = kerases()[flavour]
    model = chain_model(keras, keras.layers.SimpleRNN(3, activation="selu", name="odd"), keras.layers.Dense(2))
    named = r"odd \(SimpleRNN\): activation 'selu': no ONNX SimpleRNN equivalent.*--allow-unfused"
    with pytest.raises(ConversionError, match=named):
        converted(model)
    out = TensorSpec("y", (1, 2), "float32")
    result = convert(model, TensorSpec("x", (1, T, F), "float32"), out, allow_unfused=True)
    assert op_type_counts(result.proto.graph)["Loop"] == 1 and result.audit["fused"] is False
    assert "recurrent layers were not all fused" in result.warning and "selu" in result.warning
    assert max_diff(model, result.proto) <= 1e-5  # tf2onnx's Loop is slow, not wrong


def test_softplus_is_refused_since_onnxruntime_overflows_where_keras_does_not():
    # SimpleRNN(1, softplus) with a large weight: Keras gives 155.75, onnxruntime's RNN Softplus gave inf
    keras = kerases()["keras3"]
    model = chain_model(keras, keras.layers.SimpleRNN(1, activation="softplus", name="sp"))
    named = r"sp \(SimpleRNN\): activation 'softplus': onnxruntime's recurrent Softplus"
    with pytest.raises(ConversionError, match=named):
        converted(model)


@pytest.mark.parametrize("flavour", FLAVOURS)
def test_go_backwards_in_a_bidirectional_forward_layer_or_a_stateful_one_is_refused(flavour):
    # go_backwards on its own is written (tests/zoo.py's *_backwards); these two are not
    keras = kerases()[flavour]
    if flavour == "tf_keras":  # Keras 3 refuses to build this wrapper itself
        wrapped = keras.layers.Bidirectional(keras.layers.LSTM(3, go_backwards=True), name="bi")
        with pytest.raises(ConversionError, match=r"bi \(Bidirectional\): a Bidirectional wrapper whose forward"):
            converted(chain_model(keras, wrapped))
    inputs = keras.Input(batch_shape=(1, T, F), name="x")
    model = keras.Model(inputs, keras.layers.LSTM(3, go_backwards=True, stateful=True, name="back")(inputs))
    with pytest.raises(ConversionError, match=r"back \(LSTM\) is stateful and cannot be fused: go_backwards=True"):
        converted(model)


@pytest.mark.parametrize("flavour", FLAVOURS)
def test_a_stateful_layer_that_cannot_be_fused_is_refused_even_with_allow_unfused(flavour):
    keras = kerases()[flavour]
    inputs = keras.Input(batch_shape=(1, T, F))
    model = keras.Model(inputs, keras.layers.SimpleRNN(3, stateful=True, activation="selu", name="memory")(inputs))
    model(np.ones((1, T, F), np.float32))  # the state is now not zero: tf2onnx would freeze it
    for allow in (False, True):
        with pytest.raises(ConversionError, match=r"memory \(SimpleRNN\) is stateful and cannot be fused: activation"):
            convert(
                model, TensorSpec("x", (1, T, F), "float32"), TensorSpec("y", (1, 3), "float32"), allow_unfused=allow
            )


@pytest.mark.parametrize("flavour", FLAVOURS)
def test_masking_in_a_stateful_layer_is_refused(flavour):
    # other masked layers are written (tests/test_convert_masking.py); a window masked throughout would reset a
    # carried state to zero where Keras keeps it
    keras = kerases()[flavour]
    inputs = keras.Input(batch_shape=(1, T, F), name="x")
    x = keras.layers.GRU(3, stateful=True, name="g")(keras.layers.Masking(0.0)(inputs))
    with pytest.raises(ConversionError, match=r"g \(GRU\) is stateful and cannot be fused: masked steps in a stateful"):
        converted(keras.Model(inputs, x))


@pytest.mark.parametrize("flavour", FLAVOURS)
def test_a_model_without_recurrent_layers_goes_through_tf2onnx_whole(flavour):
    keras = kerases()[flavour]
    inputs = keras.Input(shape=(T, F))
    a = keras.layers.Dense(4)(inputs)
    model = keras.Model(inputs, keras.layers.Flatten()(keras.layers.Add()([a, keras.layers.Dense(4)(inputs)])))
    result = converted(model)
    assert result.audit["fused"] is True and result.audit["recurrent_layers"] == []
    assert max_diff(model, result.proto) <= 1e-5


@pytest.mark.parametrize("flavour", FLAVOURS)
def test_a_convlstm_is_recurrent_and_its_refusal_names_the_layer_its_class_and_why(flavour):
    # issue 26: "expected , the graph has Loop x1" named nothing, and the manifest listed no recurrent layer
    keras = kerases()[flavour]
    inputs = keras.Input(shape=(T, F), name="x")
    x = keras.layers.Reshape((T, F, 1))(inputs)
    x = keras.layers.ConvLSTM1D(2, 3, name="conv")(x)
    model = keras.Model(inputs, keras.layers.Dense(1)(keras.layers.Flatten()(x)), name="m")
    with pytest.raises(ConversionError) as refused:
        converted(model)
    message = str(refused.value)
    assert "conv (ConvLSTM1D): no ONNX recurrent op computes it" in message and "--allow-unfused" in message
    result = convert(
        model, TensorSpec("x", (1, T, F), "float32"), TensorSpec("y", (1, 1), "float32"), allow_unfused=True
    )
    assert result.audit["recurrent_layers"] == ["conv (ConvLSTM1D)"]
    assert result.audit["expected_fused"] == {} and result.audit["fused"] is False
    assert "expected none, the graph has Loop x1 (conv (ConvLSTM1D): no ONNX recurrent op" in result.warning
    assert max_diff(model, result.proto) <= 1e-5


@pytest.mark.parametrize("flavour", FLAVOURS)
def test_in_a_branching_model_an_unfusable_layer_keeps_its_loop_and_the_others_are_fused(flavour):
    keras = kerases()[flavour]
    inputs = keras.Input(shape=(T, F), name="x")
    odd = keras.layers.SimpleRNN(3, activation="selu", name="odd")(inputs)
    model = keras.Model(inputs, keras.layers.Dense(1)(keras.layers.Concatenate()([odd, keras.layers.LSTM(2)(inputs)])))
    with pytest.raises(ConversionError, match=r"odd \(SimpleRNN\): activation 'selu'"):
        converted(model)
    out = TensorSpec("y", (1, 1), "float32")
    result = convert(model, TensorSpec("x", (1, T, F), "float32"), out, allow_unfused=True)
    counts = op_type_counts(result.proto.graph)
    assert counts["LSTM"] == 1 and counts["Loop"] == 1 and counts["RNN"] == 0
    assert result.audit["expected_fused"] == {"LSTM": 1, "RNN": 1} and result.audit["fused"] is False
    assert max_diff(model, result.proto) <= 1e-5


@pytest.mark.parametrize("flavour", FLAVOURS)
def test_a_stateful_layer_called_twice_is_refused(flavour):
    keras = kerases()[flavour]
    inputs = keras.Input(batch_shape=(1, T, F), name="x")
    memory = keras.layers.GRU(3, stateful=True, name="memory")
    model = keras.Model(inputs, keras.layers.Add()([memory(inputs), memory(keras.layers.Dense(F)(inputs))]))
    with pytest.raises(ConversionError, match=r"memory: a stateful layer called more than once"):
        convert(model, TensorSpec("x", (1, T, F), "float32"), TensorSpec("y", (1, 3), "float32"))

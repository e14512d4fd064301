"""SimpleRNN as one ONNX `RNN` node: edgeseq writes the node from the layer's weights.

tf2onnx 1.17 rewrites Keras LSTM and GRU into fused ONNX ops but has no rewriter for SimpleRNN, which it
leaves as a `Loop` over a subgraph. Two ways to fuse it were open: a tf2onnx `custom_rewriter`, which has to
pattern-match TensorFlow's while-loop internals, or a graph pass over tf2onnx's ONNX `Loop`, which has to
pattern-match tf2onnx's own loop layout. Both match internals that change between versions, and a pattern
that half-matches produces a wrong graph that still runs.

edgeseq does neither. ONNX `RNN` is SimpleRNN by definition (`H_t = f(X_t W^T + H_{t-1} R^T + Wb + Rb)`), so
the node is written directly from the layer's kernel, recurrent kernel and bias, and tf2onnx converts only
the non-recurrent runs of layers in between. The pieces are stitched into one graph in the order of the
model's layer chain. Nothing is inferred from a converted loop, so nothing can be matched wrongly; and the
export's parity check against Keras still verifies every result.

Scope: models whose layers form a single chain (Sequential, or a functional model without branches), and
SimpleRNN layers without go_backwards, state or masking, with an activation that ONNX `RNN` supports. Any
other SimpleRNN is not fused here (`fusable` says why); the export's fusion audit then refuses it or, with
--allow-unfused, warns and keeps tf2onnx's Loop.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from edgeseq import frameworks
from edgeseq_device.manifest import TensorSpec

# Keras activation -> (ONNX RNN activation, activation_alpha, activation_beta).
ACTIVATIONS: dict[str, tuple[str, float | None, float | None]] = {
    "tanh": ("Tanh", None, None),
    "relu": ("Relu", None, None),
    "sigmoid": ("Sigmoid", None, None),
    "linear": ("Affine", 1.0, 0.0),
    "softsign": ("Softsign", None, None),
    "softplus": ("Softplus", None, None),
    "elu": ("Elu", 1.0, None),
    "hard_sigmoid": ("HardSigmoid", 0.2, 0.5),  # tf.keras 2's hard_sigmoid: clip(0.2 x + 0.5, 0, 1)
}


def _activation_name(layer: Any) -> str:
    activation = layer.activation
    return getattr(activation, "__name__", type(activation).__name__)


def fusable(layer: Any) -> str | None:
    """None if this SimpleRNN can be written as one ONNX RNN node; otherwise the reason it cannot."""
    if type(layer).__name__ != "SimpleRNN":
        return f"{layer.name} is a {type(layer).__name__}, not a SimpleRNN"
    name = _activation_name(layer)
    if name not in ACTIVATIONS:
        return f"{layer.name}: activation {name!r} has no ONNX RNN equivalent (supported: {', '.join(ACTIVATIONS)})"
    for flag in ("go_backwards", "stateful", "return_state"):
        if getattr(layer, flag, False):
            return f"{layer.name}: {flag}=True is not supported by the fused conversion"
    return None


def layer_chain(model: Any) -> list[Any] | None:
    """The model's layers in order if each one feeds only the next (InputLayer excluded), else None."""
    layers = [layer for layer in model.layers if type(layer).__name__ != "InputLayer"]
    previous = model.inputs[0] if len(model.inputs) == 1 else None
    if previous is None or len(model.outputs) != 1:
        return None
    for layer in layers:
        if len(layer._inbound_nodes) != 1 or layer.input is not previous or type(layer).__name__ == "Masking":
            return None
        previous = layer.output
    return layers if previous is model.outputs[0] else None


def plan(model: Any) -> tuple[list[Any] | None, list[str]]:
    """(layer chain, reasons) for fusing every SimpleRNN: the chain is None when nothing is to be fused
    here, either because there is no SimpleRNN or because some cannot be (the reasons say why)."""
    simple = [layer for layer in model.layers if type(layer).__name__ == "SimpleRNN"]
    if not simple:
        return None, []
    chain = layer_chain(model)
    if chain is None:
        return None, [f"{model.name}: layers do not form a single chain; SimpleRNN left to tf2onnx (Loop)"]
    reasons = [reason for layer in simple if (reason := fusable(layer))]
    return (None, reasons) if reasons else (chain, [])


def _rnn_nodes(layer: Any, source: str, target: str, prefix: str) -> tuple[list[Any], list[Any]]:
    """ONNX nodes and initializers computing `layer` from `source` [batch, T, F] into `target`."""
    from onnx import helper, numpy_helper

    weights = layer.get_weights()
    kernel, recurrent = weights[0], weights[1]
    units = int(layer.units)
    bias = weights[2] if layer.use_bias else np.zeros(units, dtype=np.float32)
    op_activation, alpha, beta = ACTIVATIONS[_activation_name(layer)]
    inits = [
        numpy_helper.from_array(kernel.T[None].astype(np.float32), f"{prefix}W"),
        numpy_helper.from_array(recurrent.T[None].astype(np.float32), f"{prefix}R"),
        numpy_helper.from_array(np.concatenate([bias, np.zeros(units)]).astype(np.float32)[None], f"{prefix}B"),
        # Squeeze the num_directions axis: 1 of Y [T, 1, batch, units], 0 of Y_h [1, batch, units].
        numpy_helper.from_array(np.array([1 if layer.return_sequences else 0], dtype=np.int64), f"{prefix}axis"),
    ]
    attrs: dict[str, Any] = {"hidden_size": units, "activations": [op_activation]}
    if alpha is not None:
        attrs["activation_alpha"] = [alpha]
    if beta is not None:
        attrs["activation_beta"] = [beta]
    nodes = [helper.make_node("Transpose", [source], [f"{prefix}x_tbf"], perm=[1, 0, 2], name=f"{prefix}to_time_major")]
    rnn_inputs = [f"{prefix}x_tbf", f"{prefix}W", f"{prefix}R", f"{prefix}B"]
    if layer.return_sequences:
        nodes += [
            helper.make_node("RNN", rnn_inputs, [f"{prefix}Y"], name=f"{prefix}rnn", **attrs),
            helper.make_node("Squeeze", [f"{prefix}Y", f"{prefix}axis"], [f"{prefix}y_tbu"], name=f"{prefix}sq"),
            helper.make_node("Transpose", [f"{prefix}y_tbu"], [target], perm=[1, 0, 2], name=f"{prefix}to_batch"),
        ]
    else:
        nodes += [
            helper.make_node("RNN", rnn_inputs, ["", f"{prefix}Y_h"], name=f"{prefix}rnn", **attrs),
            helper.make_node("Squeeze", [f"{prefix}Y_h", f"{prefix}axis"], [target], name=f"{prefix}sq"),
        ]
    return nodes, inits


def _tf2onnx_segment(layers: list[Any], source: TensorSpec, target: str, prefix: str, opset: int) -> Any:
    """Convert a run of non-recurrent layers with tf2onnx; rename its internals under `prefix`."""
    tf, keras = frameworks.tensorflow()
    tf2onnx = frameworks.tf2onnx()
    inputs = keras.Input(shape=source.shape[1:], batch_size=source.shape[0])
    x = inputs
    for layer in layers:
        # A copy with the same weights: calling the model's own layer here would give it a second inbound
        # node, and the model would no longer read as a single chain (to plan() or to anyone else).
        twin = layer.__class__.from_config(layer.get_config())
        x = twin(x)
        twin.set_weights(layer.get_weights())
    segment = keras.Model(inputs, x)
    signature = (tf.TensorSpec(source.shape, tf.float32, name=source.name),)
    proto, _ = tf2onnx.convert.from_keras(segment, input_signature=signature, opset=opset)
    graph = proto.graph
    keep = {source.name}
    out_name = graph.output[0].name
    rename = {}
    for node in graph.node:
        for name in [*node.input, *node.output]:
            if name and name not in keep and name not in rename:
                rename[name] = target if name == out_name else prefix + name
    for init in graph.initializer:
        rename.setdefault(init.name, prefix + init.name)
    for node in graph.node:
        node.name = prefix + node.name
        node.input[:] = [rename.get(n, n) if n else n for n in node.input]
        node.output[:] = [rename.get(n, n) if n else n for n in node.output]
    for init in graph.initializer:
        init.name = rename[init.name]
    return graph


def _output_shape(layer: Any, source: TensorSpec) -> tuple[int, ...]:
    return tuple(int(d) for d in layer.compute_output_shape(source.shape))


def convert_fused(model: Any, chain: list[Any], input_spec: TensorSpec, output_spec: TensorSpec, opset: int) -> Any:
    """One ONNX model: an RNN node per SimpleRNN in `chain`, tf2onnx for each run of other layers."""
    from onnx import TensorProto, helper

    nodes, inits = [], []
    current = input_spec
    runs: list[list[Any]] = []
    for layer in chain:
        if type(layer).__name__ == "SimpleRNN" or not runs or type(runs[-1][-1]).__name__ == "SimpleRNN":
            runs.append([layer])
        else:
            runs[-1].append(layer)
    for index, run in enumerate(runs):
        last = index == len(runs) - 1
        prefix = f"s{index}_"
        if type(run[0]).__name__ == "SimpleRNN":
            shape = _output_shape(run[0], current)
            target = output_spec.name if last else f"{prefix}{run[0].name}_out"
            run_nodes, run_inits = _rnn_nodes(run[0], current.name, target, prefix)
            nodes += run_nodes
            inits += run_inits
        else:
            shape = tuple(int(d) for d in run[-1].compute_output_shape(_chain_shape(run, current.shape)))
            target = output_spec.name if last else f"{prefix}out"
            graph = _tf2onnx_segment(run, current, target, prefix, opset)
            nodes += list(graph.node)
            inits += list(graph.initializer)
        current = TensorSpec(target, shape, "float32")
    graph = helper.make_graph(
        nodes,
        model.name,
        [helper.make_tensor_value_info(input_spec.name, TensorProto.FLOAT, list(input_spec.shape))],
        [helper.make_tensor_value_info(output_spec.name, TensorProto.FLOAT, list(current.shape))],
        initializer=inits,
    )
    opsets = [helper.make_opsetid("", opset)]
    proto = helper.make_model(graph, opset_imports=opsets, producer_name="edgeseq (RNN) + tf2onnx")
    proto.ir_version = helper.find_min_ir_version_for(opsets)  # the oldest IR that carries this opset
    return proto


def _chain_shape(layers: list[Any], shape: tuple[int, ...]) -> tuple[int, ...]:
    """Input shape of the last layer of `layers`, given the shape entering the first."""
    for layer in layers[:-1]:
        shape = tuple(int(d) for d in layer.compute_output_shape(shape))
    return shape

"""The layers edgeseq does not write itself go through tf2onnx: a run of layers between recurrent ones (a
segment), or a whole model that is not a single chain.

Each is traced as a tf.function that calls the model's own layers with training=False, and converted with
`tf2onnx.convert.from_function`. This works for layers of either Keras (tf2onnx's `from_keras` fails on
Keras 3 models) and calls the layers on plain tensors, so the model's own graph of layers is not touched.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from edgeseq import frameworks
from edgeseq_device.manifest import TensorSpec


def _traced(call: Callable[[Any], Any], source: TensorSpec, opset: int) -> Any:
    tf, _ = frameworks.tensorflow()
    tf2onnx = frameworks.tf2onnx()
    signature = (tf.TensorSpec(source.shape, tf.float32, name=source.name),)
    function = tf.function(call, input_signature=signature, autograph=False)
    proto, _ = tf2onnx.convert.from_function(function, input_signature=signature, opset=opset)
    return proto.graph


def _rename(graph: Any, source: str, target: str, prefix: str) -> Any:
    """Give the graph's input the name `source`, its output `target`, and everything else `prefix`."""
    rename = {graph.input[0].name: source, graph.output[0].name: target}
    for node in graph.node:
        for name in [*node.input, *node.output]:
            if name and name not in rename:
                rename[name] = prefix + name
    for init in graph.initializer:
        rename.setdefault(init.name, prefix + init.name)
    for node in graph.node:
        node.name = prefix + node.name
        node.output[:] = [rename.get(n, n) if n else n for n in node.output]
    _rename_uses(graph, rename)
    for init in graph.initializer:
        init.name = rename[init.name]
    return graph


def _rename_uses(graph: Any, rename: dict[str, str]) -> None:
    """Rename every use of an outer name, in subgraphs too: a Loop's body reads outer values by name."""
    for node in graph.node:
        node.input[:] = [rename.get(n, n) if n else n for n in node.input]
        for attr in node.attribute:
            for sub in [attr.g] if attr.HasField("g") else list(attr.graphs):
                _rename_uses(sub, rename)


def segment(layers: list[Any], source: TensorSpec, target: str, prefix: str, opset: int) -> Any:
    """The ONNX graph of `layers` applied in order to `source`, its output named `target`."""

    def call(x: Any) -> Any:
        for layer in layers:
            x = layer(x, training=False)
        return x

    return _rename(_traced(call, source, opset), source.name, target, prefix)


def whole_model(model: Any, source: TensorSpec, target: str, opset: int) -> Any:
    """The whole model through tf2onnx (a model that is not a single chain)."""
    return _rename(_traced(lambda x: model(x, training=False), source, opset), source.name, target, "m_")

"""The fusion plan: which layers edgeseq writes itself, which go to tf2onnx, and what is refused and why.

edgeseq writes recurrent layers itself when the model's layers form a single chain (Sequential, or a
functional model without branches): each recurrent layer becomes one fused node and each run of other
layers between them one tf2onnx segment. Anything else goes to tf2onnx whole, and a recurrent layer in it is
"not fused" with a reason, which the export refuses unless --allow-unfused.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from edgeseq.convert import recurrent


@dataclass(frozen=True)
class Plan:
    """`chain`: the layers in order when edgeseq stitches the graph itself (else None: tf2onnx converts the
    whole model); a recurrent layer in `unfusable` goes to a tf2onnx segment (a Loop). `recurrent`: every
    recurrent layer (a Bidirectional wrapper counts once). `unfusable`: layer name -> why it cannot be fused
    (`reasons` says them with each layer's class).
    `refused`: reasons no option lifts (a stateful layer that cannot be fused: tf2onnx would freeze its
    state). `stateful`: the stateful layers, whose state becomes an input and an output of the graph."""

    chain: list[Any] | None
    recurrent: list[Any]
    unfusable: dict[str, str]
    refused: list[str]
    stateful: list[Any]

    def reasons(self) -> list[str]:
        """Why each unfusable layer is, as `name (Class): reason`."""
        classes = {layer.name: recurrent.keras_class(layer) for layer in self.recurrent}
        return [f"{name} ({classes.get(name.rsplit('/', 1)[-1], '?')}): {why}" for name, why in self.unfusable.items()]


def _layers(model: Any) -> list[Any]:
    return [layer for layer in model.layers if type(layer).__name__ != "InputLayer"]


def _parents(tensor: Any) -> tuple[Any, list[Any], int]:
    """The layer that made `tensor` in the model's graph, the tensors that layer call read, and how many tensors
    the call made (an LSTM with return_state makes three)."""
    layer, node_index, _ = tensor._keras_history
    node = layer._inbound_nodes[node_index]
    inputs = node.keras_inputs if hasattr(node, "keras_inputs") else node.input_tensors  # tf_keras, Keras 3
    outputs = node.outputs
    return layer, list(inputs), len(outputs) if isinstance(outputs, list | tuple) else 1


def layer_chain(model: Any) -> list[Any] | None:
    """The layers from the model's input to its output if each reads only the one before it, else None.

    A Sequential model is a chain by construction. A functional model is walked back from its output, through
    the call that made each tensor (a loaded Keras 3 model keeps several calls per layer, so counting a
    layer's calls proves nothing).
    """
    if any(cls.__name__ == "Sequential" for cls in type(model).__mro__):
        return _layers(model)
    if len(model.inputs) != 1 or len(model.outputs) != 1:
        return None
    chain, tensor = [], model.outputs[0]
    while tensor is not model.inputs[0]:
        layer, parents, made = _parents(tensor)
        # a call that reads or makes several tensors is no link of a chain (which output is read is not kept)
        if type(layer).__name__ == "InputLayer" or len(parents) != 1 or made != 1:
            return None
        chain.append(layer)
        tensor = parents[0]
    return chain[::-1]


def _nested_recurrent(model: Any, path: str) -> list[tuple[str, Any]]:
    found = []
    for layer in _layers(model):
        if recurrent.is_recurrent(layer):
            found.append((path, layer))
        elif hasattr(layer, "layers") and hasattr(layer, "inputs"):
            found += _nested_recurrent(layer, f"{path}{layer.name}/")
    return found


# tf_keras wraps TensorFlow calls made between layers (x * 2.0, x[:, -1], tf.reduce_mean) in these layers;
# Keras 3 records them as operations that are not layers at all.
_OP_LAYERS = {"TFOpLambda", "SlicingOpLambda", "ClassMethod", "InstanceMethod", "InstanceProperty"}


def _is_plain_layer(layer: Any) -> bool:
    names = {cls.__name__ for cls in type(layer).__mro__}
    return "Layer" in names and type(layer).__name__ not in _OP_LAYERS


def _masks(layer: Any) -> bool:
    return type(layer).__name__ == "Masking" or bool(getattr(layer, "mask_zero", False))


def make_plan(model: Any) -> Plan:
    layers = _layers(model)
    found = _nested_recurrent(model, "")
    chain = layer_chain(model)
    operations = chain is not None and not all(_is_plain_layer(layer) for layer in chain)
    if operations:  # replaying an operation needs its other arguments: tf2onnx converts the whole model
        chain = None
    unfusable: dict[str, str] = {}
    refused: list[str] = []
    masking = any(_masks(layer) for layer in layers)
    stateful: list[Any] = []
    for path, layer in found:
        name = f"{path}{layer.name}"
        if path:
            reason = f"it is inside the nested model {path.rstrip('/')!r}; edgeseq fuses the top model's layers only"
        elif masking:
            reason = (
                "the model masks steps (a Masking layer, or an Embedding with mask_zero=True): Keras skips masked "
                "steps, which no ONNX recurrent op can"
            )
        elif operations:
            reason = (
                "the model applies operations between its layers (such as x * 2.0, slicing or ops.mean); edgeseq "
                "fuses models made of Keras layers only (use layers such as Rescaling or GlobalAveragePooling1D)"
            )
        elif chain is None and not getattr(layer, "return_state", False):
            reason = "the model's layers branch or merge; edgeseq fuses layers of a single chain only"
        else:
            reason = recurrent.refusal(layer)
        if recurrent.stateful(layer):
            if recurrent.keras_class(layer) == recurrent.WRAPPER:
                reason = "a stateful Bidirectional layer's backward direction would need rows not read yet"
            if reason:  # tf2onnx would freeze the layer's current state into the file: never a way out
                refused.append(f"{name} ({recurrent.keras_class(layer)}) is stateful and cannot be fused: {reason}")
            else:
                stateful.append(layer)
            continue
        if reason:
            unfusable[name] = reason
    return Plan(chain, [layer for _, layer in found], unfusable, refused, stateful)

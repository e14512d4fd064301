"""The table of recurrent writers, and the one function that writes a recurrent layer as one fused ONNX node.

`WRITERS` maps a Keras recurrent layer class to the module that turns its weights into one direction of the
ONNX op (lstm.py, gru.py, simple_rnn.py). A `Bidirectional` wrapper over any of them becomes one node with
direction="bidirectional": ONNX's reverse direction reads the sequence backwards and returns its outputs in
forward time order, which is what Keras's backward layer gives the wrapper once it has re-reversed them.

The node works time-major (onnxruntime's CPU kernels do not support layout=1), so a Transpose goes in front
of it and the outputs are brought back to Keras's [batch, T, units] or [batch, units], with the two
directions merged as the wrapper's merge_mode says.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from edgeseq.convert import gru, lstm, masks, simple_rnn
from edgeseq.convert.gates import Direction, Unfusable

WRITERS = {"LSTM": lstm, "GRU": gru, "SimpleRNN": simple_rnn}
WRAPPER = "Bidirectional"
MERGE_MODES = ("concat", "sum", "ave", "mul", None)  # None: the two directions are two outputs


def keras_class(layer: Any) -> str:
    """The Keras class a layer is (a user's subclass of LSTM counts as an LSTM)."""
    for cls in type(layer).__mro__:
        if cls.__name__ in WRITERS or cls.__name__ == WRAPPER:
            return cls.__name__
    return type(layer).__name__


GENERIC = "RNN"  # keras.layers.RNN over a cell: recurrent, but not one of the layers written here
CELL_OPS = {"LSTMCell": "LSTM", "GRUCell": "GRU", "SimpleRNNCell": "RNN"}


def is_recurrent(layer: Any) -> bool:
    """A layer that runs a recurrence over time: one edgeseq writes, a Bidirectional wrapper, or any other
    subclass of keras.layers.RNN (ConvLSTM1D and its kin, a user's own), so that it is named when refused."""
    return keras_class(layer) in (*WRITERS, WRAPPER) or any(cls.__name__ == GENERIC for cls in type(layer).__mro__)


def _unwritable(layer: Any) -> bool:
    """An RNN subclass that is none of the layers written here, nor a plain RNN over a cell."""
    return keras_class(layer) not in (*WRITERS, WRAPPER, GENERIC)


def fused_op(layer: Any) -> tuple[str, str]:
    """(ONNX op, direction) the layer becomes, or would become if it could be written; ("", "") for a recurrent
    layer no ONNX recurrent op computes (ConvLSTM1D)."""
    if _unwritable(layer):
        return "", ""
    if keras_class(layer) == WRAPPER:
        return fused_op(layer.forward_layer)[0], "bidirectional"
    if keras_class(layer) == GENERIC:
        return CELL_OPS.get(type(getattr(layer, "cell", None)).__name__, "RNN"), "forward"
    return WRITERS[keras_class(layer)].OP, "reverse" if backwards(layer) else "forward"


def stateful(layer: Any) -> bool:
    inner = [layer.forward_layer, layer.backward_layer] if keras_class(layer) == WRAPPER else [layer]
    return any(getattr(each, "stateful", False) for each in inner)


def _common_refusal(layer: Any, wrapped_forward: bool = False) -> str | None:
    if getattr(layer, "time_major", False):
        return "time_major=True"
    if getattr(layer, "go_backwards", False) and wrapped_forward:
        return "a Bidirectional wrapper whose forward layer has go_backwards=True"
    return None


def backwards(layer: Any) -> bool:
    """A layer on its own that reads its input from the last step to the first (go_backwards=True): one node
    with direction="reverse", whose sequence output is put back in Keras's order (its first step is the one
    read first, the input's last)."""
    return keras_class(layer) in WRITERS and bool(getattr(layer, "go_backwards", False))


def directions(layer: Any) -> list[Direction]:
    """The layer's directions in ONNX form; raises Unfusable with the reason when it has none."""
    if _unwritable(layer):
        raise Unfusable(
            "no ONNX recurrent op computes it: edgeseq writes LSTM, GRU and SimpleRNN layers, alone or in Bidirectional"
        )
    if keras_class(layer) == GENERIC:
        raise Unfusable(
            f"a generic RNN layer over a {type(getattr(layer, 'cell', None)).__name__}: edgeseq writes LSTM, GRU "
            "and SimpleRNN layers (use keras.layers.LSTM(...) rather than RNN(LSTMCell(...)))"
        )
    if keras_class(layer) == WRAPPER:
        forward, backward = layer.forward_layer, layer.backward_layer
        if layer.merge_mode not in MERGE_MODES:
            raise Unfusable(f"merge_mode={layer.merge_mode!r} (supported: {', '.join(map(str, MERGE_MODES))})")
        if keras_class(forward) not in WRITERS or keras_class(backward) != keras_class(forward):
            raise Unfusable(f"wraps {type(forward).__name__} and {type(backward).__name__}")
        for inner, is_forward in ((forward, True), (backward, False)):
            reason = _common_refusal(inner, wrapped_forward=is_forward)
            if reason:
                raise Unfusable(reason)
        pair = [WRITERS[keras_class(forward)].direction(forward), WRITERS[keras_class(backward)].direction(backward)]
        if pair[0].units != pair[1].units or pair[0].attributes != pair[1].attributes:
            raise Unfusable("its two directions differ in units or in reset_after")
        return pair
    reason = _common_refusal(layer)
    if reason:
        raise Unfusable(reason)
    if backwards(layer) and stateful(layer):
        raise Unfusable("go_backwards=True on a stateful layer (its state would run against the stream)")
    return [WRITERS[keras_class(layer)].direction(layer)]


def refusal(layer: Any) -> str | None:
    """None if the layer can be written as one fused node, else why not."""
    try:
        directions(layer)
    except Unfusable as exc:
        return str(exc)
    return None


def return_sequences(layer: Any) -> bool:
    inner = layer.forward_layer if keras_class(layer) == WRAPPER else layer
    return bool(inner.return_sequences)


def state_names(layer: Any) -> list[tuple[str, str]]:
    """(graph input, graph output) names of a stateful layer's states: h, and c for an LSTM."""
    parts = ["h", "c"] if fused_op(layer)[0] == "LSTM" else ["h"]
    return [(f"state_in.{layer.name}.{part}", f"state_out.{layer.name}.{part}") for part in parts]


def write(
    layer: Any,
    source: str,
    input_shape: tuple[int, ...],
    targets: list[str],
    prefix: str,
    carry_state: bool = False,
    initial: list[str] | None = None,
    mask: str | None = None,
) -> tuple[list, list]:
    """ONNX nodes and initializers computing `layer` from `source` [batch, T, F] into `targets`: the layer's
    output, then, for a layer with return_state, its last states in Keras's order (h, and c for an LSTM; for a
    Bidirectional layer the forward direction's, then the backward one's), each [batch, units].

    `initial` names the tensors the call passed as initial_state, in the same order; the node starts from them.
    `mask` names the call's mask [batch, T] (bool): masked steps are skipped, as Keras skips them.
    With `carry_state`, the node starts from the graph inputs `state_names(layer)` (initial_h, initial_c) and
    its last states are the matching graph outputs: the caller carries them from one call to the next."""
    from onnx import helper, numpy_helper

    pair = directions(layer)
    first = pair[0]
    count = len(pair)
    attrs: dict[str, Any] = {
        "hidden_size": first.units,
        "direction": "bidirectional" if count == 2 else fused_op(layer)[1],
        "activations": [name for d in pair for name, _, _ in d.activations],
        **first.attributes,
    }
    alphas = [(a, b) for d in pair for _, a, b in d.activations]
    if any(a is not None or b is not None for a, b in alphas):
        # one entry per activation that takes alpha/beta, in order; the others take none
        attrs["activation_alpha"] = [a for a, _ in alphas if a is not None]
        betas = [b for _, b in alphas if b is not None]
        if betas:
            attrs["activation_beta"] = betas

    def stacked(name: str, part: str) -> Any:
        return numpy_helper.from_array(np.stack([getattr(d, part) for d in pair]).astype(np.float32), prefix + name)

    inits = [stacked("W", "W"), stacked("R", "R"), stacked("B", "B")]
    nodes: list[Any] = []

    def node(op: str, inputs: list[str], outputs: list[str], name: str, **kwargs: Any) -> None:
        nodes.append(helper.make_node(op, inputs, outputs, name=prefix + name, **kwargs))

    def const(name: str, value: Any) -> str:  # an int64 constant, written once however often it is read
        if all(init.name != prefix + name for init in inits):
            inits.append(numpy_helper.from_array(np.array(value, dtype=np.int64), prefix + name))
        return prefix + name

    lens = mask_i = ""
    if mask:  # the unmasked steps to the front, their count as sequence_lens (edgeseq.convert.masks)
        source, lens, mask_i = masks.compact(node, const, prefix, source, mask)
    node("Transpose", [source], [prefix + "x_tbf"], "to_time_major", perm=[1, 0, 2])
    inputs = [prefix + "x_tbf", prefix + "W", prefix + "R", prefix + "B", lens]  # sequence_lens: "" (all steps)
    parts = ["h", "c"] if first.op == "LSTM" else ["h"]
    states = state_names(layer) if carry_state else []
    if states:
        inputs += [state_in for state_in, _ in states]
    elif initial:  # Keras's [h_fw, c_fw, h_bw, c_bw], each [batch, units] -> initial_h, initial_c [D, batch, units]
        for index, part in enumerate(parts):
            per_direction = [initial[d * len(parts) + index] for d in range(count)]
            for d, name in enumerate(per_direction):
                node("Unsqueeze", [name, const("axis0", [0])], [f"{prefix}init_{part}{d}"], f"init_{part}{d}")
            node("Concat", [f"{prefix}init_{part}{d}" for d in range(count)], [f"{prefix}init_{part}"], part, axis=0)
            inputs.append(f"{prefix}init_{part}")
    while not inputs[-1]:  # optional inputs left out at the end are not named
        inputs.pop()
    steps = input_shape[1]
    sequences = return_sequences(layer)
    outputs = [prefix + "Y" if sequences else "", prefix + "Y_h"]
    if first.op == "LSTM":
        outputs.append(prefix + "Y_c")
    node(first.op, inputs, outputs, first.op.lower(), **attrs)
    for (_, state_out), produced in zip(states, outputs[1 : 1 + len(states)], strict=True):
        node("Identity", [produced], [state_out], f"{state_out}_identity")
    mode = layer.merge_mode if count == 2 else "concat"
    first_state = 2 if mode is None else 1  # after the output, or the two directions' outputs
    for d in range(count):  # the last states the layer returns (return_state), [D, batch, H] -> [batch, H]
        for index, part in enumerate(parts):
            position = first_state + d * len(parts) + index
            if position < len(targets):
                node("Gather", [outputs[1 + index], const(f"d{d}", d)], [targets[position]], f"{part}{d}", axis=0)
    target = targets[0]
    if sequences and backwards(layer):  # Y [T, 1, batch, H], step t's output at t -> [batch, T, 1, H], last first
        node("Transpose", [prefix + "Y"], [prefix + "y_forward"], "to_batch", perm=[2, 0, 1, 3])
        ends = [const(name, [value]) for name, value in (("from", -1), ("to", -(steps + 1)), ("axis", 1), ("step", -1))]
        node("Slice", [prefix + "y_forward", *ends], [prefix + "y"], "reverse")
        axis, merged_shape = 2, [-1, steps, first.units * count]
    elif sequences and mask:  # Y [T, D, batch, H] -> [batch, T, D, H], each step's output put back at its step
        node("Transpose", [prefix + "Y"], [prefix + "y_compact"], "to_batch", perm=[2, 0, 1, 3])
        placed = masks.restore(node, const, prefix, prefix + "y_compact", mask_i, masks.zero_output(layer))
        node("Identity", [placed], [prefix + "y"], "placed_y")
        axis, merged_shape = 2, [-1, steps, first.units * count]
    elif sequences:  # Y [T, D, batch, H] -> [batch, T, D, H]
        node("Transpose", [prefix + "Y"], [prefix + "y"], "to_batch", perm=[2, 0, 1, 3])
        axis, merged_shape = 2, [-1, steps, first.units * count]
    else:  # Y_h [D, batch, H] -> [batch, D, H]
        node("Transpose", [prefix + "Y_h"], [prefix + "y"], "to_batch", perm=[1, 0, 2])
        axis, merged_shape = 1, [-1, first.units * count]
    # the batch as -1, whatever the file's input: the batched companion (convert.batched) needs no rewrite here
    if mode == "concat":  # forward units then backward units, as Keras concatenates them
        node("Reshape", [prefix + "y", const("shape", merged_shape)], [target], "merge")
        return nodes, inits
    pair_names = targets[:2] if mode is None else [prefix + "y0", prefix + "y1"]
    for index in (0, 1):
        node("Gather", [prefix + "y", const(f"d{index}", index)], [pair_names[index]], f"direction{index}", axis=axis)
    if mode is None:
        return nodes, inits
    if mode == "mul":
        node("Mul", pair_names, [target], "merge")
    elif mode == "sum":
        node("Add", pair_names, [target], "merge")
    else:  # ave
        inits.append(numpy_helper.from_array(np.array(0.5, dtype=np.float32), prefix + "half"))
        node("Add", pair_names, [prefix + "sum"], "sum")
        node("Mul", [prefix + "sum", prefix + "half"], [target], "merge")
    return nodes, inits

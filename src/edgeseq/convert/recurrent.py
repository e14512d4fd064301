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


class Nodes:
    """The nodes and initializers one fused layer call writes, every name under `prefix`."""

    def __init__(self, prefix: str) -> None:
        self.prefix = prefix
        self.nodes: list[Any] = []
        self.inits: list[Any] = []

    def node(self, op: str, inputs: list[str], outputs: list[str], name: str, **kwargs: Any) -> None:
        from onnx import helper

        self.nodes.append(helper.make_node(op, inputs, outputs, name=self.prefix + name, **kwargs))

    def const(self, name: str, value: Any, dtype: Any = np.int64) -> str:
        """A constant (int64 unless said), written once however often it is read."""
        from onnx import numpy_helper

        if all(init.name != self.prefix + name for init in self.inits):
            self.inits.append(numpy_helper.from_array(np.array(value, dtype=dtype), self.prefix + name))
        return self.prefix + name


def _attributes(layer: Any, pair: list[Direction]) -> dict[str, Any]:
    """The fused node's attributes: size, direction, activations (with their alphas and betas), the writer's own."""
    attrs: dict[str, Any] = {
        "hidden_size": pair[0].units,
        "direction": "bidirectional" if len(pair) == 2 else fused_op(layer)[1],
        "activations": [name for d in pair for name, _, _ in d.activations],
        **pair[0].attributes,
    }
    alphas = [(a, b) for d in pair for _, a, b in d.activations]
    if any(a is not None or b is not None for a, b in alphas):
        # one entry per activation that takes alpha/beta, in order; the others take none
        attrs["activation_alpha"] = [a for a, _ in alphas if a is not None]
        betas = [b for _, b in alphas if b is not None]
        if betas:
            attrs["activation_beta"] = betas
    return attrs


def _initial_states(out: Nodes, initial: list[str], parts: list[str], count: int) -> list[str]:
    """Keras's initial_state [h_fw, c_fw, h_bw, c_bw], each [batch, units] -> initial_h, initial_c [D, batch, units]."""
    names = []
    for index, part in enumerate(parts):
        for d in range(count):
            name = initial[d * len(parts) + index]
            out.node("Unsqueeze", [name, out.const("axis0", [0])], [f"{out.prefix}init_{part}{d}"], f"init_{part}{d}")
        joined = f"{out.prefix}init_{part}"
        out.node("Concat", [f"{out.prefix}init_{part}{d}" for d in range(count)], [joined], part, axis=0)
        names.append(joined)
    return names


def _sequence(out: Nodes, layer: Any, steps: int, mask_i: str) -> None:
    """The node's Y [T, D, batch, H] as Keras's sequence [batch, T, D, H] (named prefix + "y")."""
    p = out.prefix
    if backwards(layer):  # Y [T, 1, batch, H], step t's output at t -> [batch, T, 1, H], last first
        out.node("Transpose", [p + "Y"], [p + "y_forward"], "to_batch", perm=[2, 0, 1, 3])
        ends = [out.const(name, [v]) for name, v in (("from", -1), ("to", -(steps + 1)), ("axis", 1), ("step", -1))]
        out.node("Slice", [p + "y_forward", *ends], [p + "y"], "reverse")
    elif mask_i:  # each step's output put back at its step (edgeseq.convert.masks)
        out.node("Transpose", [p + "Y"], [p + "y_compact"], "to_batch", perm=[2, 0, 1, 3])
        placed = masks.restore(out, p + "y_compact", mask_i, masks.zero_output(layer))
        out.node("Identity", [placed], [p + "y"], "placed_y")
    else:
        out.node("Transpose", [p + "Y"], [p + "y"], "to_batch", perm=[2, 0, 1, 3])


def _merged(out: Nodes, mode: str | None, axis: int, shape: list[int], targets: list[str]) -> None:
    """prefix + "y" [batch, (T,) D, H] -> the layer's output as the wrapper's merge_mode says (one direction: concat):
    concatenated (forward units first, as Keras), summed, averaged, multiplied, or, for None, two outputs."""
    p = out.prefix
    if mode == "concat":  # the batch as -1: the batched companion (convert.batched) needs no rewrite here
        out.node("Reshape", [p + "y", out.const("shape", shape)], [targets[0]], "merge")
        return
    pair = targets[:2] if mode is None else [p + "y0", p + "y1"]
    for index in (0, 1):
        out.node("Gather", [p + "y", out.const(f"d{index}", index)], [pair[index]], f"direction{index}", axis=axis)
    if mode == "mul":
        out.node("Mul", pair, [targets[0]], "merge")
    elif mode == "sum":
        out.node("Add", pair, [targets[0]], "merge")
    elif mode == "ave":
        out.node("Add", pair, [p + "sum"], "sum")
        out.node("Mul", [p + "sum", out.const("half", 0.5, np.float32)], [targets[0]], "merge")


def write(
    layer: Any,
    source: str,
    input_shape: tuple[int | None, ...],
    targets: list[str],
    prefix: str,
    carry_state: bool = False,
    initial: list[str] | None = None,
    mask: str | None = None,
) -> tuple[list, list]:
    """ONNX nodes and initializers computing `layer` from `source` [batch, T, F] into `targets`: the layer's
    output (two for a Bidirectional layer with merge_mode=None), then, for a layer with return_state, its last
    states in Keras's order (h, and c for an LSTM; for a Bidirectional layer the forward direction's, then the
    backward one's), each [batch, units].

    `initial` names the tensors the call passed as initial_state, in the same order; the node starts from them.
    `mask` names the call's mask [batch, T] (bool): masked steps are skipped, as Keras skips them.
    With `carry_state`, the node starts from the graph inputs `state_names(layer)` (initial_h, initial_c) and
    its last states are the matching graph outputs: the caller carries them from one call to the next."""
    from onnx import numpy_helper

    pair = directions(layer)
    first, count, steps = pair[0], len(pair), int(input_shape[1] or 0)
    out = Nodes(prefix)
    out.inits += [
        numpy_helper.from_array(np.stack([getattr(d, part) for d in pair]).astype(np.float32), prefix + part)
        for part in ("W", "R", "B")
    ]
    lens = mask_i = ""
    if mask:  # the unmasked steps to the front, their count as sequence_lens (edgeseq.convert.masks)
        source, lens, mask_i = masks.compact(out, source, mask)
    out.node("Transpose", [source], [prefix + "x_tbf"], "to_time_major", perm=[1, 0, 2])
    inputs = [prefix + "x_tbf", prefix + "W", prefix + "R", prefix + "B", lens]  # sequence_lens: "" (all steps)
    parts = ["h", "c"] if first.op == "LSTM" else ["h"]
    states = state_names(layer) if carry_state else []
    if states:
        inputs += [state_in for state_in, _ in states]
    elif initial:
        inputs += _initial_states(out, initial, parts, count)
    while not inputs[-1]:  # optional inputs left out at the end are not named
        inputs.pop()
    sequences = return_sequences(layer)
    outputs = [prefix + "Y" if sequences else "", prefix + "Y_h", *([prefix + "Y_c"] if first.op == "LSTM" else [])]
    out.node(first.op, inputs, outputs, first.op.lower(), **_attributes(layer, pair))
    for (_, state_out), produced in zip(states, outputs[1 : 1 + len(states)], strict=True):
        out.node("Identity", [produced], [state_out], f"{state_out}_identity")
    mode = layer.merge_mode if count == 2 else "concat"
    first_state = 2 if mode is None else 1  # after the output, or the two directions' outputs
    for d in range(count):  # the last states the layer returns (return_state), [D, batch, H] -> [batch, H]
        for index, part in enumerate(parts):
            position = first_state + d * len(parts) + index
            if position < len(targets):
                out.node(
                    "Gather", [outputs[1 + index], out.const(f"d{d}", d)], [targets[position]], f"{part}{d}", axis=0
                )
    if sequences:
        _sequence(out, layer, steps, mask_i)
        _merged(out, mode, 2, [-1, steps, first.units * count], targets)
    else:  # Y_h [D, batch, H] -> [batch, D, H]
        out.node("Transpose", [prefix + "Y_h"], [prefix + "y"], "to_batch", perm=[1, 0, 2])
        _merged(out, mode, 1, [-1, first.units * count], targets)
    return out.nodes, out.inits

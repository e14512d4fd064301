"""A masked recurrent call written exactly: Keras skips a masked step (the state goes through it unchanged), which an
ONNX recurrent op does with the steps it is not given.

So the unmasked steps of each window are moved to its front, in order (TopK over t + T x masked, which sorts the
masked steps behind), and the node is given their count as `sequence_lens`: its last state is Keras's, whatever
steps were masked, at the start, in the middle, at the end, or all (no step: the state it starts from, zero).

A sequence output is put back in place: step t gets the output of the unmasked steps up to it (CumSum of the mask,
minus one, into the compacted outputs), which is the last output Keras carries over a masked step, or zero where
Keras writes zero there (`zero_output_for_mask`, which a Bidirectional wrapper sets for both its layers) and before
the first unmasked step. The reverse direction of a Bidirectional layer reads the compacted steps from the last to
the first, which are the unmasked steps in reverse, and its outputs land at their own steps in the same way. What
this cannot write is named by `refusal`.

The mask is whatever Keras computed for the call (a Masking layer, an Embedding with mask_zero=True, propagated
through the layers between): it reaches the node as a tensor of the graph tf2onnx converts (edgeseq.convert.cuts).
"""

from __future__ import annotations

from typing import Any

import numpy as np


def refusal(layer: Any, sequences: bool, backwards: bool) -> str | None:
    """Why a masked call of `layer` cannot be written exactly, or None."""
    if sequences and backwards:
        return (
            "masked steps with go_backwards=True and return_sequences=True: Keras carries outputs over masked steps "
            "in reversed time, which edgeseq does not write"
        )
    return None


def zero_output(layer: Any) -> bool:
    """Whether Keras writes zero at a masked step of the sequence output (else the last output, carried over)."""
    inner = getattr(layer, "forward_layer", layer)
    return bool(getattr(inner, "zero_output_for_mask", False))


def compact(out: Any, source: str, mask: str) -> tuple[str, str, str]:
    """Nodes (into `out`, a recurrent.Nodes) moving the unmasked steps of `source` [batch, T, F] to the front;
    (compacted source, sequence_lens int32 [batch], mask as int64 [batch, T])."""
    from onnx import TensorProto

    node, const, prefix = out.node, out.const, out.prefix
    node("Cast", [mask], [prefix + "mask_i"], "mask_int", to=TensorProto.INT64)
    node("Shape", [source], [prefix + "x_shape"], "x_shape")
    node("Gather", [prefix + "x_shape", const("one", 1)], [prefix + "steps"], "steps", axis=0)
    node("Range", [const("zero", 0), prefix + "steps", const("one", 1)], [prefix + "t"], "t")
    node("Sub", [const("one", 1), prefix + "mask_i"], [prefix + "masked"], "masked")
    node("Mul", [prefix + "masked", prefix + "steps"], [prefix + "behind"], "behind")
    node("Add", [prefix + "t", prefix + "behind"], [prefix + "key"], "key")
    node("Unsqueeze", [prefix + "steps", const("axis0", [0])], [prefix + "k"], "k")
    node("TopK", [prefix + "key", prefix + "k"], [prefix + "sorted", prefix + "order"], "order", axis=1, largest=0)
    node("Unsqueeze", [prefix + "order", const("axis2", [2])], [prefix + "order3"], "order3")
    node("Expand", [prefix + "order3", prefix + "x_shape"], [prefix + "order_x"], "order_x")
    node("GatherElements", [source, prefix + "order_x"], [prefix + "x_compact"], "compact", axis=1)
    node("ReduceSum", [prefix + "mask_i", const("axis1", [1])], [prefix + "count"], "count", keepdims=0)
    node("Cast", [prefix + "count"], [prefix + "lens"], "lens", to=TensorProto.INT32)
    return prefix + "x_compact", prefix + "lens", prefix + "mask_i"


def restore(out: Any, y: str, mask_i: str, zero: bool) -> str:
    """Nodes (into `out`, a recurrent.Nodes) putting the compacted sequence output `y` [batch, T, D, H] back at its
    steps; the name of the result."""
    node, const, prefix = out.node, out.const, out.prefix
    node("CumSum", [mask_i, const("axis1_scalar", np.array(1))], [prefix + "rank"], "rank")
    index = prefix + "rank"
    if zero:  # a masked step reads the zero row, as one before the first unmasked step does
        node("Mul", [prefix + "rank", mask_i], [prefix + "rank_kept"], "rank_kept")
        index = prefix + "rank_kept"
    pads = const("pads", [0, 1, 0, 0, 0, 0, 0, 0])
    node("Pad", [y, pads], [prefix + "y_padded"], "zero_row")
    node("Unsqueeze", [index, const("axes23", [2, 3])], [prefix + "index4"], "index4")
    node("Shape", [y], [prefix + "y_shape"], "y_shape")
    node("Expand", [prefix + "index4", prefix + "y_shape"], [prefix + "index_y"], "index_y")
    node("GatherElements", [prefix + "y_padded", prefix + "index_y"], [prefix + "y_placed"], "placed", axis=1)
    return prefix + "y_placed"

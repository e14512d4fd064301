"""Keras GRU -> one direction of an ONNX GRU node.

The gate order is the same in both (z, r, h: update, reset, candidate). Keras's `reset_after=True` (the
default, and what cuDNN computes) applies the reset gate after the recurrent matrix product, which is ONNX's
`linear_before_reset=1`; it also keeps two biases, input and recurrent, which are ONNX's Wb and Rb as they
are. With reset_after=False Keras has one bias: the ONNX bias is that bias followed by zeros.
The ONNX activations are (f, g) = (recurrent_activation, activation).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from edgeseq.convert.gates import Direction, Unfusable, activations, weights

OP = "GRU"


def direction(layer: Any) -> Direction:
    units = int(layer.units)
    reset_after = bool(layer.cell.reset_after)
    kernel, recurrent, bias = weights(layer, 3)
    if bias is None:
        onnx_bias = np.zeros(6 * units, np.float32)
    elif reset_after:
        if bias.shape != (2, 3 * units):
            raise Unfusable(f"reset_after=True expects a bias of shape [2, {3 * units}], got {list(bias.shape)}")
        onnx_bias = bias.reshape(-1)
    else:
        onnx_bias = np.concatenate([bias, np.zeros(3 * units, np.float32)])
    return Direction(
        OP,
        units,
        W=kernel.T,
        R=recurrent.T,
        B=onnx_bias,
        activations=activations(layer, "recurrent_activation", "activation"),
        attributes={"linear_before_reset": int(reset_after)},
    )

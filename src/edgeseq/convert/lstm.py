"""Keras LSTM -> one direction of an ONNX LSTM node.

Keras stores the gates as i, f, c, o (input, forget, cell candidate, output); ONNX wants i, o, f, c. The
ONNX activations are (f, g, h) = (recurrent_activation, activation, activation).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from edgeseq.convert.gates import Direction, activations, reorder, weights

OP = "LSTM"
KERAS_GATES, ONNX_GATES = "ifco", "iofc"


def direction(layer: Any) -> Direction:
    units = int(layer.units)
    kernel, recurrent, bias = weights(layer, 4)
    bias = np.zeros(4 * units, np.float32) if bias is None else bias
    return Direction(
        OP,
        units,
        W=reorder(kernel.T, units, KERAS_GATES, ONNX_GATES),
        R=reorder(recurrent.T, units, KERAS_GATES, ONNX_GATES),
        B=np.concatenate([reorder(bias, units, KERAS_GATES, ONNX_GATES), np.zeros(4 * units, np.float32)]),
        activations=activations(layer, "recurrent_activation", "activation", "activation"),
    )

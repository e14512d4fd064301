"""Keras SimpleRNN -> one direction of an ONNX RNN node.

ONNX RNN is SimpleRNN by definition: H_t = f(X_t W^T + H_{t-1} R^T + Wb + Rb), with f the layer's activation.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from edgeseq.convert.gates import Direction, activations, weights

OP = "RNN"


def direction(layer: Any) -> Direction:
    units = int(layer.units)
    kernel, recurrent, bias = weights(layer, 1)
    bias = np.zeros(units, np.float32) if bias is None else bias
    return Direction(
        OP,
        units,
        W=kernel.T,
        R=recurrent.T,
        B=np.concatenate([bias, np.zeros(units, np.float32)]),
        activations=activations(layer, "activation"),
    )

"""What the recurrent writers share: one direction of an ONNX LSTM/GRU/RNN node, built from Keras weights.

ONNX keeps each direction's weights as W [G*H, F], R [G*H, H] and B [2*G*H] (input bias, then recurrent
bias), where Keras keeps kernel [F, G*H], recurrent kernel [H, G*H] and one bias. Gate blocks are H rows
each; `reorder` moves them from Keras's order to ONNX's.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from edgeseq.convert.flavours import NOT_MAPPED, activation_name, flavour_of, onnx_activation, supported_activations


class Unfusable(Exception):
    """This layer cannot be written as a fused ONNX op; the message says why."""


@dataclass(frozen=True)
class Direction:
    """One direction of a fused recurrent node, in ONNX layout and gate order."""

    op: str
    units: int
    W: np.ndarray
    R: np.ndarray
    B: np.ndarray
    activations: list[tuple[str, float | None, float | None]]
    attributes: dict[str, Any] = field(default_factory=dict)


def reorder(blocks: np.ndarray, units: int, source: str, target: str) -> np.ndarray:
    """Rows of `blocks` [G*H, ...] in gate order `source` (e.g. "ifco") -> gate order `target` ("iofc")."""
    parts = {gate: blocks[i * units : (i + 1) * units] for i, gate in enumerate(source)}
    return np.concatenate([parts[gate] for gate in target])


def activations(layer: Any, *attributes: str) -> list[tuple[str, float | None, float | None]]:
    """The ONNX activations for the layer's `attributes` (e.g. recurrent_activation, activation), in order."""
    flavour = flavour_of(layer)
    found = []
    for attribute in attributes:
        function = getattr(layer, attribute)
        onnx = onnx_activation(function, flavour)
        if onnx is None:
            name = activation_name(function)
            why = NOT_MAPPED.get(name, f"no ONNX {type(layer).__name__} equivalent")
            raise Unfusable(f"{attribute} {name!r}: {why} (supported: {supported_activations(flavour)})")
        found.append(onnx)
    return found


def weights(layer: Any, gates: int) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """(kernel [F, G*H], recurrent kernel [H, G*H], bias or None) as float32, whichever Keras wrote them."""
    values = [np.asarray(w, dtype=np.float32) for w in layer.get_weights()]
    units = int(layer.units)
    kernel, recurrent = values[0], values[1]
    if kernel.shape[1] != gates * units or recurrent.shape != (units, gates * units):
        raise Unfusable(f"unexpected weight shapes {[list(w.shape) for w in values]} for {units} units")
    return kernel, recurrent, values[2] if len(values) > 2 else None

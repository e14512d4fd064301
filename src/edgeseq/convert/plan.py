"""The fusion plan: which recurrent layers edgeseq writes itself, which go to tf2onnx, and what is refused and why.

Every recurrent layer of the model, wherever it is in the graph (nested models included), is written as one fused
node when its writer can compute it (edgeseq.convert.recurrent); the rest of the graph goes to tf2onnx
(edgeseq.convert.cuts). A recurrent layer that cannot be written is "not fused" with a reason, which the export
refuses unless --allow-unfused.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from edgeseq.convert import masks, recurrent


@dataclass(frozen=True)
class Plan:
    """`recurrent`: every recurrent layer (a Bidirectional wrapper counts once). `fused`: those edgeseq writes;
    the others stay in the graph tf2onnx converts (a Loop). `unfusable`: layer name -> why it cannot be fused
    (`reasons` says them with each layer's class).
    `refused`: reasons no option lifts (a stateful layer that cannot be fused: tf2onnx would freeze its
    state). `stateful`: the stateful layers, whose state becomes an input and an output of the graph."""

    recurrent: list[Any]
    fused: list[Any]
    unfusable: dict[str, str]
    refused: list[str]
    stateful: list[Any]

    def reasons(self) -> list[str]:
        """Why each unfusable layer is, as `name (Class): reason`."""
        classes = {layer.name: recurrent.keras_class(layer) for layer in self.recurrent}
        return [f"{name} ({classes.get(name.rsplit('/', 1)[-1], '?')}): {why}" for name, why in self.unfusable.items()]


def _layers(model: Any) -> list[Any]:
    return [layer for layer in model.layers if type(layer).__name__ != "InputLayer"]


def _all_layers(model: Any, path: str) -> list[tuple[str, Any]]:
    """(path, layer) of every layer, those of nested models too (path "inner/"); a recurrent layer's own cell is
    not one."""
    found = []
    for layer in _layers(model):
        found.append((path, layer))
        if not recurrent.is_recurrent(layer) and hasattr(layer, "layers") and hasattr(layer, "inputs"):
            found += _all_layers(layer, f"{path}{layer.name}/")
    return found


def _masks(layer: Any) -> bool:
    return type(layer).__name__ == "Masking" or bool(getattr(layer, "mask_zero", False))


def make_plan(model: Any) -> Plan:
    found = [(path, layer) for path, layer in _all_layers(model, "") if recurrent.is_recurrent(layer)]
    unfusable: dict[str, str] = {}
    refused: list[str] = []
    masking = any(_masks(layer) for _, layer in _all_layers(model, ""))
    stateful: list[Any] = []
    fused: list[Any] = []
    for path, layer in found:
        name = f"{path}{layer.name}"
        reason = recurrent.refusal(layer)
        if masking and not reason:  # a masked call is written exactly where edgeseq.convert.masks can
            if recurrent.stateful(layer):
                reason = "masked steps in a stateful layer: a window masked throughout would lose the state it carries"
            else:
                reason = masks.refusal(layer, recurrent.return_sequences(layer), recurrent.backwards(layer))
        if recurrent.stateful(layer):
            if recurrent.keras_class(layer) == recurrent.WRAPPER:
                reason = "a stateful Bidirectional layer's backward direction would need rows not read yet"
            if reason:  # tf2onnx would freeze the layer's current state into the file: never a way out
                refused.append(f"{name} ({recurrent.keras_class(layer)}) is stateful and cannot be fused: {reason}")
            else:
                stateful.append(layer)
                fused.append(layer)
            continue
        if reason:
            unfusable[name] = reason
        else:
            fused.append(layer)
    return Plan([layer for _, layer in found], fused, unfusable, refused, stateful)

"""The fusion audit: did every recurrent layer become one fused ONNX node? Counted on the graph itself."""

from __future__ import annotations

from collections import Counter
from typing import Any

from edgeseq.convert import recurrent
from edgeseq.convert.plan import Plan
from edgeseq.errors import ConversionError

FUSED_OPS = ("LSTM", "GRU", "RNN")
UNFUSED_OPS = ("Loop", "Scan")


def op_type_counts(graph: Any) -> Counter[str]:
    """Count op types in an ONNX graph, including subgraphs (a Loop's body counts too)."""
    counts: Counter[str] = Counter()
    for node in graph.node:
        counts[node.op_type] += 1
        for attr in node.attribute:
            if attr.HasField("g"):
                counts.update(op_type_counts(attr.g))
            for sub in attr.graphs:
                counts.update(op_type_counts(sub))
    return counts


def _label(op: str, direction: str) -> str:
    return op if direction == "forward" else f"{op} ({direction})"


def fused_nodes(graph: Any) -> Counter[str]:
    """Fused recurrent nodes in the graph by op and direction, e.g. {"LSTM": 2, "GRU (bidirectional)": 1}."""
    found: Counter[str] = Counter()
    for node in graph.node:
        if node.op_type in FUSED_OPS:
            direction = next((a.s.decode() for a in node.attribute if a.name == "direction"), "forward")
            found[_label(node.op_type, direction)] += 1
    return found


def fusion_audit(graph: Any, plan: Plan, calls: list[Any]) -> dict[str, Any]:
    """Compare the model's recurrent layers with the fused nodes in `graph`; report what stayed a loop. `calls`:
    the fused layer of each call written (a layer called twice is there twice)."""
    # what each unfused layer would have become, once; a recurrent layer no ONNX op computes (ConvLSTM1D) expects
    # no fused node: `not_fused_because` names it
    unfused = [layer for layer in plan.recurrent if all(layer is not fused for fused in plan.fused)]
    expected = Counter(_label(*op) for op in map(recurrent.fused_op, [*calls, *unfused]) if op[0])
    found = fused_nodes(graph)
    counts = op_type_counts(graph)
    loops = {op: counts[op] for op in UNFUSED_OPS if counts[op]}
    return {
        "recurrent_layers": [f"{layer.name} ({recurrent.keras_class(layer)})" for layer in plan.recurrent],
        "expected_fused": dict(expected),
        "found_fused": dict(found),
        "unfused_ops": loops,
        "fused": not loops and found == expected,
        "not_fused_because": plan.reasons(),
    }


def require_fused(audit: dict[str, Any], name: str, allow_unfused: bool = False) -> str | None:
    """Raise ConversionError unless every recurrent layer became its fused ONNX op.

    With `allow_unfused`, return the same message as a warning instead (None when all is fused).
    """
    if audit["fused"]:
        return None
    expected = ", ".join(f"{op} x{n}" for op, n in audit["expected_fused"].items()) or "none"
    found = ", ".join(f"{op} x{n}" for op, n in {**audit["found_fused"], **audit["unfused_ops"]}.items()) or "none"
    why = f" ({'; '.join(audit['not_fused_because'])})" if audit.get("not_fused_because") else ""
    message = (
        f"{name}: recurrent layers were not all fused: expected {expected}, the graph has {found}{why}. "
        "A Loop or Scan runs the recurrence step by step and is slower on a device"
    )
    if not allow_unfused:
        raise ConversionError(message + "; pass --allow-unfused to export it anyway")
    return message

"""tf2onnx conversion under a fixed signature, and the checks on its result: names, shapes, fusion, parity."""

from __future__ import annotations

import platform
from collections import Counter
from typing import Any

import numpy as np

from edgeseq import frameworks, rnn_fusion
from edgeseq.errors import ConversionError, ParityError
from edgeseq_device.manifest import TensorSpec

DEFAULT_OPSET = 17
PARITY_ATOL = 1e-5

# Keras recurrent layer -> the fused ONNX op it should become.
FUSED_OP = {"LSTM": "LSTM", "GRU": "GRU", "SimpleRNN": "RNN"}
UNFUSED_OPS = ("Loop", "Scan")


def producer_versions() -> dict[str, str]:
    tf, keras = frameworks.tensorflow()
    tf2onnx = frameworks.tf2onnx()
    import onnx

    return {
        "tensorflow": tf.__version__,
        "tf_keras": keras.__version__,
        "tf2onnx": tf2onnx.__version__,
        "onnx": onnx.__version__,
        "python": platform.python_version(),
    }


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


def _tensor_specs(values: Any) -> tuple[TensorSpec, ...]:
    import onnx

    specs = []
    for value in values:
        tensor_type = value.type.tensor_type
        shape = tuple(d.dim_value if d.HasField("dim_value") else -1 for d in tensor_type.shape.dim)
        dtype = onnx.helper.tensor_dtype_to_np_dtype(tensor_type.elem_type).name
        specs.append(TensorSpec(value.name, shape, dtype))
    return tuple(specs)


def convert(
    keras_model: Any,
    input_spec: TensorSpec,
    output_spec: TensorSpec,
    *,
    opset: int = DEFAULT_OPSET,
    metadata: dict[str, str] | None = None,
) -> Any:
    """Convert with tf2onnx under a fixed input signature; check names, shapes, opset and the ONNX checker.

    Returns the onnx.ModelProto with `metadata` in its metadata_props. Raises ConversionError.
    """
    tf, _ = frameworks.tensorflow()
    tf2onnx = frameworks.tf2onnx()
    import onnx

    if opset < 17:
        raise ConversionError(f"opset {opset} is below 17, the lowest edgeseq supports")
    signature = (tf.TensorSpec(input_spec.shape, tf.dtypes.as_dtype(input_spec.dtype), name=input_spec.name),)
    chain, _ = rnn_fusion.plan(keras_model)
    try:
        if chain is not None:
            proto = rnn_fusion.convert_fused(keras_model, chain, input_spec, output_spec, opset)
        else:
            proto, _ = tf2onnx.convert.from_keras(keras_model, input_signature=signature, opset=opset)
    except Exception as exc:  # tf2onnx raises a variety of untyped errors
        raise ConversionError(f"could not convert {keras_model.name}: {type(exc).__name__}: {exc}") from exc

    inputs, outputs = _tensor_specs(proto.graph.input), _tensor_specs(proto.graph.output)
    if inputs != (input_spec,) or outputs != (output_spec,):
        raise ConversionError(
            f"converted signature is {', '.join(map(str, inputs))} -> {', '.join(map(str, outputs))}; "
            f"expected {input_spec} -> {output_spec}"
        )
    if metadata:
        onnx.helper.set_model_props(proto, metadata)
    try:
        onnx.checker.check_model(proto, full_check=True)
    except onnx.checker.ValidationError as exc:
        raise ConversionError(f"converted model fails onnx.checker: {exc}") from exc
    return proto


def parity_figures(
    reference: np.ndarray, candidate: np.ndarray, *, atol: float, output: str, what: str, argmax: bool
) -> dict[str, Any]:
    """Compare Keras (`reference`) with onnxruntime (`candidate`); raise ParityError carrying the numbers."""
    diff = np.abs(reference.astype(np.float64) - candidate.astype(np.float64))
    max_abs = float(diff.max())
    max_rel = float((diff / np.maximum(np.abs(reference), 1e-12)).max())
    figures: dict[str, Any] = {
        "compared": what,
        "count": int(reference.shape[0]),
        "max_abs_diff": max_abs,
        "max_rel_diff": max_rel,
        "atol": atol,
    }
    problems = []
    if not max_abs <= atol:
        problems.append(f"max abs diff {max_abs:.3g} > atol {atol:g}")
    if argmax:
        mismatches = int(np.sum(reference.argmax(axis=1) != candidate.argmax(axis=1)))
        figures["argmax_mismatches"] = mismatches
        if mismatches:
            problems.append(f"argmax differs on {mismatches} of {reference.shape[0]}")
    if problems:
        raise ParityError(f"onnxruntime vs Keras on output '{output}' over {what}: {'; '.join(problems)}")
    return figures


def keras_unchanged(before: np.ndarray, after: np.ndarray, name: str) -> None:
    """Raise ParityError unless re-running Keras after conversion gives bit-identical outputs."""
    if not np.array_equal(before, after):
        diff = float(np.max(np.abs(before - after)))
        raise ParityError(f"converting {name} changed the Keras model: its outputs moved by up to {diff:.3g}")


def fusion_audit(graph: Any, keras_model: Any) -> dict[str, Any]:
    """Compare the Keras recurrent layers with the fused ONNX ops in `graph`; report what stayed a loop."""
    layers = [layer for layer in keras_model.layers if type(layer).__name__ in FUSED_OP]
    expected = Counter(FUSED_OP[type(layer).__name__] for layer in layers)
    counts = op_type_counts(graph)
    loops = {op: counts[op] for op in UNFUSED_OPS if counts[op]}
    _, reasons = rnn_fusion.plan(keras_model)
    return {
        "recurrent_layers": [f"{layer.name} ({type(layer).__name__})" for layer in layers],
        "expected_fused": dict(expected),
        "found_fused": {op: counts[op] for op in expected},
        "unfused_ops": loops,
        "fused": not loops and all(counts[op] == n for op, n in expected.items()),
        "not_fused_because": reasons,
    }


def require_fused(audit: dict[str, Any], name: str, allow_unfused: bool = False) -> str | None:
    """Raise ConversionError unless every recurrent layer became its fused ONNX op.

    With `allow_unfused`, return the same message as a warning instead (None when all is fused).
    """
    if audit["fused"]:
        return None
    expected = ", ".join(f"{op} x{n}" for op, n in audit["expected_fused"].items())
    found = ", ".join(f"{op} x{n}" for op, n in {**audit["found_fused"], **audit["unfused_ops"]}.items())
    why = f" ({'; '.join(audit['not_fused_because'])})" if audit.get("not_fused_because") else ""
    message = (
        f"{name}: recurrent layers were not all fused: expected {expected}, the graph has {found}{why}. "
        "A Loop or Scan runs the recurrence step by step and is slower on a device"
    )
    if not allow_unfused:
        raise ConversionError(message + "; pass --allow-unfused to export it anyway")
    return message

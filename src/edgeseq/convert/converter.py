"""One call from a Keras model to a checked ONNX model: plan, write, stitch, check the signature, run
onnx.checker and the fusion audit. The export recipes call `convert` and nothing else from here."""

from __future__ import annotations

import platform
from dataclasses import dataclass
from typing import Any

from edgeseq import frameworks
from edgeseq.convert import recurrent, segments
from edgeseq.convert.audit import fusion_audit, op_type_counts, require_fused
from edgeseq.convert.plan import Plan, make_plan
from edgeseq.errors import ConversionError
from edgeseq_device.manifest import TensorSpec

DEFAULT_OPSET = 17
# Layers that compute nothing at inference: they are left out of the graph, not converted to an Identity.
INFERENCE_IDENTITY = {
    "Dropout", "SpatialDropout1D", "SpatialDropout2D", "GaussianNoise", "GaussianDropout", "AlphaDropout",
    "ActivityRegularization",
}  # fmt: skip


@dataclass(frozen=True)
class Converted:
    """The ONNX model and what the checks found: the fusion audit, op-type counts and any warning; for a
    stateful model, the (input, output) pair of each carried state, in graph order after the main ones."""

    proto: Any
    audit: dict[str, Any]
    op_types: dict[str, int]
    warning: str | None
    states: tuple[tuple[TensorSpec, TensorSpec], ...] = ()


def state_specs(plan: Plan) -> tuple[tuple[TensorSpec, TensorSpec], ...]:
    """The graph inputs and outputs that carry each stateful layer's h (and c) from one call to the next:
    [num_directions 1, batch 1, units], float32, starting at zero."""
    specs = []
    for layer in plan.stateful:
        shape = (1, 1, int(layer.units))
        for state_in, state_out in recurrent.state_names(layer):
            specs.append((TensorSpec(state_in, shape, "float32"), TensorSpec(state_out, shape, "float32")))
    return tuple(specs)


def producer_versions() -> dict[str, str]:
    tf, tf_keras = frameworks.tensorflow()
    tf2onnx = frameworks.tf2onnx()
    import keras
    import onnx

    return {
        "tensorflow": tf.__version__,
        "tf_keras": tf_keras.__version__,
        "keras": keras.__version__,
        "tf2onnx": tf2onnx.__version__,
        "onnx": onnx.__version__,
        "python": platform.python_version(),
    }


def _tensor_specs(values: Any) -> tuple[TensorSpec, ...]:
    import onnx

    specs = []
    for value in values:
        tensor_type = value.type.tensor_type
        shape = tuple(d.dim_value if d.HasField("dim_value") else -1 for d in tensor_type.shape.dim)
        dtype = onnx.helper.tensor_dtype_to_np_dtype(tensor_type.elem_type).name
        specs.append(TensorSpec(value.name, shape, dtype))
    return tuple(specs)


def _fused_here(layer: Any, plan: Plan) -> bool:
    return recurrent.is_recurrent(layer) and layer.name not in plan.unfusable


def _stitched(model: Any, plan: Plan, input_spec: TensorSpec, output_name: str, opset: int) -> tuple[list, list, tuple]:
    """Nodes and initializers of the chain: a fused node per recurrent layer, a tf2onnx segment per run of
    other layers, each reading the previous one's output."""
    runs: list[list[Any]] = []
    for layer in [layer for layer in plan.chain or [] if type(layer).__name__ not in INFERENCE_IDENTITY]:
        if _fused_here(layer, plan) or not runs or _fused_here(runs[-1][-1], plan):
            runs.append([layer])
        else:
            runs[-1].append(layer)
    nodes: list[Any] = []
    inits: list[Any] = []
    current = input_spec
    if not runs:  # nothing but dropout
        from onnx import helper

        return [helper.make_node("Identity", [input_spec.name], [output_name], name="identity")], [], current.shape
    for index, run in enumerate(runs):
        prefix = f"s{index}_"
        target = output_name if index == len(runs) - 1 else f"{prefix}out"
        if _fused_here(run[0], plan):
            shape = recurrent.output_shape(run[0], current.shape)
            carry = any(run[0] is layer for layer in plan.stateful)
            run_nodes, run_inits = recurrent.write(run[0], current.name, current.shape, target, prefix, carry)
        else:
            shape = current.shape
            for layer in run:
                shape = tuple(int(d) for d in layer.compute_output_shape(shape))
            graph = segments.segment(run, current, target, prefix, opset)
            run_nodes, run_inits = list(graph.node), list(graph.initializer)
        nodes += run_nodes
        inits += run_inits
        current = TensorSpec(target, shape, "float32")
    return nodes, inits, current.shape


def _build(model: Any, plan: Plan, input_spec: TensorSpec, output_spec: TensorSpec, opset: int) -> Any:
    from onnx import TensorProto, helper

    if plan.chain is not None:
        nodes, inits, shape = _stitched(model, plan, input_spec, output_spec.name, opset)
        producer = "edgeseq (recurrent writers) + tf2onnx"
    else:
        graph = segments.whole_model(model, input_spec, output_spec.name, opset)
        nodes, inits = list(graph.node), list(graph.initializer)
        shape = tuple(d.dim_value for d in graph.output[0].type.tensor_type.shape.dim)
        producer = "tf2onnx"
    states = state_specs(plan)
    graph = helper.make_graph(
        nodes,
        model.name,
        [
            helper.make_tensor_value_info(spec.name, TensorProto.FLOAT, list(spec.shape))
            for spec in (input_spec, *(state_in for state_in, _ in states))
        ],
        [helper.make_tensor_value_info(output_spec.name, TensorProto.FLOAT, list(shape))]
        + [helper.make_tensor_value_info(s.name, TensorProto.FLOAT, list(s.shape)) for _, s in states],
        initializer=inits,
    )
    opsets = [helper.make_opsetid("", opset)]
    proto = helper.make_model(graph, opset_imports=opsets, producer_name=producer)
    proto.ir_version = helper.find_min_ir_version_for(opsets)  # the oldest IR that carries this opset
    return proto


def convert(
    keras_model: Any,
    input_spec: TensorSpec,
    output_spec: TensorSpec,
    *,
    opset: int = DEFAULT_OPSET,
    metadata: dict[str, str] | None = None,
    allow_unfused: bool = False,
) -> Converted:
    """Convert `keras_model` under the fixed signature `input_spec` -> `output_spec` and check the result.

    Every recurrent layer of a single-chain model is written as one fused ONNX node; the rest goes through
    tf2onnx. A stateful layer's state becomes a graph input and output (Converted.states), starting from zero
    whatever state the Keras layer holds now. Raises ConversionError for a stateful layer that cannot be
    fused, for a recurrent layer that cannot be fused (unless
    `allow_unfused`, which keeps tf2onnx's Loop and returns a warning), for a signature other than the one
    asked for, and for a graph onnx.checker rejects.
    """
    import onnx

    if opset < 17:
        raise ConversionError(f"opset {opset} is below 17, the lowest edgeseq supports")
    plan = make_plan(keras_model)
    if plan.refused:
        raise ConversionError("; ".join(plan.refused))
    if plan.unfusable and not allow_unfused:
        reasons = "; ".join(plan.reasons())
        raise ConversionError(
            f"{keras_model.name}: cannot write every recurrent layer as a fused ONNX op ({reasons}); "
            "pass --allow-unfused to export it anyway, with tf2onnx's step-by-step Loop"
        )
    try:
        proto = _build(keras_model, plan, input_spec, output_spec, opset)
    except ConversionError:
        raise
    except Exception as exc:  # tf2onnx and Keras raise a variety of untyped errors
        raise ConversionError(f"could not convert {keras_model.name}: {type(exc).__name__}: {exc}") from exc

    states = state_specs(plan)
    expected_inputs = (input_spec, *(state_in for state_in, _ in states))
    expected_outputs = (output_spec, *(state_out for _, state_out in states))
    inputs, outputs = _tensor_specs(proto.graph.input), _tensor_specs(proto.graph.output)
    if inputs != expected_inputs or outputs != expected_outputs:
        raise ConversionError(
            f"converted signature is {', '.join(map(str, inputs))} -> {', '.join(map(str, outputs))}; "
            f"expected {', '.join(map(str, expected_inputs))} -> {', '.join(map(str, expected_outputs))}"
        )
    if metadata:
        onnx.helper.set_model_props(proto, metadata)
    try:
        onnx.checker.check_model(proto, full_check=True)
    except onnx.checker.ValidationError as exc:
        raise ConversionError(f"converted model fails onnx.checker: {exc}") from exc
    audit = fusion_audit(proto.graph, plan)
    warning = require_fused(audit, keras_model.name, allow_unfused)
    if warning:
        audit["allowed_unfused"] = True
    return Converted(proto, audit, dict(sorted(op_type_counts(proto.graph).items())), warning, states)

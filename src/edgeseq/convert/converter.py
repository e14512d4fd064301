"""One call from a Keras model to a checked ONNX model: plan, write, stitch, check the signature, run
onnx.checker and the fusion audit. The export recipes call `convert` and nothing else from here."""

from __future__ import annotations

import platform
from dataclasses import dataclass
from typing import Any

from edgeseq import frameworks
from edgeseq.convert import cuts, masks, recurrent
from edgeseq.convert.audit import fusion_audit, op_type_counts, require_fused
from edgeseq.convert.plan import Plan, make_plan
from edgeseq.errors import ConversionError
from edgeseq_device.manifest import TensorSpec

DEFAULT_OPSET = 17


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


def _reads(node: Any) -> set[str]:
    """Every name a node reads, its subgraphs' outer names included (a Loop's body reads outer values by name)."""
    names = {name for name in node.input if name}
    for attr in node.attribute:
        for sub in [attr.g] if attr.HasField("g") else list(attr.graphs):
            for inner in sub.node:
                names |= _reads(inner)
    return names


def _topological(nodes: list[Any], given: set[str]) -> list[Any]:
    """`nodes` in an order where each comes after what it reads (ONNX requires it), otherwise as they were."""
    made = {name: index for index, node in enumerate(nodes) for name in node.output if name}
    waiting = {i: {made[n] for n in _reads(node) if n in made and n not in given} for i, node in enumerate(nodes)}
    ordered: list[Any] = []
    done: set[int] = set()
    while len(done) < len(nodes):
        ready = [index for index in sorted(waiting) if index not in done and waiting[index] <= done]
        if not ready:
            raise ConversionError("the stitched graph has a cycle")
        done.update(ready)
        ordered += [nodes[index] for index in ready]
    return ordered


def _rename(graph: Any, names: dict[str, str], prefix: str) -> None:
    """Rename every value of `graph` in place: those in `names` as it says, every other one (and every node)
    with `prefix`, so that the writers' names and tf2onnx's never meet. Subgraphs' uses of outer names too."""

    def new(name: str) -> str:
        return names.get(name, prefix + name) if name else name

    def uses(sub: Any) -> None:
        for node in sub.node:
            node.input[:] = [new(n) if n in outer else n for n in node.input]
            for attr in node.attribute:
                for inner in [attr.g] if attr.HasField("g") else list(attr.graphs):
                    uses(inner)

    outer = {init.name for init in graph.initializer} | {v.name for v in graph.input}
    outer |= {name for node in graph.node for name in node.output}
    for node in graph.node:
        node.name = prefix + node.name
        node.output[:] = [new(n) for n in node.output]
    uses(graph)
    for init in graph.initializer:
        init.name = new(init.name)


def _without_output_identities(nodes: list[Any], fed: list[str]) -> tuple[list[Any], list[str]]:
    """Drop the Identity tf2onnx puts before a graph output where that output only feeds a cut (one recurrent
    layer's output read by the next): the writer reads the Identity's input."""
    read = {name for node in nodes for name in _reads(node)}
    dropped = {}
    for node in nodes:
        if node.op_type == "Identity" and node.output[0] in fed and node.output[0] not in read:
            dropped[node.output[0]] = node.input[0]
    return [node for node in nodes if node.output[0] not in dropped], [dropped.get(name, name) for name in fed]


def _stitched(
    model: Any, plan: Plan, input_spec: TensorSpec, output_name: str, opset: int
) -> tuple[list, list, tuple, list, tuple[cuts.Cut, ...]]:
    """Nodes, initializers, output shape and opsets of the whole graph: tf2onnx's graph of the model with each
    fused recurrent call cut out (edgeseq.convert.cuts), and in each cut the nodes its writer makes."""
    from onnx import helper

    traced = cuts.trace(model, plan.fused, input_spec, opset)
    graph = traced.graph
    count = traced.model_outputs
    widths = [[d.dim_value for d in value.type.tensor_type.shape.dim][1:] for value in graph.output[:count]]
    if count > 1 and any(len(width) != 1 for width in widths):
        raise ConversionError(
            f"{model.name} has {count} outputs, one of shape {next(w for w in widths if len(w) != 1)} per window: "
            "edgeseq joins several outputs of shape [batch, K] only"
        )
    initialized = {init.name for init in graph.initializer}
    inputs = [value.name for value in graph.input if value.name not in initialized]
    outputs = [value.name for value in graph.output]
    names = {inputs[0]: input_spec.name}
    placeholders = iter(inputs[1:])
    targets = []
    for index, cut in enumerate(traced.cuts):
        targets.append([f"r{index}_out{k}" for k in range(len(cut.outputs))])
        names.update((next(placeholders), target) for target in targets[-1])
    extra = []
    if count == 1 and outputs[0] not in names:
        names[outputs[0]] = output_name
    else:  # the model returns a cut's output or its input as it is, or several outputs: one, in order, [batch, sum K]
        parts = [names.get(name, "m_" + name) for name in outputs[:count]]
        op, attributes = ("Identity", {}) if count == 1 else ("Concat", {"axis": 1})
        extra.append(helper.make_node(op, parts, [output_name], name="output_" + op.lower(), **attributes))
    # traced with the batch unknown (edgeseq.convert.cuts)
    shape = (input_spec.shape[0], *(widths[0] if count == 1 else [sum(w[0] for w in widths)]))
    _rename(graph, names, "m_")
    nodes, inits = [*graph.node, *extra], list(graph.initializer)
    fed_names = [names.get(name, "m_" + name) for name in outputs[count:]]
    nodes, fed_names = _without_output_identities(nodes, fed_names)
    fed = iter(fed_names)
    stateful = {id(layer) for layer in plan.stateful}
    for index, cut in enumerate(traced.cuts):
        source, initial = next(fed), [next(fed) for _ in range(cut.initial)]
        mask = next(fed) if cut.masked else None
        why = mask and masks.refusal(cut.layer, recurrent.return_sequences(cut.layer), recurrent.backwards(cut.layer))
        if why:  # a mask from a layer the plan does not know of (a custom layer's compute_mask)
            raise ConversionError(f"{cut.layer.name} ({recurrent.keras_class(cut.layer)}): {why}")
        if initial and id(cut.layer) in stateful:
            raise ConversionError(f"{cut.layer.name}: a stateful layer given an initial_state")
        carry = id(cut.layer) in stateful
        run_nodes, run_inits = recurrent.write(
            cut.layer, source, cut.input_shape, targets[index], f"r{index}_", carry, initial, mask
        )
        nodes += run_nodes
        inits += run_inits
    return _topological(nodes, {input_spec.name}), inits, shape, traced.opset_import, traced.cuts


def _build(model: Any, plan: Plan, input_spec: TensorSpec, output_spec: TensorSpec, opset: int) -> tuple[Any, tuple]:
    from onnx import TensorProto, helper

    nodes, inits, shape, opset_import, calls = _stitched(model, plan, input_spec, output_spec.name, opset)
    producer = "edgeseq (recurrent writers) + tf2onnx" if calls else "tf2onnx"
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
    opsets = [helper.make_opsetid("", opset)] + [o for o in opset_import if o.domain not in ("", "ai.onnx")]
    proto = helper.make_model(graph, opset_imports=opsets, producer_name=producer)
    proto.ir_version = helper.find_min_ir_version_for(opsets)  # the oldest IR that carries this opset
    return proto, calls


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

    Every call of a recurrent layer, wherever it is in the model's graph, is written as one fused ONNX node;
    the rest goes through tf2onnx (edgeseq.convert.cuts). A stateful layer's state becomes a graph input and
    output (Converted.states), starting from zero whatever state the Keras layer holds now. Raises
    ConversionError for a stateful layer that cannot be fused or is called twice, for a model with several
    outputs that are not each [batch, K] (several are joined into one, in order), for a recurrent layer that
    cannot be fused (unless `allow_unfused`, which keeps tf2onnx's Loop and returns a warning), for a signature
    other than the one asked for, and for a graph onnx.checker rejects.
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
        proto, calls = _build(keras_model, plan, input_spec, output_spec, opset)
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
    audit = fusion_audit(proto.graph, plan, [cut.layer for cut in calls])
    warning = require_fused(audit, keras_model.name, allow_unfused)
    if warning:
        audit["allowed_unfused"] = True
    return Converted(proto, audit, dict(sorted(op_type_counts(proto.graph).items())), warning, states)

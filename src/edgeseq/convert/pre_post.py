"""Pre- and post-processing as ONNX ops around the network, so an exported file takes raw readings and gives
results in the target's units, in any onnxruntime binding, with no edgeseq code beside it.

The ops are written from the task's spec, whose numpy methods stay the reference: export checks the file,
end to end, against numpy pre-processing, then Keras, then numpy post-processing (edgeseq_device.forecast
and edgeseq_device.sequence define both). The arithmetic runs in float64, from a float64 input, in the same
order as numpy's, so the network sees bit for bit what it saw in training: a float32 input would round
raw readings with a large offset (pressure near 1,013 hPa: steps of 6.1e-5; a counter near 1e6: steps of
0.0625) before the window's own last row is subtracted.

Every node and initializer added here is named with PREFIX, and the network between them reads
NETWORK_INPUT and writes NETWORK_OUTPUT, so `network_of` can take the network out (to quantize it alone)
and `wrap` can put the same ops back around any variant of it: quantized files keep their pre/post in float.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from edgeseq_device.forecast import ForecastSpec
from edgeseq_device.manifest import TensorSpec
from edgeseq_device.sequence import SequenceSpec

PREFIX = "edgeseq_io/"
NETWORK_INPUT = "network_input"
NETWORK_OUTPUT = "network_output"
RAW_DTYPE = "float64"


@dataclass(frozen=True)
class Transform:
    """The ops around a network: `pre` turns the raw window into NETWORK_INPUT, `post` (if any) turns
    NETWORK_OUTPUT into the file's output. Nodes and initializers are ONNX protos."""

    window: TensorSpec  # the file's raw input
    output: TensorSpec  # the file's first output (NETWORK_OUTPUT renamed when there is no post-processing)
    pre: tuple[Any, ...]
    post: tuple[Any, ...]
    initializers: tuple[Any, ...]

    @property
    def network_output(self) -> str:
        return NETWORK_OUTPUT if self.post else self.output.name


def _const(name: str, value: Any, dtype: Any) -> Any:
    from onnx import numpy_helper

    return numpy_helper.from_array(np.asarray(value, dtype=dtype), PREFIX + name)


def _node(stage: str, op: str, inputs: list[str], output: str, **attrs: Any) -> Any:
    """A node named PREFIX + stage ("pre" or "post") + its output, so `network_of` can tell them apart."""
    from onnx import helper

    return helper.make_node(op, inputs, [output], name=f"{PREFIX}{stage}/{output.removeprefix(PREFIX)}", **attrs)


def forecaster_transform(
    spec: ForecastSpec, window_name: str = "window", output_name: str = "forecast", dtype: str = RAW_DTYPE
) -> Transform:
    """window [1, T, F] float64 -> (window - its last row) / input_scale -> float32 -> network ->
    float64 -> last target + target_scale * output -> forecast [1, 1] float64.

    `dtype` float32 writes the same ops in float32: only to measure what float64 buys
    (benchmarks/input_precision.py); export always uses float64."""
    from onnx import TensorProto, helper

    wide = helper.np_dtype_to_tensor_dtype(np.dtype(dtype))

    p = PREFIX
    window = spec.window
    pre = (
        _node("pre", "Slice", [window_name, p + "last_start", p + "last_end", p + "time_axis"], p + "last_row"),
        _node("pre", "Sub", [window_name, p + "last_row"], p + "relative"),
        _node("pre", "Div", [p + "relative", p + "input_scale"], p + "scaled"),
        _node("pre", "Cast", [p + "scaled"], NETWORK_INPUT, to=TensorProto.FLOAT),
    )
    post = (
        _node("post", "Cast", [NETWORK_OUTPUT], p + "change_scaled", to=wide),
        _node("post", "Mul", [p + "change_scaled", p + "target_scale"], p + "change"),
        _node(
            "post", "Slice", [p + "last_row", p + "target_start", p + "target_end", p + "feature_axis"], p + "last_cell"
        ),
        _node("post", "Squeeze", [p + "last_cell", p + "time_axis"], p + "last_target"),
        _node("post", "Add", [p + "last_target", p + "change"], output_name),
    )
    index = spec.target_index
    inits = (
        _const("last_start", [window - 1], np.int64),
        _const("last_end", [window], np.int64),
        _const("time_axis", [1], np.int64),
        _const("input_scale", spec.input_scale, dtype),
        _const("target_scale", spec.target_scale, dtype),
        _const("target_start", [index], np.int64),
        _const("target_end", [index + 1], np.int64),
        _const("feature_axis", [2], np.int64),
    )
    return Transform(
        TensorSpec(window_name, spec.input_shape, dtype), TensorSpec(output_name, (1, 1), dtype), pre, post, inits
    )


def normalization_transform(spec: SequenceSpec, output: TensorSpec, window_name: str = "window") -> Transform:
    """window [1, T, F] float64 -> (window - mean) / std -> float32 -> network; the output as the network's."""
    from onnx import TensorProto

    p = PREFIX
    pre = (
        _node("pre", "Sub", [window_name, p + "mean"], p + "centred"),
        _node("pre", "Div", [p + "centred", p + "std"], p + "scaled"),
        _node("pre", "Cast", [p + "scaled"], NETWORK_INPUT, to=TensorProto.FLOAT),
    )
    inits = (_const("mean", spec.mean, np.float64), _const("std", spec.std, np.float64))
    return Transform(TensorSpec(window_name, spec.input_shape, RAW_DTYPE), output, pre, (), inits)


def network_specs(transform: Transform) -> tuple[TensorSpec, TensorSpec]:
    """The signature the network is converted under, between the transform's ops."""
    return (
        TensorSpec(NETWORK_INPUT, transform.window.shape, "float32"),
        TensorSpec(transform.network_output, transform.output.shape, "float32"),
    )


def wrap(network: Any, transform: Transform) -> Any:
    """The network (reading NETWORK_INPUT) with the transform's ops around it, as a new ModelProto; the
    network's other inputs and outputs (carried states) stay as they are. Metadata and opsets are kept."""
    import onnx
    from onnx import helper

    graph = network.graph
    first_in = [i for i, value in enumerate(graph.input) if value.name == NETWORK_INPUT]
    first_out = [i for i, value in enumerate(graph.output) if value.name == transform.network_output]
    if first_in != [0] or first_out != [0]:
        raise ValueError(f"the network must read {NETWORK_INPUT!r} and write {transform.network_output!r} first")
    window, output = transform.window, transform.output
    raw = helper.np_dtype_to_tensor_dtype(np.dtype(window.dtype))
    out_type = helper.np_dtype_to_tensor_dtype(np.dtype(output.dtype))
    new_graph = helper.make_graph(
        [*transform.pre, *graph.node, *transform.post],
        graph.name,
        [helper.make_tensor_value_info(window.name, raw, list(window.shape)), *graph.input[1:]],
        [helper.make_tensor_value_info(output.name, out_type, list(output.shape)), *graph.output[1:]],
        initializer=[*transform.initializers, *graph.initializer],
        value_info=list(graph.value_info),
    )
    model = _model_like(new_graph, network)
    onnx.checker.check_model(model, full_check=True)
    return model


def _model_like(graph: Any, like: Any) -> Any:
    """A ModelProto around `graph` with everything else of `like`: opsets, IR version, producer, domain, model
    version, doc string, functions and metadata."""
    from onnx import helper

    model = helper.make_model(graph, opset_imports=list(like.opset_import), functions=list(like.functions))
    for field in ("ir_version", "producer_name", "producer_version", "domain", "model_version", "doc_string"):
        setattr(model, field, getattr(like, field))
    helper.set_model_props(model, {prop.key: prop.value for prop in like.metadata_props})
    return model


def network_of(model: Any) -> tuple[Any, Transform] | None:
    """Split a file written by `wrap` into its network (a ModelProto reading NETWORK_INPUT) and its
    transform; None for a file without one (exported before pre/post moved into the graph)."""
    from onnx import helper

    graph = model.graph
    pre_post = [node for node in graph.node if node.name.startswith(PREFIX)]
    if not pre_post:
        return None
    pre = tuple(node for node in pre_post if node.name.startswith(PREFIX + "pre/"))
    post = tuple(node for node in pre_post if node.name.startswith(PREFIX + "post/"))
    inits = tuple(init for init in graph.initializer if init.name.startswith(PREFIX))
    window, output = (_spec_of(value) for value in (graph.input[0], graph.output[0]))
    transform = Transform(window, output, pre, post, inits)
    net_in, net_out = network_specs(transform)
    net_graph = helper.make_graph(
        [node for node in graph.node if not node.name.startswith(PREFIX)],
        graph.name,
        [helper.make_tensor_value_info(net_in.name, 1, list(net_in.shape)), *graph.input[1:]],
        [helper.make_tensor_value_info(net_out.name, 1, list(net_out.shape)), *graph.output[1:]],
        initializer=[init for init in graph.initializer if not init.name.startswith(PREFIX)],
        value_info=list(graph.value_info),
    )
    return _model_like(net_graph, model), transform


def _spec_of(value: Any) -> TensorSpec:
    from onnx import helper

    tensor_type = value.type.tensor_type
    shape = tuple(d.dim_value if d.HasField("dim_value") else -1 for d in tensor_type.shape.dim)
    return TensorSpec(value.name, shape, helper.tensor_dtype_to_np_dtype(tensor_type.elem_type).name)

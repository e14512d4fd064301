"""The batched companion of a single-window file: the same graph taking [batch, T, F], and the check that it
computes every window as the single-window file does.

`batched` rewrites a copy of the file's graph:
- the first input's and the first output's axis 0 become the dim_param "batch";
- the graph's value_info goes: its shapes were inferred at batch 1 (onnxruntime infers them again);
- a Reshape whose constant shape starts with 1 gets -1 there (the other dimensions fix the element count), or,
  when the shape holds a -1 already, a shape made at run time: the input's batch (its Shape, sliced) and the rest.
  The converter writes its own Reshapes with -1 (edgeseq.convert.recurrent); this is for tf2onnx's part of the graph,
  traced at batch 1, and for files written before.
Nothing else in the graphs edgeseq writes carries a batch of 1 (the built-in models, their quantized variants and
the zoo of tests/zoo.py were read op by op): the pre/post-processing slices and squeezes the time and feature
axes only, and an Expand or a Tile with a 1 broadcasts or repeats once, whatever the batch.

It refuses a graph with a second input or output (a stateful model carries each series' state from one call to
the next, so the windows of a batch are not independent) and one whose first input or output does not start with
a batch of 1. What no rule sees, such as a Transpose that tf2onnx folded into a Reshape because the batch was 1
(Keras 3's TimeDistributed), `check` finds by running the companion against the single-window file. A graph that
fails gets no companion: NotBatchable says why.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from typing import Any

import numpy as np

from edgeseq.errors import EdgeseqError

BATCH = "batch"  # the dim_param of the companion's batch axis
BATCH_SIZES = (1, 2, 7, 32, 64, 256)  # batch sizes every companion is checked at
PREFIX = "edgeseq_batch/"  # names of the nodes and initializers the transform adds
# Ops that quantize each call's activations with one scale over the whole call: a window's outputs then depend on
# the other windows of its batch (onnxruntime's quantize_dynamic writes them)
DYNAMIC_QUANTIZATION = ("DynamicQuantizeLinear", "DynamicQuantizeLSTM", "DynamicQuantizeMatMul")
REPEATED_WINDOWS = 8  # windows a dynamically quantized companion is checked on in batches of copies of each


class NotBatchable(EdgeseqError):
    """A graph that cannot take a batch axis, or whose batched form does not compute each window as one call does."""


@dataclass(frozen=True)
class Batched:
    """The companion (a ModelProto) and each rewrite made, for the manifest."""

    proto: Any
    rewrites: tuple[str, ...]


def _shape_text(value: Any) -> str:
    dims = value.type.tensor_type.shape.dim
    return "[" + ", ".join(d.dim_param if d.HasField("dim_param") else str(d.dim_value) for d in dims) + "]"


def _real_inputs(graph: Any) -> list[Any]:
    """The graph's inputs that are not initializers (IR 3 files list those as inputs too)."""
    initialized = {init.name for init in graph.initializer}
    return [value for value in graph.input if value.name not in initialized]


def _refuse(graph: Any) -> None:
    inputs, outputs = _real_inputs(graph), list(graph.output)
    if len(inputs) != 1 or len(outputs) != 1:
        extra = [value.name for value in (*inputs[1:], *outputs[1:])]
        raise NotBatchable(
            f"it has {len(inputs)} inputs and {len(outputs)} outputs ({', '.join(extra)}): a stateful model carries "
            "each series' state from one call to the next, so the windows of a batch are not independent, and the "
            "runner runs it a window at a time"
        )
    for role, value in (("input", inputs[0]), ("output", outputs[0])):
        dims = value.type.tensor_type.shape.dim
        if not dims or not dims[0].HasField("dim_value") or dims[0].dim_value != 1:
            raise NotBatchable(
                f"its {role} {value.name} has shape {_shape_text(value)}: a batched companion is made from a file "
                "that takes and returns one window, [1, ...]"
            )


def _constants(graph: Any) -> dict[str, np.ndarray]:
    """Every constant tensor of the graph by name: initializers and the outputs of Constant nodes."""
    from onnx import numpy_helper

    found = {init.name: numpy_helper.to_array(init) for init in graph.initializer}
    for node in graph.node:
        if node.op_type == "Constant":
            value = next((a for a in node.attribute if a.name == "value"), None)
            if value is not None:
                found[node.output[0]] = numpy_helper.to_array(value.t)
    return found


class _Rewriter:
    """Rewrites the Reshapes of one graph; new nodes go in front of the node that reads them."""

    def __init__(self, graph: Any) -> None:
        self.graph = graph
        self.constants = _constants(graph)
        self.uses = Counter(name for node in graph.node for name in node.input)
        self.initializers = {init.name: init for init in graph.initializer}
        self.batch: str | None = None
        self.rewrites: list[str] = []

    def _initializer(self, name: str, value: np.ndarray) -> str:
        from onnx import numpy_helper

        taken = {init.name for init in self.graph.initializer} | {n for node in self.graph.node for n in node.output}
        unique, count = name, 1
        while unique in taken:
            count += 1
            unique = f"{name}_{count}"
        self.graph.initializer.append(numpy_helper.from_array(value, unique))
        return unique

    def _shape_input(self, node: Any, shape: np.ndarray) -> str:
        """An initializer holding `shape` for `node`'s shape input: the one it reads, changed in place when nothing
        else reads it (the companion then keeps the single file's names), else a new one."""
        from onnx import numpy_helper

        name = node.input[1]
        if name in self.initializers and self.uses[name] == 1:
            self.initializers[name].CopyFrom(numpy_helper.from_array(shape, name))
            return name
        return self._initializer(f"{PREFIX}{name}", shape)

    def _batch_dim(self, before: list[Any]) -> str:
        """A [1] int64 tensor holding the batch, read from the input's Shape once (nodes appended to `before`)."""
        from onnx import helper

        if self.batch is None:
            source = _real_inputs(self.graph)[0].name
            starts = self._initializer(f"{PREFIX}zero", np.array([0], np.int64))
            ends = self._initializer(f"{PREFIX}one", np.array([1], np.int64))
            shape, batch = f"{PREFIX}input_shape", f"{PREFIX}batch"
            before.append(helper.make_node("Shape", [source], [shape], name=shape))
            before.append(helper.make_node("Slice", [shape, starts, ends], [batch], name=batch))
            self.batch = batch
        return self.batch

    def rewrite(self) -> list[str]:
        from onnx import helper

        nodes: list[Any] = []
        for node in self.graph.node:
            shape = self.constants.get(node.input[1]) if node.op_type == "Reshape" and len(node.input) > 1 else None
            if shape is None or shape.ndim != 1 or not len(shape) or shape[0] != 1:
                nodes.append(node)
                continue
            before: list[Any] = []
            if -1 not in shape[1:]:
                new = np.array([-1, *shape[1:]], dtype=np.int64)
                node.input[1] = self._shape_input(node, new)
                self.rewrites.append(f"Reshape {node.name}: shape {shape.tolist()} -> {new.tolist()}")
            else:  # two -1s would be ambiguous: the batch is read from the input instead
                batch = self._batch_dim(before)
                rest = self._initializer(f"{PREFIX}{node.name}/rest", np.asarray(shape[1:], dtype=np.int64))
                made = f"{PREFIX}{node.name}/shape"
                before.append(helper.make_node("Concat", [batch, rest], [made], name=made, axis=0))
                node.input[1] = made
                self.rewrites.append(
                    f"Reshape {node.name}: shape {shape.tolist()} -> [batch, {', '.join(map(str, shape[1:].tolist()))}]"
                    " (the batch from the input's Shape)"
                )
            nodes += [*before, node]
        del self.graph.node[:]
        self.graph.node.extend(nodes)
        return self.rewrites


def batched(model: Any, rewrite: bool = True) -> Batched:
    """The batched companion of `model` (a ModelProto of a single-window file, left as it is): a copy with a
    dynamic batch axis, its metadata_props and everything else kept. Raises NotBatchable with the reason.
    Without `rewrite`, the Reshapes are left as they are: a graph the converter traced with its batch unknown
    (edgeseq.convert.cuts) needs none, and a leading 1 there is not the batch (tf.keras's LayerNormalization)."""
    import onnx

    proto = onnx.ModelProto()
    proto.CopyFrom(model)
    graph = proto.graph
    _refuse(graph)
    for value in (_real_inputs(graph)[0], graph.output[0]):
        value.type.tensor_type.shape.dim[0].dim_param = BATCH  # dim_value and dim_param are one of
    del graph.value_info[:]
    rewrites = _Rewriter(graph).rewrite() if rewrite else []
    try:
        onnx.checker.check_model(proto, full_check=True)
    except (onnx.checker.ValidationError, onnx.shape_inference.InferenceError) as exc:
        # an fp16 variant of a graph over token ids: onnxconverter-common leaves a float16 Less beside a float32 one
        raise NotBatchable(f"the batched graph fails onnx.checker: {str(exc).strip().splitlines()[0]}") from None
    return Batched(proto, tuple(rewrites))


def batch_fixing_nodes(model: Any) -> list[str]:
    """Reshapes whose constant shape still holds a 1 after the rewrite: where a batch of 1 may hide (a Transpose
    of a batch-1 tensor folded into a Reshape), named in a refusal."""
    graph = model.graph
    constants = _constants(graph)
    found = []
    for node in graph.node:
        shape = constants.get(node.input[1]) if node.op_type == "Reshape" and len(node.input) > 1 else None
        if shape is not None and shape.ndim == 1 and 1 in shape.tolist():
            found.append(f"Reshape {node.name} to {shape.tolist()}")
    return found


def dynamically_quantized(model: Any) -> list[str]:
    """The op types of `model` that quantize a call's activations on one scale over the whole call."""
    from edgeseq.convert.audit import op_type_counts

    counts = op_type_counts(model.graph)
    return [op for op in DYNAMIC_QUANTIZATION if counts[op]]


def _session(content: bytes) -> Any:
    import onnxruntime as ort

    from edgeseq_device.model import session_options

    return ort.InferenceSession(content, session_options(1), providers=["CPUExecutionProvider"])


def _first_line(exc: Exception) -> str:
    text = str(exc).strip()
    return text.splitlines()[0][:300] if text else type(exc).__name__


def check(
    single: bytes, companion: bytes, windows: np.ndarray, *, atol: float, sizes: tuple[int, ...] = BATCH_SIZES
) -> dict[str, Any]:
    """Run `companion` over `windows` (as the single-window file takes them) in batches of each of `sizes`, and
    compare every window's outputs with `single`'s on that window alone (one thread each, as the runtime runs).

    A companion must give, at every size, an output [size, ...] and the same outputs for a batch reversed, reversed
    (within `atol`: a graph that mixes windows gives other rows). A float or statically quantized one must give
    each window's outputs within `atol`; a dynamically quantized one quantizes each call on the whole batch's
    scale, so its differences are measured, and each window is held to `atol` in a batch of copies of itself (the
    scale is then the window's own). Returns the figures for the manifest; raises NotBatchable with the numbers.
    """
    import onnx

    windows = np.ascontiguousarray(windows)
    one, many = _session(single), _session(companion)
    name, output = many.get_inputs()[0].name, many.get_outputs()[0].name

    def run(x: np.ndarray) -> np.ndarray:
        try:
            y = many.run([output], {name: x})[0]
        except Exception as exc:  # onnxruntime raises untyped errors for a shape a node cannot take
            where = batch_fixing_nodes(onnx.load_from_string(companion))
            hint = f" (a batch of 1 may be fixed in: {'; '.join(where)})" if where else ""
            raise NotBatchable(f"onnxruntime fails on a batch of {len(x)}: {_first_line(exc)}{hint}") from None
        if y.shape != (len(x), *reference.shape[1:]):
            raise NotBatchable(
                f"a batch of {len(x)} windows gives {output} of shape {list(y.shape)}, "
                f"not {[len(x), *reference.shape[1:]]}"
            )
        return y

    reference = np.concatenate([one.run([output], {name: windows[i : i + 1]})[0] for i in range(len(windows))])
    by_size: dict[str, dict[str, Any]] = {}
    for size in sizes:
        got = np.concatenate([run(windows[start : start + size]) for start in range(0, len(windows), size)])
        diff = np.abs(got.astype(np.float64) - reference.astype(np.float64))
        by_size[str(size)] = {
            "bit_identical": bool(np.array_equal(got, reference)),
            "max_abs_diff": float(diff.max()),
            "median_abs_diff": float(np.median(diff)),
        }
    reordered = 0.0
    for size in (size for size in sizes if size > 1):
        chunk = windows[:size]
        reordered = max(reordered, float(np.abs(run(chunk)[::-1] - run(chunk[::-1])).max()))
    if not reordered <= atol:
        raise NotBatchable(
            f"a batch reversed does not give its outputs reversed (max abs diff {reordered:.3g} > atol {atol:.3g}): "
            "the batched graph mixes windows"
        )
    figures: dict[str, Any] = {
        "batch": "dynamic",
        "batch_sizes_checked": list(sizes),
        "windows": len(windows),
        "bit_identical": all(row["bit_identical"] for row in by_size.values()),
        "max_abs_diff": max(row["max_abs_diff"] for row in by_size.values()),
        "median_abs_diff": max(row["median_abs_diff"] for row in by_size.values()),
        "by_batch_size": by_size,
        "atol": atol,
        "reordered_max_abs_diff": reordered,
    }
    worst = max(by_size, key=lambda size: by_size[size]["max_abs_diff"])
    dynamic = dynamically_quantized(onnx.load_from_string(companion))
    if not dynamic:
        if not figures["max_abs_diff"] <= atol:
            raise NotBatchable(
                f"in batches of {worst}, a window's outputs differ from its outputs alone by up to "
                f"{figures['max_abs_diff']:.3g} > atol {atol:.3g}"
            )
        figures["bar"] = "every window's outputs within atol of the single-window file's on it alone"
        return figures
    picks = np.unique(np.linspace(0, len(windows) - 1, min(REPEATED_WINDOWS, len(windows))).astype(int))
    repeated = max(
        float(np.abs(run(np.repeat(windows[i : i + 1], size, axis=0)) - reference[i : i + 1]).max())
        for size in sizes
        for i in picks
    )
    figures["repeated_window_max_abs_diff"] = repeated
    if not repeated <= atol:
        raise NotBatchable(
            f"a batch of copies of one window gives outputs up to {repeated:.3g} from that window's alone "
            f"(> atol {atol:.3g}), though its quantization scale is the window's own"
        )
    figures["differs_because"] = (
        f"{' and '.join(dynamic)} quantize{'s' if len(dynamic) == 1 else ''} each call's activations on one scale "
        "over the whole call: a window in a batch is rounded on the batch's scale, not its own"
    )
    figures["bar"] = (
        "the differences are measured, not held to atol; a batch of copies of one window gives its outputs within "
        "atol, and a batch reversed gives its outputs reversed within atol"
    )
    return figures

"""The ops a user's SavedModel may hold, read from its saved_model.pb before TensorFlow loads anything of it.

Loading a SavedModel runs its TensorFlow graphs (a custom layer's traced call, resource initialisers), and
Keras's safe mode does not look at them: an op there can write or read files, print or call Python. So every
node of every graph and function in the file is checked against an allow-list of pure math and array ops, and
the file is refused, naming the op and its layer, before `load_model` is called. Nothing is traced or run.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from edgeseq.errors import ModelFileError, UnsafeModelError

# The op types of real tf.keras 2 SavedModels (model.save(..., save_format="tf"), tf_keras 2.21, TensorFlow 2.21):
# the architectures of tests/zoo.py and tests/test_export_keras.py, stateful LSTM/GRU, compiled and trained models,
# and layers beyond them (Embedding, attention, Conv1D variants, pooling, normalisation, every activation, mixed
# precision, unrolled RNNs, TF ops between layers). tests/test_export_untrusted.py rebuilds such models and checks
# they pass. An op outside the list is refused by name: a pure op a real layer needs is one entry here.
PURE_OPS = frozenset(
    {
        # graph plumbing: inputs, constants, calls of the file's own functions (themselves checked), control flow
        *("Placeholder", "Const", "Identity", "IdentityN", "NoOp", "StopGradient"),
        *("PartitionedCall", "StatefulPartitionedCall", "While", "StatelessWhile", "If"),
        # the model's own variables, in memory: created by handle, read, assigned (stateful RNNs, BatchNorm updates)
        *("VarHandleOp", "ReadVariableOp", "AssignVariableOp", "AssignSubVariableOp", "ResourceGather"),
        # elementwise math and activations
        *("Abs", "AddN", "AddV2", "Sub", "Mul", "RealDiv", "DivNoNan", "Neg", "Reciprocal", "Square", "Sqrt"),
        *("Rsqrt", "Pow", "Exp", "Log", "Log1p", "Sign", "Floor", "Round", "FloorMod", "Maximum", "Minimum"),
        *("SquaredDifference", "Sin", "Cos", "Erfc", "Sigmoid", "Tanh", "Relu", "Relu6", "Elu", "Selu"),
        *("LeakyRelu", "Softplus", "Softsign", "Softmax", "Cast", "Select", "SelectV2", "ZerosLike", "OnesLike"),
        *("Equal", "NotEqual", "Greater", "GreaterEqual", "Less", "LogicalAnd", "LogicalNot", "All", "Any"),
        # reductions, linear algebra, convolutions and pooling
        *("Sum", "Mean", "Max", "Prod", "ArgMax", "Cumsum", "L2Loss", "MatMul", "BatchMatMulV2", "Einsum"),
        *("MatrixBandPart", "BiasAdd", "Conv2D", "DepthwiseConv2dNative", "Conv2DBackpropInput", "MaxPool"),
        *("AvgPool", "FusedBatchNormV3"),
        # shapes and array layout
        *("Shape", "Rank", "Range", "Fill", "Reshape", "ExpandDims", "Squeeze", "Transpose", "InvertPermutation"),
        *("Pack", "Unpack", "ConcatV2", "ConcatOffset", "Split", "SplitV", "Slice", "StridedSlice", "Tile", "Pad"),
        *("GatherV2", "OneHot", "ReverseV2", "ReverseSequence", "SpaceToBatchND", "BatchToSpaceND"),
        # in-memory lists and optionals of RNN loops and their gradients
        *("TensorListReserve", "TensorListFromTensor", "TensorListGetItem", "TensorListSetItem", "TensorListStack"),
        *("TensorListPushBack", "TensorListPopBack", "TensorListLength", "TensorListElementShape", "EmptyTensorList"),
        *("OptionalFromValue", "OptionalGetValue", "OptionalNone"),
        # Dropout and noise layers (their training-mode functions)
        *("RandomUniform", "RandomStandardNormal"),
        # the cuDNN implementation of LSTM and GRU that TensorFlow may swap in, and the saved gradient functions
        *("CudnnRNNV3", "CudnnRNNBackpropV3", "BiasAddGrad", "BroadcastGradientArgs", "SigmoidGrad", "TanhGrad"),
        "StridedSliceGrad",
    }
)

# Ops allowed only in the checkpoint functions: the two functions TensorFlow's saver writes into every SavedModel
# (__inference__traced_save_N and __inference__traced_restore_N), called by the top-level nodes its saver_def
# names. These are safe because Keras never runs them: a SavedModel with an object graph (required below) is
# loaded by TensorFlow's object-graph loader, which restores the variables with a checkpoint reader of its own,
# from this SavedModel's variables/ directory; only the TensorFlow 1 loader runs the saver_def's restore op. A
# crafted file could give SaveV2 a path of its own there, so what makes them safe is that they never run: they are
# allowed only in functions that nothing else calls (no other node, no function, no entry of the object graph, from
# which the loader runs resource initialisers), and that TensorFlow cannot swap in for another function (no
# api_implements attribute). Anywhere else these ops are refused like any other.
CHECKPOINT_OPS = frozenset(
    {
        "SaveV2",  # writes the variables to the checkpoint prefix it is given
        "RestoreV2",  # reads them from the prefix it is given: the SavedModel's own variables/variables
        "MergeV2Checkpoints",  # merges the shards it just saved into that prefix, and removes the temporary ones
        "ShardedFilename",  # string ops that build the shard names from the prefix
        "StringJoin",
        "StaticRegexFullMatch",
        "DisableCopyOnRead",  # marks a variable read for saving (no I/O)
    }
)

NOT_PURE_MATH = (
    "that is not pure math: edgeseq refuses SavedModels that can act when loaded (file I/O, Python calls, ...)"
)
_LAYER_CALL = re.compile(r"__inference_(?P<layer>.+)_layer_call_(?:and_return_conditional_losses|fn)_\d+")


def _called(node: Any) -> Iterator[str]:
    """The functions a node calls by attribute (PartitionedCall's f, While's cond and body, If's branches)."""
    for value in node.attr.values():
        if value.HasField("func"):
            yield value.func.name
        if value.HasField("list"):
            yield from (func.name for func in value.list.func)


def _in_object_graph(object_graph: Any) -> Iterator[str]:
    """The functions the object graph names: the loader restores them as callables, and runs some (initialisers)."""
    yield from object_graph.concrete_functions.keys()
    for saved in object_graph.nodes:
        yield from saved.function.concrete_functions
        if saved.HasField("bare_concrete_function"):
            yield saved.bare_concrete_function.concrete_function_name


def checkpoint_functions(meta_graph: Any) -> frozenset[str]:
    """The functions only the saver_def's save and restore nodes reach, none of them swappable by TensorFlow."""
    library = {function.signature.name: function for function in meta_graph.graph_def.library.function}
    saver = meta_graph.saver_def
    saver_nodes = {saver.save_tensor_name.split(":")[0], saver.restore_op_name.split(":")[0]} - {""}
    callers: dict[str, set[str]] = {name: {"object graph"} for name in _in_object_graph(meta_graph.object_graph_def)}
    for node in meta_graph.graph_def.node:
        for name in _called(node):
            callers.setdefault(name, set()).add(f"node {node.name}")
    for function in library.values():
        for node in function.node_def:
            for name in {*_called(node), node.op}:
                callers.setdefault(name, set()).add(function.signature.name)
    reached: set[str] = set()
    todo = [called for node in meta_graph.graph_def.node if node.name in saver_nodes for called in _called(node)]
    while todo:
        name = todo.pop()
        if name in library and name not in reached:
            reached.add(name)
            todo.extend(called for node in library[name].node_def for called in _called(node))
    allowed = {f"node {name}" for name in saver_nodes}
    changed = True
    while changed:  # drop any function something else calls, and then what only it called
        kept = {
            name
            for name in reached
            if callers.get(name, set()) <= allowed | reached and "api_implements" not in library[name].attr
        }
        changed, reached = kept != reached, kept
    return frozenset(reached)


def _where(function: str | None, node_name: str) -> tuple[str, bool]:
    """Where a node is, for a message: its layer, and whether that is sure (from a layer's call function, not a
    name scope); else the function it is in, or its own name."""
    match = _LAYER_CALL.fullmatch(function or "")
    if match:
        return f"layer '{match['layer']}'", True
    if "/" in node_name:
        return f"layer '{node_name.rsplit('/', 1)[0]}'", False
    return (f"in function {function}" if function else f"node {node_name}"), False


def refusals(meta_graph: Any) -> dict[tuple[str, bool], set[str]]:
    """(where, sure) -> the op types that are not allowed there, over every node of `meta_graph`."""
    library = {function.signature.name for function in meta_graph.graph_def.library.function}
    relaxed = checkpoint_functions(meta_graph)
    found: dict[tuple[str, bool], set[str]] = {}

    def check(function: str | None, node: Any) -> None:
        allowed = PURE_OPS | CHECKPOINT_OPS if function in relaxed else PURE_OPS
        # a name a call attribute gives that is not one of the file's functions is run as that op
        for op in (node.op, *(name for name in _called(node) if name not in library)):
            if op not in allowed:
                found.setdefault(_where(function, node.name), set()).add(op)

    for node in meta_graph.graph_def.node:
        check(None, node)
    for function in meta_graph.graph_def.library.function:
        for node in function.node_def:
            check(function.signature.name, node)
    return found


def read_saved_model(path: Path) -> Any:
    """The SavedModel proto of the directory `path`, parsed, nothing run; ModelFileError when it is not one."""
    from google.protobuf.message import DecodeError
    from tensorflow.core.protobuf import saved_model_pb2

    proto = saved_model_pb2.SavedModel()
    try:
        proto.ParseFromString((path / "saved_model.pb").read_bytes())
    except (DecodeError, RuntimeError, ValueError) as exc:
        raise ModelFileError(f"{path}/saved_model.pb is not a SavedModel ({type(exc).__name__}: {exc})") from None
    return proto


def check_saved_model(path: Path) -> None:
    """Refuse the SavedModel `path` unless each of its ops is on the allow-list: UnsafeModelError naming the op and
    its layer; ModelFileError for a file TensorFlow would load as a TensorFlow 1 graph (running its init ops)."""
    proto = read_saved_model(path)
    if len(proto.meta_graphs) != 1 or not proto.meta_graphs[0].HasField("object_graph_def"):
        raise ModelFileError(
            f"{path} is a TensorFlow 1 SavedModel ({len(proto.meta_graphs)} meta graphs, no object graph): edgeseq "
            "reads SavedModels written by tf.keras 2 (model.save(path, save_format='tf'))"
        )
    found = refusals(proto.meta_graphs[0])
    if found:
        (where, _), ops = min(found.items(), key=lambda item: not item[0][1])  # a layer named for sure, if any
        what = f"an op {next(iter(ops))}" if len(ops) == 1 else f"ops {', '.join(sorted(ops))}"
        raise UnsafeModelError(f"{path} has {what} ({where}) {NOT_PURE_MATH}")

"""The model traced once by TensorFlow with each recurrent call edgeseq writes cut out; tf2onnx converts the
rest, whatever its shape, and the converter fills every cut with one fused node.

How: while the model is traced (a tf.function over `model(x, training=False)`), each recurrent layer edgeseq
fuses has its `call` replaced, on the instance and only for the trace, by a cut. The cut returns placeholders,
extra inputs of the traced function, in place of the layer's outputs (the sequence or last output, then the
states of a layer with return_state), and hands what the layer was given (its sequence, and any initial_state)
out as extra outputs. tf2onnx then sees no recurrence at all, only the layers around it.

Why this way, rather than walking the Keras graph and converting layer by layer or segment by segment: the model
runs its own call, so whatever Keras does between layers is traced as Keras does it, in either Keras: residual
Adds, Attention and MultiHeadAttention with their several inputs, Concatenate of parallel branches, several
outputs, a layer called twice (each call is a cut of its own), a nested model, operations written between layers
(x * 2.0, x[:, -1]), a state passed on as another layer's initial_state. Nothing needs to know how each layer is
called, and tf2onnx optimises the whole non-recurrent graph at once. The model is left as it was: the instance
attribute is removed when the trace ends, and a call Keras records nothing for.
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from edgeseq import frameworks
from edgeseq.convert import recurrent
from edgeseq.errors import ConversionError
from edgeseq_device.manifest import TensorSpec


@dataclass(frozen=True)
class Cut:
    """One call of a fused recurrent layer, as the trace saw it: the shape of the sequence it read, how many
    initial states it was given, the shapes of what it returned (output, then states with return_state), and
    whether Keras gave it a mask (edgeseq.convert.masks)."""

    layer: Any
    input_shape: tuple[int | None, ...]
    initial: int
    outputs: tuple[tuple[int | None, ...], ...]
    masked: bool = False


@dataclass(frozen=True)
class Traced:
    """tf2onnx's graph of the model with the cuts: inputs [the model's input, each cut's outputs in cut order],
    outputs [the model's outputs, then each cut's sequence, initial states and mask in cut order]."""

    graph: Any
    opset_import: list[Any]
    cuts: tuple[Cut, ...]
    model_outputs: int


def _given(layer: Any, args: tuple, kwargs: dict[str, Any]) -> tuple[Any, list[Any], Any]:
    """(sequence, initial states, mask or None) of one call; ConversionError for what a fused node cannot take."""
    inputs = args[0] if args else kwargs.get("inputs", kwargs.get("sequences"))
    initial = kwargs.get("initial_state")
    if isinstance(inputs, list | tuple):  # tf_keras passes Keras tensors given as initial_state in the inputs
        inputs, initial = inputs[0], list(inputs[1:]) or initial
    if kwargs.get("constants") is not None:
        raise ConversionError(f"{layer.name}: called with constants, which no ONNX recurrent op takes")
    mask = kwargs.get("mask")
    mask = mask[0] if isinstance(mask, list | tuple) else mask  # the sequence's, not the initial states'
    initial = [] if initial is None else list(initial) if isinstance(initial, list | tuple) else [initial]
    if mask is not None and (initial or recurrent.stateful(layer)):
        # a window of masked steps only: Keras keeps the state it started from, the ONNX node (no step) gives zero
        raise ConversionError(f"{layer.name}: a masked call that starts from a given or carried state")
    return inputs, initial, mask


@contextlib.contextmanager
def _calls_replaced(layers: list[Any], cut: Callable[..., Any]) -> Iterator[None]:
    """Each of `layers` calls `cut(layer, *args, **kwargs)` instead of its own call, until the block ends."""
    try:
        for layer in layers:
            layer.call = functools.partial(cut, layer)  # an instance attribute, in front of the class's call
        yield
    finally:
        for layer in layers:
            if "call" in vars(layer):
                del layer.call


def _flat(value: Any) -> list[Any]:
    return list(value) if isinstance(value, list | tuple) else [value]


def _static(shape: Any) -> tuple[int | None, ...]:
    """A shape whose dimensions are all known but the batch's."""
    dims = tuple(shape)
    if any(d is None for d in dims[1:]):
        raise ConversionError(f"a recurrent layer reads or returns a shape with an unknown dimension: {list(dims)}")
    return (dims[0], *(int(d) for d in dims[1:]))


def trace(model: Any, fused: list[Any], source: TensorSpec, opset: int) -> Traced:
    """The model's graph from tf2onnx, each call of a layer in `fused` cut out (see the module's docstring).

    It is traced with the batch unknown, so that tf2onnx computes every shape that holds the batch from the
    input's (a batch of 1 would be folded into constant shapes: Flatten's, Tensordot's, MultiHeadAttention's and
    LayerNormalization's Reshapes, which no rule can tell from other 1s), and the file's batched companion
    (edgeseq.convert.batched) computes each window as the file does. A stateful model is traced at its own fixed
    batch: its state has one."""
    tf, _ = frameworks.tensorflow()
    tf2onnx = frameworks.tf2onnx()
    batch = source.shape[0] if any(recurrent.stateful(layer) for layer in fused) else None
    x_spec = tf.TensorSpec((batch, *source.shape[1:]), tf.float32, name=source.name)
    found: list[Cut] = []

    def record(layer: Any, *args: Any, **kwargs: Any) -> Any:
        sequence, initial, mask = _given(layer, args, kwargs)
        returned = type(layer).call(layer, *args, **kwargs)
        shapes = tuple(_static(value.shape) for value in _flat(returned))
        found.append(Cut(layer, _static(sequence.shape), len(initial), shapes, mask is not None))
        return returned

    with _calls_replaced(fused, record):  # a first trace, for the cuts' shapes
        tf.function(lambda x: model(x, training=False), autograph=False).get_concrete_function(x_spec)
    for layer in fused:
        if recurrent.stateful(layer) and sum(cut.layer is layer for cut in found) > 1:
            raise ConversionError(f"{layer.name}: a stateful layer called more than once (its state is one)")
    placeholders = [
        tf.TensorSpec(shape, tf.float32, name=f"cut{index}_{k}")
        for index, cut in enumerate(found)
        for k, shape in enumerate(cut.outputs)
    ]
    outputs = len(model.outputs)

    def run(x: Any, *values: Any) -> list[Any]:
        given: list[Any] = []
        remaining, calls = list(values), iter(found)

        def cut(layer: Any, *args: Any, **kwargs: Any) -> Any:
            expected = next(calls)
            if expected.layer is not layer:  # the second trace must call the layers as the first did
                raise ConversionError(f"{layer.name}: called in another order on a second trace")
            sequence, initial, mask = _given(layer, args, kwargs)
            given.extend([sequence, *initial, *([] if mask is None else [mask])])
            mine = [remaining.pop(0) for _ in expected.outputs]
            return mine[0] if len(mine) == 1 else mine

        with _calls_replaced(fused, cut):
            returned = model(x, training=False)
        return [*_flat(returned), *given]

    signature = (x_spec, *placeholders)
    function = tf.function(run, input_signature=signature, autograph=False)
    proto, _ = tf2onnx.convert.from_function(function, input_signature=signature, opset=opset)
    return Traced(proto.graph, list(proto.opset_import), tuple(found), outputs)

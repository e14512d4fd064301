"""Rows to predictions: the last T good rows in a ring buffer, turned into the model's input and run.

A skipped (bad) row is a gap, and a window never spans a gap: after one, the buffer refills with T good rows
before the next prediction. A prediction is due once the buffer is full and then every `stride` good rows.
The task (a ForecastSpec or a SequenceSpec) says how rows become the input and the output a record.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import onnxruntime as ort
from onnxruntime.capi import onnxruntime_pybind11_state as ort_state

from edgeseq_device.errors import InputError
from edgeseq_device.forecast import ForecastSpec
from edgeseq_device.model import Model
from edgeseq_device.rows import BadRowError, RowParser
from edgeseq_device.sequence import SequenceSpec


class WindowBuffer:
    """The last T rows, always contiguous: each row is written at i and i+T of a [2T, F] array, no copying."""

    def __init__(self, window: int, width: int) -> None:
        self.window = window
        self._data = np.zeros((2 * window, width), dtype=np.float64)
        self._next = 0
        self.filled = 0

    def push(self, row: np.ndarray) -> None:
        self._data[self._next] = row
        self._data[self._next + self.window] = row
        self._next = (self._next + 1) % self.window
        self.filled += 1

    def reset(self) -> None:
        self.filled = 0

    def view(self) -> np.ndarray:
        """The buffered rows oldest first; valid while `filled >= window`."""
        return self._data[self._next : self._next + self.window]


Task = ForecastSpec | SequenceSpec


# What onnxruntime raises when a model fails on one input (an Embedding index out of range, say).
_RUN_ERRORS = (RuntimeError, ort_state.Fail, ort_state.InvalidArgument, ort_state.RuntimeException)


class PredictionError(InputError):
    """The model failed on this window's values; the stream goes on."""


class StreamRunner:
    """Turns rows into predictions with preallocated buffers: per row, a parse and two row writes; per
    prediction, one input fill and one session.run."""

    def __init__(self, model: Model, spec: Task, stride: int = 1) -> None:
        if stride < 1:
            raise InputError(f"stride must be >= 1, got {stride}")
        states = spec.states
        if states and stride not in (1, spec.window):
            raise InputError(
                f"a stateful model takes {spec.window} new row{'s' if spec.window != 1 else ''} per call and carries "
                f"its state on: --stride must be {spec.window} (or left out), got {stride}"
            )
        self.model, self.spec, self.stride = model, spec, spec.window if states else stride
        self.buffer = WindowBuffer(spec.window, len(spec.features))
        self._row = np.zeros(len(spec.features), dtype=np.float64)
        self._input = np.zeros(spec.input_shape, dtype=np.float32)
        self._scratch = np.zeros((spec.window, len(spec.features)), dtype=np.float64)
        self._output = np.zeros(model.outputs[0].shape, dtype=model.outputs[0].dtype)
        # Bound once to our own arrays: a forecast refills self._input in place, and onnxruntime writes
        # into self._output, with no feed dict, no output allocation and no copy per call.
        self._values = (ort.OrtValue.ortvalue_from_numpy(self._input), ort.OrtValue.ortvalue_from_numpy(self._output))
        self._binding = model.session.io_binding()
        self._binding.bind_ortvalue_input(model.inputs[0].name, self._values[0])
        self._binding.bind_ortvalue_output(model.outputs[0].name, self._values[1])
        # A stateful model: each state output is copied into its input after every call, and zeroed at a gap.
        shapes = {spec.name: spec.shape for spec in model.inputs}
        self._states = [(np.zeros(shapes[i], np.float32), np.zeros(shapes[i], np.float32)) for i, _ in states]
        for (name_in, name_out), (state_in, state_out) in zip(states, self._states, strict=True):
            self._binding.bind_ortvalue_input(name_in, ort.OrtValue.ortvalue_from_numpy(state_in))
            self._binding.bind_ortvalue_output(name_out, ort.OrtValue.ortvalue_from_numpy(state_out))

    def push(self, parser: RowParser, fields: list[str]) -> tuple[bool, str | None]:
        """Parse one row into the window; return (forecast due, time text). Raises BadRowError (and then
        resets the window, so no window spans the gap)."""
        try:
            when = parser.parse(fields, self._row)
        except BadRowError:
            self.gap()
            raise
        self.buffer.push(self._row)
        extra = self.buffer.filled - self.spec.window
        return extra >= 0 and extra % self.stride == 0, when

    def gap(self) -> None:
        """The stream broke (a bad row, a reopened file): the next window, and a carried state, start afresh."""
        self.buffer.reset()
        for state_in, _ in self._states:
            state_in.fill(0.0)

    def predict(self) -> tuple[Any, ...]:
        """Run the model on the buffered window; the record's values, in the order of spec.record_fields."""
        window = self.buffer.view()
        self.spec.model_input(window, out=self._input, scratch=self._scratch)
        try:
            self.model.session.run_with_iobinding(self._binding)
        except _RUN_ERRORS as exc:
            for state_in, _ in self._states:  # a carried state after a failed call is not trustworthy
                state_in.fill(0.0)
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise PredictionError(f"the model failed on this window: {first[:300]}") from None
        for state_in, state_out in self._states:
            np.copyto(state_in, state_out)
        return self.spec.record_values(self._output, window)

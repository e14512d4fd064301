"""Rows to predictions: the last T good rows of each series in a ring buffer; each due window is staged (copied
out), and the staged windows are run together, one session.run each.

A skipped (bad) row is a gap, and so is what the series rules (series/) call one; a window never spans a gap:
after one, the series' buffer refills with T good rows before its next prediction. A prediction is due once a
buffer is full and then every `stride` good rows of that series. With a key column, each key is its own series
(memory: keys x 2T x F floats). The task (a ForecastSpec or a SequenceSpec) says how rows become the input and
the output a record.

Staging is what keeps the runner's Python work apart from the model's: a block of rows (one read) is parsed, the
due windows are staged, and then they are run back to back. Alternating the two row by row made each slower
(the model evicts what the parser had in the CPU's caches, and back); a stateful model still runs each window
as soon as it is due, since a gap zeroes its state before the next row.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import onnxruntime as ort
from onnxruntime.capi import onnxruntime_pybind11_state as ort_state

from edgeseq_device.bulk import PlainRows
from edgeseq_device.errors import InputError
from edgeseq_device.forecast import ForecastSpec
from edgeseq_device.metrics import timed
from edgeseq_device.model import Companion, Model
from edgeseq_device.rows import BadRowError, RowParser
from edgeseq_device.sequence import SequenceSpec
from edgeseq_device.series import (
    JUMPED,
    SLOT_TAKEN,
    TIME_GAP,
    TIME_ORDER_REASONS,
    Router,
    Series,
    SeriesRules,
    WindowBuffer,
)

__all__ = ["PredictionError", "StreamRunner", "Task", "WindowBuffer"]


Task = ForecastSpec | SequenceSpec


STAGED_BYTES = 4 << 20  # windows staged at most: 256 of them, or fewer that hold 4 MB
MAX_STAGED = 256

# What onnxruntime raises when a model fails on one input (an Embedding index out of range, say).
_RUN_ERRORS = (RuntimeError, ort_state.Fail, ort_state.InvalidArgument, ort_state.RuntimeException)


class PredictionError(InputError):
    """The model failed on this window's values; the stream goes on."""


class StreamRunner:
    """Turns rows into predictions with preallocated buffers: per row, a parse and two row writes; per
    prediction, one window staged, then one input fill and one session.run."""

    def __init__(self, model: Model, spec: Task, stride: int = 1, rules: SeriesRules = SeriesRules()) -> None:
        if stride < 1:
            raise InputError(f"stride must be >= 1, got {stride}")
        states = spec.states
        if states and stride not in (1, spec.window):
            raise InputError(
                f"a stateful model takes {spec.window} new row{'s' if spec.window != 1 else ''} per call and carries "
                f"its state on: --stride must be {spec.window} (or left out), got {stride}"
            )
        if states and rules.group_by:
            raise InputError(
                f"a stateful model carries one state, so it cannot run one series per {rules.group_by!r}: "
                "run each key's rows separately"
            )
        self.model, self.spec, self.stride, self.rules = model, spec, spec.window if states else stride, rules
        self.router = Router(spec.window, spec.features, rules)
        # float64 raw rows for a file that scales them in its graph (the runner only copies them in), else
        # float32 inputs scaled here; the manifest's signature check has matched the dtype to the file's
        self._input = np.zeros(spec.input_shape, dtype=spec.input_dtype)
        self._scratch = np.zeros((spec.window, len(spec.features)), dtype=np.float64)
        self._output = np.zeros(model.outputs[0].window_shape, dtype=model.outputs[0].dtype)
        size = spec.window * len(spec.features) * 8
        self.capacity = 1 if states else max(1, min(MAX_STAGED, STAGED_BYTES // size))
        self._copies = np.zeros((self.capacity, spec.window, len(spec.features)), dtype=np.float64)
        self._windows: list[np.ndarray] = []  # staged: copies of the ring buffer, or views of a plain block
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

    @property
    def key(self) -> str | None:
        """The key of the last row pushed (None without a key column)."""
        return self.router.series.key

    @property
    def flags(self) -> int:
        """series.TIME_GAP, FILLED, JUMPED and SLOT_TAKEN of the last row pushed."""
        return self.router.flags

    @property
    def keys(self) -> dict[str, Series]:
        return self.router.keys

    def push(self, parser: RowParser, fields: list[str]) -> tuple[bool, str | None]:
        """Parse one row into its series' window; return (prediction due, time text). Raises BadRowError, and
        then that series (and a carried state) starts afresh, so no window spans the gap."""
        try:
            series, text = self.router.push(parser, fields)
        except BadRowError as exc:
            if exc.reason not in TIME_ORDER_REASONS:  # a reading behind the newest changes no state
                self._zero_states()
            raise
        flags = self.router.flags
        if flags & SLOT_TAKEN:  # on the time grid, the slot's first reading counted: nothing new to forecast from
            return False, text
        if self._states and flags & (TIME_GAP | JUMPED):  # a new segment: the state starts afresh
            self._zero_states()
        extra = series.buffer.filled - self.spec.window
        return extra >= 0 and extra % self.stride == 0, text

    def unreadable(self) -> None:
        """A line too long to read: a gap, unless the stream is keyed (then whose it was is unknown)."""
        self.router.unreadable()
        if self.rules.group_by is None:  # a stateful model is never keyed
            self._zero_states()

    def restart(self) -> None:
        """A new stream (a reopened file): every series starts afresh, times included."""
        self.router.restart()
        self._zero_states()

    def _zero_states(self) -> None:
        for state_in, _ in self._states:
            state_in.fill(0.0)

    def stage(self) -> None:
        """Copy the window of the last row pushed (its prediction is due) to be run by `run_staged`; the
        caller runs them when `full`."""
        copy = self._copies[len(self._windows)]
        np.copyto(copy, self.router.series.buffer.view())
        self._windows.append(copy)

    @property
    def staged(self) -> int:
        return len(self._windows)

    @property
    def full(self) -> bool:
        return len(self._windows) == self.capacity

    def push_plain(self, plain: PlainRows) -> np.ndarray | None:
        """Push a plain block (bulk.py) of at most `capacity` rows into the single series of a stream without
        keys and stage its due windows; return the block indices of the rows whose windows were staged. None
        when a time step in it is not plain (nothing was pushed: the caller reads it row by row)."""
        if self._states or self.rules.group_by is not None or self.staged:
            return None
        series = self.router.series
        buffer, window = series.buffer, self.spec.window
        kept = min(buffer.filled, window - 1)
        history = buffer.newest(kept).copy()
        if not series.admit_plain(plain.values, plain.seconds):
            return None
        self.router.flags = 0
        count = len(plain.values)
        filled = buffer.filled - count + np.arange(1, count + 1)  # each row's fill, as the row path counts it
        due = np.flatnonzero((filled >= window) & ((filled - window) % self.stride == 0))
        if len(due):  # views of the block's own rows: nothing else writes to them
            rows = np.concatenate((history, plain.values)) if kept else plain.values
            self._windows = [rows[end - window + 1 : end + 1] for end in (due + kept).tolist()]
        return due

    def use_companion(self, companion: Companion | None, batch: int) -> None:
        """Run staged windows `batch` at a time through `companion` (the file's batched twin) when two or more
        are staged: one call for many windows streams the weights from memory once, and pays onnxruntime's
        per-call cost once (about 2x the windows per second at 8 to 64 here). A stateful model carries one
        state from call to call, so it runs a window at a time."""
        if companion is None or batch < 2 or self._states:
            self._companion = None
            return
        self._companion, self._batch = companion, batch
        self._batched = np.zeros((batch, *self.spec.input_shape[1:]), dtype=self.spec.input_dtype)
        self._names = ([self.model.outputs[0].name], self.model.inputs[0].name)

    _companion: Companion | None = None
    observe: Any = None  # --metrics: takes each model call's seconds (metrics.timed); None, calls are not timed

    def run_staged(self, stop: Any = None) -> list[tuple[Any, ...] | PredictionError]:
        """Run the staged windows in order; each one's record values, or the PredictionError it raised. With
        `stop` (signals.StopSignals), a stop signal ends the run between two windows (two batches, when they
        run in batches): what was run is returned, the rest is dropped."""
        if self._companion is not None and len(self._windows) > 1:
            results = self._run_batches(stop)
        else:
            results = self._run_one_by_one(self._windows, stop)
        self._windows = []
        return results

    def _run_one_by_one(self, windows: list[np.ndarray], stop: Any) -> list[tuple[Any, ...] | PredictionError]:
        results: list[tuple[Any, ...] | PredictionError] = []
        run, binding, model_input = self.model.session.run_with_iobinding, self._binding, self.spec.model_input
        run = timed(run, self.observe)  # once a staged batch: itself without --metrics
        record_values, output, states = self.spec.record_values, self._output, self._states
        raw, target, copyto = self.spec.in_graph, self._input[0], np.copyto  # a file that scales in its graph
        for window in windows:
            if stop is not None and stop.received is not None:
                break
            if raw:  # model_input's own first case, without its call
                copyto(target, window)
            else:
                model_input(window, out=self._input, scratch=self._scratch)
            try:
                run(binding)
            except _RUN_ERRORS as exc:
                self._zero_states()  # a carried state after a failed call is not trustworthy
                first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
                results.append(PredictionError(f"the model failed on this window: {first[:300]}"))
                continue
            for state_in, state_out in states:
                np.copyto(state_in, state_out)
            results.append(record_values(output, window))
        return results

    def _run_batches(self, stop: Any) -> list[tuple[Any, ...] | PredictionError]:
        windows, batch, spec = self._windows, self._batch, self.spec
        run, (outputs, name) = self._companion.session.run, self._names  # type: ignore[union-attr]
        run = timed(run, self.observe)
        record_values, model_input = spec.record_values, spec.model_input
        results: list[tuple[Any, ...] | PredictionError] = []
        for start in range(0, len(windows), batch):
            if stop is not None and stop.received is not None:
                break
            chunk = windows[start : start + batch]
            inputs = self._batched[: len(chunk)]
            for i, window in enumerate(chunk):
                if spec.in_graph:
                    np.copyto(inputs[i], window)
                else:
                    model_input(window, out=inputs[i : i + 1], scratch=self._scratch)
            try:
                output = run(outputs, {name: inputs})[0]
            except _RUN_ERRORS:  # a window the model fails on: each alone, to say which
                results += self._run_one_by_one(chunk, stop)
                continue
            results += [record_values(output[i : i + 1], window) for i, window in enumerate(chunk)]
        return results

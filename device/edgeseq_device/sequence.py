"""A general sequence model's pre/post-processing (manifest kind "sequence"): the models users bring.

Input: the last T rows of the manifest's feature columns, in that order, optionally normalised per feature,
    input[t, f] = (x[t, f] - mean[f]) / std[f]
Output [1, K], read one of two ways:
- a classifier (`labels`, K of them): the record gives `label`, the label of the largest output, and
  `probability`, that output's value (a probability when the model ends in softmax); a binary classifier
  with one (sigmoid) output p has two labels: the second when p >= 0.5 with probability p, else the first
  with probability 1 - p;
- a regressor (`targets`, K names): the record gives `prediction` when K = 1, else one field per target.
A model over token ids (`vocabulary`, N: an Embedding reads its input) takes [1, T]: the last T values of its one
feature column, each an integer id 0 to N-1; the runner refuses any other value as a bad row (`integer_columns`).
A stateful model (`states`) carries its recurrent state from one call to the next through extra inputs and
outputs: it reads T new rows per call (T is often 1: one update per row), starts from zero, and starts from
zero again after every gap, as a window would.
This is the one definition: export checks parity on windows built by `model_inputs`, and the runner calls
`model_input` and `record_values`. edgeseq now exports the normalization as ONNX ops (`in_graph`): the file
takes the raw window, float64, and the runner only copies rows in.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from functools import cached_property
from typing import Any

import numpy as np

from edgeseq_device.errors import ManifestError
from edgeseq_device.forecast import MAX_WINDOW, SCALE_RANGE, raw_windows
from edgeseq_device.manifest import json_count, json_name, json_names, json_numbers
from edgeseq_device.messages import shown

KIND = "sequence"
MAX_VOCABULARY = 2**24  # ids go in as float32, exact up to here
RESERVED_FIELDS = ("row", "time")


def _states(stateful: Any) -> tuple[tuple[str, str], ...]:
    """The manifest's "stateful" block: absent, or {"states": [{"input": name, "output": name}, ...]}."""
    if stateful is None:
        return ()
    if not isinstance(stateful, Mapping) or not isinstance(stateful.get("states"), list) or not stateful["states"]:
        raise ValueError(f"stateful must be {{'states': [{{'input', 'output'}}, ...]}}, got {shown(repr(stateful))}")
    pairs = []
    for state in stateful["states"]:
        if not isinstance(state, Mapping):
            raise ValueError(f"each state must be {{'input', 'output'}}, got {shown(repr(state))}")
        pairs.append((json_name(state["input"], "state input"), json_name(state["output"], "state output")))
    return tuple(pairs)


@dataclass(frozen=True)
class SequenceSpec:
    """What a general sequence model reads and what its outputs mean. Stored in the manifest."""

    features: tuple[str, ...]
    window: int
    labels: tuple[str, ...] | None = None
    targets: tuple[str, ...] | None = None
    mean: tuple[float, ...] | None = None
    std: tuple[float, ...] | None = None
    time_column: str | None = None
    states: tuple[tuple[str, str], ...] = ()  # (input, output) names of each carried state
    binary: bool = False  # one sigmoid output, two labels
    in_graph: bool = False  # the ONNX file applies the normalization itself (raw float64 window in)
    vocabulary: int | None = None  # token ids: one column of integers 0 to vocabulary - 1, the input [1, T]

    def __post_init__(self) -> None:
        if not self.features or len(set(self.features)) != len(self.features):
            raise ValueError(f"features must be distinct column names, got {list(self.features)}")
        for name in (*self.features, *(self.labels or ()), *(self.targets or ())):
            json_name(name, "a name")  # every name is written out in records: it must be valid text
        if not 1 <= self.window <= MAX_WINDOW:
            raise ValueError(f"window must be 1 to {MAX_WINDOW:,}, got {self.window}")
        if (self.labels is None) == (self.targets is None):
            raise ValueError("give either labels (a classifier) or targets (a regressor)")
        names = self.labels if self.labels is not None else self.targets
        if not names or len(set(names)) != len(names):
            raise ValueError(f"labels and targets must be distinct names, got {list(names or ())}")
        if self.targets is not None and len(self.targets) > 1:
            clash = [name for name in self.targets if name in RESERVED_FIELDS]
            if clash:
                raise ValueError(f"target names {clash} clash with the record's own fields {list(RESERVED_FIELDS)}")
        if self.labels is not None and len(self.labels) < 2:
            raise ValueError(f"a classifier needs at least two labels, got {list(self.labels)}")
        if self.binary and (self.labels is None or len(self.labels) != 2):
            raise ValueError("a binary classifier (one output) has exactly two labels")
        if self.vocabulary is not None:
            if not 1 <= self.vocabulary <= MAX_VOCABULARY:
                raise ValueError(f"vocabulary must be 1 to {MAX_VOCABULARY:,} ids, got {self.vocabulary}")
            if len(self.features) != 1 or self.mean is not None:
                raise ValueError("a model over token ids reads one column of ids, not normalised")
        if (self.mean is None) != (self.std is None):
            raise ValueError("normalization needs both mean and std")
        if self.mean is not None and self.std is not None:
            if len(self.mean) != len(self.features) or len(self.std) != len(self.features):
                raise ValueError(f"mean and std need one value per feature ({len(self.features)})")
            if not all(np.isfinite(self.mean)):
                raise ValueError(f"mean must be finite, got {list(self.mean)}")
            low, high = SCALE_RANGE
            for name, value in zip(self.features, self.std, strict=True):
                if not low <= value <= high:  # also false for NaN
                    raise ValueError(f"std of {name} is {value!r}: it must be finite and {low:.3g} to {high:.3g}")

    @property
    def input_shape(self) -> tuple[int, ...]:
        if self.vocabulary is not None:
            return (1, self.window)
        return (1, self.window, len(self.features))

    @property
    def integer_columns(self) -> dict[int, int]:
        """Feature index -> N, for a column whose values must be integers 0 to N-1 (rows.RowParser.integers)."""
        return {} if self.vocabulary is None else {0: self.vocabulary}

    @property
    def outputs(self) -> int:
        if self.binary:
            return 1
        return len(self.labels if self.labels is not None else self.targets or ())

    @property
    def record_fields(self) -> tuple[str, ...]:
        if self.labels is not None:
            return ("label", "probability")
        return ("prediction",) if self.outputs == 1 else tuple(self.targets or ())

    @cached_property
    def _mean(self) -> np.ndarray:
        return np.asarray(self.mean if self.mean is not None else [0.0] * len(self.features), dtype=np.float64)

    @cached_property
    def _std(self) -> np.ndarray:
        return np.asarray(self.std if self.std is not None else [1.0] * len(self.features), dtype=np.float64)

    @property
    def input_dtype(self) -> type:
        return np.float64 if self.in_graph else np.float32

    def model_input(
        self, rows: np.ndarray, out: np.ndarray | None = None, scratch: np.ndarray | None = None
    ) -> np.ndarray:
        """One window of raw rows [T, F] (oldest first) -> the file's input [1, T, F], written into `out`: the
        rows themselves (float64) when the graph normalises them, else normalised here (float32)."""
        if out is None:
            out = np.empty(self.input_shape, dtype=self.input_dtype)
        if self.vocabulary is not None:  # [T, 1] ids -> [1, T]
            np.copyto(out[0], rows[:, 0])
            return out
        if self.in_graph:
            np.copyto(out[0], rows)
            return out
        centred = np.subtract(rows, self._mean, out=scratch)
        np.divide(centred, self._std, out=out[0], casting="same_kind")
        return out

    def model_inputs(self, values: np.ndarray, ends: np.ndarray) -> np.ndarray:
        """Windows of `values` [N, F] ending at rows `ends` -> the file's inputs [len(ends), T, F], as
        model_input."""
        return self.raw_windows(values, ends) if self.in_graph else self.network_inputs(values, ends)

    def raw_windows(self, values: np.ndarray, ends: np.ndarray) -> np.ndarray:
        return raw_windows(values, ends, self.window)

    def network_inputs(self, values: np.ndarray, ends: np.ndarray) -> np.ndarray:
        """What the network itself sees: normalised windows, float32."""
        return self.normalised(self.raw_windows(values, ends))

    def normalised(self, raw: np.ndarray) -> np.ndarray:
        """Raw windows [..., T, F] float64 -> normalised, float32, as the graph (or model_input) does; ids [..., T]."""
        if self.vocabulary is not None:
            return np.asarray(raw, dtype=np.float32)[..., 0]
        return ((np.asarray(raw, dtype=np.float64) - self._mean) / self._std).astype(np.float32)

    def record_values(self, output: np.ndarray, rows: np.ndarray | None = None) -> tuple[Any, ...]:
        """The model's output [1, K] -> the record's values, in the order of `record_fields`."""
        values = output.reshape(-1)
        if self.binary and self.labels is not None:
            p = float(values[0])
            return (self.labels[1], p) if p >= 0.5 else (self.labels[0], 1.0 - p)
        if self.labels is not None:
            best = int(values.argmax())
            return (self.labels[best], float(values[best]))
        return tuple(float(v) for v in values)

    def to_json(self) -> dict[str, Any]:
        task: dict[str, Any] = (
            {
                "type": "classifier",
                "labels": list(self.labels),
                "binary": self.binary,
                "record": f"label ({self.labels[1]} when the output >= 0.5, else {self.labels[0]}), probability"
                if self.binary
                else "label (largest output), probability",
            }
            if self.labels is not None
            else {"type": "regressor", "targets": list(self.targets or ()), "record": ", ".join(self.record_fields)}
        )
        return {
            "features": list(self.features),
            "window": self.window,
            "time_column": self.time_column,
            "normalization": None
            if self.mean is None
            else {
                "formula": "input = (x - mean) / std",
                "mean": list(self.mean),
                "std": list(self.std or ()),
                "in_graph": self.in_graph,
                "applied_by": "the ONNX graph: its input is the raw window, float64"
                if self.in_graph
                else "the caller: the ONNX file takes normalised windows, float32",
            },
            "task": task,
            **(
                {
                    "tokens": {
                        "vocabulary": self.vocabulary,
                        "ids": f"integers 0 to {self.vocabulary - 1}, else a bad row",
                    }
                }
                if self.vocabulary is not None
                else {}
            ),
            **(
                {
                    "stateful": {
                        "states": [{"input": i, "output": o} for i, o in self.states],
                        "rows_per_call": self.window,
                        "reset": "to zero at the start and after every gap",
                    }
                }
                if self.states
                else {}
            ),
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any], where: str = "manifest") -> SequenceSpec:
        try:
            task = data["task"]
            normalization = data.get("normalization")
            if task["type"] not in ("classifier", "regressor"):
                raise ValueError(f"task type {shown(repr(task['type']))} is not classifier or regressor")
            return cls(
                features=json_names(data["features"], "features"),
                window=json_count(data["window"], "window"),
                labels=json_names(task["labels"], "labels") if task["type"] == "classifier" else None,
                targets=json_names(task["targets"], "targets") if task["type"] == "regressor" else None,
                mean=None if normalization is None else json_numbers(normalization["mean"], "normalization mean"),
                std=None if normalization is None else json_numbers(normalization["std"], "normalization std"),
                time_column=None if data.get("time_column") is None else json_name(data["time_column"], "time_column"),
                binary=task.get("binary") is True,
                states=_states(data.get("stateful")),
                in_graph=normalization is not None and normalization.get("in_graph") is True,
                vocabulary=None
                if data.get("tokens") is None
                else json_count(data["tokens"]["vocabulary"], "vocabulary"),
            )
        except (KeyError, TypeError, ValueError, OverflowError) as exc:
            raise ManifestError(f"{where}: not a usable sequence-model description ({exc})") from None

"""The forecaster's pre/post-processing, the one copy that training, evaluation and the runner all call.

Formulation ("window-relative delta"): the model sees each window relative to its own last row,
    input[t, f] = (x[t, f] - x[T-1, f]) / input_scale[f]
and predicts the target's change over the horizon, in units of target_scale:
    forecast = y_last + target_scale * output,   y_last = the target's value in the window's last row.
Level-free inputs and a delta output are what let a model fitted on winter months generalise to spring.

edgeseq now exports both transforms as ONNX ops (manifest `scaling.in_graph`): the file takes the raw
window [1, T, F] float64 and returns the forecast [1, 1] float64 in the target's units, and the runner only
copies rows in. The numpy methods here stay the definition: export checks the graph against them on every test
window. Older files (scaled float32 in, scaled change out) are scaled here, as before.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import cached_property
from typing import Any, ClassVar

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from edgeseq_device.errors import ManifestError
from edgeseq_device.manifest import json_count, json_names

FORMULATION = "window-relative-delta"
# Scales are divisors and multipliers of float32 model values: outside float32's normal range a forecast
# becomes inf or 0 (a manifest's target_scale of 1e308 made the runner write "prediction": inf).
SCALE_RANGE = (float(np.finfo(np.float32).tiny), float(np.finfo(np.float32).max))
MAX_WINDOW = 100_000


def raw_windows(values: np.ndarray, ends: np.ndarray, window: int) -> np.ndarray:
    """Windows of `values` [N, F] of `window` rows ending at rows `ends`, as read: [len(ends), T, F] float64."""
    windows = sliding_window_view(values, window, axis=0)[np.asarray(ends) - window + 1]
    return np.ascontiguousarray(windows.transpose(0, 2, 1), dtype=np.float64)  # the window axis was last


@dataclass(frozen=True)
class ForecastSpec:
    """What a forecaster reads and how its inputs and output are scaled. Stored in the manifest."""

    features: tuple[str, ...]
    target: str
    window: int
    horizon: int
    input_scale: tuple[float, ...]
    target_scale: float
    time_column: str | None = None
    in_graph: bool = False  # the ONNX file applies the scaling and the output transform itself

    def __post_init__(self) -> None:
        if self.target not in self.features:
            raise ValueError(f"target {self.target!r} must be one of the features {list(self.features)}")
        if len(self.input_scale) != len(self.features):
            raise ValueError("input_scale needs one value per feature")
        if not self.features or len(set(self.features)) != len(self.features):
            raise ValueError(f"features must be distinct column names, got {list(self.features)}")
        if not 2 <= self.window <= MAX_WINDOW or not 1 <= self.horizon <= MAX_WINDOW:
            raise ValueError(
                f"window must be 2 to {MAX_WINDOW:,} and horizon 1 to {MAX_WINDOW:,}, "
                f"got {self.window} and {self.horizon}"
            )
        low, high = SCALE_RANGE
        for name, value in (*zip(self.features, self.input_scale, strict=True), ("target_scale", self.target_scale)):
            if not low <= value <= high:  # also false for NaN
                raise ValueError(f"scale of {name} is {value!r}: scales must be finite and {low:.3g} to {high:.3g}")

    @cached_property
    def target_index(self) -> int:
        return self.features.index(self.target)

    @property
    def input_shape(self) -> tuple[int, int, int]:
        return (1, self.window, len(self.features))

    record_fields = ("prediction",)
    states: ClassVar[tuple[tuple[str, str], ...]] = ()  # a forecaster carries no state between windows

    @property
    def input_dtype(self) -> type:
        return np.float64 if self.in_graph else np.float32

    def record_values(self, output: np.ndarray, rows: np.ndarray) -> tuple[float]:
        """The model's output [1, 1] and the window's raw rows -> (forecast in the target's units,)."""
        if self.in_graph:
            return (output.item(),)  # a Python float, as float(output[0, 0]) gives
        # to_target_units in Python floats: the same double arithmetic, without numpy's per-scalar cost
        return (float(rows[-1, self.target_index]) + self.target_scale * float(output[0, 0]),)

    def model_input(
        self, rows: np.ndarray, out: np.ndarray | None = None, scratch: np.ndarray | None = None
    ) -> np.ndarray:
        """One window of raw rows [T, F] (oldest first) -> the file's input [1, T, F], written into `out`: the
        rows themselves (float64) when the graph scales them, else scaled here (float32).

        With `out` and a float64 `scratch` of shape [T, F], nothing is allocated: the runner's per-row path.
        """
        if out is None:
            out = np.empty(self.input_shape, dtype=self.input_dtype)
        if self.in_graph:
            np.copyto(out[0], rows)
            return out
        relative = np.subtract(rows, rows[-1], out=scratch)
        np.divide(relative, self._scale, out=out[0], casting="same_kind")
        return out

    def model_inputs(self, values: np.ndarray, ends: np.ndarray) -> np.ndarray:
        """Windows of `values` [N, F] ending at rows `ends` -> the file's inputs [len(ends), T, F], as
        model_input."""
        return self.raw_windows(values, ends) if self.in_graph else self.network_inputs(values, ends)

    def network_inputs(self, values: np.ndarray, ends: np.ndarray) -> np.ndarray:
        """What the network itself sees (in training, and inside the graph): scaled windows, float32."""
        return (self._relative(values, ends) / self._scale).astype(np.float32)

    def raw_windows(self, values: np.ndarray, ends: np.ndarray) -> np.ndarray:
        return raw_windows(values, ends, self.window)

    def _relative(self, values: np.ndarray, ends: np.ndarray) -> np.ndarray:
        windows = self.raw_windows(values, ends)
        return windows - windows[:, -1:, :]

    def forecasts(self, outputs: np.ndarray, last_target: np.ndarray) -> np.ndarray:
        """The file's outputs [N, 1] -> forecasts in the target's units [N] float64."""
        if self.in_graph:
            return np.asarray(outputs, dtype=np.float64).reshape(-1)
        return self.to_target_units(np.asarray(outputs).reshape(-1), last_target)

    def to_target_units(self, output: np.ndarray | float, last_target: np.ndarray | float) -> np.ndarray:
        """Model output (scaled change over the horizon) -> forecast in the target's units."""
        return np.asarray(last_target, dtype=np.float64) + self.target_scale * np.asarray(output, dtype=np.float64)

    def training_target(self, values: np.ndarray, ends: np.ndarray) -> np.ndarray:
        """What the model learns for windows ending at `ends`: the scaled change H rows later, float32."""
        y = values[:, self.target_index]
        return ((y[ends + self.horizon] - y[ends]) / self.target_scale).astype(np.float32)

    @cached_property
    def _scale(self) -> np.ndarray:
        return np.asarray(self.input_scale, dtype=np.float64)

    def to_json(self) -> dict[str, Any]:
        return {
            "features": list(self.features),
            "target": self.target,
            "window": self.window,
            "horizon": self.horizon,
            "time_column": self.time_column,
            "scaling": {
                "formulation": FORMULATION,
                "input_scale": list(self.input_scale),
                "target_scale": self.target_scale,
                "in_graph": self.in_graph,
                "applied_by": "the ONNX graph: its input is the raw window, float64"
                if self.in_graph
                else "the caller: the ONNX file takes scaled windows, float32",
            },
            "output_transform": {
                "formula": "forecast = last_target + target_scale * output",
                "last_target": f"{self.target} in the window's last row",
                "units": f"{self.target}, {self.horizon} rows after the window's last row",
                "applied_by": "the ONNX graph: its output is the forecast, float64"
                if self.in_graph
                else "the caller: the ONNX file returns the scaled change",
            },
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any], where: str = "manifest") -> ForecastSpec:
        try:
            scaling = data["scaling"]
            if scaling["formulation"] != FORMULATION:
                raise ManifestError(
                    f"{where}: formulation {scaling['formulation']!r} is not one this runtime knows ({FORMULATION})"
                )
            return cls(
                features=json_names(data["features"], "features"),
                target=str(data["target"]),
                window=json_count(data["window"], "window"),
                horizon=json_count(data["horizon"], "horizon"),
                input_scale=tuple(float(s) for s in scaling["input_scale"]),
                target_scale=float(scaling["target_scale"]),
                time_column=None if data.get("time_column") is None else str(data["time_column"]),
                in_graph=scaling.get("in_graph") is True,
            )
        except (KeyError, TypeError, ValueError, OverflowError) as exc:
            raise ManifestError(f"{where}: not a usable forecaster description ({exc})") from None


def fit_scaling(
    values: np.ndarray,
    ends: np.ndarray,
    features: Sequence[str],
    target: str,
    window: int,
    horizon: int,
    time_column: str | None = None,
) -> ForecastSpec:
    """Fit the scales on the windows ending at `ends` (the training split only) and return the spec, for a
    file that applies them in its graph."""
    unit = ForecastSpec(tuple(features), target, window, horizon, (1.0,) * len(features), 1.0, time_column)
    input_scale = unit._relative(values, ends).reshape(-1, len(features)).std(axis=0)
    y = values[:, unit.target_index]
    deltas = y[ends + horizon] - y[ends]
    scales = {**dict(zip(features, input_scale.tolist(), strict=True)), f"{target}'s change": float(deltas.std())}
    # A constant channel has no scale: a floor such as 1e-6 would turn any move at run time into a huge input.
    flat = [name for name, scale in scales.items() if not scale > 0]
    if flat:
        raise ValueError(f"{', '.join(flat)} never changes in the training windows: nothing to scale by")
    return ForecastSpec(
        tuple(features), target, window, horizon, tuple(input_scale.tolist()), float(deltas.std()), time_column, True
    )

"""Which task a model runs, checked against the model before any row is read: the manifest's kind (a
forecaster, or a general sequence model with its carried states), or a forecaster described by options."""

from __future__ import annotations

from typing import Any

import numpy as np

from edgeseq_device.errors import ManifestError, SignatureError
from edgeseq_device.forecast import FORMULATION, ForecastSpec
from edgeseq_device.messages import shown
from edgeseq_device.model import Model
from edgeseq_device.sequence import KIND as SEQUENCE_KIND
from edgeseq_device.sequence import SequenceSpec
from edgeseq_device.series import SeriesRules
from edgeseq_device.window import Task

_OPTION = {
    "features": "--features",
    "target": "--target",
    "window": "--window",
    "horizon": "--horizon",
    "input_scale": "--input-scale",
    "target_scale": "--target-scale",
}


def _sequence_spec(model: Model, data: dict[str, Any], overrides: dict[str, Any]) -> SequenceSpec:
    where = str(model.manifest.path) if model.manifest is not None else str(model.path)
    if overrides:
        given = ", ".join(_OPTION.get(key, "--" + key) for key in overrides)
        raise ManifestError(f"{given}: these options describe a forecaster without a manifest; {where} has its own")
    spec = SequenceSpec.from_json(data, where)
    if model.outputs[0].window_shape != (1, spec.outputs):
        raise SignatureError(f"{model.path} returns {model.outputs[0]}, but {where} describes {spec.outputs} outputs")
    return spec


def _check_states(model: Model, spec: Task, where: str) -> None:
    """Every input and output beyond the first must be a carried state, paired by the manifest with the
    same shape, each named once: a state fed from the wrong output runs, and gives wrong predictions."""
    inputs = {tensor.name: tensor for tensor in model.inputs[1:]}
    outputs = {tensor.name: tensor for tensor in model.outputs[1:]}
    names_in = [name_in for name_in, _ in spec.states]
    names_out = [name_out for _, name_out in spec.states]
    if sorted(names_in) != sorted(inputs) or sorted(names_out) != sorted(outputs):
        raise SignatureError(
            f"{model.path} has extra inputs {sorted(inputs) or 'none'} and outputs {sorted(outputs) or 'none'}, "
            f"but {where} carries states from {names_out or 'none'} to {names_in or 'none'}"
            + ("" if spec.states or not inputs else ": a stateful model runs with its manifest only")
        )
    for name_in, name_out in spec.states:
        # edgeseq names a state's pair state_in.<layer>.<h|c> and state_out.<layer>.<h|c>: an h fed from a c
        # has the same shape and would still run
        paired = name_in.startswith("state_in.") and name_out == "state_out." + name_in.removeprefix("state_in.")
        if not paired or inputs[name_in].shape != outputs[name_out].shape or inputs[name_in].dtype != "float32":
            raise SignatureError(
                f"{where}: state {name_out} -> {name_in} joins {outputs[name_out]} to {inputs[name_in]}"
            )


def resolve_spec(model: Model, overrides: dict[str, Any]) -> Task:
    """The task: from the manifest when there is one, else a forecaster from the options given.

    With a manifest, an option that contradicts it is refused. Without one, every task field must be given;
    the message lists what is missing.
    """
    if model.manifest is not None:
        data = dict(model.manifest.data)
        if data.get("kind") == "letters":
            raise ManifestError(
                f"{model.path} is the letter model: `run` streams sensor rows into a forecaster; "
                "for letters use `edgeseq letters` (one sequence per argument or stdin line)"
            )
        if data.get("kind") == SEQUENCE_KIND:
            spec: Task = _sequence_spec(model, data, overrides)
            _check_input(model, spec)
            return spec
        if data.get("kind") != "forecaster":
            raise ManifestError(
                f"{model.path} is neither a forecaster nor a sequence model (kind {shown(str(data.get('kind')))})"
            )
        spec = ForecastSpec.from_json(data, str(model.manifest.path))
        for key, value in overrides.items():
            recorded = getattr(spec, key)
            if (tuple(value) if isinstance(value, (list, tuple)) else value) != recorded:
                raise ManifestError(
                    f"{_OPTION.get(key, '--' + key)} {shown(str(value))} contradicts {model.manifest.path}, "
                    f"which says {shown(str(recorded))}"
                )
    else:
        missing = [option for key, option in _OPTION.items() if key not in overrides]
        if missing:
            raise ManifestError(
                f"{model.path} has no manifest beside it; to run it anyway give {', '.join(missing)} "
                "(and --time-column if the stream has one)"
            )
        try:
            spec = ForecastSpec(
                features=tuple(overrides["features"]),
                target=overrides["target"],
                window=int(overrides["window"]),
                horizon=int(overrides["horizon"]),
                input_scale=tuple(float(s) for s in overrides["input_scale"]),
                target_scale=float(overrides["target_scale"]),
                time_column=overrides.get("time_column"),
            )
        except ValueError as exc:
            raise ManifestError(f"the options do not describe a forecaster ({FORMULATION}): {exc}") from None
    _check_input(model, spec)
    return spec


def _check_input(model: Model, spec: Task) -> None:
    _check_states(model, spec, str(model.manifest.path) if model.manifest is not None else "the options")
    expected = np.dtype(spec.input_dtype).name
    if model.inputs[0].dtype != expected:
        if model.manifest is None and model.inputs[0].dtype == "float64":
            raise SignatureError(
                f"{model.path} takes {model.inputs[0]}: raw windows, scaled inside its graph by what its manifest "
                "says; run it with its manifest beside it (the options describe a file that takes scaled float32)"
            )
        how = "raw rows (its graph scales them)" if spec.in_graph else "scaled rows"
        raise SignatureError(f"{model.path} takes {model.inputs[0]}; its task feeds {how} as {expected}")
    if model.outputs[0].dtype not in ("float32", "float64"):
        raise SignatureError(f"{model.path} returns {model.outputs[0]}; the runner reads float32 or float64 only")
    if model.inputs[0].window_shape != spec.input_shape:
        raise SignatureError(
            f"{model.path} takes {model.inputs[0]}, but the task needs shape {list(spec.input_shape)} "
            f"({spec.window} rows of {len(spec.features)} features)"
        )


def resolve_rules(model: Model, spec: Task) -> SeriesRules:
    """The manifest's series rules (missing values, time checks, keys); a file exported before them, or a model
    without a manifest, gets the defaults: no time checks, no filling, one series."""
    if model.manifest is None:
        return SeriesRules()
    where = str(model.manifest.path)
    rules = SeriesRules.from_json(model.manifest.data.get("series"), where)
    if rules.time_format is not None and spec.time_column is None:
        raise ManifestError(f"{where}: the series rules parse times, but no time column is named")
    return rules

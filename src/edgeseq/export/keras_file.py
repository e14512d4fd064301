"""A user's own Keras file to a verified ONNX file the runner streams (`edgeseq export --keras`).

The file is loaded with the Keras that wrote it (edgeseq.convert.loading), converted by the same converter as
the built-in models, and checked against that Keras on real windows from --sample or on random ones, before
anything is written. The manifest's kind is "sequence" (edgeseq_device.sequence): the columns, the window,
an optional normalisation, and what the outputs are (labels of a classifier or targets of a regressor).
"""

from __future__ import annotations

import re
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from edgeseq import frameworks
from edgeseq.convert import DEFAULT_OPSET, PARITY_ATOL, keras_unchanged, parity_figures, pre_post
from edgeseq.convert.loading import LoadedModel, ModelFileError, load
from edgeseq.errors import BadInputError, ConversionError, DataError
from edgeseq.export.artifacts import (
    ExportResult,
    Staging,
    convert_and_stage,
    file_entry,
    remove_stale_variants,
    run_onnx,
    write_json,
)
from edgeseq.export.companions import TaskWindows, make_companion, record
from edgeseq.progress import Progress, Silent
from edgeseq.quantize import FP16_TOKENS
from edgeseq_device.forecast import MAX_WINDOW
from edgeseq_device.manifest import TensorSpec
from edgeseq_device.sequence import KIND, MAX_VOCABULARY, SequenceSpec

RANDOM_WINDOWS = 500
MAX_SAMPLE_WINDOWS = 2000
RANDOM_DISTRIBUTION = "standard normal N(0, 1) in the model's input space (after normalization), seed 0"
PARITY_BAR = "max abs diff <= 1e-5 x max(1, max |Keras output|)"


def _model_name(path: Path) -> str:
    stem = path.name[: -len(path.suffix)] if path.suffix and not path.is_dir() else path.name
    # the manifest is found as <name before the first dot>.json, so the name has no dot
    return re.sub(r"[^A-Za-z0-9_-]+", "_", stem).strip("_")[:100] or "model"


def token_vocabulary(model: Any) -> int | None:
    """N, when the model's input is token ids an Embedding reads (ids 0 to N-1; the smallest table when there are
    several); None for a model without an Embedding."""
    layers, sizes = list(model.layers), []
    while layers:
        layer = layers.pop()
        if type(layer).__name__ == "Embedding":
            sizes.append(int(layer.input_dim))
        layers += [inner for inner in getattr(layer, "layers", []) if inner is not layer]
    return min(sizes) if sizes else None


def signature(
    loaded: LoadedModel, features: tuple[str, ...], window: int | None, label: str
) -> tuple[int, tuple[int, ...], int | None]:
    """(T, (K, ...), N): the fixed window, the width of each output, and for a model over token ids ([batch, T]
    into an Embedding) the number of ids (else None); BadInputError when the model cannot be fed [1, T, F] windows
    (or [1, T] ids) or does not return [1, K] outputs. `label` names the model in messages."""
    model = loaded.model
    if len(model.inputs) != 1:
        raise BadInputError(
            f"{label} has {len(model.inputs)} inputs; edgeseq exports models with one input [batch, T, F]"
        )
    shape = tuple(model.inputs[0].shape)
    vocabulary = token_vocabulary(model) if len(shape) == 2 else None
    if vocabulary is not None:
        if vocabulary > MAX_VOCABULARY:
            raise BadInputError(f"{label} reads ids of {vocabulary:,}; edgeseq takes up to {MAX_VOCABULARY:,}")
        shape = (*shape, 1)  # one column of ids
    if len(shape) != 3:
        raise BadInputError(
            f"{label} takes input of shape {list(shape)}; expected [batch, T, F] (3 axes), or [batch, T] token ids "
            "that an Embedding reads"
        )
    _, steps, width = shape
    if width is None:
        raise BadInputError(f"{label} has no fixed feature axis (input {list(shape)})")
    if int(width) != len(features):
        raise BadInputError(
            f"{label} takes {width} features per row, but --features names {len(features)}: {', '.join(features)}"
        )
    if steps is None and window is None:
        raise BadInputError(f"{label} takes windows of any length (input {list(shape)}): give --window T")
    if steps is not None and window is not None and int(steps) != window:
        raise BadInputError(f"{label} takes windows of {steps} rows; --window {window} contradicts it")
    steps = int(steps if steps is not None else window)
    if not 1 <= steps <= MAX_WINDOW:  # before Keras runs a window of that length
        raise BadInputError(f"a window of {steps:,} rows: the window must be 1 to {MAX_WINDOW:,} rows")
    zeros = np.zeros((1, steps) if vocabulary is not None else (1, steps, int(width)), np.float32)
    result = model(zeros, training=False)
    reset_states(model)  # that call moved a stateful layer's state
    if isinstance(result, dict):
        raise BadInputError(f"{label} returns its outputs as a dict; edgeseq exports one output or a list of them")
    widths = []
    for out in map(np.asarray, result if isinstance(result, (list, tuple)) else [result]):
        if out.ndim != 2:
            raise BadInputError(
                f"{label} returns shape {list(out.shape)} for one window; edgeseq streams one record per window and "
                "needs outputs [batch, K] (a model returning a sequence needs return_sequences=False at the end)"
            )
        widths.append(int(out.shape[1]))
    return steps, tuple(widths), vocabulary


def output_targets(model: Any, widths: tuple[int, ...]) -> tuple[str, ...]:
    """A model with several outputs: a record field per output value, named after its output (`name`, or
    `name_0`, `name_1`, ... for an output of several values)."""
    names = [re.sub(r"[^A-Za-z0-9_-]+", "_", str(name)) for name in model.output_names]
    return tuple(
        name if width == 1 else f"{name}_{i}" for name, width in zip(names, widths, strict=True) for i in range(width)
    )


def _spec(
    features: tuple[str, ...],
    window: int,
    outputs: int,
    labels: tuple[str, ...] | None,
    targets: tuple[str, ...] | None,
    mean: tuple[float, ...] | None,
    std: tuple[float, ...] | None,
    time_column: str | None,
    states: tuple[tuple[str, str], ...],
    vocabulary: int | None = None,
) -> SequenceSpec:
    if labels is not None and targets is not None:
        raise BadInputError("give --labels (a classifier) or --target (a regressor), not both")
    if labels is None and targets is None:
        targets = ("output",) if outputs == 1 else tuple(f"output_{i}" for i in range(outputs))
    names, option = (labels, "--labels") if labels is not None else (targets, "--target")
    binary = labels is not None and outputs == 1
    if binary and len(labels or ()) != 2:
        raise BadInputError(
            f"the model has one output, a binary classifier's probability: --labels needs two names, the first for "
            f"outputs below 0.5 (got {len(labels or ())})"
        )
    if not binary and len(names or ()) != outputs:
        raise BadInputError(f"the model has {outputs} outputs, but {option} names {len(names or ())}")
    try:
        return SequenceSpec(
            features, window, labels, targets, mean, std, time_column, states, binary, mean is not None, vocabulary
        )
    except ValueError as exc:
        raise BadInputError(str(exc)) from None


@dataclass(frozen=True)
class ParityWindows:
    """The windows parity is checked on: as the network sees them (normalised, float32), as the file takes
    them (raw float64 when the graph normalises, else the same), and what they are."""

    network: np.ndarray
    file: np.ndarray
    what: str


def mask_value(model: Any) -> float | None:
    """The mask_value of a Masking layer that reads the model's input itself, else None."""
    first = next((layer for layer in model.layers if type(layer).__name__ != "InputLayer"), None)
    return float(first.mask_value) if type(first).__name__ == "Masking" else None


def _masked(x: np.ndarray, value: float) -> tuple[np.ndarray, str]:
    """Half of the random windows with steps set to the Masking layer's `value`: the first third, the last third,
    the middle third, every other step, or all of them (100, 100, 50, 50 and 50 of 500 windows)."""
    steps = x.shape[1]
    third = max(1, steps // 3)
    kinds = [
        (0, 100, slice(0, third)),
        (100, 200, slice(steps - third, steps)),
        (200, 250, slice(third, max(third + 1, steps - third))),
        (250, 300, slice(0, steps, 2)),
        (300, 350, slice(0, steps)),
    ]
    for start, end, where in kinds:
        x[start:end, where] = value
    return (
        x,
        f"; 350 of them masked (every feature {value:g}) in the first, last or middle third, every other step, or all",
    )


def parity_windows(spec: SequenceSpec, sample: Path | None, mask: float | None = None) -> ParityWindows:
    """Windows to check on: every window of --sample (evenly spaced, at most 2,000), normalised by the
    runtime's own SequenceSpec, or 500 random windows (of ids across the whole vocabulary for a model over token
    ids; with masked steps for a model whose input goes into Masking(`mask`) first, unless the graph normalises).
    For a stateful model, consecutive chunks of T rows from the start, in order, as the runner feeds them: the
    state runs through all."""
    if sample is None and spec.vocabulary is not None:  # ids across the whole table, its first and last among them
        ids = np.random.default_rng(0).integers(0, spec.vocabulary, (RANDOM_WINDOWS, spec.window))
        ids[0, 0], ids[0, -1] = 0, spec.vocabulary - 1
        what = f"{RANDOM_WINDOWS} random windows of token ids, uniform over 0 to {spec.vocabulary - 1}, seed 0"
        return ParityWindows(ids.astype(np.float32), ids.astype(np.float32), what)
    if sample is None:
        rng = np.random.default_rng(0)
        x = rng.standard_normal((RANDOM_WINDOWS, spec.window, len(spec.features))).astype(np.float32)
        what = (
            f"{RANDOM_WINDOWS} consecutive random chunks of {spec.window} rows"
            if spec.states
            else f"{RANDOM_WINDOWS} random windows"
        )
        if spec.in_graph:  # the same windows in raw units, and what the graph makes of them
            raw = x.astype(np.float64) * np.asarray(spec.std) + np.asarray(spec.mean)
            return ParityWindows(spec.normalised(raw), raw, f"{what}, {RANDOM_DISTRIBUTION}")
        masked = ""
        if mask is not None:
            x, masked = _masked(x, mask)
        return ParityWindows(x, x, f"{what}, {RANDOM_DISTRIBUTION}{masked}")
    from edgeseq.data import load_sensor_csv

    table = load_sensor_csv(sample, spec.features, spec.time_column)
    rows = len(table.values)
    if spec.vocabulary is not None:
        ids = table.values[:, 0]
        bad = np.flatnonzero(~((ids >= 0) & (ids < spec.vocabulary) & (ids == np.floor(ids))))
        if len(bad):
            raise DataError(
                f"{sample} has {ids[bad[0]]!r} in {spec.features[0]} (data row {bad[0] + 1}): token ids are integers "
                f"0 to {spec.vocabulary - 1}"
            )
    if rows < spec.window:
        raise DataError(f"{sample} has {rows} data rows, fewer than one window of {spec.window}")
    if spec.states:
        ends = np.arange(spec.window - 1, rows, spec.window)[:MAX_SAMPLE_WINDOWS]
        what = f"{len(ends)} consecutive chunks of {sample.name}"
    else:
        count = rows - spec.window + 1
        ends = np.unique(np.linspace(spec.window - 1, rows - 1, min(count, MAX_SAMPLE_WINDOWS)).astype(int))
        what = f"{len(ends)} windows of {sample.name}"
    return ParityWindows(spec.network_inputs(table.values, ends), spec.model_inputs(table.values, ends), what)


def reset_states(model: Any) -> None:
    """Zero every stateful layer's state (Keras 3 has no Model.reset_states; its RNN layers do)."""
    for layer in model.layers:
        if getattr(layer, "stateful", False) and hasattr(layer, "reset_states"):
            layer.reset_states()


def _joined(result: Any) -> np.ndarray:
    """A model's outputs for some windows as one array [windows, sum K], in order, as the converter joins them."""
    parts = result if isinstance(result, (list, tuple)) else [result]
    return np.concatenate([np.asarray(part) for part in parts], axis=1)


def _keras_outputs(model: Any, x: np.ndarray, stateful: bool = False) -> np.ndarray:
    if not stateful:
        return np.concatenate([_joined(model(x[i : i + 256], training=False)) for i in range(0, len(x), 256)])
    reset_states(model)  # from zero, as the ONNX file starts; then chunk after chunk, the state running on
    try:
        return np.concatenate([_joined(model(x[i : i + 1], training=False)) for i in range(len(x))])
    finally:
        reset_states(model)


def _onnx_stateful(model: Any, x: np.ndarray, states: tuple[tuple[str, str], ...]) -> np.ndarray:
    """Run the exported file chunk after chunk, each state output fed back as the next call's input."""
    shapes = {spec.name: spec.shape for spec in model.inputs}
    carried = {name_in: np.zeros(shapes[name_in], np.float32) for name_in, _ in states}
    names = [model.outputs[0].name, *(name_out for _, name_out in states)]
    out = []
    for i in range(len(x)):
        first, *new_states = model.session.run(names, {model.inputs[0].name: x[i : i + 1], **carried})
        out.append(first)
        carried = {name_in: value for (name_in, _), value in zip(states, new_states, strict=True)}
    return np.concatenate(out)


def _state_names(model: Any) -> tuple[tuple[str, str], ...]:
    """The carried states of a stateful model; ConversionError at once for what no option lets through
    (before Keras runs the parity windows, which a stateful layer would take one at a time)."""
    from edgeseq.convert.converter import state_specs
    from edgeseq.convert.plan import make_plan

    plan = make_plan(model)
    if plan.refused:
        raise ConversionError("; ".join(plan.refused))
    return tuple((state_in.name, state_out.name) for state_in, state_out in state_specs(plan))


def export_keras(
    keras_file: Path,
    *,
    features: tuple[str, ...],
    window: int | None = None,
    name: str | None = None,
    out_dir: Path = Path("exported"),
    sample: Path | None = None,
    mean: tuple[float, ...] | None = None,
    std: tuple[float, ...] | None = None,
    labels: tuple[str, ...] | None = None,
    targets: tuple[str, ...] | None = None,
    time_column: str | None = None,
    opset: int = DEFAULT_OPSET,
    allow_unfused: bool = False,
    progress: Progress = Silent(),
    quantize: tuple[str, ...] = (),
) -> ExportResult:
    """Load `keras_file` with the Keras that wrote it, convert, verify and write <name>.onnx and <name>.json.

    Raises ModelFileError (a file edgeseq cannot load), BadInputError (options that do not fit the model),
    ConversionError (a layer that cannot be fused, unless `allow_unfused`; a stateful layer that cannot be) and
    ParityError (onnxruntime differs from Keras beyond the bar on the parity windows). Nothing is written unless
    all pass. `quantize` names the variants the caller will make next: a stateful model refuses them at once.
    """
    frameworks.require_training()
    started = time.perf_counter()
    keras_file, out_dir = Path(keras_file), Path(out_dir)
    progress.step(f"loading {keras_file}")
    loaded = load(keras_file)
    name = name or _model_name(keras_file)
    if not re.fullmatch(r"[A-Za-z0-9_-]{1,100}", name):
        raise BadInputError(f"--name {name[:120]!r}: use 1 to 100 letters, digits, '_' and '-'")
    steps, widths, vocabulary = signature(loaded, features, window, keras_file.name)
    model, outputs = loaded.model, sum(widths)
    if len(widths) > 1:  # one record field per output value
        if labels is not None:
            raise BadInputError(
                f"{keras_file.name} has {len(widths)} outputs: edgeseq writes a field per output value (a regressor's "
                "record); name them with --target, not --labels"
            )
        targets = targets or output_targets(model, widths)
    states = _state_names(model)
    if states and quantize:  # refused before anything is written, not after
        raise BadInputError(f"{keras_file.name} is a stateful model: --quantize does not carry state between calls yet")
    if vocabulary is not None and "fp16" in quantize:  # refused before anything is written, not after
        raise BadInputError(f"{keras_file.name} reads token ids: {FP16_TOKENS}")
    spec = _spec(features, steps, outputs, labels, targets, mean, std, time_column, states, vocabulary)
    windows = parity_windows(spec, sample, mask_value(model))
    what = windows.what
    keras_out = _keras_outputs(model, windows.network, stateful=bool(states))
    if not np.all(np.isfinite(keras_out)):
        raise BadInputError(f"{keras_file.name} gives outputs that are not finite on {what}")
    output = TensorSpec("output", (1, outputs), "float32")
    transform = pre_post.normalization_transform(spec, output) if spec.in_graph else None
    specs = (transform.window, output) if transform else (TensorSpec("window", spec.input_shape, "float32"), output)
    source = {
        "file": keras_file.name,
        "path": str(keras_file.resolve()),
        "format": loaded.file_format,
        "keras": loaded.flavour,
        "keras_version": loaded.keras_version,
        **({} if keras_file.is_dir() else asdict(file_entry(keras_file))),
    }
    facts = {**spec.to_json(), "source": source}
    onnx_path, manifest_path = out_dir / f"{name}.onnx", out_dir / f"{name}.json"
    with Staging(out_dir) as staging:
        progress.step(f"converting {model.name} ({loaded.flavour}) to ONNX")
        training = {"note": f"trained outside edgeseq; loaded from {keras_file.name} with {loaded.flavour}"}
        manifest, device_model = convert_and_stage(
            model, specs, name, KIND, facts, training, [], staging, opset, allow_unfused, progress, transform
        )
        progress.step(f"checking parity on {what}")
        x = windows.file
        onnx_out = _onnx_stateful(device_model, x, states) if states else run_onnx(device_model, x)
        atol = PARITY_ATOL * max(1.0, float(np.abs(keras_out).max()))
        figures = parity_figures(keras_out, onnx_out, atol=atol, output="output", what=what, argmax=labels is not None)
        manifest["parity"] = {
            "windows": {
                **figures,
                "bar": PARITY_BAR,
                "keras": loaded.flavour,
                **({"space": "raw window in (the graph normalises), output out"} if transform else {}),
                **({"mask_value": mask_value(model)} if "masked" in what else {}),
            },
            "keras_unchanged_after_conversion": False,
        }
        if sample is not None:
            manifest["parity"]["windows"]["sample"] = {
                "file": sample.name,
                "path": str(sample.resolve()),
                **asdict(file_entry(sample)),
            }
        keras_unchanged(keras_out, _keras_outputs(model, windows.network, stateful=bool(states)), name)
        manifest["parity"]["keras_unchanged_after_conversion"] = True
        progress.step(f"writing the batched companion, checked on {what}")
        task = TaskWindows(x, atol, what)
        record(manifest, onnx_path.name, *make_companion(staging.dir / onnx_path.name, task))
        write_json(staging.dir / manifest_path.name, manifest)
        written = staging.commit()
    for path in remove_stale_variants(out_dir, name, written):
        progress.step(f"removed {path.name}: made from the previous export (re-create with --quantize)")
    return ExportResult(onnx_path, manifest_path, manifest, time.perf_counter() - started)


def _recorded(entry: dict[str, Any], what: str) -> Path:
    """The file a manifest entry recorded, if it is still there unchanged; DataError saying why not."""
    path = Path(entry["path"])
    if not path.exists():
        raise DataError(f"{what} {path} is needed and is not there any more")
    if "sha256" in entry and file_entry(path).sha256 != entry["sha256"]:
        raise DataError(f"{what} {path} changed since export (its sha256 differs)")
    return path


def recorded_windows(manifest: dict[str, Any], require_sample: bool = False) -> ParityWindows:
    """The windows export checked parity on, built again: the --sample's (still there, unchanged) or the same
    random ones. With `require_sample`, real windows or DataError (static-int8 calibrates on real data)."""
    spec = SequenceSpec.from_json(manifest)
    sample = manifest["parity"]["windows"].get("sample")
    if sample is None:
        mask = manifest["parity"]["windows"].get("mask_value")
        if require_sample:
            raise DataError(
                f"{manifest['name']} was exported without --sample: static-int8 calibrates on real windows only; "
                "export again with --sample FILE, or use dynamic-int8 or fp16"
            )
        return parity_windows(spec, None, mask)
    return parity_windows(spec, _recorded(sample, "the sample"))


def source_keras(manifest: dict[str, Any]) -> Any:
    """The Keras model the file was exported from, loaded with the Keras that wrote it (for bench)."""
    return load(_recorded(manifest["source"], "the Keras model")).model


__all__ = ["ModelFileError", "export_keras", "parity_windows", "recorded_windows", "source_keras"]

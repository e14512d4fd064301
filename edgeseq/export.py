"""Export recipes: train if needed, convert, verify against Keras, write the artifacts with their manifest."""

from __future__ import annotations

import json
import shutil
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

import edgeseq
from edgeseq import frameworks
from edgeseq.convert import (
    DEFAULT_OPSET,
    PARITY_ATOL,
    convert,
    fusion_audit,
    keras_unchanged,
    op_type_counts,
    parity_figures,
    producer_versions,
    require_fused,
)
from edgeseq.errors import ConversionError
from edgeseq.progress import Progress, Silent
from edgeseq_device.manifest import MANIFEST_FORMAT, FileEntry, TensorSpec, sha256_of
from edgeseq_device.model import load_model

SENSOR_SAMPLE = "sensor.csv"


@dataclass(frozen=True)
class ExportResult:
    """What `export_*` wrote and the figures it verified."""

    onnx_path: Path
    manifest_path: Path
    manifest: dict[str, Any]
    seconds: float


def file_entry(path: Path) -> FileEntry:
    content = path.read_bytes()
    return FileEntry(sha256_of(content), len(content))


def write_json(path: Path, data: dict[str, Any]) -> None:
    path.write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")


def remove_stale_variants(out_dir: Path, name: str) -> list[Path]:
    """A new export replaces <name>.onnx and its manifest; variants of the old file no longer match it."""
    stale = sorted(out_dir.glob(f"{name}.*.onnx"))
    for path in stale:
        path.unlink()
    return stale


class Staging:
    """A scratch directory inside `out_dir`; files move into `out_dir` only once everything checked out."""

    def __init__(self, out_dir: Path) -> None:
        out_dir.mkdir(parents=True, exist_ok=True)
        self.out_dir = out_dir
        self.dir = Path(tempfile.mkdtemp(prefix=".staging-", dir=out_dir))

    def __enter__(self) -> Staging:
        return self

    def __exit__(self, *exc: object) -> None:
        shutil.rmtree(self.dir, ignore_errors=True)

    def commit(self) -> None:
        for item in self.dir.iterdir():
            item.replace(self.out_dir / item.name)


def _previous_training_record(manifest_path: Path) -> dict[str, Any]:
    """The training record of the manifest being replaced, when the Keras model is reused as it is."""
    try:
        return dict(json.loads(manifest_path.read_text(encoding="utf-8"))["training"])
    except (OSError, ValueError, KeyError, TypeError):
        return {"note": "Keras model reused; no earlier training record"}


def run_onnx(model: Any, x: np.ndarray) -> np.ndarray:
    """Run a batch-1 ONNX model over each row of `x` and stack the outputs."""
    return np.concatenate([model.run(x[i : i + 1]) for i in range(len(x))])


def _keras_model(
    keras_path: Path, staging: Staging, retrain: bool, train: Any, progress: Progress, name: str
) -> tuple[Any, dict[str, Any], Path]:
    """Train (no model yet, or `retrain`) and save into staging, or load the existing model as it is."""
    if retrain or not keras_path.exists():
        progress.step(f"training {name}")
        model, training = train()
        model.save(staging.dir / keras_path.name)
        return model, training, staging.dir / keras_path.name
    progress.step(f"loading {keras_path} (use --retrain to train again)")
    _, keras = frameworks.tensorflow()
    return keras.models.load_model(keras_path), _previous_training_record(keras_path.with_suffix(".json")), keras_path


def _base_manifest(
    name: str, kind: str, proto: Any, specs: tuple[TensorSpec, TensorSpec], files: list[Path], opset: int
) -> dict[str, Any]:
    return {
        "format": MANIFEST_FORMAT,
        "name": name,
        "kind": kind,
        "edgeseq_version": edgeseq.__version__,
        "inputs": [specs[0].to_json()],
        "outputs": [specs[1].to_json()],
        "opset": opset,
        "op_types": dict(sorted(op_type_counts(proto.graph).items())),
        "files": {path.name: asdict(file_entry(path)) for path in files},
        "producers": producer_versions(),
    }


def _metadata(name: str, kind: str, facts: dict[str, Any]) -> dict[str, str]:
    """ONNX metadata_props: the key facts as strings (lists and dicts as JSON), plus versions."""
    props = {"kind": kind, "name": name, "edgeseq_version": edgeseq.__version__}
    for key, value in facts.items():
        props[key] = value if isinstance(value, str) else json.dumps(value)
    props.update({f"producer.{k}": v for k, v in producer_versions().items()})
    return props


def _audit(proto: Any, model: Any, name: str, allow_unfused: bool, progress: Progress) -> dict[str, Any]:
    """The fusion audit; refuses a recurrent layer left as Loop/Scan unless `allow_unfused` (then warns)."""
    audit = fusion_audit(proto.graph, model)
    warning = require_fused(audit, name, allow_unfused)
    if warning:
        progress.step(f"warning: {warning}")
        audit["allowed_unfused"] = True
    return audit


def _convert_and_stage(
    model: Any,
    specs: tuple[TensorSpec, TensorSpec],
    name: str,
    kind: str,
    facts: dict[str, Any],
    training: dict[str, Any],
    keras_file: Path,
    staging: Staging,
    opset: int,
    allow_unfused: bool,
    progress: Progress,
) -> tuple[dict[str, Any], Any]:
    """Convert, audit fusion, write <name>.onnx and its manifest into staging, and load the file back
    through the device runtime, as a user would: its sha256 and signature are checked first."""
    import onnx

    proto = convert(model, *specs, opset=opset, metadata=_metadata(name, kind, facts))
    audit = _audit(proto, model, name, allow_unfused, progress)
    onnx_file = staging.dir / f"{name}.onnx"
    onnx.save(proto, onnx_file)
    manifest = _base_manifest(name, kind, proto, specs, [onnx_file, keras_file], opset)
    manifest.update(facts, fusion=audit, training=training)
    write_json(staging.dir / f"{name}.json", manifest)
    return manifest, load_model(onnx_file, require_manifest=True)


def export_letter_rnn(
    out_dir: Path = Path("exported"),
    *,
    retrain: bool = False,
    config: Any = None,
    opset: int = DEFAULT_OPSET,
    progress: Progress = Silent(),
    allow_unfused: bool = False,
) -> ExportResult:
    """Train (if needed), convert, verify and write letter_rnn.{keras,onnx,json} to `out_dir`.

    The SimpleRNN becomes one ONNX RNN node (edgeseq.rnn_fusion); a recurrent layer left as a Loop fails
    the export unless `allow_unfused`, which warns instead.
    """
    frameworks.require_training()

    from edgeseq.data import letter_arrays
    from edgeseq.train import LetterConfig, train_letter_rnn

    config = config or LetterConfig()
    codec = config.codec
    started = time.perf_counter()
    name, kind, out_dir = "letter_rnn", "letters", Path(out_dir)
    keras_path, onnx_path, manifest_path = (out_dir / f"{name}{ext}" for ext in (".keras", ".onnx", ".json"))

    with Staging(out_dir) as staging:
        model, training, keras_file = _keras_model(
            keras_path, staging, retrain, lambda: train_letter_rnn(config, progress), progress, name
        )
        x_all = codec.encode_batch(codec.all_sequences())
        x_pat, y_pat = letter_arrays(codec)
        keras_all = model(x_all, training=False).numpy()
        keras_pat = model(x_pat, training=False).numpy()

        progress.step("converting with tf2onnx")
        specs = (
            TensorSpec("letters", (1, codec.window, len(codec.vocabulary)), "float32"),
            TensorSpec("probs", (1, len(codec.vocabulary)), "float32"),
        )
        facts = {"vocabulary": codec.vocabulary, "window": codec.window}
        manifest, device_model = _convert_and_stage(
            model, specs, name, kind, facts, training, keras_file, staging, opset, allow_unfused, progress
        )
        progress.step(f"checking parity on all {len(x_all)} sequences")
        onnx_all, onnx_pat = run_onnx(device_model, x_all), run_onnx(device_model, x_pat)
        check = {"atol": PARITY_ATOL, "output": specs[1].name, "argmax": True}
        manifest["parity"] = {
            "patterns": parity_figures(keras_pat, onnx_pat, what=f"the {len(x_pat)} training patterns", **check),
            "all_sequences": parity_figures(keras_all, onnx_all, what=f"all {len(x_all)} one-hot sequences", **check),
        }
        keras_unchanged(keras_all, model(x_all, training=False).numpy(), name)
        manifest["parity"]["keras_unchanged_after_conversion"] = True
        manifest["accuracy"] = {
            "patterns_onnx": float(np.mean(onnx_pat.argmax(axis=1) == y_pat)),
            "patterns_keras": float(np.mean(keras_pat.argmax(axis=1) == y_pat)),
        }
        write_json(staging.dir / manifest_path.name, manifest)
        staging.commit()
    for path in remove_stale_variants(out_dir, name):
        progress.step(f"removed {path.name}: made from the previous export (re-create with --quantize)")

    return ExportResult(onnx_path, manifest_path, manifest, time.perf_counter() - started)


def _write_test_sample(config: Any, first_row: int, path: Path) -> int:
    """Copy the header and the data lines from `first_row` on (the test period) to `path`, each line as it
    is but for its line break, split by the device runtime's LineSource as training split it."""
    from edgeseq.data import open_binary
    from edgeseq_device.lines import LineSource

    count = 0
    with open_binary(Path(config.data)) as source, path.open("w", encoding="utf-8", newline="") as sink:
        lines = iter(LineSource.from_reader(source.read, str(config.data)))
        sink.write(f"{next(lines)}\n")
        for row, line in enumerate(lines):
            if row >= first_row:
                sink.write(f"{line}\n")
                count += 1
    return count


def export_forecaster(
    out_dir: Path = Path("exported"),
    *,
    name: str = "sensor_lstm",
    retrain: bool = False,
    config: Any = None,
    opset: int = DEFAULT_OPSET,
    progress: Progress = Silent(),
    sample: str | None = SENSOR_SAMPLE,
    allow_unfused: bool = False,
) -> ExportResult:
    """Train (if needed), evaluate, convert, verify, plot and write <name>.{keras,onnx,json} to `out_dir`.

    Fails with ConversionError unless both LSTM layers become fused ONNX LSTM nodes (or `allow_unfused`), and
    with ParityError unless onnxruntime matches Keras within 1e-5 (model output space) on every test window.
    With `sample`, also writes the test period of the data file, verbatim, for `edgeseq run --stream`.
    """
    frameworks.require_training()

    from edgeseq.evaluate import forecasts, persistence, score_on_test
    from edgeseq.plots import plot_forecast, plot_loss
    from edgeseq.train import ForecasterConfig, prepare_forecast_data, train_forecaster

    config = config or ForecasterConfig()
    started = time.perf_counter()
    kind, out_dir = "forecaster", Path(out_dir)
    keras_path, onnx_path, manifest_path = (out_dir / f"{name}{ext}" for ext in (".keras", ".onnx", ".json"))

    with Staging(out_dir) as staging:
        progress.step(f"reading {config.data}")
        data = prepare_forecast_data(config)
        spec = data.spec
        model, training, keras_file = _keras_model(
            keras_path, staging, retrain, lambda: train_forecaster(config, progress, data)[:2], progress, name
        )
        if tuple(model.input_shape[1:]) != (spec.window, len(spec.features)):
            raise ConversionError(
                f"{keras_path} takes windows of shape {list(model.input_shape[1:])}, but the task needs "
                f"[{spec.window}, {len(spec.features)}]: pass --retrain"
            )
        x_test = data.inputs("test")
        keras_test = model(x_test, training=False).numpy()

        progress.step("converting with tf2onnx")
        specs = (
            TensorSpec("window", spec.input_shape, "float32"),
            TensorSpec("forecast", (1, 1), "float32"),
        )
        facts = spec.to_json()
        manifest, device_model = _convert_and_stage(
            model, specs, name, kind, facts, training, keras_file, staging, opset, allow_unfused, progress
        )
        progress.step(f"checking parity on all {len(x_test)} test windows")
        onnx_test = run_onnx(device_model, x_test)
        manifest["parity"] = {
            "test_windows": parity_figures(
                keras_test,
                onnx_test,
                atol=PARITY_ATOL,
                output="forecast",
                what=f"{len(x_test)} test windows",
                argmax=False,
            )
        }
        manifest["parity"]["test_windows"]["space"] = "model output (scaled change over the horizon)"
        keras_unchanged(keras_test, model(x_test, training=False).numpy(), name)
        manifest["parity"]["keras_unchanged_after_conversion"] = True

        progress.step("evaluating on the test split against persistence and ridge")
        model_forecast = forecasts(lambda x: onnx_test, data, "test")
        manifest["metrics"] = score_on_test(model_forecast, data)
        manifest["metrics"]["evaluated_with"] = f"{onnx_path.name} through onnxruntime"
        manifest["split"] = {
            part: {"rows": list(rows), "windows": len(data.ends[part])} for part, rows in data.split.parts().items()
        }
        manifest["data"] = {"file": Path(config.data).name, **asdict(file_entry(Path(config.data)))}

        progress.step("plotting")
        history = training.get("history")
        if history:
            plot_loss(history, training["best_epoch"], staging.dir / f"{name}.loss.png", f"{name}: loss per epoch")
        stretch = slice(0, min(len(model_forecast), 6 * 24 * 4))  # the first four days of the test split
        target_rows = data.ends["test"][stretch] + spec.horizon  # plotted at the time being forecast
        times = [data.table.times[i] for i in target_rows] if data.table.times else None
        plot_forecast(
            times,
            data.actual("test")[stretch],
            model_forecast[stretch],
            persistence(data, "test")[stretch],
            staging.dir / f"{name}.forecast.png",
            f"{name}: {spec.target} forecast {spec.horizon} rows ahead vs actual and persistence (test split)",
            spec.target,
        )
        if sample:
            rows = _write_test_sample(config, data.split.test[0], staging.dir / sample)
            manifest["sample"] = {"file": sample, "rows": rows, "first_data_row": data.split.test[0] + 1}
        write_json(staging.dir / manifest_path.name, manifest)
        staging.commit()
    for path in remove_stale_variants(out_dir, name):
        progress.step(f"removed {path.name}: made from the previous export (re-create with --quantize)")

    return ExportResult(onnx_path, manifest_path, manifest, time.perf_counter() - started)

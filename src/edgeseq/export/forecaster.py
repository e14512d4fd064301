"""The LSTM forecaster's export recipe: train if needed, evaluate, convert, check parity, plot, write."""

from __future__ import annotations

import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np

from edgeseq import frameworks
from edgeseq.convert import DEFAULT_OPSET, PARITY_ATOL, keras_unchanged, parity_figures, pre_post
from edgeseq.errors import ConversionError
from edgeseq.export.artifacts import (
    ExportResult,
    Staging,
    convert_and_stage,
    file_entry,
    keras_model,
    remove_stale_variants,
    run_onnx,
    write_json,
)
from edgeseq.export.companions import TaskWindows, make_companion, record
from edgeseq.progress import Progress, Silent

SENSOR_SAMPLE = "sensor.csv"


def _write_test_sample(data: Any, path: Path) -> int:
    """Write the test period's lines (every key's) to `path`, each as it is in the file but for its line break,
    under the header in force where the period starts. `edgeseq run` on this file makes exactly the test
    windows the metrics were computed on: a line too long to keep becomes an empty line, a gap to the runner
    as it was to training, and wherever the columns in force change (a header again mid-file, in whichever
    part it fell) that header is written before the lines it names."""
    from edgeseq.data import read_all

    table = data.table
    header, lines = table.header.line, read_all(data.config.data)[table.header.preamble + 1 :]
    written: list[str] = []
    in_force, last_written, count = header, None, 0
    for line, part, header_again in zip(lines, table.line_parts.tolist(), table.header_lines.tolist(), strict=True):
        if header_again:
            in_force = line
        if part != 2 or header_again:
            continue
        if in_force is not last_written:  # the columns of the lines that follow, as training read them
            written.append(in_force)
            last_written = in_force
        written.append(line if isinstance(line, str) else "")
        count += 1
    with path.open("w", encoding="utf-8", newline="") as sink:
        sink.writelines(f"{line}\n" for line in written or [header])
    return count


def _plot_series(data: Any) -> dict[str, Any]:
    """The test windows of one series (the first key's), in time order, for the forecast plot."""
    ends = data.ends["test"]
    table = data.table
    if table.keys is not None and len(ends):
        ends = ends[table.keys[ends] == table.keys[ends[0]]]
    targets = ends + data.spec.horizon  # plotted at the time being forecast
    key = f" ({table.rules.group_by} {table.keys[ends[0]]})" if table.keys is not None and len(ends) else ""
    return {
        "ends": ends,
        "times": table.times[targets] if table.times is not None else None,
        "interval": table.rules.interval,
        "key": key,
    }


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
    with ParityError unless the file (raw window in, forecast out) matches numpy scaling, Keras and numpy's
    output transform within 1e-5 x target_scale on every test window.
    With `sample`, also writes the test period of the data file, verbatim, for `edgeseq run --stream`.
    """
    frameworks.require_training()

    from edgeseq.evaluate import persistence, score_on_test
    from edgeseq.plots import plot_forecast, plot_loss
    from edgeseq.train import ForecasterConfig, prepare_forecast_data, train_forecaster

    config = config or ForecasterConfig()
    started = time.perf_counter()
    kind, out_dir = "forecaster", Path(out_dir)
    keras_path, onnx_path, manifest_path = (out_dir / f"{name}{ext}" for ext in (".keras", ".onnx", ".json"))

    with Staging(out_dir) as staging:
        progress.step(f"reading {config.data}")
        data = prepare_forecast_data(config)
        config, spec, table = data.config, data.spec, data.table
        if table.header.preamble or table.header.delimiter != ",":
            progress.step(table.header.words())
        for said in table.report.words():
            progress.step(said)
        for feature, why in data.dropped:
            progress.step(f"dropped feature {feature!r} (--drop-constant): it is {why}")
        model, training, keras_file = keras_model(
            keras_path, staging, retrain, lambda: train_forecaster(config, progress, data)[:2], progress, name
        )
        if tuple(model.input_shape[1:]) != (spec.window, len(spec.features)):
            raise ConversionError(
                f"{keras_path} takes windows of shape {list(model.input_shape[1:])}, but the task needs "
                f"[{spec.window}, {len(spec.features)}]: pass --retrain"
            )
        x_test = data.inputs("test")
        raw_test = spec.raw_windows(table.values, data.ends["test"])
        # the reference, end to end: numpy scaling, Keras, numpy's output transform (edgeseq_device.forecast)
        keras_test = model(x_test, training=False).numpy()
        keras_forecast = spec.to_target_units(keras_test.reshape(-1), data.last_target("test"))

        progress.step("converting to ONNX, with the scaling and output transform as ops in the graph")
        transform = pre_post.forecaster_transform(spec)
        facts = spec.to_json()
        manifest, device_model = convert_and_stage(
            model,
            (transform.window, transform.output),
            name,
            kind,
            facts,
            training,
            [keras_file],
            staging,
            opset,
            allow_unfused,
            progress,
            transform,
        )
        progress.step(f"checking parity, raw window to forecast, on all {len(x_test)} test windows")
        model_forecast = run_onnx(device_model, raw_test).reshape(-1)
        # the network's 1e-5 bar, carried through the output transform into the target's units
        atol = PARITY_ATOL * spec.target_scale
        figures = parity_figures(
            keras_forecast[:, None],
            model_forecast[:, None],
            atol=atol,
            output="forecast",
            what=f"{len(x_test)} test windows",
            argmax=False,
        )
        manifest["parity"] = {
            "test_windows": {
                **figures,
                "space": f"forecast in the target's units ({spec.target}), end to end",
                "reference": "numpy scaling (ForecastSpec), then Keras, then numpy's output transform",
                "bar": f"max abs diff <= 1e-5 x target_scale = {atol:.3g} {spec.target}",
            }
        }
        keras_unchanged(keras_test, model(x_test, training=False).numpy(), name)
        manifest["parity"]["keras_unchanged_after_conversion"] = True
        progress.step(f"writing the batched companion, checked on all {len(raw_test)} test windows")
        task = TaskWindows(raw_test, atol, f"the {len(raw_test)} test windows", spec.target)
        record(manifest, onnx_path.name, *make_companion(staging.dir / onnx_path.name, task))

        progress.step("evaluating on the test split against persistence and ridge")
        manifest["metrics"] = score_on_test(model_forecast, data)
        manifest["metrics"]["evaluated_with"] = f"{onnx_path.name} through onnxruntime"
        manifest["series"] = table.rules.to_json()
        manifest["csv"] = table.dialect
        manifest["split"] = {
            "by": ("time" + (", across all keys" if table.keys is not None else ""))
            if table.times is not None
            else "row order" + (", within each key" if table.keys is not None else ""),
            "fractions": list(config.split) if not config.split_at else None,
            "split_at": list(config.split_at) if config.split_at else None,
            **data.parts(),
        }
        manifest["data"] = {
            "file": Path(config.data).name,
            **asdict(file_entry(Path(config.data))),
            **table.report.to_json(),
            "dropped_features": {feature: why for feature, why in data.dropped},
        }

        progress.step("plotting")
        history = training.get("history")
        if history:
            plot_loss(history, training["best_epoch"], staging.dir / f"{name}.loss.png", f"{name}: loss per epoch")
        shown = _plot_series(data)
        chosen = np.isin(data.ends["test"], shown["ends"])
        plot_forecast(
            shown["times"],
            data.actual("test")[chosen],
            model_forecast[chosen],
            persistence(data, "test")[chosen],
            staging.dir / f"{name}.forecast.png",
            f"{name}: {spec.target} {spec.horizon} rows ahead{shown['key']}, LSTM vs actual and persistence (test)",
            spec.target,
            shown["interval"],
        )
        if sample:
            rows = _write_test_sample(data, staging.dir / sample)
            manifest["sample"] = {"file": sample, "rows": rows, "period": "test, every key's lines as in the file"}
        write_json(staging.dir / manifest_path.name, manifest)
        written = staging.commit()
    for path in remove_stale_variants(out_dir, name, written):
        progress.step(f"removed {path.name}: made from the previous export (re-create with --quantize)")

    return ExportResult(onnx_path, manifest_path, manifest, time.perf_counter() - started)

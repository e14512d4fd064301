"""The quantization report: every variant measured from its file on the task's real data, next to fp32.

Written to `<dir>/quantization.json`; `render_table` turns it into the README's table.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import numpy as np

from edgeseq.errors import EdgeseqError
from edgeseq_device.manifest import Manifest
from edgeseq_device.model import Model, load_model

BARS = {
    "dynamic-int8": "forecaster test RMSE within 2% of fp32 and file <= 30% of fp32; letters 100% on the 5 patterns",
    "static-int8": "letters 100% on the 5 patterns",
    "fp16": "letters 100% on the 5 patterns",
}


def forecast_data(manifest: dict[str, Any]) -> Any:
    """The forecaster's data, split and scaled exactly as at training time (config from the manifest)."""
    from edgeseq.errors import EdgeseqError
    from edgeseq.export import file_entry
    from edgeseq.train import ForecasterConfig, prepare_forecast_data

    config = ForecasterConfig.from_json(manifest["training"]["config"])
    data = config.data
    if not data.exists():
        raise EdgeseqError(f"the training data {data} is needed to measure variants and is not there")
    recorded = manifest.get("data", {}).get("sha256")
    if recorded and file_entry(data).sha256 != recorded:
        raise EdgeseqError(f"{data} is not the file {manifest['name']} was trained on (its sha256 differs)")
    return prepare_forecast_data(config)


def _run_all(model: Model, x: np.ndarray) -> np.ndarray:
    return np.concatenate([model.run(x[i : i + 1]) for i in range(len(x))])


def task_inputs(manifest: dict[str, Any]) -> dict[str, Any]:
    if manifest["kind"] == "letters":
        from edgeseq.data import letter_arrays
        from edgeseq_device.letters import LetterCodec

        codec = LetterCodec(manifest["vocabulary"], int(manifest["window"]))
        x_pat, y_pat = letter_arrays(codec)
        return {"kind": "letters", "x": codec.encode_batch(codec.all_sequences()), "x_pat": x_pat, "y_pat": y_pat}
    if manifest["kind"] == "sequence":
        from edgeseq.export.keras_file import recorded_windows

        windows = recorded_windows(manifest)
        return {
            "kind": "sequence",
            "x": windows.file,
            "what": windows.what,
            "classifier": manifest["task"]["type"] == "classifier",
        }
    from edgeseq_device.forecast import ForecastSpec

    data = forecast_data(manifest)
    spec = ForecastSpec.from_json(manifest)  # as the file takes its inputs: raw, or scaled (older files)
    return {
        "kind": "forecaster",
        "x": spec.model_inputs(data.table.values, data.ends["test"]),
        "data": data,
        "spec": spec,
    }


def _figures(inputs: dict[str, Any], model: Model, fp32_out: np.ndarray) -> dict[str, Any]:
    out = _run_all(model, inputs["x"])
    figures: dict[str, Any] = {"max_abs_diff_vs_fp32": float(np.abs(out - fp32_out).max())}
    if inputs["kind"] == "letters":
        patterns = _run_all(model, inputs["x_pat"]).argmax(axis=1)
        figures["accuracy_5_patterns"] = float(np.mean(patterns == inputs["y_pat"]))
        figures["argmax_agreement_625"] = float(np.mean(out.argmax(axis=1) == fp32_out.argmax(axis=1)))
    elif inputs["kind"] == "sequence":
        figures["compared_on"] = inputs["what"]
        if inputs["classifier"]:
            figures["argmax_agreement"] = float(np.mean(out.argmax(axis=1) == fp32_out.argmax(axis=1)))
    else:
        from edgeseq.evaluate import mae, persistence, rmse

        data = inputs["data"]
        forecast = inputs["spec"].forecasts(out, data.last_target("test"))
        actual = data.actual("test")
        figures.update(
            test_rmse=rmse(forecast, actual),
            test_mae=mae(forecast, actual),
            persistence_rmse=rmse(persistence(data, "test"), actual),
            units=data.spec.target,
            test_windows=len(actual),
        )
    return figures


def _bar(mode: str, kind: str, figures: dict[str, Any], fp32: dict[str, Any]) -> bool | None:
    if kind == "sequence":
        return None  # a user's model: edgeseq knows no task metric to hold it to
    if kind == "letters":
        return figures["accuracy_5_patterns"] == 1.0
    if mode == "dynamic-int8":
        return figures["test_rmse"] <= 1.02 * fp32["test_rmse"] and figures["size_ratio"] <= 0.30
    return True


def _latency_p50(models: dict[str, Model], x: np.ndarray, rounds: int) -> dict[str, float]:
    """Per-window latency p50 (ms), one thread, variants interleaved call by call in one run."""
    times: dict[str, list[float]] = {name: [] for name in models}
    picks = np.linspace(0, len(x) - 1, min(len(x), 200)).astype(int)
    for model in models.values():
        for i in picks[:20]:
            model.run(x[i : i + 1])
    for _ in range(rounds):
        for i in picks:
            for name, model in models.items():
                t0 = time.perf_counter()
                model.run(x[i : i + 1])
                times[name].append((time.perf_counter() - t0) * 1e3)
    return {name: float(np.percentile(t, 50)) for name, t in times.items()}


def build_report(directory: Path, rounds: int = 5) -> dict[str, Any]:
    """Measure every model in `directory` that has variants, from the files, against its fp32 file.

    Every figure depends on the CPU's kernels (int8 ones by far the most: see edgeseq.machine), so every row
    carries `measured_on`, the CPU and the kernels its features select.
    """
    from edgeseq.machine import describe_cpu

    measured_on = describe_cpu()
    report: dict[str, Any] = {"measured_on": measured_on, "models": {}}
    report_path = Path(directory) / "quantization.json"
    previous = json.loads(report_path.read_text(encoding="utf-8")).get("models", {}) if report_path.exists() else {}
    for manifest_path in sorted(Path(directory).glob("*.json")):
        try:
            manifest = Manifest.load(manifest_path).data
        except Exception:  # quantization.json and other JSON files are not manifests
            continue
        variants = manifest.get("variants") or {}
        if not variants:
            continue
        fp32_path = manifest_path.with_suffix(".onnx")
        try:
            inputs = task_inputs(manifest)
        except EdgeseqError as exc:  # its data is gone: the other models are still measured
            report.setdefault("not_measured", {})[manifest["name"]] = str(exc)
            if manifest["name"] in previous:
                report["models"][manifest["name"]] = {**previous[manifest["name"]], "stale": str(exc)}
            continue
        models = {"fp32": load_model(fp32_path, threads=1)}
        models.update({mode: load_model(directory / v["file"], threads=1) for mode, v in variants.items()})
        fp32_out = _run_all(models["fp32"], inputs["x"])
        rows: dict[str, Any] = {}
        for mode, model in models.items():
            figures = _figures(inputs, model, fp32_out)
            figures["size"] = model.path.stat().st_size
            figures["size_ratio"] = figures["size"] / fp32_path.stat().st_size
            rows[mode] = {"file": model.path.name, **figures, "measured_on": measured_on}
        for mode, p50 in _latency_p50(models, inputs["x"], rounds).items():
            rows[mode]["latency_ms_p50"] = p50
        for mode in variants:
            rows[mode]["bar"] = (
                BARS[mode] if inputs["kind"] != "sequence" else "none: no task metric for a user's model"
            )
            rows[mode]["bar_met"] = _bar(mode, inputs["kind"], rows[mode], rows["fp32"])
            rows[mode]["recipe"] = variants[mode].get("recipe")
            for key in ("calibration", "stayed_float"):
                if key in variants[mode]:
                    rows[mode][key] = variants[mode][key]
        if "fp16" in rows:
            ratio = rows["fp16"]["latency_ms_p50"] / rows["fp32"]["latency_ms_p50"]
            rows["fp16"]["on_this_cpu"] = (
                f"{'slower' if ratio > 1 else 'faster'} than fp32 here ({ratio:.2f}x the p50 latency): this CPU "
                "has no fp16 arithmetic, so onnxruntime converts to float32 around fp16 weights; fp16 is for "
                "devices with fp16 units (GPUs, NPUs, ARMv8.2+ cores) and for halving the file"
            )
        report["models"][manifest["name"]] = {"kind": manifest["kind"], "variants": rows}
    return report


def write_report(directory: Path) -> dict[str, Any]:
    """Measure every variant once; write quantization.json and each variant's figures into its manifest."""
    from edgeseq.export import write_json

    report = build_report(directory)
    write_json(Path(directory) / "quantization.json", report)
    for name, entry in report["models"].items():
        if "stale" in entry:  # not measured this time: its manifest keeps what it had
            continue
        manifest_path = Path(directory) / f"{name}.json"
        manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
        for mode, row in entry["variants"].items():
            if mode in manifest.get("variants", {}):
                manifest["variants"][mode].update({k: v for k, v in row.items() if k != "file"})
        write_json(manifest_path, manifest)
    return report


def render_table(report: dict[str, Any]) -> str:
    """The README's table, from quantization.json, with the machine it was measured on."""
    m = report["measured_on"]
    lines = [
        f"Measured on {m['cpu']} ({' '.join(m['features'])}; onnxruntime {m['onnxruntime']} int8 kernel "
        f"{m['onnxruntime_int8_kernel']}, float kernel {m['onnxruntime_float_kernel']}).",
        "",
        "| model | variant | size | vs fp32 | task metric | max abs diff vs fp32 | p50 ms | bar |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for name, entry in report["models"].items():
        for mode, row in entry["variants"].items():
            if entry["kind"] == "letters":
                metric = (
                    f"{row['accuracy_5_patterns']:.0%} on 5 patterns, "
                    f"{row['argmax_agreement_625']:.1%} of 625 agree with fp32"
                )
            elif entry["kind"] == "sequence":
                agreement = row.get("argmax_agreement")
                metric = "-" if agreement is None else f"{agreement:.1%} agree with fp32 (argmax)"
            else:
                metric = (
                    f"RMSE {row['test_rmse']:.4f} / MAE {row['test_mae']:.4f} {row['units']} "
                    f"(persistence {row['persistence_rmse']:.4f})"
                )
            met = row.get("bar_met")
            bar = "-" if mode == "fp32" or met is None else ("met" if met else "**NOT met**")
            lines.append(
                f"| {name} | {mode} | {row['size']:,} B | {row['size_ratio']:.0%} | {metric} | "
                f"{row['max_abs_diff_vs_fp32']:.2g} | {row['latency_ms_p50']:.4f} | {bar} |"
            )
    return "\n".join(lines)


def load_report(directory: Path) -> dict[str, Any]:
    return json.loads((Path(directory) / "quantization.json").read_text(encoding="utf-8"))

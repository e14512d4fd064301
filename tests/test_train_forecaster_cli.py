"""Bring your own CSV: `edgeseq train forecaster` end to end on a small synthetic file, with a tiny LSTM."""

import csv
import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from typer.testing import CliRunner

from edgeseq import frameworks
from edgeseq.cli import app
from edgeseq.convert import op_type_counts
from edgeseq.evaluate import RIDGE_ALPHAS
from edgeseq_device.forecast import ForecastSpec
from edgeseq_device.model import load_model
from tests.synthetic import write_sensor_csv

runner = CliRunner()
TINY = ["--units", "8,8", "--epochs", "3", "--window", "12", "--horizon", "3"]


def train(*args):
    return runner.invoke(app, ["train", "forecaster", *[str(a) for a in args]])


def _test_windows(data: Path, manifest: dict) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(raw windows, last target, actual) of the test part, read with the csv module from the manifest's split
    lines (the synthetic file has no gap, so the windows are every run of `window` rows with a target)."""
    with data.open(newline="") as handle:
        rows = list(csv.reader(handle, skipinitialspace=True))
    header = rows[0]
    first, last = manifest["split"]["test"]["lines"]  # file lines: the header is line 1
    values = np.array([[float(row[header.index(f)]) for f in manifest["features"]] for row in rows[first - 1 : last]])
    window, horizon = manifest["window"], manifest["horizon"]
    ends = np.arange(window - 1, len(values) - horizon)
    y = values[:, manifest["features"].index(manifest["target"])]
    return np.stack([values[e - window + 1 : e + 1] for e in ends]), y[ends], y[ends + horizon]


def _onnx_forecasts(path: Path, raw: np.ndarray) -> np.ndarray:
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    return np.array([session.run(None, {"window": raw[i : i + 1]})[0].item() for i in range(len(raw))])


def _rmse(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.sqrt(np.mean((a - b) ** 2)))


def test_byo_csv_trains_exports_and_verifies(tmp_path: Path):
    data = write_sensor_csv(tmp_path / "room.csv", rows=600, quoted=True)
    out = tmp_path / "out"
    result = train(
        "--data", data, "--features", "temp, hum,outside", "--target", "temp", "--time-column", "time",
        "--out", out, "--name", "room", *TINY,
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in out.iterdir()) == [
        "room.batched.onnx", "room.forecast.png", "room.json", "room.keras", "room.loss.png", "room.onnx",
        "room.test.csv",
    ]  # fmt: skip
    manifest = json.loads((out / "room.json").read_text())
    assert (manifest["kind"], manifest["features"], manifest["target"]) == (
        "forecaster",
        ["temp", "hum", "outside"],
        "temp",
    )
    assert (manifest["window"], manifest["horizon"], manifest["time_column"]) == (12, 3, "time")
    # raw readings in, the forecast in the target's units out: the scaling is in the graph
    assert manifest["inputs"] == [{"name": "window", "shape": [1, 12, 3], "dtype": "float64"}]
    assert manifest["outputs"] == [{"name": "forecast", "shape": [1, 1], "dtype": "float64"}]
    assert manifest["scaling"]["in_graph"] is True
    counts = op_type_counts(onnx.load(out / "room.onnx").graph)
    assert counts["LSTM"] == 2 and counts["Loop"] == 0 and counts["Scan"] == 0
    # the figures recomputed here: windows read with the csv module, the file run by onnxruntime, Keras around
    # the manifest's formulas in numpy
    raw, last, actual = _test_windows(data, manifest)
    assert len(raw) == manifest["split"]["test"]["windows"] == manifest["metrics"]["windows"] >= 60
    forecast = _onnx_forecasts(out / "room.onnx", raw)
    scaling = manifest["scaling"]
    scaled = ((raw - raw[:, -1:, :]) / np.asarray(scaling["input_scale"])).astype(np.float32)
    _, keras = frameworks.tensorflow()
    change = keras.models.load_model(out / "room.keras")(scaled, training=False).numpy().reshape(-1)
    reference = last + scaling["target_scale"] * change.astype(np.float64)
    parity = manifest["parity"]["test_windows"]
    assert parity["atol"] == pytest.approx(1e-5 * scaling["target_scale"]) and parity["count"] == len(raw)
    worst = float(np.abs(forecast - reference).max())
    assert worst <= parity["atol"]
    assert parity["max_abs_diff"] == pytest.approx(worst, rel=0.05, abs=1e-9 * scaling["target_scale"])
    metrics = manifest["metrics"]
    assert metrics["model"]["rmse"] == pytest.approx(_rmse(forecast, actual), rel=1e-6)
    assert metrics["model"]["mae"] == pytest.approx(float(np.mean(np.abs(forecast - actual))), rel=1e-6)
    assert metrics["persistence"]["rmse"] == pytest.approx(_rmse(last, actual), rel=1e-12)
    assert metrics["ridge"]["alpha"] in RIDGE_ALPHAS and metrics["ridge"]["rmse"] > 0  # tests/test_evaluate.py
    assert metrics["rmse_ratio_to_persistence"] == pytest.approx(metrics["model"]["rmse"] / _rmse(last, actual))
    spec = ForecastSpec.from_json(manifest)
    assert load_model(out / "room.onnx").manifest.data["target"] == spec.target
    assert "test RMSE" in result.stdout and "persistence" in result.stdout


def test_a_file_that_misses_parity_is_refused_and_nothing_is_written(tmp_path: Path, monkeypatch):
    # The graph's output transform built with a target_scale 0.1% off, as a converter bug would: the file's
    # forecasts then differ from Keras and numpy's transform by far more than the 1e-5 x target_scale bar.
    from edgeseq.convert import pre_post

    real = pre_post.forecaster_transform
    monkeypatch.setattr(
        pre_post,
        "forecaster_transform",
        lambda spec, *a, **k: real(replace(spec, target_scale=spec.target_scale * 1.001), *a, **k),
    )
    data = write_sensor_csv(tmp_path / "room.csv", rows=600)
    out = tmp_path / "out"
    result = train(
        "--data", data, "--features", "temp,hum,outside", "--target", "temp", "--time-column", "time",
        "--out", out, "--name", "room", *TINY,
    )  # fmt: skip
    errors = [line for line in result.stderr.splitlines() if line.startswith("edgeseq: error:")]
    assert result.exit_code == 1 and len(errors) == 1, f"exit {result.exit_code}, errors {errors}: the file was kept"
    assert "onnxruntime vs Keras on output 'forecast'" in errors[0], result.stderr
    assert "max abs diff" in errors[0] and "> atol" in errors[0]
    assert not (out / "room.onnx").exists() and not (out / "room.json").exists()


@pytest.mark.parametrize(
    ("features", "target", "message"),
    [
        ("temp,humidity", "temp", "missing column 'humidity'"),
        ("temp,hum", "tmp", "target 'tmp' must also be a feature"),
    ],
)
def test_wrong_names_exit_2_with_the_name(tmp_path: Path, features, target, message):
    data = write_sensor_csv(tmp_path / "room.csv")
    result = train("--data", data, "--features", features, "--target", target, "--out", tmp_path / "o", *TINY)
    assert result.exit_code == 2
    errors = [line for line in result.stderr.splitlines() if line.startswith("edgeseq: error:")]
    assert len(errors) == 1 and message in errors[0]
    assert "Traceback" not in result.output
    assert not (tmp_path / "o" / "forecaster.onnx").exists()


def test_a_file_shorter_than_a_window_exits_2(tmp_path: Path):
    data = write_sensor_csv(tmp_path / "short.csv", rows=40)
    result = train("--data", data, "--features", "temp", "--target", "temp", "--out", tmp_path / "o", *TINY)
    assert result.exit_code == 2
    assert "the validation and test parts get no window of 12 rows with a target 3 rows on" in result.stderr
    assert "40 rows kept of 40" in result.stderr and "at least 15 rows without a gap" in result.stderr


def test_a_missing_file_exits_2(tmp_path: Path):
    result = train("--data", tmp_path / "nope.csv", "--features", "a", "--target", "a", *TINY)
    assert result.exit_code == 2 and "cannot read" in result.stderr and "nope.csv" in result.stderr


def test_bad_units_exit_2(tmp_path: Path):
    data = write_sensor_csv(tmp_path / "room.csv")
    result = train("--data", data, "--features", "temp", "--target", "temp", "--units", "8")
    assert result.exit_code == 2 and "--units takes two positive sizes" in result.stderr


def test_a_name_with_a_dot_is_refused_before_training(tmp_path: Path):
    data = write_sensor_csv(tmp_path / "room.csv")
    result = train("--data", data, "--features", "temp", "--target", "temp", "--name", "room.v2", *TINY)
    assert result.exit_code == 2 and "--name 'room.v2'" in result.stderr
    assert "training" not in result.stderr

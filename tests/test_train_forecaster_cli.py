"""Bring your own CSV: `edgeseq train forecaster` end to end on a small synthetic file, with a tiny LSTM."""

import json
from pathlib import Path

import onnx
import pytest
from typer.testing import CliRunner

from edgeseq.cli import app
from edgeseq.convert import op_type_counts
from edgeseq_device.forecast import ForecastSpec
from edgeseq_device.model import load_model
from tests.synthetic import write_sensor_csv

runner = CliRunner()
TINY = ["--units", "8,8", "--epochs", "3", "--window", "12", "--horizon", "3"]


def train(*args):
    return runner.invoke(app, ["train", "forecaster", *[str(a) for a in args]])


def test_byo_csv_trains_exports_and_verifies(tmp_path: Path):
    data = write_sensor_csv(tmp_path / "room.csv", rows=600, quoted=True)
    out = tmp_path / "out"
    result = train(
        "--data", data, "--features", "temp, hum,outside", "--target", "temp", "--time-column", "time",
        "--out", out, "--name", "room", *TINY,
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in out.iterdir()) == [
        "room.forecast.png", "room.json", "room.keras", "room.loss.png", "room.onnx", "room.test.csv",
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
    parity = manifest["parity"]["test_windows"]
    assert parity["max_abs_diff"] <= parity["atol"] == pytest.approx(1e-5 * manifest["scaling"]["target_scale"])
    assert manifest["parity"]["test_windows"]["count"] == manifest["split"]["test"]["windows"] >= 60
    for name in ("model", "persistence", "ridge"):
        assert manifest["metrics"][name]["rmse"] > 0
    spec = ForecastSpec.from_json(manifest)
    assert load_model(out / "room.onnx").manifest.data["target"] == spec.target
    assert "test RMSE" in result.stdout and "persistence" in result.stdout


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

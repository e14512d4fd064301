"""Model and manifest files as users and attackers hand them over: one line and exit 2, never a hang or a
traceback, and never a record that is not JSON."""

from __future__ import annotations

import json
import math
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from edgeseq_device.manifest import sha256_of
from edgeseq_device.model import usable_cpus
from tests.conftest import EXPORTED, REPO
from tests.helpers import without_metadata
from tests.streams import HEADER, LINES, MANIFEST, SENSOR_CSV, SENSOR_ONNX, T, records, run, write_lines


def _model_with_manifest(tmp_path: Path, manifest_text: str) -> Path:
    shutil.copy(SENSOR_ONNX, tmp_path / "sensor_lstm.onnx")
    (tmp_path / "sensor_lstm.json").write_text(manifest_text)
    return tmp_path / "sensor_lstm.onnx"


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("1e308", "scale of target_scale is 1e+308: scales must be finite"),
        ("1e400", "scale of target_scale is inf"),
        ("Infinity", "Infinity is not a number JSON allows"),
        ("NaN", "NaN is not a number JSON allows"),
        ("-0.5", "scale of target_scale is -0.5"),
        ("0", "scale of target_scale is 0.0"),
    ],
)
def test_a_manifest_scale_that_is_not_a_usable_number_is_refused(tmp_path: Path, value, message):
    # Before: target_scale 1e308 or Infinity made the runner write "prediction": inf, which is not JSON.
    # A file that does not record its scaling (exported before it did): the manifest's own checks refuse it.
    model = tmp_path / "sensor_lstm.onnx"
    shutil.copy(SENSOR_ONNX, model)
    without_metadata(model)
    content = model.read_bytes()
    manifest = {**MANIFEST, "files": {model.name: {"sha256": sha256_of(content), "size": len(content)}}}
    text = json.dumps(manifest).replace(
        f'"target_scale": {json.dumps(MANIFEST["scaling"]["target_scale"])}', f'"target_scale": {value}'
    )
    assert text != json.dumps(manifest)
    (tmp_path / "sensor_lstm.json").write_text(text)
    result = run("--stream", SENSOR_CSV, "--model", model)
    assert result.exit_code == 2 and result.stdout == ""
    assert message in result.stderr and len(result.stderr.splitlines()) == 1


def test_a_deeply_nested_manifest_is_one_line_not_a_recursion_error(tmp_path: Path):
    model = _model_with_manifest(tmp_path, "[" * 100_000 + "]" * 100_000)
    result = run("--stream", SENSOR_CSV, "--model", model)
    assert result.exit_code == 2
    assert result.stderr.strip().endswith("is nested too deeply to be a manifest")


@pytest.mark.parametrize("role", ["model", "manifest"])
@pytest.mark.parametrize("special", ["/dev/zero", "fifo"])
def test_a_device_or_fifo_as_model_or_manifest_is_refused_at_once(tmp_path: Path, role, special):
    # Before: /dev/zero was read until a MemoryError, and a FIFO as the model hung forever.
    model, manifest = tmp_path / "sensor_lstm.onnx", tmp_path / "sensor_lstm.json"
    shutil.copy(SENSOR_ONNX, model)
    shutil.copy(EXPORTED / "sensor_lstm.json", manifest)
    target = model if role == "model" else manifest
    target.unlink()
    if special == "fifo":
        os.mkfifo(target)
    else:
        target.symlink_to(special)
    proc = subprocess.run(
        [sys.executable, "-m", "edgeseq", "run", "--stream", str(SENSOR_CSV), "--model", str(model)],
        cwd=REPO, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert proc.returncode == 2 and proc.stdout == ""
    kind = "a FIFO" if special == "fifo" else "a character device"
    assert f"is not a regular file ({kind})" in proc.stderr and len(proc.stderr.splitlines()) == 1


def test_a_manifest_given_as_the_model_says_so(tmp_path: Path):
    result = run("--stream", SENSOR_CSV, "--model", EXPORTED / "sensor_lstm.json")
    assert result.exit_code == 2
    assert "sensor_lstm.json is a JSON manifest, not a model: give the ONNX file it describes" in result.stderr
    assert "does not list" not in result.stderr


def test_threads_beyond_the_cpus_are_refused_before_any_thread_starts():
    # Before: --threads 100000 started 24,416 threads and took 16.6 GB without reading a row.
    result = run("--stream", SENSOR_CSV, "--model", SENSOR_ONNX, "--threads", "100000")
    assert result.exit_code == 2 and result.stdout == ""
    assert result.stderr == (
        f"edgeseq: error: threads must be 1 to {usable_cpus()} (the CPUs this process may use), got 100000\n"
    )
    assert run("--stream", SENSOR_CSV, "--model", SENSOR_ONNX, "--threads", str(usable_cpus())).exit_code == 0


def _constant_model(path: Path, value: float) -> Path:
    """A bare [1, T, F] -> [1, 1] model whose output is `value` (the first input row's mean times 0, plus it)."""
    import onnx
    from onnx import TensorProto, helper

    features = len(MANIFEST["features"])
    graph = helper.make_graph(
        [
            helper.make_node("ReduceMean", ["window"], ["mean"], keepdims=0),
            helper.make_node("Mul", ["mean", "zero"], ["nothing"]),
            helper.make_node("Add", ["nothing", "value"], ["sum"]),
            helper.make_node("Reshape", ["sum", "shape"], ["forecast"]),
        ],
        "constant",
        [helper.make_tensor_value_info("window", TensorProto.FLOAT, [1, T, features])],
        [helper.make_tensor_value_info("forecast", TensorProto.FLOAT, [1, 1])],
        [
            helper.make_tensor("zero", TensorProto.FLOAT, [], [0.0]),
            helper.make_tensor("value", TensorProto.FLOAT, [], [value]),
            helper.make_tensor("shape", TensorProto.INT64, [2], [1, 1]),
        ],
    )
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), path)
    return path


def _run_bare(tmp_path: Path, value: float):
    """50 lines of the sample through a constant model, without a manifest (the task given as options)."""
    model = _constant_model(tmp_path / "bare.onnx", value)
    scaling = MANIFEST["scaling"]
    return run(
        "--stream", write_lines(tmp_path / "s.csv", LINES[:50]), "--model", model,
        "--features", ",".join(MANIFEST["features"]), "--target", MANIFEST["target"], "--window", T,
        "--horizon", MANIFEST["horizon"], "--input-scale", ",".join(map(repr, scaling["input_scale"])),
        "--target-scale", repr(scaling["target_scale"]),
    )  # fmt: skip


@pytest.mark.parametrize("value", [math.inf, math.nan])
def test_a_forecast_that_is_not_finite_is_reported_and_counted_never_written(tmp_path: Path, value):
    result = _run_bare(tmp_path, value)
    assert result.exit_code == 0, result.output
    assert result.stdout == ""
    assert f"line {T + 1}: the prediction is {value!r}; not written" in result.stderr
    assert f"0 predictions, 0 rows skipped, {50 - T} predictions not finite (not written)" in result.stderr


def test_a_finite_constant_model_is_written_as_json(tmp_path: Path):
    result = _run_bare(tmp_path, 1.5)
    scaling = MANIFEST["scaling"]
    assert result.exit_code == 0, result.output
    got = records(result.stdout)
    target = HEADER.index(MANIFEST["target"])
    last = np.array([float(line.split(",")[target].strip('" ')) for line in LINES[T:50]])
    np.testing.assert_allclose([r["prediction"] for r in got], last + 1.5 * scaling["target_scale"], rtol=1e-6)

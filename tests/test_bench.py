"""edgeseq bench in quick mode: every path runs, agrees with Keras within its tolerance, and the JSON has
the promised shape. Timings are measured, never asserted."""

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from edgeseq.cli import app
from tests.conftest import EXPORTED
from tests.helpers import assert_drawn_png

PATHS = {
    "Keras predict",
    "Keras call",
    "Keras tf.function",
    "LiteRT fp32",
    "LiteRT dynamic-range",
    "onnxruntime fp32",
    "onnxruntime dynamic-int8",
    "onnxruntime static-int8",
    "onnxruntime fp16",
}


# The largest difference from Keras each kind of path may show, per output kind, in the output's own units: written
# here rather than taken from bench's own `agrees`, whose int8 tolerance (0.5) is half the range of a probability.
# Each is about 1.5x the largest difference measured across CPU kernels (benchmarks/int8_cpu_spread.json: int8
# 0.147 on the letters' probabilities, 0.242 on the forecaster's output, both on AVX2; fp16 under 1e-3; fp32 under
# 2e-6) or, for LiteRT's own fp32 LSTM kernel, in benchmarks/bench.sensor_lstm.json (0.016).
TOLERANCES = {
    "letter_rnn": {"fp32": 1e-5, "LiteRT fp32": 1e-4, "fp16": 5e-3, "int8": 0.22},  # softmax probabilities, 0 to 1
    # the network's output: the change over the horizon in units of target_scale (its standard deviation)
    "sensor_lstm": {"fp32": 1e-5, "LiteRT fp32": 0.05, "fp16": 5e-3, "int8": 0.36},
}


@pytest.mark.parametrize("model", ["letter_rnn", "sensor_lstm"])
def test_quick_bench_runs_every_path_and_agrees_with_keras(tmp_path: Path, model):
    out, png, md = tmp_path / "b.json", tmp_path / "b.png", tmp_path / "b.md"
    result = CliRunner().invoke(
        app,
        ["bench", "--model", model, "--quick", "--json", str(out), "--plot", str(png), "--markdown", str(md),
         "--exported", str(EXPORTED)],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    data = json.loads(out.read_text())
    assert {row["path"] for row in data["paths"]} == PATHS
    for row in data["paths"]:
        assert set(row) >= {"p50_ms", "p99_ms", "file_size", "load_s", "max_abs_diff_vs_keras", "agrees"}
        ours = TOLERANCES[model].get(row["path"], TOLERANCES[model][row["precision"]])
        assert row["max_abs_diff_vs_keras"] <= ours, f"{row['path']}: max abs diff {row['max_abs_diff_vs_keras']}"
        assert row["agrees"]
        assert row["p50_ms"] > 0 and row["calls"] == data["windows"] * data["rounds"]
    assert set(data["peak_rss_mb"]) == {"onnxruntime fp32", "LiteRT fp32"}
    assert all(0 < v < 2000 for v in data["peak_rss_mb"].values())
    assert set(data["bars"]) == {
        "onnxruntime fp32 vs LiteRT fp32",
        "onnxruntime dynamic-int8 vs LiteRT dynamic-range",
        "onnxruntime fp32 vs Keras predict",
    }
    assert (data["runner"] is not None) == (model == "sensor_lstm")
    assert data["machine"]["packages"]["ai-edge-litert"].startswith("2.3")
    # batched throughput: every onnxruntime file through its companion, at every batch size, beside one window a
    # call; the forecaster's fp32, fp16 and static-int8 companions bit for bit, the others within their bars
    batched = data["batched"]
    assert batched["batch_sizes"] == [1, 8, 32, 64] and batched["windows"] == 64
    assert set(batched["paths"]) == {path for path in PATHS if path.startswith("onnxruntime")}
    for name, row in batched["paths"].items():
        assert set(row["us_per_window"]) == {"single-window file", "1", "8", "32", "64"}
        assert all(us > 0 for us in row["us_per_window"].values())
        ours = TOLERANCES[model]["int8" if "int8" in name else "fp32"]
        assert max(row["max_abs_diff_vs_one_window"].values()) <= ours, (name, row["max_abs_diff_vs_one_window"])
    if model == "sensor_lstm":
        for name in ("onnxruntime fp32", "onnxruntime fp16", "onnxruntime static-int8"):
            assert set(batched["paths"][name]["max_abs_diff_vs_one_window"].values()) == {0.0}, name
    # LiteRT's converted model keeps its LSTM state (forecaster) or XNNPACK's plan (letters) at batch 1
    assert set(data["batched_failed"]) == {"LiteRT fp32"}
    assert data["batched_failed"]["LiteRT fp32"].startswith("resize_tensor_input to a batch of 8: RuntimeError: ")
    assert "| path | file | one window a call | batch 1 | batch 8 | batch 32 | batch 64 |" in md.read_text()
    assert_drawn_png(png)
    assert "| path | p50 ms |" in md.read_text() and "Command: `" in md.read_text()

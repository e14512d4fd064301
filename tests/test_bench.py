"""edgeseq bench in quick mode: every path runs, agrees with Keras within its tolerance, and the JSON has
the promised shape. Timings are measured, never asserted."""

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from edgeseq.cli import app
from tests.conftest import EXPORTED

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
        assert row["agrees"], f"{row['path']}: max abs diff {row['max_abs_diff_vs_keras']} > {row['tolerance']}"
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
    assert png.read_bytes()[:4] == b"\x89PNG"
    assert "| path | p50 ms |" in md.read_text() and "Command: `" in md.read_text()

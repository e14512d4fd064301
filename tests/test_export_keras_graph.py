"""Issue 26's "done when": a functional Keras 3 model whose LSTM feeds MultiHeadAttention and a residual Add
exports with `edgeseq export --keras` with its LSTM fused, at parity, with a batched companion, and streams through
`edgeseq run` as Keras predicts."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import pytest
from typer.testing import CliRunner

from edgeseq.cli import app
from edgeseq.convert import op_type_counts
from edgeseq.convert.audit import fused_nodes
from tests.streams import records
from tests.test_convert_zoo import kerases

T, F = 64, 6
FEATURES = "a,b,c,d,e,f"


def invoke(*args):
    return CliRunner().invoke(app, [str(a) for a in args])


def attention_model(keras):
    """Input((64, 6)) -> LSTM(32, seq) -> MultiHeadAttention(2, 16)(x, x) -> Add with the LSTM's output ->
    LayerNormalization -> GlobalAveragePooling1D -> Dense(3, softmax), as the issue writes it."""
    keras.utils.set_random_seed(11)
    inputs = keras.Input((T, F), name="x")
    x = keras.layers.LSTM(32, return_sequences=True, name="encoder")(inputs)
    attended = keras.layers.MultiHeadAttention(num_heads=2, key_dim=16, name="attention")(x, x)
    x = keras.layers.LayerNormalization()(keras.layers.Add()([x, attended]))
    x = keras.layers.GlobalAveragePooling1D()(x)
    return keras.Model(inputs, keras.layers.Dense(3, activation="softmax")(x), name="attentive")


@pytest.fixture(scope="module")
def exported(tmp_path_factory) -> tuple[Path, Path, np.ndarray]:
    """The model saved by Keras 3 and exported by the CLI, with a 100-row CSV and Keras's outputs on its windows."""
    tmp = tmp_path_factory.mktemp("graph")
    model = attention_model(kerases()["keras3"])
    model.save(tmp / "attentive.keras")
    rows = np.random.default_rng(2).normal(size=(100, F))
    csv = tmp / "rows.csv"
    csv.write_text(FEATURES + "\n" + "".join(",".join(f"{v:.6f}" for v in row) + "\n" for row in rows))
    table = np.loadtxt(csv, delimiter=",", skiprows=1)
    windows = np.stack([table[i - T + 1 : i + 1] for i in range(T - 1, len(table))]).astype(np.float32)
    want = np.asarray(model(windows, training=False))
    out = tmp / "out"
    result = invoke(
        "export", "--keras", tmp / "attentive.keras", "--features", FEATURES, "--labels", "rest,walk,run",
        "--sample", csv, "--out", out,
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    return out, csv, want


def test_the_lstm_before_multi_head_attention_is_one_fused_node_at_parity(exported):
    out, _, _ = exported
    graph = onnx.load(out / "attentive.onnx").graph
    counts = op_type_counts(graph)
    assert dict(fused_nodes(graph)) == {"LSTM": 1} and counts["Loop"] == 0 and counts["Scan"] == 0
    manifest = json.loads((out / "attentive.json").read_text())
    assert manifest["fusion"]["fused"] is True and manifest["fusion"]["recurrent_layers"] == ["encoder (LSTM)"]
    parity = manifest["parity"]["windows"]
    assert parity["count"] == 100 - T + 1 and parity["max_abs_diff"] <= 1e-5 and parity["argmax_mismatches"] == 0


def test_its_batched_companion_computes_each_window_as_the_file_does(exported):
    out, _, _ = exported
    entry = json.loads((out / "attentive.json").read_text())["batched"]["attentive.onnx"]
    assert "none" not in entry, entry
    assert entry["file"] == "attentive.batched.onnx" and entry["rewrites"] == []
    assert entry["max_abs_diff"] <= 1e-5


@pytest.mark.parametrize("batch", ["1", "32"])
def test_it_streams_through_edgeseq_run_as_keras_predicts(exported, batch):
    out, csv, want = exported
    streamed = invoke("run", "--model", out / "attentive.onnx", "--stream", csv, "--batch", batch)
    assert streamed.exit_code == 0, streamed.output
    got = records(streamed.stdout)
    assert [r["row"] for r in got] == list(range(T, 101))
    labels = np.array(["rest", "walk", "run"])
    assert [r["label"] for r in got] == list(labels[want.argmax(axis=1)])
    assert np.abs(np.array([r["probability"] for r in got]) - want.max(axis=1)).max() <= 1e-5


@pytest.mark.parametrize("flavour", ["keras3", "tf_keras"])
def test_a_model_with_two_outputs_writes_a_field_per_output_value(exported, flavour, tmp_path):
    _, csv, _ = exported
    keras = kerases()[flavour]
    inputs = keras.Input((T, F))
    x = keras.layers.LSTM(4)(inputs)
    model = keras.Model(inputs, [keras.layers.Dense(1, name="temp")(x), keras.layers.Dense(2, name="wind")(x)])
    path = tmp_path / ("two.keras" if flavour == "keras3" else "two.h5")
    model.save(path)
    labels = invoke("export", "--keras", path, "--features", FEATURES, "--labels", "a,b,c")
    assert labels.exit_code == 2 and "2 outputs: edgeseq writes a field per output value" in labels.stderr
    result = invoke("export", "--keras", path, "--features", FEATURES, "--out", tmp_path)
    assert result.exit_code == 0, result.output
    manifest = json.loads((tmp_path / "two.json").read_text())
    assert manifest["task"]["targets"] == ["temp", "wind_0", "wind_1"] and manifest["outputs"][0]["shape"] == [1, 3]
    assert manifest["parity"]["windows"]["max_abs_diff"] <= 1e-5
    streamed = invoke("run", "--model", tmp_path / "two.onnx", "--stream", csv)
    got = records(streamed.stdout)
    table = np.loadtxt(csv, delimiter=",", skiprows=1)
    windows = np.stack([table[i - T + 1 : i + 1] for i in range(T - 1, len(table))]).astype(np.float32)
    temp, wind = (np.asarray(out) for out in model(windows))
    assert np.abs(np.array([r["temp"] for r in got]) - temp[:, 0]).max() <= 1e-5
    assert np.abs(np.array([[r["wind_0"], r["wind_1"]] for r in got]) - wind).max() <= 1e-5

"""Stateful layers: exported with their state as explicit inputs and outputs, carried by the runner from one
call to the next, from zero, and reset at a gap; checked against Keras stepping through the same rows."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from edgeseq.errors import ConversionError
from edgeseq.export import export_keras
from edgeseq.export.keras_file import reset_states
from tests.helpers import without_metadata
from tests.streams import records
from tests.test_convert_zoo import kerases
from tests.test_export_keras import invoke

ROWS = 40


def stateful_model(keras, rows_per_call=1):
    keras.utils.set_random_seed(2)
    inputs = keras.Input(batch_shape=(1, rows_per_call, 2))
    x = keras.layers.LSTM(5, stateful=True, return_sequences=True)(inputs)
    x = keras.layers.GRU(4, stateful=True)(x)
    return keras.Model(inputs, keras.layers.Dense(1)(x), name="streaming")


def stream_csv(path: Path, bad_line: int | None = None) -> Path:
    rng = np.random.default_rng(3)
    lines = ["t,a,b"] + [f"{i},{a:.5f},{b:.5f}" for i, (a, b) in enumerate(rng.normal(size=(ROWS, 2)))]
    if bad_line is not None:
        lines[bad_line] = f"{bad_line - 1},NA,0.5"
    path.write_text("\n".join(lines) + "\n")
    return path


def keras_stepping(model, rows: np.ndarray, rows_per_call: int) -> list[float]:
    reset_states(model)
    chunks = [rows[i : i + rows_per_call] for i in range(0, len(rows) - rows_per_call + 1, rows_per_call)]
    return [float(np.asarray(model(chunk[None].astype(np.float32)))[0, 0]) for chunk in chunks]


@pytest.mark.parametrize("flavour", ["keras3", "tf_keras"])
@pytest.mark.parametrize("rows_per_call", [1, 4])
def test_the_runner_carries_the_state_as_keras_steps_through_the_rows(flavour, rows_per_call, tmp_path):
    model = stateful_model(kerases()[flavour], rows_per_call)
    model.save(tmp_path / "m.keras")
    model(np.ones((1, rows_per_call, 2), np.float32))  # a state that is not zero: it must not be frozen
    csv = stream_csv(tmp_path / "s.csv")
    result = export_keras(tmp_path / "m.keras", features=("a", "b"), out_dir=tmp_path, sample=csv, targets=("y",))
    manifest = result.manifest
    assert manifest["stateful"]["rows_per_call"] == rows_per_call
    assert [s["input"] for s in manifest["stateful"]["states"]][-1].endswith(".h")
    assert manifest["parity"]["windows"]["count"] == ROWS // rows_per_call
    streamed = invoke("run", "--model", result.onnx_path, "--stream", csv)
    assert streamed.exit_code == 0, streamed.output
    got = [r["prediction"] for r in records(streamed.stdout)]
    rows = np.loadtxt(csv, delimiter=",", skiprows=1)[:, 1:]
    want = keras_stepping(model, rows, rows_per_call)
    assert len(got) == len(want) == ROWS // rows_per_call
    assert max(abs(a - b) for a, b in zip(got, want, strict=True)) <= 1e-5


def test_a_gap_resets_the_state_as_a_fresh_start_would(tmp_path):
    model = stateful_model(kerases()["keras3"])
    model.save(tmp_path / "m.keras")
    export_keras(
        tmp_path / "m.keras", features=("a", "b"), out_dir=tmp_path, targets=("y",), sample=stream_csv(tmp_path / "c")
    )
    csv = stream_csv(tmp_path / "s.csv", bad_line=21)  # data row 21 (file line 22) is bad
    streamed = invoke("run", "--model", tmp_path / "m.onnx", "--stream", csv)
    assert streamed.exit_code == 0 and "skipped line 22" in streamed.stderr
    got = {r["row"]: r["prediction"] for r in records(streamed.stdout)}
    assert 21 not in got and len(got) == ROWS - 1
    rows = np.loadtxt(stream_csv(tmp_path / "clean.csv"), delimiter=",", skiprows=1)[:, 1:]
    before = keras_stepping(model, rows[:20], 1)
    assert max(abs(got[1 + i] - want) for i, want in enumerate(before)) <= 1e-5
    after = keras_stepping(model, rows[21:], 1)  # from zero again at the row after the gap
    assert max(abs(got[22 + i] - want) for i, want in enumerate(after)) <= 1e-5
    carried_on = keras_stepping(model, np.concatenate([rows[:20], rows[21:]]), 1)[20:]
    assert max(abs(got[22 + i] - want) for i, want in enumerate(carried_on)) > 1e-3  # so the reset mattered


def test_a_gap_in_time_resets_the_state_as_a_fresh_start_would(tmp_path):
    # No row is bad here: the clock jumps. The row after the jump starts from a zero state, as at a bad row.
    model = stateful_model(kerases()["keras3"])
    model.save(tmp_path / "m.keras")
    sample = stream_csv(tmp_path / "c.csv")
    export_keras(
        tmp_path / "m.keras", features=("a", "b"), out_dir=tmp_path, targets=("y",), sample=sample, time_column="t"
    )
    manifest = json.loads((tmp_path / "m.json").read_text())
    manifest["series"] = {"time_format": "unix-seconds", "interval_seconds": 1.0}  # a row a second, checked
    (tmp_path / "m.json").write_text(json.dumps(manifest))
    lines = sample.read_text().splitlines()
    jumped = [
        lines[0],
        *lines[1:21],
        *(f"{int(line.split(',')[0]) + 100},{line.split(',', 1)[1]}" for line in lines[21:]),
    ]
    csv = tmp_path / "s.csv"
    csv.write_text("\n".join(jumped) + "\n")
    streamed = invoke("run", "--model", tmp_path / "m.onnx", "--stream", csv)
    assert streamed.exit_code == 0 and "1 gap in time" in streamed.stderr, streamed.output
    got = [r["prediction"] for r in records(streamed.stdout)]
    assert len(got) == ROWS
    rows = np.loadtxt(sample, delimiter=",", skiprows=1)[:, 1:]
    expected = keras_stepping(model, rows[:20], 1) + keras_stepping(model, rows[20:], 1)  # from zero at the jump
    assert max(abs(a - b) for a, b in zip(got, expected, strict=True)) <= 1e-5
    carried_on = keras_stepping(model, rows, 1)[20:]
    assert max(abs(a - b) for a, b in zip(got[20:], carried_on, strict=True)) > 1e-3  # so the reset mattered


def test_stride_is_the_rows_per_call_and_the_manifest_has_the_state_tensors(tmp_path):
    model = stateful_model(kerases()["tf_keras"], 3)
    model.save(tmp_path / "m.keras")
    csv = stream_csv(tmp_path / "c.csv")
    export_keras(tmp_path / "m.keras", features=("a", "b"), out_dir=tmp_path, targets=("y",), sample=csv)
    manifest = json.loads((tmp_path / "m.json").read_text())
    names = [i["name"] for i in manifest["inputs"]]
    assert names[0] == "window" and len(names) == 4  # and the states: h, c of the LSTM, h of the GRU
    assert [o["shape"] for o in manifest["outputs"]] == [[1, 1], [1, 1, 5], [1, 1, 5], [1, 1, 4]]
    result = invoke("run", "--model", tmp_path / "m.onnx", "--stream", stream_csv(tmp_path / "s.csv"), "--stride", 2)
    assert result.exit_code == 2
    assert "a stateful model takes 3 new rows per call and carries its state on: --stride must be 3" in result.stderr
    refused = invoke("quantize", "--model", tmp_path / "m.onnx", "--mode", "fp16")
    assert refused.exit_code == 2 and "is a stateful model" in refused.stderr


@pytest.mark.parametrize("flavour", ["keras3", "tf_keras"])
def test_a_stateful_layer_that_cannot_be_fused_is_refused_even_with_allow_unfused(flavour, tmp_path):
    keras = kerases()[flavour]
    inputs = keras.Input(batch_shape=(1, 1, 2))
    model = keras.Model(inputs, keras.layers.Bidirectional(keras.layers.GRU(2, stateful=True), name="bi")(inputs))
    model.save(tmp_path / "bi.keras")
    for allow in (False, True):
        with pytest.raises(ConversionError, match=r"bi \(Bidirectional\) is stateful and cannot be fused"):
            export_keras(tmp_path / "bi.keras", features=("a", "b"), out_dir=tmp_path / "o", allow_unfused=allow)


@pytest.fixture(scope="module")
def exported_stateful(tmp_path_factory) -> Path:
    """One stateful export (T = 2), checked on a sample; tests tamper with copies of it."""
    root = tmp_path_factory.mktemp("stateful")
    stateful_model(kerases()["keras3"], 2).save(root / "m.keras")
    csv = stream_csv(root / "s.csv")
    export_keras(root / "m.keras", features=("a", "b"), out_dir=root, targets=("y",), sample=csv)
    return root


def _tampered(tmp_path, edit, exported):
    for name in ("m.onnx", "m.json"):
        (tmp_path / name).write_bytes((exported / name).read_bytes())
    # a file that does not record its states and task: the runner's own checks of the manifest are the defence
    without_metadata(tmp_path / "m.onnx")
    manifest = json.loads((tmp_path / "m.json").read_text())
    edit(manifest)
    (tmp_path / "m.json").write_text(json.dumps(manifest))
    return invoke("run", "--model", tmp_path / "m.onnx", "--stream", stream_csv(tmp_path / "s.csv"))


def _cross(manifest):  # the GRU's h fed from the LSTM's h: runs, and gives wrong predictions
    states = manifest["stateful"]["states"]
    states[0]["output"], states[2]["output"] = states[2]["output"], states[0]["output"]


def _h_from_c(manifest):  # the LSTM's h fed from its c: the same shape, so only the pairing can tell
    states = manifest["stateful"]["states"]
    states[0]["output"], states[1]["output"] = states[1]["output"], states[0]["output"]


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (_cross, "joins"),
        (_h_from_c, "state state_out.lstm"),
        (lambda m: m.pop("stateful"), "a stateful model runs with its manifest only"),
        (lambda m: m["stateful"]["states"].pop(), "carries states from"),
        (lambda m: m.update(stateful=["x"]), "stateful must be"),
        (lambda m: m["stateful"]["states"][0].update(input=1), "state input must be a name"),
        (lambda m: m.update(normalization={"mean": "12", "std": "34"}), "normalization mean must be a list of numbers"),
        (lambda m: m["task"].update(targets=["\ud800"]), "is not valid text"),
    ],
)
def test_a_stateful_manifest_that_does_not_match_the_model_is_refused_before_any_row(
    tmp_path, edit, message, exported_stateful
):
    result = _tampered(tmp_path, edit, exported_stateful)
    assert result.exit_code == 2, result.output
    assert message in result.stderr and "Traceback" not in result.output and result.stdout == ""


def test_quantizing_a_stateful_model_is_refused_before_the_export_writes_anything(tmp_path):
    stateful_model(kerases()["tf_keras"]).save(tmp_path / "m.keras")
    result = invoke(
        "export", "--keras", tmp_path / "m.keras", "--features", "a,b", "--out", tmp_path / "o", "--quantize", "fp16"
    )
    assert result.exit_code == 2 and "is a stateful model: --quantize does not carry state" in result.stderr
    assert not (tmp_path / "o").exists()

"""`edgeseq export --keras FILE`: a user's model from either Keras, in every file format, exported fused and
checked, then streamed by `edgeseq run`; and the one-line refusals for what cannot be exported."""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from typer.testing import CliRunner

from edgeseq.cli import app
from edgeseq.convert.audit import fused_nodes
from edgeseq.convert.loading import detect
from edgeseq.errors import BadInputError, ParityError
from edgeseq.export import export_keras
from edgeseq.export import keras_file as keras_file_module
from tests.streams import records
from tests.test_convert_zoo import kerases

T, F = 12, 3
FEATURES = "ax,ay,az"
MEAN, STD = (0.5, -1.0, 2.0), (2.0, 0.5, 4.0)


def invoke(*args):
    return CliRunner().invoke(app, [str(a) for a in args])


def done_when_model(keras, name="activity", outputs=3):
    """The issue's own case: Conv1D -> Bidirectional(GRU, return_sequences) -> LSTM -> Dense (softmax)."""
    keras.utils.set_random_seed(5)
    return keras.Sequential(
        [
            keras.Input((T, F)),
            keras.layers.Conv1D(6, 3, padding="causal", activation="relu"),
            keras.layers.Bidirectional(keras.layers.GRU(5, return_sequences=True)),
            keras.layers.LSTM(6),
            keras.layers.Dense(outputs, activation="softmax" if outputs > 1 else None),
        ],
        name=name,
    )


def sensor_csv(path: Path, rows: int = 80, seed: int = 0) -> Path:
    rng = np.random.default_rng(seed)
    lines = ["time,ax,note,ay,az"]
    for i in range(rows):
        ax, ay, az = rng.normal(MEAN, STD)
        lines.append(f"2026-01-01T00:{i // 60:02d}:{i % 60:02d},{ax:.5f},x,{ay:.5f},{az:.5f}")
    path.write_text("\r\n".join(lines) + "\r\n")  # a Windows-made file
    return path


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> dict[str, Path]:
    """The same architecture saved in every format edgeseq reads."""
    root = tmp_path_factory.mktemp("byo")
    k = kerases()
    out = {}
    m3 = done_when_model(k["keras3"])
    m3.save(root / "k3.keras")
    out["keras3 .keras"] = root / "k3.keras"
    m3.save(root / "k3.h5")
    out["keras3 .h5"] = root / "k3.h5"
    m2 = done_when_model(k["tf_keras"])
    m2.save(root / "k2.keras")
    out["tf_keras .keras"] = root / "k2.keras"
    m2.save(root / "k2.h5")
    out["tf_keras .h5"] = root / "k2.h5"
    m2.save(root / "k2_savedmodel", save_format="tf")
    out["tf_keras SavedModel"] = root / "k2_savedmodel"
    out["sample"] = sensor_csv(root / "sample.csv")
    return out


EXPECTED_KERAS = {
    "keras3 .keras": "Keras 3",
    "keras3 .h5": "Keras 3",
    "tf_keras .keras": "tf.keras 2",
    "tf_keras .h5": "tf.keras 2",
    "tf_keras SavedModel": "tf.keras 2",
}


@pytest.mark.parametrize("kind", list(EXPECTED_KERAS))
def test_every_file_format_loads_with_the_keras_that_wrote_it_and_exports_fused(files, kind, tmp_path):
    result = export_keras(
        files[kind], features=tuple(FEATURES.split(",")), out_dir=tmp_path, name="m", sample=files["sample"],
        mean=MEAN, std=STD, labels=("walk", "run", "sit"),
    )  # fmt: skip
    manifest = result.manifest
    assert manifest["kind"] == "sequence" and manifest["source"]["keras"] == EXPECTED_KERAS[kind]
    assert manifest["parity"]["windows"]["max_abs_diff"] <= 1e-5
    assert manifest["parity"]["windows"]["count"] == 80 - T + 1
    assert manifest["parity"]["windows"]["argmax_mismatches"] == 0
    assert manifest["parity"]["keras_unchanged_after_conversion"] is True
    graph = onnx.load(result.onnx_path).graph
    assert dict(fused_nodes(graph)) == {"GRU (bidirectional)": 1, "LSTM": 1}
    assert manifest["fusion"]["fused"] is True


def _keras_on_windows(path: Path, x: np.ndarray) -> np.ndarray:
    from edgeseq.convert.loading import load

    model = load(path).model
    return np.asarray(model(x, training=False))


def test_a_keras3_classifier_streams_through_edgeseq_run_as_keras_predicts(files, tmp_path):
    # The "done when": export with the CLI, stream with the CLI, and compare every record with Keras 3
    # run on the same windows, normalised here by hand (not by the code under test).
    exported = invoke(
        "export", "--keras", files["keras3 .keras"], "--features", FEATURES, "--labels", "walk,run,sit",
        "--sample", files["sample"], "--mean", ",".join(map(str, MEAN)), "--std", ",".join(map(str, STD)),
        "--time-column", "time", "--out", tmp_path,
    )  # fmt: skip
    assert exported.exit_code == 0, exported.output
    assert "k3: " in exported.stdout and "parity max abs diff" in exported.stdout
    streamed = invoke("run", "--model", tmp_path / "k3.onnx", "--stream", files["sample"])
    assert streamed.exit_code == 0, streamed.output
    got = records(streamed.stdout)
    assert len(got) == 80 - T + 1
    assert set(got[0]) == {"row", "time", "label", "probability"}
    assert got[0]["row"] == T and got[0]["time"] == f"2026-01-01T00:00:{T - 1:02d}"
    table = np.loadtxt(files["sample"], delimiter=",", skiprows=1, usecols=(1, 3, 4))
    x = np.stack([(table[i - T + 1 : i + 1] - MEAN) / STD for i in range(T - 1, len(table))]).astype(np.float32)
    want = _keras_on_windows(files["keras3 .keras"], x)
    labels = np.array(["walk", "run", "sit"])
    assert [r["label"] for r in got] == list(labels[want.argmax(axis=1)])
    assert np.abs(np.array([r["probability"] for r in got]) - want.max(axis=1)).max() <= 1e-5
    # the normalisation is in the graph: the file takes the raw rows, float64, in any onnxruntime
    manifest = json.loads((tmp_path / "k3.json").read_text())
    assert manifest["inputs"][0]["dtype"] == "float64" and manifest["normalization"]["in_graph"] is True
    graph = onnx.load(tmp_path / "k3.onnx").graph
    assert sorted(n.op_type for n in graph.node if n.name.startswith("edgeseq_io/pre/")) == ["Cast", "Div", "Sub"]
    session = ort.InferenceSession(str(tmp_path / "k3.onnx"), providers=["CPUExecutionProvider"])
    raw = table[-T:][None].astype(np.float64)
    assert np.abs(session.run(None, {"window": raw})[0][0] - want[-1]).max() <= 1e-5


def test_a_regressor_with_several_outputs_writes_one_field_per_target(tmp_path):
    keras = kerases()["keras3"]
    model = keras.Sequential([keras.Input((None, 2)), keras.layers.GRU(4), keras.layers.Dense(2)], name="two")
    model.save(tmp_path / "two.keras")
    csv = tmp_path / "s.csv"
    csv.write_text("a,b\n" + "".join(f"{i * 0.1},{1 - i * 0.05}\n" for i in range(10)))
    no_window = invoke("export", "--keras", tmp_path / "two.keras", "--features", "a,b", "--out", tmp_path)
    assert no_window.exit_code == 2 and "takes windows of any length" in no_window.stderr
    assert "give --window T" in no_window.stderr
    exported = invoke(
        "export", "--keras", tmp_path / "two.keras", "--features", "a,b", "--window", 4, "--target", "temp,hum",
        "--out", tmp_path,
    )  # fmt: skip
    assert exported.exit_code == 0, exported.output
    assert "500 random windows" in exported.stdout
    manifest = json.loads((tmp_path / "two.json").read_text())
    assert manifest["inputs"][0]["shape"] == [1, 4, 2] and manifest["outputs"][0]["shape"] == [1, 2]
    assert "standard normal" in manifest["parity"]["windows"]["compared"]
    jsonl = invoke("run", "--model", tmp_path / "two.onnx", "--stream", csv)
    assert [set(r) for r in records(jsonl.stdout)] == [{"row", "temp", "hum"}] * 7
    x = np.array([[[i * 0.1, 1 - i * 0.05] for i in range(6, 10)]], np.float32)
    want = np.asarray(model(x))[0]
    last = records(jsonl.stdout)[-1]
    assert abs(last["temp"] - want[0]) <= 1e-5 and abs(last["hum"] - want[1]) <= 1e-5
    as_csv = invoke("run", "--model", tmp_path / "two.onnx", "--stream", csv, "--format", "csv")
    assert as_csv.stdout.splitlines()[0] == "row,temp,hum"


def test_the_runner_refuses_forecaster_options_for_a_sequence_model(files, tmp_path):
    export_keras(files["keras3 .keras"], features=tuple(FEATURES.split(",")), out_dir=tmp_path, labels=("a", "b", "c"))
    result = invoke("run", "--model", tmp_path / "k3.onnx", "--stream", files["sample"], "--window", 5)
    assert result.exit_code == 2
    assert "--window: these options describe a forecaster without a manifest" in result.stderr


def test_a_parity_miss_raises_with_the_numbers_and_writes_nothing(files, tmp_path, monkeypatch):
    real = keras_file_module.run_onnx
    monkeypatch.setattr(keras_file_module, "run_onnx", lambda model, x: real(model, x) + 1e-3)
    expected = r"on output 'output' over 500 random windows.*: max abs diff 0.001 > atol 1e-05"
    with pytest.raises(ParityError, match=expected):
        export_keras(files["tf_keras .h5"], features=tuple(FEATURES.split(",")), out_dir=tmp_path, targets=None,
                     labels=("a", "b", "c"))  # fmt: skip
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--features", "a,b"], "k3.keras takes 3 features per row, but --features names 2: a, b"),
        (["--features", FEATURES, "--window", 7], "k3.keras takes windows of 12 rows; --window 7 contradicts it"),
        (["--features", FEATURES, "--labels", "a,b"], "the model has 3 outputs, but --labels names 2"),
        (["--features", FEATURES, "--labels", "a,b,c", "--target", "x"], "give --labels (a classifier) or --target"),
        (["--features", FEATURES, "--mean", "0,0,0"], "--mean needs --std: the model's input is (x - mean) / std"),
        (["--features", FEATURES, "--std", "1,1,1"], "--std needs --mean: the model's input is (x - mean) / std"),
        (["--features", FEATURES, "--mean", "0,0,0", "--std", "1,0,1"], "std of ay is 0.0"),
        (["--features", FEATURES, "--name", "a.b"], "--name 'a.b': use 1 to 100 letters, digits"),
        (["--features", FEATURES, "--model", "letter_rnn"], "--model and --retrain are for the built-in models"),
        ([], "--keras needs --features"),
    ],
)
def test_options_that_do_not_fit_the_model_are_refused_in_one_line(files, tmp_path, args, message):
    result = invoke("export", "--keras", files["keras3 .keras"], "--out", tmp_path, *args)
    assert result.exit_code == 2, result.output
    assert message in result.stderr and "Traceback" not in result.output
    assert list(tmp_path.iterdir()) == []


def test_byo_options_without_keras_are_refused():
    result = invoke("export", "--features", "a,b", "--labels", "x")
    assert result.exit_code == 2 and "--features, --labels: only with --keras FILE" in result.stderr


def _unloadable(tmp_path: Path) -> dict[str, tuple[Path, str]]:
    text = tmp_path / "notes.keras"
    text.write_text("not a model\n")
    zipped = tmp_path / "other.keras"
    with zipfile.ZipFile(zipped, "w") as archive:
        archive.writestr("readme.txt", "hello")
    onnx_file = tmp_path / "m.onnx"
    onnx_file.write_bytes(b"\x08\x07")
    empty_dir = tmp_path / "folder"
    empty_dir.mkdir()
    future = tmp_path / "future.keras"
    with zipfile.ZipFile(future, "w") as archive:
        archive.writestr("metadata.json", json.dumps({"keras_version": "4.0.0"}))
    return {
        "text": (text, "is not a Keras model file; expected a Keras 3 .keras file"),
        "zip": (zipped, "is a zip file, not a .keras model"),
        "onnx": (onnx_file, "is already an ONNX file"),
        "dir": (empty_dir, "is a directory, not a SavedModel"),
        "missing": (tmp_path / "nope.keras", "nope.keras: no such file or directory"),
        "future": (future, "was written by Keras 4.0.0; edgeseq reads Keras 2 and 3 files"),
    }


def test_files_edgeseq_cannot_load_get_one_line_saying_what_they_are(tmp_path):
    for what, (path, message) in _unloadable(tmp_path).items():
        result = invoke("export", "--keras", path, "--features", "a", "--out", tmp_path / "out")
        assert result.exit_code == 2, (what, result.output)
        assert message in result.stderr, (what, result.stderr)
        assert len(result.stderr.strip().splitlines()) <= 2 and "Traceback" not in result.output  # progress + error


def test_weights_only_and_export_savedmodels_are_explained(tmp_path):
    keras = kerases()["keras3"]
    model = done_when_model(keras)
    model.save_weights(tmp_path / "w.weights.h5")
    model.export(tmp_path / "served", verbose=False)
    with pytest.raises(BadInputError, match="holds weights only"):
        detect(tmp_path / "w.weights.h5")
    with pytest.raises(BadInputError, match=r"SavedModel without Keras metadata .*model\.save"):
        detect(tmp_path / "served")


def test_a_model_with_two_inputs_or_a_sequence_output_is_refused(tmp_path):
    keras = kerases()["keras3"]
    a, b = keras.Input((T, F)), keras.Input((T, F))
    two = keras.Model([a, b], keras.layers.Add()([keras.layers.Flatten()(a), keras.layers.Flatten()(b)]))
    two.save(tmp_path / "two.keras")
    seq = keras.Sequential([keras.Input((T, F)), keras.layers.LSTM(2, return_sequences=True)])
    seq.save(tmp_path / "seq.keras")
    first = invoke("export", "--keras", tmp_path / "two.keras", "--features", FEATURES, "--out", tmp_path / "o")
    assert first.exit_code == 2 and "has 2 inputs; edgeseq exports models with one input" in first.stderr
    second = invoke("export", "--keras", tmp_path / "seq.keras", "--features", FEATURES, "--out", tmp_path / "o")
    assert second.exit_code == 2 and "returns shape [1, 12, 2] for one window" in second.stderr


def test_quantize_info_and_bench_work_on_an_exported_user_model(files, tmp_path):
    exported = invoke(
        "export", "--keras", files["tf_keras .keras"], "--features", FEATURES, "--labels", "walk,run,sit",
        "--sample", files["sample"], "--out", tmp_path, "--quantize", "dynamic-int8,static-int8,fp16",
    )  # fmt: skip
    assert exported.exit_code == 0, exported.output
    assert "k2.static-int8.onnx" in exported.stdout and "from fp32 on 69 windows of sample.csv" in exported.stdout
    report = json.loads((tmp_path / "quantization.json").read_text())["models"]["k2"]
    assert report["kind"] == "sequence" and set(report["variants"]) == {"fp32", "dynamic-int8", "static-int8", "fp16"}
    assert (
        report["variants"]["static-int8"]["calibration"]["source"] == "69 windows of sample.csv (the export's --sample)"
    )
    # the figures depend on the CPU's kernels (int8 above all): that they were measured is what is asserted
    assert all("argmax_agreement" in row and "latency_ms_p50" in row for row in report["variants"].values())
    info = invoke("info", tmp_path / "k2.onnx")
    assert info.exit_code == 0 and "kind = sequence" in info.stdout
    assert "fusion      all fused" in info.stdout and "GRU (bidirectional) x1" in info.stdout
    bench = invoke("bench", "--model", "k2", "--exported", tmp_path, "--quick")
    assert bench.exit_code == 0, bench.output
    assert "onnxruntime fp32" in bench.stdout and "onnxruntime dynamic-int8" in bench.stdout
    missing = invoke("bench", "--model", "nope", "--exported", tmp_path, "--quick")
    assert missing.exit_code == 2 and "(models in" in missing.stderr and "k2" in missing.stderr


def test_static_int8_of_a_model_exported_without_a_sample_is_refused_with_the_way_out(files, tmp_path):
    export_keras(files["keras3 .keras"], features=tuple(FEATURES.split(",")), out_dir=tmp_path, labels=("a", "b", "c"))
    result = invoke("quantize", "--model", tmp_path / "k3.onnx", "--mode", "static-int8")
    assert result.exit_code == 2
    assert "exported without --sample: static-int8 calibrates on real windows only" in result.stderr

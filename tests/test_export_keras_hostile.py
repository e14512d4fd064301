"""`export --keras` and `run` against the files, models and options an adversarial review fed them: each
case failed before (a traceback, a wrong result with exit 0, or code from a model file run on export)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from edgeseq.errors import ConversionError
from edgeseq.export import export_keras
from tests.helpers import without_metadata
from tests.streams import records
from tests.test_convert_zoo import kerases
from tests.test_export_keras import FEATURES, done_when_model, invoke, sensor_csv


def test_a_lambda_in_a_tf_keras_h5_file_is_refused_and_its_code_never_runs(tmp_path):
    tf_keras = kerases()["tf_keras"]
    marker = tmp_path / "code_ran"

    def side_effect(x, path=str(marker)):
        open(path, "w").close()  # what a hostile model file could do instead
        return x

    model = tf_keras.Sequential([tf_keras.Input((6, 3)), tf_keras.layers.Lambda(side_effect), tf_keras.layers.LSTM(2)])
    model.save(tmp_path / "evil.h5")
    marker.unlink()  # saving traced the function once
    result = invoke("export", "--keras", tmp_path / "evil.h5", "--features", FEATURES, "--out", tmp_path / "o")
    assert result.exit_code == 2 and "has a Lambda layer, whose Python code would run" in result.stderr
    assert not marker.exists()


def test_an_embedding_with_mask_zero_exports_with_its_padding_ids_skipped(tmp_path):
    # before issue 26's masking: refused, "the model masks steps"; id 0 is now skipped as Keras skips it
    keras = kerases()["keras3"]
    model = keras.Sequential(
        [keras.Input((6,)), keras.layers.Embedding(5, 4, mask_zero=True), keras.layers.LSTM(3, name="l")]
    )
    model.save(tmp_path / "m.keras")
    result = export_keras(tmp_path / "m.keras", features=("a",), out_dir=tmp_path / "o")
    assert result.manifest["fusion"]["fused"] is True and result.manifest["tokens"]["vocabulary"] == 5
    assert result.manifest["parity"]["windows"]["max_abs_diff"] <= 1e-5


@pytest.mark.parametrize("flavour", ["keras3", "tf_keras"])
def test_operations_between_layers_are_traced_with_the_layers_and_the_lstm_fused(flavour, tmp_path):
    # before issue 26's graph converter: refused by name, and converted whole by tf2onnx with --allow-unfused
    keras = kerases()[flavour]
    inputs = keras.Input((6, 3))
    x = keras.layers.LSTM(4, return_sequences=True, name="l")(inputs * 2.0)
    model = keras.Model(inputs, keras.layers.Dense(1)(x[:, -1, :]))
    path = tmp_path / ("m.keras" if flavour == "keras3" else "m.h5")
    model.save(path)
    result = export_keras(path, features=tuple(FEATURES.split(",")), out_dir=tmp_path / "o")
    assert result.manifest["fusion"]["fused"] is True and result.manifest["fusion"]["found_fused"] == {"LSTM": 1}
    assert result.manifest["parity"]["windows"]["max_abs_diff"] <= 1e-5


def test_a_generic_rnn_over_a_cell_is_named_as_such(tmp_path):
    keras = kerases()["keras3"]
    model = keras.Sequential([keras.Input((6, 3)), keras.layers.RNN(keras.layers.LSTMCell(4), name="r")])
    model.save(tmp_path / "m.keras")
    with pytest.raises(ConversionError, match=r"r \(RNN\): a generic RNN layer over a LSTMCell"):
        export_keras(tmp_path / "m.keras", features=tuple(FEATURES.split(",")), out_dir=tmp_path / "o")


def test_a_window_the_model_fails_on_is_reported_and_the_stream_goes_on(tmp_path):
    keras = kerases()["keras3"]
    model = keras.Sequential(
        [
            keras.Input((4, 1)),
            keras.layers.Reshape((4,)),
            keras.layers.Embedding(5, 3),
            keras.layers.GRU(2),
            keras.layers.Dense(1),
        ]
    )
    model.save(tmp_path / "emb.keras")
    export_keras(tmp_path / "emb.keras", features=("a",), out_dir=tmp_path, targets=("y",))
    csv = tmp_path / "s.csv"
    csv.write_text("a\n1\n2\n3\n4\n70\n1\n2\n3\n4\n")  # 70: outside the embedding's 5 rows
    result = invoke("run", "--model", tmp_path / "emb.onnx", "--stream", csv)
    assert result.exit_code == 0 and "Traceback" not in result.output
    assert [r["row"] for r in records(result.stdout)] == [4, 9]
    assert result.stderr.count("the model failed on this window") == 4
    assert "the model failed on 4 windows (not written)" in result.stderr
    failed = invoke("run", "--model", tmp_path / "emb.onnx", "--stream", csv, "--on-bad-row", "fail")
    assert failed.exit_code == 1 and "stopping (--on-bad-row fail)" in failed.stderr
    # the run stops at the failing window's row: the rows after it, read in the same read, are not counted
    after = tmp_path / "after.csv"
    after.write_text("a\n1\n2\n3\n4\n70\n1\nx\n2\n")
    failed = invoke("run", "--model", tmp_path / "emb.onnx", "--stream", after, "--on-bad-row", "fail")
    assert failed.exit_code == 1 and "line 6: the model failed on this window" in failed.stderr
    assert "5 rows read, 1 predictions, 0 rows skipped" in failed.stderr, failed.stderr


def test_a_one_output_model_is_a_binary_classifier_with_two_labels(tmp_path):
    keras = kerases()["keras3"]
    keras.utils.set_random_seed(1)
    model = keras.Sequential([keras.Input((12, 3)), keras.layers.GRU(3), keras.layers.Dense(1, activation="sigmoid")])
    model.save(tmp_path / "b.keras")
    one = invoke(
        "export", "--keras", tmp_path / "b.keras", "--features", FEATURES, "--labels", "alarm", "--out", tmp_path
    )
    assert one.exit_code == 2 and "--labels needs two names, the first for outputs below 0.5" in one.stderr
    csv = sensor_csv(tmp_path / "s.csv")
    two = invoke(
        "export", "--keras", tmp_path / "b.keras", "--features", FEATURES, "--labels", "ok,alarm", "--sample", csv,
        "--out", tmp_path,
    )  # fmt: skip
    assert two.exit_code == 0, two.output
    got = records(invoke("run", "--model", tmp_path / "b.onnx", "--stream", csv).stdout)
    table = np.loadtxt(csv, delimiter=",", skiprows=1, usecols=(1, 3, 4))
    p = np.asarray(model(np.stack([table[i - 11 : i + 1] for i in range(11, len(table))]).astype(np.float32)))[:, 0]
    assert [r["label"] for r in got] == ["alarm" if v >= 0.5 else "ok" for v in p]
    assert max(abs(r["probability"] - (v if v >= 0.5 else 1 - v)) for r, v in zip(got, p, strict=True)) <= 1e-5


def test_static_int8_without_a_sample_is_refused_before_anything_is_written(tmp_path):
    keras = kerases()["keras3"]
    done_when_model(keras).save(tmp_path / "m.keras")
    result = invoke(
        "export", "--keras", tmp_path / "m.keras", "--features", FEATURES, "--labels", "a,b,c", "--out",
        tmp_path / "o", "--quantize", "static-int8",
    )  # fmt: skip
    assert result.exit_code == 2 and "static-int8 calibrates on real windows: give --sample" in result.stderr
    assert not (tmp_path / "o").exists()


def test_a_model_whose_sample_is_gone_does_not_fail_the_next_export_in_that_directory(tmp_path):
    keras = kerases()["keras3"]
    done_when_model(keras).save(tmp_path / "m.keras")
    csv = sensor_csv(tmp_path / "s.csv")
    first = invoke(
        "export", "--keras", tmp_path / "m.keras", "--features", FEATURES, "--labels", "a,b,c", "--sample", csv,
        "--out", tmp_path / "o", "--name", "first", "--quantize", "static-int8",
    )  # fmt: skip
    assert first.exit_code == 0, first.output
    csv.unlink()
    second = invoke(
        "export", "--keras", tmp_path / "m.keras", "--features", FEATURES, "--labels", "a,b,c", "--out",
        tmp_path / "o", "--name", "second",
    )  # fmt: skip
    assert second.exit_code == 0, second.output
    assert "warning: first not measured again: the sample" in second.stderr
    report = json.loads((tmp_path / "o" / "quantization.json").read_text())
    assert "stale" in report["models"]["first"] and "first" in report["not_measured"]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--out", "FILE"], "--out FILE/o: cannot write there"),
        (["--name", "n" * 101], "use 1 to 100 letters, digits"),
        (["--labels", ""], "--labels is empty"),
    ],
)
def test_unusable_outputs_and_names_are_one_line(tmp_path, args, message):
    keras = kerases()["keras3"]
    done_when_model(keras).save(tmp_path / "m.keras")
    (tmp_path / "FILE").write_text("a file, not a directory\n")
    args = [str(tmp_path / "FILE" / "o") if a == "FILE" else a for a in args]
    message = message.replace("FILE", str(tmp_path / "FILE"))
    result = invoke("export", "--keras", tmp_path / "m.keras", "--features", FEATURES, *args)
    assert result.exit_code == 2 and message in result.stderr and "Traceback" not in result.output


def test_an_open_time_axis_with_a_huge_window_is_refused_before_keras_runs_it(tmp_path):
    keras = kerases()["keras3"]
    keras.Sequential([keras.Input((None, 3)), keras.layers.GRU(2)]).save(tmp_path / "m.keras")
    result = invoke("export", "--keras", tmp_path / "m.keras", "--features", FEATURES, "--window", 100_001)
    assert result.exit_code == 2 and "the window must be 1 to 100,000 rows" in result.stderr


def test_a_model_with_a_dict_output_is_refused_in_one_line(tmp_path):
    keras = kerases()["keras3"]
    inputs = keras.Input((12, 3))
    keras.Model(inputs, {"y": keras.layers.GRU(2)(inputs)}).save(tmp_path / "d.keras")
    result = invoke("export", "--keras", tmp_path / "d.keras", "--features", FEATURES, "--out", tmp_path / "o")
    assert result.exit_code == 2 and "returns its outputs as a dict; edgeseq exports one output or a" in result.stderr


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [("features", "axayaz", "features must be a list of names"), ("window", 12.5, "window must be a whole number")],
)
def test_a_hand_edited_manifest_with_a_string_or_fraction_is_refused(tmp_path, field, value, message):
    keras = kerases()["keras3"]
    done_when_model(keras).save(tmp_path / "m.keras")
    export_keras(tmp_path / "m.keras", features=tuple(FEATURES.split(",")), out_dir=tmp_path, labels=("a", "b", "c"))
    without_metadata(tmp_path / "m.onnx")  # else the file's own record of the field refuses the edit first
    manifest = json.loads((tmp_path / "m.json").read_text())
    manifest[field] = value
    (tmp_path / "m.json").write_text(json.dumps(manifest))
    result = invoke("run", "--model", tmp_path / "m.onnx", "--stream", sensor_csv(tmp_path / "s.csv"))
    assert result.exit_code == 2 and message in result.stderr

"""Training bars, and the export path end to end: checks that pass, and checks that fail loudly."""

import json
from pathlib import Path

import numpy as np
import pytest

from edgeseq.convert import keras_unchanged, parity_figures
from edgeseq.data import letter_arrays
from edgeseq.errors import ConversionError, ParityError
from edgeseq.export import artifacts as export_module
from edgeseq.export import export_letter_rnn
from edgeseq.train import LetterConfig, train_letter_rnn
from edgeseq_device.manifest import sha256_of
from tests.conftest import LETTER_KERAS
from tests.helpers import force_unfused


def test_training_reaches_100_percent_and_is_reproducible():
    config = LetterConfig()
    x, y = letter_arrays(config.codec)
    first, record = train_letter_rnn(config)
    second, _ = train_letter_rnn(config)
    p1, p2 = first(x, training=False).numpy(), second(x, training=False).numpy()
    assert np.array_equal(p1.argmax(axis=1), y)
    assert record["train_accuracy"] == 1.0 and record["epochs_run"] == 100
    assert np.array_equal(p1, p2), f"retrain differs by up to {np.abs(p1 - p2).max():.3g}"


def test_export_with_retrain_writes_verified_artifacts(tmp_path: Path):
    result = export_letter_rnn(tmp_path, retrain=True)
    names = sorted(p.name for p in tmp_path.iterdir())
    assert names == ["letter_rnn.batched.onnx", "letter_rnn.json", "letter_rnn.keras", "letter_rnn.onnx"]
    manifest = json.loads((tmp_path / "letter_rnn.json").read_text())
    assert manifest == result.manifest
    assert manifest["files"]["letter_rnn.onnx"]["sha256"] == sha256_of((tmp_path / "letter_rnn.onnx").read_bytes())
    assert manifest["parity"]["all_sequences"]["max_abs_diff"] <= 1e-5
    assert manifest["accuracy"]["patterns_onnx"] == 1.0
    assert manifest["training"]["config"]["seed"] == 7


def test_export_reuses_an_existing_keras_model_without_training(tmp_path: Path):
    (tmp_path / LETTER_KERAS.name).write_bytes(LETTER_KERAS.read_bytes())
    result = export_letter_rnn(tmp_path)
    assert (tmp_path / LETTER_KERAS.name).read_bytes() == LETTER_KERAS.read_bytes()
    assert result.manifest["files"]["letter_rnn.keras"]["sha256"] == sha256_of(LETTER_KERAS.read_bytes())


def test_export_fails_with_numbers_and_writes_nothing_when_onnx_disagrees(tmp_path: Path, monkeypatch):
    import onnx.numpy_helper

    real_convert = export_module.convert

    def skewed_convert(*args, **kwargs):
        converted = real_convert(*args, **kwargs)
        for init in converted.proto.graph.initializer:  # nudge every weight: a wrong graph that still runs
            array = onnx.numpy_helper.to_array(init)
            if array.dtype == np.float32 and array.size > 1:
                init.CopyFrom(onnx.numpy_helper.from_array(array * 1.5, init.name))
        return converted

    monkeypatch.setattr(export_module, "convert", skewed_convert)
    (tmp_path / LETTER_KERAS.name).write_bytes(LETTER_KERAS.read_bytes())
    with pytest.raises(ParityError, match=r"max abs diff [0-9.e-]+ > atol 1e-05 on output 'probs'|argmax differs"):
        export_letter_rnn(tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == [LETTER_KERAS.name]


def test_parity_figures_report_the_numbers():
    ref = np.array([[0.1, 0.9], [0.8, 0.2]], dtype=np.float32)
    ok = parity_figures(ref, ref + 1e-6, atol=1e-5, output="probs", what="2 rows", argmax=True)
    assert ok["max_abs_diff"] == pytest.approx(1e-6, rel=5e-2) and ok["argmax_mismatches"] == 0
    with pytest.raises(ParityError, match=r"max abs diff 0.8 > atol 1e-05; argmax differs on 2 of 2"):
        parity_figures(ref, ref[:, ::-1], atol=1e-5, output="probs", what="2 rows", argmax=True)


def test_keras_unchanged_detects_a_changed_model():
    a = np.zeros((2, 5), dtype=np.float32)
    keras_unchanged(a, a.copy(), "m")
    with pytest.raises(ParityError, match="changed the Keras model"):
        keras_unchanged(a, a + 1e-7, "m")


def test_opset_below_17_is_refused(tmp_path: Path):
    (tmp_path / LETTER_KERAS.name).write_bytes(LETTER_KERAS.read_bytes())
    with pytest.raises(ConversionError, match="opset 13 is below 17"):
        export_letter_rnn(tmp_path, opset=13)


def test_an_unfused_recurrent_layer_fails_export_unless_allowed(tmp_path: Path, monkeypatch):
    force_unfused(monkeypatch)
    (tmp_path / LETTER_KERAS.name).write_bytes(LETTER_KERAS.read_bytes())
    with pytest.raises(
        ConversionError, match=r"cannot write every recurrent layer .*forced by the test.*--allow-unfused"
    ):
        export_letter_rnn(tmp_path)
    assert not (tmp_path / "letter_rnn.onnx").exists()
    result = export_letter_rnn(tmp_path, allow_unfused=True)
    fusion = result.manifest["fusion"]
    assert fusion["fused"] is False and fusion["allowed_unfused"] is True
    assert fusion["found_fused"] == {} and fusion["unfused_ops"] == {"Loop": 1}
    assert result.manifest["parity"]["all_sequences"]["max_abs_diff"] <= 1e-5

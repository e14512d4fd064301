"""The committed letter model: exact signature, manifest that vouches for it, parity with Keras."""

import json

import numpy as np
import onnx
import onnxruntime as ort
import pytest

from edgeseq import frameworks
from edgeseq_device.letters import LetterCodec, LetterPredictor
from edgeseq_device.manifest import sha256_of
from edgeseq_device.model import load_model
from tests.conftest import EXPORTED, LETTER_KERAS, LETTER_MANIFEST, LETTER_ONNX

CODEC = LetterCodec("abcde", 4)


def _dims(value):
    return [d.dim_value for d in value.type.tensor_type.shape.dim]


def test_signature_is_exactly_letters_1x4x5_to_probs_1x5():
    proto = onnx.load(LETTER_ONNX)
    assert [(i.name, _dims(i), i.type.tensor_type.elem_type) for i in proto.graph.input] == [
        ("letters", [1, 4, 5], onnx.TensorProto.FLOAT)
    ]
    assert [(o.name, _dims(o), o.type.tensor_type.elem_type) for o in proto.graph.output] == [
        ("probs", [1, 5], onnx.TensorProto.FLOAT)
    ]
    session = ort.InferenceSession(str(LETTER_ONNX), providers=["CPUExecutionProvider"])
    assert [(i.name, i.shape) for i in session.get_inputs()] == [("letters", [1, 4, 5])]
    assert [(o.name, o.shape) for o in session.get_outputs()] == [("probs", [1, 5])]


def test_opset_and_full_onnx_check():
    proto = onnx.load(LETTER_ONNX)
    assert {o.domain: o.version for o in proto.opset_import}[""] >= 17
    onnx.checker.check_model(proto, full_check=True)


def test_manifest_sha256_and_size_match_every_file():
    manifest = json.loads(LETTER_MANIFEST.read_text())
    assert {"letter_rnn.onnx", "letter_rnn.keras"} <= set(manifest["files"])
    for name, entry in manifest["files"].items():
        content = (EXPORTED / name).read_bytes()
        assert entry == {"sha256": sha256_of(content), "size": len(content)}


def test_metadata_props_describe_the_model():
    props = {p.key: p.value for p in onnx.load(LETTER_ONNX).metadata_props}
    assert props["vocabulary"] == "abcde" and props["window"] == "4" and props["kind"] == "letters"
    for key in ("edgeseq_version", "producer.tensorflow", "producer.tf_keras", "producer.tf2onnx"):
        assert props[key]


def test_manifest_records_passing_parity_figures():
    parity = json.loads(LETTER_MANIFEST.read_text())["parity"]
    assert parity["all_sequences"]["count"] == 625
    assert parity["all_sequences"]["max_abs_diff"] <= 1e-5
    assert parity["all_sequences"]["argmax_mismatches"] == 0
    assert parity["keras_unchanged_after_conversion"] is True


@pytest.fixture(scope="module")
def keras_model():
    _, keras = frameworks.tensorflow()
    return keras.models.load_model(LETTER_KERAS)


def test_parity_keras_vs_onnxruntime_on_all_625_sequences(keras_model):
    x = CODEC.encode_batch(CODEC.all_sequences())
    expected = keras_model(x, training=False).numpy()
    model = load_model(LETTER_ONNX)
    actual = np.concatenate([model.run(x[i : i + 1]) for i in range(len(x))])
    max_abs = float(np.abs(expected - actual).max())
    assert max_abs <= 1e-5, f"max abs diff {max_abs:.3g} > 1e-5"
    assert np.array_equal(expected.argmax(axis=1), actual.argmax(axis=1))


def test_onnx_model_predicts_all_five_patterns():
    predictor = LetterPredictor(load_model(LETTER_ONNX))
    assert [predictor.predict(s) for s in ("abcd", "bcde", "cdea", "deab", "eabc")] == ["e", "a", "b", "c", "d"]


def test_simple_rnn_is_one_fused_rnn_node_with_no_loop_or_scan():
    from edgeseq.convert import op_type_counts

    counts = op_type_counts(onnx.load(LETTER_ONNX).graph)
    assert counts["RNN"] == 1 and counts["Loop"] == 0 and counts["Scan"] == 0
    assert json.loads(LETTER_MANIFEST.read_text())["fusion"]["fused"] is True

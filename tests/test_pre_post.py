"""Pre/post-processing as ONNX ops: bit for bit what numpy does, raw readings with large offsets kept, the
network taken out and put back for quantizing, and files exported before the change still running."""

import json
from dataclasses import replace

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper

from edgeseq.convert import pre_post
from edgeseq.info import describe
from edgeseq_device.forecast import ForecastSpec
from tests.conftest import EXPORTED
from tests.helpers import old_format_forecaster, without_metadata
from tests.streams import SENSOR_CSV, records, run

T, F = 6, 3
SPEC = ForecastSpec(("a", "b", "c"), "b", T, 2, (0.5, 2.0, 1e-3), 0.25, in_graph=True)


def _tiny_network() -> onnx.ModelProto:
    """network_input [1, T, F] float32 -> a fixed linear map -> network_output [1, 1] float32."""
    weights = np.random.default_rng(1).standard_normal((T * F, 1)).astype(np.float32)
    graph = helper.make_graph(
        [
            helper.make_node("Reshape", [pre_post.NETWORK_INPUT, "flat_shape"], ["flat"]),
            helper.make_node("MatMul", ["flat", "weights"], [pre_post.NETWORK_OUTPUT]),
        ],
        "tiny",
        [helper.make_tensor_value_info(pre_post.NETWORK_INPUT, TensorProto.FLOAT, [1, T, F])],
        [helper.make_tensor_value_info(pre_post.NETWORK_OUTPUT, TensorProto.FLOAT, [1, 1])],
        initializer=[
            onnx.numpy_helper.from_array(np.array([1, T * F], np.int64), "flat_shape"),
            onnx.numpy_helper.from_array(weights, "weights"),
        ],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    return model


def _session(model: onnx.ModelProto) -> ort.InferenceSession:
    return ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])


def _windows(offset: float, count: int = 50) -> np.ndarray:
    rng = np.random.default_rng(7)
    walk = np.cumsum(rng.standard_normal((count, T, F)) * [0.3, 1.0, 0.002], axis=1)
    return walk + offset + np.array([20.0, 50.0, 0.0])


@pytest.mark.parametrize("offset", [0.0, 1013.25, 1e6])
def test_pre_processing_in_the_graph_is_bit_for_bit_numpys(offset):
    transform = pre_post.forecaster_transform(SPEC)
    graph = helper.make_graph(
        list(transform.pre),
        "pre",
        [helper.make_tensor_value_info("window", TensorProto.DOUBLE, [1, T, F])],
        [helper.make_tensor_value_info(pre_post.NETWORK_INPUT, TensorProto.FLOAT, [1, T, F])],
        initializer=list(transform.initializers),
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    session = _session(model)
    for window in _windows(offset):
        from_graph = session.run(None, {"window": window[None]})[0]
        relative = window - window[-1]  # the manifest's formula, written out here
        np.testing.assert_array_equal(from_graph[0], (relative / np.array(SPEC.input_scale)).astype(np.float32))
        np.testing.assert_array_equal(from_graph, SPEC.network_inputs(window, np.array([T - 1])))


def test_the_whole_file_equals_numpy_pre_network_numpy_post():
    network = _tiny_network()
    wrapped = pre_post.wrap(network, pre_post.forecaster_transform(SPEC))
    full, net = _session(wrapped), _session(network)
    counts = sorted(node.op_type for node in wrapped.graph.node if node.name.startswith(pre_post.PREFIX))
    assert counts == ["Add", "Cast", "Cast", "Div", "Mul", "Slice", "Slice", "Squeeze", "Sub"]
    for window in _windows(1013.25):
        change = net.run(None, {pre_post.NETWORK_INPUT: SPEC.network_inputs(window, np.array([T - 1]))})[0]
        expected = window[-1, SPEC.target_index] + SPEC.target_scale * float(change[0, 0])
        forecast = full.run(None, {"window": window[None]})[0]
        assert forecast.dtype == np.float64 and forecast.shape == (1, 1)
        assert forecast[0, 0] == expected


def _offset_error(dtype: str, offset: float) -> float:
    """Largest move of the forecast when every reading gains `offset` (the formulation is invariant to it:
    the forecast should move by exactly the offset)."""
    session = _session(pre_post.wrap(_tiny_network(), pre_post.forecaster_transform(SPEC, dtype=dtype)))
    worst = 0.0
    for window in _windows(0.0):
        base = session.run(None, {"window": window[None].astype(dtype)})[0][0, 0]
        moved = session.run(None, {"window": (window[None] + offset).astype(dtype)})[0][0, 0]
        worst = max(worst, abs(float(moved) - offset - float(base)))
    return worst


def test_a_large_offset_is_kept_in_float64_and_would_be_lost_in_float32():
    # a counter near 1e6: float32 steps of 0.0625 there, against the third feature's 0.002 moves
    assert _offset_error("float64", 1e6) < 1e-6
    assert _offset_error("float32", 1e6) > 1e-2


def test_network_of_takes_the_network_out_and_wrap_puts_it_back(tmp_path):
    original = onnx.load(EXPORTED / "sensor_lstm.onnx")
    network, transform = pre_post.network_of(original)
    assert not [n for n in network.graph.node if n.name.startswith(pre_post.PREFIX)]
    assert [i.name for i in network.graph.input] == [pre_post.NETWORK_INPUT]
    assert network.graph.input[0].type.tensor_type.elem_type == TensorProto.FLOAT
    assert [n.op_type for n in transform.pre] == ["Slice", "Sub", "Div", "Cast"]
    again = pre_post.wrap(network, transform)
    assert pre_post.network_of(network) is None
    for field in ("ir_version", "producer_name", "producer_version", "domain", "model_version", "doc_string"):
        assert getattr(again, field) == getattr(original, field), field
    assert again.metadata_props == original.metadata_props and again.opset_import == original.opset_import
    for window in np.random.default_rng(3).normal(20.0, 5.0, (20, 1, 36, 5)):
        a = _session(original).run(None, {"window": window})[0]
        b = _session(again).run(None, {"window": window})[0]
        np.testing.assert_array_equal(a, b)


def test_a_file_exported_before_the_change_still_runs_and_info_says_which_kind(tmp_path):
    old = old_format_forecaster(tmp_path)
    new_run = run("--stream", SENSOR_CSV, "--model", EXPORTED / "sensor_lstm.onnx")
    old_run = run("--stream", tmp_path / "sensor.csv", "--model", old)
    assert old_run.exit_code == 0, old_run.output
    new, before = records(new_run.stdout), records(old_run.stdout)
    assert len(new) == len(before) > 2000
    # numpy scales in float64 and casts, as the graph does: the same float32 input, the same forecast
    worst = max(abs(a["prediction"] - b["prediction"]) for a, b in zip(new, before, strict=True))
    assert worst <= 1e-9, worst
    assert describe(old)["processing"].startswith("by the caller")
    assert describe(EXPORTED / "sensor_lstm.onnx")["processing"].startswith("in the graph")


def test_a_manifest_that_claims_in_graph_for_a_float32_file_is_refused(tmp_path):
    # without the metadata that records the file's scaling, the dtype check is what refuses the claim
    old = without_metadata(old_format_forecaster(tmp_path))
    manifest_path = old.with_suffix(".json")
    manifest = json.loads(manifest_path.read_text())
    manifest["scaling"]["in_graph"] = True
    manifest_path.write_text(json.dumps(manifest))
    result = run("--stream", tmp_path / "sensor.csv", "--model", old)
    assert result.exit_code != 0
    assert "takes window float32[1, 36, 5]" in result.stderr and "raw rows" in result.stderr
    assert "Traceback" not in result.output


def test_the_spec_round_trips_in_graph_through_json():
    assert ForecastSpec.from_json(SPEC.to_json()) == SPEC
    assert ForecastSpec.from_json(replace(SPEC, in_graph=False).to_json()).in_graph is False

"""The committed forecaster: exact signature, fused LSTMs, parity on real windows, the bar against persistence."""

import json
import lzma

import numpy as np
import onnx
import pytest

from edgeseq import frameworks
from edgeseq.convert import op_type_counts
from edgeseq.data import DEFAULT_SENSOR_DATA
from edgeseq_device.forecast import ForecastSpec
from edgeseq_device.manifest import sha256_of
from edgeseq_device.model import load_model
from tests.conftest import EXPORTED
from tests.helpers import assert_drawn_png, sensor_test_windows

ONNX_PATH, KERAS_PATH, MANIFEST_PATH = (EXPORTED / f"sensor_lstm{ext}" for ext in (".onnx", ".keras", ".json"))
MANIFEST = json.loads(MANIFEST_PATH.read_text())
SPEC = ForecastSpec.from_json(MANIFEST)


@pytest.fixture(scope="module")
def test_windows():
    """(raw windows, last target, actual) for every test window, built from the raw file and the manifest."""
    return sensor_test_windows(MANIFEST)


def onnx_forecasts(raw: np.ndarray, path=ONNX_PATH) -> np.ndarray:
    model = load_model(path)
    return np.concatenate([model.run(raw[i : i + 1]) for i in range(len(raw))]).reshape(-1)


def test_manifest_top_level_describes_the_task():
    for key in ("kind", "features", "target", "window", "horizon", "time_column", "scaling", "output_transform"):
        assert key in MANIFEST
    assert MANIFEST["kind"] == "forecaster"
    assert MANIFEST["features"] == ["T2", "RH_2", "T_out", "RH_out", "Tdewpoint"] and MANIFEST["target"] == "T2"
    assert (MANIFEST["window"], MANIFEST["horizon"], MANIFEST["time_column"]) == (36, 6, "date")


def test_signature_is_exactly_window_1xTxF_to_forecast_1x1():
    proto = onnx.load(ONNX_PATH)
    dims = [[d.dim_value for d in v.type.tensor_type.shape.dim] for v in (*proto.graph.input, *proto.graph.output)]
    assert [v.name for v in proto.graph.input] == ["window"] and [v.name for v in proto.graph.output] == ["forecast"]
    assert dims == [[1, 36, 5], [1, 1]]
    # raw readings in, the forecast in deg C out: float64 both, so a large offset loses nothing
    assert proto.graph.input[0].type.tensor_type.elem_type == onnx.TensorProto.DOUBLE
    assert proto.graph.output[0].type.tensor_type.elem_type == onnx.TensorProto.DOUBLE
    onnx.checker.check_model(proto, full_check=True)


def test_the_scaling_and_output_transform_are_ops_in_the_graph():
    graph = onnx.load(ONNX_PATH).graph
    io_ops = [node.op_type for node in graph.node if node.name.startswith("edgeseq_io/")]
    assert sorted(io_ops) == sorted(["Slice", "Sub", "Div", "Cast", "Cast", "Mul", "Slice", "Squeeze", "Add"])
    # the raw window feeds only the pre-processing, and the forecast comes out of the post-processing
    readers = [node for node in graph.node if "window" in node.input]
    assert readers and all(node.name.startswith("edgeseq_io/pre/") for node in readers)
    writer = next(node for node in graph.node if "forecast" in node.output)
    assert writer.name.startswith("edgeseq_io/post/") and writer.op_type == "Add"
    assert MANIFEST["scaling"]["in_graph"] is True


def test_both_lstm_layers_are_fused_with_no_loop_or_scan():
    counts = op_type_counts(onnx.load(ONNX_PATH).graph)
    assert counts["LSTM"] == 2
    assert counts["Loop"] == 0 and counts["Scan"] == 0


def test_metadata_props_carry_the_key_facts():
    props = {p.key: p.value for p in onnx.load(ONNX_PATH).metadata_props}
    assert json.loads(props["features"]) == MANIFEST["features"]
    assert (props["target"], props["window"], props["horizon"]) == ("T2", "36", "6")
    assert json.loads(props["scaling"]) == MANIFEST["scaling"]


def test_every_file_matches_its_manifest_hash():
    for name, entry in MANIFEST["files"].items():
        content = (EXPORTED / name).read_bytes()
        assert entry == {"sha256": sha256_of(content), "size": len(content)}


def test_parity_end_to_end_raw_window_to_forecast_on_real_test_windows(test_windows):
    """The file on raw windows against the manifest's formulas written out here in numpy, around Keras."""
    raw, last, _ = test_windows
    assert len(raw) >= 500
    scale = np.asarray(MANIFEST["scaling"]["input_scale"])
    scaled = ((raw - raw[:, -1:, :]) / scale).astype(np.float32)
    _, keras = frameworks.tensorflow()
    change = keras.models.load_model(KERAS_PATH)(scaled, training=False).numpy().reshape(-1)
    expected = last + MANIFEST["scaling"]["target_scale"] * change.astype(np.float64)
    max_abs = float(np.abs(expected - onnx_forecasts(raw)).max())
    # the network's 1e-5 bar carried into deg C; the CPU moves float32 LSTM results, never this much
    bar = 1e-5 * MANIFEST["scaling"]["target_scale"]
    assert max_abs <= bar, f"max abs diff {max_abs:.3g} deg C > {bar:.3g} over {len(raw)} test windows"


def test_model_beats_persistence_by_10_percent_on_test(test_windows):
    x, last, actual = test_windows
    forecast = onnx_forecasts(x)
    model_rmse = float(np.sqrt(np.mean((forecast - actual) ** 2)))
    persistence_rmse = float(np.sqrt(np.mean((last - actual) ** 2)))
    metrics = MANIFEST["metrics"]
    assert metrics["windows"] == len(x)
    assert model_rmse == pytest.approx(metrics["model"]["rmse"], rel=1e-6)
    assert persistence_rmse == pytest.approx(metrics["persistence"]["rmse"], rel=1e-9)
    assert model_rmse <= 0.9 * persistence_rmse, f"{model_rmse:.4f} vs persistence {persistence_rmse:.4f}"


def test_scaling_was_fitted_before_the_test_rows():
    split = MANIFEST["split"]
    assert split["train"]["lines"][1] < split["validation"]["lines"][0] < split["test"]["lines"][0]
    assert split["train"]["window_ends"][1] < split["validation"]["window_ends"][0]
    assert MANIFEST["training"]["windows"]["train"] == MANIFEST["split"]["train"]["windows"]


def test_sensor_sample_is_the_test_period_verbatim():
    sample = (EXPORTED / "sensor.csv").read_text().splitlines()
    with lzma.open(DEFAULT_SENSOR_DATA, "rt", newline="") as handle:
        original = handle.read().splitlines()
    first = MANIFEST["split"]["test"]["lines"][0] - 2
    assert sample[0] == original[0] and '"date"' in sample[0]
    assert sample[1:] == original[1 + first :]
    assert 2000 <= len(sample) - 1 <= 5000


def test_plots_are_drawn_pngs_of_their_lines():
    assert_drawn_png(EXPORTED / "sensor_lstm.loss.png", (700, 400), ("tab:blue", "tab:orange"))  # training, validation
    # actual, LSTM forecast, persistence
    assert_drawn_png(EXPORTED / "sensor_lstm.forecast.png", (1000, 400), ("black", "tab:blue", "tab:orange"))

"""Helpers shared by the conversion and export tests."""

from __future__ import annotations

import csv
import json
import lzma
import os
import shutil
import signal
import subprocess
from dataclasses import replace
from pathlib import Path

import numpy as np


def force_unfused(monkeypatch, reason: str = "forced by the test") -> None:
    """Make the converter's plan mark every recurrent layer unfusable, as an unsupported layer would be."""
    from edgeseq.convert import converter

    real = converter.make_plan

    def plan(model):
        found = real(model)
        return replace(found, unfusable={layer.name: reason for layer in found.recurrent}, fused=[])

    monkeypatch.setattr(converter, "make_plan", plan)


def old_format_forecaster(tmp_path: Path) -> Path:
    """The shipped forecaster as edgeseq wrote it before pre/post moved into the graph: the bare network
    (scaled float32 window in, scaled change out) and a manifest without in_graph."""
    import onnx

    from edgeseq.convert import pre_post
    from edgeseq_device.manifest import sha256_of
    from tests.conftest import EXPORTED
    from tests.streams import SENSOR_CSV

    manifest = json.loads((EXPORTED / "sensor_lstm.json").read_text())
    network, _ = pre_post.network_of(onnx.load(EXPORTED / "sensor_lstm.onnx"))
    for node in network.graph.node:
        node.input[:] = ["window" if name == pre_post.NETWORK_INPUT else name for name in node.input]
        node.output[:] = ["forecast" if name == pre_post.NETWORK_OUTPUT else name for name in node.output]
    network.graph.input[0].name, network.graph.output[0].name = "window", "forecast"
    manifest["inputs"][0]["dtype"] = manifest["outputs"][0]["dtype"] = "float32"
    for block in (manifest["scaling"], manifest["output_transform"]):
        block.pop("in_graph", None)
        block.pop("applied_by", None)
    # the file's metadata recorded the same scaling and output transform as its manifest
    onnx.helper.set_model_props(
        network,
        {
            **{prop.key: prop.value for prop in network.metadata_props},
            **{key: json.dumps(manifest[key]) for key in ("scaling", "output_transform")},
        },
    )
    path = tmp_path / "old_lstm.onnx"
    onnx.save(network, path)
    content = path.read_bytes()
    manifest["files"] = {path.name: {"sha256": sha256_of(content), "size": len(content)}}
    (tmp_path / "old_lstm.json").write_text(json.dumps(manifest))
    shutil.copy(SENSOR_CSV, tmp_path / "sensor.csv")
    return path


def without_metadata(model: Path) -> Path:
    """`model` rewritten without its metadata_props, as if exported before edgeseq recorded its facts there, and
    its sha256 and size re-recorded in the manifest beside it, if any: the manifest's own checks, and not its
    agreement with the file, then decide what a hand-edited manifest gets."""
    import onnx

    from edgeseq_device.manifest import manifest_path_for, sha256_of

    proto = onnx.load(model)
    del proto.metadata_props[:]
    onnx.save(proto, model)
    manifest_path = manifest_path_for(model)
    if manifest_path.exists():
        manifest = json.loads(manifest_path.read_text())
        content = model.read_bytes()
        manifest["files"][model.name] = {"sha256": sha256_of(content), "size": len(content)}
        manifest_path.write_text(json.dumps(manifest))
    return model


def terminate(process: subprocess.Popen, timeout: float) -> int:
    """SIGTERM to this child's own pid, a wait of up to `timeout` seconds, then SIGKILL; its exit status."""
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout)
    return process.returncode


def require_in_ci(reason: str) -> None:
    """Skip the test, saying why; under CI (the variable CI set), whose .ci/run installs what it needs, fail
    instead: a check that CI must run never passes by being skipped."""
    import pytest

    if os.environ.get("CI"):
        pytest.fail(f"{reason}; CI is set, and .ci/run should have installed it")
    pytest.skip(reason)


def bundle_of_the_forecaster(platform: str, out: Path, *options: str) -> tuple[dict[str, str], str]:
    """`edgeseq bundle` of the shipped fp32 and dynamic-int8 forecasters for `platform` to `out` (with `options`),
    through the CLI; returns the environment to run the bundle's install.sh in (this venv's variables left out),
    and what the command printed."""
    from typer.testing import CliRunner

    from edgeseq.cli import app

    built = CliRunner().invoke(
        app,
        ["bundle", "--model", "exported/sensor_lstm.onnx", "--model", "exported/sensor_lstm.dynamic-int8.onnx",
         "--platform", platform, "--out", str(out), *options],
    )  # fmt: skip
    assert built.exit_code == 0, built.output
    return {k: v for k, v in os.environ.items() if k not in ("VIRTUAL_ENV", "PYTHONPATH")}, built.stdout


def sensor_test_windows(manifest: dict) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(raw windows [n, T, F], last target [n], actual [n]) of every test window of the bundled data set, read
    with nothing but the csv module from the manifest's split lines (independent of edgeseq.data)."""
    from edgeseq.data import DEFAULT_SENSOR_DATA

    with lzma.open(DEFAULT_SENSOR_DATA, "rt", newline="") as handle:
        reader = csv.reader(handle)
        header = next(reader)
        indices = [header.index(name) for name in manifest["features"]]
        values = np.array([[float(row[i]) for i in indices] for row in reader])
    window, horizon = manifest["window"], manifest["horizon"]
    first, last = manifest["split"]["test"]["lines"]  # file lines: the header is line 1
    ends = np.arange(first - 2 + window - 1, last - 1 - horizon)
    y = values[:, manifest["features"].index(manifest["target"])]
    raw = np.stack([values[end - window + 1 : end + 1] for end in ends])
    return raw, y[ends], y[ends + horizon]


def onnx_outputs(path: Path, inputs: np.ndarray) -> np.ndarray:
    """The file's first output for each input, one call each, through a plain onnxruntime session (one thread)."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    return np.concatenate([session.run(None, {name: inputs[i : i + 1]})[0] for i in range(len(inputs))])


def assert_drawn_png(path: Path, size: tuple[int, int] | None = None, colours: tuple[str, ...] = ()) -> np.ndarray:
    """Decode the PNG at `path` and check that something is drawn on it: of `size` (width, height) pixels when
    given, not all one colour, and showing each of `colours` (matplotlib colour names, such as a plotted line's)
    on at least 100 pixels. Returns its RGB pixels [height, width, 3], 0 to 255."""
    from matplotlib.colors import to_rgb
    from PIL import Image

    with Image.open(path) as image:
        assert image.format == "PNG", path
        pixels = np.asarray(image.convert("RGB"), dtype=np.int16)
    if size is not None:
        assert (pixels.shape[1], pixels.shape[0]) == size, (path, pixels.shape)
    distinct = np.unique(pixels.reshape(-1, 3), axis=0)
    assert len(distinct) > 10, f"{path}: {len(distinct)} colours: nothing is drawn"
    for colour in colours:
        rgb = np.round(np.array(to_rgb(colour)) * 255)
        near = int((np.abs(pixels - rgb).max(axis=2) <= 24).sum())
        assert near >= 100, f"{path}: {near} pixels of {colour}"
    return pixels

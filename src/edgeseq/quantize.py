"""Smaller variants of an exported model: int8 dynamic, int8 static (QDQ, calibrated on real windows), fp16.

Shaped like onnxruntime.quantization: path in, path out, a small config, calibration through a one-method
reader. Each variant is written beside the fp32 file as `<name>.<mode>.onnx` and listed, with its sha256,
in the model's manifest, so the device runtime checks variants exactly as it checks the fp32 file; its batched
companion (`<name>.<mode>.batched.onnx`, edgeseq.export.companions) too.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from edgeseq import frameworks
from edgeseq.errors import BadInputError, EdgeseqError, MissingExtraError
from edgeseq_device.files import not_found
from edgeseq_device.manifest import manifest_path_for

MODES = ("dynamic-int8", "static-int8", "fp16")
CALIBRATION_METHODS = ("MinMax", "Entropy", "Percentile")


@dataclass(frozen=True)
class QuantizeConfig:
    """Settings of the variants; the defaults are what `edgeseq quantize` and `export --quantize` use."""

    calibration_method: str = "MinMax"  # onnxruntime CalibrationMethod: MinMax, Entropy, Percentile
    calibration_windows: int = 1000  # real training windows, evenly spaced over the training split


def variant_path(model_path: Path, mode: str) -> Path:
    """exported/sensor_lstm.onnx + dynamic-int8 -> exported/sensor_lstm.dynamic-int8.onnx"""
    return model_path.with_name(f"{model_path.name.split('.', 1)[0]}.{mode}.onnx")


def parse_modes(text: str) -> list[str]:
    modes = [m.strip() for m in text.split(",") if m.strip()]
    unknown = [m for m in modes if m not in MODES]
    if unknown or not modes:
        raise EdgeseqError(
            f"unknown quantization mode {', '.join(unknown) or repr(text)}: choose from {', '.join(MODES)}"
        )
    return modes


class WindowReader:
    """onnxruntime CalibrationDataReader over real model inputs, one [1, ...] window per get_next()."""

    def __init__(self, input_name: str, windows: np.ndarray, count: int) -> None:
        picks = np.linspace(0, len(windows) - 1, min(count, len(windows))).astype(int)
        self._items = iter([{input_name: windows[i : i + 1]} for i in picks])
        self.count = len(picks)

    def get_next(self) -> dict[str, np.ndarray] | None:
        return next(self._items, None)


def _preprocessed(model_input: Path, scratch: Path) -> Path:
    """onnxruntime's quant_pre_process: shape inference and graph optimisation, so LSTM weights are
    initializers the quantizer can see (without it, LSTMs can stay float)."""
    from onnxruntime.quantization.shape_inference import quant_pre_process

    out = scratch / f"{model_input.stem}.pre.onnx"
    quant_pre_process(str(model_input), str(out), skip_symbolic_shape=True)
    return out


def quantize_dynamic_int8(model_input: Path, model_output: Path, scratch: Path) -> None:
    from onnxruntime.quantization import QuantType, quantize_dynamic

    quantize_dynamic(str(_preprocessed(model_input, scratch)), str(model_output), weight_type=QuantType.QInt8)


def quantize_static_int8(
    model_input: Path, model_output: Path, scratch: Path, reader: WindowReader, config: QuantizeConfig
) -> None:
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static

    method = getattr(CalibrationMethod, config.calibration_method)
    quantize_static(
        str(_preprocessed(model_input, scratch)),
        str(model_output),
        reader,
        quant_format=QuantFormat.QDQ,
        activation_type=QuantType.QInt8,
        weight_type=QuantType.QInt8,
        calibrate_method=method,
    )


def convert_fp16(model_input: Path, model_output: Path) -> None:
    """fp16 weights and arithmetic inside; float32 inputs and outputs, so callers do not change."""
    import onnx

    try:
        from onnxconverter_common import float16
    except ImportError:
        raise MissingExtraError(
            f"fp16 needs onnxconverter-common, which is not installed: {frameworks.install_command('train')}"
        ) from None
    onnx.save(float16.convert_float_to_float16(onnx.load(str(model_input)), keep_io_types=True), str(model_output))


def float_nodes_report(path: Path) -> dict[str, Any]:
    """Which compute nodes of a static (QDQ) variant have no QuantizeLinear/DequantizeLinear around them."""
    import onnx

    graph = onnx.load(str(path)).graph
    produced_by = {out: node for node in graph.node for out in node.output}
    skip = {"QuantizeLinear", "DequantizeLinear", "Reshape", "Squeeze", "Unsqueeze", "Slice", "Transpose", "Cast"}
    stayed_float = []
    for node in graph.node:
        if node.op_type in skip:
            continue
        fed_by_dq = any(
            (producer := produced_by.get(name)) is not None and producer.op_type == "DequantizeLinear"
            for name in node.input
            if name
        )
        if not fed_by_dq:
            stayed_float.append(node.op_type)
    return {"float_ops": sorted(set(stayed_float))}


WHY_FLOAT = {
    "LSTM": "onnxruntime's QDQ quantizer has no LSTM support (an int8 LSTM exists only in dynamic mode, as "
    "DynamicQuantizeLSTM), so the LSTM runs in float with its weights and activations unquantized",
    "RNN": "onnxruntime quantizes no RNN op, static or dynamic, so the RNN stays float",
    "Softmax": "quantized Softmax is not in onnxruntime's default QDQ op set",
}


def make_variant(
    model_path: Path,
    mode: str,
    scratch: Path,
    calibration: tuple[np.ndarray, str] | None,
    config: QuantizeConfig,
) -> tuple[Path, dict[str, Any]]:
    """Write one variant beside `model_path`; return its path and how it was made.

    A file with pre/post-processing ops (edgeseq.convert.pre_post) has only its network quantized: the ops
    are taken off, the network alone goes through onnxruntime's quantizer, and the same ops go back around
    the result, so they stay float64 in every variant."""
    import onnx

    from edgeseq.convert import pre_post

    out = variant_path(model_path, mode)
    split = pre_post.network_of(onnx.load(str(model_path)))
    source, made = model_path, out
    if split is not None:
        source, made = scratch / f"network.{model_path.name}", scratch / f"network.{out.name}"
        onnx.save(split[0], source)
    how: dict[str, Any] = {"mode": mode}
    if mode == "dynamic-int8":
        quantize_dynamic_int8(source, made, scratch)
        how["recipe"] = "quant_pre_process + quantize_dynamic(weight_type=QInt8)"
    elif mode == "static-int8":
        if calibration is None:
            raise EdgeseqError("static-int8 needs calibration windows")
        windows, what = calibration
        reader = WindowReader(onnx.load(str(source)).graph.input[0].name, windows, config.calibration_windows)
        quantize_static_int8(source, made, scratch, reader, config)
        how["recipe"] = "quant_pre_process + quantize_static(QDQ, activations and weights QInt8)"
        how["calibration"] = {
            "method": config.calibration_method,
            "windows": reader.count,
            "source": what,
        }
        report = float_nodes_report(made)
        how["stayed_float"] = {
            op: WHY_FLOAT.get(op, "not quantized by onnxruntime's QDQ defaults") for op in report["float_ops"]
        }
    elif mode == "fp16":
        convert_fp16(source, made)
        how["recipe"] = "onnxconverter_common.float16.convert_float_to_float16(keep_io_types=True)"
    else:
        raise EdgeseqError(f"unknown quantization mode {mode!r}")
    if split is not None:
        onnx.save(pre_post.wrap(onnx.load(str(made)), split[1]), out)
        how["pre_post"] = "the fp32 file's pre/post-processing ops, float64, around the quantized network"
    return out, how


def register_variant(model_path: Path, variant: Path, how: dict[str, Any]) -> None:
    """List the variant in the model's manifest: file hash and size, and how it was made. Its figures are
    added when the report measures it (quant_report.write_report)."""
    from edgeseq.export import file_entry, write_json

    manifest_path = manifest_path_for(model_path)
    manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
    entry = file_entry(variant)
    manifest["files"][variant.name] = {"sha256": entry.sha256, "size": entry.size}
    manifest.setdefault("variants", {})[how["mode"]] = {"file": variant.name, **how}
    write_json(manifest_path, manifest)


# onnxconverter-common turns a constant of the Embedding's id check (tf2onnx's Less) to float16 beside the float32
# ids, and onnxruntime refuses to load the file
FP16_TOKENS = "its fp16 variant would not load (the Embedding's id check mixes float16 and float32); use dynamic-int8"


def quantize(
    model_path: Path,
    modes: Sequence[str],
    config: QuantizeConfig = QuantizeConfig(),
    progress: Any = None,
    report: bool = True,
) -> list[Path]:
    """Write the variants of an exported model and list them in its manifest; with `report`, measure every
    variant in the directory once, into quantization.json and the manifests. Returns the variant paths.

    Several models in a row (`export --quantize`) pass report=False and call write_report once at the end.
    """
    import tempfile

    from edgeseq.export.companions import add_companions
    from edgeseq.quant_report import write_report
    from edgeseq_device.manifest import Manifest

    frameworks.require_training()
    model_path = Path(model_path)
    if config.calibration_method not in CALIBRATION_METHODS:
        raise BadInputError(
            f"unknown calibration method {config.calibration_method!r}: {', '.join(CALIBRATION_METHODS)}"
        )
    if not model_path.exists():
        raise BadInputError(not_found("model file", model_path))
    manifest_path = manifest_path_for(model_path)
    if not manifest_path.exists():
        raise BadInputError(f"{model_path} has no manifest: quantize a model exported by edgeseq")
    if "." in model_path.stem:
        raise BadInputError(f"{model_path} is already a variant or a batched companion: quantize the fp32 file")
    manifest = Manifest.load(manifest_path)
    if manifest.data.get("stateful"):
        raise BadInputError(f"{model_path} is a stateful model: quantize does not carry state between calls yet")
    if manifest.data.get("tokens") and "fp16" in modes:
        raise BadInputError(f"{model_path} reads token ids: {FP16_TOKENS}")
    calibration = _calibration_windows(manifest.data) if "static-int8" in modes else None
    written = []
    with tempfile.TemporaryDirectory() as scratch:
        for mode in modes:
            if progress is not None:
                progress.step(f"{model_path.name}: {mode}")
            variant, how = make_variant(model_path, mode, Path(scratch), calibration, config)
            register_variant(model_path, variant, how)
            written.append(variant)
    if progress is not None:
        progress.step(f"{model_path.name}: batched companions, checked on the task's windows")
    add_companions(model_path, written)
    if report:
        if progress is not None:
            progress.step("measuring every variant for the report")
        write_report(model_path.parent)
    return written


def _calibration_windows(manifest: dict[str, Any]) -> tuple[np.ndarray, str]:
    """Real training inputs for calibration, and where they come from: the letter model's 5 training
    patterns, or the forecaster's training windows."""
    if manifest["kind"] == "letters":
        from edgeseq.data import letter_arrays
        from edgeseq_device.letters import LetterCodec

        x, _ = letter_arrays(LetterCodec(manifest["vocabulary"], int(manifest["window"])))
        return x, "the 5 training patterns"
    if manifest["kind"] == "sequence":
        from edgeseq.export.keras_file import recorded_windows

        windows = recorded_windows(manifest, require_sample=True)
        return windows.network, f"{windows.what} (the export's --sample)"
    from edgeseq.quant_report import forecast_data

    return forecast_data(manifest).inputs("train"), "training split windows, evenly spaced"

"""What the float64 input of an exported forecaster buys: forecasts on raw readings with a large offset.

    python benchmarks/input_precision.py [--model exported/sensor_lstm.onnx] [--json FILE]

The window-relative formulation is invariant to a constant offset: adding c to every reading should move
the forecast by exactly c. The shipped file (pre/post-processing in float64) is compared with the same
network wrapped in the same ops in float32, on every window of the model's sample (exported/sensor.csv),
with offsets from none to a counter's 1e6: the error is |forecast(x + c) - c - reference(x)|, where the
reference is numpy's float64 scaling, the network, and numpy's output transform. Pressure in hPa sits near
1,013 (float32 steps of 6.1e-5 there), a counter near 1e6 (steps of 0.0625).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort

from edgeseq.convert import pre_post
from edgeseq.data import load_sensor_csv
from edgeseq_device.forecast import ForecastSpec

REPO = Path(__file__).resolve().parents[1]
OFFSETS = (0.0, 1013.25, 1e4, 1e6)


def _session(model: onnx.ModelProto) -> ort.InferenceSession:
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    return ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])


def _run(session: ort.InferenceSession, windows: np.ndarray) -> np.ndarray:
    name = session.get_inputs()[0].name
    return np.array([session.run(None, {name: w[None]})[0][0, 0] for w in windows], dtype=np.float64)


def measure(model_path: Path) -> dict:
    manifest = json.loads(model_path.with_suffix(".json").read_text())
    spec = ForecastSpec.from_json(manifest)
    split = pre_post.network_of(onnx.load(model_path))
    if split is None:
        sys.exit(f"{model_path} has no pre/post-processing in its graph: export it again")
    network, _ = split
    table = load_sensor_csv(model_path.parent / manifest["sample"]["file"], spec.features, spec.time_column)
    ends = np.arange(spec.window - 1, len(table.values))
    raw = spec.raw_windows(table.values, ends)
    net = _session(network)
    change = _run(net, spec.network_inputs(table.values, ends))
    reference = spec.to_target_units(change, raw[:, -1, spec.target_index])
    files = {
        "float64 (shipped)": _session(onnx.load(model_path)),
        "float32 (alternative)": _session(pre_post.wrap(network, pre_post.forecaster_transform(spec, dtype="float32"))),
    }
    rows = []
    for label, session in files.items():
        dtype = np.float64 if label.startswith("float64") else np.float32
        for offset in OFFSETS:
            forecast = _run(session, (raw + offset).astype(dtype))
            error = np.abs(forecast - offset - reference)
            rows.append(
                {
                    "input": label,
                    "offset": offset,
                    "max_abs_error": float(error.max()),
                    "mean_abs_error": float(error.mean()),
                }
            )
    return {"model": str(model_path), "windows": len(raw), "units": spec.target, "rows": rows}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", type=Path, default=REPO / "exported" / "sensor_lstm.onnx")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    result = measure(args.model)
    print(f"{result['windows']} windows of {args.model.name}'s sample; error in {result['units']}")
    print("| input | offset added | max abs error | mean abs error |\n|---|---|---|---|")
    for row in result["rows"]:
        print(f"| {row['input']} | {row['offset']:g} | {row['max_abs_error']:.2e} | {row['mean_abs_error']:.2e} |")
    if args.json:
        args.json.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()

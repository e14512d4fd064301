"""Batched companions: what a window costs at each batch size, whether a dynamic batch axis costs anything against
fixed sizes, and how far each companion's outputs are from its single-window file's.

    python benchmarks/batched_bench.py [--exported DIR] [--rounds N] [--json FILE]

For each committed file with a batched companion (fp32 and its variants, both models), on the runner's windows
(every window `edgeseq run` makes on exported/sensor.csv; the letter model's 625 sequences):
- parity: each window's outputs in batches of 1, 2, 7, 32, 64 and 256 against the single-window file's, one
  window a call: bit for bit or not, max and median abs diff (the forecaster's in deg C);
- microseconds per window, one onnxruntime thread, the first 256 windows: the single-window file one window a
  call, the companion at batches of 1, 8, 32 and 64, and the same graph with its batch fixed at 8, 32 and 64
  (dim_value instead of dim_param: the alternative to a dynamic axis). Every (file, batch) timing runs all 256
  windows; the timings alternate in a rotating order from round to round, each after one untimed batch; the
  figure is the median over the rounds.
"""

from __future__ import annotations

import argparse
import itertools
import json
import platform
import time
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort

from edgeseq.data import load_sensor_csv
from edgeseq.machine import describe_cpu
from edgeseq_device.forecast import ForecastSpec

REPO = Path(__file__).resolve().parents[1]
PARITY_SIZES = (1, 2, 7, 32, 64, 256)
TIMED_SIZES = (1, 8, 32, 64)
FIXED_SIZES = (8, 32, 64)
TIMED_WINDOWS = 256
SINGLE = "single-window file"


def _session(content: bytes) -> ort.InferenceSession:
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    return ort.InferenceSession(content, options, providers=["CPUExecutionProvider"])


def _fixed(companion: bytes, size: int) -> bytes:
    """The companion with its batch axis fixed at `size`."""
    proto = onnx.load_from_string(companion)
    for value in (proto.graph.input[0], proto.graph.output[0]):
        value.type.tensor_type.shape.dim[0].dim_value = size
    return proto.SerializeToString()


def windows_of(exported: Path, model: str) -> np.ndarray:
    manifest = json.loads((exported / f"{model}.json").read_text())
    if manifest["kind"] == "letters":
        one_hot = np.eye(len(manifest["vocabulary"]), dtype=np.float32)
        return one_hot[np.array(list(itertools.product(range(len(one_hot)), repeat=int(manifest["window"]))))]
    spec = ForecastSpec.from_json(manifest)
    table = load_sensor_csv(exported / manifest["sample"]["file"], spec.features, spec.time_column)
    return spec.model_inputs(table.values, np.arange(spec.window - 1, len(table.values)))


def _run(session: ort.InferenceSession, x: np.ndarray, size: int) -> np.ndarray:
    name = session.get_inputs()[0].name
    return np.concatenate([session.run(None, {name: x[i : i + size]})[0] for i in range(0, len(x), size)])


def parity(single: ort.InferenceSession, companion: ort.InferenceSession, x: np.ndarray) -> dict[str, dict]:
    reference = _run(single, x, 1).astype(np.float64)
    rows = {}
    for size in PARITY_SIZES:
        got = _run(companion, x, size)
        diff = np.abs(got - reference)
        rows[str(size)] = {
            "bit_identical": bool(np.array_equal(got, reference)),
            "max_abs_diff": float(diff.max()),
            "median_abs_diff": float(np.median(diff)),
        }
    return rows


def timings(files: dict[str, tuple[bytes, bytes]], x: dict[str, np.ndarray], rounds: int) -> dict[str, dict]:
    """Microseconds per window, median over `rounds`, for every (file, way of running it)."""
    runs = []
    for name, (single, companion) in files.items():
        runs.append((name, SINGLE, _session(single), 1))
        dynamic = _session(companion)
        runs += [(name, f"batch {size}", dynamic, size) for size in TIMED_SIZES]
        runs += [(name, f"fixed {size}", _session(_fixed(companion, size)), size) for size in FIXED_SIZES]
    times: dict[tuple[str, str], list[float]] = {}
    for round_index in range(rounds):
        shift = round_index % len(runs)
        for name, how, session, size in runs[shift:] + runs[:shift]:
            windows = x[name][:TIMED_WINDOWS]
            _run(session, windows[:size], size)  # untimed: warm this session after the previous one
            started = time.perf_counter()
            _run(session, windows, size)
            times.setdefault((name, how), []).append((time.perf_counter() - started) * 1e6 / len(windows))
    result: dict[str, dict] = {}
    for (name, how), values in times.items():
        result.setdefault(name, {})[how] = float(np.median(values))
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--exported", type=Path, default=REPO / "exported")
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--json", type=Path, default=REPO / "benchmarks" / "batched_bench.json")
    args = parser.parse_args()
    files, x, report = {}, {}, {"parity": {}, "us_per_window": {}}
    for model in ("sensor_lstm", "letter_rnn"):
        manifest = json.loads((args.exported / f"{model}.json").read_text())
        windows = windows_of(args.exported, model)
        for single, entry in manifest["batched"].items():
            if "file" not in entry:
                continue
            pair = ((args.exported / single).read_bytes(), (args.exported / entry["file"]).read_bytes())
            files[single], x[single] = pair, windows
            report["parity"][single] = {
                "windows": len(windows),
                "units": manifest.get("target", "probability"),
                "by_batch_size": parity(_session(pair[0]), _session(pair[1]), windows),
            }
            print(single, json.dumps(report["parity"][single]["by_batch_size"]), flush=True)
    report["us_per_window"] = timings(files, x, args.rounds)
    for name, row in report["us_per_window"].items():
        print(name, ", ".join(f"{how} {us:.1f}" for how, us in row.items()), flush=True)
    report["how"] = {
        "windows_timed": TIMED_WINDOWS,
        "rounds": args.rounds,
        "threads": 1,
        "figure": "microseconds per window, median over the rounds; (file, batch) timings interleaved",
        "command": "python benchmarks/batched_bench.py",
    }
    report["machine"] = {**describe_cpu(), "python": platform.python_version(), "onnxruntime": ort.__version__}
    args.json.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()

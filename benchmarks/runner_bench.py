"""Benchmark of the streaming runner, all in one run: end-to-end rows/s through `edgeseq run`, the raw
session.run rate on the same windows, the runner's own cost per row, per-window latency, start to first
prediction for both front ends, and peak RSS; and batched against one window a call (`--batch 32` against
`--batch 1`): rows/s at stride 1, on a keyed stream of 1,000 sensors, and the latency of each record for a
reader fed one row at a time.

    python benchmarks/runner_bench.py [--model exported/sensor_lstm.onnx] [--rows 24000] [--repeats 3] [--batch 32]
        [--json FILE]

Timings are measured here, never asserted in tests. Run it from the repository root.
"""

from __future__ import annotations

import argparse
import json
import lzma
import os
import platform
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import onnxruntime as ort

from edgeseq_device.forecast import ForecastSpec
from edgeseq_device.model import load_model
from edgeseq_device.rows import RowParser, split_line

REPO = Path(__file__).resolve().parents[1]
DATA = REPO / "src" / "edgeseq" / "datasets" / "appliances_energy.csv.xz"
MODEL = REPO / "exported" / "sensor_lstm.onnx"
# issue 14's bars, and issue 24's (batched against --batch 1)
BARS = {"end_to_end_vs_raw": 0.95, "start_to_first_s": 0.3, "peak_rss_mb": 100.0, "batched_speedup": 1.8,
        "keyed_speedup": 1.8, "single_row_latency_ratio": 1.05}  # fmt: skip
BATCH = 32  # --batch's default here, as the runner's own
KEYS, ROWS_PER_KEY = 1000, 60  # a gateway's stream: each sensor's window full once, 25 forecasts each
LATENCY_ROWS = 200  # records timed one row at a time, after the first window fills


def make_csv(rows: int, path: Path) -> Path:
    """The bundled data set's lines, repeated until `rows` data rows: real values, real formatting."""
    with lzma.open(DATA, "rt", newline="") as handle:
        header, *lines = handle.read().splitlines()
    with path.open("w") as out:
        out.write(header + "\n")
        for i in range(rows):
            out.write(lines[i % len(lines)] + "\n")
    return path


def windows_of(path: Path, spec: ForecastSpec) -> np.ndarray:
    """The model inputs of every window of the file, built by the device runtime's own code."""
    with path.open() as handle:
        parser = RowParser(split_line(handle.readline().rstrip("\n")), spec.features)
        values = np.empty((0, len(spec.features)))
        rows = []
        row = np.empty(len(spec.features))
        for line in handle:
            parser.parse(split_line(line.rstrip("\n")), row)
            rows.append(row.copy())
        values = np.array(rows)
    return spec.model_inputs(values, np.arange(spec.window - 1, len(values)))


def raw_session(x: np.ndarray, model_path: Path) -> tuple[float, list[float]]:
    """Plain session.run, one thread, one window per call: (windows/s, per-call latencies in ms)."""
    model = load_model(model_path, threads=1)
    feed, out = model.inputs[0].name, [model.outputs[0].name]
    for i in range(min(200, len(x))):
        model.session.run(out, {feed: x[i : i + 1]})
    latencies = []
    started = time.perf_counter()
    for i in range(len(x)):
        t0 = time.perf_counter()
        model.session.run(out, {feed: x[i : i + 1]})
        latencies.append((time.perf_counter() - t0) * 1e3)
    return len(x) / (time.perf_counter() - started), latencies


def edgeseq_command() -> list[str]:
    script = Path(sys.executable).with_name("edgeseq")
    return [str(script)] if script.exists() else [sys.executable, "-m", "edgeseq"]


# Runs a command and prints its peak RSS (KB). A small wrapper rather than os.wait4 from this process:
# a child forked from a large parent is charged the parent's pages until it execs.
_RSS_WRAPPER = (
    "import resource, subprocess, sys; code = subprocess.call(sys.argv[1:]); "
    "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss, file=sys.stderr); sys.exit(code)"
)


def end_to_end(csv_path: Path, model_path: Path, *extra: str) -> dict[str, float]:
    """One `edgeseq run` over the whole file into a file beside it (file to file, the batch case: records are
    not flushed one by one); its own summary gives rows/s from the first row."""
    output = csv_path.with_suffix(".jsonl")
    command = [
        *edgeseq_command(),
        "run",
        "--stream",
        str(csv_path),
        "--model",
        str(model_path),
        "--output",
        str(output),
        *extra,
    ]
    proc = subprocess.run(
        [sys.executable, "-c", _RSS_WRAPPER, *command], cwd=REPO, capture_output=True, text=True, check=True
    )
    summary = [line for line in proc.stderr.splitlines() if ": done:" in line][-1]
    rate = float(re.search(r"([\d,]+) rows/s", summary).group(1).replace(",", ""))
    return {"rows_per_s": rate, "peak_rss_mb": int(proc.stderr.split()[-1]) / 1024}


def start_to_first(csv_path: Path, model_path: Path, front_end: list[str]) -> float:
    """Seconds from process start to the first prediction on stdout."""
    started = time.perf_counter()
    proc = subprocess.Popen(
        [*front_end, "run", "--stream", str(csv_path), "--model", str(model_path)],
        cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
    )  # fmt: skip
    proc.stdout.readline()
    first = time.perf_counter() - started
    proc.stdout.close()
    proc.wait()
    return first


def keyed_stream(csv_path: Path, model_path: Path, folder: Path) -> tuple[Path, Path]:
    """KEYS sensors interleaved row by row, each with ROWS_PER_KEY rows of the data set; and a copy of the model
    whose manifest keys its series by the `sensor` column (its metadata records no series rules)."""
    with lzma.open(DATA, "rt", newline="") as handle:
        header, *lines = handle.read().splitlines()
    stream = folder / "keyed.csv"
    with stream.open("w") as out:
        out.write(header + ',"sensor"\n')
        for row in range(ROWS_PER_KEY):
            out.writelines(f'{lines[row]},"s{key}"\n' for key in range(KEYS))
    stem = model_path.name.split(".", 1)[0]
    for path in model_path.parent.glob(f"{stem}.*"):
        if path.suffix in (".onnx", ".json"):
            shutil.copy(path, folder / path.name)
    manifest = json.loads((folder / f"{stem}.json").read_text())
    manifest["series"]["group_by"] = "sensor"
    (folder / f"{stem}.json").write_text(json.dumps(manifest))
    return stream, folder / model_path.name


def row_at_a_time(csv_path: Path, model_path: Path, *extra: str) -> list[float]:
    """Milliseconds from writing each row to reading its record, for a reader fed one row at a time (stdin):
    LATENCY_ROWS rows after the first window fills."""
    lines = csv_path.read_text().splitlines()
    proc = subprocess.Popen(
        [sys.executable, "-m", "edgeseq_device", "run", "--stream", "-", "--model", str(model_path), *extra],
        cwd=REPO, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, bufsize=1,
    )  # fmt: skip
    proc.stdin.write("\n".join(lines[:36]) + "\n")  # the header and 35 rows: no record yet
    proc.stdin.flush()
    latencies = []
    for line in lines[36 : 36 + LATENCY_ROWS]:
        started = time.perf_counter()
        proc.stdin.write(line + "\n")
        proc.stdin.flush()
        proc.stdout.readline()
        latencies.append(1000 * (time.perf_counter() - started))
    proc.stdin.close()
    proc.wait()
    return latencies


def machine() -> dict[str, str]:
    cpu = next(
        (line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
         if line.startswith("model name")), platform.processor(),
    )  # fmt: skip
    return {
        "cpu": cpu,
        "cores": str(os.cpu_count()),
        "python": platform.python_version(),
        "onnxruntime": ort.__version__,
        "numpy": np.__version__,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", type=Path, default=MODEL, help="the forecaster (fp32 or a variant) to run")
    parser.add_argument("--rows", type=int, default=24000, help="data rows in the streamed CSV (>= 20000)")
    parser.add_argument("--repeats", type=int, default=3, help="repeats of each measurement; medians reported")
    parser.add_argument("--json", type=Path, help="also write the figures as JSON to FILE")
    parser.add_argument("--batch", type=int, default=BATCH, help=f"the batched runs' --batch (default {BATCH})")
    args = parser.parse_args()
    batch = str(args.batch)

    model_path = args.model.resolve()
    spec = ForecastSpec.from_json(load_model(model_path).manifest.data)
    device = [sys.executable, "-m", "edgeseq_device"]
    with tempfile.TemporaryDirectory() as tmp:
        csv_path = make_csv(args.rows, Path(tmp) / "stream.csv")
        x = windows_of(csv_path, spec)
        keyed, keyed_model = keyed_stream(csv_path, model_path, Path(tmp))
        raw, e2e, first, first_device, rss = [], [], [], [], []
        batched = {"single": [], "batched": [], "keyed_single": [], "keyed_batched": []}
        row_latency = {"single": [], "batched": []}
        for _ in range(args.repeats):  # interleaved, so drift hits every measurement alike
            rate, latencies = raw_session(x, model_path)
            raw.append(rate)
            run = end_to_end(csv_path, model_path, "--batch", "1")  # the runner's own cost: one window a call
            e2e.append(run["rows_per_s"])
            rss.append(run["peak_rss_mb"])
            first.append(start_to_first(csv_path, model_path, edgeseq_command()))
            first_device.append(start_to_first(csv_path, model_path, device))
            for name, stream, model, extra in (
                ("single", csv_path, model_path, ("--batch", "1")),
                ("batched", csv_path, model_path, ("--batch", batch)),
                ("keyed_single", keyed, keyed_model, ("--batch", "1")),
                ("keyed_batched", keyed, keyed_model, ("--batch", batch)),
            ):
                run = end_to_end(stream, model, *extra)
                batched[name].append(run["rows_per_s"])
                rss.append(run["peak_rss_mb"])
            row_latency["single"] += row_at_a_time(csv_path, model_path, "--batch", "1")
            row_latency["batched"] += row_at_a_time(csv_path, model_path, "--batch", batch)
    figures = {
        "model": str(model_path.relative_to(REPO)) if model_path.is_relative_to(REPO) else str(model_path),
        "rows": args.rows,
        "windows": len(x),
        "raw_session_windows_per_s": statistics.median(raw),
        "end_to_end_rows_per_s": statistics.median(e2e),
        "end_to_end_vs_raw": statistics.median(e2e) / statistics.median(raw),
        # what the runner adds to each row beyond the model (one window a call, as the raw session runs them):
        # parsing, the series rules, the buffer, the record
        "runner_us_per_row": 1e6 * (1 / statistics.median(e2e) - 1 / statistics.median(raw)),
        "latency_ms_p50": float(np.percentile(latencies, 50)),
        "latency_ms_p99": float(np.percentile(latencies, 99)),
        "start_to_first_s": statistics.median(first),
        "start_to_first_device_s": statistics.median(first_device),
        "peak_rss_mb": max(rss),
        "batch": args.batch,
        "rows_per_s_batch_1": statistics.median(batched["single"]),
        "rows_per_s_batched": statistics.median(batched["batched"]),
        "batched_speedup": statistics.median(batched["batched"]) / statistics.median(batched["single"]),
        "keyed_rows": KEYS * ROWS_PER_KEY,
        "keyed_rows_per_s_batch_1": statistics.median(batched["keyed_single"]),
        "keyed_rows_per_s_batched": statistics.median(batched["keyed_batched"]),
        "keyed_speedup": statistics.median(batched["keyed_batched"]) / statistics.median(batched["keyed_single"]),
        "row_latency_ms_batch_1": {
            "p50": float(np.percentile(row_latency["single"], 50)),
            "p99": float(np.percentile(row_latency["single"], 99)),
        },
        "row_latency_ms_batched": {
            "p50": float(np.percentile(row_latency["batched"], 50)),
            "p99": float(np.percentile(row_latency["batched"], 99)),
        },
        "machine": machine(),
        "command": "python benchmarks/runner_bench.py " + " ".join(sys.argv[1:]),
    }
    figures["bars_met"] = {
        "end_to_end_vs_raw": figures["end_to_end_vs_raw"] >= BARS["end_to_end_vs_raw"],
        "start_to_first_s": max(figures["start_to_first_s"], figures["start_to_first_device_s"])
        <= BARS["start_to_first_s"],
        "peak_rss_mb": figures["peak_rss_mb"] <= BARS["peak_rss_mb"],
        "batched_speedup": figures["batched_speedup"] >= BARS["batched_speedup"],
        "keyed_speedup": figures["keyed_speedup"] >= BARS["keyed_speedup"],
        "single_row_latency_ratio": figures["row_latency_ms_batched"]["p50"]
        <= BARS["single_row_latency_ratio"] * figures["row_latency_ms_batch_1"]["p50"],
    }
    print("| measure | value | bar |\n|---|---|---|")
    e2e_rate = figures["end_to_end_rows_per_s"]
    print(f"| model | `{figures['model']}` | |")
    what = f"end to end, `edgeseq run --batch 1` ({args.rows:,} rows, stride 1, file to file)"
    print(f"| {what} | {e2e_rate:,.0f} rows/s | |")
    print(f"| raw `session.run`, same windows | {figures['raw_session_windows_per_s']:,.0f} windows/s | |")
    print(f"| end to end / raw | {figures['end_to_end_vs_raw']:.0%} | >= 95% |")
    print(f"| the runner's own work per row | {figures['runner_us_per_row']:.0f} us | |")
    print(f"| per-window latency p50 / p99 | {figures['latency_ms_p50']:.3f} / {figures['latency_ms_p99']:.3f} ms | |")
    print(f"| process start to first prediction, `edgeseq run` | {figures['start_to_first_s']:.2f} s | <= 0.3 s |")
    device_first = figures["start_to_first_device_s"]
    print(f"| process start to first prediction, `python -m edgeseq_device run` | {device_first:.2f} s | <= 0.3 s |")
    print(f"| peak RSS | {figures['peak_rss_mb']:.0f} MB | <= 100 MB |")
    one, many = figures["rows_per_s_batch_1"], figures["rows_per_s_batched"]
    print(f"| `--batch 1` / `--batch {args.batch}`, stride 1 | {one:,.0f} / {many:,.0f} rows/s: "
          f"{figures['batched_speedup']:.2f}x | >= 1.8x |")  # fmt: skip
    one, many = figures["keyed_rows_per_s_batch_1"], figures["keyed_rows_per_s_batched"]
    print(f"| the same on {KEYS:,} keys ({KEYS * ROWS_PER_KEY:,} rows) | {one:,.0f} / {many:,.0f} rows/s: "
          f"{figures['keyed_speedup']:.2f}x | >= 1.8x |")  # fmt: skip
    single, batch = figures["row_latency_ms_batch_1"], figures["row_latency_ms_batched"]
    print(f"| a row at a time, latency p50 / p99, `--batch 1` | {single['p50']:.3f} / {single['p99']:.3f} ms | |")
    print(f"| the same, `--batch {args.batch}` | {batch['p50']:.3f} / {batch['p99']:.3f} ms | p50 within 5% |")
    print(json.dumps(figures, indent=2))
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2) + "\n")


if __name__ == "__main__":
    main()

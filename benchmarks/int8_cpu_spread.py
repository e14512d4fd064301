"""How much the quantization report's figures move with the CPU's kernels, measured, not guessed.

onnxruntime's MLAS picks its int8 GEMM kernels from cpuid (on Linux x86-64: SSE2, AVX2, AVX-VNNI, AVX512 core,
AVX512-VNNI, AMX) and its float kernels likewise (SSE, AVX, FMA3, AVX512F), so the figures in
exported/quantization.json are only reproducible on a CPU of the same family. This script prepares the report's
inputs once (quant_report.task_inputs), runs every file of every model with variants (fp32 and each variant,
one onnxruntime thread, one window per call, as the report does) natively and under `qemu-x86_64-static -cpu
MODEL` for each CPU model asked for (qemu's cpuid then reports that model's features, so MLAS picks that model's
kernels), computes the report's figures from each path's outputs with quant_report._figures, and writes, per
model/variant/figure, the value on every path, the recorded value and the spread.

    python benchmarks/int8_cpu_spread.py [--cpus Nehalem,SandyBridge,Haswell,EPYC] [--jobs 2] [--json FILE]

Run it from the repository root. qemu's TCG has no AVX512 (nor AVX-VNNI), so those paths are native-only.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

from edgeseq.machine import cpu_features, cpu_model, mlas_kernels

REPO = Path(__file__).resolve().parents[1]
EXPORTED = REPO / "exported"
OUT = REPO / "benchmarks" / "int8_cpu_spread.json"
QEMU = "qemu-x86_64-static"
# SSE4.2 only (MLAS on Linux has no SSE4.1 int8 kernel: SSE2 QGEMM), AVX without AVX2 (AVX SGEMM, SSE2 QGEMM),
# Intel AVX2+FMA3 and AMD EPYC AVX2+FMA3 (the recorded machine's family).
DEFAULT_CPUS = ("Nehalem", "SandyBridge", "Haswell", "EPYC")
FIGURES = {
    "letters": ("max_abs_diff_vs_fp32", "accuracy_5_patterns", "argmax_agreement_625"),
    "forecaster": ("max_abs_diff_vs_fp32", "test_rmse", "test_mae"),
}
# Reported by a user from an AVX512-VNNI machine (fp32 and fp16 figures matched the recorded ones there).
USER_REPORT = {
    "machine": "user's AVX512-VNNI machine",
    "figures": {
        ("letter_rnn", "dynamic-int8", "max_abs_diff_vs_fp32"): 0.00547,
        ("sensor_lstm", "dynamic-int8", "test_rmse"): 0.415716,
    },
}


# ---------------------------------------------------------------- worker (numpy + onnxruntime only)


def worker(spec_path: Path, out_path: Path) -> None:
    """Run every file of every model on the prepared inputs; save the outputs and what this process saw."""
    import onnxruntime as ort

    from edgeseq.quant_report import _run_all  # numpy + edgeseq_device (onnxruntime) only
    from edgeseq_device.model import load_model

    spec = json.loads(spec_path.read_text())
    arrays = np.load(spec["inputs"])
    outputs: dict[str, np.ndarray] = {}
    seconds: dict[str, float] = {}
    for name, entry in spec["models"].items():
        for mode, file in entry["files"].items():
            model = load_model(file, threads=1)  # verifies the sha256 against the manifest
            t0 = time.perf_counter()
            for key in entry["arrays"]:
                outputs[f"{name}/{mode}/{key}"] = _run_all(model, arrays[f"{name}/{key}"])
            seconds[f"{name}/{mode}"] = time.perf_counter() - t0
    np.savez(out_path, **outputs)
    features = cpu_features()
    info = {
        "cpuid_features": features,
        "mlas_kernels": mlas_kernels(features),
        "onnxruntime": ort.__version__,
        "numpy": np.__version__,
        "run_seconds": seconds,
    }
    out_path.with_suffix(".json").write_text(json.dumps(info, indent=1))


# ---------------------------------------------------------------- driver


class _Replay:
    """Stands in for an edgeseq_device Model in quant_report._figures: answers each window with its recorded output."""

    def __init__(self, path: Path, pairs: list[tuple[np.ndarray, np.ndarray]]) -> None:
        self.path = path
        self._table: dict[bytes, np.ndarray] = {}
        for x, y in pairs:
            for xi, yi in zip(x, y, strict=True):
                previous = self._table.setdefault(xi.tobytes(), yi)
                if not np.array_equal(previous, yi):
                    raise RuntimeError(f"{path}: the same window gave two different outputs")

    def run(self, x: np.ndarray) -> np.ndarray:
        return np.stack([self._table[xi.tobytes()] for xi in x])


def prepare(directory: Path, work: Path) -> tuple[dict[str, Any], Path]:
    """The report's inputs for every model with variants, as quant_report computes them, saved for the workers."""
    from edgeseq.quant_report import task_inputs
    from edgeseq_device.manifest import Manifest

    models: dict[str, Any] = {}
    arrays: dict[str, np.ndarray] = {}
    for manifest_path in sorted(directory.glob("*.json")):
        try:
            manifest = Manifest.load(manifest_path).data
        except Exception:  # quantization.json is not a manifest
            continue
        variants = manifest.get("variants") or {}
        if not variants:
            continue
        inputs = task_inputs(manifest)
        keys = ["x", "x_pat"] if inputs["kind"] == "letters" else ["x"]
        for key in keys:
            arrays[f"{manifest['name']}/{key}"] = inputs[key]
        files = {"fp32": str(manifest_path.with_suffix(".onnx"))}
        files.update({mode: str(directory / v["file"]) for mode, v in variants.items()})
        models[manifest["name"]] = {"kind": inputs["kind"], "inputs": inputs, "files": files, "arrays": keys}
    inputs_path = work / "inputs.npz"
    np.savez(inputs_path, **arrays)
    spec = {
        "inputs": str(inputs_path),
        "models": {n: {"files": m["files"], "arrays": m["arrays"]} for n, m in models.items()},
    }
    spec_path = work / "spec.json"
    spec_path.write_text(json.dumps(spec, indent=1))
    return models, spec_path


def run_path(cpu: str, spec_path: Path, work: Path) -> dict[str, Any]:
    """One worker, natively (`cpu == 'native'`) or under qemu with that CPU model; returns its outputs and info."""
    out = work / f"out-{cpu}.npz"
    command = [sys.executable, str(Path(__file__).resolve()), "--worker", str(spec_path), str(out)]
    if cpu != "native":
        command = [QEMU, "-cpu", cpu, *command]
    env = dict(os.environ, OMP_NUM_THREADS="1")
    t0 = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True, env=env, cwd=REPO)
    seconds = time.perf_counter() - t0
    dropped = sorted(set(re.findall(r"TCG doesn't support requested feature: (\S+ \[bit \d+\])", done.stderr)))
    if done.returncode != 0:
        tail = "\n".join(line for line in done.stderr.splitlines() if "TCG doesn't support" not in line)[-2000:]
        return {"cpu": cpu, "error": f"exit {done.returncode}: {tail}", "seconds": seconds}
    with np.load(out) as saved:
        outputs = {key: saved[key] for key in saved.files}
    info = json.loads(out.with_suffix(".json").read_text())
    info.update(seconds=round(seconds, 1), qemu_dropped_features=dropped)
    print(f"  {cpu}: {seconds:.0f} s, MLAS {info['mlas_kernels']['int8']} / float {info['mlas_kernels']['float']}")
    return {"cpu": cpu, "info": info, "outputs": outputs}


def figures_of(models: dict[str, Any], outputs: dict[str, np.ndarray]) -> dict[str, dict[str, dict[str, Any]]]:
    """quant_report's figures (and bar) for every model and variant, from one path's outputs."""
    from edgeseq.quant_report import _bar, _figures

    result: dict[str, dict[str, dict[str, Any]]] = {}
    for name, entry in models.items():
        inputs = entry["inputs"]
        fp32_out = outputs[f"{name}/fp32/x"]
        fp32_size = Path(entry["files"]["fp32"]).stat().st_size
        rows: dict[str, dict[str, Any]] = {}
        for mode, file in entry["files"].items():
            pairs = [(inputs[key], outputs[f"{name}/{mode}/{key}"]) for key in entry["arrays"]]
            rows[mode] = _figures(inputs, _Replay(Path(file), pairs), fp32_out)
            rows[mode]["size_ratio"] = Path(file).stat().st_size / fp32_size
        for mode, row in rows.items():
            if mode != "fp32":
                row["bar_met"] = _bar(mode, entry["kind"], row, rows["fp32"])
        result[name] = rows
    return result


def _spread(values: list[float]) -> tuple[float, float | None]:
    spread = max(values) - min(values)
    scale = max(abs(v) for v in values)
    return spread, (spread / scale if scale else None)


def summarise(
    models: dict[str, Any], paths: dict[str, dict[str, Any]], recorded: dict[str, Any], native: str
) -> dict[str, Any]:
    per_path = {cpu: figures_of(models, p["outputs"]) for cpu, p in paths.items()}
    user = {f"{m}/{v}/{f}": value for (m, v, f), value in USER_REPORT["figures"].items()}
    table: dict[str, Any] = {}
    bars: dict[str, Any] = {}
    groups: dict[str, Any] = {}
    for name, entry in models.items():
        table[name], bars[name], groups[name] = {}, {}, {}
        for mode in entry["files"]:
            rec = recorded["models"][name]["variants"][mode]
            rows: dict[str, Any] = {}
            for figure in FIGURES[entry["kind"]]:
                values = {cpu: per_path[cpu][name][mode][figure] for cpu in paths}
                row: dict[str, Any] = {"recorded": rec[figure], "values": values}
                measured = list(values.values())
                row["spread_abs"], row["spread_rel"] = _spread(measured)
                everything = [*measured, rec[figure]]
                if f"{name}/{mode}/{figure}" in user:
                    reported = user[f"{name}/{mode}/{figure}"]
                    digits = len(str(reported).split(".")[1])
                    reproduced = round(values[native], digits) == reported
                    row["user_report_avx512vnni"] = {"value": reported, "reproduced_natively": reproduced}
                    if not reproduced:
                        everything.append(reported)
                row["spread_abs_with_recorded"], row["spread_rel_with_recorded"] = _spread(everything)
                row["max_abs_dev_from_recorded"] = max(abs(v - rec[figure]) for v in values.values())
                row["identical_on_all_paths"] = len(set(measured)) == 1
                rows[figure] = row
            table[name][mode] = rows
            bars[name][mode] = {cpu: per_path[cpu][name][mode].get("bar_met") for cpu in paths}
            # which paths produce bit-identical outputs for this file: the kernel families, observed
            keys = [k for k in entry["arrays"]]
            classes: list[list[str]] = []
            for cpu in paths:
                out = [paths[cpu]["outputs"][f"{name}/{mode}/{k}"] for k in keys]
                for group in classes:
                    ref = [paths[group[0]]["outputs"][f"{name}/{mode}/{k}"] for k in keys]
                    if all(np.array_equal(a, b) for a, b in zip(out, ref, strict=True)):
                        group.append(cpu)
                        break
                else:
                    classes.append([cpu])
            diff_vs_native = {
                cpu: float(
                    np.abs(
                        paths[cpu]["outputs"][f"{name}/{mode}/x"] - paths[native]["outputs"][f"{name}/{mode}/x"]
                    ).max()
                )
                for cpu in paths
            }
            groups[name][mode] = {"bit_identical_outputs": classes, "max_abs_output_diff_vs_native": diff_vs_native}
    return {"figures": table, "bar_met": bars, "outputs": groups}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cpus", default=",".join(DEFAULT_CPUS), help="qemu CPU models, comma-separated ('' = none)")
    parser.add_argument("--jobs", type=int, default=os.cpu_count() or 1, help="paths run at once (1 thread each)")
    parser.add_argument("--directory", type=Path, default=EXPORTED)
    parser.add_argument("--json", type=Path, default=OUT)
    parser.add_argument("--worker", nargs=2, type=Path, metavar=("SPEC", "OUT"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        worker(*args.worker)
        return 0

    t_start = time.perf_counter()
    cpus = [c.strip() for c in args.cpus.split(",") if c.strip()]
    skipped: list[str] = []
    if cpus and shutil.which(QEMU) is None:
        skipped = cpus
        print(f"{QEMU} is not installed (apt-get install qemu-user-static): skipping the emulated CPUs {cpus}")
        cpus = []
    recorded = json.loads((args.directory / "quantization.json").read_text())
    with tempfile.TemporaryDirectory(prefix="int8_cpu_spread.") as tmp:
        work = Path(tmp)
        t0 = time.perf_counter()
        models, spec_path = prepare(args.directory, work)
        prepare_seconds = time.perf_counter() - t0
        print(f"inputs prepared in {prepare_seconds:.1f} s; running {['native', *cpus]} ({args.jobs} at a time)")
        with ThreadPoolExecutor(max_workers=max(1, args.jobs)) as pool:
            results = list(pool.map(lambda cpu: run_path(cpu, spec_path, work), ["native", *cpus]))
    failed = {r["cpu"]: r["error"] for r in results if "error" in r}
    for cpu, error in failed.items():
        print(f"  {cpu}: FAILED {error.splitlines()[-1] if error.strip() else ''}")
    paths = {r["cpu"]: r for r in results if "error" not in r}
    if "native" not in paths:
        print("the native run failed; nothing to compare")
        return 1
    summary = summarise(models, paths, recorded, "native")
    report = {
        "about": (
            "quant_report's figures for every file, computed from its outputs on each CPU path (native and "
            "qemu-x86_64-static -cpu MODEL), next to the recorded value in quantization.json, measured on "
            f"{recorded.get('measured_on', {}).get('cpu', 'AMD EPYC (AVX2)')}; "
            "spread_* over the measured paths, *_with_recorded also over the recorded value and any user-reported "
            "figure the native run does not reproduce; rel = abs / max |value|"
        ),
        "host": {"machine": platform.machine(), "cpu": cpu_model(), "python": platform.python_version()},
        "onnxruntime_threads": 1,
        "paths": {cpu: p["info"] for cpu, p in paths.items()},
        "failed_paths": failed,
        "skipped_paths": skipped,
        "user_report": {
            "machine": USER_REPORT["machine"],
            "figures": {"/".join(k): v for k, v in USER_REPORT["figures"].items()},
        },
        **summary,
        "seconds": {"prepare": round(prepare_seconds, 1), "total": round(time.perf_counter() - t_start, 1)},
    }
    args.json.write_text(json.dumps(report, indent=1) + "\n")
    _print_table(summary["figures"], list(paths))
    print(f"wrote {args.json} in {report['seconds']['total']:.0f} s")
    return 0


def _print_table(figures: dict[str, Any], cpus: list[str]) -> None:
    print(f"{'model':12} {'variant':13} {'figure':21} {'recorded':>10} " + " ".join(f"{c:>11}" for c in cpus))
    for name, modes in figures.items():
        for mode, rows in modes.items():
            for figure, row in rows.items():
                values = " ".join(f"{row['values'][c]:11.6g}" for c in cpus)
                print(f"{name:12} {mode:13} {figure:21} {row['recorded']:10.6g} {values}")


if __name__ == "__main__":
    sys.exit(main())

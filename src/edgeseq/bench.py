"""`edgeseq bench`: the same trained model through Keras, LiteRT and onnxruntime, measured side by side.

Every path runs the same real input windows, with warm-up, one call per window, in rounds that alternate
the paths so machine drift hits all of them alike. Each peer runs its recommended fast path:
LiteRT through `ai_edge_litert`'s Interpreter with its default XNNPACK delegate and `num_threads` set.

Then the batched throughput: microseconds per window through each onnxruntime file's batched companion at
batches of 1, 8, 32 and 64 windows, beside its single-window file one window a call, interleaved the same way;
and LiteRT's fp32 interpreter resized to those batches (`resize_tensor_input`), where it can be.
"""

from __future__ import annotations

import os
import platform
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from edgeseq import frameworks
from edgeseq.errors import BadInputError

Run = Callable[[np.ndarray], np.ndarray]

# Agreement with Keras that each kind of path must reach (max abs diff in the model's output space).
# LiteRT fp32 gets its own: TFLite's fused LSTM kernel differs from Keras by up to 0.016 (scaled output)
# on the forecaster's real windows, deterministically and with or without XNNPACK (measured, 100 windows).
TOLERANCE = {"fp32": 1e-4, "LiteRT fp32": 5e-2, "fp16": 2e-2, "int8": 0.5}


@dataclass(frozen=True)
class BenchConfig:
    model: str = "sensor_lstm"
    exported: Path = Path("exported")
    threads: int = 1
    windows: int = 100  # distinct real windows per round
    rounds: int = 5
    warmup: int = 20
    rss_calls: int = 200
    batched_windows: int = 256  # real windows per round of the batched throughput, a multiple of every batch
    batch_sizes: tuple[int, ...] = (1, 8, 32, 64)


@dataclass
class PathResult:
    name: str
    family: str
    precision: str
    size: int | None
    load_s: float
    run: Run = field(repr=False)
    times_ms: list[float] = field(default_factory=list, repr=False)
    max_abs_diff: float = 0.0
    # An exported file with pre/post-processing in its graph takes the raw windows and returns forecasts:
    # its own inputs, and the map from its outputs back to the network's, where Keras is compared.
    inputs: np.ndarray | None = field(default=None, repr=False)
    to_network: Callable[[np.ndarray], np.ndarray] | None = field(default=None, repr=False)

    @property
    def tolerance(self) -> float:
        return TOLERANCE.get(self.name, TOLERANCE[self.precision])

    def summary(self) -> dict[str, Any]:
        return {
            "path": self.name,
            "family": self.family,
            "precision": self.precision,
            "file_size": self.size,
            "load_s": self.load_s,
            "p50_ms": float(np.percentile(self.times_ms, 50)),
            "p99_ms": float(np.percentile(self.times_ms, 99)),
            "calls": len(self.times_ms),
            "max_abs_diff_vs_keras": self.max_abs_diff,
            "tolerance": self.tolerance,
            "agrees": self.max_abs_diff <= self.tolerance,
        }


def _timed(load: Callable[[], Run]) -> tuple[Run, float]:
    started = time.perf_counter()
    run = load()
    return run, time.perf_counter() - started


@dataclass(frozen=True)
class Windows:
    """Real windows as the network sees them ([n, 1, T, F] float32), as the exported file takes them (raw
    float64 when its graph scales them), and the map from the file's outputs to the network's."""

    network: np.ndarray
    file: np.ndarray
    to_network: Callable[[np.ndarray], np.ndarray] | None = None


def real_windows(manifest: dict[str, Any], count: int) -> Windows:
    """Real inputs: forecaster test windows, a user's model's parity windows, or every letter sequence;
    evenly spaced."""
    to_network = None
    if manifest["kind"] == "letters":
        from edgeseq_device.letters import LetterCodec

        codec = LetterCodec(manifest["vocabulary"], int(manifest["window"]))
        network = file = codec.encode_batch(codec.all_sequences())
    elif manifest["kind"] == "sequence":
        from edgeseq.export.keras_file import recorded_windows

        windows = recorded_windows(manifest)
        network, file = windows.network, windows.file
    else:
        from edgeseq.quant_report import forecast_data
        from edgeseq_device.forecast import ForecastSpec

        data, spec = forecast_data(manifest), ForecastSpec.from_json(manifest)
        network, file = data.inputs("test"), spec.model_inputs(data.table.values, data.ends["test"])
        last = data.last_target("test")
    picks = np.linspace(0, len(network) - 1, min(count, len(network))).astype(int)
    if manifest["kind"] == "forecaster" and spec.in_graph:
        last_picked = last[picks][:, None]

        def to_network(out: np.ndarray) -> np.ndarray:
            return (out - last_picked) / spec.target_scale

    return Windows(network[picks][:, None], file[picks][:, None], to_network)


def tflite_models(keras_model: Any, input_shape: tuple[int, ...], directory: Path) -> dict[str, Path]:
    """The same Keras model through TFLiteConverter: fp32, and dynamic-range quantized (Optimize.DEFAULT)."""
    tf, _ = frameworks.tensorflow()
    function = tf.function(lambda x: keras_model(x, training=False))
    concrete = function.get_concrete_function(tf.TensorSpec(input_shape, tf.float32))
    paths = {}
    for name, optimize in (("fp32", False), ("dynamic-range", True)):
        converter = tf.lite.TFLiteConverter.from_concrete_functions([concrete], keras_model)
        if optimize:
            converter.optimizations = [tf.lite.Optimize.DEFAULT]
        path = directory / f"model.{name}.tflite"
        path.write_bytes(converter.convert())
        paths[name] = path
    return paths


def _litert_runner(path: Path, threads: int) -> Run:
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_path=str(path), num_threads=threads)  # default XNNPACK delegate
    interpreter.allocate_tensors()
    inp = interpreter.get_input_details()[0]["index"]
    out = interpreter.get_output_details()[0]["index"]

    def run(x: np.ndarray) -> np.ndarray:
        # TFLite's fused LSTM keeps its hidden and cell state in variable tensors between invocations (it is
        # built for streaming); each window here is independent, as in Keras, so the state starts at zero.
        interpreter.reset_all_variables()
        interpreter.set_tensor(inp, x)
        interpreter.invoke()
        return interpreter.get_tensor(out)

    return run


def _onnx_runner(path: Path, threads: int) -> Run:
    from edgeseq_device.model import load_model

    return load_model(path, threads=threads).run


def _litert_paths(model: Any, config: BenchConfig, tmp: Path, x: np.ndarray, failed: dict[str, str]) -> list:
    """LiteRT fp32 and dynamic-range, each probed on one window; a path LiteRT cannot convert or run goes to
    `failed` with the reason (LiteRT fails on some Keras 3 recurrent graphs) instead of stopping the bench."""
    try:
        converted = tflite_models(model, x.shape[1:], tmp)
    except Exception as exc:  # the TFLite converter raises many untyped errors
        for name in ("LiteRT fp32", "LiteRT dynamic-range"):
            failed[name] = f"conversion failed: {type(exc).__name__}: {' '.join(str(exc).split())[:200]}"
        return []
    paths = []
    for name, path in converted.items():
        try:
            run, load_s = _timed(lambda p=path: _litert_runner(p, config.threads))
            run(x[0])
        except Exception as exc:  # LiteRT raises RuntimeError with its kernel's message
            failed[f"LiteRT {name}"] = f"{type(exc).__name__}: {' '.join(str(exc).split())[:200]}"
            continue
        precision = "fp32" if name == "fp32" else "int8"
        paths.append(PathResult(f"LiteRT {name}", "LiteRT", precision, path.stat().st_size, load_s, run))
    return paths


def build_paths(
    config: BenchConfig, manifest: dict[str, Any], tmp: Path, windows: Windows, failed: dict[str, str]
) -> list[PathResult]:
    x = windows.network
    tf, keras = frameworks.tensorflow()
    try:
        tf.config.threading.set_intra_op_parallelism_threads(config.threads)
        tf.config.threading.set_inter_op_parallelism_threads(config.threads)
    except RuntimeError:  # TensorFlow already ran in this process (a test, a notebook): its pools stay as they are
        pass
    base = config.exported / config.model
    if manifest["kind"] == "sequence":  # a user's model: its own file, in the Keras that wrote it
        from edgeseq.export.keras_file import source_keras

        model, load_s = _timed(lambda: source_keras(manifest))
        size = manifest["source"].get("size")
    else:
        keras_path = base.with_suffix(".keras")
        model, load_s = _timed(lambda: keras.models.load_model(keras_path))
        size = keras_path.stat().st_size
    compiled = tf.function(lambda t: model(t, training=False), input_signature=[tf.TensorSpec(x.shape[1:], tf.float32)])
    paths = [
        PathResult("Keras predict", "Keras", "fp32", size, load_s, lambda t: model.predict(t, verbose=0)),
        PathResult("Keras call", "Keras", "fp32", size, load_s, lambda t: model(t, training=False).numpy()),
        PathResult("Keras tf.function", "Keras", "fp32", size, load_s, lambda t: compiled(t).numpy()),
    ]
    paths += _litert_paths(model, config, tmp, x, failed)
    variants = {"fp32": base.with_suffix(".onnx")}
    variants.update(
        {mode: base.with_name(f"{config.model}.{mode}.onnx") for mode in ("dynamic-int8", "static-int8", "fp16")}
    )
    for mode, path in variants.items():
        if not path.exists():
            continue
        run, load_s = _timed(lambda p=path: _onnx_runner(p, config.threads))
        precision = "fp32" if mode == "fp32" else ("fp16" if mode == "fp16" else "int8")
        paths.append(
            PathResult(
                f"onnxruntime {mode}",
                "edgeseq",
                precision,
                path.stat().st_size,
                load_s,
                run,
                inputs=windows.file,
                to_network=windows.to_network,
            )
        )
    return paths


def measure(paths: list[PathResult], x: np.ndarray, config: BenchConfig) -> None:
    """Warm up, compare with Keras, then time one call per window, in rounds.

    Within a round each path runs all windows back to back, so a 0.3 ms path is not timed on caches that a
    75 ms Keras call just flushed; the paths alternate from round to round, in a rotating order, so drift
    over the run hits every path alike.
    """
    reference = np.concatenate([paths[1].run(x[i]) for i in range(len(x))])  # Keras call
    for path in paths:
        inputs = path.inputs if path.inputs is not None else x
        for i in range(min(config.warmup, len(x))):
            path.run(inputs[i])
        outputs = np.concatenate([path.run(inputs[i]) for i in range(len(x))])
        if path.to_network is not None:
            outputs = path.to_network(outputs)
        path.max_abs_diff = float(np.abs(outputs.reshape(reference.shape) - reference).max())
    for round_index in range(config.rounds):
        shift = round_index % len(paths)
        for path in paths[shift:] + paths[:shift]:
            inputs = path.inputs if path.inputs is not None else x
            path.run(inputs[0])  # one untimed call: this path's caches warm again after the previous path
            for i in range(len(x)):
                started = time.perf_counter()
                path.run(inputs[i])
                path.times_ms.append((time.perf_counter() - started) * 1e3)


SINGLE = "single-window file"  # the batched table's column for the fixed [1, T, F] file, one window a call
MODES = ("fp32", "dynamic-int8", "static-int8", "fp16")


@dataclass
class BatchedPath:
    """A file run on a batch a call: `run` takes [n, T, F] of `inputs` (the windows as the file takes them);
    `single` runs the same model on one window (its single-window file), if it has one."""

    name: str
    file: str
    run: Run = field(repr=False)
    inputs: np.ndarray = field(repr=False)
    single: Run | None = field(default=None, repr=False)
    times_us: dict[str, list[float]] = field(default_factory=dict, repr=False)


def _litert_batched(path: Path, threads: int, shape: tuple[int, ...]) -> Run:
    """LiteRT's interpreter for `path`, resized to each batch it is given (`resize_tensor_input`): a RuntimeError
    from LiteRT when the model cannot take it."""
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_path=str(path), num_threads=threads)
    inp = interpreter.get_input_details()[0]["index"]
    out = interpreter.get_output_details()[0]["index"]
    resized = [0]

    def run(x: np.ndarray) -> np.ndarray:
        if len(x) != resized[0]:
            interpreter.resize_tensor_input(inp, [len(x), *shape[1:]])
            interpreter.allocate_tensors()
            resized[0] = len(x)
        interpreter.reset_all_variables()  # each window independent, as in the single-window runs
        interpreter.set_tensor(inp, x)
        interpreter.invoke()
        return interpreter.get_tensor(out)

    return run


def batched_paths(
    config: BenchConfig, manifest: dict[str, Any], tflite: Path | None, windows: Windows, failed: dict[str, str]
) -> list[BatchedPath]:
    """Each onnxruntime file with a batched companion in the manifest (loaded and checked as the runtime does),
    and LiteRT fp32 resized to every batch size; what cannot run batched goes to `failed` with the reason."""
    from edgeseq_device.model import load_model

    paths = []
    entries = manifest.get("batched", {})
    for mode in MODES:
        file = f"{config.model}.onnx" if mode == "fp32" else f"{config.model}.{mode}.onnx"
        entry = entries.get(file)
        if not (config.exported / file).exists() or entry is None:
            continue
        if "file" not in entry:
            failed[f"onnxruntime {mode}"] = f"{file} has no batched companion: {entry.get('none')}"
            continue
        companion = load_model(config.exported / entry["file"], threads=config.threads)
        single = load_model(config.exported / file, threads=config.threads)
        paths.append(BatchedPath(f"onnxruntime {mode}", entry["file"], companion.run, windows.file[:, 0], single.run))
    if tflite is not None:
        x = windows.network[:, 0]  # LiteRT runs the Keras network: scaled windows
        run = _litert_batched(tflite, config.threads, x.shape)
        for size in config.batch_sizes:
            try:
                run(x[:size])
            except Exception as exc:  # LiteRT raises RuntimeError with the kernel's message
                failed["LiteRT fp32"] = (
                    f"resize_tensor_input to a batch of {size}: {type(exc).__name__}: "
                    f"{' '.join(str(exc).split())[:300]}"
                )
                break
        else:
            paths.append(BatchedPath("LiteRT fp32", tflite.name, run, x))
    return paths


def measure_batched(paths: list[BatchedPath], config: BenchConfig) -> dict[str, Any]:
    """Microseconds per window through each path at each batch size (and its single-window file one window a
    call), all of its windows per timing; the (path, size) pairs alternate in a rotating order from round to
    round, each warmed by one untimed batch; median over the rounds. Also each path's max abs diff at each size
    from its own single-window run (LiteRT: from its batch of 1)."""
    pairs = [(path, str(size)) for path in paths for size in config.batch_sizes]
    pairs += [(path, SINGLE) for path in paths if path.single is not None]

    def run_all(path: BatchedPath, size: str) -> np.ndarray:
        x = path.inputs
        if size == SINGLE:
            return np.concatenate([path.single(x[i : i + 1]) for i in range(len(x))])  # type: ignore[misc]
        step = int(size)
        return np.concatenate([path.run(x[i : i + step]) for i in range(0, len(x), step)])

    results: dict[str, Any] = {}
    for path in paths:
        reference = run_all(path, SINGLE if path.single is not None else "1")
        diffs = {
            str(size): float(np.abs(run_all(path, str(size)).astype(np.float64) - reference).max())
            for size in config.batch_sizes
        }
        results[path.name] = {"file": path.file, "max_abs_diff_vs_one_window": diffs}
    for round_index in range(config.rounds):
        shift = round_index % len(pairs) if pairs else 0
        for path, size in pairs[shift:] + pairs[:shift]:
            if size == SINGLE:  # untimed: this path's caches warm again after the previous one
                path.single(path.inputs[:1])  # type: ignore[misc]
            else:
                path.run(path.inputs[: int(size)])
            started = time.perf_counter()
            run_all(path, size)
            path.times_us.setdefault(size, []).append((time.perf_counter() - started) * 1e6 / len(path.inputs))
    for path in paths:
        per_window = {size: float(np.median(times)) for size, times in path.times_us.items()}
        results[path.name]["us_per_window"] = per_window
        base = per_window.get(SINGLE, per_window.get("1"))
        results[path.name]["speedup_vs_one_window"] = {
            size: base / us for size, us in per_window.items() if size != SINGLE
        }
    return results


def runner_rows_per_s(config: BenchConfig) -> dict[str, Any] | None:
    """The edgeseq runner end to end over exported/sensor.csv, in process, output discarded."""
    csv_path = config.exported / "sensor.csv"
    if not csv_path.exists() or config.model != "sensor_lstm":
        return None
    from edgeseq_device.runner import RunOptions, run_stream

    with open(os.devnull, "w") as sink, tempfile.TemporaryFile("w+") as log:
        started = time.perf_counter()
        run_stream(
            RunOptions(stream=str(csv_path), model=config.exported / "sensor_lstm.onnx", threads=config.threads),
            sink,
            log,
        )
        seconds = time.perf_counter() - started
    rows = sum(1 for _ in csv_path.open()) - 1
    return {"rows": rows, "seconds": seconds, "rows_per_s": rows / seconds}


_RSS_ONNX = """
import sys, numpy as np, onnxruntime as ort
o = ort.SessionOptions(); o.intra_op_num_threads = int(sys.argv[2])
s = ort.InferenceSession(sys.argv[1], o, providers=["CPUExecutionProvider"])
i = s.get_inputs()[0]; x = np.zeros(i.shape, np.float64 if i.type == "tensor(double)" else np.float32)
for _ in range(int(sys.argv[3])): s.run(None, {i.name: x})
print(next(l.split()[1] for l in open("/proc/self/status") if l.startswith("VmHWM")))
"""
_RSS_LITERT = """
import sys, numpy as np
from ai_edge_litert.interpreter import Interpreter
it = Interpreter(model_path=sys.argv[1], num_threads=int(sys.argv[2])); it.allocate_tensors()
d = it.get_input_details()[0]; x = np.zeros(d["shape"], np.float32)
for _ in range(int(sys.argv[3])): it.set_tensor(d["index"], x); it.invoke()
print(next(l.split()[1] for l in open("/proc/self/status") if l.startswith("VmHWM")))
"""


def peak_rss_mb(script: str, model: Path, config: BenchConfig) -> float:
    """Peak RSS of a fresh minimal process that loads `model` and runs it (no TensorFlow, no edgeseq).

    The child reports its own VmHWM: unlike ru_maxrss, it starts afresh at exec, so it does not include the
    pages of this large parent that a forked child shares until it execs.
    """
    proc = subprocess.run(
        [sys.executable, "-c", script, str(model), str(config.threads), str(config.rss_calls)],
        capture_output=True, text=True, check=True, timeout=300,
    )  # fmt: skip
    return int(proc.stdout.split()[-1]) / 1024


def machine() -> dict[str, Any]:
    from importlib.metadata import version

    from edgeseq.machine import describe_cpu

    cpu = describe_cpu()
    packages = ("tensorflow", "tf-keras", "tf2onnx", "onnx", "onnxruntime", "ai-edge-litert", "numpy")
    return {
        "cpu": cpu["cpu"],
        "cpu_flags": cpu["features"],
        "onnxruntime_kernels": {"int8": cpu["onnxruntime_int8_kernel"], "float": cpu["onnxruntime_float_kernel"]},
        "cores": os.cpu_count(),
        "python": platform.python_version(),
        "packages": {p: version(p) for p in packages},
    }


def bench(config: BenchConfig, progress: Any = None) -> dict[str, Any]:
    """Run every path on the same windows; return the JSON-able results."""
    from edgeseq_device.manifest import Manifest

    frameworks.require_extra("bench", "edgeseq bench needs")
    manifest_path = config.exported / f"{config.model}.json"
    if not manifest_path.exists():
        names = sorted(p.stem for p in config.exported.glob("*.json") if p.with_suffix(".onnx").exists())
        raise BadInputError(
            f"no exported model {manifest_path}: run `edgeseq export` first"
            + (f" (models in {config.exported}: {', '.join(names)})" if names else "")
        )
    manifest = Manifest.load(manifest_path).data
    if manifest.get("stateful"):
        raise BadInputError(f"{config.model} is a stateful model: bench times one window per call without state")
    say = progress.step if progress is not None else (lambda _m: None)
    windows = real_windows(manifest, config.windows)
    x = windows.network
    with tempfile.TemporaryDirectory() as tmp:
        say("loading Keras, converting to LiteRT, loading onnxruntime")
        failed: dict[str, str] = {}
        paths = build_paths(config, manifest, Path(tmp), windows, failed)
        say(f"timing {len(paths)} paths x {len(x)} windows x {config.rounds} rounds, paths alternating per round")
        measure(paths, x, config)
        say("peak RSS of minimal processes, end-to-end runner")
        tflite = Path(tmp) / "model.fp32.tflite"
        rss = {"onnxruntime fp32": peak_rss_mb(_RSS_ONNX, config.exported / f"{config.model}.onnx", config)}
        if "LiteRT fp32" not in failed:
            rss["LiteRT fp32"] = peak_rss_mb(_RSS_LITERT, tflite, config)
        sizes = ", ".join(map(str, config.batch_sizes))
        say(f"batched: microseconds per window at batches of {sizes}, through each batched companion")
        many = real_windows(manifest, config.batched_windows)
        batched_failed: dict[str, str] = {}
        litert = tflite if "LiteRT fp32" not in failed else None
        batched_result = measure_batched(batched_paths(config, manifest, litert, many, batched_failed), config)
    results = [p.summary() for p in paths]
    by_name = {r["path"]: r for r in results}
    ratios = {}
    pairs = {
        "onnxruntime fp32 vs LiteRT fp32": ("LiteRT fp32", "onnxruntime fp32", 1.5),
        "onnxruntime dynamic-int8 vs LiteRT dynamic-range": ("LiteRT dynamic-range", "onnxruntime dynamic-int8", 3.0),
        "onnxruntime fp32 vs Keras predict": ("Keras predict", "onnxruntime fp32", 100.0),
    }
    for label, (peer, ours, bar) in pairs.items():
        if peer in by_name and ours in by_name:
            speedup = by_name[peer]["p50_ms"] / by_name[ours]["p50_ms"]
            ratios[label] = {"speedup": speedup, "bar": bar, "met": speedup >= bar}
    return {
        "model": config.model,
        "threads": config.threads,
        "windows": len(x),
        "rounds": config.rounds,
        "paths": results,
        "failed_paths": failed,
        "bars": ratios,
        "runner": runner_rows_per_s(config),
        "peak_rss_mb": rss,
        "batched": {"windows": len(many.file), "batch_sizes": list(config.batch_sizes), "paths": batched_result},
        "batched_failed": batched_failed,
        "machine": machine(),
    }

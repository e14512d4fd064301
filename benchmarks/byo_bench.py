"""Your own Keras model through tf2onnx versus through edgeseq: per architecture, median µs per call
(1 thread, the two files interleaved call by call), node count, recurrent nodes left as Loop/Scan, file
size, and the largest difference from Keras.

    python benchmarks/byo_bench.py [--keras keras3|tf_keras|both] [--models chains|graphs|all] [--calls 2000]
        [--json FILE] [--markdown FILE]

The tf2onnx path is what a user writes by hand: `tf2onnx.convert.from_keras` with a fixed [1, T, F]
signature, and, when that fails (it does on every Keras 3 Sequential model in tf2onnx 1.17),
`tf2onnx.convert.from_function` over the model's call. The edgeseq path is `edgeseq.convert.convert`, the
converter `edgeseq export --keras` uses. The chains are Sequential models; the graphs are functional models whose
layers branch, merge or hand states on (issue 26). Needs the train extra.
"""

from __future__ import annotations

import argparse
import json
import platform
import re
import statistics
import time
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort

from edgeseq import frameworks
from edgeseq.convert import convert, op_type_counts
from edgeseq.convert.audit import FUSED_OPS, UNFUSED_OPS
from edgeseq_device.manifest import TensorSpec
from edgeseq_device.model import session_options

T, F = 36, 5


def architectures(k: Any) -> dict[str, tuple[tuple[int, int], list[Any]]]:
    L = k.layers
    return {
        "LSTM(64) -> Dense(1)": ((T, F), [L.LSTM(64), L.Dense(1)]),
        "LSTM(80, seq) -> LSTM(100) -> Dense(1)": (
            (T, F),
            [L.LSTM(80, return_sequences=True), L.LSTM(100), L.Dense(1)],
        ),
        "GRU(64) (reset_after=True)": ((T, F), [L.GRU(64), L.Dense(1)]),
        "GRU(64, reset_after=False)": ((T, F), [L.GRU(64, reset_after=False), L.Dense(1)]),
        "Bidirectional(LSTM(32))": ((T, F), [L.Bidirectional(L.LSTM(32)), L.Dense(1)]),
        "Conv1D(16,3) -> LSTM(32)": ((T, F), [L.Conv1D(16, 3), L.LSTM(32), L.Dense(1)]),
        "SimpleRNN(3) -> Dense(5, softmax)": ((4, 5), [L.SimpleRNN(3), L.Dense(5, activation="softmax")]),
        "LSTM(32, recurrent_dropout=0.2)": ((T, F), [L.LSTM(32, recurrent_dropout=0.2), L.Dense(1)]),
        "GRU(32, seq) -> GRU(32)": ((T, F), [L.GRU(32, return_sequences=True), L.GRU(32), L.Dense(1)]),
        "Bidirectional(GRU(16, seq)) -> LSTM(32)": (
            (T, F),
            [L.Bidirectional(L.GRU(16, return_sequences=True)), L.LSTM(32), L.Dense(1)],
        ),
        "Conv1D(16,3,strides=2) -> GRU(32)": ((T, F), [L.Conv1D(16, 3, strides=2), L.GRU(32), L.Dense(1)]),
        "Conv1D -> BiGRU(seq) -> LSTM -> Dense(3, softmax)": (
            (T, F),
            [
                L.Conv1D(16, 3, padding="causal", activation="relu"),
                L.Bidirectional(L.GRU(16, return_sequences=True)),
                L.LSTM(32),
                L.Dense(3, activation="softmax"),
            ],
        ),
    }


def _attention(k: Any, x: Any) -> Any:  # issue 26's "done when" model
    L = k.layers
    x = L.LSTM(32, return_sequences=True)(x)
    x = L.LayerNormalization()(L.Add()([x, L.MultiHeadAttention(num_heads=2, key_dim=16)(x, x)]))
    return L.Dense(3, activation="softmax")(L.GlobalAveragePooling1D()(x))


def _residual(k: Any, x: Any) -> Any:
    L = k.layers
    x = L.Conv1D(16, 3, padding="causal")(x)
    return L.Dense(1)(L.LSTM(32)(L.Add()([x, L.LSTM(16, return_sequences=True)(x)])))


def _parallel(k: Any, x: Any) -> Any:
    L = k.layers
    return L.Dense(1)(L.Concatenate()([L.LSTM(32)(x), L.GRU(32)(x), L.Bidirectional(L.GRU(16))(x)]))


def _gru_attention(k: Any, x: Any) -> Any:
    L = k.layers
    x = L.GRU(32, return_sequences=True)(x)
    return L.Dense(1)(L.GlobalAveragePooling1D()(L.Concatenate()([x, L.Attention()([x, x])])))


def _encoder_decoder(k: Any, x: Any) -> Any:
    L = k.layers
    _, h, c = L.LSTM(32, return_state=True)(x)
    return L.Dense(1)(L.LSTM(32)(x, initial_state=[h, c]))


def graphs(k: Any) -> dict[str, tuple[tuple[int, int], Any]]:
    return {
        "LSTM(32, seq) -> MultiHeadAttention(2, 16) + Add -> LayerNorm -> pool -> Dense(3)": ((64, 6), _attention),
        "Conv1D(16) -> x + LSTM(16, seq)(x) -> LSTM(32) -> Dense(1)": ((T, F), _residual),
        "LSTM(32), GRU(32), BiGRU(16) in parallel -> Concatenate -> Dense(1)": ((T, F), _parallel),
        "GRU(32, seq) -> Attention -> Concatenate -> pool -> Dense(1)": ((T, F), _gru_attention),
        "LSTM(32, return_state) -> LSTM(32, initial_state) -> Dense(1)": ((T, F), _encoder_decoder),
    }


def build(k: Any, shape: tuple[int, int], layers: Any) -> Any:
    """A Sequential model of `layers`, or a functional one when `layers` builds the output from the input."""
    if callable(layers):
        inputs = k.Input(shape)
        model = k.Model(inputs, layers(k, inputs))
    else:
        model = k.Sequential([k.Input(shape), *layers])
    model(np.zeros((1, *shape), np.float32))
    return model


def tf2onnx_path(model: Any, shape: tuple[int, ...]) -> tuple[Any, str]:
    tf, _ = frameworks.tensorflow()
    tf2onnx = frameworks.tf2onnx()
    signature = (tf.TensorSpec(shape, tf.float32, name="x"),)
    try:
        proto, _ = tf2onnx.convert.from_keras(model, input_signature=signature, opset=17)
        return proto, "from_keras"
    except Exception as exc:  # tf2onnx raises untyped errors
        failure = f"from_keras failed ({type(exc).__name__}: {str(exc)[:60]}); "
    function = tf.function(lambda x: model(x, training=False), input_signature=signature)
    proto, _ = tf2onnx.convert.from_function(function, input_signature=signature, opset=17)
    return proto, failure + "from_function"


def session(proto: Any) -> ort.InferenceSession:
    return ort.InferenceSession(proto.SerializeToString(), session_options(1), providers=["CPUExecutionProvider"])


def measure(sessions: dict[str, ort.InferenceSession], x: np.ndarray, calls: int) -> dict[str, float]:
    """Median µs per call; the sessions alternate call by call, so drift hits both alike."""
    names = {name: s.get_inputs()[0].name for name, s in sessions.items()}
    for name, s in sessions.items():
        for i in range(20):
            s.run(None, {names[name]: x[i % len(x)]})
    times: dict[str, list[float]] = {name: [] for name in sessions}
    for i in range(calls):
        for name, s in sessions.items():
            feed = {names[name]: x[i % len(x)]}
            started = time.perf_counter()
            s.run(None, feed)
            times[name].append((time.perf_counter() - started) * 1e6)
    return {name: statistics.median(t) for name, t in times.items()}


def row(flavour: str, name: str, k: Any, calls: int) -> dict[str, Any]:
    shape, layers = {**architectures(k), **graphs(k)}[name]
    k.utils.set_random_seed(0)
    model = build(k, shape, layers)
    fixed = (1, *shape)
    out = tuple(np.asarray(model(np.zeros(fixed, np.float32))).shape)
    x = np.random.default_rng(0).standard_normal((50, *fixed)).astype(np.float32)
    want = np.concatenate([np.asarray(model(x[i], training=False)) for i in range(len(x))])
    result: dict[str, Any] = {"keras": flavour, "architecture": name}
    protos = {}
    started = time.perf_counter()
    try:
        protos["tf2onnx"], how = tf2onnx_path(model, fixed)
        result["tf2onnx_how"] = how
    except Exception as exc:  # the failure is the result
        result["tf2onnx_how"] = f"failed: {type(exc).__name__}: {str(exc)[:80]}"
    result["tf2onnx_seconds"] = time.perf_counter() - started
    started = time.perf_counter()
    protos["edgeseq"] = convert(model, TensorSpec("x", fixed, "float32"), TensorSpec("y", out, "float32")).proto
    result["edgeseq_seconds"] = time.perf_counter() - started
    sessions = {path: session(proto) for path, proto in protos.items()}
    medians = measure(sessions, x, calls)
    for path, proto in protos.items():
        counts = op_type_counts(proto.graph)
        got = np.concatenate(
            [sessions[path].run(None, {sessions[path].get_inputs()[0].name: x[i]})[0] for i in range(len(x))]
        )
        result[path] = {
            "us_per_call": medians[path],
            "nodes": sum(counts.values()),
            "fused": {op: counts[op] for op in FUSED_OPS if counts[op]},
            "loops": {op: counts[op] for op in UNFUSED_OPS if counts[op]},
            "bytes": len(proto.SerializeToString()),
            "max_abs_diff_vs_keras": float(np.abs(got.reshape(want.shape) - want).max()),
        }
    return result


def markdown(rows: list[dict[str, Any]]) -> str:
    lines = [
        "| Keras | model | tf2onnx: µs, nodes, loops, bytes | edgeseq: µs, nodes, fused, bytes | speed-up "
        "| max diff vs Keras (tf2onnx / edgeseq) |",
        "|---|---|---|---|---|---|",
    ]
    for r in rows:
        e = r["edgeseq"]
        fused = ", ".join(f"{op} {n}" for op, n in e["fused"].items())
        if "tf2onnx" in r:
            t = r["tf2onnx"]
            loops = ", ".join(f"{op} {n}" for op, n in t["loops"].items()) or f"none ({', '.join(t['fused'])})"
            left = f"{t['us_per_call']:.1f}, {t['nodes']}, {loops}, {t['bytes']:,}"
            speedup = f"{t['us_per_call'] / e['us_per_call']:.1f}x"
            diffs = f"{t['max_abs_diff_vs_keras']:.1g} / {e['max_abs_diff_vs_keras']:.1g}"
        else:
            left, speedup, diffs = r["tf2onnx_how"], "-", f"- / {e['max_abs_diff_vs_keras']:.1g}"
        lines.append(
            f"| {r['keras']} | {r['architecture']} | {left} | {e['us_per_call']:.1f}, {e['nodes']}, {fused}, "
            f"{e['bytes']:,} | {speedup} | {diffs} |"
        )
    hows = sorted({(r["keras"], re.sub(r"keras_tensor_\d+", "keras_tensor_N", r["tf2onnx_how"])) for r in rows})
    lines += ["", *(f"tf2onnx path for {flavour}: {how}." for flavour, how in hows)]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--keras", choices=["keras3", "tf_keras", "both"], default="both")
    parser.add_argument("--models", choices=["chains", "graphs", "all"], default="all")
    parser.add_argument("--calls", type=int, default=2000, help="timed calls per file")
    parser.add_argument("--json", type=Path, help="write the rows as JSON")
    parser.add_argument("--markdown", type=Path, help="write the table, machine and command")
    parser.add_argument("--table-from", type=Path, metavar="JSON", help="only print the table of an earlier --json")
    args = parser.parse_args()
    if args.table_from:
        print(markdown(json.loads(args.table_from.read_text())["rows"]))
        return
    _, tf_keras = frameworks.tensorflow()
    import keras

    flavours = {"keras3": keras, "tf_keras": tf_keras}
    chosen = list(flavours) if args.keras == "both" else [args.keras]
    rows = []
    for flavour in chosen:
        k = flavours[flavour]
        chosen_models = {"chains": architectures(k), "graphs": graphs(k)}
        for name in [name for kind, models in chosen_models.items() if args.models in (kind, "all") for name in models]:
            rows.append(row(flavour, name, flavours[flavour], args.calls))
            print(f"{flavour}: {name}: done", flush=True)
    table = markdown(rows)
    print(table)
    from edgeseq.machine import describe_cpu

    machine = {**describe_cpu(), "python": platform.python_version(), "keras": keras.__version__}
    if args.json:
        args.json.write_text(json.dumps({"machine": machine, "rows": rows}, indent=2) + "\n")
    if args.markdown:
        args.markdown.write_text(f"{table}\n\nMachine: {machine['cpu']}, 1 thread, {args.calls} calls per file.\n")


if __name__ == "__main__":
    main()

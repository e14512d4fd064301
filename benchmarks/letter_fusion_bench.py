"""The letter model as tf2onnx's Loop versus edgeseq's fused RNN node: median latency per call, one thread,
measured interleaved in one run on the same Keras model (exported/letter_rnn.keras) and the same inputs.

    python benchmarks/letter_fusion_bench.py [--rounds 200]

Needs the train extra (TensorFlow, tf2onnx) to convert both ways.
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import numpy as np
import onnxruntime as ort

from edgeseq import frameworks
from edgeseq.convert import convert, op_type_counts
from edgeseq_device.letters import LetterCodec
from edgeseq_device.manifest import TensorSpec
from edgeseq_device.model import session_options

KERAS = Path(__file__).resolve().parents[1] / "exported" / "letter_rnn.keras"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=200, help="rounds over the 625 sequences")
    args = parser.parse_args()

    tf, keras = frameworks.tensorflow()
    tf2onnx = frameworks.tf2onnx()
    model = keras.models.load_model(KERAS)
    signature = (tf.TensorSpec((1, 4, 5), tf.float32, name="letters"),)
    loop, _ = tf2onnx.convert.from_keras(model, input_signature=signature, opset=17)
    fused = convert(model, TensorSpec("letters", (1, 4, 5), "float32"), TensorSpec("probs", (1, 5), "float32"))
    sessions = {
        name: ort.InferenceSession(proto.SerializeToString(), session_options(1), providers=["CPUExecutionProvider"])
        for name, proto in (("tf2onnx Loop", loop), ("edgeseq RNN", fused))
    }
    codec = LetterCodec("abcde", 4)
    x = codec.encode_batch(codec.all_sequences())[:, None]
    times: dict[str, list[float]] = {name: [] for name in sessions}
    for _ in range(3):  # warm-up
        for session in sessions.values():
            session.run(None, {"letters": x[0]})
    for _ in range(args.rounds):
        for name, session in sessions.items():  # interleaved: drift hits both alike
            for i in range(0, len(x), 25):
                t0 = time.perf_counter()
                session.run(None, {"letters": x[i]})
                times[name].append((time.perf_counter() - t0) * 1e3)
    print("| graph | nodes | median ms per call | p99 ms |\n|---|---|---|---|")
    for name, proto in (("tf2onnx Loop", loop), ("edgeseq RNN", fused)):
        counts = op_type_counts(proto.graph)
        summary = ", ".join(f"{op} {n}" for op, n in sorted(counts.items()) if op in ("Loop", "RNN", "Scan"))
        print(
            f"| {name} | {summary} ({sum(counts.values())} incl. subgraph) | {statistics.median(times[name]):.4f} "
            f"| {np.percentile(times[name], 99):.4f} |"
        )
    speedup = statistics.median(times["tf2onnx Loop"]) / statistics.median(times["edgeseq RNN"])
    print(f"\nfused RNN is {speedup:.1f}x faster per call ({len(times['edgeseq RNN'])} calls each)")


if __name__ == "__main__":
    main()

"""The letter RNN's export recipe: train if needed, convert, check parity on every sequence, write."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np

from edgeseq import frameworks
from edgeseq.convert import DEFAULT_OPSET, PARITY_ATOL, keras_unchanged, parity_figures
from edgeseq.export.artifacts import (
    ExportResult,
    Staging,
    convert_and_stage,
    keras_model,
    remove_stale_variants,
    run_onnx,
    write_json,
)
from edgeseq.export.companions import TaskWindows, make_companion, record
from edgeseq.progress import Progress, Silent
from edgeseq_device.manifest import TensorSpec


def export_letter_rnn(
    out_dir: Path = Path("exported"),
    *,
    retrain: bool = False,
    config: Any = None,
    opset: int = DEFAULT_OPSET,
    progress: Progress = Silent(),
    allow_unfused: bool = False,
) -> ExportResult:
    """Train (if needed), convert, verify and write letter_rnn.{keras,onnx,json} to `out_dir`.

    The SimpleRNN becomes one ONNX RNN node (edgeseq.convert); a recurrent layer left as a Loop fails
    the export unless `allow_unfused`, which warns instead.
    """
    frameworks.require_training()

    from edgeseq.data import letter_arrays
    from edgeseq.train import LetterConfig, train_letter_rnn

    config = config or LetterConfig()
    codec = config.codec
    started = time.perf_counter()
    name, kind, out_dir = "letter_rnn", "letters", Path(out_dir)
    keras_path, onnx_path, manifest_path = (out_dir / f"{name}{ext}" for ext in (".keras", ".onnx", ".json"))

    with Staging(out_dir) as staging:
        model, training, keras_file = keras_model(
            keras_path, staging, retrain, lambda: train_letter_rnn(config, progress), progress, name
        )
        x_all = codec.encode_batch(codec.all_sequences())
        x_pat, y_pat = letter_arrays(codec)
        keras_all = model(x_all, training=False).numpy()
        keras_pat = model(x_pat, training=False).numpy()

        progress.step("converting to ONNX")
        specs = (
            TensorSpec("letters", (1, codec.window, len(codec.vocabulary)), "float32"),
            TensorSpec("probs", (1, len(codec.vocabulary)), "float32"),
        )
        facts = {"vocabulary": codec.vocabulary, "window": codec.window}
        manifest, device_model = convert_and_stage(
            model, specs, name, kind, facts, training, [keras_file], staging, opset, allow_unfused, progress
        )
        progress.step(f"checking parity on all {len(x_all)} sequences")
        onnx_all, onnx_pat = run_onnx(device_model, x_all), run_onnx(device_model, x_pat)
        check = {"atol": PARITY_ATOL, "output": specs[1].name, "argmax": True}
        manifest["parity"] = {
            "patterns": parity_figures(keras_pat, onnx_pat, what=f"the {len(x_pat)} training patterns", **check),
            "all_sequences": parity_figures(keras_all, onnx_all, what=f"all {len(x_all)} one-hot sequences", **check),
        }
        keras_unchanged(keras_all, model(x_all, training=False).numpy(), name)
        manifest["parity"]["keras_unchanged_after_conversion"] = True
        manifest["accuracy"] = {
            "patterns_onnx": float(np.mean(onnx_pat.argmax(axis=1) == y_pat)),
            "patterns_keras": float(np.mean(keras_pat.argmax(axis=1) == y_pat)),
        }
        progress.step(f"writing the batched companion, checked on all {len(x_all)} sequences")
        task = TaskWindows(x_all, PARITY_ATOL, f"all {len(x_all)} one-hot sequences")
        record(manifest, onnx_path.name, *make_companion(staging.dir / onnx_path.name, task))
        write_json(staging.dir / manifest_path.name, manifest)
        written = staging.commit()
    for path in remove_stale_variants(out_dir, name, written):
        progress.step(f"removed {path.name}: made from the previous export (re-create with --quantize)")

    return ExportResult(onnx_path, manifest_path, manifest, time.perf_counter() - started)

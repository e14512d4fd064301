"""Keras -> tf2onnx -> ONNX with a fixed signature, verified against Keras, written with its manifest."""

from __future__ import annotations

import json
import platform
import shutil
import tempfile
import time
from collections import Counter
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

import edgeseq
from edgeseq import frameworks
from edgeseq.errors import ConversionError, ParityError
from edgeseq.progress import Progress, Silent
from edgeseq_device.manifest import MANIFEST_FORMAT, FileEntry, TensorSpec, sha256_of
from edgeseq_device.model import load_model

DEFAULT_OPSET = 17
PARITY_ATOL = 1e-5


@dataclass(frozen=True)
class ExportResult:
    """What `export_*` wrote and the figures it verified."""

    onnx_path: Path
    manifest_path: Path
    manifest: dict[str, Any]
    seconds: float


def producer_versions() -> dict[str, str]:
    tf, keras = frameworks.tensorflow()
    tf2onnx = frameworks.tf2onnx()
    import onnx

    return {
        "tensorflow": tf.__version__,
        "tf_keras": keras.__version__,
        "tf2onnx": tf2onnx.__version__,
        "onnx": onnx.__version__,
        "python": platform.python_version(),
    }


def op_type_counts(graph: Any) -> Counter[str]:
    """Count op types in an ONNX graph, including subgraphs (a Loop's body counts too)."""
    counts: Counter[str] = Counter()
    for node in graph.node:
        counts[node.op_type] += 1
        for attr in node.attribute:
            if attr.HasField("g"):
                counts.update(op_type_counts(attr.g))
            for sub in attr.graphs:
                counts.update(op_type_counts(sub))
    return counts


def _tensor_specs(values: Any) -> tuple[TensorSpec, ...]:
    import onnx

    specs = []
    for value in values:
        tensor_type = value.type.tensor_type
        shape = tuple(d.dim_value if d.HasField("dim_value") else -1 for d in tensor_type.shape.dim)
        dtype = onnx.helper.tensor_dtype_to_np_dtype(tensor_type.elem_type).name
        specs.append(TensorSpec(value.name, shape, dtype))
    return tuple(specs)


def convert(
    keras_model: Any,
    input_spec: TensorSpec,
    output_spec: TensorSpec,
    *,
    opset: int = DEFAULT_OPSET,
    metadata: dict[str, str] | None = None,
) -> Any:
    """Convert with tf2onnx under a fixed input signature; check names, shapes, opset and the ONNX checker.

    Returns the onnx.ModelProto with `metadata` in its metadata_props. Raises ConversionError.
    """
    tf, _ = frameworks.tensorflow()
    tf2onnx = frameworks.tf2onnx()
    import onnx

    if opset < 17:
        raise ConversionError(f"opset {opset} is below 17, the lowest edgeseq supports")
    signature = (tf.TensorSpec(input_spec.shape, tf.dtypes.as_dtype(input_spec.dtype), name=input_spec.name),)
    try:
        proto, _ = tf2onnx.convert.from_keras(keras_model, input_signature=signature, opset=opset)
    except Exception as exc:  # tf2onnx raises a variety of untyped errors
        raise ConversionError(f"tf2onnx could not convert {keras_model.name}: {type(exc).__name__}: {exc}") from exc

    inputs, outputs = _tensor_specs(proto.graph.input), _tensor_specs(proto.graph.output)
    if inputs != (input_spec,) or outputs != (output_spec,):
        raise ConversionError(
            f"converted signature is {', '.join(map(str, inputs))} -> {', '.join(map(str, outputs))}; "
            f"expected {input_spec} -> {output_spec}"
        )
    if metadata:
        onnx.helper.set_model_props(proto, metadata)
    try:
        onnx.checker.check_model(proto, full_check=True)
    except onnx.checker.ValidationError as exc:
        raise ConversionError(f"converted model fails onnx.checker: {exc}") from exc
    return proto


def parity_figures(
    reference: np.ndarray, candidate: np.ndarray, *, atol: float, output: str, what: str, argmax: bool
) -> dict[str, Any]:
    """Compare Keras (`reference`) with onnxruntime (`candidate`); raise ParityError carrying the numbers."""
    diff = np.abs(reference.astype(np.float64) - candidate.astype(np.float64))
    max_abs = float(diff.max())
    max_rel = float((diff / np.maximum(np.abs(reference), 1e-12)).max())
    figures: dict[str, Any] = {
        "compared": what,
        "count": int(reference.shape[0]),
        "max_abs_diff": max_abs,
        "max_rel_diff": max_rel,
        "atol": atol,
    }
    problems = []
    if not max_abs <= atol:
        problems.append(f"max abs diff {max_abs:.3g} > atol {atol:g}")
    if argmax:
        mismatches = int(np.sum(reference.argmax(axis=1) != candidate.argmax(axis=1)))
        figures["argmax_mismatches"] = mismatches
        if mismatches:
            problems.append(f"argmax differs on {mismatches} of {reference.shape[0]}")
    if problems:
        raise ParityError(f"onnxruntime vs Keras on output '{output}' over {what}: {'; '.join(problems)}")
    return figures


def keras_unchanged(before: np.ndarray, after: np.ndarray, name: str) -> None:
    """Raise ParityError unless re-running Keras after conversion gives bit-identical outputs."""
    if not np.array_equal(before, after):
        diff = float(np.max(np.abs(before - after)))
        raise ParityError(f"converting {name} changed the Keras model: its outputs moved by up to {diff:.3g}")


def file_entry(path: Path) -> FileEntry:
    content = path.read_bytes()
    return FileEntry(sha256_of(content), len(content))


def write_json(path: Path, data: dict[str, Any]) -> None:
    path.write_text(json.dumps(data, indent=2, sort_keys=False) + "\n", encoding="utf-8")


class Staging:
    """A scratch directory inside `out_dir`; files move into `out_dir` only once everything checked out."""

    def __init__(self, out_dir: Path) -> None:
        out_dir.mkdir(parents=True, exist_ok=True)
        self.out_dir = out_dir
        self.dir = Path(tempfile.mkdtemp(prefix=".staging-", dir=out_dir))

    def __enter__(self) -> Staging:
        return self

    def __exit__(self, *exc: object) -> None:
        shutil.rmtree(self.dir, ignore_errors=True)

    def commit(self) -> None:
        for item in self.dir.iterdir():
            item.replace(self.out_dir / item.name)


def _previous_training_record(manifest_path: Path) -> dict[str, Any]:
    """The training record of the manifest being replaced, when the Keras model is reused as it is."""
    try:
        return dict(json.loads(manifest_path.read_text(encoding="utf-8"))["training"])
    except (OSError, ValueError, KeyError, TypeError):
        return {"note": "Keras model reused; no earlier training record"}


def run_onnx(model: Any, x: np.ndarray) -> np.ndarray:
    """Run a batch-1 ONNX model over each row of `x` and stack the outputs."""
    return np.concatenate([model.run(x[i : i + 1]) for i in range(len(x))])


def export_letter_rnn(
    out_dir: Path = Path("exported"),
    *,
    retrain: bool = False,
    config: Any = None,
    opset: int = DEFAULT_OPSET,
    progress: Progress = Silent(),
) -> ExportResult:
    """Train (if needed), convert, verify and write letter_rnn.{keras,onnx,json} to `out_dir`."""
    frameworks.require_training()
    import onnx

    from edgeseq.data import letter_arrays
    from edgeseq.train import LetterConfig, train_letter_rnn

    _, keras = frameworks.tensorflow()
    config = config or LetterConfig()
    codec = config.codec
    started = time.perf_counter()
    name, out_dir = "letter_rnn", Path(out_dir)
    keras_path, onnx_path, manifest_path = (out_dir / f"{name}{ext}" for ext in (".keras", ".onnx", ".json"))

    with Staging(out_dir) as staging:
        if retrain or not keras_path.exists():
            progress.step(f"training {name}")
            model, training = train_letter_rnn(config, progress)
            model.save(staging.dir / keras_path.name)
            keras_file = staging.dir / keras_path.name
        else:
            progress.step(f"loading {keras_path}")
            model = keras.models.load_model(keras_path)
            training = _previous_training_record(manifest_path)
            keras_file = keras_path

        x_all = codec.encode_batch(codec.all_sequences())
        x_pat, y_pat = letter_arrays(codec)
        keras_all = model(x_all, training=False).numpy()
        keras_pat = model(x_pat, training=False).numpy()

        progress.step("converting with tf2onnx")
        input_spec = TensorSpec("letters", (1, codec.window, len(codec.vocabulary)), "float32")
        output_spec = TensorSpec("probs", (1, len(codec.vocabulary)), "float32")
        versions = producer_versions()
        metadata = {
            "kind": "letters",
            "name": name,
            "vocabulary": codec.vocabulary,
            "window": str(codec.window),
            "edgeseq_version": edgeseq.__version__,
            **{f"producer.{k}": v for k, v in versions.items()},
        }
        proto = convert(model, input_spec, output_spec, opset=opset, metadata=metadata)
        onnx.save(proto, staging.dir / onnx_path.name)

        manifest: dict[str, Any] = {
            "format": MANIFEST_FORMAT,
            "name": name,
            "kind": "letters",
            "edgeseq_version": edgeseq.__version__,
            "vocabulary": codec.vocabulary,
            "window": codec.window,
            "inputs": [input_spec.to_json()],
            "outputs": [output_spec.to_json()],
            "opset": opset,
            "op_types": dict(sorted(op_type_counts(proto.graph).items())),
            "files": {path.name: asdict(file_entry(path)) for path in (staging.dir / onnx_path.name, keras_file)},
            "producers": versions,
            "training": training,
        }
        write_json(staging.dir / manifest_path.name, manifest)

        progress.step(f"checking parity on all {len(x_all)} sequences")
        # Through the device runtime, as a user loads it: sha256 and signature are checked first.
        device_model = load_model(staging.dir / onnx_path.name, require_manifest=True)
        onnx_all, onnx_pat = run_onnx(device_model, x_all), run_onnx(device_model, x_pat)
        check = {"atol": PARITY_ATOL, "output": output_spec.name, "argmax": True}
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
        write_json(staging.dir / manifest_path.name, manifest)
        staging.commit()

    return ExportResult(onnx_path, manifest_path, manifest, time.perf_counter() - started)

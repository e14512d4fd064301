"""What every export recipe shares: staging, convert-and-stage, the manifest, ONNX metadata, file entries."""

from __future__ import annotations

import json
import shutil
import tempfile
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

import edgeseq
from edgeseq import frameworks
from edgeseq.convert import Converted, convert, op_type_counts, pre_post, producer_versions
from edgeseq.convert.pre_post import Transform
from edgeseq.errors import BadInputError
from edgeseq.progress import Progress
from edgeseq_device.manifest import MANIFEST_FORMAT, FileEntry, TensorSpec, sha256_of
from edgeseq_device.model import Model, load_model


@dataclass(frozen=True)
class ExportResult:
    """What `export_*` wrote and the figures it verified."""

    onnx_path: Path
    manifest_path: Path
    manifest: dict[str, Any]
    seconds: float


def file_entry(path: Path) -> FileEntry:
    content = path.read_bytes()
    return FileEntry(sha256_of(content), len(content))


def write_json(path: Path, data: dict[str, Any]) -> None:
    path.write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")


def remove_stale_variants(out_dir: Path, name: str, written: list[str]) -> list[Path]:
    """A new export replaces <name>.onnx and its manifest; variants of the old file (and their batched companions)
    no longer match it. `written`: the files this export wrote, such as <name>.batched.onnx, which stay."""
    stale = sorted(path for path in out_dir.glob(f"{name}.*.onnx") if path.name not in written)
    for path in stale:
        path.unlink()
    return stale


class Staging:
    """A scratch directory inside `out_dir`; files move into `out_dir` only once everything checked out."""

    def __init__(self, out_dir: Path) -> None:
        try:
            out_dir.mkdir(parents=True, exist_ok=True)
            self.dir = Path(tempfile.mkdtemp(prefix=".staging-", dir=out_dir))
        except OSError as exc:  # a file of that name, a read-only place, /proc
            raise BadInputError(f"--out {out_dir}: cannot write there ({exc.strerror or exc})") from None
        self.out_dir = out_dir

    def __enter__(self) -> Staging:
        return self

    def __exit__(self, *exc: object) -> None:
        shutil.rmtree(self.dir, ignore_errors=True)

    def commit(self) -> list[str]:
        """Move every staged file into `out_dir`; return their names."""
        names = []
        for item in self.dir.iterdir():
            item.replace(self.out_dir / item.name)
            names.append(item.name)
        return names


def _previous_training_record(manifest_path: Path) -> dict[str, Any]:
    """The training record of the manifest being replaced, when the Keras model is reused as it is."""
    try:
        return dict(json.loads(manifest_path.read_text(encoding="utf-8"))["training"])
    except (OSError, ValueError, KeyError, TypeError):
        return {"note": "Keras model reused; no earlier training record"}


def run_onnx(model: Any, x: np.ndarray) -> np.ndarray:
    """Run a batch-1 ONNX model over each row of `x` and stack the outputs."""
    return np.concatenate([model.run(x[i : i + 1]) for i in range(len(x))])


def keras_model(
    keras_path: Path, staging: Staging, retrain: bool, train: Any, progress: Progress, name: str
) -> tuple[Any, dict[str, Any], Path]:
    """Train (no model yet, or `retrain`) and save into staging, or load the existing model as it is."""
    if retrain or not keras_path.exists():
        progress.step(f"training {name}")
        model, training = train()
        model.save(staging.dir / keras_path.name)
        return model, training, staging.dir / keras_path.name
    progress.step(f"loading {keras_path} (use --retrain to train again)")
    _, keras = frameworks.tensorflow()
    return keras.models.load_model(keras_path), _previous_training_record(keras_path.with_suffix(".json")), keras_path


def base_manifest(
    name: str, kind: str, converted: Converted, specs: tuple[TensorSpec, TensorSpec], files: list[Path], opset: int
) -> dict[str, Any]:
    return {
        "format": MANIFEST_FORMAT,
        "name": name,
        "kind": kind,
        "edgeseq_version": edgeseq.__version__,
        "inputs": [spec.to_json() for spec in (specs[0], *(state_in for state_in, _ in converted.states))],
        "outputs": [spec.to_json() for spec in (specs[1], *(state_out for _, state_out in converted.states))],
        "opset": opset,
        "op_types": converted.op_types,
        "files": {path.name: asdict(file_entry(path)) for path in files},
        "producers": producer_versions(),
    }


def _metadata(name: str, kind: str, facts: dict[str, Any]) -> dict[str, str]:
    """ONNX metadata_props: the key facts as strings (lists and dicts as JSON), plus versions."""
    props = {"kind": kind, "name": name, "edgeseq_version": edgeseq.__version__}
    for key, value in facts.items():
        props[key] = value if isinstance(value, str) else json.dumps(value)
    props.update({f"producer.{k}": v for k, v in producer_versions().items()})
    return props


def convert_and_stage(
    model: Any,
    specs: tuple[TensorSpec, TensorSpec],
    name: str,
    kind: str,
    facts: dict[str, Any],
    training: dict[str, Any],
    source_files: list[Path],
    staging: Staging,
    opset: int,
    allow_unfused: bool,
    progress: Progress,
    transform: Transform | None = None,
) -> tuple[dict[str, Any], Model]:
    """Convert (edgeseq.convert: fused recurrent nodes, onnx.checker, fusion audit), put the `transform`'s
    pre/post-processing ops around the network (then `specs` is the file's signature, the transform's), write
    <name>.onnx and its manifest into staging, and load the file back through the device runtime, as a user
    would: its sha256 and signature are checked first."""
    import onnx

    metadata = _metadata(name, kind, facts)
    network_specs = pre_post.network_specs(transform) if transform else specs
    converted = convert(model, *network_specs, opset=opset, metadata=metadata, allow_unfused=allow_unfused)
    if converted.warning:
        progress.step(f"warning: {converted.warning}")
    if transform:
        if specs != (transform.window, transform.output):
            raise ValueError(f"the file's signature {specs} is not the transform's")
        proto = pre_post.wrap(converted.proto, transform)
        converted = replace(converted, proto=proto, op_types=dict(sorted(op_type_counts(proto.graph).items())))
    onnx_file = staging.dir / f"{name}.onnx"
    onnx.save(converted.proto, onnx_file)
    manifest = base_manifest(name, kind, converted, specs, [onnx_file, *source_files], opset)
    manifest.update(facts, fusion=converted.audit, training=training)
    write_json(staging.dir / f"{name}.json", manifest)
    return manifest, load_model(onnx_file, require_manifest=True)

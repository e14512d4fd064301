"""Load an ONNX model into onnxruntime after checking it against its manifest, and run it."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnxruntime as ort

from edgeseq_device.errors import InputError, ManifestError, ModelFileError, SignatureError
from edgeseq_device.external_data import MalformedModel, find_external_data
from edgeseq_device.files import MODEL_MAX_BYTES, read_regular_file
from edgeseq_device.manifest import Manifest, TensorSpec, manifest_path_for, sha256_of
from edgeseq_device.messages import shown
from edgeseq_device.trust import SignedModel, Trust, verify_model

# onnxruntime names element types 'tensor(float)'; manifests use numpy dtype names.
_ORT_DTYPES = {
    "tensor(float)": "float32",
    "tensor(float16)": "float16",
    "tensor(double)": "float64",
    "tensor(int64)": "int64",
    "tensor(int32)": "int32",
    "tensor(int8)": "int8",
    "tensor(uint8)": "uint8",
}


def _spec(arg: ort.NodeArg) -> TensorSpec:
    shape = tuple(d if isinstance(d, int) else -1 for d in arg.shape)
    return TensorSpec(arg.name, shape, _ORT_DTYPES.get(arg.type, arg.type))


@dataclass
class Model:
    """An onnxruntime session with the signature and metadata it was loaded with."""

    path: Path
    session: ort.InferenceSession
    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]
    metadata: Mapping[str, str]
    manifest: Manifest | None
    signed: SignedModel | None = None  # its signature, when trust was configured and it verified

    def run(self, x: np.ndarray) -> np.ndarray:
        """Run the single-input model on `x` and return its first output."""
        return self.session.run([self.outputs[0].name], {self.inputs[0].name: x})[0]


def usable_cpus() -> int:
    """CPUs this process may run on (its affinity mask, which containers and taskset narrow)."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def session_options(threads: int = 1) -> ort.SessionOptions:
    """Options for a small CPU: `threads` intra-op threads, no inter-op pool, all graph optimisations.

    More threads than CPUs only adds contention (and 100,000 of them exhaust memory before a row is read),
    so `threads` must lie between 1 and the CPUs this process may use.
    """
    cpus = usable_cpus()
    if not 1 <= threads <= cpus:
        raise InputError(f"threads must be 1 to {cpus} (the CPUs this process may use), got {threads}")
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    # FATAL only: a kernel that fails on one input (an index out of range) is raised to the caller, which
    # reports it in one line; onnxruntime's own ERROR log would add a second, coloured one
    opts.log_severity_level = 4
    return opts


def load_model(
    path: str | Path,
    *,
    threads: int = 1,
    require_manifest: bool = False,
    use_manifest: bool = True,
    trust: Trust | None = None,
) -> Model:
    """Load `path`; when a manifest lies beside it, verify the file's sha256 first, then that the manifest
    describes the file's signature (with a dynamic batch axis, when the manifest lists the file as a batched
    companion) and says what the file's own metadata says (features, window, scaling...).

    With `trust`, before any of that, the model's OMS signature (`<stem>.sig`) must be by one of its keys and
    cover every file of the model as it is (trust.verify_model); the bytes loaded are the bytes it signs.

    A file that keeps any tensor's data outside itself (external data) is refused with or without a manifest:
    onnxruntime would read it from a path relative to the working directory, which no sha256 covers.
    `use_manifest=False` skips the manifest entirely (for diagnostics such as `edgeseq info`).

    Raises ModelFileError, ManifestError, IntegrityError, SignatureError or TrustError with a one-line message.
    """
    path = Path(path)
    content = read_regular_file(path, MODEL_MAX_BYTES, "model file", ModelFileError)
    signed = verify_model(path, trust) if trust is not None else None
    if path.suffix == ".json" or content[:1] == b"{":
        raise ModelFileError(
            f"{path} is a JSON manifest, not a model: give the ONNX file it describes "
            f"(such as {path.with_suffix('.onnx')})"
        )

    manifest_path = manifest_path_for(path)
    manifest = Manifest.load(manifest_path) if use_manifest and manifest_path.exists() else None
    if manifest is None and require_manifest:
        raise ModelFileError(f"no manifest beside {path} (expected {manifest_path})")
    if signed is not None:
        signed.check(path.name, sha256_of(content))
        if manifest is not None:
            signed.check(manifest_path.name, manifest.sha256)
    if manifest is not None:
        manifest.verify_file(path.name, content)
    _refuse_external_data(path, content)

    options = session_options(threads)
    try:
        session = ort.InferenceSession(content, options, providers=["CPUExecutionProvider"])
    except Exception as exc:  # onnxruntime raises its own untyped errors for any unloadable file
        first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ModelFileError(f"{path} is not a loadable ONNX model: {first_line}") from None

    inputs = tuple(_spec(a) for a in session.get_inputs())
    outputs = tuple(_spec(a) for a in session.get_outputs())
    if manifest is not None:
        companion = manifest.companion_of(path.name) is not None
        for role, actual, expected in (("inputs", inputs, manifest.inputs), ("outputs", outputs, manifest.outputs)):
            if companion:  # a batched companion: the manifest's signature with a dynamic batch axis
                expected = tuple(spec.batched() for spec in expected)
            if actual != expected:
                raise SignatureError(
                    f"{path} {role} are {', '.join(map(str, actual))}; "
                    f"its manifest says {', '.join(map(str, expected))}"
                )
    try:
        metadata = dict(session.get_modelmeta().custom_metadata_map)
    except UnicodeDecodeError:  # protobuf strings need not be UTF-8; onnxruntime's Python binding decodes them
        raise ModelFileError(f"{path} is not a loadable ONNX model: its metadata is not UTF-8 text") from None
    if manifest is not None:
        manifest.verify_metadata(path.name, metadata)
    return Model(path, session, inputs, outputs, metadata, manifest, signed)


@dataclass(frozen=True)
class Companion:
    """A model's batched companion (`<stem>.batched.onnx`): the same network with a dynamic batch axis, run on
    several staged windows at once. `bit_identical`: its outputs equal the single-window file's, bit for bit, at
    every batch size export checked; otherwise they differ by at most `max_abs_diff` there (a dynamic-int8 file
    quantizes each call's activations across the whole call)."""

    path: Path
    session: ort.InferenceSession
    bit_identical: bool
    max_abs_diff: float


def companion_path(model: Model) -> Path | None:
    """Where the batched companion the manifest lists for `model` is, or None when it lists none (a file
    exported before companions, a model whose graph cannot take a batch)."""
    if model.manifest is None:
        return None
    entry = model.manifest.data.get("batched", {}).get(model.path.name)
    if not isinstance(entry, dict) or not isinstance(entry.get("file"), str):
        return None
    path = model.path.with_name(entry["file"])
    if path.name != entry["file"] or path.parent != model.path.parent:
        raise ManifestError(f"manifest {model.manifest.path}: batched file {shown(entry['file'])} is not a plain name")
    return path


def load_companion(model: Model, *, threads: int = 1) -> Companion | None:
    """The batched companion the manifest lists for `model`, checked as the model was (sha256, no external data,
    the same metadata) and against it (the same inputs and outputs but for a dynamic batch axis); None when the
    manifest lists none, or when it is not beside the model (a model copied without it runs a window a call:
    the companion only makes it faster). A companion there but not the one listed is refused."""
    path = companion_path(model)
    if path is None or not os.path.lexists(path):
        return None
    entry = model.manifest.data["batched"][model.path.name]  # type: ignore[union-attr]
    content = read_regular_file(path, MODEL_MAX_BYTES, "model file", ModelFileError)
    if model.signed is not None:
        model.signed.check(path.name, sha256_of(content))
    model.manifest.verify_file(path.name, content)
    _refuse_external_data(path, content)
    try:
        session = ort.InferenceSession(content, session_options(threads), providers=["CPUExecutionProvider"])
    except Exception as exc:
        first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ModelFileError(f"{path} is not a loadable ONNX model: {first_line}") from None
    for role, ours, single in (
        ("inputs", session.get_inputs(), model.inputs),
        ("outputs", session.get_outputs(), model.outputs),
    ):
        batched = tuple(_spec(arg) for arg in ours)
        expected = tuple(TensorSpec(spec.name, (-1, *spec.shape[1:]), spec.dtype) for spec in single)
        if batched[:1] != expected[:1]:
            raise SignatureError(
                f"{path} {role} are {', '.join(map(str, batched))}; as the batched companion of {model.path.name} "
                f"it should take {', '.join(map(str, expected[:1]))}"
            )
    if dict(session.get_modelmeta().custom_metadata_map) != dict(model.metadata):
        raise ManifestError(f"{path}'s metadata differs from {model.path.name}'s: it is not its batched companion")
    assert model.manifest is not None
    try:
        diff = float(entry.get("max_abs_diff", 0.0))
    except (TypeError, ValueError):
        raise ManifestError(f"manifest {model.manifest.path}: batched max_abs_diff is not a number") from None
    return Companion(path, session, entry.get("bit_identical") is True, diff)


def _refuse_external_data(path: Path, content: bytes) -> None:
    try:
        external = find_external_data(content)
    except MalformedModel as exc:
        raise ModelFileError(f"{path} is not a loadable ONNX model: {exc}") from None
    if external is not None:
        where = shown(external.location) if external.location is not None else "no location given"
        raise ModelFileError(
            f"{path}: tensor {shown(external.name)} is external data ({where}); edgeseq loads only "
            "self-contained ONNX files, whose sha256 covers every weight"
        )

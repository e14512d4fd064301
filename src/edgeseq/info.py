"""What an exported model is: signature, op types, size, metadata, and whether its manifest vouches for it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from edgeseq_device.errors import IntegrityError, ManifestError, ModelFileError, SignatureError
from edgeseq_device.files import MODEL_MAX_BYTES, read_regular_file
from edgeseq_device.manifest import manifest_path_for, sha256_of
from edgeseq_device.model import load_model


def op_type_counts_of(content: bytes, path: Path) -> dict[str, int] | None:
    """Op-type counts (subgraphs included), or None when the optional `onnx` package is not installed.

    Parsed from the bytes the sha256 is shown for: onnx.load(path) would read external data from other files
    (load_model refuses such a file, but it could be replaced in between)."""
    try:
        import onnx
    except ImportError:
        return None
    from edgeseq.convert import op_type_counts

    try:
        proto = onnx.load_model_from_string(content)
    except Exception as exc:  # protobuf's DecodeError, for a file that changed since onnxruntime loaded it
        raise ModelFileError(f"{path} is not a loadable ONNX model: {exc}") from None
    return dict(sorted(op_type_counts(proto.graph).items()))


def describe(path: Path, trust: tuple[str, ...] = ()) -> dict[str, Any]:
    """A JSON-able description of `path`. Raises ModelFileError if it cannot be loaded at all, TrustError if a key
    in `trust` cannot be used."""
    path = Path(path)
    manifest_path = manifest_path_for(path)
    check = "no manifest"
    try:
        model = load_model(path)
        if model.manifest is not None:
            check = "ok: sha256 and signature match"
    except (IntegrityError, SignatureError, ManifestError) as exc:
        check = f"FAILED: {exc}"
        model = load_model(path, use_manifest=False)
    content = read_regular_file(path, MODEL_MAX_BYTES, "model file", ModelFileError)
    description: dict[str, Any] = {
        "path": str(path),
        "size": len(content),
        "sha256": sha256_of(content),
        "manifest": str(manifest_path) if manifest_path.exists() else None,
        "manifest_check": check,
        "inputs": [spec.to_json() for spec in model.inputs],
        "outputs": [spec.to_json() for spec in model.outputs],
        "op_types": op_type_counts_of(content, path),
        "metadata": dict(sorted(model.metadata.items())),
        "signed": signed(path, trust),
    }
    if model.manifest is not None:
        for key in ("kind", "series", "csv", "fusion", "parity", "accuracy"):
            if key in model.manifest.data:
                description[key] = model.manifest.data[key]
        description.update(batched_entry(model.manifest, path.name))
    description["processing"] = processing(model.manifest.data if model.manifest is not None else None, model)
    return description


def signed(path: Path, trust: tuple[str, ...] = ()) -> dict[str, Any] | None:
    """None when `path` has no signature; else its file and the key it names, and with `trust` whether it verifies
    ("ok: ..." or "FAILED: ...", as manifest_check says)."""
    from edgeseq_device.errors import TrustError
    from edgeseq_device.trust import Trust, describe, verify_model

    description = describe(path)
    if description is None or not trust:
        return description
    keys = Trust.load(trust)
    try:
        description["check"] = f"ok: signed by trusted key {verify_model(path, keys).key}"
    except TrustError as exc:
        description["check"] = f"FAILED: {exc}"
    return description


def batched_entry(manifest: Any, file_name: str) -> dict[str, Any]:
    """The manifest's batched companion entry for `file_name` (as "batched"), or, for a companion, its single-window
    file's entry (as "batched" with "companion_of"); nothing when the manifest predates companions."""
    entries = manifest.data.get("batched")
    if not isinstance(entries, dict):
        return {}
    single = manifest.companion_of(file_name)
    if single is not None:
        return {"batched": {"companion_of": single, **entries[single]}}
    return {"batched": entries[file_name]} if isinstance(entries.get(file_name), dict) else {}


def processing(manifest: dict[str, Any] | None, model: Any) -> str:
    """Which kind of file this is: pre/post-processing in its graph (raw readings in), or done by the caller."""
    first_in = model.inputs[0]
    if manifest is None:
        raw = first_in.dtype == "float64"
        return f"{'raw' if raw else 'model-space'} input ({first_in.dtype}); no manifest to say what the graph applies"
    if manifest.get("kind") == "forecaster":
        scaling = manifest.get("scaling") or {}
        target = manifest.get("target")
        if scaling.get("in_graph"):
            return f"in the graph: raw window in ({first_in.dtype}), forecast of {target} in its units out"
        return (
            f"by the caller: the file takes scaled windows and returns the scaled change of {target} "
            f"(formulation {scaling.get('formulation')}; exported before pre/post-processing moved into the graph)"
        )
    if manifest.get("kind") == "sequence":
        normalization = manifest.get("normalization")
        if normalization is None:
            return f"none: the file takes the rows as read ({first_in.dtype})"
        if normalization.get("in_graph"):
            return f"in the graph: raw window in ({first_in.dtype}), normalised by the graph"
        return "by the caller: the file takes normalised windows (exported before normalisation moved into the graph)"
    return f"{first_in.dtype} input, as the task encodes it"

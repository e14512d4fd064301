"""What an exported model is: signature, op types, size, metadata, and whether its manifest vouches for it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from edgeseq_device.errors import IntegrityError, ManifestError, SignatureError
from edgeseq_device.manifest import manifest_path_for, sha256_of
from edgeseq_device.model import load_model


def op_type_counts_of_file(path: Path) -> dict[str, int] | None:
    """Op-type counts (subgraphs included), or None when the optional `onnx` package is not installed."""
    try:
        import onnx
    except ImportError:
        return None
    from edgeseq.convert import op_type_counts

    return dict(sorted(op_type_counts(onnx.load(path).graph).items()))


def describe(path: Path) -> dict[str, Any]:
    """A JSON-able description of `path`. Raises ModelFileError if it cannot be loaded at all."""
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
    content = path.read_bytes()
    description: dict[str, Any] = {
        "path": str(path),
        "size": len(content),
        "sha256": sha256_of(content),
        "manifest": str(manifest_path) if manifest_path.exists() else None,
        "manifest_check": check,
        "inputs": [spec.to_json() for spec in model.inputs],
        "outputs": [spec.to_json() for spec in model.outputs],
        "op_types": op_type_counts_of_file(path),
        "metadata": dict(sorted(model.metadata.items())),
    }
    if model.manifest is not None:
        for key in ("kind", "series", "fusion", "parity", "accuracy"):
            if key in model.manifest.data:
                description[key] = model.manifest.data[key]
    return description

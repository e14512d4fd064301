"""edgeseq on-device runtime: load an exported model, check it, run it (numpy + onnxruntime only).

The names below are imported on first use (PEP 562), so `python -m edgeseq_device` and `import
edgeseq_device.errors` do not load numpy and onnxruntime before they are needed: Ctrl-C during start-up
then reaches the front end's own handler, and a light import stays light.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.2.0"

_WHERE = {
    "DeviceError": "errors",
    "InputError": "errors",
    "IntegrityError": "errors",
    "ManifestError": "errors",
    "ModelFileError": "errors",
    "SignatureError": "errors",
    "TrustError": "errors",
    "LetterCodec": "letters",
    "LetterPredictor": "letters",
    "numbered": "letters",
    "predict_each": "letters",
    "FileEntry": "manifest",
    "Manifest": "manifest",
    "TensorSpec": "manifest",
    "manifest_path_for": "manifest",
    "sha256_of": "manifest",
    "Model": "model",
    "load_model": "model",
    "Trust": "trust",
    "verify_model": "trust",
}

__all__ = sorted(_WHERE)


def __getattr__(name: str) -> Any:
    if name not in _WHERE:
        raise AttributeError(f"module 'edgeseq_device' has no attribute {name!r}")
    return getattr(importlib.import_module(f"edgeseq_device.{_WHERE[name]}"), name)


def __dir__() -> list[str]:
    return [*globals(), *__all__]

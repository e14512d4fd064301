"""edgeseq on-device runtime: load an exported model, check it, run it (numpy + onnxruntime only)."""

from edgeseq_device.errors import (
    DeviceError,
    InputError,
    IntegrityError,
    ManifestError,
    ModelFileError,
    SignatureError,
)
from edgeseq_device.letters import LetterCodec, LetterPredictor, numbered, predict_each
from edgeseq_device.manifest import FileEntry, Manifest, TensorSpec, manifest_path_for, sha256_of
from edgeseq_device.model import Model, load_model

__version__ = "0.1.0"

__all__ = [
    "DeviceError",
    "FileEntry",
    "InputError",
    "IntegrityError",
    "LetterCodec",
    "LetterPredictor",
    "Manifest",
    "ManifestError",
    "Model",
    "ModelFileError",
    "SignatureError",
    "TensorSpec",
    "load_model",
    "manifest_path_for",
    "numbered",
    "predict_each",
    "sha256_of",
]

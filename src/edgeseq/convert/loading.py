"""Which Keras wrote a model file, and loading it with that Keras: tf_keras for tf.keras 2 files, Keras 3 for
Keras 3 files. Neither can load the other's files, so the choice is made from the file, not by the user.

- `.keras` (a zip): metadata.json's keras_version, 2.x or 3.x;
- `.h5` / `.hdf5` (HDF5): the root attribute keras_version; a file without model_config holds weights only;
- a directory: a SavedModel with keras_metadata.pb was written by tf.keras 2; without it, it is a plain
  TensorFlow SavedModel (Keras 3's model.export, tf.saved_model.save), which has no Keras layers to read.

A user's file is untrusted, and is checked before Keras opens it. A .keras or .h5 file holds a model's config
(JSON) and its weights, no TensorFlow graph: what runs when it loads is Keras's own layer code (a Lambda's Python
is refused by safe mode, a class Keras does not know fails to load, and tests/test_export_untrusted.py checks
that a custom layer's call never runs). What such a file can still do is inflate (a zip bomb, an HDF5 dataset
with no data behind it) or, in HDF5, read other files: edgeseq.convert.file_caps. A SavedModel holds TensorFlow
graphs that run when it loads: edgeseq.convert.graph_ops checks their ops from the protos first.
"""

from __future__ import annotations

import contextlib
import json
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edgeseq import frameworks
from edgeseq.convert.file_caps import check_archive, check_checkpoint, check_directory, check_hdf5
from edgeseq.convert.flavours import KERAS2, KERAS3
from edgeseq.convert.graph_ops import check_saved_model
from edgeseq.errors import ModelFileError

SUPPORTED = (
    "a Keras 3 .keras file, a tf.keras 2 / tf_keras .keras or .h5 file, or a SavedModel directory written by "
    "tf.keras (model.save)"
)
HDF5_SIGNATURE = b"\x89HDF\r\n\x1a\n"


@dataclass(frozen=True)
class LoadedModel:
    model: Any
    flavour: str
    keras_version: str
    file_format: str


def _flavour(version: str, path: Path) -> str:
    major = version.split(".", 1)[0]
    if major == "2":
        return KERAS2
    if major == "3":
        return KERAS3
    raise ModelFileError(f"{path} was written by Keras {version}; edgeseq reads Keras 2 and 3 files")


def detect(path: Path) -> tuple[str, str, str]:
    """(flavour, Keras version, file format) of `path`; ModelFileError when it is none of SUPPORTED, or when it
    would inflate beyond edgeseq's caps or read other files (edgeseq.convert.file_caps)."""
    if path.is_dir():
        if not (path / "saved_model.pb").is_file():
            raise ModelFileError(f"{path} is a directory, not a SavedModel (no saved_model.pb); expected {SUPPORTED}")
        if not (path / "keras_metadata.pb").is_file():
            raise ModelFileError(
                f"{path} is a TensorFlow SavedModel without Keras metadata (written by model.export or "
                f"tf.saved_model.save), so it has no Keras layers to convert; save the model with "
                f"model.save('model.keras') instead. Expected {SUPPORTED}"
            )
        check_directory(path)
        return KERAS2, "2", "SavedModel"
    if not path.exists():
        raise ModelFileError(f"{path}: no such file or directory")
    if not path.is_file():
        raise ModelFileError(f"{path} is not a regular file (a FIFO or a device); expected {SUPPORTED}")
    with path.open("rb") as handle:
        head = handle.read(8)
    if zipfile.is_zipfile(path):
        check_archive(path)  # before metadata.json is read: any member may be the bomb
        try:
            with zipfile.ZipFile(path) as archive:
                metadata = json.loads(archive.read("metadata.json"))
            version = metadata["keras_version"]
            if not isinstance(version, str):
                raise TypeError(version)
        except (KeyError, ValueError, TypeError, zipfile.BadZipFile, OSError):
            raise ModelFileError(
                f"{path} is a zip file, not a .keras model (no metadata.json with keras_version)"
            ) from None
        return _flavour(version, path), version, ".keras"
    if head == HDF5_SIGNATURE:
        import h5py

        try:
            with h5py.File(path, "r") as h5:
                version = h5.attrs.get("keras_version")
                has_config = "model_config" in h5.attrs
        except OSError as exc:
            raise ModelFileError(f"{path}: unreadable HDF5 file ({exc})") from None
        if not has_config:
            raise ModelFileError(
                f"{path} holds weights only (no model_config): save the whole model; expected {SUPPORTED}"
            )
        check_hdf5(path, str(path))
        version = version.decode() if isinstance(version, bytes) else str(version or "2")
        return _flavour(version, path), version, ".h5"
    if path.suffix == ".tflite" or head[4:8] == b"TFL3":
        raise ModelFileError(f"{path} is a TensorFlow Lite model; edgeseq converts from Keras: expected {SUPPORTED}")
    if path.suffix == ".onnx":
        raise ModelFileError(f"{path} is already an ONNX file; expected {SUPPORTED}")
    raise ModelFileError(f"{path} is not a Keras model file; expected {SUPPORTED}")


def _safe_mode(flavour: str) -> Any:
    """Keras's safe mode for the whole load: a Lambda layer's Python code is refused, never run.

    Keras 3 applies it to every format it reads; tf_keras applies it to .keras files only unless the scope
    is set, and an .h5 file or a SavedModel with a Lambda layer ran the layer's code on export.
    """
    if flavour == KERAS3:
        return contextlib.nullcontext()
    from tf_keras.src.saving.serialization_lib import SafeModeScope

    return SafeModeScope(True)


def load(path: Path) -> LoadedModel:
    """Load `path` with the Keras that wrote it (no compile, safe mode), once its sizes and, for a SavedModel, its
    ops have passed; ModelFileError with one line when it cannot (UnsafeModelError, OversizedModelError)."""
    path = Path(path)
    flavour, version, file_format = detect(path)
    _, tf_keras = frameworks.tensorflow()
    if file_format == "SavedModel":  # before anything of it is traced or run
        check_saved_model(path)
        check_checkpoint(path)
    if flavour == KERAS3:
        import keras
    else:
        keras = tf_keras
    try:
        with _safe_mode(flavour):
            model = keras.models.load_model(path, compile=False)
    except Exception as exc:  # Keras raises many untyped errors for files it cannot rebuild
        message = " ".join(str(exc).split())
        if "Lambda" in message and "safe_mode" in message:
            raise ModelFileError(
                f"{path} has a Lambda layer, whose Python code would run when the file is loaded; edgeseq loads "
                "models in Keras's safe mode and refuses it: replace the Lambda with built-in layers"
            ) from None
        raise ModelFileError(
            f"{path} ({file_format}, Keras {version}) could not be loaded: {type(exc).__name__}: {message[:500]}"
        ) from None
    if not hasattr(model, "layers") or not getattr(model, "inputs", None):
        raise ModelFileError(
            f"{path} holds a {type(model).__name__} without a defined input (a subclassed model, or a Sequential "
            "never built): edgeseq needs a Sequential or functional model with an Input; build it with "
            "keras.Input(shape=...) and save it again"
        )
    return LoadedModel(model, flavour, version, file_format)

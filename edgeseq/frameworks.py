"""Lazy, quiet import of the training frameworks (TensorFlow, tf_keras, tf2onnx, onnx)."""

from __future__ import annotations

import importlib.util
import os
import re
import sys
import tempfile
from types import ModuleType

TRAINING_PACKAGES = {"tensorflow": "tensorflow", "tf_keras": "tf-keras", "tf2onnx": "tf2onnx", "onnx": "onnx"}

# Lines TensorFlow's C++ side prints at import on a CPU-only box, whatever TF_CPP_MIN_LOG_LEVEL says.
_NOISE = re.compile(
    r"All log messages before absl::InitializeLog|cudart_stub|cuda_platform|cuInit|oneDNN custom operations"
    r"|computation placer|Unable to register cu|This TensorFlow binary is optimized"
    r"|rebuild TensorFlow with the appropriate compiler flags"
)


def _import_quietly(name: str) -> ModuleType:
    """Import `name` with fd 2 captured, then replay whatever was not known start-up noise."""
    if name in sys.modules:
        return sys.modules[name]
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile(mode="w+b") as capture:
        os.dup2(capture.fileno(), 2)
        try:
            module = __import__(name)
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            capture.seek(0)
            for line in capture.read().decode(errors="replace").splitlines(keepends=True):
                if not _NOISE.search(line):
                    sys.stderr.write(line)
    return module


def require_training() -> None:
    """Fail early, with the install command, when the `train` extra is not installed."""
    missing = [dist for module, dist in TRAINING_PACKAGES.items() if importlib.util.find_spec(module) is None]
    if missing:
        from edgeseq.errors import MissingExtraError

        raise MissingExtraError(
            f"training and export need {', '.join(missing)}, which {'is' if len(missing) == 1 else 'are'} "
            "not installed: pip install 'edgeseq[train]'"
        )


def tensorflow() -> tuple[ModuleType, ModuleType]:
    """Return (tensorflow, tf_keras), with the tf.keras 2 flavour in force."""
    require_training()
    os.environ["TF_USE_LEGACY_KERAS"] = "1"
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    tf = _import_quietly("tensorflow")
    tf_keras = _import_quietly("tf_keras")
    tf.get_logger().setLevel("ERROR")
    return tf, tf_keras


def tf2onnx() -> ModuleType:
    tensorflow()
    return _import_quietly("tf2onnx")

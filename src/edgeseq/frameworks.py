"""Lazy, quiet import of the training frameworks (TensorFlow, tf_keras, tf2onnx, onnx)."""

from __future__ import annotations

import importlib.util
import os
import re
import sys
import tempfile
from collections.abc import Callable
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


def install_command(extra: str) -> str:
    """The pip command that adds `extra` to this edgeseq, in the form that fits how it was installed (PEP 610's
    direct_url.json): `pip install 'edgeseq[train]'` from an index, the clone's folder or the wheel file it
    came from otherwise (`'edgeseq[train]'` names nothing on the index for a user who installed a clone)."""
    import json
    from importlib.metadata import distributions

    # the installed dist-info says; a build's stray edgeseq.egg-info in the working directory does not
    recorded = [dist.read_text("direct_url.json") for dist in distributions(name="edgeseq")]
    try:
        origin = json.loads(next((text for text in recorded if text), "null"))
    except ValueError:
        origin = None
    return command_for(origin, extra)


def command_for(origin: object, extra: str, exists: Callable[[str], bool] = os.path.exists) -> str:
    """`install_command` for a direct_url.json's content (None: installed from an index)."""
    import shlex
    from urllib.parse import unquote, urlparse

    from_index = f"pip install 'edgeseq[{extra}]'"
    if not isinstance(origin, dict) or not isinstance(origin.get("url"), str):
        return from_index
    url = urlparse(origin["url"])
    if url.scheme != "file":
        return "pip install " + shlex.quote(f"edgeseq[{extra}] @ {origin['url']}")
    path = unquote(url.path)
    if not exists(path):  # the clone or wheel it came from has moved: both forms
        return f"{from_index} (from a clone of edgeseq: pip install '.[{extra}]' in its folder)"
    editable = isinstance(origin.get("dir_info"), dict) and origin["dir_info"].get("editable") is True
    return f"pip install {'-e ' if editable else ''}{shlex.quote(f'{path}[{extra}]')}"


# What each extra adds that a command imports: module name -> distribution name
EXTRAS = {
    "train": TRAINING_PACKAGES,
    "bench": {**TRAINING_PACKAGES, "ai_edge_litert": "ai-edge-litert"},
    "report": {"matplotlib": "matplotlib"},
}


def require_extra(extra: str, who_needs: str) -> None:
    """Fail early, with the install command, when a module of `extra` is not installed; `who_needs` says who
    ("training and export need")."""
    missing = [dist for module, dist in EXTRAS[extra].items() if importlib.util.find_spec(module) is None]
    if missing:
        from edgeseq.errors import MissingExtraError

        raise MissingExtraError(
            f"{who_needs} {', '.join(missing)}, which "
            f"{'is' if len(missing) == 1 else 'are'} not installed: {install_command(extra)}"
        )


def require_training() -> None:
    """Fail early, with the install command, when the `train` extra is not installed."""
    require_extra("train", "training and export need")


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

"""The JSON manifest written beside each exported model: what the model is and how to feed it."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edgeseq_device.errors import IntegrityError, ManifestError
from edgeseq_device.files import MANIFEST_MAX_BYTES, read_regular_file
from edgeseq_device.messages import shown

MANIFEST_FORMAT = 1


def _no_constant(name: str) -> float:
    # json accepts NaN and Infinity, which are not JSON and would become a scale of inf.
    raise ValueError(f"{name} is not a number JSON allows")


def json_name(value: Any, what: str) -> str:
    """A manifest's name: text that can be written out (a lone surrogate cannot), or ValueError."""
    if not isinstance(value, str):
        raise ValueError(f"{what} must be a name, got {shown(repr(value))}")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise ValueError(f"{what} {shown(value)} is not valid text") from None
    return value


def json_names(value: Any, what: str) -> tuple[str, ...]:
    """A manifest's list of names, or ValueError: a string is not a list ("abc" must not become a, b, c)."""
    if not isinstance(value, list):
        raise ValueError(f"{what} must be a list of names, got {shown(repr(value))}")
    return tuple(json_name(item, what) for item in value)


def json_numbers(value: Any, what: str) -> tuple[float, ...]:
    """A manifest's list of numbers, or ValueError ("12" must not become 1, 2, nor true 1.0)."""
    if not isinstance(value, list) or not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in value):
        raise ValueError(f"{what} must be a list of numbers, got {shown(repr(value))}")
    return tuple(float(v) for v in value)


def json_count(value: Any, what: str) -> int:
    """A manifest's whole number, or ValueError (4.9 must not become 4, nor true 1)."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"{what} must be a whole number, got {shown(repr(value))}")
    return value


@dataclass(frozen=True)
class TensorSpec:
    """Name, fixed shape and numpy dtype name of one model input or output."""

    name: str
    shape: tuple[int, ...]
    dtype: str

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "shape": list(self.shape), "dtype": self.dtype}

    @classmethod
    def from_json(cls, data: Any, where: str) -> TensorSpec:
        try:
            return cls(str(data["name"]), tuple(int(d) for d in data["shape"]), str(data["dtype"]))
        except (KeyError, TypeError, ValueError) as exc:
            raise ManifestError(f"{where}: expected {{name, shape, dtype}}, got {shown(repr(data))}") from exc

    def __str__(self) -> str:
        return f"{self.name} {self.dtype}[{', '.join(map(str, self.shape))}]"


@dataclass(frozen=True)
class FileEntry:
    """Size and sha256 of one file that the manifest vouches for."""

    sha256: str
    size: int


def sha256_of(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def manifest_path_for(model_path: Path) -> Path:
    """`exported/sensor_lstm.onnx` and its variants (`sensor_lstm.fp16.onnx`) share `sensor_lstm.json`."""
    stem = model_path.name.split(".", 1)[0]
    return model_path.with_name(f"{stem}.json")


@dataclass(frozen=True)
class Manifest:
    """A parsed manifest: the fields every model has, plus the whole document for kind-specific ones."""

    path: Path
    name: str
    kind: str
    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]
    files: Mapping[str, FileEntry]
    data: Mapping[str, Any]

    @classmethod
    def load(cls, path: Path) -> Manifest:
        content = read_regular_file(Path(path), MANIFEST_MAX_BYTES, "manifest", ManifestError)
        try:
            data = json.loads(content.decode("utf-8"), parse_constant=_no_constant)
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise ManifestError(f"manifest {path} is not valid JSON: {exc}") from None
        except ValueError as exc:
            raise ManifestError(f"manifest {path}: {exc}") from None
        except RecursionError:
            raise ManifestError(f"manifest {path} is nested too deeply to be a manifest") from None
        if not isinstance(data, dict):
            raise ManifestError(f"manifest {path}: expected a JSON object")
        missing = [k for k in ("name", "kind", "inputs", "outputs", "files") if k not in data]
        if missing:
            raise ManifestError(f"manifest {path} lacks {', '.join(missing)}")
        if data.get("format") != MANIFEST_FORMAT:
            raise ManifestError(
                f"manifest {path} has format {data.get('format')!r}; this runtime reads format {MANIFEST_FORMAT}"
            )
        try:
            files = {
                str(name): FileEntry(str(entry["sha256"]), int(entry["size"]))
                for name, entry in dict(data["files"]).items()
            }
            inputs = tuple(TensorSpec.from_json(t, f"{path}: inputs") for t in data["inputs"])
            outputs = tuple(TensorSpec.from_json(t, f"{path}: outputs") for t in data["outputs"])
        except (KeyError, TypeError, ValueError) as exc:
            raise ManifestError(f"manifest {path}: malformed 'files', 'inputs' or 'outputs' ({exc})") from exc
        return cls(Path(path), str(data["name"]), str(data["kind"]), inputs, outputs, files, data)

    def verify_file(self, file_name: str, content: bytes) -> None:
        """Raise IntegrityError unless `content` is the file this manifest recorded under `file_name`."""
        entry = self.files.get(file_name)
        if entry is None:
            raise IntegrityError(f"manifest {self.path} does not list {file_name}")
        actual = sha256_of(content)
        if actual != entry.sha256 or len(content) != entry.size:
            raise IntegrityError(
                f"{file_name} does not match its manifest {self.path}: sha256 {actual[:12]}… "
                f"({len(content)} bytes), expected {entry.sha256[:12]}… ({entry.size} bytes); "
                "the file was changed after export"
            )

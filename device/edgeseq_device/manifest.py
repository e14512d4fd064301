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
from edgeseq_device.messages import PREVIEW_CHARS, shown

MANIFEST_FORMAT = 1

# What an export records twice: in the manifest and, under the same names, in the ONNX file's metadata_props
# (strings as they are, anything else as JSON). The sha256 vouches for the file, so the file's copy is the
# reference; a field the file does not record (exported before it was) is not compared.
RECORDED_IN_FILE = (
    "kind", "name", "edgeseq_version",  # every model
    "features", "window", "time_column",  # a forecaster, and a model from `export --keras` (kind "sequence")
    "target", "horizon", "scaling", "output_transform",  # a forecaster
    "normalization", "task", "stateful", "source",  # a model from `export --keras`
    "vocabulary",  # the letter model (with window)
)  # fmt: skip
# Metadata keys that stand for one entry of a manifest object: producer.tensorflow is producers.tensorflow
RECORDED_IN_FILE_BY_PREFIX = {"producer.": "producers"}
_ABSENT = object()


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

    def batched(self) -> TensorSpec:
        """The same tensor with a dynamic batch axis (-1), as a batched companion takes or returns it."""
        return TensorSpec(self.name, (-1, *self.shape[1:]), self.dtype)

    @property
    def window_shape(self) -> tuple[int, ...]:
        """The shape for one window: a dynamic batch axis (a batched companion's) read as 1."""
        return (1, *self.shape[1:]) if self.shape[:1] == (-1,) else self.shape


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
    sha256: str = ""  # of the manifest's bytes as read: what a signature vouches for

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
        return cls(Path(path), str(data["name"]), str(data["kind"]), inputs, outputs, files, data, sha256_of(content))

    def companion_of(self, file_name: str) -> str | None:
        """The file whose batched companion `file_name` is (`<stem>.batched.onnx`, listed under "batched" with the
        single-window file's name as its key), or None."""
        batched = self.data.get("batched")
        if not isinstance(batched, Mapping):
            return None
        for single, entry in batched.items():
            if isinstance(entry, Mapping) and entry.get("file") == file_name:
                return str(single)
        return None

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

    def verify_metadata(self, file_name: str, metadata: Mapping[str, str]) -> None:
        """Raise ManifestError unless this manifest says what the file `file_name` records in its metadata_props
        (RECORDED_IN_FILE): a manifest edited after export, features swapped for one, would run silently."""
        for path, text in _recorded_in(metadata):
            ours = _lookup(self.data, path)
            theirs = _recorded_value(text, like=ours)
            if ours is _ABSENT or _canonical(ours) != _canonical(theirs):
                field, ours, theirs = _difference(".".join(path), ours, theirs)
                said = f"no {field}" if ours is _ABSENT else f"{field} {_shown_json(ours)}"
                records = f"no {field}" if theirs is _ABSENT else _shown_json(theirs)
                raise ManifestError(f"manifest {self.path}: {said}, but {file_name}'s metadata records {records}")


def _recorded_in(metadata: Mapping[str, str]) -> list[tuple[tuple[str, ...], str]]:
    """(path in the manifest, metadata text) of each fact the file records, in the table's order."""
    found = [((key,), metadata[key]) for key in RECORDED_IN_FILE if key in metadata]
    for prefix, field in RECORDED_IN_FILE_BY_PREFIX.items():
        found += [
            ((field, key.removeprefix(prefix)), metadata[key]) for key in sorted(metadata) if key.startswith(prefix)
        ]
    return found


def _lookup(data: Any, path: tuple[str, ...]) -> Any:
    for key in path:
        if not isinstance(data, Mapping) or key not in data:
            return _ABSENT
        data = data[key]
    return data


def _recorded_value(text: str, like: Any) -> Any:
    """A metadata value as export wrote it: the text itself where the manifest holds text, else JSON."""
    if isinstance(like, str):
        return text
    try:
        return json.loads(text)
    except (ValueError, RecursionError):
        return text  # not JSON: so not what export wrote beside this manifest value, and shown as text


def _canonical(value: Any) -> str:
    """One text per JSON value: keys sorted, 36 unlike 36.0 and true unlike 1."""
    return json.dumps(value, sort_keys=True)


def _shown_json(value: Any) -> str:
    text = json.dumps(value)  # escapes control characters, as a message must
    return text if len(text) <= PREVIEW_CHARS else f"{text[:PREVIEW_CHARS]}… ({len(text):,} characters)"


def _difference(field: str, ours: Any, theirs: Any) -> tuple[str, Any, Any]:
    """The innermost part where two differing values differ (scaling.input_scale[1]), entered only while the
    whole is too long to show: swapped features are shown whole, a changed scale alone."""
    while (
        ours is not _ABSENT
        and theirs is not _ABSENT
        and max(len(json.dumps(ours)), len(json.dumps(theirs))) > PREVIEW_CHARS
    ):
        if isinstance(ours, dict) and isinstance(theirs, dict):
            key = next(
                k
                for k in [*ours, *theirs]
                if _canonical(ours.get(k)) != _canonical(theirs.get(k)) or (k in ours) != (k in theirs)
            )
            field, ours, theirs = f"{field}.{key}", ours.get(key, _ABSENT), theirs.get(key, _ABSENT)
        elif isinstance(ours, list) and isinstance(theirs, list) and len(ours) == len(theirs):
            i = next(i for i, (a, b) in enumerate(zip(ours, theirs, strict=True)) if _canonical(a) != _canonical(b))
            field, ours, theirs = f"{field}[{i}]", ours[i], theirs[i]
        else:
            break
    return field, ours, theirs

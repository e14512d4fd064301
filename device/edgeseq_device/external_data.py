"""Find a tensor that an ONNX file keeps outside itself (external data), by reading its protobuf wire format.

onnxruntime resolves an external tensor's relative `location` against the working directory when a model is
loaded from bytes, and the manifest's sha256 covers the .onnx file alone: such a file can read /etc/passwd as
weights. The device has no `onnx` package, and asking onnxruntime means letting it open the file first, so the
check walks the bytes itself: only the messages that can hold a tensor are entered, every other field is
skipped by its length (a 400 KB model is walked in well under a millisecond).
"""

from __future__ import annotations

from typing import NamedTuple

# protobuf's own default nesting limit: a deeper model is refused by onnxruntime too
MAX_DEPTH = 100

_VARINT, _FIXED64, _LENGTH, _GROUP_START, _GROUP_END, _FIXED32 = range(6)

# Where a TensorProto can sit (field numbers of onnx.proto): message -> {field number: message it holds}
_HOLDS: dict[str, dict[int, str]] = {
    "ModelProto": {7: "GraphProto", 20: "TrainingInfoProto", 25: "FunctionProto"},
    "TrainingInfoProto": {1: "GraphProto", 2: "GraphProto"},
    "FunctionProto": {7: "NodeProto", 11: "AttributeProto"},
    "GraphProto": {1: "NodeProto", 5: "TensorProto", 15: "SparseTensorProto"},
    "NodeProto": {5: "AttributeProto"},
    "AttributeProto": {
        5: "TensorProto",  # t
        6: "GraphProto",  # g
        10: "TensorProto",  # tensors
        11: "GraphProto",  # graphs
        22: "SparseTensorProto",  # sparse_tensor
        23: "SparseTensorProto",  # sparse_tensors
    },
    "SparseTensorProto": {1: "TensorProto", 2: "TensorProto"},  # values, indices
}
_TENSOR_NAME, _EXTERNAL_DATA, _DATA_LOCATION = 8, 13, 14
_ENTRY_KEY, _ENTRY_VALUE = 1, 2


class MalformedModel(ValueError):
    """The bytes are not a protobuf message (truncated, or not an ONNX file at all)."""


class ExternalTensor(NamedTuple):
    """A tensor whose data lies in another file: its name, and the `location` it names (None if none)."""

    name: str
    location: str | None


def find_external_data(content: bytes) -> ExternalTensor | None:
    """The first tensor of the ModelProto `content` whose data is external, or None if the file holds all its
    data. Raises MalformedModel for bytes that are not a protobuf message, or nest deeper than MAX_DEPTH."""
    return _walk(content, 0, len(content), "ModelProto", 0)


def _walk(buf: bytes, start: int, end: int, message: str, depth: int) -> ExternalTensor | None:
    if depth > MAX_DEPTH:
        raise MalformedModel(f"messages nested deeper than {MAX_DEPTH}")
    holds = _HOLDS[message]
    for number, wire, begin, stop in _fields(buf, start, end, depth):
        held = holds.get(number)
        if held is None or wire != _LENGTH:
            continue  # a held message sent with another wire type is an unknown field to protobuf too
        found = (
            _tensor(buf, begin, stop, depth + 1) if held == "TensorProto" else _walk(buf, begin, stop, held, depth + 1)
        )
        if found is not None:
            return found
    return None


def _tensor(buf: bytes, start: int, end: int, depth: int) -> ExternalTensor | None:
    # Either sign is enough: external_data entries without the flag, or data_location other than DEFAULT (0)
    # without entries; onnxruntime would refuse some of these, but refusing them here costs nothing
    name, location, external = "", None, False
    for number, wire, begin, stop in _fields(buf, start, end, depth):
        if number == _TENSOR_NAME and wire == _LENGTH:
            name = _text(buf, begin, stop)
        elif number == _EXTERNAL_DATA:
            external = True
            if wire == _LENGTH:
                entry = _entry(buf, begin, stop, depth + 1)
                if entry[0] == "location":
                    location = entry[1]
        elif number == _DATA_LOCATION and wire == _VARINT and begin & 0xFFFFFFFF:  # an int32 enum
            external = True
    return ExternalTensor(name, location) if external else None


def _entry(buf: bytes, start: int, end: int, depth: int) -> tuple[str, str]:
    """A StringStringEntryProto: (key, value)."""
    key = value = ""
    for number, wire, begin, stop in _fields(buf, start, end, depth):
        if number == _ENTRY_KEY and wire == _LENGTH:
            key = _text(buf, begin, stop)
        elif number == _ENTRY_VALUE and wire == _LENGTH:
            value = _text(buf, begin, stop)
    return key, value


def _text(buf: bytes, start: int, end: int) -> str:
    return buf[start:end].decode("utf-8", errors="replace")


def _fields(buf: bytes, pos: int, end: int, depth: int):
    """Yield (field number, wire type, a, b) for each field of the message in buf[pos:end]: for a varint, a is
    its value; for a length-delimited field, buf[a:b] is its payload. Fixed-size fields and groups are skipped."""
    while pos < end:
        number, wire, pos = _tag(buf, pos, end)
        if wire == _VARINT:
            value, pos = _varint(buf, pos, end)
            yield number, wire, value, pos
        elif wire == _LENGTH:
            begin, pos = _payload(buf, pos, end)
            yield number, wire, begin, pos
        else:
            pos = _skip(buf, pos, end, number, wire, depth)


def _skip(buf: bytes, pos: int, end: int, number: int, wire: int, depth: int) -> int:
    """The position after the fixed-size field or the group whose tag ends at `pos`. ONNX has no groups (protobuf
    2's nested messages without a length), but protobuf skips one as an unknown field, and so must this."""
    if wire in (_FIXED64, _FIXED32):
        pos += 8 if wire == _FIXED64 else 4
        if pos > end:
            raise MalformedModel(f"a fixed-size field runs past its message at byte {end:,}")
        return pos
    if wire != _GROUP_START:  # a group's end outside a group, or wire types 6 and 7, which do not exist
        raise MalformedModel(f"invalid wire type {wire} at byte {pos:,}")
    if depth > MAX_DEPTH:
        raise MalformedModel(f"messages nested deeper than {MAX_DEPTH}")
    while pos < end:
        inner, inner_wire, pos = _tag(buf, pos, end)
        if inner_wire == _GROUP_END:
            if inner != number:
                raise MalformedModel(f"group {number} ends as group {inner} at byte {pos:,}")
            return pos
        if inner_wire == _VARINT:
            pos = _varint(buf, pos, end)[1]
        elif inner_wire == _LENGTH:
            pos = _payload(buf, pos, end)[1]
        else:
            pos = _skip(buf, pos, end, inner, inner_wire, depth + 1)
    raise MalformedModel(f"group {number} is not closed before byte {end:,}")


def _tag(buf: bytes, pos: int, end: int) -> tuple[int, int, int]:
    """(field number, wire type, position after the tag) of the tag at `pos`."""
    tag, after = _varint(buf, pos, end)
    if tag >> 3 == 0 or tag > 0xFFFFFFFF:
        raise MalformedModel(f"invalid field tag at byte {pos:,}")
    return tag >> 3, tag & 7, after


def _payload(buf: bytes, pos: int, end: int) -> tuple[int, int]:
    """(start, end) of the length-delimited payload whose length is at `pos`."""
    length, begin = _varint(buf, pos, end)
    if length > end - begin:
        raise MalformedModel(f"a field of {length:,} bytes at byte {begin:,} runs past its message")
    return begin, begin + length


def _varint(buf: bytes, pos: int, end: int) -> tuple[int, int]:
    """The base-128 integer at `pos`, and the position after it."""
    result = shift = 0
    while pos < end:
        byte = buf[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        if byte < 0x80:
            return result, pos
        shift += 7
        if shift >= 70:
            raise MalformedModel(f"a number longer than 10 bytes at byte {pos:,}")
    raise MalformedModel(f"the message ends inside a number at byte {end:,}")

"""Reading the files a model is made of: regular files only, with a size cap, and one-line errors."""

from __future__ import annotations

import os
import stat
from pathlib import Path

MANIFEST_MAX_BYTES = 4 << 20  # a manifest is a few KB; more is not one
MODEL_MAX_BYTES = 2 << 30  # protobuf's own limit for one ONNX file


def not_found(what: str, path: str | Path) -> str:
    """The message `model file not found: PATH`, saying where a relative path (such as --model's default,
    exported/sensor_lstm.onnx) was looked for: from where the command runs, not where edgeseq is installed."""
    where = "" if Path(path).is_absolute() else f" (a relative path: looked for in {Path.cwd()})"
    return f"{what} not found: {path}{where}"


def read_regular_file(path: Path, max_bytes: int, what: str, error: type[Exception]) -> bytes:
    """The bytes of `path`, which must be a regular file of at most `max_bytes`; otherwise `error`.

    `/dev/zero` would be read until memory runs out and a FIFO would block forever: neither is a model.
    """
    try:
        with open(path, "rb", opener=_nonblocking) as handle:
            info = os.fstat(handle.fileno())
            if not stat.S_ISREG(info.st_mode):
                raise error(f"{what} {path} is not a regular file ({_kind(info.st_mode)})")
            if info.st_size > max_bytes:
                raise error(f"{what} {path} is {info.st_size:,} bytes, more than the {max_bytes:,} a {what} may be")
            content = handle.read(max_bytes + 1)
    except FileNotFoundError:
        raise error(not_found(what, path)) from None
    except IsADirectoryError:
        raise error(f"{what} {path} is a directory") from None
    except OSError as exc:
        raise error(f"cannot read {what} {path}: {exc.strerror or exc}") from None
    if len(content) > max_bytes:  # grew while being read
        raise error(f"{what} {path} is more than the {max_bytes:,} bytes a {what} may be")
    return content


def _nonblocking(path: str, flags: int) -> int:
    # Opening a FIFO for reading blocks until a writer appears; O_NONBLOCK lets fstat see it is one first.
    return os.open(path, flags | os.O_NONBLOCK)


def _kind(mode: int) -> str:
    for test, name in (
        (stat.S_ISDIR, "a directory"),
        (stat.S_ISFIFO, "a FIFO"),
        (stat.S_ISCHR, "a character device"),
        (stat.S_ISBLK, "a block device"),
        (stat.S_ISSOCK, "a socket"),
    ):
        if test(mode):
            return name
    return "not a regular file"

"""Where records go: an --output that would destroy an input is refused, a live reader is told apart from a
file written from a file, and a stdout closed by its reader is silenced."""

from __future__ import annotations

import io
import os
import stat
import sys
from pathlib import Path
from typing import Any, TextIO

from edgeseq_device.errors import InputError
from edgeseq_device.manifest import manifest_path_for
from edgeseq_device.messages import point_at_devnull


def _same_file(a: str | Path, b: str | Path) -> bool:
    try:
        return os.path.samefile(a, b)
    except OSError:  # one of them does not exist (yet)
        return False


def check_output(options: Any) -> None:
    """Refuse an --output that would overwrite the input or the model: opening it empties it."""
    if options.output is None:
        return
    model = Path(options.model)
    protected = {"--stream": options.stream, "--model": model, "the model's manifest": manifest_path_for(model)}
    for what, path in protected.items():
        if path != "-" and _same_file(options.output, path):
            raise InputError(f"--output {options.output} is {what}: writing records there would destroy it")
    if options.stream == "-" and _stdin_is(options.output):
        raise InputError(f"--output {options.output} is the file on stdin: writing records there would destroy it")


def is_terminal(stream: TextIO | None) -> bool:
    try:
        return stream is not None and stream.isatty()
    except (OSError, ValueError):
        return False


def _stdin_is(path: str) -> bool:
    try:
        stdin, other = os.fstat(sys.stdin.fileno()), os.stat(path)
    except (OSError, ValueError, AttributeError):  # no such file yet, or no real stdin
        return False
    return (stdin.st_dev, stdin.st_ino) == (other.st_dev, other.st_ino)


def is_live(options: Any, sink: TextIO) -> bool:
    """Whether records go to a live consumer, who must see each at once (a terminal, a pipe, a FIFO, a socket,
    or any sink of a --follow or stdin run); a regular file written from a file is flushed at the end, not per
    record, which a flush per record would slow."""
    if options.follow or options.stream == "-":
        return True
    try:
        mode = os.fstat(sink.fileno()).st_mode
    except (OSError, ValueError, AttributeError, io.UnsupportedOperation):  # an object without a descriptor
        return True
    return not stat.S_ISREG(mode)


def silence_stdout() -> None:
    """After a closed stdout pipe: the interpreter's final flush must raise nothing either."""
    point_at_devnull(sys.stdout)

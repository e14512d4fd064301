"""Where records go: every record is written whole or not at all, and the count says which were.

A sink takes a read's records in one call (`RecordSink`): `fd.py` writes them to a file, a pipe, a FIFO, a
terminal or a socket; `mqtt.py` publishes them to an MQTT broker. An --output that would destroy an input is
refused; a live reader is told apart from a file written from a file (written 64 KiB at a time); a stdout
closed by its reader is silenced.
"""

from __future__ import annotations

import io
import os
import stat
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol, TextIO

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
    if options.output is None or options.output.startswith(("mqtt://", "mqtts://")):
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


class SinkError(OSError):
    """A write or flush that failed part way (an OSError, so the runner reports it as any failed write):
    `unwritten` of the records handed to the sink so far, this call's included, were not written whole."""

    def __init__(self, cause: OSError, unwritten: int) -> None:
        super().__init__(cause.errno, cause.strerror or str(cause))
        self.cause, self.unwritten = cause, unwritten


class ReaderStalled(SinkError):
    """After a stop signal, the reader took nothing for STOP_GRACE_SECONDS: the run ends without the rest."""


class RecordSink(Protocol):
    """Where a run's records go: `write` takes formatted records (each ending in a line break) and writes
    them all, in order (now, or at `flush` and `close` for a file written from a file), or raises an OSError;
    after a SinkError, all but its `unwritten` records were written whole, and no part of the others was kept
    where that can be undone (a regular file). `when_out` says when the records written are out, for a source
    that acknowledges its input only then."""

    live: bool  # a consumer reads as records come: each write goes out at once

    def write(self, records: list[str]) -> None: ...

    def when_out(self, then: Callable[[], None]) -> None:
        """Call `then` once every record written so far is out: now, or when they are (at a flush for records
        held, from another thread when a broker acknowledges them); never for records that could not be written."""
        ...

    def flush(self) -> None: ...

    def close(self) -> None: ...


def open_sink(options: Any, stdout: TextIO | None, stopping: Callable[[], bool]) -> RecordSink:
    """The run's sink: --output (an MQTT topic template; a file, made afresh; a FIFO or a device as it is), or
    stdout. OSError when --output cannot be opened (MqttError, an InputError, when the broker refuses us)."""
    from edgeseq_device.sinks.fd import FdSink, TextSink
    from edgeseq_device.sources import is_mqtt

    if options.output is not None and is_mqtt(options.output):
        from edgeseq_device.sinks.mqtt import MqttSink

        # the status topic is the source's when readings come over MQTT too
        return MqttSink(options, stopping, status=not is_mqtt(options.stream))
    if options.output is not None:
        fd = os.open(options.output, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o666)
        return FdSink(fd, "utf-8", _live(options, fd), owned=True, stopping=stopping)
    assert stdout is not None
    try:
        fd = stdout.fileno()
    except (OSError, ValueError, AttributeError, io.UnsupportedOperation):  # an object without a descriptor
        return TextSink(stdout, live=True)
    stdout.flush()  # what was written through the text layer before goes first
    return FdSink(fd, stdout.encoding or "utf-8", _live(options, fd), owned=False, stopping=stopping)


def _live(options: Any, fd: int) -> bool:
    """Whether records go to a live consumer, who must see each read's records at once (a terminal, a pipe, a
    FIFO, a socket, or any sink of a --follow, stdin or MQTT run); a regular file written from a file is written
    fd.BUFFERED_BYTES at a time, and at each progress line and the end. An MQTT source acknowledges a block's
    readings once its records are written: held, they would hold the readings, and the broker sends no more
    than RECEIVE_MAXIMUM unacknowledged."""
    from edgeseq_device.sources import is_mqtt

    live = options.follow or options.stream == "-" or is_mqtt(options.stream)
    return bool(live or not stat.S_ISREG(os.fstat(fd).st_mode))


def silence_stdout() -> None:
    """After a closed stdout pipe: the interpreter's final flush must raise nothing either."""
    point_at_devnull(sys.stdout)

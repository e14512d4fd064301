"""Where records go: every record is written whole or not at all, and the count says which were.

A sink takes a read's records in one call. `FdSink` (a file, a pipe, a FIFO, a terminal, a socket) writes
bytes to its descriptor itself: CPython's buffered writer loses the rest of a write that a signal interrupts
part way (measured: `write(1, ..., 8392) = 8192`, SIGTERM, and the last 200 bytes never written), and a
stop is exactly when a service gets a signal. A partial write is carried on from where it stopped; on a
failure (a full disk, a reader gone) the records wholly written are counted, and a regular file is cut back
to the last whole record. `TextSink` serves a text stream without a descriptor (a test's StringIO).

An --output that would destroy an input is refused; a live reader is told apart from a file written from a
file (written 64 KiB at a time); a stdout closed by its reader is silenced.
"""

from __future__ import annotations

import bisect
import io
import os
import select
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


BUFFERED_BYTES = (
    64 << 10
)  # a file written from a file: records held to 64 KiB (a read's worth), a progress line, the end
STOP_GRACE_SECONDS = 10.0  # after a stop signal, how long a reader that takes nothing may hold the last records
POLL_MS = 200  # a wait for a slow reader looks at stop signals this often


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
    where that can be undone (a regular file)."""

    live: bool  # a consumer reads as records come: each write goes out at once

    def write(self, records: list[str]) -> None: ...

    def flush(self) -> None: ...

    def close(self) -> None: ...


class FdSink:
    """Records to a file descriptor, written with os.write: a write cut short by a signal goes on from where
    it stopped. `stopping` says a stop signal has come: then a reader that takes nothing for
    STOP_GRACE_SECONDS does not keep the run from ending (those records are reported, not counted)."""

    def __init__(
        self, fd: int, encoding: str, live: bool, owned: bool, stopping: Callable[[], bool] = lambda: False
    ) -> None:
        self.fd, self.encoding, self.live, self.owned, self.stopping = fd, encoding, live, owned, stopping
        self.regular = stat.S_ISREG(os.fstat(fd).st_mode)
        self._held = bytearray()  # records not yet written (a file written from a file)
        self._poller = select.poll()
        self._poller.register(fd, select.POLLOUT)
        self._ends: list[int] = []  # where each held record ends in _held

    def write(self, records: list[str]) -> None:
        data = "".join(records).encode(self.encoding, "backslashreplace")
        if self.live:
            self._write(data, _ends(records, self.encoding) if len(records) > 1 else [len(data)])
            return
        start = len(self._held)
        self._held += data
        self._ends += [start + end for end in _ends(records, self.encoding)]
        if len(self._held) >= BUFFERED_BYTES:
            self.flush()

    def flush(self) -> None:
        if self._held:
            held, ends = bytes(self._held), self._ends
            self._held, self._ends = bytearray(), []
            self._write(held, ends)

    def close(self) -> None:
        try:
            self.flush()
        finally:
            if self.owned:
                os.close(self.fd)

    def _write(self, data: bytes, ends: list[int]) -> None:
        view, done = memoryview(data), 0
        start = os.lseek(self.fd, 0, os.SEEK_CUR) if self.regular else 0
        try:
            while done < len(data):
                done += os.write(self.fd, view[done:]) if self.regular else self._to_reader(view, done, ends)
        except ReaderStalled as exc:
            exc.unwritten = len(ends) - _whole(ends, done)
            raise
        except OSError as exc:
            whole = _whole(ends, done)
            if self.regular and done:  # cut back to the last whole record: none is left half written
                kept = ends[whole - 1] if whole else 0
                os.ftruncate(self.fd, start + kept)
                os.lseek(self.fd, start + kept, os.SEEK_SET)
            raise SinkError(exc, len(ends) - whole) from exc

    def _to_reader(self, data: memoryview, done: int, ends: list[int]) -> int:
        """The next records of `data` from byte `done`, as many as PIPE_BUF bytes hold, to a pipe, FIFO,
        terminal or socket. A blocked write would be restarted after a signal (PEP 475) and could wait for a
        reader forever; a pipe that polls writable takes PIPE_BUF bytes at once and whole (POSIX), so no
        record is left half written when its reader stops taking them. After a stop signal, a reader that
        takes nothing for STOP_GRACE_SECONDS ends the wait (ReaderStalled)."""
        fits = bisect.bisect_right(ends, done + select.PIPE_BUF) - 1
        end = ends[fits] if fits >= 0 and ends[fits] > done else done + select.PIPE_BUF  # a record over PIPE_BUF
        waited = 0.0
        while not self._poller.poll(POLL_MS):
            if self.stopping():
                waited += POLL_MS / 1000
                if waited >= STOP_GRACE_SECONDS:
                    message = f"its reader took nothing for {STOP_GRACE_SECONDS:g} s after the stop signal"
                    raise ReaderStalled(OSError(0, message), 0)
        return os.write(self.fd, data[done:end])


class TextSink:
    """Records to a text stream that has no descriptor (a StringIO, an embedding application's stream)."""

    def __init__(self, stream: TextIO, live: bool) -> None:
        self.stream, self.live = stream, live

    def write(self, records: list[str]) -> None:
        self.stream.write("".join(records))
        if self.live:
            self.stream.flush()

    def flush(self) -> None:
        self.stream.flush()

    def close(self) -> None:
        self.stream.flush()


def _ends(records: list[str], encoding: str) -> list[int]:
    """Where each record ends in their joined bytes."""
    ends, at = [], 0
    for record in records:
        at += len(record) if record.isascii() else len(record.encode(encoding, "backslashreplace"))
        ends.append(at)
    return ends


def _whole(ends: list[int], done: int) -> int:
    """How many records end at or before byte `done`."""
    return sum(1 for end in ends if end <= done)


def open_sink(options: Any, stdout: TextIO | None, stopping: Callable[[], bool]) -> RecordSink:
    """The run's sink: --output (a file, made afresh; a FIFO or a device as it is), or stdout. OSError when
    --output cannot be opened."""
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
    FIFO, a socket, or any sink of a --follow or stdin run); a regular file written from a file is written
    BUFFERED_BYTES at a time, and at each progress line and the end."""
    return bool(options.follow or options.stream == "-" or not stat.S_ISREG(os.fstat(fd).st_mode))


def silence_stdout() -> None:
    """After a closed stdout pipe: the interpreter's final flush must raise nothing either."""
    point_at_devnull(sys.stdout)

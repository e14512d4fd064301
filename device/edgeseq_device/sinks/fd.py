"""Records to a file descriptor (a file, a pipe, a FIFO, a terminal, a socket) or a text stream.

`FdSink` writes bytes to its descriptor itself: CPython's buffered writer loses the rest of a write that a
signal interrupts part way (measured: `write(1, ..., 8392) = 8192`, SIGTERM, and the last 200 bytes never
written), and a stop is exactly when a service gets a signal. A partial write is carried on from where it
stopped; on a failure (a full disk, a reader gone) the records wholly written are counted, and a regular file
is cut back to the last whole record. `TextSink` serves a text stream without a descriptor (a test's StringIO).
"""

from __future__ import annotations

import bisect
import os
import select
import stat
from collections.abc import Callable
from typing import TextIO

from edgeseq_device.sinks import ReaderStalled, SinkError

BUFFERED_BYTES = (
    64 << 10
)  # a file written from a file: records held to 64 KiB (a read's worth), a progress line, the end
STOP_GRACE_SECONDS = 10.0  # after a stop signal, how long a reader that takes nothing may hold the last records
POLL_MS = 200  # a wait for a slow reader looks at stop signals this often


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
        self._then: list[Callable[[], None]] = []  # what waits for the held records to be written

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

    def when_out(self, then: Callable[[], None]) -> None:
        if self._held:
            self._then.append(then)
        else:
            then()

    def flush(self) -> None:
        then, self._then = self._then, []  # records that fail to be written are never said to be out
        if self._held:
            held, ends = bytes(self._held), self._ends
            self._held, self._ends = bytearray(), []
            self._write(held, ends)
        for done in then:
            done()

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

    def when_out(self, then: Callable[[], None]) -> None:
        then()  # written to the stream: what it does with them is its own

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

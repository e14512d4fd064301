"""Bytes to lines: decompression, line breaks, a length limit, text checks, and following a file that grows, is
truncated or rotated. Training and the runner read every CSV through this module, so a line means the same
everywhere.

- A path ending in `.gz`, `.xz` or `.bz2` (any case) is read through the stdlib decompressor (gzip, lzma, bz2),
  once its first bytes are found to be that format; lines are then split as in a plain file. A corrupt or
  truncated file is an `InputError` where the damage is met: the lines before it have been read. Such a file
  cannot be followed. Any other path, and stdin, is read as it is.
- A line ends at `\\n`, `\\r\\n` or a lone `\\r` (universal newlines): a stray carriage return splits a line
  instead of ending the stream, and an old Mac file with `\\r` line ends reads row by row.
- A line longer than `max_line` bytes is not kept in memory: it is reported once as `TooLong` and the rest of
  it is skipped up to the next line break.
- Bytes that are not UTF-8 become U+FFFD; a stream that starts like a compressed file, or whose first line
  holds NUL bytes, is refused with `NotTextError`.
- Following (`follow=True`), end of file means "wait": a regular file is polled like `tail -F`: when it shrinks
  below what was read (truncated) or its path names a new file (rotated), it is reopened from its start and a
  `Reopened` event says so. A FIFO is reopened for its next writer. Stdin ends at end of file.
- SIGHUP (counted by `StopSignals` when the runner follows a file as a service) is answered once all that the
  open file holds has been read, at the poll: a new file there (rotated) or a shorter one (truncated) is
  reopened, as it would be anyway (`Reopened`, its reason saying SIGHUP); the same file is read on, and a
  `Notice` says so. A FIFO is reopened when its writer closes it; stdin cannot be reopened (a `Notice`).
"""

from __future__ import annotations

import io
import os
import select
import stat
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from itertools import islice

from edgeseq_device.errors import InputError
from edgeseq_device.signals import StopSignals

MAX_LINE_BYTES = 1 << 20
CHUNK_BYTES = 1 << 16

# First bytes of the formats people mistake for CSV files.
_SIGNATURES = {
    b"\x1f\x8b": "gzip-compressed",
    b"\xfd7zXZ\x00": "xz-compressed",
    b"BZh": "bzip2-compressed",
    b"(\xb5/\xfd": "zstd-compressed",
    b"PK\x03\x04": "a zip archive",
    b"\xff\xfe": "UTF-16 text",
    b"\xfe\xff": "UTF-16 text",
}

# The compressed files read by their name's ending: the format's name and its first bytes.
_COMPRESSED = {".gz": ("gzip", b"\x1f\x8b"), ".xz": ("xz", b"\xfd7zXZ\x00"), ".bz2": ("bzip2", b"BZh")}


class NotTextError(InputError):
    """The stream is not CSV text (compressed, binary, UTF-16)."""


@dataclass(frozen=True)
class TooLong:
    """A line longer than the limit; its bytes were skipped. It still counts as one line."""

    limit: int


@dataclass(frozen=True)
class Reopened:
    """The followed input was reopened from its start; what comes next is a new file, maybe with a header."""

    reason: str


@dataclass(frozen=True)
class Notice:
    """Something to tell the user about the input that is neither a line nor a reopening (a SIGHUP answered)."""

    text: str


@dataclass(frozen=True)
class Refused:
    """A row the source could not turn into a line (an MQTT message that is not JSON, say): a bad row with its
    reason, counted and reported like any other."""

    reason: str
    detail: str


Item = str | TooLong | Reopened | Notice | Refused


def _nothing() -> None:
    """A file's rows acknowledged: nothing to do."""


def check_text(first: bytes, name: str) -> None:
    """Raise NotTextError when the stream's first bytes show it is not text."""
    for signature, what in _SIGNATURES.items():
        if first.startswith(signature):
            hint = "; decompress it first" if what.endswith("compressed") else ""
            raise NotTextError(f"{name} is {what}, not CSV text{hint}")
    line = first.replace(b"\r", b"\n").split(b"\n", 1)[0]
    if b"\0" in line:
        raise NotTextError(f"{name} is not CSV text: its first line holds NUL bytes")


def _compression_of(path: str | None) -> tuple[str, bytes] | None:
    """The format (name, first bytes) a path's name says it is compressed with, or None."""
    return None if path is None else _COMPRESSED.get(os.path.splitext(path)[1].lower())


class _CompressedBytes:
    """The raw bytes of a compressed file, as the stdlib decompressors read them (`read(size)`). The first read
    checks that the file starts like its format, so that a misnamed file is one message, not a decompressor's
    complaint about its first bytes."""

    def __init__(self, fd: int, name: str, compression: tuple[str, bytes]) -> None:
        self._fd, self._name, (self._format, self._magic) = fd, name, compression
        self._head: bytes | None = None

    def read(self, size: int) -> bytes:
        if self._head is None:
            head = b""
            while len(head) < len(self._magic):  # a FIFO may deliver the first bytes in pieces
                data = os.read(self._fd, CHUNK_BYTES)
                if not data:
                    break
                head += data
            # an empty file is an empty stream; a file cut inside the first bytes is the decompressor's EOFError
            if not head.startswith(self._magic) and not self._magic.startswith(head):
                raise InputError(f"{self._name} is not {self._format}-compressed: {_looks_like(head)}")
            self._head = head
        if self._head:
            data, self._head = self._head[:size], self._head[size:]
            return data
        return os.read(self._fd, size)


def _open_decompressor(fmt: str, raw: _CompressedBytes) -> tuple[io.BufferedIOBase, tuple[type[BaseException], ...]]:
    """The stdlib decompressor of `fmt` over `raw`, and what it raises for a damaged file."""
    # imported here: a Python built without lzma or bz2 still reads plain files and the other formats
    if fmt == "gzip":
        import gzip
        import zlib

        return gzip.GzipFile(fileobj=raw, mode="rb"), (OSError, EOFError, zlib.error)
    if fmt == "xz":
        import lzma

        return lzma.LZMAFile(raw), (lzma.LZMAError, EOFError)
    import bz2

    return bz2.BZ2File(raw), (OSError, EOFError)


def _looks_like(head: bytes) -> str:
    """What a file that is not the compressed file its name says seems to be, without echoing its bytes."""
    for signature, what in _SIGNATURES.items():
        if head.startswith(signature):
            return f"it is {what}"
    if all(32 <= byte < 127 or byte in b"\t\r\n" for byte in head[:64]):
        return "it starts like plain text; give it a name without the compression suffix"
    return "its first bytes are not the format's header"


def _decompress_error(exc: BaseException, fmt: str) -> str:
    """Why a compressed file could not be read, in a line; never the file's bytes."""
    if isinstance(exc, EOFError):
        return f"its {fmt} data ends before the end of the compressed stream (the file is truncated)"
    message = str(exc)
    if message.startswith("Not a gzipped file"):  # after a complete gzip member; the message holds the bytes
        return "the data after its gzip stream is not gzip-compressed"
    return f"its {fmt} data is corrupt: {message}"


class LineSource:
    """Iterate over the lines of a path (or `-` for stdin) as str, with `TooLong` and `Reopened` events. A path
    ending in .gz, .xz or .bz2 is decompressed."""

    _compression: tuple[str, bytes] | None = None
    _errors: tuple[type[BaseException], ...] = ()  # what the decompressor raises for a damaged file
    _decompressor: io.BufferedIOBase | None = None

    def __init__(
        self,
        stream: str,
        *,
        follow: bool = False,
        poll_seconds: float = 0.2,
        max_line: int = MAX_LINE_BYTES,
        stop: StopSignals | None = None,
    ) -> None:
        self.name = "stdin" if stream == "-" else stream
        self.path = None if stream == "-" else stream
        self.follow, self.poll_seconds, self.max_line = follow, poll_seconds, max_line
        self.stop = stop or StopSignals()
        self._fd = -1
        self._hangups_seen = self.stop.hangups
        self._compression = _compression_of(self.path)
        if self._compression is not None and follow:
            raise InputError(  # a compressor writes blocks, not lines: a file being written reads as truncated
                f"cannot follow a compressed file: {self.name} is {self._compression[0]}-compressed; "
                "follow the uncompressed file, or read this one without --follow"
            )
        self._open()

    @classmethod
    def from_reader(cls, read: Callable[[int], bytes], name: str, max_line: int = MAX_LINE_BYTES) -> LineSource:
        """Lines of any binary reader (a decompressing file object, say); never followed."""
        source = cls.__new__(cls)
        source.name, source.path, source.follow, source.max_line = name, None, False, max_line
        source.poll_seconds, source.stop, source._fd = 0.0, StopSignals(), -1
        source._hangups_seen = 0
        source._read = read
        source._regular = source._fifo = False
        return source

    def _open(self) -> None:
        if self.path is None:
            if sys.stdin is None:  # `<&-`: Python gives sys.stdin = None
                raise InputError("cannot read stdin: it is closed")
            try:
                self._fd = sys.stdin.fileno()
            except (OSError, ValueError):  # stdin replaced by an object without a descriptor (tests, embedding)
                self._read, self._regular, self._fifo = sys.stdin.buffer.read, False, False
                return
        else:
            try:
                with self.stop.waiting():  # opening a FIFO waits for a writer
                    # under a watchdog (stop.idle), not in open(): a FIFO opened at once, its writer awaited in
                    # _chunk's poll, which pings; no other file waits to open, and each reads as before
                    watched = self.stop.idle is not None
                    self._fd = os.open(self.path, os.O_RDONLY | (os.O_NONBLOCK if watched else 0))
                    if watched:
                        os.set_blocking(self._fd, True)
            except OSError as exc:
                raise InputError(f"cannot read {self.name}: {exc.strerror or exc}") from None
        info = os.fstat(self._fd)
        if stat.S_ISDIR(info.st_mode):
            self.close()
            raise InputError(f"cannot read {self.name}: it is a directory")
        self._identity = (info.st_dev, info.st_ino)
        self._regular, self._fifo = stat.S_ISREG(info.st_mode), stat.S_ISFIFO(info.st_mode)
        self._offset = 0
        fd = self._fd
        if self._compression is None:
            self._read = lambda n: os.read(fd, n)
            return
        fmt, raw = self._compression[0], _CompressedBytes(fd, self.name, self._compression)
        try:
            self._decompressor, self._errors = _open_decompressor(fmt, raw)
        except ImportError:
            self.close()
            raise InputError(f"cannot read {self.name}: this Python was built without {fmt} support") from None
        # read1: what one read of the file gives, not a full chunk; a FIFO's rows come as they are written
        self._read = self._decompressor.read1

    key_column: str | None = None  # a file's rows are keyed by their own columns, if at all

    def taken(self) -> Callable[[], None]:
        """Nothing to acknowledge: a file's rows are there to read again."""
        return _nothing

    def where(self, number: int) -> str:
        return f"line {number}"

    def close(self) -> None:
        if self._decompressor is not None:
            self._decompressor.close()  # leaves the descriptor to us
            self._decompressor = None
        if self._fd >= 0 and self.path is not None:
            os.close(self._fd)
        self._fd = -1

    def _chunk(self) -> bytes:
        if self._fd < 0 and self._fifo:  # a FIFO whose writer closed it: wait for the next
            self._open()
        try:
            with self.stop.waiting():
                self._await_input()
                data = self._read(CHUNK_BYTES)
        except (OSError, *self._errors) as exc:  # EIO, a vanished device, a damaged compressed file
            raise InputError(f"cannot read {self.name}: {self._why(exc)}") from None
        if self._fd >= 0:
            self._offset += len(data)
        return data

    def _await_input(self) -> None:
        """Under a watchdog (stop.idle), a pipe, FIFO or terminal is polled before it is read, and idle() is
        called every poll_seconds while nothing comes: a read that blocks until a silent writer writes would not
        ping. A regular file never blocks; a decompressor may hold data its descriptor no longer shows."""
        idle = self.stop.idle
        if idle is None or self._fd < 0 or self._regular or self._decompressor is not None:
            return
        poller = select.poll()
        poller.register(self._fd, select.POLLIN)
        while not poller.poll(max(self.poll_seconds, 0.01) * 1000):
            idle()

    def _why(self, exc: BaseException) -> str:
        if self._compression is None or (isinstance(exc, OSError) and exc.strerror):  # the file, not its content
            return str(getattr(exc, "strerror", None) or exc)
        return _decompress_error(exc, self._compression[0])

    def _after_end(self) -> str | None:
        """At end of input while following: why the input was reopened, or None (nothing new yet)."""
        if self._fifo and self.path is not None:
            # opened again at the next read, which waits for the next writer: the last writer's rows go first
            self.close()
            return "the FIFO's writer closed it; reading the next writer"
        try:
            info = os.stat(self.path) if self.path is not None else None
        except OSError:
            return None  # moved away and not yet recreated: keep waiting
        if info is None:
            return None
        if (info.st_dev, info.st_ino) != self._identity:
            self.close()
            self._open()
            return "a new file has taken its name (rotated)"
        if info.st_size < self._offset:
            os.lseek(self._fd, 0, os.SEEK_SET)
            self._offset = 0
            return f"it shrank to {info.st_size:,} bytes (truncated)"
        return None

    def _hangup_seen(self) -> bool:
        """True once for each SIGHUP received since the last look."""
        if self.stop.hangups == self._hangups_seen:
            return False
        self._hangups_seen = self.stop.hangups
        return True

    def __iter__(self) -> Iterator[Item]:
        for block in self.blocks():
            yield from block

    def blocks(self) -> Iterator[list[Item]]:
        """The same items as iterating, in lists: each list holds what one read of the input gave, so nothing
        in a list waited for input (the runner handles a list's rows together, and a live reader still gets
        each read's records at once)."""
        # bytes.splitlines breaks at \n, \r\n and \r only, in C; a line is decoded once it is complete (a
        # line break never falls inside a UTF-8 character). Per line, Python only decodes. A \r that ends a
        # read ends its line at once (a sensor that ends lines with \r is not kept a row behind); a \n that
        # then starts the next read is the rest of that \r\n and is dropped.
        pending, skip_lf, skipping, head = bytearray(), False, False, b""
        limit = self.max_line
        out: list[Item] = []
        while True:
            if out:
                yield out
                out = []
            chunk = self._chunk()
            if head is not None:  # the first bytes (up to a line break, 512 at most) tell if this is text
                head += chunk
                if chunk and len(head) < 512 and b"\n" not in head and b"\r" not in head:
                    continue
                check_text(head, self.name)
                chunk, head = head, None
            waits = self.follow and (self._regular or self._fifo) and self.path is not None
            if not waits and self.stop.hangups != self._hangups_seen and self._hangup_seen():
                out.append(Notice(f"SIGHUP: {self.name} cannot be reopened; reading on"))
            if not chunk:
                if not waits:
                    if pending and not skipping:  # a last line without a line break
                        out.append(pending.decode("utf-8", "replace"))
                    if out:
                        yield out
                    return
                # a FIFO is reopened when its writer closes it, SIGHUP or not
                hangup = self._regular and self._hangup_seen()
                reason = self._after_end()
                if reason is None:
                    if hangup:
                        yield [*out, Notice(f"SIGHUP: {self.name} is still the same file; reading on")]
                        out = []
                    elif out:
                        yield out
                        out = []
                    with self.stop.waiting():
                        time.sleep(self.poll_seconds)
                    continue
                if hangup:
                    reason = f"SIGHUP: {reason}"
                if pending and not skipping:  # the old file's last line
                    out.append(pending.decode("utf-8", "replace"))
                pending, skip_lf, skipping, head = bytearray(), False, False, b""
                out.append(Reopened(reason))
                continue
            if skip_lf:
                skip_lf = False
                if chunk[:1] == b"\n":
                    chunk = chunk[1:]
                    if not chunk:
                        continue
            pieces = chunk.splitlines()
            if chunk.endswith(b"\r"):
                skip_lf = True
            # an unfinished line waits for more
            rest = b"" if chunk.endswith((b"\n", b"\r")) else pieces.pop()
            if not pieces:  # no line break in this chunk
                if not skipping:
                    pending += rest
                    if len(pending) > limit:
                        pending, skipping = bytearray(), True
                        out.append(TooLong(limit))
                continue
            if skipping:  # the end of a line that was too long, already reported
                skipping = False
            else:
                pending += pieces[0]
                out.append(TooLong(limit) if len(pending) > limit else pending.decode("utf-8", "replace"))
            if len(chunk) <= limit:  # no line inside this chunk can be over the limit
                out += [line.decode("utf-8", "replace") for line in islice(pieces, 1, None)]
            else:
                out += [
                    TooLong(limit) if len(line) > limit else line.decode("utf-8", "replace")
                    for line in islice(pieces, 1, None)
                ]
            pending = bytearray(rest)
            if len(pending) > limit:
                pending, skipping = bytearray(), True
                out.append(TooLong(limit))

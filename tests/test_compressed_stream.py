"""Compressed streams: `run --stream` reads .gz, .xz and .bz2 files as their text, and a misnamed, truncated or
corrupt one is one line on stderr, never its bytes."""

from __future__ import annotations

import bz2
import gzip
import io
import lzma
import os
import signal
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from edgeseq_device.errors import InputError
from edgeseq_device.runner import EXIT_OK, EXIT_USAGE, RunOptions, run_stream
from edgeseq_device.sources.lines import LineSource, TooLong
from tests.streams import LINES, SENSOR_CSV, SENSOR_ONNX, cli, finish, records

COMPRESSORS: dict[str, tuple[str, Callable[[bytes], bytes]]] = {
    ".gz": ("gzip", gzip.compress),
    ".xz": ("xz", lzma.compress),
    # blocks of 100 kB instead of 900 kB: a file cut in half still holds whole blocks, and so rows
    ".bz2": ("bzip2", lambda data: bz2.compress(data, compresslevel=1)),
}
SUFFIXES = list(COMPRESSORS)


def _run(path: Path, **options) -> tuple[int, str, str]:
    """`edgeseq run --stream PATH` with the shipped model, in this process: (exit code, stdout, stderr)."""
    out, err = io.StringIO(), io.StringIO()
    code = run_stream(RunOptions(stream=str(path), model=SENSOR_ONNX, **options), out, err)
    return code, out.getvalue(), err.getvalue()


def _one_clean_line(err: str) -> str:
    """stderr is one printable line: no compressed bytes, no replacement characters."""
    assert len(err.splitlines()) == 1 and err.endswith("\n"), err
    line = err.rstrip("\n")
    assert "\x1f" not in line and "\ufffd" not in line and line.isprintable(), repr(line)
    return line


@pytest.fixture(scope="module")
def plain() -> str:
    code, out, err = _run(SENSOR_CSV)
    assert code == EXIT_OK, err
    return out


@pytest.mark.parametrize("suffix", SUFFIXES)
def test_a_compressed_copy_gives_the_same_records_as_the_plain_file(tmp_path: Path, plain: str, suffix: str):
    path = tmp_path / f"sensor.csv{suffix}"
    path.write_bytes(COMPRESSORS[suffix][1](SENSOR_CSV.read_bytes()))
    code, out, err = _run(path)
    assert code == EXIT_OK, err
    assert out == plain
    assert f"{len(LINES) - 1} rows read" in err and "error" not in err


def test_the_suffix_is_read_in_any_case(tmp_path: Path, plain: str):
    path = tmp_path / "SENSOR.CSV.GZ"
    path.write_bytes(gzip.compress(SENSOR_CSV.read_bytes()))
    code, out, err = _run(path)
    assert code == EXIT_OK, err
    assert out == plain


def test_concatenated_gzip_members_read_as_one_file(tmp_path: Path, plain: str):
    # `gzip -c more.csv >> log.csv.gz` appends a second member; gzip -d reads both
    data = SENSOR_CSV.read_bytes()
    half = data.index(b"\n", len(data) // 2) + 1
    path = tmp_path / "sensor.csv.gz"
    path.write_bytes(gzip.compress(data[:half]) + gzip.compress(data[half:]))
    code, out, err = _run(path)
    assert code == EXIT_OK, err
    assert out == plain


@pytest.mark.parametrize(
    ("name", "content", "what"),
    [
        ("sensor.csv.gz", SENSOR_CSV.read_bytes(), "it starts like plain text"),
        ("sensor.csv.gz", lzma.compress(SENSOR_CSV.read_bytes()), "it is xz-compressed"),
        ("sensor.csv.xz", SENSOR_CSV.read_bytes(), "it starts like plain text"),
        ("sensor.csv.bz2", gzip.compress(SENSOR_CSV.read_bytes()), "it is gzip-compressed"),
        ("sensor.csv.gz", bytes(range(256)) * 8, "its first bytes are not the format's header"),
    ],
)
def test_a_file_that_is_not_what_its_suffix_says_is_one_line(tmp_path: Path, name: str, content: bytes, what: str):
    path = tmp_path / name
    path.write_bytes(content)
    code, out, err = _run(path)
    assert code == EXIT_USAGE and out == ""
    fmt = COMPRESSORS[path.suffix][0]
    assert _one_clean_line(err).startswith(f"edgeseq: error: {path} is not {fmt}-compressed: {what}")


@pytest.mark.parametrize("suffix", SUFFIXES)
def test_a_csv_name_holding_compressed_bytes_is_still_refused_as_not_text(tmp_path: Path, suffix: str):
    fmt = COMPRESSORS[suffix][0]
    path = tmp_path / "sensor.csv"
    path.write_bytes(COMPRESSORS[suffix][1](SENSOR_CSV.read_bytes()))
    code, out, err = _run(path)
    assert code == EXIT_USAGE and out == ""
    assert _one_clean_line(err) == f"edgeseq: error: {path} is {fmt}-compressed, not CSV text; decompress it first"


@pytest.mark.parametrize("suffix", SUFFIXES)
def test_a_truncated_file_keeps_the_records_before_the_cut_and_ends_with_one_error(
    tmp_path: Path, plain: str, suffix: str
):
    fmt, compress = COMPRESSORS[suffix]
    data = compress(SENSOR_CSV.read_bytes())
    path = tmp_path / f"sensor.csv{suffix}"
    path.write_bytes(data[: len(data) // 2])
    code, out, err = _run(path)
    # run_stream: an input that stops being readable mid-stream is exit 2, after the error and the summary
    assert code == EXIT_USAGE
    assert out and out.endswith("\n") and plain.startswith(out)  # every record before the cut, none after
    error, summary = err.splitlines()
    assert error == (
        f"edgeseq: error: cannot read {path}: its {fmt} data ends before the end of the compressed stream "
        "(the file is truncated)"
    )
    assert summary.startswith("edgeseq: done: ") and f" {len(records(out))} predictions" in summary
    _one_clean_line(error + "\n")


@pytest.mark.parametrize("suffix", SUFFIXES)
def test_a_corrupt_file_is_one_error_line_without_a_traceback(tmp_path: Path, suffix: str):
    fmt, compress = COMPRESSORS[suffix]
    data = bytearray(compress(SENSOR_CSV.read_bytes()))
    middle = len(data) // 2
    data[middle : middle + 64] = bytes(64)
    path = tmp_path / f"sensor.csv{suffix}"
    path.write_bytes(bytes(data))
    code, _, err = _run(path)
    assert code == EXIT_USAGE
    errors = [line for line in err.splitlines() if "error" in line]
    assert len(errors) == 1 and errors[0].startswith(f"edgeseq: error: cannot read {path}: its {fmt} data ")
    _one_clean_line(errors[0] + "\n")
    assert "Traceback" not in err


def test_trailing_data_after_a_gzip_stream_does_not_echo_its_bytes(tmp_path: Path, plain: str):
    path = tmp_path / "sensor.csv.gz"
    path.write_bytes(gzip.compress(SENSOR_CSV.read_bytes()) + b"\x89PNG junk")
    code, out, err = _run(path)
    assert code == EXIT_USAGE and out == plain
    error = err.splitlines()[0]
    assert error == f"edgeseq: error: cannot read {path}: the data after its gzip stream is not gzip-compressed"


@pytest.mark.parametrize("suffix", SUFFIXES)
def test_following_a_compressed_file_is_refused_at_once(tmp_path: Path, suffix: str):
    fmt, compress = COMPRESSORS[suffix]
    path = tmp_path / f"sensor.csv{suffix}"
    path.write_bytes(compress(SENSOR_CSV.read_bytes()))
    code, out, err = _run(path, follow=True)
    assert code == EXIT_USAGE and out == ""
    assert _one_clean_line(err) == (
        f"edgeseq: error: cannot follow a compressed file: {path} is {fmt}-compressed; "
        "follow the uncompressed file, or read this one without --follow"
    )


def test_an_empty_compressed_file_is_an_empty_stream(tmp_path: Path):
    path = tmp_path / "sensor.csv.gz"
    path.write_bytes(b"")
    code, out, err = _run(path)
    assert code == EXIT_USAGE and out == ""
    assert err == f"edgeseq: error: {path} has no header row\n"


# LineSource itself: the same lines from a compressed file as from the plain one.


def _mixed_line_ends() -> bytes:
    """The sample with \\r\\n, lone \\r and \\n line ends, long enough that lines cross every read."""
    ends = [b"\r\n", b"\r", b"\n", b"\r\n", b"\r", b"\r\r\n", b"\n\r"]
    data = b"".join(line.encode() + ends[i % len(ends)] for i, line in enumerate(LINES[:3000]))
    return data + b"last line without a break"


@pytest.mark.parametrize("suffix", SUFFIXES)
@pytest.mark.parametrize("max_line", [1 << 20, 40])
def test_line_source_splits_a_compressed_file_as_the_plain_one(tmp_path: Path, suffix: str, max_line: int):
    data = _mixed_line_ends()
    plain_path, packed = tmp_path / "mixed.csv", tmp_path / f"mixed.csv{suffix}"
    plain_path.write_bytes(data)
    packed.write_bytes(COMPRESSORS[suffix][1](data))
    expected = list(LineSource(str(plain_path), max_line=max_line))
    got = list(LineSource(str(packed), max_line=max_line))
    assert got == expected
    assert len(expected) > 3000 and "last line without a break" in expected
    assert (TooLong(40) in got) == (max_line == 40)


def test_line_source_reports_damage_where_it_is_met(tmp_path: Path):
    data = SENSOR_CSV.read_bytes()
    packed = gzip.compress(data)
    path = tmp_path / "sensor.csv.gz"
    path.write_bytes(packed[: len(packed) // 2])
    source = LineSource(str(path))
    got = []
    with pytest.raises(InputError, match=r"^cannot read .*sensor\.csv\.gz: its gzip data ends before"):
        for line in source:
            got.append(line)
    source.close()
    assert len(got) > 1000 and got == LINES[: len(got)]  # whole lines only, as in the file


# A stop signal while waiting for compressed bytes from a FIFO: the records so far, then exit 130.


def _writer_of(fifo: Path, timeout: float = 60) -> int:
    """The FIFO's write end once the runner has opened it for reading; a runner that never does fails the test
    instead of hanging it."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            fd = os.open(fifo, os.O_WRONLY | os.O_NONBLOCK)  # ENXIO while there is no reader yet
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.02)
            continue
        os.set_blocking(fd, True)
        return fd


def _wait_until_written(path: Path, timeout: float = 60) -> None:
    """Until `path` has records and has not grown for half a second."""
    deadline, size, since = time.monotonic() + timeout, -1, time.monotonic()
    while time.monotonic() < deadline:
        now = path.stat().st_size if path.exists() else 0
        if now != size:
            size, since = now, time.monotonic()
        elif size > 0 and time.monotonic() - since > 0.5:
            return
        time.sleep(0.02)
    raise AssertionError(f"{path} did not stop growing in {timeout} s")


def test_ctrl_c_while_a_compressed_fifo_waits_for_its_writer(tmp_path: Path, plain: str):
    fifo, out_path = tmp_path / "sensor.csv.gz", tmp_path / "out.jsonl"
    os.mkfifo(fifo)
    packed = gzip.compress(SENSOR_CSV.read_bytes())
    proc = cli("--stream", fifo, "--model", SENSOR_ONNX, "--output", out_path)
    with open(_writer_of(fifo), "wb") as writer:  # held open: the runner waits for the rest
        writer.write(packed[: len(packed) // 2])
        writer.flush()
        _wait_until_written(out_path)  # all the half sent: the runner waits in a read of the compressed stream
        proc.send_signal(signal.SIGINT)
        _, err = finish(proc, timeout=30)
    assert proc.returncode == 130, err
    assert "interrupted" in err and "Traceback" not in err
    written = out_path.read_text()
    assert written.endswith("\n") and plain.startswith(written)
    assert f" {len(written.splitlines())} predictions" in err

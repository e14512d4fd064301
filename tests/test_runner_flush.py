"""Flushing follows the output: a live reader (a pipe, a terminal, a followed stream) sees each record at once;
a file written from a file is flushed at the end, not per record, and still loses nothing."""

import errno
import io
import os
import signal
import threading
import time
from pathlib import Path

import pytest

import edgeseq_device.runner as runner_module
from edgeseq_device.runner import RunOptions, run_stream
from edgeseq_device.series import RESYNC_ROWS
from tests.streams import LINES, SENSOR_CSV, SENSOR_ONNX, T, cli, finish, write_lines


class _Counted(io.TextIOWrapper):
    """A real file (a regular file to fstat) that counts its flushes, and can fail the last one."""

    flushes = 0
    fail_flush_after = None

    def flush(self) -> None:
        type(self).flushes += 1
        if type(self).fail_flush_after is not None and type(self).flushes > type(self).fail_flush_after:
            raise OSError(errno.ENOSPC, "No space left on device")
        super().flush()


def _counting_open(path, mode="r", encoding=None):
    return _Counted(open(path, mode.replace("w", "wb")), encoding=encoding)


@pytest.fixture
def counted(monkeypatch):
    _Counted.flushes, _Counted.fail_flush_after = 0, None
    monkeypatch.setattr(runner_module, "open", _counting_open, raising=False)
    return _Counted


def test_a_file_written_from_a_file_is_not_flushed_per_record(tmp_path: Path, counted):
    out = tmp_path / "out.jsonl"
    code = run_stream(
        RunOptions(stream=str(SENSOR_CSV), model=SENSOR_ONNX, output=str(out)), io.StringIO(), io.StringIO()
    )
    assert code == 0
    records = out.read_text().splitlines()
    assert len(records) == len(LINES) - T == 2926
    assert counted.flushes <= 3, counted.flushes  # the end (and close), not 2,926 times


def test_a_full_disk_at_the_one_flush_is_still_reported(tmp_path: Path, counted):
    counted.fail_flush_after = 0
    messages = io.StringIO()
    code = run_stream(
        RunOptions(stream=str(SENSOR_CSV), model=SENSOR_ONNX, output=str(tmp_path / "o.jsonl")), io.StringIO(), messages
    )
    assert code == 1
    assert "cannot write" in messages.getvalue() and "No space left on device" in messages.getvalue()


def test_a_followed_stream_into_a_file_is_flushed_per_record(tmp_path: Path, counted):
    out = tmp_path / "out.jsonl"
    rows = write_lines(tmp_path / "s.csv", LINES[: T + 20])
    options = RunOptions(stream=str(rows), model=SENSOR_ONNX, output=str(out), follow=True, poll_seconds=0.05)
    seen = []
    reader = threading.Timer(1.0, lambda: seen.append(out.read_text()))  # while the run waits for more rows
    stopper = threading.Timer(1.5, os.kill, (os.getpid(), signal.SIGINT))
    reader.start()
    stopper.start()
    code = run_stream(options, io.StringIO(), io.StringIO())
    assert code == 130
    assert len(seen[0].splitlines()) == 20  # every record was in the file before the run ended
    assert out.read_text() == seen[0]


def test_a_pipe_reader_sees_the_first_record_while_the_run_goes_on(tmp_path: Path):
    big = write_lines(tmp_path / "big.csv", [LINES[0], *(LINES[1:] * 4)])
    proc = cli("--stream", big, "--model", SENSOR_ONNX)
    started = time.monotonic()
    first = proc.stdout.readline()
    assert first.startswith('{"row": 36') and proc.poll() is None, time.monotonic() - started
    # the rest through the same text buffer: readline may have buffered more lines than the first, and
    # communicate() reads the pipe's descriptor, past that buffer (it lost rows 37 to 50 once)
    watchdog = threading.Timer(60, proc.kill)  # a hang fails the test instead of stalling the suite
    watchdog.start()
    try:
        out = proc.stdout.read()
    finally:
        watchdog.cancel()
    finish(proc)
    # the rest, after the first: each later copy's first 100 rows lie behind the newest time (bad rows), and
    # then the series follows the clock that was set back (series.RESYNC_ROWS)
    rows = len(LINES) - 1
    assert 1 + len(out.splitlines()) == (rows - T + 1) + 3 * (rows - RESYNC_ROWS - T + 1)

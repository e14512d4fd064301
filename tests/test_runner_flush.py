"""Writing follows the output: a live reader (a pipe, a terminal, a followed stream) sees each read's records at
once; a file written from a file is written a megabyte at a time, and still loses nothing; a failed write
leaves whole records only, all of them counted."""

import errno
import io
import json
import os
import signal
import threading
import time
from pathlib import Path

import pytest

import edgeseq_device.sinks.fd as sinks
from edgeseq_device.runner import RunOptions, run_stream
from tests.streams import LINES, SENSOR_CSV, SENSOR_ONNX, T, cli, finish, write_lines


@pytest.fixture
def writes(monkeypatch):
    """Every os.write the sinks make, as (descriptor, bytes asked); set `fail_after` to a byte count to make
    the write that passes it write up to it and fail with ENOSPC (a disk that fills)."""
    real = sinks.os.write
    state = {"calls": [], "fail_after": None, "written": 0}

    def write(fd: int, data) -> int:
        state["calls"].append((fd, len(data)))
        limit = state["fail_after"]
        if limit is not None and state["written"] + len(data) > limit:
            room = limit - state["written"]
            if room <= 0:
                raise OSError(errno.ENOSPC, "No space left on device")
            data = data[:room]  # as a disk that fills does: a short write, then ENOSPC on the next
        done = real(fd, data)
        state["written"] += done
        return done

    monkeypatch.setattr(sinks.os, "write", write)
    return state


def test_a_file_written_from_a_file_is_written_in_large_writes(tmp_path: Path, writes):
    out = tmp_path / "out.jsonl"
    code = run_stream(
        RunOptions(stream=str(SENSOR_CSV), model=SENSOR_ONNX, output=str(out)), io.StringIO(), io.StringIO()
    )
    assert code == 0
    records = out.read_text().splitlines()
    assert len(records) == len(LINES) - T == 2926
    # 236 KB in writes of 64 KiB or more (and one at the end), not one per read (28) nor per record
    assert len(writes["calls"]) <= out.stat().st_size // sinks.BUFFERED_BYTES + 1, writes["calls"]


@pytest.mark.parametrize("fail_after", [0, 1, 100_000])
def test_a_full_disk_is_reported_and_the_file_keeps_only_whole_records_all_counted(tmp_path: Path, writes, fail_after):
    writes["fail_after"] = fail_after
    messages, out = io.StringIO(), tmp_path / "o.jsonl"
    code = run_stream(RunOptions(stream=str(SENSOR_CSV), model=SENSOR_ONNX, output=str(out)), io.StringIO(), messages)
    assert code == 1
    assert messages.getvalue().startswith(f"edgeseq: error: cannot write {out}: No space left on device; ")
    text = out.read_text()
    assert text == "" or text.endswith("\n")  # the record the disk cut is cut back out
    kept = text.splitlines()
    assert all(json.loads(line)["row"] >= T for line in kept)
    assert messages.getvalue().endswith(f"; {len(kept):,} records written\n")  # what the file holds
    # the longest run of whole records that fits in what the disk took
    everything = io.StringIO()
    assert run_stream(RunOptions(stream=str(SENSOR_CSV), model=SENSOR_ONNX), everything, io.StringIO()) == 0
    assert text == everything.getvalue()[:fail_after].rpartition("\n")[0] + ("\n" if kept else "")


def test_a_followed_stream_into_a_file_is_written_per_read(tmp_path: Path):
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
    # the rest, after the first: each later copy starts 20 days behind the newest time, more than 10 windows'
    # span: a jump back, and a new segment (series.JUMP_WINDOWS), so every copy gives all its windows
    rows = len(LINES) - 1
    assert 1 + len(out.splitlines()) == 4 * (rows - T + 1)


def test_what_waits_for_held_records_is_done_once_they_are_written_and_never_if_they_fail(tmp_path: Path, writes):
    """An MQTT source acknowledges its readings through the sink's when_out: a file that holds records calls it
    only once they are written, and a record that could not be written acknowledges nothing."""
    fd = os.open(tmp_path / "out.jsonl", os.O_WRONLY | os.O_CREAT, 0o600)
    sink, done = sinks.FdSink(fd, "utf-8", live=False, owned=True), []
    sink.write(['{"row": 1}\n'])
    sink.when_out(lambda: done.append(1))
    assert done == [] and writes["calls"] == []  # held, so not out
    sink.flush()
    assert done == [1]
    sink.when_out(lambda: done.append(2))  # nothing held: at once
    assert done == [1, 2]
    writes["fail_after"] = writes["written"]
    sink.write(['{"row": 2}\n'])
    sink.when_out(lambda: done.append(3))
    with pytest.raises(sinks.SinkError):
        sink.flush()
    sink.close()
    assert done == [1, 2]

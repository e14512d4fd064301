"""A stop never cuts a record: SIGTERM while stdout is a pipe to a slow reader, a reader that takes nothing,
writes cut short by a signal, a FIFO's last line without a line break."""

from __future__ import annotations

import fcntl
import io
import json
import os
import re
import signal
import struct
import termios
import threading
import time
from pathlib import Path

import pytest

from edgeseq_device.runner import RunOptions, run_stream
from edgeseq_device.sinks import fd as sinks
from tests.streams import LINES, SENSOR_CSV, SENSOR_ONNX, T, cli, finish, write_lines


def _summary_count(err: str) -> int:
    match = re.search(r"(\d+) predictions", err)
    assert match, err
    return int(match.group(1))


def _queued(fd: int) -> int:
    """Bytes waiting in a pipe, from its reading end."""
    return struct.unpack("i", fcntl.ioctl(fd, termios.FIONREAD, b"\0\0\0\0"))[0]


@pytest.mark.parametrize("delay", [0.0, 0.02, 0.05, 0.1, 0.2, 0.5])
def test_sigterm_while_stdout_is_a_slow_pipe_leaves_every_line_whole_and_counted(tmp_path: Path, delay: float):
    # Before: CPython's buffered writer dropped the rest of a write that SIGTERM cut short (write(1, ..., 8495)
    # = 8192, then nothing): the last line was cut, and the summary counted records the reader never got. The
    # pipe is not read until after the signal: the runner is blocked writing to the full pipe when it comes.
    big = write_lines(tmp_path / "big.csv", [LINES[0], *(LINES[1:] * 4)])
    proc = cli("--stream", big, "--model", SENSOR_ONNX)
    fd, before, deadline = proc.stdout.fileno(), -1, time.monotonic() + 60
    while (_queued(fd) != before or before < 40_000) and time.monotonic() < deadline:  # full, and stays so
        before = _queued(fd)
        time.sleep(0.1)
    time.sleep(delay)
    proc.send_signal(signal.SIGTERM)
    out, err = finish(proc, timeout=60)
    assert proc.returncode == 143, err
    assert out.endswith("\n"), out[-200:]
    lines = out.splitlines()
    assert [json.loads(line)["row"] for line in lines] == list(range(T, T + len(lines)))  # all whole, in order
    assert 0 < len(lines) == _summary_count(err) < 4 * (len(LINES) - 1) - T


def test_a_reader_that_takes_nothing_after_a_stop_does_not_hold_the_run(monkeypatch):
    monkeypatch.setattr(sinks, "STOP_GRACE_SECONDS", 0.6)
    read_end, write_end = os.pipe()
    stdout = open(write_end, "w")  # noqa: SIM115 - closed below
    messages = io.StringIO()
    threading.Timer(1.0, os.kill, (os.getpid(), signal.SIGTERM)).start()  # the pipe (64 KiB) is full by then
    started = time.monotonic()
    try:
        code = run_stream(RunOptions(stream=str(SENSOR_CSV), model=SENSOR_ONNX), stdout, messages)
    finally:
        stdout.close()
    took = time.monotonic() - started
    with open(read_end, "rb") as pipe:
        out = pipe.read().decode()
    said = messages.getvalue()
    assert code == 143 and took < 5, (took, said)
    assert "stdout: its reader took nothing for 0.6 s after the stop signal" in said
    assert out.endswith("\n") and len(out.splitlines()) == _summary_count(said) > 0


def test_a_write_cut_short_goes_on_from_where_it_stopped(tmp_path: Path, monkeypatch):
    real, sizes = os.write, []

    def short(fd: int, data) -> int:  # as a signal cuts a write to a pipe short: a few bytes at a time
        sizes.append(len(data))
        return real(fd, bytes(data[:97]))

    read_end, write_end = os.pipe()
    sink = sinks.FdSink(write_end, "utf-8", live=True, owned=True)
    monkeypatch.setattr(sinks.os, "write", short)
    records = [f'{{"row": {i}, "x": "é"}}\n' for i in range(300)]
    sink.write(records)
    sink.close()
    monkeypatch.undo()
    with open(read_end, encoding="utf-8") as pipe:
        assert pipe.read() == "".join(records)
    assert len(sizes) > 50  # it really was written in pieces


def test_a_fifos_last_line_without_a_line_break_is_used_when_stopped(tmp_path: Path):
    # Before: with --follow, the FIFO's writer closing left the unfinished last line waiting for the next
    # writer, and SIGTERM threw it away; at the end of a file or stdin it is used.
    fifo = tmp_path / "rows.fifo"
    os.mkfifo(fifo)
    proc = cli("--stream", fifo, "--model", SENSOR_ONNX, "--follow")
    with open(fifo, "w") as writer:
        writer.write("\n".join(LINES[: T + 2]))  # the last row has no line break
    watchdog = threading.Timer(15, proc.send_signal, (signal.SIGTERM,))  # without the fix the record never comes
    watchdog.start()
    try:
        rows = [json.loads(proc.stdout.readline() or "null") for _ in range(2)]
    finally:
        watchdog.cancel()
    proc.send_signal(signal.SIGTERM)
    _, err = finish(proc, timeout=30)
    assert [row and row["row"] for row in rows] == [T, T + 1], err
    assert proc.returncode == 143 and _summary_count(err) == 2


def _failing_model(path: Path, window: int, features: int) -> Path:
    """A model that fails on every window, as a graph that asks for memory the box does not have would: a
    Gather whose index is past the window's end (onnxruntime checks it at run time, not at load)."""
    import onnx
    from onnx import TensorProto, helper

    graph = helper.make_graph(
        [
            helper.make_node("Gather", ["window", "past_the_end"], ["picked"], axis=1),
            helper.make_node("ReduceSum", ["picked"], ["total"], keepdims=0),
            helper.make_node("Reshape", ["total", "shape"], ["forecast"]),
        ],
        "fails",
        [helper.make_tensor_value_info("window", TensorProto.FLOAT, [1, window, features])],
        [helper.make_tensor_value_info("forecast", TensorProto.FLOAT, [1, 1])],
        [
            helper.make_tensor("past_the_end", TensorProto.INT64, [], [window + 5]),
            helper.make_tensor("shape", TensorProto.INT64, [2], [1, 1]),
        ],
    )
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), path)
    return path


def test_a_model_that_fails_on_every_window_stops_the_run_with_exit_1(tmp_path: Path):
    # Before: one message per window (2,926 lines, 1 MB of stderr) and exit 0.
    model = _failing_model(tmp_path / "fails.onnx", window=4, features=2)
    task = ["--features", "T2,RH_2", "--target", "T2", "--window", "4", "--horizon", "1", "--input-scale", "1,1",
            "--target-scale", "1"]  # fmt: skip
    proc = cli("--stream", SENSOR_CSV, "--model", model, *task)
    out, err = finish(proc, timeout=120)
    assert proc.returncode == 1 and out == ""
    lines = err.splitlines()
    shown = [line for line in lines if "the model failed on this window" in line]
    assert len(shown) == 11  # the first 10, and the one that stops the run
    assert "further windows the model fails on are counted in the summary, not shown" in err
    assert lines[-2].startswith("edgeseq: error: line 104: the model failed on this window: ")
    assert lines[-2].endswith("; stopping (the model failed on 100 windows in a row)")
    assert ", the model failed on 100 windows (not written)," in lines[-1] and len(lines) == 13, err


def test_a_model_that_fails_on_some_windows_goes_on(tmp_path: Path):
    # a window the model cannot take (an Embedding index out of range) is the data's, not the model's: under
    # the limit, the run goes on, and each failure is counted
    from edgeseq_device import reads

    model = _failing_model(tmp_path / "fails.onnx", window=4, features=2)
    task = dict(features=("T2", "RH_2"), target="T2", window=4, horizon=1, input_scale=(1.0, 1.0), target_scale=1.0)
    stream = write_lines(tmp_path / "few.csv", LINES[: 4 + reads.MODEL_FAILURES_IN_A_ROW - 1])  # 99 windows
    messages = io.StringIO()
    code = run_stream(RunOptions(stream=str(stream), model=model, **task), io.StringIO(), messages)
    assert code == 0 and ", the model failed on 99 windows (not written)," in messages.getvalue()

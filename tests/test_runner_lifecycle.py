"""The runner as a long-lived process: a followed file truncated or rotated, signals, a reader that goes away."""

from __future__ import annotations

import io
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from tests.conftest import REPO
from tests.streams import LINES, SENSOR_CSV, SENSOR_ONNX, T, cli, finish, records, write_lines


def _read_records(proc: subprocess.Popen, count: int, timeout: float = 60) -> list[dict]:
    """`count` records from the child's stdout; a hang fails the test instead of stalling the suite."""
    watchdog = threading.Timer(timeout, proc.kill)
    watchdog.start()
    try:
        return [json.loads(proc.stdout.readline() or "null") for _ in range(count)]
    finally:
        watchdog.cancel()


def _stop(proc: subprocess.Popen, signum: int = signal.SIGINT) -> tuple[str, str]:
    proc.send_signal(signum)
    return finish(proc, timeout=30)


def test_follow_reopens_a_truncated_file_and_starts_a_new_window(tmp_path: Path):
    path = write_lines(tmp_path / "log.csv", LINES[:200])  # rows 1..199: windows end at rows T..199
    proc = cli("--stream", path, "--model", SENSOR_ONNX, "--follow")
    first = _read_records(proc, 200 - T)
    # truncate and rewrite with a header and T+2 rows of another period: before the fix the runner resumed at
    # the old byte offset, skipped these rows and mixed old and new rows in one window
    write_lines(path, [LINES[0], *LINES[500 : 500 + T + 2]])
    after = _read_records(proc, 3)
    _, err = _stop(proc)
    assert [r["row"] for r in first] == list(range(T, 200))
    assert "truncated" in err and "a new window starts" in err
    # the new window is made of the new file's rows only: its first record is the new file's row T
    expected = {r["row"]: r["prediction"] for r in records(_run_file(tmp_path, LINES[500 : 500 + T + 2]))}
    assert [r["prediction"] for r in after] == [expected[T], expected[T + 1], expected[T + 2]]
    assert [r["row"] for r in after] == [199 + T, 199 + T + 1, 199 + T + 2]  # rows keep counting


def _run_file(tmp_path: Path, data_lines: list[str]) -> str:
    path = write_lines(tmp_path / "alone.csv", [LINES[0], *data_lines])
    proc = subprocess.run(
        [sys.executable, "-m", "edgeseq", "run", "--stream", str(path), "--model", str(SENSOR_ONNX)],
        cwd=REPO, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    return proc.stdout


def test_follow_reopens_a_rotated_file(tmp_path: Path):
    path = write_lines(tmp_path / "log.csv", LINES[: T + 2])
    proc = cli("--stream", path, "--model", SENSOR_ONNX, "--follow")
    first = _read_records(proc, 2)
    os.rename(path, tmp_path / "log.csv.1")  # logrotate: move away, then a new file takes the name
    write_lines(path, LINES[700 : 700 + T + 1])  # no header this time: data rows only
    after = _read_records(proc, 2)
    _, err = _stop(proc)
    assert "rotated" in err and proc.returncode == 130
    expected = {r["row"]: r["prediction"] for r in records(_run_file(tmp_path, LINES[700 : 700 + T + 1]))}
    assert [r["prediction"] for r in after] == [expected[T], expected[T + 1]]
    assert len(first) == 2


def _summary_count(err: str) -> int:
    match = re.search(r"(\d+) predictions", err)
    assert match, err
    return int(match.group(1))


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_a_stop_signal_writes_everything_then_the_summary_with_the_right_count(tmp_path: Path, signum):
    out_path = tmp_path / "out.jsonl"
    # long enough (12 times the sample: 35,000 rows, over 1.5 s batched here) that the run is still going at the
    # last delay: 4 times the sample was done in 0.57 s once batched, and the signal came after the run had ended
    big = write_lines(tmp_path / "big.csv", [LINES[0], *(LINES[1:] * 12)])
    for delay in (0.0, 0.05, 0.2, 0.5):
        out_path.unlink(missing_ok=True)
        proc = cli("--stream", big, "--model", SENSOR_ONNX, "--output", out_path)
        deadline = time.monotonic() + 60
        while (not out_path.exists() or out_path.stat().st_size == 0) and time.monotonic() < deadline:
            time.sleep(0.01)  # records are being written: the loop is running
        time.sleep(delay)
        _, err = _stop(proc, signum)
        written = out_path.read_text()
        assert written.endswith("\n") or written == ""  # never a partial line
        assert "Traceback" not in err, err
        assert proc.returncode == (130 if signum == signal.SIGINT else 143), err
        assert ("interrupted" if signum == signal.SIGINT else "stopped by SIGTERM") in err
        assert _summary_count(err) == len(written.splitlines()), (delay, err)


@pytest.mark.parametrize("delay", [0.01, 0.05, 0.1, 0.2, 0.4])
@pytest.mark.parametrize("module", ["edgeseq", "edgeseq_device"])
def test_ctrl_c_while_starting_up_is_a_message_not_a_traceback(delay, module, tmp_path):
    # -X importtime prints each import as it completes: once edgeseq_device.interrupt is imported, the front end
    # installs its handler (before that, Ctrl-C lands in the interpreter's own start-up and the standard
    # library's imports, a few milliseconds that no program controls). The stream is long enough (eight times
    # the sample, over 2 s here) that the run is still going at the last delay: on a fast machine the sample
    # alone was done in 0.32 s, and the signal came after the run had ended.
    stream = write_lines(tmp_path / "long.csv", [LINES[0], *(LINES[1:] * 8)])
    proc = subprocess.Popen(
        [sys.executable, "-X", "importtime", "-m", module, "run", "--stream", str(stream),
         "--model", str(SENSOR_ONNX)],
        cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    watchdog = threading.Timer(60, proc.kill)  # a hang fails the test instead of stalling the suite
    watchdog.start()
    seen = []
    for line in proc.stderr:
        seen.append(line)
        if line.rstrip().endswith("| edgeseq_device.interrupt"):
            break
    time.sleep(delay)
    _, err = _stop(proc)
    watchdog.cancel()
    err = "".join(seen) + err
    messages = [line for line in err.splitlines() if not line.startswith("import time:")]
    assert "Traceback" not in err, err
    assert proc.returncode == 130 and any("interrupted" in m for m in messages), messages


def test_a_broken_stderr_does_not_stop_the_run(tmp_path: Path):
    # `edgeseq run ... --output out.jsonl 2>&1 | head -1`: stderr's reader leaves after one message; bad rows
    # make the runner write to stderr early and often. Before the fix the run stopped (exit 0, 964 records).
    lines = [LINES[0]]
    for i, line in enumerate(LINES[1:], start=1):
        lines.append("junk" if i % 200 == 0 else line)
    path = write_lines(tmp_path / "s.csv", lines)
    out_path = tmp_path / "out.jsonl"
    read_end, write_end = os.pipe()
    proc = cli("--stream", path, "--model", SENSOR_ONNX, "--output", out_path, stderr=write_end, stdout=None)
    os.close(write_end)
    with os.fdopen(read_end) as reader:
        reader.readline()  # one message, then the reader goes away
    proc.wait(timeout=120)
    full = cli("--stream", path, "--model", SENSOR_ONNX)
    expected, _ = finish(full, timeout=120)
    assert proc.returncode == 0
    assert out_path.read_text() == expected and len(expected.splitlines()) > 2000


def test_a_stderr_closed_before_the_summary_still_exits_0(tmp_path: Path):
    out_path = tmp_path / "out.jsonl"
    read_end, write_end = os.pipe()
    os.close(read_end)  # nobody reads stderr at all: the summary is the only message
    proc = cli("--stream", SENSOR_CSV, "--model", SENSOR_ONNX, "--output", out_path, stderr=write_end, stdout=None)
    os.close(write_end)
    assert proc.wait(timeout=120) == 0
    assert len(out_path.read_text().splitlines()) == len(LINES) - T


@pytest.mark.parametrize("to_stdout", [False, True])
def test_a_full_disk_is_one_line_and_exit_1(to_stdout: bool):
    args = ["--stream", SENSOR_CSV, "--model", SENSOR_ONNX]
    with open("/dev/full", "w") as full:  # every write fails with ENOSPC
        proc = cli(*args, stdout=full) if to_stdout else cli(*args, "--output", "/dev/full")
        _, err = finish(proc, timeout=120)
    assert proc.returncode == 1
    where = "stdout" if to_stdout else "/dev/full"
    assert err == f"edgeseq: error: cannot write {where}: No space left on device; 0 records written\n"


class _SignallingSink(io.StringIO):
    """Records go here; the SIGINT arrives while the write that brings the `at`-th record is under way: the
    worst moment. Records come a block (one read's rows) per write."""

    def __init__(self, at: int) -> None:
        super().__init__()
        self.at, self.records, self.sent = at, 0, False

    def write(self, text: str) -> int:
        written = super().write(text)
        self.records += text.count("\n")
        if self.records >= self.at and not self.sent:
            self.sent = True
            os.kill(os.getpid(), signal.SIGINT)
        return written


@pytest.mark.parametrize("at", [1, 7, 100, 1000])
def test_ctrl_c_while_a_record_is_written_still_counts_it(at: int):
    # Before: the KeyboardInterrupt surfaced between the write and the count, so the summary said one
    # prediction fewer than the records written (6 of 20 trials).
    from edgeseq_device.runner import RunOptions, run_stream

    sink, messages = _SignallingSink(at), io.StringIO()
    code = run_stream(RunOptions(stream=str(SENSOR_CSV), model=SENSOR_ONNX), sink, messages)
    assert code == 130
    written = sink.getvalue().count("\n")
    assert at <= written < len(LINES) - T  # the run stopped after that write, before the end of the stream
    assert f"{written} predictions" in messages.getvalue() and "interrupted" in messages.getvalue()


class _SignallingSession:
    """The model's onnxruntime session, which sends `signum` to this process from inside its `at`-th call: that
    window has run, and neither its record nor those of the windows run before it in the same read are written."""

    def __init__(self, session, at: int, signum: int) -> None:
        self._session, self.at, self.signum, self.calls = session, at, signum, 0

    def __getattr__(self, name: str):
        return getattr(self._session, name)

    def run_with_iobinding(self, *args, **kwargs):
        result = self._session.run_with_iobinding(*args, **kwargs)
        self.calls += 1
        if self.calls == self.at:
            os.kill(os.getpid(), self.signum)
        return result


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
@pytest.mark.parametrize("at", [1, 109, 300, 2000])
def test_a_stop_signal_during_a_model_call_still_writes_every_window_that_ran(monkeypatch, at, signum):
    # Windows are run a read's worth at a time and their records written together after: a stop signal in
    # the middle ends the run at the next window, and each window already run is written and counted. Planted,
    # dropping those records kept the summary equal to the lines written (both short) and lost computed forecasts.
    import edgeseq_device.runner as runner_module
    from edgeseq_device.runner import RunOptions, run_stream

    # one window a call, so the stop can come between any two (batched, it comes between two batches)
    options = RunOptions(stream=str(SENSOR_CSV), model=SENSOR_ONNX, batch=1)
    whole = io.StringIO()
    assert run_stream(options, whole, io.StringIO()) == 0
    real_load, sessions = runner_module.load_model, []

    def load_signalling(*args, **kwargs):
        model = real_load(*args, **kwargs)
        model.session = _SignallingSession(model.session, at, signum)
        sessions.append(model.session)
        return model

    monkeypatch.setattr(runner_module, "load_model", load_signalling)
    sink, messages = io.StringIO(), io.StringIO()
    code = run_stream(options, sink, messages)
    said = messages.getvalue()
    assert code == 128 + signum, said
    ran = sessions[0].calls
    assert ran == at  # the stop came between two windows: none was run after it
    written = records(sink.getvalue())
    # every window that ran, in order
    assert [r["row"] for r in written] == list(range(T, T + ran)), (
        f"{len(written)} records of {ran} windows run; {said}"
    )
    assert written == records(whole.getvalue())[:ran]  # the very records a run to the end writes first
    assert f"{ran} predictions" in said and ("interrupted" if signum == signal.SIGINT else "stopped by") in said


def test_ctrl_c_while_records_before_a_bad_row_are_written_is_exit_130_not_1(tmp_path: Path):
    # --on-bad-row fail writes the records before the bad row, then stops with exit 1; a SIGINT during that
    # write is the user's stop, and wins (exit 130), as it did when every window ran as it came
    from edgeseq_device.runner import RunOptions, run_stream

    lines = [*LINES[:100], "junk", *LINES[100:200]]
    path = write_lines(tmp_path / "bad.csv", lines)
    sink, messages = _SignallingSink(1), io.StringIO()
    code = run_stream(RunOptions(stream=str(path), model=SENSOR_ONNX, on_bad_row="fail"), sink, messages)
    assert code == 130, messages.getvalue()
    written = sink.getvalue().count("\n")
    assert f"{written} predictions" in messages.getvalue() and "interrupted" in messages.getvalue()


@pytest.mark.parametrize(
    "second_header",
    [
        lambda h: h.replace('"date"', '"when"'),  # a needed column missing
        lambda h: h.replace('"T1"', '"T2"'),  # a needed column named twice
    ],
)
def test_a_new_header_that_ends_the_run_comes_after_the_records_before_it(tmp_path: Path, second_header):
    from edgeseq_device.runner import RunOptions, run_stream

    path = write_lines(tmp_path / "s.csv", [*LINES[: T + 5], second_header(LINES[0]), *LINES[T + 5 : T + 50]])
    out, messages = io.StringIO(), io.StringIO()
    code = run_stream(RunOptions(stream=str(path), model=SENSOR_ONNX), out, messages)
    assert code == 2, messages.getvalue()
    # the header and T + 4 data rows before it: windows end at rows T to T + 4
    assert [json.loads(r)["row"] for r in out.getvalue().splitlines()] == [T, T + 1, T + 2, T + 3, T + 4]
    assert "5 predictions" in messages.getvalue()


def test_a_new_file_running_newest_first_ends_the_run_after_the_records_before_it(tmp_path: Path):
    from edgeseq_device.runner import RunOptions, run_stream

    backwards = list(reversed(LINES[T + 5 : T + 12]))  # a header again, then rows newest first
    path = write_lines(tmp_path / "s.csv", [*LINES[: T + 5], LINES[0], *backwards])
    out, messages = io.StringIO(), io.StringIO()
    code = run_stream(RunOptions(stream=str(path), model=SENSOR_ONNX), out, messages)
    assert code == 2 and "newest first" in messages.getvalue(), messages.getvalue()
    assert [json.loads(r)["row"] for r in out.getvalue().splitlines()] == [T, T + 1, T + 2, T + 3, T + 4]


def test_a_closed_stderr_does_not_stop_the_run(tmp_path: Path):
    # `edgeseq run ... --output o.jsonl 2>&-`: Python sets sys.stderr to None
    lines = [LINES[0], *("junk" if i % 500 == 0 else line for i, line in enumerate(LINES[1:], start=1))]
    path = write_lines(tmp_path / "s.csv", lines)
    out_path = tmp_path / "out.jsonl"
    proc = cli(
        "--stream", path, "--model", SENSOR_ONNX, "--output", out_path, stderr=None, preexec_fn=lambda: os.close(2)
    )
    assert proc.wait(timeout=120) == 0
    expected, _ = finish(cli("--stream", path, "--model", SENSOR_ONNX), timeout=120)
    assert out_path.read_text() == expected


@pytest.mark.parametrize(
    ("args", "closed", "message"),
    [
        (["run", "--stream", str(SENSOR_CSV)], 1, "edgeseq: error: stdout is closed: give --output FILE"),
        (["run", "--stream", "-"], 0, "edgeseq: error: cannot read stdin: it is closed"),
        (["letters", "abcd"], 1, "edgeseq: error: stdout is closed: there is nowhere to print the predictions"),
        (["letters"], 0, "edgeseq: error: stdin is closed: give the sequences as arguments"),
    ],
)
def test_a_closed_stdin_or_stdout_is_one_line_exit_2(args, closed, message):
    proc = subprocess.Popen(
        [sys.executable, "-m", "edgeseq", *args], cwd=REPO, stderr=subprocess.PIPE, text=True,
        stdin=None if closed else subprocess.DEVNULL, stdout=None if closed else subprocess.DEVNULL,
        preexec_fn=lambda: os.close(closed),
    )  # fmt: skip
    _, err = finish(proc)
    assert proc.returncode == 2 and err == message + "\n"


def test_follow_survives_a_file_replaced_before_it_had_a_header(tmp_path: Path):
    path = tmp_path / "log.csv"
    path.write_text("")
    proc = cli("--stream", path, "--model", SENSOR_ONNX, "--follow")
    time.sleep(1.0)
    os.rename(path, tmp_path / "log.csv.1")
    write_lines(path, LINES[: T + 2])
    got = _read_records(proc, 2)
    _, err = _stop(proc)
    assert [r["row"] for r in got] == [T, T + 1] and "rotated" in err


def test_a_new_file_without_a_needed_column_stops_with_its_name_and_the_summary(tmp_path: Path):
    path = write_lines(tmp_path / "log.csv", LINES[: T + 1])
    proc = cli("--stream", path, "--model", SENSOR_ONNX, "--follow")
    _read_records(proc, 1)
    os.rename(path, tmp_path / "log.csv.1")
    write_lines(path, [LINES[0].replace('"date"', '"when"'), *LINES[1:5]])
    _, err = finish(proc, timeout=60)
    assert proc.returncode == 2
    assert f"edgeseq: error: {path}: missing column 'date'" in err and f"{T} rows read, 1 predictions" in err


@pytest.mark.parametrize("module", ["edgeseq", "edgeseq_device"])
def test_ctrl_c_held_down_until_the_process_is_gone_is_never_a_traceback(module, tmp_path):
    """A user holding Ctrl-C, or a supervisor sending SIGINT in a loop: the first stops the run, the others land
    anywhere on its way out (the summary, the front end's last frame, the interpreter's exit)."""
    out = tmp_path / "out.jsonl"
    for _ in range(8):
        out.unlink(missing_ok=True)
        proc = subprocess.Popen(
            [sys.executable, "-m", module, "run", "--stream", str(SENSOR_CSV), "--model", str(SENSOR_ONNX),
             "--output", str(out)],
            cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
        )  # fmt: skip
        deadline = time.monotonic() + 60
        while (not out.exists() or out.stat().st_size == 0) and time.monotonic() < deadline:
            time.sleep(0.005)  # the run is going, its handlers in place
        while proc.poll() is None:
            proc.send_signal(signal.SIGINT)
            time.sleep(0.0005)
        err = proc.stderr.read()
        proc.stderr.close()
        assert "Traceback" not in err and "KeyboardInterrupt" not in err, err
        # 130, or killed by the signal itself (-2, which a shell shows as 130 too): once Python's finalisation has
        # put back SIGINT's default disposition, no Python code runs to say anything
        assert proc.returncode in (130, -signal.SIGINT) and "interrupted" in err, err

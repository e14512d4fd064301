"""SIGHUP (`systemctl reload`, logrotate's postrotate): a --follow run (stderr not a terminal: a service)
looks at its path again at its next poll and reopens a new file there, and goes on; any other run keeps
SIGHUP's default, so a closed terminal still ends it."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

from tests.streams import LINES, SENSOR_ONNX, T, cli, records, write_lines
from tests.test_runner_lifecycle import _read_records, _run_file, _stop


def test_sighup_on_an_unchanged_followed_file_says_so_and_the_run_goes_on(tmp_path: Path):
    path = write_lines(tmp_path / "log.csv", LINES[: T + 2])
    proc = cli("--stream", path, "--model", SENSOR_ONNX, "--follow")
    first = _read_records(proc, 2)
    proc.send_signal(signal.SIGHUP)
    time.sleep(0.5)
    assert proc.poll() is None, "SIGHUP ended the run"
    with path.open("a") as handle:  # the logger goes on writing to the same file
        handle.write("\n".join(LINES[T + 2 : T + 5]) + "\n")
    after = _read_records(proc, 3)
    _, err = _stop(proc, signal.SIGTERM)
    assert proc.returncode == 143 and "Traceback" not in err
    assert "SIGHUP: " in err and "is still the same file; reading on" in err
    assert [r["row"] for r in first + after] == [T, T + 1, T + 2, T + 3, T + 4]  # one window, no restart
    assert "5 predictions" in err


def test_sighup_after_a_rotation_reopens_the_new_file(tmp_path: Path):
    path = write_lines(tmp_path / "log.csv", LINES[: T + 2])
    proc = cli("--stream", path, "--model", SENSOR_ONNX, "--follow")
    _read_records(proc, 2)
    os.rename(path, tmp_path / "log.csv.1")
    write_lines(path, [LINES[0], *LINES[700 : 700 + T + 1]])
    proc.send_signal(signal.SIGHUP)  # what logrotate's postrotate script does
    after = _read_records(proc, 2)
    _, err = _stop(proc, signal.SIGTERM)
    assert proc.returncode == 143 and "Traceback" not in err
    # the signal and the 0.2 s poll race to see the new file: either way it is reopened once, from its start
    assert err.count("a new file has taken its name (rotated)") == 1, err
    expected = {r["row"]: r["prediction"] for r in records(_run_file(tmp_path, LINES[700 : 700 + T + 1]))}
    assert [r["prediction"] for r in after] == [expected[T], expected[T + 1]]


def _hung_up(disposition: signal.Handlers) -> subprocess.Popen:
    """A run reading stdin, with its SIGHUP disposition set by the test, not inherited (under `nohup pytest`
    it would be ignored), sent SIGHUP after its first record."""
    proc = cli("--stream", "-", "--model", SENSOR_ONNX, stdin=subprocess.PIPE,
               preexec_fn=lambda: signal.signal(signal.SIGHUP, disposition))  # fmt: skip
    proc.stdin.write("\n".join(LINES[: T + 1]) + "\n")
    proc.stdin.flush()
    _read_records(proc, 1)
    proc.send_signal(signal.SIGHUP)
    return proc


def test_sighup_without_follow_keeps_its_default_and_ends_the_run():
    # a run reading a terminal's pipe: a closed terminal (SIGHUP) must still end it, as it did before
    proc = _hung_up(signal.SIG_DFL)
    proc.wait(timeout=60)
    proc.stdin.close()
    assert proc.returncode == -signal.SIGHUP


def test_sighup_ignored_by_nohup_stays_ignored_without_follow():
    # `nohup edgeseq run ...`: the user asked for the run to outlive the terminal, and it does
    proc = _hung_up(signal.SIG_IGN)
    time.sleep(0.3)
    assert proc.poll() is None, "SIGHUP ended a run started under nohup"
    proc.stdin.write(LINES[T + 1] + "\n")
    proc.stdin.close()  # end of input: the run ends by itself
    out, err = proc.stdout.read(), proc.stderr.read()  # through the buffers _read_records read from
    assert proc.wait(timeout=60) == 0, err
    assert [r["row"] for r in records(out)] == [T + 1]  # the first record was read above

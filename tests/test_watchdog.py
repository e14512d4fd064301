"""systemd's notify protocol as the bundle's unit (Type=notify, WatchdogSec=) uses it: READY=1 once the run can serve,
WATCHDOG=1 from the runner's loop while it reads or waits for input, none while that loop is stuck, STOPPING=1 at
the end. The tests stand in for systemd: a unix datagram socket named by NOTIFY_SOCKET, and WATCHDOG_USEC."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import threading
import time
import uuid
from itertools import pairwise
from pathlib import Path

import pytest

from edgeseq_device.notify import Notifier
from tests.streams import LINES, SENSOR_ONNX, cli, finish, write_lines

WATCHDOG_USEC = 600_000  # pings at most every 0.2 s, a third of it


class Manager:
    """The service manager's end: every datagram received, with the time it came."""

    def __init__(self, address: str) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind("\0" + address[1:] if address.startswith("@") else address)
        self.address = address
        self.messages: list[tuple[float, str]] = []
        self._thread = threading.Thread(target=self._receive, daemon=True)
        self._thread.start()

    def _receive(self) -> None:
        while True:
            try:
                data = self.sock.recv(4096)
            except OSError:
                return
            self.messages.append((time.monotonic(), data.decode()))

    def env(self, usec: int = WATCHDOG_USEC) -> dict[str, str]:
        return {**os.environ, "NOTIFY_SOCKET": self.address, "WATCHDOG_USEC": str(usec)}

    def states(self, since: float = 0.0) -> list[str]:
        return [text for at, text in list(self.messages) if at >= since]

    def wait_for(self, text: str, timeout: float = 60.0) -> float:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for at, got in list(self.messages):
                if got == text:
                    return at
            time.sleep(0.02)
        raise AssertionError(f"no {text} in {timeout} s: {self.states()}")

    def close(self) -> None:
        self.sock.close()


@pytest.fixture
def manager(tmp_path: Path):
    path = tmp_path / "notify"
    if len(str(path)) > 100:  # sun_path holds 108 bytes
        pytest.skip("the temporary folder's path is too long for a unix socket")
    manager = Manager(str(path))
    yield manager
    manager.close()


def _gaps(times: list[float]) -> list[float]:
    return [b - a for a, b in pairwise(times)]


def test_the_notifier_reaches_a_socket_in_the_abstract_namespace_and_limits_its_pings():
    manager = Manager(f"@edgeseq-test-{uuid.uuid4().hex}")
    try:
        notifier = Notifier({"NOTIFY_SOCKET": manager.address, "WATCHDOG_USEC": "3000000"})
        assert notifier.every == 1.0
        notifier.ready()
        for _ in range(1000):  # within one second: one ping, whatever the calls
            notifier.alive()
        notifier.stopping()
        deadline = time.monotonic() + 5
        while len(manager.messages) < 3 and time.monotonic() < deadline:
            time.sleep(0.01)
        time.sleep(0.1)
        assert manager.states() == ["READY=1", "WATCHDOG=1", "STOPPING=1"]
    finally:
        manager.close()


def test_no_socket_no_watchdog_or_another_pids_watchdog_sends_nothing(manager):
    assert not Notifier({}).enabled and Notifier({}).every == 0
    assert Notifier({"NOTIFY_SOCKET": manager.address}).every == 0  # no WATCHDOG_USEC: READY and STOPPING only
    other = Notifier({"NOTIFY_SOCKET": manager.address, "WATCHDOG_USEC": "600000", "WATCHDOG_PID": "1"})
    other.alive()
    Notifier({"NOTIFY_SOCKET": str(manager.address) + ".gone"}).ready()  # a manager gone away is not an error
    time.sleep(0.2)
    assert manager.states() == []


@pytest.mark.parametrize("module", ["edgeseq_device", "edgeseq"])
def test_ready_then_watchdog_pings_while_idle_then_stopping_after_sigterm(tmp_path: Path, manager, module: str):
    stream = write_lines(tmp_path / "log.csv", LINES[:101])
    proc = cli("--stream", stream, "--model", SENSOR_ONNX, "--follow", "--output", tmp_path / "out.jsonl",
               module=module, env=manager.env())  # fmt: skip
    try:
        ready = manager.wait_for("READY=1")
        time.sleep(2.0)  # idle: the file has been read, the runner polls it
        idle = [at for at, text in list(manager.messages) if text == "WATCHDOG=1" and at > ready + 0.3]
        assert len(idle) >= 5, manager.states()  # about one every 0.2 s
        assert max(_gaps(idle)) < 0.6, _gaps(idle)  # never as long as WATCHDOG_USEC
        proc.send_signal(signal.SIGTERM)
        _, err = finish(proc, timeout=30)
    finally:
        proc.kill()
    assert proc.returncode == 143, err
    states = manager.states()
    assert states[0] == "READY=1" and states[-1] == "STOPPING=1" and set(states[1:-1]) == {"WATCHDOG=1"}


def test_no_ping_while_the_loop_is_stuck_on_a_reader_that_takes_nothing(tmp_path: Path, manager):
    """A stall that is not planted in the code: the records go to a pipe nobody reads. Once the pipe is full
    (64 KiB) the runner's loop waits on its write and pings no more; when the reader takes the records the loop
    goes on, and so do the pings. A ping from a thread of its own would have gone on through the stall."""
    stream = write_lines(tmp_path / "log.csv", LINES[:1])  # the header: the run waits for rows
    proc = cli("--stream", stream, "--model", SENSOR_ONNX, "--follow", stdout=subprocess.PIPE, text=False,
               module="edgeseq_device", env=manager.env())  # fmt: skip
    try:
        manager.wait_for("READY=1")
        time.sleep(1.0)
        assert manager.states().count("WATCHDOG=1") >= 3  # idle, pinging
        with stream.open("a") as log:  # 2,925 records of about 60 bytes: far more than the pipe holds
            log.write("\n".join(LINES[1:]) + "\n")
        time.sleep(1.0)  # it reads, and fills the pipe
        stuck_since = time.monotonic()
        time.sleep(3.0)  # five times WATCHDOG_USEC: systemd would have restarted it
        during = manager.states(since=stuck_since)
        assert during == [], during
        taken = []
        reader = threading.Thread(target=lambda: taken.append(proc.stdout.read()), daemon=True)
        reader.start()  # the reader takes the records: the loop goes on
        resumed = time.monotonic()
        time.sleep(2.0)
        assert manager.states(since=resumed).count("WATCHDOG=1") >= 3
        proc.send_signal(signal.SIGTERM)
        reader.join(30)
        proc.wait(30)
    finally:
        proc.kill()
    assert proc.returncode == 143
    assert len(taken[0].splitlines()) == len(LINES) - 1 - 35  # every record, once the reader took them
    assert manager.states()[-1] == "STOPPING=1"


def test_a_fifo_with_a_silent_writer_is_waited_on_with_pings(tmp_path: Path, manager):
    """A FIFO source (the unit takes one): READY=1 comes once it is open, before any writer, and the wait for a
    writer, then for its rows, pings; without the poll a read blocked on a silent writer would not."""
    fifo = tmp_path / "rows.fifo"
    os.mkfifo(fifo)
    out = tmp_path / "out.jsonl"
    proc = cli("--stream", fifo, "--model", SENSOR_ONNX, "--follow", "--output", out, module="edgeseq_device",
               env=manager.env())  # fmt: skip
    try:
        ready = manager.wait_for("READY=1")
        time.sleep(1.5)  # no writer yet
        assert len([1 for at, text in list(manager.messages) if text == "WATCHDOG=1" and at > ready]) >= 4
        with open(fifo, "w") as writer:
            writer.write("\n".join(LINES[:101]) + "\n")
            writer.flush()
            time.sleep(0.5)
            silent = time.monotonic()
            time.sleep(1.5)  # the writer is there and says nothing
            assert manager.states(since=silent).count("WATCHDOG=1") >= 4
        time.sleep(0.5)
        proc.send_signal(signal.SIGTERM)
        _, err = finish(proc, timeout=30)
    finally:
        proc.kill()
    assert proc.returncode == 143, err
    assert len(out.read_text().splitlines()) == 100 - 35

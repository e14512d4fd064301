"""Telling systemd how the run is (sd_notify): READY=1 once it can serve, WATCHDOG=1 while its loop goes on, and
STOPPING=1 as it ends, each a datagram to $NOTIFY_SOCKET. No library: the protocol is one sendto.

The watchdog's ping comes from the runner's own thread, never from a thread of its own that would go on pinging
while the loop is stuck: `alive()` is called where the loop waits for input (signals.StopSignals.waiting, around
every read of the input and every poll of a followed file or an MQTT queue), so a run that reads, or waits to
read, pings; one stuck in a model call or on a reader that takes no records does not, and systemd restarts it
after WatchdogSec. Pings are at most one every third of $WATCHDOG_USEC, so a poll every 0.2 s costs a clock read.
"""

from __future__ import annotations

import math
import os
import socket
import time
from collections.abc import Mapping


class Notifier:
    """The run's line to its service manager; every method does nothing when $NOTIFY_SOCKET is not set."""

    def __init__(self, environ: Mapping[str, str] | None = None) -> None:
        environ = os.environ if environ is None else environ
        path = environ.get("NOTIFY_SOCKET", "")
        # "@name" is Linux's abstract namespace: the name starts with a NUL byte
        self.address = "\0" + path[1:] if path.startswith("@") else path
        self.every = _watchdog_seconds(environ) / 3 if self.address else 0.0
        self._next = math.inf  # no ping before READY=1: until then systemd's start timeout applies, not the watchdog

    @property
    def enabled(self) -> bool:
        return bool(self.address)

    def send(self, state: str) -> None:
        """One notification ("READY=1"); a manager gone away (a socket that refuses it) is not the run's failure."""
        if not self.address:
            return
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
                sock.sendto(state.encode(), self.address)
        except OSError:
            pass

    def ready(self) -> None:
        self.send("READY=1")
        self._next = 0.0
        self.alive()

    def alive(self) -> None:
        """WATCHDOG=1, at most once every third of the watchdog's interval."""
        if self.every:
            now = time.monotonic()
            if now >= self._next:
                self._next = now + self.every
                self.send("WATCHDOG=1")

    def stopping(self) -> None:
        self.send("STOPPING=1")


def _watchdog_seconds(environ: Mapping[str, str]) -> float:
    """$WATCHDOG_USEC in seconds, 0 when no watchdog is asked of this process ($WATCHDOG_PID names another)."""
    pid = environ.get("WATCHDOG_PID")
    if pid and pid.strip() != str(os.getpid()):
        return 0.0
    try:
        usec = int(environ.get("WATCHDOG_USEC", "0"))
    except ValueError:
        return 0.0
    return usec / 1e6 if usec > 0 else 0.0

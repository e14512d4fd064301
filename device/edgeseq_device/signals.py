"""SIGINT (Ctrl-C) and SIGTERM (`kill`, `systemctl stop`) as a request to stop cleanly; SIGHUP (`systemctl
reload`, logrotate's postrotate) as a request to reopen a followed file.

The handler only records the signal. The runner checks it before each row and each window it runs, so what
it computed is always written and counted before it stops: an exception raised in the middle of writing
records could leave the summary short of the records written. Only while the runner waits for input (a read, a poll, the
open of a FIFO) does the handler raise `StopRequested`, because nothing is half done there. Those waits are also
where the runner's loop tells systemd's watchdog it is alive (`idle`, notify.py).

SIGHUP, with `reopen=True` (the runner follows a file and stderr is not a terminal: a service), only counts
(`hangups`): the line source looks at the count once it has read all that its open file holds, at its next
poll, so no line of a rotated file is lost; its default action, ending the process, would make `systemctl
reload` kill the service. Otherwise SIGHUP keeps its default: a closed terminal ends the run.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from types import FrameType
from typing import Any

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)
REOPEN_SIGNAL = getattr(signal, "SIGHUP", None)  # not on Windows


class StopRequested(BaseException):  # like KeyboardInterrupt: a request, not an error
    """Raised while waiting for input when a stop signal arrives."""

    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


class StopSignals:
    """Records SIGINT and SIGTERM, and counts SIGHUP, while installed (`with StopSignals() as stop:`)."""

    def __init__(self, reopen: bool = False) -> None:
        self.received: int | None = None
        self.hangups = 0
        self.reopen = reopen
        self._waiting = False
        self._previous: dict[int, Any] = {}
        self.idle: Any = None  # called as each wait for input begins: the systemd watchdog's ping (notify.py)

    def __enter__(self) -> StopSignals:
        if threading.current_thread() is threading.main_thread():  # signal handlers live in the main thread
            for signum in STOP_SIGNALS:
                self._previous[signum] = signal.signal(signum, self._handle)
            if self.reopen and REOPEN_SIGNAL is not None:
                self._previous[REOPEN_SIGNAL] = signal.signal(REOPEN_SIGNAL, self._hangup)
        return self

    def __exit__(self, *exc: object) -> None:
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)
        self._previous.clear()

    def _hangup(self, signum: int, frame: FrameType | None) -> None:
        self.hangups += 1

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        self.received = signum
        if self._waiting:
            raise StopRequested(signum)

    @contextmanager
    def waiting(self) -> Iterator[None]:
        """Around a blocking wait for input: a stop signal (or one already received) ends the wait."""
        self._waiting = True
        try:
            if self.received is not None:
                raise StopRequested(self.received)
            if self.idle is not None:
                self.idle()
            yield
        finally:
            self._waiting = False

    @property
    def name(self) -> str:
        return signal.Signals(self.received).name if self.received is not None else ""

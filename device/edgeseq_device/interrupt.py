"""Ctrl-C for a front end's whole life: "PROG: interrupted" and exit code 130, never a traceback.

Kept apart from signals.py and importing only `signal` and `sys`: the front ends import it first, and
until its handler is installed a Ctrl-C still gets Python's own traceback.
"""

from __future__ import annotations

import signal
import sys


class Interrupted(BaseException):
    """SIGINT raised as a type that no library in between catches (typer turns KeyboardInterrupt into a silent
    exit 130)."""


class CtrlC:
    """A front end's outermost frame: Ctrl-C at any moment ends with "PROG: interrupted" and exit code 130.

    Until `armed()`, while the front end imports its modules, a SIGINT is only recorded: raised inside an
    import it would surface as an ImportError from a C extension, or be lost in an import-lock callback
    ("Exception ignored"). `armed()` acts on a recorded one and from then on raises `Interrupted` at once.
    Any exception after a SIGINT is reported as the interruption it is. A SIGINT as the frame is left (a run
    that has just ended) changes nothing: the exit code stands, and no SIGINT from then on is a traceback.
    """

    def __init__(self, prog: str) -> None:
        self.prog = prog
        self.received = False

    def __enter__(self) -> CtrlC:
        signal.signal(signal.SIGINT, self._record)
        return self

    def _record(self, signum: int, frame: object) -> None:
        self.received = True

    def _raise(self, signum: int, frame: object) -> None:
        self.received = True
        while frame is not None:  # the front end is leaving (in __exit__, or a call it makes): its outcome stands
            if getattr(frame, "f_code", None) is _LEAVING:
                return
            frame = getattr(frame, "f_back", None)
        raise Interrupted

    def armed(self) -> None:
        if self.received:
            raise Interrupted
        signal.signal(signal.SIGINT, self._raise)

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: object) -> None:
        # The process ends after this frame: a SIGINT from now on is only recorded. Python's own handler, put back,
        # would turn one that arrives while the interpreter exits into a KeyboardInterrupt traceback.
        signal.signal(signal.SIGINT, self._record)
        if exc_type is None or issubclass(exc_type, SystemExit) or not self.received:
            return
        if sys.stderr is not None:
            sys.stderr.write(f"{self.prog}: interrupted\n")
        raise SystemExit(130) from None


_LEAVING = CtrlC.__exit__.__code__

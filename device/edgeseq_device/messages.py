"""How the runtime speaks on stderr: user text escaped and bounded, and a stderr that never stops the work."""

from __future__ import annotations

import os
import re
from typing import TextIO

PREVIEW_CHARS = 60
# C0 and C1 control characters but tab and newline: what can drive a terminal (ESC, OSC, BEL, NUL...).
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")


def printable(message: str) -> str:
    """`message` with every control character but tab and newline written as an escape: paths, manifest
    fields and stream text reach messages from outside, and must not reach the terminal raw."""
    return _CONTROL.sub(lambda m: repr(m.group())[1:-1], message)


def shown(text: str, limit: int = PREVIEW_CHARS) -> str:
    """`text` as it may appear in a message: quoted, control characters escaped, at most `limit` characters.

    Header names, field values and letters come from files and stdin; echoed raw, an ESC would drive the
    terminal and a 50 MB line would become a 50 MB message.
    """
    cut = len(text) > limit
    shown_text = repr(text[:limit])
    return shown_text + f"… ({len(text):,} characters)" if cut else shown_text


def shown_list(items: list[str], most: int = 20) -> str:
    """Up to `most` items through `shown`, then how many more there are."""
    head = ", ".join(shown(item) for item in items[:most])
    return head + (f" and {len(items) - most:,} more" if len(items) > most else "")


class Messages:
    """Progress, reports and the summary go here. If the reader of stderr goes away (`2>&1 | head`), the
    messages stop and the work goes on: a broken stderr never stops or fails work whose results go elsewhere."""

    def __init__(self, stream: TextIO | None) -> None:
        self.stream = stream
        self.broken = stream is None  # `2>&-`: Python gives sys.stderr = None

    def say(self, message: str) -> None:
        if self.broken:
            return
        try:
            self.stream.write(printable(message) + "\n")
            self.stream.flush()
        except (OSError, ValueError, AttributeError):
            self.broken = True
            point_at_devnull(self.stream)


def point_at_devnull(stream: TextIO | None) -> None:
    """Redirect the stream's file descriptor to /dev/null, so that the interpreter's final flush of a closed
    pipe raises nothing either."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, stream.fileno())
        os.close(devnull)
    except (OSError, ValueError, AttributeError):
        pass

"""Where rows come from: every source hands the runner the same thing, a read's worth of CSV lines at a time.

`lines.py` reads a file (also compressed), stdin or a FIFO, following a growing file like `tail -F`; `mqtt.py`
subscribes to an MQTT topic filter and turns each message into a line of a header it makes itself. The runner's
middle (rows, series rules, windows, the model, records) is the same for both: adding a source is one module
here and one entry in `open_source`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any, Protocol

from edgeseq_device.sources.lines import Item


class Source(Protocol):
    """A stream of rows for the runner.

    `blocks()` yields lists of items, each what one read gave (the first line is the header); nothing in a
    list waited for input. `taken()` returns what acknowledges every item yielded so far; the runner hands it to
    the sink, which calls it once their records are out (written, or acknowledged by the broker), perhaps later
    and from another thread: a source that must acknowledge what it took (an MQTT QoS 1 message) does so then,
    never sooner. `where(n)` names the n-th data row for a message ("line 12", "message 12 on
    sensors/a/readings"). `key_column` is a column the source adds to key its rows by (MQTT topic levels), or
    None."""

    name: str
    key_column: str | None

    def blocks(self) -> Iterator[list[Item]]: ...

    def taken(self) -> Callable[[], None]: ...

    def where(self, number: int) -> str: ...

    def close(self) -> None: ...


def is_mqtt(stream: str) -> bool:
    return stream.startswith(("mqtt://", "mqtts://"))


def open_source(options: Any, stop: Any, columns: tuple[str, ...], key_column: str | None) -> Source:
    """The run's source for --stream: an MQTT topic filter (mqtt:// or mqtts://), else a file, stdin (-) or a FIFO.
    `columns` are the ones the model reads (the time column first, when there is one); `key_column` is the
    manifest's key column (--group-by at training), which an MQTT message may carry."""
    if is_mqtt(options.stream):
        from edgeseq_device.sources.mqtt import MqttSource

        return MqttSource(options, stop, columns, key_column)
    from edgeseq_device.sources.lines import LineSource

    return LineSource(
        options.stream, follow=options.follow, poll_seconds=options.poll_seconds, max_line=options.max_line, stop=stop
    )

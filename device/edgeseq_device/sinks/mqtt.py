"""Records published to MQTT: `--output mqtt://HOST:PORT/forecasts/{key}` (mqtts:// for TLS).

Each record is one message, the same JSON line the file runner writes, at QoS 1, to the topic template with
`{key}` filled per record (a key's `/`, `+` and `#` become `_` in the topic; the record keeps the key as it
is). A write hands its records to paho and returns: the runner computes the next block while the broker
acknowledges this one (PUBACK). What was waiting for a write to be out (the source's acknowledgement of the
readings behind it, `when_out`) is done once the broker has acknowledged every record written before it, from
paho's network thread. At most INFLIGHT records are unacknowledged: a write waits for room. While the broker is
away, paho keeps the records and sends them when it is back. `flush` and `close` wait for every acknowledgement;
after a stop signal, a broker that acknowledges nothing for STOP_GRACE_SECONDS no longer holds the run: those
records are reported, not counted.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable
from json.decoder import scanstring  # type: ignore[attr-defined]
from typing import Any

from edgeseq_device.mqtt import MqttError, close, connect, default_client_id, endpoint, security, status_topic
from edgeseq_device.sinks import ReaderStalled

STOP_GRACE_SECONDS = 10.0
WAIT_SECONDS = 0.2  # a wait for acknowledgements looks at stop signals this often
INFLIGHT = 1000  # records published and not yet acknowledged, at most: a write waits for room beyond it
_KEY = ', "key": "'  # where a record's key starts (records.Writer writes it so, after the row and the time)


def _level(key: Any) -> str:
    return "".join("_" if c in "/+#" else c for c in str(key))


class _Batch:
    """The records of one write not yet acknowledged, and what waits for them all to be."""

    __slots__ = ("then", "unacked")

    def __init__(self) -> None:
        self.unacked = 0
        self.then: list[Callable[[], None]] = []


class MqttSink:
    """Publishes records, each to its key's topic, and tells when the broker has taken them."""

    live = True

    def __init__(self, options: Any, stopping: Callable[[], bool], status: bool) -> None:
        if options.format != "jsonl":
            raise MqttError("--output mqtt:// publishes JSON records, one a message: drop --format csv")
        self.where = endpoint(options.output, "--output", wildcards=False)
        self.keyed = "{key}" in self.where.topic
        self.stopping = stopping
        self._topics: dict[str, str] = {}  # key -> topic: one a series
        self._changed = threading.Condition()  # guards what follows; notified when the last record is acknowledged
        self._batches: deque[_Batch] = deque()  # writes in order, the oldest first, until all their records are acked
        self._batch_of: dict[int, _Batch] = {}  # message id -> its write, until the broker acknowledges it
        self._unacked = 0
        self._wake_at = -1  # a write or flush waits until no more than this many records are unacknowledged
        self._publishing = False  # a write is handing its records to paho: an early PUBACK is remembered
        self._early: set[int] = set()  # message ids acknowledged before their write took note of them
        client_id = (options.mqtt_client_id or default_client_id(str(self.where), str(options.model))) + "-out"
        status_at = status_topic(client_id) if status else None
        self.client = connect(
            self.where, security(options), client_id, persistent=False,
            will=(status_at, "offline") if status_at else None, inflight=INFLIGHT,
        )  # fmt: skip
        self.client.on_publish = self._published
        self.status = status_at
        if status_at:
            self.client.publish(status_at, "online", qos=1, retain=True)

    # --- paho's network thread ------------------------------------------------------------------------------
    def _published(self, client: Any, userdata: Any, mid: int, reason: Any, properties: Any) -> None:
        with self._changed:
            batch = self._batch_of.pop(mid, None)
            if batch is None:
                if self._publishing:  # a record of the write in hand, acknowledged before it was noted
                    self._early.add(mid)
                return  # else the status message
            batch.unacked -= 1
            self._unacked -= 1
            if not batch.unacked:
                self._finish()
            if self._unacked <= self._wake_at:
                self._changed.notify_all()

    def _finish(self) -> None:
        """Do what waited for the oldest writes, now wholly acknowledged, in order; called holding the lock, so
        that what waits for a later write never goes first."""
        batches = self._batches
        while batches and not batches[0].unacked:
            for then in batches.popleft().then:
                then()

    # --- the runner's thread --------------------------------------------------------------------------------
    def write(self, records: list[str]) -> None:
        self._wait(INFLIGHT - len(records), len(records))  # room for them, or all acknowledged for a large write
        publish, template, topics = self.client.publish, self.where.topic, self._topics
        mids = []
        with self._changed:
            self._publishing = True
        try:
            for record in records:
                topic = template
                if self.keyed:
                    key = _key(record)
                    topic = topics.get(key) or self._topic(key)
                mids.append(publish(topic, record[:-1] if record[-1:] == "\n" else record, qos=1).mid)
        finally:
            with self._changed:
                self._publishing = False
                batch = _Batch()
                early, batch_of = self._early, self._batch_of
                for mid in mids:
                    if mid in early:
                        early.discard(mid)
                    else:
                        batch_of[mid] = batch
                        batch.unacked += 1
                early.clear()
                self._unacked += batch.unacked
                self._batches.append(batch)
                self._finish()

    def _topic(self, key: str) -> str:
        topic = self._topics[key] = self.where.topic.replace("{key}", _level(key))
        return topic

    def when_out(self, then: Callable[[], None]) -> None:
        """Call `then` once the broker has acknowledged every record written so far: now if it has, else from
        paho's network thread when the last of them is."""
        with self._changed:
            if self._batches:
                self._batches[-1].then.append(then)
            else:
                then()

    def _wait(self, most: int, writing: int = 0) -> None:
        """Wait until at most `most` records are unacknowledged (at least until none is). After a stop signal, a
        broker that acknowledges nothing for STOP_GRACE_SECONDS raises ReaderStalled: the records not acknowledged
        and the `writing` ones of the write in hand are not written."""
        most = max(most, 0)
        with self._changed:
            stalled_since, seen = None, self._unacked
            self._wake_at = most
            try:
                while self._unacked > most:
                    if self._unacked != seen:  # the broker is acknowledging: not stalled
                        stalled_since, seen = None, self._unacked
                    if self.stopping():
                        stalled_since = stalled_since or time.monotonic()
                        if time.monotonic() - stalled_since >= STOP_GRACE_SECONDS:
                            raise self._stalled(writing)
                    self._changed.wait(WAIT_SECONDS)
            finally:
                self._wake_at = -1

    def _stalled(self, writing: int) -> ReaderStalled:
        message = f"the broker acknowledged nothing for {STOP_GRACE_SECONDS:g} s after the stop signal"
        return ReaderStalled(OSError(0, message), self._unacked + writing)

    def flush(self) -> None:
        """Wait until the broker has acknowledged every record written."""
        self._wait(0)

    def close(self) -> None:
        try:
            self.flush()
        finally:
            close(self.client, self.status)


def _key(record: str) -> str:
    """The key of a record as records.Writer writes it, or "" for a record without one: the first `, "key": "` is
    its start (a quote in the time text before it is escaped), and the JSON string there is read in C."""
    start = record.find(_KEY)
    return "" if start < 0 else scanstring(record, start + len(_KEY))[0]

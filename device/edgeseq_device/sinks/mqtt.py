"""Records published to MQTT: `--output mqtt://HOST:PORT/forecasts/{key}` (mqtts:// for TLS).

Each record is one message, the same JSON line the file runner writes, at QoS 1, to the topic template with
`{key}` filled per record (a key's `/`, `+` and `#` become `_` in the topic; the record keeps the key as it
is). A write returns once the broker has acknowledged every record of it (PUBACK), so the source acknowledges
its readings only after their forecasts are safely out; while the broker is away, paho keeps the records and
sends them when it is back. After a stop signal, a broker that acknowledges nothing for STOP_GRACE_SECONDS no
longer holds the run: those records are reported, not counted.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from typing import Any

from edgeseq_device.mqtt import MqttError, close, connect, default_client_id, endpoint, security, status_topic
from edgeseq_device.sinks import ReaderStalled

STOP_GRACE_SECONDS = 10.0
WAIT_SECONDS = 0.2  # a wait for acknowledgements looks at stop signals this often
INFLIGHT = 1000  # records published and not yet acknowledged, at most; more wait in paho's queue


def _level(key: Any) -> str:
    return "".join("_" if c in "/+#" else c for c in str(key))


class MqttSink:
    """Publishes records, each to its key's topic, and waits for the broker to take them all."""

    live = True

    def __init__(self, options: Any, stopping: Callable[[], bool], status: bool) -> None:
        if options.format != "jsonl":
            raise MqttError("--output mqtt:// publishes JSON records, one a message: drop --format csv")
        self.where = endpoint(options.output, "--output", wildcards=False)
        self.keyed = "{key}" in self.where.topic
        self.stopping = stopping
        self._acked: set[int] = set()
        self._changed = threading.Condition()
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

    def _published(self, client: Any, userdata: Any, mid: int, reason: Any, properties: Any) -> None:
        with self._changed:
            self._acked.add(mid)
            self._changed.notify_all()

    def write(self, records: list[str]) -> None:
        mids = []
        for record in records:
            topic = self.where.topic
            if self.keyed:
                topic = topic.replace("{key}", _level(json.loads(record).get("key", "")))
            mids.append(self.client.publish(topic, record.rstrip("\n"), qos=1).mid)
        self._wait(mids)

    def _wait(self, mids: list[int]) -> None:
        waiting, stalled_since = set(mids), None
        with self._changed:
            while True:
                waiting -= self._acked
                if not waiting:
                    break
                if self.stopping():
                    stalled_since = stalled_since or time.monotonic()
                    if time.monotonic() - stalled_since >= STOP_GRACE_SECONDS:
                        message = f"the broker acknowledged nothing for {STOP_GRACE_SECONDS:g} s after the stop signal"
                        raise ReaderStalled(OSError(0, message), len(waiting))
                self._changed.wait(WAIT_SECONDS)
            self._acked -= set(mids)

    def flush(self) -> None:
        """Every write waits for its acknowledgements: nothing is held here."""

    def close(self) -> None:
        close(self.client, self.status)

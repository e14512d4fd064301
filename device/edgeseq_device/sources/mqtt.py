"""Rows from an MQTT topic filter: one reading per message, as a line of a header this source makes, so the
runner's middle reads a sensor network as it reads a CSV file.

A message is a JSON object whose keys are the model's column names (`{"date": "2016-05-07 10:30:00", "T2":
21.3, ...}`; numbers may be strings, and the manifest's missing tokens, or null, mean missing), nested fields
reached with --mqtt-field COLUMN=PATH (`T2=SI7021.Temperature`), or a CSV line of the time (when the model has
a time column) and the features, in the manifest's order. The topic levels the filter's `+` (and `#`) stand for
are the row's key, so each sensor is its own series; without them, a model trained with --group-by takes the
key from the JSON field of that name. A message that cannot be a row (not UTF-8, not JSON, a column missing, a
value of the wrong type, over 1 MiB) is a bad row, counted by reason with its topic.

Nothing is lost: the subscription is QoS 1 in a persistent session under a stable client id, so the broker keeps
what arrives while edgeseq is away; a message is acknowledged only once the records of its block are out (the
runner hands `taken()` to the sink, which calls it when the broker has acknowledged those records), in the order
the messages came. A message resent after a reconnect (the DUP flag) that is one of the last RECENT taken is
not read again: it is acknowledged in its turn, and its series' window goes on (read again, its time would
repeat, a bad row that would empty the window). Another message that repeats a reading's time is a duplicate,
never a second forecast. Memory stays bounded: the broker sends at most RECEIVE_MAXIMUM messages not yet
acknowledged (MQTT 5 Receive Maximum), and more wait at the broker.
"""

from __future__ import annotations

import json
import queue
from collections import deque
from collections.abc import Callable, Iterator
from typing import Any

from edgeseq_device.mqtt import MqttError, close, connect, default_client_id, endpoint, security, status_topic
from edgeseq_device.sources.lines import Item, Notice, Refused

# Messages in flight to us, not yet acknowledged: the next blocks arrive while one is run and the forecasts of
# another wait for the broker's PUBACKs (at most 500 MiB of payloads).
RECEIVE_MAXIMUM = 500
# Messages remembered (a hash each, about 1 MB in all) to tell one resent after a reconnect: a broker restarted
# from its database resends what it last saved as unacknowledged, which can be hundreds of messages behind
RECENT = 10_000
BLOCK = 100  # messages the runner takes at a time: a block is run whole before a stop signal is acted on
MAX_PAYLOAD = 1 << 20  # as a CSV line: a longer message is a bad row
SESSION_EXPIRY = 86_400  # seconds the broker keeps our session (and queues our messages) while we are away
POLL_SECONDS = 0.2
TOPIC_KEY = "topic"  # the key column this source adds when the filter's wildcards name the sensor
_MISSING = object()


def _fields(specs: tuple[str, ...], columns: tuple[str, ...]) -> dict[str, tuple[str, ...]]:
    """--mqtt-field COLUMN=PATH, repeated: where in a message's JSON each column is (a dotted path)."""
    paths = {column: (column,) for column in columns}
    for spec in specs:
        column, sep, path = spec.partition("=")
        if not sep or not path or column not in paths or any(not part for part in path.split(".")):
            raise MqttError(
                f"--mqtt-field {spec!r}: give COLUMN=PATH, a column the model reads ({', '.join(columns)}) and a "
                "dotted path in the message, such as T2=SI7021.Temperature"
            )
        paths[column] = tuple(path.split("."))
    return paths


def _text(value: Any) -> str | None:
    """A JSON value as the field text the row parser reads; None for a type no reading has."""
    if value is None:
        return ""  # JSON null: a missing value
    if value.__class__ in (int, float):
        return repr(value)
    if value.__class__ is str:
        return value
    return None  # true/false, a list, an object


def _csv_field(text: str) -> str:
    return '"' + text.replace('"', '""') + '"' if any(c in text for c in ',"\r\n') else text


class MqttSource:
    """Readings from `--stream mqtt://HOST:PORT/FILTER` (mqtts:// for TLS), as blocks of CSV lines."""

    def __init__(self, options: Any, stop: Any, columns: tuple[str, ...], key_column: str | None) -> None:
        self.where_ = endpoint(options.stream, "--stream", wildcards=True)
        self.name, self.stop = str(self.where_), stop
        levels = self.where_.topic.split("/")
        self._wild = [i for i, level in enumerate(levels) if level in ("+", "#")]
        self._rest = levels[-1] == "#"
        # the key: the topic levels the wildcards stand for; else the manifest's key column, from the JSON
        self.key_column = (key_column or TOPIC_KEY) if self._wild else None
        from_json = () if self._wild or key_column is None else (key_column,)
        self._json_columns = (*from_json, *columns)
        self._paths = _fields(tuple(options.mqtt_fields or ()), self._json_columns)
        self.header = ",".join(
            _csv_field(c) for c in ([self.key_column] if self._wild else []) + list(self._json_columns)
        )
        self._queue: queue.Queue[tuple[Any, ...]] = queue.Queue()
        self._generation = 0  # connections so far: an acknowledgement belongs to the connection it came on
        self._pending: list[tuple[int, int, int]] = []  # (generation, mid, qos) taken but not yet acknowledged
        self._topics: dict[int, str] = {}  # message number -> topic, for the messages of the block in hand
        self._count = 0
        # hash of (topic, payload) of the last RECENT QoS 1 messages received -> how many of them have it, and
        # those hashes oldest first: a resent message (DUP) that is one of them was taken already
        self._recent: dict[int, int] = {}
        self._recent_order: deque[int] = deque()
        self.client_id = options.mqtt_client_id or default_client_id(self.name, str(options.model))
        self.status = status_topic(self.client_id)
        self.client = connect(
            self.where_, security(options), self.client_id, persistent=True, manual_ack=True,
            will=(self.status, "offline"), on_connect=self._subscribe, on_message=self._receive,
            receive_maximum=RECEIVE_MAXIMUM, session_expiry=SESSION_EXPIRY,
        )  # fmt: skip
        self.client.on_disconnect = self._lost
        self.client.publish(self.status, "online", qos=1, retain=True)

    # --- the network thread ---------------------------------------------------------------------------------
    def _subscribe(self, client: Any, flags: Any) -> None:
        self._generation += 1
        if self._generation > 1:
            self._queue.put(("notice", f"reconnected to {self.name}; the broker resends what was not acknowledged"))
        client.subscribe(self.where_.topic, qos=1)  # again on each connection: cheap, and right if the session expired

    def _lost(self, client: Any, userdata: Any, flags: Any, reason: Any, properties: Any) -> None:
        if not reason.is_failure and str(reason) == "Normal disconnection":
            return
        self._queue.put(("notice", f"lost the connection to {self.name} ({reason}); reconnecting"))

    def _receive(self, client: Any, userdata: Any, message: Any) -> None:
        topic, payload, qos = message.topic, message.payload, message.qos
        if qos:
            digest, recent = hash((topic, payload)), self._recent
            if message.dup and digest in recent:
                # a message taken already, sent again after a reconnect (perhaps acknowledged, by a broker that died
                # before it saved that): it makes no row, which would repeat a reading's time and break its series'
                # window, and it is acknowledged in its turn
                self._queue.put(("again", self._generation, message.mid, qos))
                return
            recent[digest] = recent.get(digest, 0) + 1
            order = self._recent_order
            order.append(digest)
            if len(order) > RECENT:
                oldest = order.popleft()
                if recent[oldest] == 1:
                    del recent[oldest]
                else:
                    recent[oldest] -= 1
        self._queue.put(("message", self._generation, message.mid, qos, topic, payload))

    # --- the runner's thread --------------------------------------------------------------------------------
    def blocks(self) -> Iterator[list[Item]]:
        """The header, then what has arrived, a block at a time (waiting for the first message of each)."""
        yield [self.header]
        while self.stop.received is None:
            try:
                with self.stop.waiting():
                    first = self._queue.get(timeout=POLL_SECONDS)
            except queue.Empty:
                continue
            taken = [first]
            while len(taken) < BLOCK:
                try:
                    taken.append(self._queue.get_nowait())
                except queue.Empty:
                    break
            yield [item for item in map(self._item, taken) if item is not None]

    def _item(self, entry: tuple[Any, ...]) -> Item | None:
        if entry[0] == "notice":
            return Notice(entry[1])
        if entry[0] == "again":  # no row, acknowledged with the block
            _, generation, mid, qos = entry
            self._pending.append((generation, mid, qos))
            return None
        _, generation, mid, qos, topic, payload = entry
        self._count += 1
        self._topics[self._count] = topic
        if qos:
            self._pending.append((generation, mid, qos))
        return self._line(topic, payload)

    def _line(self, topic: str, payload: bytes) -> Item:
        """A message as a line of the header, or a Refused bad row."""
        if len(payload) > MAX_PAYLOAD:
            return Refused("too large", f"{len(payload):,} bytes, more than {MAX_PAYLOAD:,}")
        try:
            text = payload.decode("utf-8")
        except UnicodeDecodeError:
            return Refused("not UTF-8", f"{len(payload):,} bytes that are not UTF-8 text")
        key = [self._key(topic)] if self._wild else []
        stripped = text.strip()
        if not stripped.startswith("{"):  # a CSV line: the time (if any) and the features, in the manifest's order
            return ",".join([*map(_csv_field, key), stripped])
        try:
            message = json.loads(stripped)
        except ValueError as exc:
            return Refused("not JSON", f"{getattr(exc, 'msg', exc)} at character {getattr(exc, 'pos', '?')}")
        if not isinstance(message, dict):
            return Refused("wrong type", "a JSON value that is not an object")
        fields = []
        for column in self._json_columns:
            value: Any = message
            for part in self._paths[column]:
                value = value.get(part, _MISSING) if isinstance(value, dict) else _MISSING
            if value is _MISSING:
                return Refused("missing column", f"no {'.'.join(self._paths[column])!r} in the message")
            field = _text(value)
            if field is None:
                return Refused("wrong type", f"{'.'.join(self._paths[column])!r} is a {type(value).__name__}")
            fields.append(_csv_field(field))
        return ",".join([*map(_csv_field, key), *fields])

    def _key(self, topic: str) -> str:
        levels = topic.split("/")
        parts = [levels[i] for i in self._wild if i < len(levels)]
        if self._rest:
            parts[-1:] = ["/".join(levels[self._wild[-1] :])]
        return "/".join(parts)

    def taken(self) -> Callable[[], None]:
        """What acknowledges every message taken so far, in order, once their records are out. One taken before
        a reconnect is not acknowledged (its id belongs to the old connection): the broker sends it again."""
        pending, self._pending = self._pending, []
        self._topics.clear()

        def acknowledge() -> None:
            generation, ack = self._generation, self.client.ack
            for taken_on, mid, qos in pending:
                if taken_on == generation:
                    ack(mid, qos)

        return acknowledge

    def where(self, number: int) -> str:
        message = number - 1  # line 1 is the header this source made
        return f"message {message} on {self._topics.get(message, '?')}"

    def close(self) -> None:
        close(self.client, self.status)

"""Connecting to an MQTT broker, for the MQTT source and sink: the URL, the credentials, TLS, and a paho client
connected with a one-line error for what the user can fix (a wrong password, a certificate that does not verify).

Secure by default: credentials come from a file only its owner can read (or EDGESEQ_MQTT_CREDENTIALS), never
from the command line, where `ps` shows them; a password goes over plain TCP only to a loopback broker unless
--mqtt-plaintext-password says otherwise; TLS verifies the broker's certificate and host name unless
--mqtt-insecure says otherwise. paho-mqtt is imported here only, and only when MQTT is used: the base device
install stays numpy and onnxruntime (`pip install 'edgeseq-device[mqtt]'` adds it).
"""

from __future__ import annotations

import contextlib
import ipaddress
import os
import re
import socket
import stat
import threading
from dataclasses import dataclass
from typing import Any

from edgeseq_device.errors import InputError

CREDENTIALS_ENV = "EDGESEQ_MQTT_CREDENTIALS"
CONNECT_SECONDS = 10.0  # the first connection: a broker that does not answer by then is an error at start
KEEPALIVE_SECONDS = 30
RECONNECT_SECONDS = (1, 30)  # backoff after a lost connection, doubling from the first to the cap
INSTALL = "pip install 'edgeseq-device[mqtt]' (or 'edgeseq[mqtt]')"
_URL = re.compile(r"(mqtts?)://(\[[^\]/]+\]|[^/:@\[\]]+)(?::(\d{1,5}))?/(.*)", re.S)


class MqttError(InputError):
    """An MQTT setting or connection the user can fix; the runner says it in one line and exits 2."""


@dataclass(frozen=True)
class Endpoint:
    """A broker and a topic (a filter to subscribe to, or a template to publish to)."""

    tls: bool
    host: str
    port: int
    topic: str

    def __str__(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{'mqtts' if self.tls else 'mqtt'}://{host}:{self.port}/{self.topic}"

    @property
    def loopback(self) -> bool:
        try:
            return ipaddress.ip_address(self.host).is_loopback
        except ValueError:
            return self.host == "localhost"


def endpoint(url: str, option: str, *, wildcards: bool) -> Endpoint:
    """Parse mqtt://HOST[:PORT]/TOPIC (1883) or mqtts://HOST[:PORT]/TOPIC (8883). A topic filter (`wildcards`)
    may hold `+` levels and a last `#` level; a topic template may not, and may hold `{key}`. A `#` is a topic
    level here, not a URL fragment."""
    match = _URL.fullmatch(url)
    if "@" in url.split("://", 1)[-1].split("/", 1)[0]:
        raise MqttError(f"{option}: credentials go in --mqtt-credentials FILE, never in the URL (ps shows it)")
    if match is None:
        raise MqttError(f"{option} {url!r}: expected mqtt://HOST[:PORT]/TOPIC or mqtts://HOST[:PORT]/TOPIC")
    scheme, host, port, topic = match.groups()
    number = int(port) if port else (8883 if scheme == "mqtts" else 1883)
    if not 0 < number < 65536:
        raise MqttError(f"{option} {url!r}: port {number} is not a TCP port")
    levels = topic.split("/")
    if not topic or "\0" in topic or len(topic.encode()) > 65535:
        raise MqttError(f"{option} {url!r}: give a topic after the broker, such as sensors/+/readings")
    for i, level in enumerate(levels):
        if ("+" in level and level != "+") or ("#" in level and (level != "#" or i != len(levels) - 1)):
            raise MqttError(f"{option} {url!r}: '+' and '#' stand for whole topic levels, '#' only for the last")
        if not wildcards and level in ("+", "#"):
            raise MqttError(f"{option} {url!r}: a topic to publish to cannot hold '+' or '#' (use {{key}})")
    return Endpoint(scheme == "mqtts", host.strip("[]"), number, topic)


@dataclass(frozen=True)
class Security:
    """Who we are to the broker, and how we check it is the broker we meant."""

    credentials: str | None = None  # a file of one line, USERNAME:PASSWORD, readable by its owner only
    ca: str | None = None  # the CA that signed the broker's certificate (default: the system's CAs)
    cert: str | None = None  # a client certificate, with its key
    key: str | None = None
    insecure: bool = False  # TLS without checking the certificate or host name: for a test bench only
    plaintext_password: bool = False  # a password over plain TCP to a broker that is not on this machine


def read_credentials(path: str | None) -> tuple[str, str] | None:
    """(username, password) from --mqtt-credentials FILE (one line USERNAME:PASSWORD; the password may hold
    ':'), or from EDGESEQ_MQTT_CREDENTIALS; a file that others may read is refused, as ssh refuses such a key."""
    if path is None:
        text = os.environ.get(CREDENTIALS_ENV)
        if text is None:
            return None
        where = CREDENTIALS_ENV
    else:
        try:
            with open(path, encoding="utf-8") as handle:
                info = os.fstat(handle.fileno())
                if not stat.S_ISREG(info.st_mode):
                    raise MqttError(f"--mqtt-credentials {path} is not a regular file")
                if info.st_mode & 0o077:
                    raise MqttError(
                        f"--mqtt-credentials {path} can be read by others (mode {stat.S_IMODE(info.st_mode):o}): "
                        f"chmod 600 {path}"
                    )
                text = handle.read(4097)
        except (OSError, UnicodeDecodeError) as exc:
            why = getattr(exc, "strerror", None) or exc
            raise MqttError(f"--mqtt-credentials {path}: cannot read it ({why})") from None
        where = path
    lines = [line for line in text.splitlines() if line.strip()]
    if len(text) > 4096 or len(lines) != 1 or ":" not in lines[0] or not lines[0].split(":", 1)[0]:
        raise MqttError(f"{where}: expected one line, USERNAME:PASSWORD")
    username, password = lines[0].split(":", 1)
    return username, password


def security(options: Any) -> Security:
    """The run options' MQTT settings (runner.RunOptions' mqtt_ fields)."""
    return Security(
        options.mqtt_credentials, options.mqtt_ca, options.mqtt_cert, options.mqtt_key, options.mqtt_insecure,
        options.mqtt_plaintext_password,
    )  # fmt: skip


def status_topic(client_id: str) -> str:
    """Where a run says `online` (retained) while it runs, and `offline` at a clean stop or, by its will, after a
    crash."""
    return f"edgeseq/{client_id}/status"


def close(client: Any, status: str | None) -> None:
    """A clean stop: the retained status says offline (the will says it after a crash), then disconnect."""
    if status is not None:
        with contextlib.suppress(RuntimeError, ValueError):
            client.publish(status, "offline", qos=1, retain=True).wait_for_publish(2.0)
    client.disconnect()
    client.loop_stop()


def default_client_id(*parts: str) -> str:
    """A stable id for this box and this subscription: the broker keeps a persistent session by it."""
    import hashlib

    digest = hashlib.sha256("\0".join(parts).encode()).hexdigest()[:10]
    host = re.sub(r"[^A-Za-z0-9-]", "-", socket.gethostname())[:20]
    return f"edgeseq-{host}-{digest}"


_reconnected = [0]  # reconnections of this process's clients, from their network threads (metrics.py reads it)
_reconnected_lock = threading.Lock()


def reconnects() -> int:
    """How many times this process's MQTT clients have reconnected after a lost connection."""
    return _reconnected[0]


def paho() -> Any:
    try:
        import paho.mqtt.client as client
    except ImportError:
        raise MqttError(f"MQTT needs the paho-mqtt package, which is not installed: {INSTALL}") from None
    return client


def connect(
    where: Endpoint,
    security: Security,
    client_id: str,
    *,
    persistent: bool,
    manual_ack: bool = False,
    will: tuple[str, str] | None = None,
    on_connect: Any = None,
    on_message: Any = None,
    receive_maximum: int | None = None,
    session_expiry: int = 0,
    inflight: int | None = None,
) -> Any:
    """A paho client (MQTT 5) connected to `where`, its network loop running in its own thread, which reconnects
    with a capped backoff when the connection is lost. `persistent`: the broker keeps the session (subscriptions,
    QoS 1 messages not yet acknowledged) across disconnects, for `session_expiry` seconds. MqttError in one line
    when the broker cannot be reached, refuses us, or fails the TLS checks."""
    mqtt = paho()
    from paho.mqtt.packettypes import PacketTypes
    from paho.mqtt.properties import Properties

    client = mqtt.Client(
        mqtt.CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv5, manual_ack=manual_ack
    )
    credentials = read_credentials(security.credentials)
    if credentials is not None:
        if not where.tls and not where.loopback and not security.plaintext_password:
            raise MqttError(
                f"{where}: a password would cross the network in plain text; use mqtts:// (TLS), or say "
                "--mqtt-plaintext-password if this network is yours"
            )
        client.username_pw_set(*credentials)
    if where.tls:
        import ssl

        try:
            client.tls_set(
                ca_certs=security.ca, certfile=security.cert, keyfile=security.key,
                cert_reqs=ssl.CERT_NONE if security.insecure else ssl.CERT_REQUIRED,
            )  # fmt: skip
        except (OSError, ssl.SSLError, ValueError) as exc:
            raise MqttError(f"{where}: cannot use the TLS files given: {exc}") from None
        client.tls_insecure_set(security.insecure)
    if will is not None:
        client.will_set(will[0], will[1], qos=1, retain=True)
    client.reconnect_delay_set(*RECONNECT_SECONDS)
    if inflight is not None:  # QoS 1 publishes not yet acknowledged; more wait in paho's queue
        client.max_inflight_messages_set(inflight)
    connected = threading.Event()
    refusal: list[str] = []

    def _on_connect(client: Any, userdata: Any, flags: Any, reason: Any, properties: Any) -> None:
        if reason.is_failure:
            refusal.append(str(reason))
        else:
            if connected.is_set():  # not the first connection: paho reconnected after a lost one
                with _reconnected_lock:
                    _reconnected[0] += 1
            if on_connect is not None:
                on_connect(client, flags)
        connected.set()

    client.on_connect = _on_connect
    if on_message is not None:
        client.on_message = on_message
    properties = Properties(PacketTypes.CONNECT)
    properties.SessionExpiryInterval = session_expiry if persistent else 0
    if receive_maximum is not None:
        properties.ReceiveMaximum = receive_maximum
    try:
        client.connect(where.host, where.port, KEEPALIVE_SECONDS, clean_start=not persistent, properties=properties)
    except OSError as exc:  # refused, unreachable, TLS: the certificate or host name did not verify
        raise MqttError(f"cannot connect to {where}: {exc.strerror or exc}") from None
    client.loop_start()
    if not connected.wait(CONNECT_SECONDS) or refusal:
        client.loop_stop()
        why = refusal[0] if refusal else f"no answer in {CONNECT_SECONDS:g} s"
        raise MqttError(f"{where}: the broker refused the connection: {why}")
    return client

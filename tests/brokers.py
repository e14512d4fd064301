"""Real mosquitto brokers for the MQTT tests: started by the test on free 127.0.0.1 ports, stopped by their own pid.

`start_broker(folder)` writes a mosquitto config, a password file, a CA and a server certificate into `folder`, starts
`mosquitto -c CONFIG` as a child process and returns a `Broker` once mosquitto says it is running. The `brokers`
fixture (registered in tests/conftest.py) starts them for one test and stops every one at teardown, pass or fail;
`Broker` is also a context manager. `publish`, `Collector` and `connect` are the paho-mqtt clients the tests talk to
it with. paho-mqtt is imported inside them, so importing this module needs neither paho nor mosquitto.

The config, and why (measured with mosquitto 2.0.11 and paho-mqtt 2.2 on a busy 2-core machine):

- `user root`: started as root, mosquitto otherwise drops to the `mosquitto` user, which cannot read the password
  file or write the persistence file in a private temporary directory.
- `allow_anonymous false` with a `password_file` of one user (`mosquitto_passwd -b -c`): every client authenticates,
  as on an edge box. `per_listener_settings false` (2.0.11's default, written out) makes both apply to every listener.
- `listener PORT 127.0.0.1`, and with tls=True `listener TLSPORT 127.0.0.1` with a server certificate for IP
  127.0.0.1 and DNS localhost signed by a CA made here with the openssl CLI. Ports are picked below the kernel's
  ephemeral range, so no outgoing connection (of this or another test) takes one between a kill() and a start().
- `persistence true` with `autosave_on_changes true` and `autosave_interval 1`: mosquitto writes its database at the
  end of every pass of its loop in which something counted changed (a message queued for a client, a subscription,
  a client's acknowledgement, a persistent client's connection). A QoS 1 message queued for an absent persistent
  session then survives a SIGKILL a millisecond after its PUBACK (see Broker.wait_saved); saved by time instead
  (`autosave_interval 1`), a message killed 1.5 s after its PUBACK survived 6 times in 10. The price: a write of the
  whole database per busy pass; 6,000 QoS 1 messages through one subscriber were acknowledged at 1,900-3,300/s,
  and at 13,800-16,900/s with persistence=False, which tests that never kill a broker can ask for
  (`pytest -s tests/test_brokers.py -k six_thousand`, three runs).
- `max_queued_messages 100000` and `max_queued_bytes 0`: a persistent session keeps up to 100,000 messages while its
  client is away, 1,000 sensors x 100 readings; past that mosquitto drops them, saying so once in its log (notice
  "Outgoing messages are being dropped"). The default, 1,000, is one reading per sensor.
- `max_inflight_messages 100`: QoS 1 messages sent to one subscriber before its PUBACKs. 100 received 6,000 messages
  at 13,700-15,000/s, 20 (the default) at 10,800-12,700/s, 1,000 no faster; with persistence all three at 2,500-2,900.
- A bridge (bridge_to): `cleansession false`, so what is published here while the central broker is away is queued
  for it, and `restart_timeout 1 1`: in 2.0.11 a single value keeps the default backoff (5 to 30 s, despite the
  documentation's "constant"); reconnecting took 6 s with `restart_timeout 1`, 1.5 s with `1 1`.
- `log_type` error, warning, notice and information, one a line (given on one line, 2.0.11 keeps the first type and
  says nothing), with `connection_messages true`, to `log_dest file` in the folder: `Broker.log`.
"""

from __future__ import annotations

import atexit
import os
import random
import re
import secrets
import shutil
import signal
import socket
import subprocess
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from tests.helpers import require_in_ci, terminate

if TYPE_CHECKING:
    from paho.mqtt.client import Client

HOST = "127.0.0.1"
MOSQUITTO_BINARY = "/usr/sbin/mosquitto"  # Debian's path; /usr/sbin may not be on a non-root PATH
INSTALL = "apt-get install mosquitto mosquitto-clients openssl (as root; .ci/run does it under CI)"
PAHO = "pip install 'paho-mqtt>=2.1,<3' (the dev extra has it)"
MAX_QUEUED_MESSAGES = 100_000
MAX_INFLIGHT_MESSAGES = 100
PUBLISH_WINDOW = 200  # QoS 1 publishes a client keeps unacknowledged (see publish())
START_TIMEOUT = 10.0
STOP_TIMEOUT = 5.0

_running: set[Broker] = set()  # started and not yet stopped or killed: for _stop_the_rest()
_RUNNING = re.compile(r"^\S+: mosquitto version \S+ running$", re.M)


class BrokerError(RuntimeError):
    """mosquitto did not start or stop as asked; the message ends with its log."""


class Refused(ConnectionError):
    """The broker answered CONNECT with a failure reason code (paho's ReasonCode, in `reason`)."""

    def __init__(self, reason) -> None:
        super().__init__(f"connection refused by the broker: {reason}")
        self.reason = reason


def _mosquitto() -> str | None:
    return shutil.which("mosquitto") or (MOSQUITTO_BINARY if os.access(MOSQUITTO_BINARY, os.X_OK) else None)


def brokers_unavailable() -> str | None:
    """None when real brokers can run here: mosquitto, mosquitto_passwd, openssl and paho-mqtt; else what is missing
    and how to install it."""
    missing = [name for name, found in (("mosquitto", _mosquitto()), ("mosquitto_passwd", shutil.which(
        "mosquitto_passwd")), ("openssl", shutil.which("openssl"))) if not found]  # fmt: skip
    if missing:
        return f"{', '.join(missing)} not installed: {INSTALL}"
    try:
        import paho.mqtt  # noqa: F401
    except ImportError:
        return f"paho-mqtt is not installed: {PAHO}"
    return None


# --- the broker -------------------------------------------------------------------------------------------------


class Broker:
    """One mosquitto child process, its folder (config, password file, TLS files, persistence, log) and ports.

    `start()` runs it again with the same config: same ports, credentials and persistence file. `stop()` is a
    SIGTERM (mosquitto saves its database and exits), `kill()` a SIGKILL (it saves nothing more)."""

    host = HOST

    def __init__(
        self, folder: Path, port: int, tls_port: int | None, username: str, password: str, persistence: bool = True
    ) -> None:
        self.folder = folder
        self.port = port
        self.tls_port = tls_port
        self.username = username
        self.password = password
        self.config_file = folder / "mosquitto.conf"
        self.log_file = folder / "mosquitto.log"
        self.output_file = folder / "mosquitto.out"  # what it writes before its log is open: config errors
        self.credentials_file = folder / "credentials"
        # with a TLS listener: the CA that signed its certificate, and another CA that did not
        self.ca_file = folder / "tls" / "ca.pem" if tls_port else None
        self.other_ca_file = folder / "tls" / "other-ca.pem" if tls_port else None
        self.persistence = persistence
        self.persistence_file = folder / "data" / "mosquitto.db"
        self.bridge: Bridge | None = None
        self._process: subprocess.Popen | None = None

    def __repr__(self) -> str:
        return f"<Broker {self.folder.name} port={self.port} tls_port={self.tls_port} pid={self.pid}>"

    @property
    def pid(self) -> int | None:
        return None if self._process is None else self._process.pid

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    @property
    def log(self) -> str:
        """mosquitto's log, after anything it printed before opening it (such as errors in its config)."""
        return self.log_since(0, 0)

    def log_tail(self, lines: int = 40) -> str:
        return "\n".join(self.log.splitlines()[-lines:])

    def log_size(self) -> tuple[int, int]:
        """Where its printed output and its log end now: for log_since()."""
        return tuple(path.stat().st_size if path.exists() else 0 for path in (self.output_file, self.log_file))

    def log_since(self, output_offset: int, log_offset: int) -> str:
        """What it printed and logged after the offsets of log_size(): a long test logs megabytes (a line per save)."""
        text = ""
        for path, offset in ((self.output_file, output_offset), (self.log_file, log_offset)):
            if path.exists():
                with path.open("rb") as handle:
                    handle.seek(offset)
                    text += handle.read().decode(errors="replace")
        return text

    def url(self, path: str, tls: bool = False) -> str:
        """mqtt://127.0.0.1:PORT/path, or mqtts://127.0.0.1:TLSPORT/path. `path` is put in as it is, as
        `mosquitto_sub -L` reads it: a `#` in it is not a URL fragment here."""
        if tls and self.tls_port is None:
            raise ValueError(f"{self!r} has no TLS listener")
        scheme, port = ("mqtts", self.tls_port) if tls else ("mqtt", self.port)
        return f"{scheme}://{self.host}:{port}/{path.lstrip('/')}"

    def start(self, timeout: float = START_TIMEOUT) -> Broker:
        """Start mosquitto and return once it is running (and its bridge, if any, connected); raise BrokerError with
        its log if it exits or is not running within `timeout` seconds."""
        if self.running:
            raise BrokerError(f"{self!r} is already running")
        offsets = self.log_size()
        remote_offsets = self.bridge.remote.log_size() if self.bridge else (0, 0)
        with self.output_file.open("ab") as output:
            self._process = subprocess.Popen(
                [_mosquitto() or MOSQUITTO_BINARY, "-c", str(self.config_file)],
                stdin=subprocess.DEVNULL,
                stdout=output,
                stderr=output,
                cwd=self.folder,
            )
        _running.add(self)
        deadline = time.monotonic() + timeout
        while not _RUNNING.search(self.log_since(*offsets)):  # logged once every listener is open
            self._check_alive(deadline, "running", offsets)
        # A bridge connects at start-up; wait for the central broker to log it (when it is up), so that a test
        # publishing at once does not race it. Its state topic cannot say: persistence restores the last one.
        if self.bridge is not None and self.bridge.remote.running:
            while f" as {self.bridge.remote_clientid} (" not in self.bridge.remote.log_since(*remote_offsets):
                self._check_alive(deadline, f"bridged to {self.bridge.remote!r}", offsets)
        return self

    def _check_alive(self, deadline: float, waiting_for: str, offsets: tuple[int, int]) -> None:
        if self._process.poll() is not None:
            raise BrokerError(f"mosquitto exited with status {self._process.returncode}:\n{self.log_since(*offsets)}")
        if time.monotonic() > deadline:
            self.kill()
            raise BrokerError(f"mosquitto was not {waiting_for} in time:\n{self.log_since(*offsets)}")
        time.sleep(0.01)

    def stop(self, timeout: float = STOP_TIMEOUT) -> int | None:
        """SIGTERM, a wait of up to `timeout` seconds, then SIGKILL; returns the exit status (None if not started).
        Only this broker's own process is signalled."""
        process = self._process
        if process is None:
            return None
        terminate(process, timeout)
        _running.discard(self)
        return process.returncode

    def wait_saved(self, *, force: bool = False, timeout: float = 10.0) -> None:
        """Return once mosquitto has written to its persistence file what it acknowledged before this call.

        mosquitto 2.0.11 sends a PUBACK (or SUBACK) first and saves at the end of that pass of its one-threaded
        loop, about a millisecond later here: a kill() as soon as publish() returned lost the message 23 and 28 times
        in 30 (two runs), after wait_saved() none in 30. It makes an MQTT round trip (CONNECT, CONNACK), which that
        loop answers in a later pass, after autosave_on_changes saved the pass's changes.

        Not counted as a change, hence not saved by itself: a message sent to a connected subscriber that has not
        acknowledged it yet (in flight). Such messages are saved with the next change of any kind; a SIGKILL before
        one loses them. force=True saves them too: SIGUSR1 (mosquitto saves at the end of the next pass), then two
        round trips."""
        if not self.persistence or not self.running:
            raise BrokerError(f"{self!r} is not running with persistence")
        if force:
            os.kill(self._process.pid, signal.SIGUSR1)
        for _ in range(2 if force else 1):
            _close(connect(self, client_id=_client_id("saved"), timeout=timeout))
        if not self.persistence_file.exists():
            raise BrokerError(f"{self!r} has written no {self.persistence_file.name}:\n{self.log_tail()}")

    def kill(self) -> int | None:
        """SIGKILL, as a power cut would: mosquitto writes nothing more. Waits for the process to end; returns its
        status (-9 if it was running)."""
        process = self._process
        if process is None:
            return None
        if process.poll() is None:
            process.kill()
            process.wait(STOP_TIMEOUT)
        _running.discard(self)
        return process.returncode

    def __enter__(self) -> Broker:
        return self

    def __exit__(self, *exc) -> None:
        self.stop()


@dataclass(frozen=True)
class Bridge:
    """A bridge from one broker out to `remote`: `topics` published on the local broker are sent to it."""

    name: str
    remote: Broker
    topics: tuple[str, ...]
    remote_clientid: str


def start_broker(
    folder: Path,
    *,
    tls: bool = True,
    persistence: bool = True,
    bridge_to: Broker | None = None,
    bridge_topics: tuple[str, ...] = ("forecasts/#",),
    anonymous: bool = False,
) -> Broker:
    """Write a mosquitto config into `folder` (made if missing) and start it; see the module's docstring for the
    config. `bridge_to`: the central broker that `bridge_topics` published here are forwarded to (QoS 1, over its
    plain port, with its credentials). `anonymous`: also let clients in without a username."""
    reason = brokers_unavailable()
    if reason is not None:
        raise BrokerError(reason)
    folder = Path(folder).absolute()
    for text in (str(folder), *bridge_topics):
        if not text or re.search(r"\s", text):
            raise ValueError(f"mosquitto's config cannot hold an empty value or one with spaces: {text!r}")
    (folder / "data").mkdir(parents=True, exist_ok=True)
    username, password = "edgeseq", secrets.token_urlsafe(18)  # no ':' in either: the credentials file splits at it
    for attempt in range(5):
        port, tls_port = free_port(), (free_port() if tls else None)
        broker = Broker(folder, port, tls_port, username, password, persistence)
        if attempt == 0:
            _write_password_file(broker)
            if tls:
                _write_tls_files(folder / "tls")
        if bridge_to is not None:
            broker.bridge = Bridge(f"to-{bridge_to.folder.name}", bridge_to, tuple(bridge_topics), _client_id("bridge"))
        broker.config_file.write_text(_config(broker, anonymous=anonymous))
        broker.config_file.chmod(0o600)  # a bridge's holds the central broker's password
        offsets = broker.log_size()
        try:
            return broker.start()
        except BrokerError:
            broker.kill()
            if "Address already in use" not in broker.log_since(*offsets):  # another process took a port: others
                raise
    raise BrokerError(f"no free port pair after 5 attempts:\n{broker.log_tail()}")


def _config(broker: Broker, *, anonymous: bool) -> str:
    tls = broker.folder / "tls"
    lines = [
        "# written by tests/brokers.py: one broker of one test",
        "user root",
        "per_listener_settings false",
        f"allow_anonymous {str(anonymous).lower()}",
        f"password_file {broker.folder / 'passwords'}",
        f"listener {broker.port} {HOST}",
    ]
    if broker.tls_port is not None:
        lines += [
            f"listener {broker.tls_port} {HOST}",
            f"cafile {tls / 'ca.pem'}",
            f"certfile {tls / 'server.pem'}",
            f"keyfile {tls / 'server.key'}",
        ]
    lines += [
        f"persistence {str(broker.persistence).lower()}",
        f"persistence_location {broker.persistence_file.parent}",
        "autosave_on_changes true",
        "autosave_interval 1",
        f"max_queued_messages {MAX_QUEUED_MESSAGES}",
        "max_queued_bytes 0",
        f"max_inflight_messages {MAX_INFLIGHT_MESSAGES}",
        f"log_dest file {broker.log_file}",
        *(f"log_type {kind}" for kind in ("error", "warning", "notice", "information")),
        "connection_messages true",
        "log_timestamp_format %Y-%m-%dT%H:%M:%S",
    ]
    bridge = broker.bridge
    if bridge is not None:
        lines += [
            f"connection {bridge.name}",
            f"address {HOST}:{bridge.remote.port}",
            f"remote_username {bridge.remote.username}",
            f"remote_password {bridge.remote.password}",
            f"remote_clientid {bridge.remote_clientid}",
            "bridge_protocol_version mqttv311",
            "cleansession false",  # what is published here while the central broker is away is kept for it
            "restart_timeout 1 1",  # 1 s between attempts (see the module's docstring)
            "notifications true",
            *(f"topic {topic} out 1" for topic in bridge.topics),
        ]
    return "\n".join(lines) + "\n"


def _write_password_file(broker: Broker) -> None:
    passwords = broker.folder / "passwords"
    subprocess.run(
        ["mosquitto_passwd", "-b", "-c", str(passwords), broker.username, broker.password],
        check=True,
        capture_output=True,
        timeout=30,
    )
    passwords.chmod(0o600)
    fd = os.open(broker.credentials_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(f"{broker.username}:{broker.password}\n")
    broker.credentials_file.chmod(0o600)  # were it there before


_OPENSSL_CONFIG = """\
[req]
distinguished_name = dn
prompt = no
[dn]
CN = unused
[ca]
basicConstraints = critical, CA:TRUE
keyUsage = critical, keyCertSign, cRLSign
subjectKeyIdentifier = hash
[server]
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature
extendedKeyUsage = serverAuth
subjectAltName = IP:127.0.0.1, DNS:localhost
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid:always
"""


def _write_tls_files(folder: Path) -> None:
    """ca.pem (and its key), other-ca.pem, server.pem and server.key for 127.0.0.1 and localhost, signed by ca.pem:
    P-256 keys, valid for two days, made with the openssl CLI."""
    folder.mkdir(exist_ok=True)
    config = folder / "openssl.cnf"
    config.write_text(_OPENSSL_CONFIG)
    key = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-config", str(config)]

    def openssl(*args: str) -> None:
        subprocess.run(["openssl", *args], cwd=folder, check=True, capture_output=True, timeout=30)

    for name, subject in (("ca", "edgeseq test CA"), ("other-ca", "edgeseq other test CA")):
        openssl("req", "-x509", *key, "-extensions", "ca", "-days", "2", "-subj", f"/CN={subject}",
                "-keyout", f"{name}.key", "-out", f"{name}.pem")  # fmt: skip
    openssl("req", "-new", *key, "-subj", "/CN=127.0.0.1", "-keyout", "server.key", "-out", "server.csr")
    openssl("x509", "-req", "-in", "server.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-days", "2",
            "-set_serial", str(secrets.randbits(63)), "-extfile", str(config), "-extensions", "server",
            "-out", "server.pem")  # fmt: skip
    for path in folder.glob("*.key"):
        path.chmod(0o600)


def free_port() -> int:
    """A 127.0.0.1 TCP port free now, below the kernel's ephemeral range (from which connect() picks local ports)."""
    try:
        low = int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        low = 32768
    for _ in range(100):
        port = random.randrange(10_000, max(low, 10_001))
        with socket.socket() as probe:
            try:
                probe.bind((HOST, port))
            except OSError:
                continue
            return port
    raise BrokerError(f"no free port in 10000..{low} after 100 tries")


@atexit.register
def _stop_the_rest() -> None:
    """A broker a test left running (outside the fixture) ends with the test process, not after it."""
    for broker in list(_running):
        broker.kill()


@pytest.fixture
def brokers(tmp_path: Path) -> Iterator[Callable[..., Broker]]:
    """`brokers(name, **options)`: start_broker(tmp_path / name, **options) for this test. Every broker it started
    is stopped at teardown (SIGTERM, then SIGKILL), whether the test passed or not, and the end of each log printed
    (pytest shows it for a failed test). Skips (fails under CI) when mosquitto or paho-mqtt is missing."""
    reason = brokers_unavailable()
    if reason is not None:
        require_in_ci(reason)
    started: list[Broker] = []

    def start(name: str = "broker", **options) -> Broker:
        broker = start_broker(tmp_path / name, **options)
        started.append(broker)
        return broker

    try:
        yield start
    finally:
        for broker in reversed(started):  # edge brokers (bridged) before the central ones they bridge to
            broker.stop()
            print(f"--- {broker!r}: the end of {broker.log_file}\n{broker.log_tail()}")


# --- clients ----------------------------------------------------------------------------------------------------


def _client_id(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:12]}"


_CREDENTIALS = object()


def connect(
    broker: Broker,
    *,
    tls: bool = False,
    ca_file: Path | None = None,
    hostname: str = HOST,
    username: str | object | None = _CREDENTIALS,
    password: str | object | None = _CREDENTIALS,
    client_id: str | None = None,
    clean: bool = True,
    protocol: int = 4,
    timeout: float = 10.0,
    on_message: Callable | None = None,
    max_inflight: int = 20,
    manual_ack: bool = False,
) -> Client:
    """A paho client connected to `broker` (its network loop running in a thread), with the broker's credentials
    unless given (None: none). tls=True: the TLS port, the server's certificate checked against `ca_file` (the
    broker's CA by default) and `hostname`. protocol 4 is MQTT 3.1.1, 5 is MQTT 5; clean=False keeps the session
    (3.1.1: clean session 0; 5: clean start 0 and a session expiry of a day). max_inflight: QoS 1 publishes paho
    keeps unacknowledged (0: no limit). manual_ack=True: paho acknowledges a QoS 1 message only when asked
    (client.ack(mid, qos)). Close it with client.disconnect() and client.loop_stop(). Raises Refused when the
    broker refuses it, ssl.SSLError when TLS fails, OSError when it cannot connect, TimeoutError after `timeout`."""
    import ssl

    from paho.mqtt.client import CallbackAPIVersion, Client, MQTTErrorCode, MQTTProtocolVersion, error_string
    from paho.mqtt.packettypes import PacketTypes
    from paho.mqtt.properties import Properties

    version = MQTTProtocolVersion.MQTTv5 if protocol == 5 else MQTTProtocolVersion.MQTTv311
    kwargs = {} if version == MQTTProtocolVersion.MQTTv5 else {"clean_session": clean}
    client = Client(CallbackAPIVersion.VERSION2, client_id or _client_id("test"), protocol=version, **kwargs)
    if username is _CREDENTIALS:
        username = broker.username
    if password is _CREDENTIALS:
        password = broker.password
    if username is not None:
        client.username_pw_set(username, password)
    if tls:
        if broker.tls_port is None:
            raise ValueError(f"{broker!r} has no TLS listener")
        client.tls_set(ca_certs=str(ca_file or broker.ca_file), cert_reqs=ssl.CERT_REQUIRED)
    if on_message is not None:
        client.on_message = on_message
    client.max_inflight_messages_set(max_inflight)
    client.manual_ack_set(manual_ack)
    answered = threading.Event()
    result: list = []

    def on_connect(_client, _userdata, _flags, reason, _properties) -> None:
        result.append(reason)
        answered.set()

    client.on_connect = on_connect
    options = {}
    if version == MQTTProtocolVersion.MQTTv5:
        options["properties"] = Properties(PacketTypes.CONNECT)
        options["properties"].SessionExpiryInterval = 0 if clean else 86_400
        options["clean_start"] = clean
    client.connect(hostname, broker.tls_port if tls else broker.port, keepalive=30, **options)
    # Read the CONNACK in this thread: paho's own thread, given a refusal, would sleep a second before retrying.
    deadline = time.monotonic() + timeout
    while not answered.is_set():
        if time.monotonic() > deadline:
            client.disconnect()
            raise TimeoutError(f"no CONNACK from {broker!r} within {timeout} s")
        status = client.loop(timeout=0.05)
        if status != MQTTErrorCode.MQTT_ERR_SUCCESS and not answered.is_set():
            raise ConnectionError(f"connecting to {broker!r}: {error_string(status)}")
    if result[0].is_failure:
        client.disconnect()
        raise Refused(result[0])
    client.on_connect = None
    client.loop_start()
    return client


def _close(client: Client) -> None:
    client.disconnect()
    client.loop_stop()


def publish(broker: Broker, items: Sequence[tuple[str, bytes | str]], qos: int = 1, *, timeout: float = 60.0,
            retain: bool = False, window: int = PUBLISH_WINDOW, tls: bool = False) -> float:  # fmt: skip
    """Publish every (topic, payload) of `items` in order from one new client, and return once the broker has
    acknowledged each (QoS 1 PUBACK), or raise TimeoutError after `timeout` seconds in all. Returns the seconds it
    took. At most `window` publishes are unacknowledged at a time, paho's own limit (max_inflight) kept equal, so
    the memory a publish takes and the wait for its PUBACK stay bounded, as in a gateway. Measured with 6,000
    messages and persistence=False (messages/s): a window of 1, 8,400; 20, 12,000; 100 or 200, 13,500-13,900; 1,000,
    9,200; all handed to paho at once, 16,200 (no limit) or 10,200 (its limit 1,000). 20,000 at once with paho's
    limit at 1,000 ran at 7,700/s here, not stalled (with persistence, 1,800/s against 2,400/s for a window of 200)."""
    deadline = time.monotonic() + timeout
    started = time.monotonic()
    client = connect(broker, tls=tls, timeout=timeout, max_inflight=window)
    room = threading.Semaphore(window)
    failures: list = []

    def on_publish(_client, _userdata, _mid, reason, _properties) -> None:
        if reason.is_failure:
            failures.append(reason)
        room.release()

    client.on_publish = on_publish
    try:
        infos = []
        for topic, payload in items:
            if not room.acquire(timeout=max(deadline - time.monotonic(), 0)):
                raise TimeoutError(f"{len(infos)} of {len(items)} published, the rest not acknowledged in {timeout} s")
            infos.append(client.publish(topic, payload, qos=qos, retain=retain))
        for done, info in enumerate(infos):
            info.wait_for_publish(max(deadline - time.monotonic(), 0))
            if not info.is_published():
                raise TimeoutError(f"{done} of {len(items)} acknowledged in {timeout} s")
        if failures:
            raise RuntimeError(f"the broker refused {len(failures)} publishes: {failures[:5]}")
    finally:
        _close(client)
    return time.monotonic() - started


class Collector:
    """A subscriber to `topic_filter` (QoS 1, its own client id) that gathers (topic, payload, retain) in
    `messages` from its network thread; it is subscribed when the constructor returns. Use it as a context manager,
    or call close(). `client_id` and clean=False make a persistent session: close() leaves it on the broker, and a
    new Collector with that id receives what was queued for it meanwhile (protocol 4: MQTT 3.1.1, 5: MQTT 5).
    ack=False: it never acknowledges a message, as a gateway that has not yet handled them (or died first)."""

    def __init__(self, broker: Broker, topic_filter: str, *, qos: int = 1, client_id: str | None = None,
                 clean: bool = True, protocol: int = 4, tls: bool = False, ack: bool = True,
                 timeout: float = 10.0) -> None:  # fmt: skip
        self.messages: list[tuple[str, bytes, bool]] = []
        self._arrived = threading.Condition()
        self._client = connect(broker, tls=tls, client_id=client_id or _client_id("collector"), clean=clean,
                               protocol=protocol, timeout=timeout, on_message=self._on_message,
                               manual_ack=not ack)  # fmt: skip
        subscribed = threading.Event()
        granted: list = []

        def on_subscribe(_client, _userdata, _mid, reasons, _properties) -> None:
            granted.extend(reasons)
            subscribed.set()

        self._client.on_subscribe = on_subscribe
        self._client.subscribe(topic_filter, qos=qos)
        if not subscribed.wait(timeout) or any(reason.is_failure for reason in granted):
            self.close()
            raise BrokerError(f"subscribing to {topic_filter!r} failed: {granted or 'no SUBACK'}:\n{broker.log_tail()}")

    def _on_message(self, _client, _userdata, message) -> None:
        with self._arrived:
            self.messages.append((message.topic, message.payload, bool(message.retain)))
            self._arrived.notify_all()

    def wait_for(self, count: int, timeout: float = 10.0) -> list[tuple[str, bytes, bool]]:
        """Wait until `count` messages have arrived, or `timeout` seconds; return those that arrived (check the
        count: a timeout does not raise)."""
        with self._arrived:
            self._arrived.wait_for(lambda: len(self.messages) >= count, timeout)
            return list(self.messages)

    def close(self) -> None:
        _close(self._client)

    def __enter__(self) -> Collector:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

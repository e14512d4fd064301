"""The mosquitto harness of tests/brokers.py against real brokers: who gets in (credentials, TLS and its CA), what a
SIGKILL of the broker keeps, a bridge to a central broker, 1,000 sensors' topics, and the harness's own promises
(its brokers stop by their own pid, a failed test included)."""

from __future__ import annotations

import os
import signal
import socket
import ssl
import stat
import subprocess
import sys
import textwrap
import time

import pytest

from tests.brokers import HOST, BrokerError, Collector, Refused, brokers_unavailable, connect, publish
from tests.conftest import REPO
from tests.helpers import require_in_ci

READINGS = [(f"sensors/k{i}/readings", f'{{"t": {i}, "value": {20 + i / 10}}}') for i in range(50)]


def _logged(broker, text: str, timeout: float = 10) -> bool:
    """Whether `text` is in the broker's log within `timeout` seconds: it may log a refusal after the client saw it."""
    deadline = time.monotonic() + timeout
    while text not in broker.log and time.monotonic() < deadline:
        time.sleep(0.01)
    return text in broker.log


def _received(items, retain: bool = False) -> list[tuple[str, bytes, bool]]:
    return sorted((topic, payload.encode(), retain) for topic, payload in items)


def test_a_client_without_credentials_is_refused_unless_the_broker_is_anonymous(brokers):
    broker = brokers(tls=False)
    with pytest.raises(Refused) as refused:
        connect(broker, username=None, password=None)
    assert refused.value.reason.value == 135  # Not authorized (CONNACK 5 in MQTT 3.1.1)
    assert _logged(broker, "Client <unknown> disconnected, not authorised.")
    open_broker = brokers("anonymous", tls=False, anonymous=True)
    client = connect(open_broker, username=None, password=None)
    client.disconnect()
    client.loop_stop()


def test_a_wrong_password_or_user_is_refused(brokers):
    broker = brokers(tls=False)
    for username, password in ((broker.username, broker.password + "x"), ("someone", broker.password)):
        with pytest.raises(Refused) as refused:
            connect(broker, username=username, password=password)
        assert refused.value.reason.value == 135


def test_a_plain_round_trip_with_the_credentials_file(brokers):
    broker = brokers(tls=False)
    assert broker.tls_port is None
    assert stat.S_IMODE(broker.credentials_file.stat().st_mode) == 0o600
    # the form `edgeseq run --mqtt-credentials FILE` reads: one line USERNAME:PASSWORD
    username, password = broker.credentials_file.read_text().rstrip("\n").split(":", 1)
    assert (username, password) == (broker.username, broker.password)
    assert broker.url("sensors/+/readings") == f"mqtt://127.0.0.1:{broker.port}/sensors/+/readings"
    with pytest.raises(ValueError, match="no TLS listener"):
        broker.url("sensors/#", tls=True)
    publish(broker, [("sensors/k0/readings", "retained")], retain=True)
    with Collector(broker, "sensors/+/readings") as collector:
        assert collector.wait_for(1) == [("sensors/k0/readings", b"retained", True)]
        client = connect(broker, username=username, password=password)
        client.publish("sensors/k1/readings", "21.5", qos=1).wait_for_publish(10)
        client.publish("other/k1", "not subscribed", qos=1).wait_for_publish(10)
        client.publish("sensors/k2/readings", "21.7", qos=1).wait_for_publish(10)
        client.disconnect()
        client.loop_stop()
        expected = [("sensors/k1/readings", b"21.5", False), ("sensors/k2/readings", b"21.7", False)]
        assert collector.wait_for(3)[1:] == expected


def test_a_tls_round_trip_checks_the_ca_and_the_host_name(brokers):
    broker = brokers()
    assert broker.url("forecasts/#", tls=True) == f"mqtts://127.0.0.1:{broker.tls_port}/forecasts/#"
    with Collector(broker, "forecasts/#", tls=True) as collector:
        publish(broker, [("forecasts/k1", "22.0")], tls=True)
        assert collector.wait_for(1) == [("forecasts/k1", b"22.0", False)]
    context = ssl.create_default_context(cafile=broker.ca_file)  # CERT_REQUIRED and check_hostname
    for name in ("127.0.0.1", "localhost"):  # the certificate's IP and DNS names
        with (
            socket.create_connection((HOST, broker.tls_port), timeout=10) as raw,
            context.wrap_socket(raw, server_hostname=name) as tls,
        ):
            assert tls.version() in ("TLSv1.2", "TLSv1.3")
    with (
        socket.create_connection((HOST, broker.tls_port), timeout=10) as raw,
        pytest.raises(ssl.SSLCertVerificationError, match="Hostname mismatch"),
    ):
        context.wrap_socket(raw, server_hostname="broker.example")


def test_tls_with_another_ca_is_refused(brokers):
    broker = brokers()
    with pytest.raises(ssl.SSLCertVerificationError, match="certificate verify failed"):
        connect(broker, tls=True, ca_file=broker.other_ca_file)
    assert _logged(broker, "alert unknown ca")


@pytest.mark.parametrize("protocol", [4, 5], ids=["mqtt311-clean-session-0", "mqtt5-clean-start-0-expiry"])
def test_qos1_messages_queued_for_an_absent_session_survive_a_sigkill_of_the_broker(brokers, protocol):
    """What the MQTT gateway relies on: it subscribes with a fixed client id and a persistent session, and what is
    published while it is away (QoS 1, acknowledged to the sensor) reaches it even if the broker dies meanwhile."""
    broker = brokers(tls=False)
    Collector(broker, "sensors/#", client_id="gateway", clean=False, protocol=protocol).close()
    publish(broker, READINGS)
    broker.wait_saved()  # mosquitto's save, a millisecond after the last PUBACK, is done
    port, pid = broker.port, broker.pid
    assert broker.kill() == -signal.SIGKILL
    broker.start()
    assert (broker.port, broker.pid != pid) == (port, True)
    with Collector(broker, "sensors/#", client_id="gateway", clean=False, protocol=protocol) as gateway:
        assert sorted(set(gateway.wait_for(len(READINGS)))) == _received(READINGS)


def test_messages_in_flight_to_a_gateway_that_never_acknowledged_survive_a_sigkill_once_saved(brokers):
    """A gateway that acknowledges late holds messages in flight; mosquitto saves those only with a later change,
    so this test forces the save (wait_saved(force=True)) before the SIGKILL, and then they come again."""
    broker = brokers(tls=False)
    gateway = Collector(broker, "sensors/#", client_id="gateway", clean=False, ack=False)
    publish(broker, READINGS)
    assert len(gateway.wait_for(len(READINGS))) == len(READINGS)
    broker.wait_saved(force=True)
    broker.kill()
    gateway.close()
    broker.start()
    with Collector(broker, "sensors/#", client_id="gateway", clean=False) as again:
        assert sorted(set(again.wait_for(len(READINGS)))) == _received(READINGS)


def test_a_bridge_forwards_forecasts_to_the_central_broker_and_nothing_else(brokers):
    central = brokers("central", tls=False)
    edge = brokers("edge", tls=False, bridge_to=central)
    with Collector(central, "#") as seen:
        # one connection carries what the bridge sends, in order: a reading sent would come before the forecast
        publish(edge, [("sensors/k1/readings", "20.1"), ("forecasts/k1", "21.5"), ("forecasts/k1/p90", "22.4")])
        assert seen.wait_for(2) == [("forecasts/k1", b"21.5", False), ("forecasts/k1/p90", b"22.4", False)]


def test_forecasts_published_while_the_central_broker_is_down_arrive_after_it_restarts(brokers):
    central = brokers("central", tls=False)
    Collector(central, "forecasts/#", client_id="dashboard", clean=False).close()
    central.wait_saved()
    edge = brokers("edge", tls=False, bridge_to=central, bridge_topics=("forecasts/#",))
    central.kill()
    forecasts = [(f"forecasts/k{i}", f"{21 + i}") for i in range(5)]
    publish(edge, forecasts)  # acknowledged by the edge, queued there for the bridge
    central.start()
    with Collector(central, "forecasts/#", client_id="dashboard", clean=False) as dashboard:
        assert sorted(set(dashboard.wait_for(len(forecasts), timeout=15))) == _received(forecasts)


def test_a_thousand_sensor_topics_round_trip(brokers):
    broker = brokers(tls=False)
    items = [(f"sensors/k{i}/readings", f'{{"t": 0, "value": {i}}}') for i in range(1000)]
    with Collector(broker, "sensors/+/readings") as collector:
        publish(broker, items)
        assert sorted(collector.wait_for(len(items), timeout=30)) == _received(items)


@pytest.mark.parametrize("persistence", [True, False], ids=["persistence", "no-persistence"])
def test_six_thousand_qos1_messages_through_one_subscriber(brokers, persistence):
    """The publish() rate quoted in tests/brokers.py: `pytest -s tests/test_brokers.py -k six_thousand`."""
    broker = brokers(tls=False, persistence=persistence)
    items = [(f"sensors/k{i % 1000}/readings", f'{{"t": {i // 1000}, "value": {i}}}') for i in range(6000)]
    with Collector(broker, "sensors/#") as collector:
        seconds = publish(broker, items)
        received = collector.wait_for(len(items), timeout=60)
    assert sorted(received) == _received(items)
    print(f"6,000 QoS 1 messages, persistence={persistence}: acknowledged at {len(items) / seconds:,.0f}/s")


def test_brokers_stop_by_their_own_pid_and_restart_on_the_same_ports(brokers):
    first, second = brokers("first", tls=False), brokers("second", tls=False)
    assert first.port != second.port and first.pid != second.pid
    assert first.stop() == 0  # SIGTERM: mosquitto saves and exits cleanly
    assert not first.running and second.running
    publish(second, [("sensors/k1/readings", "1")])
    first.start()
    publish(first, [("sensors/k1/readings", "2")])  # same port, same credentials


def test_a_broker_that_cannot_start_fails_with_its_log(brokers):
    broker = brokers(tls=False)
    broker.stop()
    with socket.socket() as squatter:
        squatter.bind((HOST, broker.port))
        squatter.listen()
        with pytest.raises(BrokerError, match=r"(?s)exited with status 1.*Address already in use"):
            broker.start()
    assert not broker.running


def test_the_fixture_stops_its_brokers_when_a_test_fails(tmp_path):
    """A failing test's brokers are stopped at teardown (their pids are gone) and their logs' ends printed."""
    reason = brokers_unavailable()
    if reason is not None:
        require_in_ci(reason)
    pids = tmp_path / "pids"
    (tmp_path / "test_failing.py").write_text(
        textwrap.dedent(f"""
            from tests.brokers import brokers  # noqa: F401

            def test_fails(brokers):
                edge = brokers("edge", tls=False, bridge_to=brokers("central", tls=False))
                with open({str(pids)!r}, "w") as handle:
                    handle.write(f"{{edge.pid}} {{edge.bridge.remote.pid}}")
                assert False, "on purpose"
        """)
    )
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "test_failing.py"],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert result.returncode == 1, result.stdout + result.stderr
    assert "on purpose" in result.stdout and "mosquitto version 2.0.11 terminating" in result.stdout
    for pid in map(int, pids.read_text().split()):
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)

"""`edgeseq run` on the sensor network, against real mosquitto brokers (tests/brokers.py): readings from a topic
filter, forecasts to a topic template, the same records as the file runner, through a broker SIGKILLed and
restarted and a gateway SIGTERMed and restarted; duplicates, bad messages, credentials, TLS, status, 1,000
sensors."""

from __future__ import annotations

import csv
import itertools
import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.brokers import Collector, publish
from tests.streams import SENSOR_CSV, SENSOR_ONNX, cli, finish

ROWS = list(csv.DictReader(SENSOR_CSV.open(newline="")))  # the sample, read by the csv module
T = 36


def cli_args(*args) -> list[str]:
    return [sys.executable, "-m", "edgeseq", "run", *map(str, args)]


@pytest.fixture(scope="module")
def reference() -> list[tuple]:
    """(time, prediction) of every record `edgeseq run --stream exported/sensor.csv` writes."""
    proc = subprocess.run(cli_args("--stream", SENSOR_CSV, "--model", SENSOR_ONNX), capture_output=True, text=True,
                          timeout=300)  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    return [(r["time"], r["prediction"]) for r in map(json.loads, proc.stdout.splitlines())]


def first(reference: list[tuple], rows: int) -> list[tuple]:
    """The records of the sample's first `rows` rows: a window ends at each row from the T-th on."""
    return reference[: rows - T + 1]


def readings(room: str, rows: list[dict]) -> list[tuple[str, str]]:
    return [(f"sensors/{room}/readings", json.dumps(row)) for row in rows]


def both_rooms(rows: list[dict]) -> list[tuple[str, str]]:
    """The rows for room1 and room2, interleaved reading by reading."""
    return [item for pair in zip(readings("room1", rows), readings("room2", rows), strict=True) for item in pair]


def gateway(broker, tmp_path: Path, *extra, client_id: str = "gw", module: str = "edgeseq", topic="sensors/+/readings",
            output: str | None = "forecasts/{key}") -> subprocess.Popen:  # fmt: skip
    """`edgeseq run` subscribed to the broker, started and online (its status says so: it subscribes first)."""
    args = ["--stream", broker.url(topic), "--model", SENSOR_ONNX, "--mqtt-credentials", broker.credentials_file,
            "--mqtt-client-id", client_id, *(["--output", broker.url(output)] if output else []), *extra]  # fmt: skip
    with Collector(broker, f"edgeseq/{client_id}/status") as status:
        proc = cli(*args, module=module)
        deadline = time.monotonic() + 60
        while b"online" not in [payload for _, payload, _ in status.messages] and time.monotonic() < deadline:
            assert proc.poll() is None, proc.communicate()[1]
            time.sleep(0.02)
    assert proc.poll() is None
    return proc


def forecasts(messages) -> dict[str, list[tuple]]:
    """Per key: (row's time, prediction) of each forecast, in arrival order."""
    out: dict[str, list[tuple]] = {}
    for topic, payload, _ in messages:
        record = json.loads(payload)
        assert topic == f"forecasts/{record['key']}"
        out.setdefault(record["key"], []).append((record["time"], record["prediction"]))
    return out


def test_the_sample_as_json_messages_gives_the_file_runners_records_for_each_room(brokers, tmp_path, reference):
    broker = brokers(tls=False, persistence=False)
    with Collector(broker, "forecasts/#") as out:
        proc = gateway(broker, tmp_path)
        publish(broker, both_rooms(ROWS))
        got = out.wait_for(2 * len(reference), timeout=120)
        proc.send_signal(signal.SIGTERM)
        _, err = finish(proc)
    assert proc.returncode == 143, err
    by_key = forecasts(got)
    assert by_key == {"room1": reference, "room2": reference}
    assert f"{2 * len(reference)} predictions" in err and "2 series" in err


def test_through_a_broker_killed_and_a_gateway_stopped_every_record_arrives(brokers, tmp_path, reference):
    """The issue's whole story: the sample for two rooms, published in parts; the broker SIGKILLed and started
    again mid-stream (persistence on); the gateway SIGTERMed, readings published while it is away, and started
    again with its state. Each room gets exactly the file runner's records."""
    broker = brokers(tls=False)
    state = tmp_path / "gateway.state"
    parts = [0, 700, 1500, 2200, len(ROWS)]
    with Collector(broker, "forecasts/#", client_id="central-collector", clean=False) as out:
        proc = gateway(broker, tmp_path, "--state", state)
        for number, (start, end) in enumerate(itertools.pairwise(parts)):
            publish(broker, both_rooms(ROWS[start:end]))
            if number == 0:  # the broker dies: what it had taken, and saved, comes back with it
                broker.wait_saved(force=True)
                broker.kill()
                broker.start()
            elif number == 1:  # the gateway stops cleanly; readings go on while it is away
                proc.send_signal(signal.SIGTERM)
                _, err = finish(proc)
                assert proc.returncode == 143 and "saved 2 series" in err, err
            elif number == 2:
                proc = gateway(broker, tmp_path, "--state", state)
        got = out.wait_for(2 * len(reference), timeout=180)
        time.sleep(1)  # nothing more arrives: no forecast twice
        proc.send_signal(signal.SIGTERM)
        _, err = finish(proc)
        got = list(out.messages)
    assert proc.returncode == 143, err
    by_key = forecasts(got)
    # QoS 1 is at least once: a forecast whose PUBACK the dying broker never sent is sent again, so a subscriber
    # may get it twice, the same record both times; none is missing, none differs
    for key in ("room1", "room2"):
        assert sorted(set(by_key[key])) == sorted(reference), difference(by_key, reference)
    assert set(by_key) == {"room1", "room2"}


def difference(by_key: dict[str, list[tuple]], want: list[tuple]) -> dict[str, dict]:
    """For a failure message: each key's records missing, repeated or out of order, against `want`."""
    out = {}
    for key, got in by_key.items():
        times = [t for t, _ in got]
        out[key] = {
            "count": (len(got), len(want)),
            "missing": sorted({t for t, _ in want} - set(times))[:10],
            "repeated": sorted({t for t in times if times.count(t) > 1})[:10],
            "in order": times == sorted(times),
        }
    return out


def test_forecasts_to_a_file_are_written_block_by_block_so_the_readings_keep_coming(brokers, tmp_path, reference):
    """--output FILE from MQTT: a block's readings are acknowledged once its records are written, so the file is
    written block by block (held in a buffer, the records would hold the readings, and the broker sends no more
    than the Receive Maximum unacknowledged)."""
    broker = brokers(tls=False, persistence=False)
    out, rows = tmp_path / "forecasts.jsonl", ROWS[:1500]
    proc = gateway(broker, tmp_path, "--output", out, output=None)
    publish(broker, readings("room1", rows))
    deadline = time.monotonic() + 60
    while (not out.exists() or out.read_text().count("\n") < len(rows) - T + 1) and time.monotonic() < deadline:
        time.sleep(0.05)
    proc.send_signal(signal.SIGTERM)
    _, err = finish(proc)
    assert proc.returncode == 143, err
    got = [(r["time"], r["prediction"]) for r in map(json.loads, out.read_text().splitlines())]
    assert got == first(reference, len(rows)), err


def test_a_reading_delivered_again_is_a_duplicate_never_a_second_forecast_nor_a_gap(brokers, tmp_path, reference):
    """QoS 1 delivers again what was not acknowledged (after a lost connection, a restarted broker): readings
    the gateway has seen are refused as duplicates or late, counted, and the window goes on."""
    broker = brokers(tls=False, persistence=False)
    rows = ROWS[: T + 3]
    again = readings("room1", rows[T - 10 : T + 1])  # eleven readings delivered a second time
    with Collector(broker, "forecasts/#") as out:
        proc = gateway(broker, tmp_path)
        publish(broker, readings("room1", rows[: T + 1]) + again + readings("room1", rows[T + 1 :]))
        out.wait_for(4, timeout=60)
        time.sleep(0.5)
        proc.send_signal(signal.SIGTERM)
        _, err = finish(proc)
    assert forecasts(out.messages) == {"room1": first(reference, T + 3)}  # no second forecast, no refill
    assert "duplicate time 1" in err and "time went backwards 10" in err and "4 predictions" in err


def test_bad_messages_are_bad_rows_counted_by_reason_with_their_topic(brokers, tmp_path, reference):
    broker = brokers(tls=False, persistence=False)
    good = ROWS[: T + 1]
    bad = {
        "not JSON": b'{"date": "2016-05-07 04:40:00", "T2": 21.',
        "not UTF-8": b"\xff\xfe{}",
        "missing column": json.dumps({k: v for k, v in good[0].items() if k != "RH_2"}).encode(),
        "non-numeric": json.dumps({**good[0], "T2": "warm"}).encode(),
        "wrong type": json.dumps({**good[0], "T2": [21.3]}).encode(),
        "too large": json.dumps({**good[0], "note": "x" * (1 << 20)}).encode(),
    }
    with Collector(broker, "forecasts/#") as out:
        proc = gateway(broker, tmp_path)
        publish(broker, [(f"sensors/odd/readings", payload) for payload in bad.values()])  # noqa: F541
        publish(broker, readings("room1", good))
        got = out.wait_for(2, timeout=60)
        proc.send_signal(signal.SIGTERM)
        _, err = finish(proc)
    assert proc.returncode == 143 and forecasts(got) == {"room1": first(reference, T + 1)}
    for reason in bad:
        assert f"{reason} 1" in err, err  # counted, by its reason
        assert f"on sensors/odd/readings: {reason}:" in err  # named with its topic
    assert "x" * 100 not in err and "Traceback" not in err  # never echoed whole


def test_a_csv_payload_and_a_nested_field_read_as_json_does(brokers, tmp_path, reference):
    broker = brokers(tls=False, persistence=False)
    columns = ["date", "T2", "RH_2", "T_out", "RH_out", "Tdewpoint"]  # the time, then the manifest's features
    rows = ROWS[: T + 1]
    as_csv = [("sensors/a/readings", ",".join(row[c].strip() for c in columns)) for row in rows]
    nested = [("sensors/b/readings", json.dumps({**{k: v for k, v in row.items() if k != "T2"},
                                                  "SI7021": {"Temperature": row["T2"]}})) for row in rows]  # fmt: skip
    with Collector(broker, "forecasts/#") as out:
        proc = gateway(broker, tmp_path, "--mqtt-field", "T2=SI7021.Temperature", module="edgeseq_device")
        publish(broker, as_csv + nested)
        got = out.wait_for(4, timeout=60)
        proc.send_signal(signal.SIGTERM)
        _, err = finish(proc)
    want = first(reference, T + 1)
    assert forecasts(got) == {"a": want, "b": want}, err


def test_a_thousand_sensors_keyed_by_topic(brokers, tmp_path, reference):
    broker = brokers(tls=False, persistence=False)
    rows = ROWS[: T + 1]
    items = [(f"sensors/k{k}/readings", json.dumps(row)) for row in rows for k in range(1000)]
    with Collector(broker, "forecasts/#") as out:
        proc = gateway(broker, tmp_path)
        publish(broker, items, timeout=300)
        got = out.wait_for(2000, timeout=300)
        proc.send_signal(signal.SIGTERM)
        _, err = finish(proc, timeout=120)
    want = first(reference, T + 1)
    assert forecasts(got) == {f"k{k}": want for k in range(1000)}
    assert "1000 series" in err


def test_the_status_is_online_then_offline_and_the_will_says_offline_after_a_crash(brokers, tmp_path):
    broker = brokers(tls=False, persistence=False)
    proc = gateway(broker, tmp_path, output=None)
    proc.send_signal(signal.SIGTERM)
    finish(proc)
    with Collector(broker, "edgeseq/gw/status") as status:  # retained: what it says now
        assert status.wait_for(1)[-1][1:] == (b"offline", True)
    proc = gateway(broker, tmp_path, output=None, client_id="gw2")
    proc.kill()  # no clean stop: the broker sends the will when the connection drops
    proc.wait()
    with Collector(broker, "edgeseq/gw2/status") as status:
        deadline = time.monotonic() + 60
        while not status.messages or status.messages[-1][1] != b"offline":
            assert time.monotonic() < deadline, status.messages
            time.sleep(0.05)


def test_credentials_and_tls_are_checked_before_anything_runs(brokers, tmp_path, reference):
    broker = brokers(tls=True, persistence=False)
    common = ["--model", SENSOR_ONNX, "--mqtt-client-id", "checks"]
    wrong = tmp_path / "wrong.credentials"
    wrong.write_text(f"{broker.username}:not-the-password\n")
    wrong.chmod(0o600)
    open_to_all = tmp_path / "open.credentials"
    open_to_all.write_text(broker.credentials_file.read_text())
    open_to_all.chmod(0o644)
    cases = {
        "the broker refused the connection: Not authorized": ["--stream", broker.url("s/+"),
                                                              "--mqtt-credentials", wrong],
        f"--mqtt-credentials {open_to_all} can be read by others (mode 644): chmod 600": [
            "--stream", broker.url("s/+"), "--mqtt-credentials", open_to_all],
        "certificate verify failed": ["--stream", broker.url("s/+", tls=True), "--mqtt-credentials",
                                      broker.credentials_file, "--mqtt-ca", broker.other_ca_file],
        "a password would cross the network in plain text": ["--stream", "mqtt://192.0.2.1:1883/s/+",
                                                             "--mqtt-credentials", broker.credentials_file],
        "credentials go in --mqtt-credentials FILE, never in the URL": ["--stream", "mqtt://u:p@127.0.0.1:1/s/+"],
    }  # fmt: skip
    for message, args in cases.items():
        proc = subprocess.run(cli_args(*args, *common), capture_output=True, text=True, timeout=60)
        assert proc.returncode == 2, (message, proc.stderr)
        lines = proc.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("edgeseq: error: ") and message in lines[0], proc.stderr
    # the right CA: it runs, and a reading over TLS makes its forecast
    with Collector(broker, "forecasts/#") as out:
        proc = cli("--stream", broker.url("sensors/+/readings", tls=True), "--output", broker.url("forecasts/{key}"),
                   "--mqtt-credentials", broker.credentials_file, "--mqtt-ca", broker.ca_file, *common)  # fmt: skip
        time.sleep(1.5)
        publish(broker, readings("tls", ROWS[: T + 1]), tls=True)
        got = out.wait_for(2, timeout=60)
        proc.send_signal(signal.SIGTERM)
        _, err = finish(proc)
    assert forecasts(got) == {"tls": first(reference, T + 1)}, err


def test_a_bridge_carries_two_gateways_forecasts_to_the_central_broker_each_key_served_once(
    brokers, tmp_path, reference
):
    central = brokers("central", tls=False, persistence=False)
    edge = brokers("edge", tls=False, persistence=False, bridge_to=central)
    rows = ROWS[: T + 1]
    east = [(f"sensors/east/e{k}/readings", json.dumps(row)) for row in rows for k in range(3)]
    west = [(f"sensors/west/w{k}/readings", json.dumps(row)) for row in rows for k in range(3)]
    with Collector(central, "forecasts/#") as out:
        a = gateway(edge, tmp_path, topic="sensors/east/+/readings", client_id="gw-east")
        b = gateway(edge, tmp_path, topic="sensors/west/+/readings", client_id="gw-west")
        publish(edge, east + west)
        got = out.wait_for(12, timeout=60)
        for proc in (a, b):
            proc.send_signal(signal.SIGTERM)
        errs = [finish(proc)[1] for proc in (a, b)]
    want = first(reference, T + 1)
    assert forecasts(got) == {key: want for key in ("e0", "e1", "e2", "w0", "w1", "w2")}
    assert all("3 series" in err and "6 predictions" in err for err in errs), errs  # each key served once

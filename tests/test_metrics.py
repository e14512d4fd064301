"""`run --metrics HOST:PORT`: Prometheus metrics of a run, scraped by a real Prometheus (tests/prometheus.py), its
refusals (a bad address, a port in use, no prometheus-client) before any row is read, and the score gauges with
bounded keys."""

from __future__ import annotations

import io
import math
import os
import re
import signal
import socket
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from edgeseq_device.metrics import RunCollector
from edgeseq_device.runner import RunOptions, run_stream
from edgeseq_device.summary import Stats
from tests.brokers import HOST, free_port
from tests.prometheus import require_prometheus, start_prometheus
from tests.streams import LINES, SENSOR_ONNX, cli, finish, write_lines

SERVING = re.compile(r"serving metrics at http://([\d.]+:\d+)/metrics")


def _wait_for(predicate, timeout: float = 60.0, what: str = "") -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def _address(stderr_file: Path) -> str:
    _wait_for(lambda: SERVING.search(stderr_file.read_text()), what="the metrics address on stderr")
    return SERVING.search(stderr_file.read_text()).group(1)


def _lines(path: Path) -> int:
    return len(path.read_bytes().splitlines()) if path.exists() else 0


@pytest.mark.parametrize("module", ["edgeseq", "edgeseq_device"])
def test_a_real_prometheus_scrapes_the_run_and_counts_every_record_written(tmp_path: Path, module: str):
    """`run --follow --metrics 127.0.0.1:0` scraped every second by Debian's prometheus: the predictions it stores
    equal the records in the output file, the rows read equal the rows appended, and with --batch 1 the latency
    histogram holds one model call per record; SIGTERM then ends the run (143) and its server with it."""
    binary = require_prometheus()
    stream = write_lines(tmp_path / "log.csv", LINES[:1001])  # the header and 1,000 rows
    out, err = tmp_path / "out.jsonl", tmp_path / "err.txt"
    with err.open("w") as stderr:
        proc = cli(
            "--stream", stream, "--model", SENSOR_ONNX, "--follow", "--output", out, "--batch", "1",
            "--metrics", f"{HOST}:0", module=module, stderr=stderr,
        )  # fmt: skip
    try:
        address = _address(err)
        with start_prometheus(tmp_path / "prometheus", [address], binary) as prometheus:
            _wait_for(lambda: _lines(out) == 1000 - 35, what="the first records")  # T = 36: row 36 is the first
            with stream.open("a") as log:  # more rows while it is scraped
                log.write("\n".join(LINES[1001:1501]) + "\n")
            _wait_for(lambda: _lines(out) == 1500 - 35, what="the records of the rows appended")
            written = _lines(out)
            [(labels, predictions)] = prometheus.wait_for("edgeseq_predictions_total", written)
            assert labels["job"] == "edgeseq" and labels["instance"] == address
            assert prometheus.wait_for("edgeseq_rows_read_total", 1500)[0][1] == 1500
            assert prometheus.wait_for("edgeseq_model_latency_seconds_count", written)[0][1] == written
            [(_, mean)] = prometheus.query("edgeseq_model_latency_seconds_sum / edgeseq_model_latency_seconds_count")
            assert 0 < mean < 1.0  # seconds a call: an LSTM window takes a millisecond or so
            [(info, one)] = prometheus.query("edgeseq_model_info")
            assert one == 1 and info["model"] == SENSOR_ONNX.name and len(info["sha256"]) == 64
            assert prometheus.query("edgeseq_rolling_rmse") == []  # no scoring: no score gauges
            assert predictions == written == 1465
    finally:
        proc.send_signal(signal.SIGTERM)
        finish(proc, timeout=30)
    assert proc.returncode == 143, err.read_text()
    with pytest.raises(OSError):  # the server went with the run
        urllib.request.urlopen(f"http://{address}/metrics", timeout=2)


def _run(options: RunOptions) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    code = run_stream(options, out, err)
    return code, out.getvalue(), err.getvalue()


def test_a_port_in_use_is_one_line_and_exit_2_before_the_input_is_opened(tmp_path: Path):
    # a FIFO with no writer: opening it would wait forever, so returning at all shows it was never opened
    fifo = tmp_path / "rows.fifo"
    os.mkfifo(fifo)
    with socket.socket() as taken:
        taken.bind((HOST, 0))
        taken.listen()
        port = taken.getsockname()[1]
        code, out, err = _run(RunOptions(stream=str(fifo), model=SENSOR_ONNX, metrics=f"{HOST}:{port}"))
    assert code == 2 and out == ""
    assert err.splitlines() == [
        f"edgeseq: error: --metrics {HOST}:{port}: cannot serve metrics there: Address already in use"
    ]


@pytest.mark.parametrize(
    "where, why",
    [
        ("9108", "expected HOST:PORT"),
        ("127.0.0.1:", "expected HOST:PORT"),
        ("127.0.0.1:70000", "expected HOST:PORT"),
        ("127.0.0.1:http", "expected HOST:PORT"),
        ("no-such-host.invalid:9108", "cannot serve metrics there"),
        ("192.0.2.1:9108", "cannot serve metrics there: Cannot assign requested address"),  # not this box's
    ],
)
def test_a_bad_address_is_one_line_and_exit_2(where: str, why: str):
    code, out, err = _run(RunOptions(stream="-", model=SENSOR_ONNX, metrics=where))
    assert code == 2 and out == "" and len(err.splitlines()) == 1, err
    assert err.startswith(
        f"edgeseq: error: --metrics {where!r}" if "HOST" in why else f"edgeseq: error: --metrics {where}"
    )
    assert why in err


def test_the_device_front_end_refuses_a_port_in_use_too(tmp_path: Path):
    with socket.socket() as taken:
        taken.bind((HOST, 0))
        taken.listen()
        port = taken.getsockname()[1]
        proc = cli("--stream", "-", "--model", SENSOR_ONNX, "--metrics", f"{HOST}:{port}", module="edgeseq_device")
        out, err = finish(proc, stdin=LINES[0] + "\n", timeout=60)
    assert proc.returncode == 2 and out == ""
    assert (
        err.strip()
        == f"edgeseq_device: error: --metrics {HOST}:{port}: cannot serve metrics there: Address already in use"
    )


def test_without_prometheus_client_it_says_how_to_install_it(monkeypatch):
    monkeypatch.setitem(sys.modules, "prometheus_client", None)  # `import prometheus_client` raises ImportError
    code, out, err = _run(RunOptions(stream="-", model=SENSOR_ONNX, metrics=f"{HOST}:{free_port()}"))
    assert code == 2 and out == ""
    assert err.splitlines() == [
        "edgeseq: error: --metrics needs the prometheus-client package, which is not installed: "
        "pip install 'edgeseq-device[metrics]' (or 'edgeseq[metrics]')"
    ]


def test_the_server_stops_when_the_run_ends(tmp_path: Path):
    stream = write_lines(tmp_path / "rows.csv", LINES[:100])
    port = free_port()
    code, out, err = _run(RunOptions(stream=str(stream), model=SENSOR_ONNX, metrics=f"{HOST}:{port}"))
    assert code == 0 and len(out.splitlines()) == 99 - 35
    assert f"edgeseq: serving metrics at http://{HOST}:{port}/metrics" in err
    with socket.socket() as probe:  # the port is free again: the server's socket is closed, its thread ended
        probe.bind((HOST, port))


# --- the score gauges, from a stand-in for the lead's scoring object -------------------------------------------


class FakeScoring:
    """The shape runner's scoring has: overall(), per_key() and drifting."""

    def __init__(self, keys: dict[str, tuple[float, float, int]], drifting: bool = False) -> None:
        self.keys, self.drifting = keys, drifting

    def overall(self) -> tuple[float, float, int]:
        count = sum(n for *_, n in self.keys.values())
        if not count:
            return math.nan, math.nan, 0
        pooled = [math.sqrt(sum(v[i] ** 2 * v[2] for v in self.keys.values()) / count) for i in (0, 1)]
        return pooled[0], pooled[1], count

    def per_key(self) -> dict[str, tuple[float, float, int]]:
        return dict(self.keys)


def _scrape(stats: Stats, keys: int = 100) -> dict[str, list[tuple[dict[str, str], float]]]:
    """What Prometheus would read: the collector through prometheus-client's own exposition and parser."""
    from prometheus_client import CollectorRegistry, generate_latest
    from prometheus_client.parser import text_string_to_metric_families

    registry = CollectorRegistry()
    registry.register(RunCollector(stats, _Model(), "9.9.9", keys))
    found: dict[str, list[tuple[dict[str, str], float]]] = {}
    for family in text_string_to_metric_families(generate_latest(registry).decode()):
        for sample in family.samples:
            found.setdefault(sample.name, []).append((sample.labels, sample.value))
    return found


class _Model:
    path = Path("m.onnx")
    manifest = type("M", (), {"files": {"m.onnx": type("E", (), {"sha256": "ab" * 32})()}})()


def test_counts_come_from_the_runs_stats_at_each_scrape():
    stats = Stats(rows=12, predictions=7, time_gaps=2, reopened=1)
    stats.skipped.update({"not a number": 3, "missing value": 1})
    found = _scrape(stats)
    assert found["edgeseq_rows_read_total"] == [({}, 12.0)] and found["edgeseq_predictions_total"] == [({}, 7.0)]
    assert found["edgeseq_time_gaps_total"] == [({}, 2.0)] and found["edgeseq_input_reopened_total"] == [({}, 1.0)]
    assert sorted(found["edgeseq_rows_skipped_total"], key=lambda s: s[1]) == [
        ({"reason": "missing value"}, 1.0), ({"reason": "not a number"}, 3.0)
    ]  # fmt: skip
    assert found["edgeseq_model_info"] == [({"model": "m.onnx", "sha256": "ab" * 32, "version": "9.9.9"}, 1.0)]
    stats.predictions += 5  # read again at the next scrape: nothing in the loop increments a metric
    assert _scrape(stats)["edgeseq_predictions_total"] == [({}, 12.0)]
    assert not any(name.startswith(("edgeseq_rolling", "edgeseq_drifting", "edgeseq_key")) for name in found)


def test_score_gauges_with_per_key_series_for_the_first_keys_only_the_rest_pooled():
    keys = {f"s{i}": (float(i + 1), 2.0 * (i + 1), 10 * (i + 1)) for i in range(5)}  # s0..s4
    stats = Stats()
    stats.scoring = FakeScoring(keys, drifting=True)
    found = _scrape(stats, keys=3)
    model, persistence, count = stats.scoring.overall()
    assert dict((s["forecast"], v) for s, v in found["edgeseq_rolling_rmse"]) == {
        "model": model, "persistence": persistence
    }  # fmt: skip
    assert found["edgeseq_rolling_scored"] == [({}, float(count))] and found["edgeseq_drifting"] == [({}, 1.0)]
    per_key = {(s["key"], s["forecast"]): v for s, v in found["edgeseq_key_rolling_rmse"]}
    assert set(per_key) == {(k, f) for k in ("s0", "s1", "s2") for f in ("model", "persistence")}
    assert per_key["s2", "model"] == 3.0 and per_key["s2", "persistence"] == 6.0
    # s3 (rmse 4, 40 scored) and s4 (5, 50) as one: sqrt((16*40 + 25*50) / 90), independently
    others = {s["forecast"]: v for s, v in found["edgeseq_other_keys_rolling_rmse"]}
    assert others["model"] == pytest.approx(math.sqrt((16 * 40 + 25 * 50) / 90))
    assert others["persistence"] == pytest.approx(math.sqrt((64 * 40 + 100 * 50) / 90))
    assert found["edgeseq_other_keys"] == [({}, 2.0)] and found["edgeseq_other_keys_rolling_scored"] == [({}, 90.0)]


def test_the_keys_given_series_stay_the_same_as_keys_come_and_go():
    stats = Stats()
    stats.scoring = FakeScoring({"late": (1.0, 1.0, 1)})
    from prometheus_client import CollectorRegistry, generate_latest

    collector = RunCollector(stats, _Model(), "0", keys=1)
    registry = CollectorRegistry()
    registry.register(collector)
    assert 'edgeseq_key_rolling_rmse{forecast="model",key="late"}' in generate_latest(registry).decode()
    stats.scoring.keys = {"early": (2.0, 2.0, 1), "late": (1.0, 1.0, 1)}  # a key ordered before it: still "late"
    text = generate_latest(registry).decode()
    assert 'key="late"' in text and 'key="early"' not in text and "edgeseq_other_keys 1.0" in text


def test_no_scored_forecast_yet_is_nan_not_zero():
    stats = Stats()
    stats.scoring = FakeScoring({})
    found = _scrape(stats)
    assert all(math.isnan(v) for _, v in found["edgeseq_rolling_rmse"]) and found["edgeseq_drifting"] == [({}, 0.0)]


def test_a_reconnection_to_the_mqtt_broker_is_counted(brokers, tmp_path: Path):
    from tests.test_mqtt import gateway

    broker = brokers(tls=False, persistence=False)
    proc = gateway(broker, tmp_path, "--metrics", f"{HOST}:0", output=None, module="edgeseq_device")
    try:
        address = SERVING.search(proc.stderr.readline()).group(1)

        def reconnects() -> str:
            with urllib.request.urlopen(f"http://{address}/metrics", timeout=5) as response:
                return re.search(r"^edgeseq_mqtt_reconnects_total (\S+)$", response.read().decode(), re.M).group(1)

        assert reconnects() == "0.0"
        broker.kill()
        broker.start()
        _wait_for(lambda: reconnects() != "0.0", what="the reconnection counted")
        time.sleep(1.5)  # one reconnection is one
        assert reconnects() == "1.0"
        proc.send_signal(signal.SIGTERM)
        _, err = finish(proc, timeout=30)
    finally:
        proc.kill()
    assert proc.returncode == 143 and "reconnected to" in err, err


def test_ctrl_c_ends_the_run_and_its_server_at_once(tmp_path: Path):
    stream = write_lines(tmp_path / "log.csv", LINES[:101])
    err = tmp_path / "err.txt"
    with err.open("w") as stderr:
        proc = cli("--stream", stream, "--model", SENSOR_ONNX, "--follow", "--metrics", f"{HOST}:0", stderr=stderr)
    try:
        address = _address(err)
        urllib.request.urlopen(f"http://{address}/metrics", timeout=5).close()
        started = time.monotonic()
        proc.send_signal(signal.SIGINT)
        finish(proc, timeout=30)
        took = time.monotonic() - started
    finally:
        proc.kill()
    assert proc.returncode == 130 and took < 5, (proc.returncode, took, err.read_text())
    with pytest.raises(OSError):
        urllib.request.urlopen(f"http://{address}/metrics", timeout=2)


def test_a_stream_without_keys_has_no_per_key_series_and_a_scrape_racing_the_run_is_read_again():
    class Racing(FakeScoring):
        calls = 0

        def per_key(self):
            Racing.calls += 1
            if Racing.calls == 1:  # what iterating a dict the run's thread grows raises
                raise RuntimeError("dictionary changed size during iteration")
            return {"": (1.0, 2.0, 5)}  # the lead's Scorer names a stream's one series ""

    stats = Stats()
    stats.scoring = Racing({"": (1.0, 2.0, 5)})
    found = _scrape(stats)
    assert Racing.calls == 2 and found["edgeseq_rolling_scored"] == [({}, 5.0)]
    assert "edgeseq_key_rolling_rmse" not in found and "edgeseq_other_keys" not in found

"""Benchmark of the MQTT gateway, all in one run, on loopback: readings/s end to end (publisher -> mosquitto ->
`python -m edgeseq_device run` -> mosquitto -> subscriber) against the file runner on the same rows, the broker
alone on the same messages, publish-to-forecast latency for readings one at a time, and the gateway's peak RSS;
each with broker persistence off and on.

    python benchmarks/mqtt_bench.py [--keys 4] [--repeats 5] [--latency-readings 1000] [--json FILE]

The rows are the 2,961 of exported/sensor.csv, each published as a JSON message (`json.dumps` of the row as the
csv module reads it, as tests/test_mqtt.py does) to sensors/room1/readings, and for several keys the same rows
to sensors/room1..K/readings, one publisher per key. The brokers are tests/brokers.py's mosquitto, a fresh one for
each measurement; its config and what persistence costs it are in that module's docstring. The publishers and the
subscriber of the throughput runs are mosquitto_pub -l and mosquitto_sub (C, QoS 1): on a 2-core machine a Python
client would take a core from the gateway. Throughput is from the first publish to the last forecast received
(mosquitto_sub's own timestamp); the file runner's is its summary's (first row to the end), with
`--output FILE`. Every forecast received is checked against the file runner's record for that row. Latency: the
first 35 readings of a room fill its window, then each reading is published alone (paho, QoS 1) and the next
only after its forecast has arrived; the time is publish() to the forecast's on_message. Peak RSS is VmHWM of
the gateway process, read from /proc after its last forecast arrived and before it is stopped.

Measurements are interleaved (file runner, broker alone, gateway, per persistence and key count, then latency),
repeated, and medians reported with the spread (min-max). Timings are measured here, never asserted in tests.
Run it from the repository root, with mosquitto, mosquitto-clients and the dev extra installed.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # tests/brokers.py: the mosquitto the tests use

import numpy as np  # noqa: E402

from tests.brokers import Broker, Collector, connect, publish, start_broker  # noqa: E402

CSV = REPO / "exported" / "sensor.csv"
MODEL = REPO / "exported" / "sensor_lstm.onnx"
T = 36  # the model's window: a room's first forecast comes with its 36th reading
GATEWAY_ID = "bench-gateway"
READY_TOPIC = "bench/ready"  # a retained message: the subscriber has its SUBACK once it prints this
# issue 22's goals
GOALS = {"mqtt_vs_file": 0.8, "latency_ms_p99": 5.0}
DEVICE = [sys.executable, "-m", "edgeseq_device", "run"]


def payloads() -> list[str]:
    """Each row of the sample as the JSON message a sensor would send (one line: mosquitto_pub -l's input)."""
    with CSV.open(newline="") as handle:
        return [json.dumps(row) for row in csv.DictReader(handle)]


def file_runner(output: Path) -> tuple[float, float, list[tuple]]:
    """`python -m edgeseq_device run --stream exported/sensor.csv --output FILE`: (rows/s from its summary, its CPU
    seconds, (time, prediction) of each record)."""
    proc = subprocess.Popen(
        [*DEVICE, "--stream", str(CSV), "--model", str(MODEL), "--output", str(output)],
        cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    err = proc.stderr.read()
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        raise RuntimeError(f"the file runner exited with {proc.returncode}: {err}")
    records = [(r["time"], r["prediction"]) for r in map(json.loads, output.read_text().splitlines())]
    return _rate(err), usage.ru_utime + usage.ru_stime, records


def _rate(stderr: str) -> float:
    summary = [line for line in stderr.splitlines() if ": done:" in line][-1]
    return float(re.search(r"([\d,]+) rows/s", summary).group(1).replace(",", ""))


def _broker(folder: Path, persistence: bool) -> Broker:
    # anonymous: the bench's own clients need no password on their command line; the gateway still logs in
    return start_broker(folder, tls=False, persistence=persistence, anonymous=True)


def _client_args(broker: Broker) -> list[str]:
    return ["-h", broker.host, "-p", str(broker.port), "-q", "1", "-V", "mqttv5"]


class Subscriber:
    """mosquitto_sub on `topic_filter`, QoS 1, until `count` messages: each as (received at, topic, payload)."""

    def __init__(self, broker: Broker, topic_filter: str, count: int) -> None:
        publish(broker, [(READY_TOPIC, "ready")], retain=True)
        self.proc = subprocess.Popen(
            ["mosquitto_sub", *_client_args(broker), "-t", topic_filter, "-t", READY_TOPIC, "-C", str(count + 1),
             "-F", "%U %t %p", "-i", "bench-subscriber"],
            stdout=subprocess.PIPE, text=True,
        )  # fmt: skip
        first = self.proc.stdout.readline()
        if READY_TOPIC not in first:
            raise RuntimeError(f"mosquitto_sub did not subscribe: {first!r}")

    def wait(self, timeout: float) -> list[tuple[float, str, str]]:
        """Every message, or RuntimeError after `timeout` seconds (the subscriber is killed then)."""
        timer = threading.Timer(timeout, self.proc.kill)
        timer.start()
        try:
            text = self.proc.stdout.read()
            self.proc.wait()
        finally:
            timer.cancel()
        if self.proc.returncode != 0:
            raise RuntimeError(f"mosquitto_sub ended with {self.proc.returncode} (timed out after {timeout:g} s?)")
        out = []
        for line in text.splitlines():
            stamp, topic, payload = line.split(" ", 2)
            out.append((float(stamp), topic, payload))
        return out


def _publishers(broker: Broker, keys: int) -> list[subprocess.Popen]:
    """One mosquitto_pub -l a room, connected (the broker has logged it) and waiting for its lines."""
    offsets = broker.log_size()
    procs = [
        subprocess.Popen(
            [
                "mosquitto_pub",
                *_client_args(broker),
                "-t",
                f"sensors/room{k + 1}/readings",
                "-l",
                "-i",
                f"bench-publisher-{k + 1}",
            ],
            stdin=subprocess.PIPE,
            text=True,
        )
        for k in range(keys)
    ]
    deadline = time.monotonic() + 10
    while not all(f" as bench-publisher-{k + 1} (" in broker.log_since(*offsets) for k in range(keys)):
        if time.monotonic() > deadline:
            raise RuntimeError(f"the publishers did not connect:\n{broker.log_tail()}")
        time.sleep(0.01)
    return procs


def _send(procs: list[subprocess.Popen], lines: list[str]) -> float:
    """Hand every publisher the readings at once, each from its own thread; return when the first began."""
    text = "\n".join(lines) + "\n"

    def feed(proc: subprocess.Popen) -> None:
        proc.stdin.write(text)
        proc.stdin.close()

    threads = [threading.Thread(target=feed, args=(proc,)) for proc in procs]
    started = time.time()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return started


def broker_alone(folder: Path, persistence: bool, keys: int, lines: list[str]) -> float:
    """The same messages published to mosquitto and received by one subscriber, without edgeseq: the most the
    gateway could reach through this broker (messages/s, first publish to last received)."""
    broker = _broker(folder, persistence)
    try:
        subscriber = Subscriber(broker, "sensors/+/readings", keys * len(lines))
        procs = _publishers(broker, keys)
        started = _send(procs, lines)
        got = subscriber.wait(timeout=300)
        for proc in procs:
            proc.wait()
    finally:
        broker.stop()
    return keys * len(lines) / (got[-1][0] - started)


def _gateway(broker: Broker, credentials: Path) -> subprocess.Popen:
    """The gateway, online: its status topic says so once it has subscribed."""
    with Collector(broker, f"edgeseq/{GATEWAY_ID}/status") as status:
        proc = subprocess.Popen(
            [*DEVICE, "--stream", broker.url("sensors/+/readings"), "--output", broker.url("forecasts/{key}"),
             "--mqtt-credentials", str(credentials), "--mqtt-client-id", GATEWAY_ID, "--model", str(MODEL)],
            cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
        )  # fmt: skip
        deadline = time.monotonic() + 60
        while b"online" not in [payload for _, payload, _ in status.messages]:
            if proc.poll() is not None or time.monotonic() > deadline:
                proc.kill()
                raise RuntimeError(f"the gateway did not come online: {proc.communicate()[1]}")
            time.sleep(0.01)
    return proc


def _stop(proc: subprocess.Popen) -> str:
    proc.send_signal(signal.SIGTERM)
    try:
        _, err = proc.communicate(timeout=60)
    finally:
        proc.kill()
    if proc.returncode != 128 + signal.SIGTERM:
        raise RuntimeError(f"the gateway exited with {proc.returncode}: {err}")
    return err


def cpu_seconds(pid: int) -> float:
    """User and system CPU time of a running process so far (/proc/PID/stat)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def peak_rss_mb(pid: int) -> float:
    """VmHWM, the process's own peak resident set (ru_maxrss of a child counts the parent's pages before exec)."""
    status = Path(f"/proc/{pid}/status").read_text()
    return int(re.search(r"^VmHWM:\s+(\d+) kB", status, re.M).group(1)) / 1024


def end_to_end(folder: Path, persistence: bool, keys: int, lines: list[str], want: list[tuple]) -> dict[str, float]:
    """Readings through the gateway: readings/s from the first publish to the last forecast, and its peak RSS.
    Raises RuntimeError unless every room got exactly the file runner's records, in order."""
    broker = _broker(folder, persistence)
    gateway = None
    try:
        gateway = _gateway(broker, broker.credentials_file)
        subscriber = Subscriber(broker, "forecasts/+", keys * len(want))
        procs = _publishers(broker, keys)
        cpu = cpu_seconds(gateway.pid), cpu_seconds(broker.pid)
        started = _send(procs, lines)
        got = subscriber.wait(timeout=600)
        rss = peak_rss_mb(gateway.pid)
        cpu = cpu_seconds(gateway.pid) - cpu[0], cpu_seconds(broker.pid) - cpu[1]
        err = _stop(gateway)
        for proc in procs:
            proc.wait()
    finally:
        if gateway is not None:
            gateway.kill()
        broker.stop()
    by_key: dict[str, list[tuple]] = {}
    for _, topic, payload in got:
        record = json.loads(payload)
        by_key.setdefault(topic, []).append((record["time"], record["prediction"]))
    expected = {f"forecasts/room{k + 1}": want for k in range(keys)}
    if by_key != expected:
        wrong = [key for key in expected if by_key.get(key) != want]
        raise RuntimeError(f"the forecasts of {wrong} differ from the file runner's records:\n{err}")
    readings = keys * len(lines)
    return {
        "readings_per_s": readings / (got[-1][0] - started),
        "peak_rss_mb": rss,
        "gateway_cpu_us_per_reading": 1e6 * cpu[0] / readings,
        "broker_cpu_us_per_reading": 1e6 * cpu[1] / readings,
    }


def one_at_a_time(folder: Path, persistence: bool, lines: list[str], count: int) -> list[float]:
    """Latency (ms) from publish() of a reading to its forecast's arrival, one reading in flight at a time, after
    the first T - 1 readings filled the window."""
    broker = _broker(folder, persistence)
    gateway = None
    arrived = threading.Event()
    stamps: list[float] = []

    def on_message(_client, _userdata, _message) -> None:
        stamps.append(time.perf_counter())
        arrived.set()

    try:
        gateway = _gateway(broker, broker.credentials_file)
        publish(broker, [("sensors/room1/readings", line) for line in lines[: T - 1]])
        subscriber = connect(broker, on_message=on_message)
        granted = threading.Event()
        subscriber.on_subscribe = lambda *_: granted.set()
        subscriber.subscribe("forecasts/+", qos=1)
        granted.wait(10)
        publisher = connect(broker, max_inflight=1)
        latencies = []
        for line in lines[T - 1 : T - 1 + count]:
            arrived.clear()
            sent = time.perf_counter()
            publisher.publish("sensors/room1/readings", line, qos=1)
            if not arrived.wait(10):
                raise RuntimeError("no forecast within 10 s of its reading")
            latencies.append((stamps[-1] - sent) * 1e3)
        for client in (publisher, subscriber):
            client.disconnect()
            client.loop_stop()
        _stop(gateway)
    finally:
        if gateway is not None:
            gateway.kill()
        broker.stop()
    return latencies


def machine() -> dict[str, str]:
    """runner_bench's machine facts, and the MQTT client's and the broker's versions."""
    import paho.mqtt

    from benchmarks.runner_bench import machine as runtime

    mosquitto = subprocess.run(["mosquitto", "-h"], capture_output=True, text=True).stdout.split("\n")[0]
    return {**runtime(), "paho-mqtt": paho.mqtt.__version__, "mosquitto": mosquitto.split()[-1] if mosquitto else "?"}


def spread(values: list[float]) -> dict:
    return {"median": statistics.median(values), "min": min(values), "max": max(values), "runs": values}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--keys", type=int, default=4, help="rooms of the several-keys runs (default 4)")
    parser.add_argument("--repeats", type=int, default=5, help="rounds of every measurement; medians reported")
    parser.add_argument("--latency-readings", type=int, default=1000, help="readings one at a time per round")
    parser.add_argument("--json", type=Path, help="also write the figures as JSON to FILE")
    args = parser.parse_args()

    lines = payloads()
    configs = [(persistence, keys) for persistence in (False, True) for keys in (1, args.keys)]
    file_rates, file_cpu = [], []
    runs: dict[tuple, dict[str, list[float]]] = {config: {} for config in configs}
    latency: dict[bool, list[float]] = {False: [], True: []}
    p99s: dict[bool, list[float]] = {False: [], True: []}
    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory() as tmp:
        for round_number in range(args.repeats):  # interleaved, so drift hits every measurement alike
            folder = Path(tmp) / str(round_number)
            rate, cpu, want = file_runner(Path(tmp) / "records.jsonl")
            file_rates.append(rate)
            file_cpu.append(1e6 * cpu / len(lines))
            for persistence, keys in configs:
                name = f"{'on' if persistence else 'off'}-{keys}"
                figures = end_to_end(folder / f"gateway-{name}", persistence, keys, lines, want)
                figures["vs_file_runner"] = figures["readings_per_s"] / rate
                figures["broker_alone_messages_per_s"] = broker_alone(
                    folder / f"alone-{name}", persistence, keys, lines
                )
                for measure, value in figures.items():
                    runs[persistence, keys].setdefault(measure, []).append(value)
                print(
                    f"round {round_number + 1}: persistence {'on' if persistence else 'off'}, {keys} key(s): file "
                    f"{rate:,.0f} rows/s, gateway {figures['readings_per_s']:,.0f} readings/s, broker alone "
                    f"{figures['broker_alone_messages_per_s']:,.0f} messages/s",
                    file=sys.stderr,
                )
            for persistence in (False, True):
                ms = one_at_a_time(folder / f"latency-{persistence}", persistence, lines, args.latency_readings)
                latency[persistence] += ms
                p99s[persistence].append(float(np.percentile(ms, 99)))
    figures = {
        "rows": len(lines),
        "keys": [1, args.keys],
        "repeats": args.repeats,
        "load_average_before_after": [load_before[0], os.getloadavg()[0]],
        "file_runner": {"rows_per_s": spread(file_rates), "cpu_us_per_row": spread(file_cpu)},
        "runs": [
            {
                "persistence": persistence,
                "keys": keys,
                "readings": keys * len(lines),
                **{measure: spread(values) for measure, values in runs[persistence, keys].items()},
            }
            for persistence, keys in configs
        ],
        "latency": {
            "on" if persistence else "off": {
                "readings": len(latency[persistence]),
                "ms_p50": float(np.percentile(latency[persistence], 50)),
                "ms_p99": float(np.percentile(latency[persistence], 99)),
                "ms_max": max(latency[persistence]),
                "ms_p99_per_round": p99s[persistence],
            }
            for persistence in (False, True)
        },
        "machine": machine(),
        "command": "python benchmarks/mqtt_bench.py " + " ".join(sys.argv[1:]),
    }
    by = {(run["persistence"], run["keys"]): run for run in figures["runs"]}
    figures["goals"] = GOALS
    figures["goals_met"] = {
        "mqtt_vs_file_persistence_off": all(by[False, k]["vs_file_runner"]["median"] >= GOALS["mqtt_vs_file"]
                                            for k in figures["keys"]),
        "mqtt_vs_file_persistence_on": all(by[True, k]["vs_file_runner"]["median"] >= GOALS["mqtt_vs_file"]
                                           for k in figures["keys"]),
        "latency_ms_p99": all(figures["latency"][s]["ms_p99"] < GOALS["latency_ms_p99"] for s in ("off", "on")),
    }  # fmt: skip
    print(table(figures))
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2) + "\n")


def _range(figure: dict, digits: int = 0, unit: str = "") -> str:
    """The median, and the spread over the rounds in brackets."""
    if figure["min"] == figure["max"]:
        return f"{figure['median']:,.{digits}f}{unit}"
    return f"{figure['median']:,.{digits}f}{unit} ({figure['min']:,.{digits}f}-{figure['max']:,.{digits}f})"


def table(figures: dict) -> str:
    """The figures as a markdown table: medians over the rounds, with their spread (min-max) in brackets."""
    file = figures["file_runner"]
    by = {(run["persistence"], run["keys"]): run for run in figures["runs"]}
    rows = [
        "| measure | broker persistence off | broker persistence on | goal |",
        "|---|---|---|---|",
        f"| file runner, `--stream exported/sensor.csv --output FILE`, rows/s ({figures['rows']:,} rows) | "
        f"{_range(file['rows_per_s'])} | (no broker) | |",
        f"| file runner, CPU per row | {_range(file['cpu_us_per_row'], unit=' us')} | | |",
    ]
    for keys in figures["keys"]:
        off, on = by[False, keys], by[True, keys]
        what = "1 room" if keys == 1 else f"{keys} rooms"
        rows += [
            f"| MQTT end to end, {what} ({off['readings']:,} readings), readings/s | "
            f"{_range(off['readings_per_s'])} | {_range(on['readings_per_s'])} | |",
            f"| MQTT / file runner, {what} (per round) | {_range(off['vs_file_runner'], 2)} | "
            f"{_range(on['vs_file_runner'], 2)} | >= 0.80 |",
            f"| mosquitto alone, same messages, {what}, messages/s | {_range(off['broker_alone_messages_per_s'])} | "
            f"{_range(on['broker_alone_messages_per_s'])} | |",
            f"| gateway CPU per reading, {what} | {_range(off['gateway_cpu_us_per_reading'], unit=' us')} | "
            f"{_range(on['gateway_cpu_us_per_reading'], unit=' us')} | |",
            f"| mosquitto CPU per reading, {what} | {_range(off['broker_cpu_us_per_reading'], unit=' us')} | "
            f"{_range(on['broker_cpu_us_per_reading'], unit=' us')} | |",
        ]
    off, on = figures["latency"]["off"], figures["latency"]["on"]
    rows.append(
        f"| publish to forecast, one reading at a time ({off['readings']:,}), p50 / p99 | "
        f"{off['ms_p50']:.2f} / {off['ms_p99']:.2f} ms | {on['ms_p50']:.2f} / {on['ms_p99']:.2f} ms | p99 < 5 ms |"
    )
    rss = [value for run in figures["runs"] for value in run["peak_rss_mb"]["runs"]]
    rows.append(f"| gateway peak RSS (VmHWM), every run | {min(rss):.1f}-{max(rss):.1f} MB | | |")
    return "\n".join(rows)


if __name__ == "__main__":
    main()

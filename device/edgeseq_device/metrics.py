"""Prometheus metrics of a run (`--metrics HOST:PORT`, served at /metrics by the official prometheus-client).

The counts are the run's own `Stats`, read when Prometheus scrapes (a custom collector): the runner's loop
increments nothing more for them. Only the model's latency is measured in the loop, per model call, and only
when metrics are on (`timed`). The scores (rolling RMSE of the model and of persistence, drift) come from
`stats.scoring` when the run scores itself; without it their gauges are absent. Per-key series are given to the
first `keys` keys seen (DEFAULT_KEYS), the others are one aggregate, so a stream of many sensors cannot grow
Prometheus's series without bound. prometheus-client is imported only when metrics are asked for: the base
device install stays numpy and onnxruntime (`pip install 'edgeseq-device[metrics]'` adds it).
"""

from __future__ import annotations

import math
import re
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from typing import Any

from edgeseq_device.errors import InputError

DEFAULT_KEYS = 100  # keys with their own per-key series (--metrics-keys); the rest are aggregated
INSTALL = "pip install 'edgeseq-device[metrics]' (or 'edgeseq[metrics]')"
# Model calls take tens of microseconds (one window) to tens of milliseconds (a batch on a slow box)
LATENCY_BUCKETS = (2.5e-5, 5e-5, 1e-4, 2.5e-4, 5e-4, 1e-3, 2.5e-3, 5e-3, 1e-2, 2.5e-2, 5e-2, 0.1, 0.25, 1.0)
_ADDRESS = re.compile(r"(\[[^\]]+\]|[^:\[\]]+):(\d{1,5})")


class MetricsError(InputError):
    """--metrics cannot be served (a bad HOST:PORT, a port in use, no prometheus-client): one line, exit 2."""


def address(text: str) -> tuple[str, int]:
    """HOST:PORT ([::1]:9100 for IPv6) as (host, port)."""
    match = _ADDRESS.fullmatch(text.strip())
    if match is None or not 0 <= int(match.group(2)) < 65536:
        raise MetricsError(f"--metrics {text!r}: expected HOST:PORT, such as 127.0.0.1:9108 or [::1]:9108")
    return match.group(1).strip("[]"), int(match.group(2))


def timed(call: Callable[..., Any], observe: Callable[[float], None] | None) -> Callable[..., Any]:
    """`call` itself when latency is not observed; else `call` timed with perf_counter, each call's seconds
    given to `observe`. window.py wraps its model call once per staged batch, so a run without metrics pays one
    test a batch."""
    if observe is None:
        return call
    clock = time.perf_counter

    def timed_call(*args: Any) -> Any:
        start = clock()
        try:
            return call(*args)
        finally:
            observe(clock() - start)

    return timed_call


class Metrics:
    """The run's metrics served over HTTP until `close()`; `observe` takes a model call's seconds."""

    def __init__(self, where: str, stats: Any, model: Any, version: str, keys: int = DEFAULT_KEYS) -> None:
        host, port = address(where)
        try:
            import prometheus_client
            from prometheus_client import CollectorRegistry, Histogram
        except ImportError:
            raise MetricsError(
                f"--metrics needs the prometheus-client package, which is not installed: {INSTALL}"
            ) from None
        self.registry = CollectorRegistry(auto_describe=True)  # the run's own, not the process-wide default
        self.registry.register(RunCollector(stats, model, version, keys))
        self.latency = Histogram(
            "edgeseq_model_latency_seconds", "Seconds per model call (one window, or a batch of windows)",
            registry=self.registry, buckets=LATENCY_BUCKETS,
        )  # fmt: skip
        self.observe = self.latency.observe
        try:
            self.server, self.thread = prometheus_client.start_http_server(port, host, registry=self.registry)
        except OSError as exc:  # in use, not an address of this box, a name that does not resolve
            raise MetricsError(f"--metrics {where}: cannot serve metrics there: {exc.strerror or exc}") from None
        host, port = self.server.server_address[:2]  # port 0: the one the system chose
        self.where = f"http://{f'[{host}]' if ':' in host else host}:{port}/metrics"

    def close(self) -> None:
        """Stop serving, and wait for the server's thread to end."""
        self.server.shutdown()
        self.server.server_close()
        self.thread.join()


def serve(options: Any, stats: Any, model: Any, ends: ExitStack, say: Any, prog: str) -> Metrics | None:
    """The run's metrics, served from now until `ends` closes, when --metrics is given; said once on stderr."""
    if options.metrics is None:
        return None
    from edgeseq_device import __version__

    metrics = Metrics(options.metrics, stats, model, __version__, options.metrics_keys)
    ends.callback(metrics.close)
    say(f"{prog}: serving metrics at {metrics.where}")
    return metrics


class RunCollector:
    """The run's counts, scores and model, read from its Stats at each scrape."""

    def __init__(self, stats: Any, model: Any, version: str, keys: int = DEFAULT_KEYS) -> None:
        self.stats, self.keys = stats, keys
        self.info = {"model": model.path.name, "sha256": model_sha256(model), "version": version}
        self._reconnects = mqtt_reconnects()  # the process's before this run (a test runs several in one)
        self._named: dict[str, None] = {}  # the keys given their own series, in the order first seen

    def collect(self) -> Iterator[Any]:
        from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, InfoMetricFamily

        stats = self.stats
        yield InfoMetricFamily("edgeseq_model", "The model run: its file, sha256 and the edgeseq version", self.info)
        for name, value, what in (
            ("rows_read", stats.rows, "Rows read from the input"),
            ("predictions", stats.predictions, "Records written (one a forecast)"),
            ("rows_filled", stats.filled, "Rows with a missing value filled (--fill-gaps at training)"),
            ("time_gaps", stats.time_gaps, "Gaps in time: a window starts afresh after each"),
            ("time_jumps", stats.time_jumps, "Jumps back in time: each starts a new segment"),
            ("empty_slots_filled", stats.slots_filled, "Empty time-grid slots filled (--fill-gaps at training)"),
            ("readings_in_a_read_slot", stats.slot_taken, "Readings in a time-grid slot already read: not used"),
            ("predictions_not_finite", stats.not_finite, "Predictions not finite, not written"),
            ("model_failures", stats.model_failed, "Windows the model failed on, not written"),
            ("input_reopened", stats.reopened, "Reopenings of the input (rotated, truncated, a FIFO's new writer)"),
            (
                "mqtt_reconnects",
                mqtt_reconnects() - self._reconnects,
                "Reconnections to an MQTT broker after a lost connection",
            ),
        ):
            yield CounterMetricFamily(f"edgeseq_{name}", what, value=value)
        skipped = CounterMetricFamily("edgeseq_rows_skipped", "Rows skipped, by reason", labels=["reason"])
        for reason, count in sorted(dict(stats.skipped).items()):
            skipped.add_metric([reason], count)
        yield skipped
        yield GaugeMetricFamily("edgeseq_series", "Series (keys) seen", value=stats.keys)
        scoring = getattr(stats, "scoring", None)
        if scoring is not None:
            yield from self._scores(scoring)

    def _scores(self, scoring: Any) -> Iterator[Any]:
        from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

        read = _read_scores(scoring)
        if read is None:
            return
        (model, persistence, count), per_key, drifting = read
        rmse = GaugeMetricFamily(
            "edgeseq_rolling_rmse", "Rolling RMSE of the last scored forecasts, overall", labels=["forecast"]
        )
        rmse.add_metric(["model"], model)
        rmse.add_metric(["persistence"], persistence)
        yield rmse
        yield GaugeMetricFamily("edgeseq_rolling_scored", "Scored forecasts the rolling RMSE is over", value=count)
        totals = getattr(scoring, "all", None), getattr(scoring, "missing", None)
        if totals[0] is not None and totals[1] is not None:  # scoring.Scorer's counts since the start
            yield CounterMetricFamily("edgeseq_scored", "Forecasts scored against their actual", value=totals[0].count)
            yield CounterMetricFamily(
                "edgeseq_actuals_missing", "Forecasts whose actual never came (a gap, a filled value)", value=totals[1]
            )
        yield GaugeMetricFamily(
            "edgeseq_drifting", "1 while the model is drifting (worse than persistence or its test RMSE)",
            value=1.0 if drifting else 0.0,
        )  # fmt: skip
        by_key = GaugeMetricFamily(
            "edgeseq_key_rolling_rmse", f"Rolling RMSE per key, for the first {self.keys} keys seen",
            labels=["key", "forecast"],
        )  # fmt: skip
        scored = GaugeMetricFamily(
            "edgeseq_key_rolling_scored", "Scored forecasts per key's rolling RMSE", labels=["key"]
        )
        rest = []
        for key, (key_model, key_persistence, key_count) in per_key.items():
            if key == "":  # a stream without keys: its one series is the overall one
                continue
            if key not in self._named and len(self._named) < self.keys:
                self._named[key] = None
            if key in self._named:
                by_key.add_metric([key, "model"], key_model)
                by_key.add_metric([key, "persistence"], key_persistence)
                scored.add_metric([key], key_count)
            else:
                rest.append((key_model, key_persistence, key_count))
        yield by_key
        yield scored
        if rest:  # the keys past the first `keys`, as one: their squared errors pooled by count
            count = sum(n for _, _, n in rest)
            others = GaugeMetricFamily(
                "edgeseq_other_keys_rolling_rmse", f"Rolling RMSE of the keys after the first {self.keys}, pooled",
                labels=["forecast"],
            )  # fmt: skip
            others.add_metric(["model"], _pooled([(m, n) for m, _, n in rest], count))
            others.add_metric(["persistence"], _pooled([(p, n) for _, p, n in rest], count))
            yield others
            yield GaugeMetricFamily("edgeseq_other_keys", "Keys aggregated in edgeseq_other_keys_*", value=len(rest))
            yield GaugeMetricFamily(
                "edgeseq_other_keys_rolling_scored", "Scored forecasts of the keys aggregated", value=count
            )


def _read_scores(scoring: Any) -> tuple[tuple[float, float, int], dict[str, Any], bool] | None:
    """The scores as the run's thread leaves them: it changes them as this (the server's thread) reads, and a
    dict or deque that changes size under an iteration raises RuntimeError; read again, three times at most,
    else this scrape has no scores."""
    for _ in range(3):
        try:
            return scoring.overall(), dict(scoring.per_key()), bool(scoring.drifting)
        except RuntimeError:
            continue
    return None


def _pooled(parts: list[tuple[float, int]], count: int) -> float:
    """The RMSE of the errors of several keys together, from each key's RMSE and count."""
    if count == 0:
        return math.nan
    return math.sqrt(sum(rmse * rmse * n for rmse, n in parts if n) / count)


def model_sha256(model: Any) -> str:
    """The sha256 of the model's file: its manifest's, which the load checked the file against, else hashed."""
    entry = model.manifest.files.get(model.path.name) if model.manifest is not None else None
    if entry is not None:
        return entry.sha256
    import hashlib

    return hashlib.sha256(model.path.read_bytes()).hexdigest()


def mqtt_reconnects() -> int:
    """Reconnections of this process's MQTT clients (mqtt.py counts them; 0 when MQTT was never imported)."""
    import sys

    mqtt = sys.modules.get("edgeseq_device.mqtt")
    return mqtt.reconnects() if mqtt is not None else 0

"""Rows of one stream to their series (sensor.py): the key, the values and the time of each row, then its
series' rules. The runner keeps one Router; training runs one over each part of a file."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from edgeseq_device.messages import shown
from edgeseq_device.rows import BadRowError, RowParser, is_missing
from edgeseq_device.series.rules import (
    MAX_KEY_CHARS,
    MAX_KEYS,
    TIME_ORDER_REASONS,
    VALUE_REASONS,
    SeriesRules,
)
from edgeseq_device.series.sensor import Series
from edgeseq_device.times import iso_time, parse_time


class Router:
    """Rows of one stream to their series: the key, the values, the time, then the series' rules. The runner
    keeps one; training runs one over each part of a file, which is what the runner sees of that part."""

    def __init__(self, window: int, columns: Sequence[str], rules: SeriesRules, max_keys: int = MAX_KEYS) -> None:
        self.window, self.columns, self.rules, self.max_keys = window, tuple(columns), rules, max_keys
        self.series = Series(window, columns, rules)  # the series of the last row pushed
        self.keys: dict[str, Series] = {}
        self.flags = 0  # TIME_GAP / FILLED of the last row pushed
        self.row = np.zeros(len(columns), dtype=np.float64)
        self._time_format = rules.time_format if rules.checks_time else None

    def push(self, parser: RowParser, fields: list[str]) -> tuple[Series, str | None]:
        """Parse one row into its series' window; return (that series, the row's time text). Raises
        BadRowError, and then that series starts afresh. A row whose key cannot be read (a row of the wrong
        width in a keyed stream) belongs to no series and breaks none."""
        key, series = None, self.series
        if parser.key_index is not None:
            parser.check_width(fields)
            key = parser.key(fields)
            if len(key) > MAX_KEY_CHARS:
                raise BadRowError("key too long", f"key {shown(key, 40)} is longer than {MAX_KEY_CHARS} characters")
            series = self.keys.get(key)
            if series is None:
                if is_missing(key):
                    raise BadRowError("no key", f"the key column {shown(self.rules.group_by)} is {shown(key)}")
                if len(self.keys) >= self.max_keys:
                    raise BadRowError(
                        "too many keys",
                        f"key {shown(key)} would be key {len(self.keys) + 1:,}; the limit is "
                        f"{self.max_keys:,} (memory grows with keys x window)",
                    )
        try:
            text = parser.parse(fields, self.row)
            when = None if self._time_format is None else parse_time(text, self._time_format)
            if parser.time_second is not None and when is not None:
                text = iso_time(when)  # "01/01/1997 24:00" is no time anyone can parse: 1997-01-02 00:00:00
            if series is None:  # a new key's first good row: only now does it cost memory
                series = self.keys[key] = Series(self.window, self.columns, self.rules, key)
            self.series = series
            self.flags = series.admit(self.row, parser.missing, when, text)
        except BadRowError as exc:
            if series is not None:
                self.series = series
                if exc.reason in VALUE_REASONS and self._time_format is not None:
                    exc.time_gap = series.clock(self._time_of(parser, fields))
                if exc.reason not in TIME_ORDER_REASONS:  # a reading behind the newest leaves the series as it was
                    series.reset()
            raise
        return series, text

    def _time_of(self, parser: RowParser, fields: list[str]) -> float | None:
        """The time of a row of the header's width whose values are bad, or None when it does not read."""
        try:
            return parse_time(parser.time_text(fields), self._time_format)  # type: ignore[arg-type]
        except BadRowError:
            return None

    def unreadable(self) -> None:
        """A line that could not be split into fields (too long): a gap in a stream of one series; in a keyed
        stream whose it was is unknown, so it breaks none."""
        if self.rules.group_by is None:
            self.series.reset()

    def restart(self) -> None:
        """A new stream (a reopened file): every series starts afresh, times included."""
        self.series = Series(self.window, self.columns, self.rules)
        self.keys.clear()

    def snapshot(self) -> dict[str, Any]:
        """Every series' state, as JSON (runner.py keeps it across a restart with --state FILE)."""
        if self.rules.group_by is None:
            return {"series": self.series.snapshot()}
        return {"keys": {key: series.snapshot() for key, series in self.keys.items()}}

    def restore(self, state: dict[str, Any]) -> int:
        """Take back a snapshot; the number of series restored."""
        if "series" in state:
            self.series.restore(state["series"])
            return 1
        for key, kept in list(state.get("keys", {}).items())[: self.max_keys]:
            self.keys[key] = Series(self.window, self.columns, self.rules, key)
            self.keys[key].restore(kept)
        return len(self.keys)

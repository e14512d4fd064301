"""Rows into series: missing values, time, gaps, carried-forward values and keys; the rules that training,
evaluation and the runner share, so a gap means the same thing in all three.

A series is one sensor's rows, oldest first. Its rules (the manifest's "series"):
- a field that is empty or one of MISSING_TOKENS (any case) is a missing value, and the row is a gap, unless
  `fill_gaps` K > 0: then a missing value takes its column's last good value for up to K rows in a row;
- with a time column, each time is parsed (`time_format`). A step longer than GAP_TOLERANCE x `interval` past
  the newest time seen is a gap before the row; a time at or before the newest (duplicated, backwards,
  replayed) or unparsable makes the row a bad row, also a gap. A series whose first NEWEST_FIRST_STEPS steps
  all go backwards runs newest first: refused for a stream of one series, its rows bad rows in a keyed one. A
  time behind the newest by more than JUMP_WINDOWS windows' span (JUMP_WINDOWS x window x `interval`) is no
  replay but a jump back (a typical-year file at a month boundary, a logger's clock reset): the row starts a new
  segment, as after a gap, and the jump is counted;
- with `group_by`, each key is its own series: its own window, its own time, its own last values.
After a gap the window starts afresh: no window spans one. A time gap is never filled: a live stream cannot
know what it missed, and a filled hour of readings would be made up.

On the time grid (`grid_origin` set: models exported with a time column since the grid came; older files keep the
rules above, row semantics), a row is a *slot*, not a reading. A reading at time t belongs to slot
`floor((t - grid_origin) / interval + 0.5)`: slots are centred on the grid, so a sensor's jitter around its phase
does not move readings between slots. A window is T consecutive slots, and the target is the slot H intervals
after its last. The first reading of a slot counts: a later one in the same slot is counted (`SLOT_TAKEN`) and
not pushed. (Not the last: a live runner forecasts as the first reading arrives, and cannot know whether another
will come; training, evaluation and the runner all keep the first, so the windows are the same in all three.)
An empty slot is a missing value: under `fill_gaps` K it takes the last slot's values, within the same K rows
in a row as a missing field does; otherwise it is a gap.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from edgeseq_device.errors import InputError, ManifestError
from edgeseq_device.messages import shown
from edgeseq_device.rows import MISSING_TOKENS, BadRowError, RowParser, is_missing
from edgeseq_device.times import (  # re-exported: the rules' time functions were first defined here
    TIME_FORMATS,
    check_time_format,
    detect_time_format,
    interval_words,
    iso_time,
    parse_interval,
    parse_time,
)

GAP_TOLERANCE = 1.5  # steps up to 1.5 intervals are jitter; longer ones lost at least one row
NEWEST_FIRST_STEPS = 5
RESYNC_ROWS = 100  # rows in a row behind the newest time: the clock was set back, and the series follows it
# A time behind the newest by more than this many windows' span (window x interval) is no replay: the data jumps
# back (a typical-year file at a month boundary, a logger's clock reset), and a new segment starts there
JUMP_WINDOWS = 10
MAX_KEYS = 100_000  # series one stream may hold: about 3.5 KB each at T=36, F=5
# A key is a sensor's name, a station code, a MAC address, a topic level: 256 characters hold any of them, and
# keep a key's own memory small beside its window (100,000 keys of 1 MB lines would otherwise need 100 GB)
MAX_KEY_CHARS = 256
# Reasons a row of the header's width is dropped for its values; its time still reads (series.Series.clock)
VALUE_REASONS = frozenset({"non-numeric", "infinite", "out of range"})
# Reasons a row is refused for its time alone, at or before its series' newest: no gap (Series._behind_the_newest)
TIME_ORDER_REASONS = frozenset({"duplicate time", "time went backwards"})
TIME_GAP, FILLED, JUMPED = 1, 2, 4  # what admit() reports about a row
SLOT_TAKEN = 8  # on the time grid: a reading in a slot that already has one; counted, not pushed
SLOTS_FILLED = 16  # on the time grid: empty slots before the row were filled (Series.slots_filled says how many)

__all__ = [
    "MISSING_TOKENS",
    "TIME_FORMATS",
    "NewestFirstError",
    "Router",
    "Series",
    "SeriesRules",
    "check_time_format",
    "detect_time_format",
    "interval_words",
    "parse_interval",
    "parse_time",
]


class NewestFirstError(InputError):
    """The rows run newest first: every step goes back in time."""


@dataclass(frozen=True)
class SeriesRules:
    """How rows become series; stored in the manifest as "series". The defaults are a file's old meaning:
    no time checks, no filling, one series."""

    time_format: str | None = None
    interval: float | None = None  # seconds; with time_format, the time checks are on
    fill_gaps: int = 0
    group_by: str | None = None
    grid_origin: float | None = None  # unix seconds; with the time checks, readings go on the interval grid

    def __post_init__(self) -> None:
        if self.fill_gaps < 0:
            raise ValueError(f"fill_gaps must be >= 0, got {self.fill_gaps}")
        if self.interval is not None and not (math.isfinite(self.interval) and self.interval > 0):
            raise ValueError(f"interval must be a positive number of seconds, got {self.interval!r}")

    @property
    def checks_time(self) -> bool:
        return self.time_format is not None and self.interval is not None

    @property
    def on_grid(self) -> bool:
        """Rows are slots of the interval grid (time semantics), not readings one after another (row semantics)."""
        return self.checks_time and self.grid_origin is not None

    def slot(self, when: float) -> int:
        """The grid slot of a time (valid when `on_grid`): the nearest grid point, a tie going to the later."""
        return math.floor((when - self.grid_origin) / self.interval + 0.5)  # type: ignore[operator]

    def slot_time(self, slot: int) -> float:
        """The time of a grid slot, in unix seconds."""
        return self.grid_origin + slot * self.interval  # type: ignore[operator]

    def to_json(self) -> dict[str, Any]:
        grid = self.interval is not None and self.grid_origin is not None
        return {
            "missing_tokens": list(MISSING_TOKENS),
            "fill_gaps": self.fill_gaps,
            "time_format": self.time_format,
            "interval_seconds": self.interval,
            "gap_when_step_exceeds": None if self.interval is None or grid else GAP_TOLERANCE * self.interval,
            "group_by": self.group_by,
            "grid_origin": None if self.grid_origin is None else iso_time(self.grid_origin),
            "semantics": "time grid" if grid else "rows",
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any] | None, where: str = "manifest") -> SeriesRules:
        if data is None:
            return cls()
        try:
            interval = data.get("interval_seconds")
            group_by = data.get("group_by")
            time_format = data.get("time_format")
            fill = data.get("fill_gaps", 0)
            if not isinstance(fill, int) or isinstance(fill, bool):
                raise TypeError(f"fill_gaps is {fill!r}")
            if interval is not None and (isinstance(interval, bool) or not isinstance(interval, (int, float))):
                raise TypeError(f"interval_seconds is {interval!r}")
            if time_format is not None:
                check_time_format(str(time_format))
            origin = data.get("grid_origin")
            if origin is not None and not isinstance(origin, str):
                raise TypeError(f"grid_origin is {origin!r}")
            return cls(
                time_format=None if time_format is None else str(time_format),
                interval=None if interval is None else float(interval),
                fill_gaps=fill,
                group_by=None if group_by is None else str(group_by),
                grid_origin=None if origin is None else _origin(origin),
            )
        except (AttributeError, TypeError, ValueError) as exc:
            raise ManifestError(f"{where}: not a usable 'series' description ({exc})") from None


def _origin(text: str) -> float:
    try:
        return parse_time(text, "iso8601")
    except BadRowError:
        raise ValueError(f"grid_origin {text!r} is not an ISO 8601 time") from None


def describe(rules: SeriesRules) -> str:
    """The rules in a line, for `edgeseq info`."""
    said = []
    if rules.on_grid:
        said.append(
            f"times {rules.time_format} on a {interval_words(rules.interval)} grid from "  # type: ignore[arg-type]
            f"{iso_time(rules.grid_origin)} (time semantics: a window is consecutive slots, the first reading "  # type: ignore[arg-type]
            "of a slot counts, an empty slot is a missing value)"
        )
    elif rules.checks_time:
        longest = interval_words(GAP_TOLERANCE * rules.interval)
        said.append(
            f"times {rules.time_format}, interval {interval_words(rules.interval)}, a step over {longest} is a gap "
            "(row semantics: a window is consecutive rows)"
        )
    said.append(
        "a missing value is a gap"
        if not rules.fill_gaps
        else f"missing values carried forward up to {rules.fill_gaps} rows"
    )
    if rules.group_by:
        said.append(f"one series per {rules.group_by!r}")
    return "; ".join(said)


class WindowBuffer:
    """The last T rows, always contiguous: each row is written at i and i+T of a [2T, F] array, no copying."""

    def __init__(self, window: int, width: int) -> None:
        self.window = window
        self._data = np.zeros((2 * window, width), dtype=np.float64)
        self._next = 0
        self.filled = 0

    def push(self, row: np.ndarray) -> None:
        self._data[self._next] = row
        self._data[self._next + self.window] = row
        self._next = (self._next + 1) % self.window
        self.filled += 1

    def push_many(self, rows: np.ndarray) -> None:
        """Push `rows` [n, F], oldest first: as n pushes, in a few array writes."""
        count = min(len(rows), self.window)
        slots = (self._next + len(rows) - count + np.arange(count)) % self.window
        self._data[slots] = self._data[slots + self.window] = rows[len(rows) - count :]
        self._next = (self._next + len(rows)) % self.window
        self.filled += len(rows)

    def reset(self) -> None:
        self.filled = 0

    def last(self) -> np.ndarray:
        """The newest row; valid while `filled >= 1`."""
        return self._data[self._next + self.window - 1]

    def newest(self, count: int) -> np.ndarray:
        """The newest `count` rows, oldest first (a view); valid while `count <= min(filled, window)`."""
        return self._data[self._next + self.window - count : self._next + self.window]

    def view(self) -> np.ndarray:
        """The buffered rows oldest first; valid while `filled >= window`."""
        return self._data[self._next : self._next + self.window]


class Series:
    """One series' state: its window of rows, the time of its last row, and its runs of filled values.

    `position` is where its newest row stands: its grid slot on the time grid, else a count of the rows pushed;
    `segment` counts its gaps. A target H positions after a window's last row, in the same segment, is the one
    the window forecasts (scoring.py pairs them)."""

    __slots__ = (
        "_backward",
        "_behind",
        "_forward",
        "_grid",
        "_max_back",
        "_max_step",
        "_runs",
        "buffer",
        "columns",
        "key",
        "last_time",
        "position",
        "rules",
        "segment",
        "slots_filled",
    )

    def __init__(self, window: int, columns: Sequence[str], rules: SeriesRules, key: str | None = None) -> None:
        self.buffer = WindowBuffer(window, len(columns))
        self.rules, self.columns, self.key = rules, tuple(columns), key
        self.last_time: float | None = None  # the newest time seen
        self._runs = [0] * len(columns)  # rows in a row each column has been filled
        self._max_step = GAP_TOLERANCE * rules.interval if rules.interval else math.inf
        self._max_back = JUMP_WINDOWS * window * rules.interval if rules.interval else math.inf
        self._forward = self._backward = self._behind = 0
        self._grid = rules.on_grid
        self.position = self.segment = 0
        self.slots_filled = 0  # empty grid slots filled before the last row pushed

    def snapshot(self) -> dict[str, Any]:
        """What this series holds, as JSON: its newest rows (oldest first), how many it has taken, its clock."""
        rows = self.buffer.newest(min(self.buffer.filled, self.buffer.window))
        return {
            "rows": rows.tolist(), "filled": self.buffer.filled, "last_time": self.last_time, "runs": list(self._runs),
            "steps": [self._forward, self._backward, self._behind], "position": self.position,
        }  # fmt: skip

    def restore(self, state: dict[str, Any]) -> None:
        """Take back a snapshot (of a series of the same window and columns)."""
        rows = np.asarray(state["rows"], dtype=np.float64).reshape(-1, len(self.columns))
        if len(rows):
            self.buffer.push_many(rows)
        self.buffer.filled = int(state["filled"])
        self.last_time = None if state["last_time"] is None else float(state["last_time"])
        self._runs = [int(n) for n in state["runs"]]
        self._forward, self._backward, self._behind = (int(n) for n in state["steps"])
        self.position = int(state.get("position", 0))  # a state file from before the grid has none

    def reset(self) -> None:
        """A gap: the next window starts afresh, and nothing is carried across it."""
        self.buffer.reset()
        self.segment += 1
        if self.rules.fill_gaps:
            self._runs = [0] * len(self.columns)

    def admit(self, row: np.ndarray, missing: list[int] | None, when: float | None, time_text: str | None) -> int:
        """Check one parsed row (NaN where `missing`) against the rules and push it; return TIME_GAP and/or
        FILLED bits. Raises BadRowError (the series then starts afresh) or NewestFirstError."""
        flags = self.slots_filled = 0
        slot = self.rules.slot(when) if self._grid and when is not None else self.position + 1
        if when is not None:
            if self.last_time is not None and when < self.last_time - self._max_back:
                self.reset()  # a jump back in time: a new segment, as after a gap
                self.last_time, self._behind = when, 0
                flags = JUMPED
            elif self.last_time is not None and when <= self.last_time:
                self._behind_the_newest(when - self.last_time, when, time_text)  # raises
            elif self._grid:
                self._advance(when)
                flags = self._to_slot(slot)
                if flags & SLOT_TAKEN:
                    return flags
            elif self._advance(when):
                self.reset()
                flags = TIME_GAP
        if missing:
            try:
                self._fill(row, missing)
            except BadRowError as exc:
                exc.time_gap = bool(flags & TIME_GAP)  # the gap is counted even though its row is dropped
                raise
            flags |= FILLED
        elif self.rules.fill_gaps and any(self._runs):
            self._runs = [0] * len(self.columns)
        self.buffer.push(row)
        self.position = slot if self._grid else self.position + 1
        return flags

    def _to_slot(self, slot: int) -> int:
        """Before a reading in grid slot `slot` (its clock moved): SLOT_TAKEN when the newest row is in that slot;
        else the empty slots between are filled (SLOTS_FILLED) under fill_gaps, or are a gap (TIME_GAP) that starts
        the series afresh. Sets `slots_filled`."""
        if not self.buffer.filled:
            return 0
        empty = slot - self.position - 1
        if empty < 0:
            return SLOT_TAKEN
        if not empty:
            return 0
        limit, runs = self.rules.fill_gaps, self._runs
        if not limit or max(runs) + empty > limit:
            self.reset()
            return TIME_GAP
        last = self.buffer.last().copy()
        for _ in range(empty):
            self.buffer.push(last)
        self._runs = [n + empty for n in runs]
        self.position, self.slots_filled = slot - 1, empty
        return SLOTS_FILLED

    def _advance(self, when: float) -> bool:
        """Move the series' clock forward to `when` (later than its newest time); True after a gap in time."""
        newest, self.last_time = self.last_time, when
        if newest is None:
            return False
        self._forward += 1
        self._behind = 0
        return when - newest > self._max_step

    def clock(self, when: float | None) -> bool:
        """A row dropped for its values (non-numeric, infinite, out of range) whose time reads: like a row with a
        missing value, it is the gap, and its time moves the clock, so the next row is no gap in time too.
        True when the dropped row itself came after a gap in time (counted, as for a missing value)."""
        if when is None or (self.last_time is not None and when <= self.last_time):
            return False
        if self._grid:
            self._advance(when)
            return bool(self.buffer.filled) and self.rules.slot(when) - self.position - 1 > self.rules.fill_gaps
        return self._advance(when)

    def admit_plain(self, rows: np.ndarray, times: np.ndarray | None) -> bool:
        """Push rows [n, F] that have no missing value, with their times (seconds, or None when the rules check
        none), if each is a row `admit` would push with no flag: every step forward and no longer than the gap
        tolerance. Then the state is what n admits leave, and True; otherwise nothing changes, and False."""
        slots = None
        if times is not None:
            newest = self.last_time
            steps = np.diff(times) if newest is None else np.diff(times, prepend=newest)
            if self._grid:  # every reading in the slot after the one before: no slot shared, none empty
                slots = np.floor((times - self.rules.grid_origin) / self.rules.interval + 0.5)
                after = slots[0] - self.position if self.buffer.filled else 1
                if not (after == 1 and (steps > 0).all() and (np.diff(slots) == 1).all()):
                    return False
            elif not bool(((steps > 0) & (steps <= self._max_step)).all()):
                return False
            if len(steps):
                self._forward += len(steps)
                self._behind = 0
            self.last_time = float(times[-1])
        if self.rules.fill_gaps and any(self._runs):
            self._runs = [0] * len(self.columns)
        self.buffer.push_many(rows)
        self.position = int(slots[-1]) if slots is not None else self.position + len(rows)
        return True

    def admit_plain_row(self, row: np.ndarray, when: float | None) -> bool:
        """`admit_plain` for one row, in scalars (a keyed stream's plain block goes a row at a time): push `row`, a
        row with no missing value, if `admit` would push it with no flag; else change nothing and return False."""
        newest, grid = self.last_time, self._grid
        slot = self.position + 1
        if when is not None:
            if newest is not None and not (when > newest and (grid or when - newest <= self._max_step)):
                return False
            if grid:
                slot = self.rules.slot(when)
                if self.buffer.filled and slot != self.position + 1:
                    return False
            if newest is not None:
                self._forward += 1
                self._behind = 0
            self.last_time = when
        if self.rules.fill_gaps and any(self._runs):
            self._runs = [0] * len(self.columns)
        self.slots_filled = 0
        self.buffer.push(row)
        self.position = slot
        return True

    def _behind_the_newest(self, step: float, when: float, time_text: str | None) -> None:
        """A row at or before the newest time seen: a bad row, but no gap. It is not pushed, so the window still
        holds readings in time order, and the next reading after the newest goes on with it: a reading delivered
        twice (MQTT QoS 1 redelivers what was not acknowledged) or replayed changes nothing. The newest time
        stays, so readings replayed out of order are all refused, not only the first; but RESYNC_ROWS rows behind
        it in a row mean the clock was set back for good: the series starts afresh on the new clock."""
        if step == 0:
            raise BadRowError("duplicate time", f"time {shown(time_text, 40)} repeats the newest time")
        self._backward += 1
        self._behind += 1
        if self._forward == 0 and self._backward >= NEWEST_FIRST_STEPS:
            if self.key is None:
                raise NewestFirstError(
                    f"the first {self._backward} time steps all go back in time: the rows run newest first; "
                    "sort them oldest first"
                )
            # one key of many running newest first is that key's problem: its rows are bad rows, and the
            # other keys' forecasts go on
            raise BadRowError("newest first", f"the rows{self._of_key()} run newest first")
        if self._behind >= RESYNC_ROWS:
            self.reset()
            self.last_time, self._behind = when, 0
        raise BadRowError("time went backwards", f"time {shown(time_text, 40)} is before the newest time")

    def _fill(self, row: np.ndarray, missing: list[int]) -> None:
        """Carry the last good value forward into each missing column, or raise BadRowError (a gap)."""
        limit = self.rules.fill_gaps
        runs = self._runs
        if not limit or self.buffer.filled == 0 or any(runs[i] >= limit for i in missing):
            if not limit:
                why = ""
            elif self.buffer.filled:
                why = f" (more than {limit} rows in a row)"
            else:
                why = " (no value to carry forward since the last gap)"
            self.reset()
            names = ", ".join(shown(self.columns[i]) for i in missing)
            raise BadRowError("missing value", f"{names} missing{why}")
        last = self.buffer.last()
        for i in range(len(runs)):
            if i in missing:
                row[i] = last[i]
                runs[i] += 1
            else:
                runs[i] = 0

    def _of_key(self) -> str:
        return "" if self.key is None else f" of {self.rules.group_by} {shown(self.key)}"


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

"""One sensor's series: its window, its clock, its slots on the time grid, and its runs of filled values;
the rules (series/__init__.py) applied to each row it is given."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from edgeseq_device.messages import shown
from edgeseq_device.rows import BadRowError
from edgeseq_device.series.buffer import WindowBuffer
from edgeseq_device.series.rules import (
    FILLED,
    GAP_TOLERANCE,
    JUMP_WINDOWS,
    JUMPED,
    NEWEST_FIRST_STEPS,
    RESYNC_ROWS,
    SLOT_TAKEN,
    SLOTS_FILLED,
    TIME_GAP,
    NewestFirstError,
    SeriesRules,
)


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

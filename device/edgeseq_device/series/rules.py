"""The series rules as data: the manifest's "series" (SeriesRules), its constants and flags, and the line
`edgeseq info` gives for them. What the rules mean is in the package's docstring (series/__init__.py)."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from edgeseq_device.errors import InputError, ManifestError
from edgeseq_device.rows import MISSING_TOKENS, BadRowError
from edgeseq_device.times import check_time_format, interval_words, iso_time, parse_time

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

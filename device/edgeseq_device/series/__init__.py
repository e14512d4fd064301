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

The package, a file a part: `rules.py` (the rules as data, the manifest's "series", and their flags),
`buffer.py` (a series' window), `sensor.py` (one sensor's series: the rules applied row by row), `router.py` (a
stream's rows to their series).
"""

from edgeseq_device.rows import MISSING_TOKENS
from edgeseq_device.series.buffer import WindowBuffer
from edgeseq_device.series.router import Router
from edgeseq_device.series.rules import (
    FILLED,
    GAP_TOLERANCE,
    JUMP_WINDOWS,
    JUMPED,
    MAX_KEY_CHARS,
    MAX_KEYS,
    NEWEST_FIRST_STEPS,
    RESYNC_ROWS,
    SLOT_TAKEN,
    SLOTS_FILLED,
    TIME_GAP,
    TIME_ORDER_REASONS,
    VALUE_REASONS,
    NewestFirstError,
    SeriesRules,
    describe,
)
from edgeseq_device.series.sensor import Series
from edgeseq_device.times import (  # re-exported: the rules' time functions were first defined here
    TIME_FORMATS,
    check_time_format,
    detect_time_format,
    interval_words,
    iso_time,
    parse_interval,
    parse_time,
)

__all__ = [
    "FILLED",
    "GAP_TOLERANCE",
    "JUMPED",
    "JUMP_WINDOWS",
    "MAX_KEYS",
    "MAX_KEY_CHARS",
    "MISSING_TOKENS",
    "NEWEST_FIRST_STEPS",
    "RESYNC_ROWS",
    "SLOTS_FILLED",
    "SLOT_TAKEN",
    "TIME_FORMATS",
    "TIME_GAP",
    "TIME_ORDER_REASONS",
    "VALUE_REASONS",
    "NewestFirstError",
    "Router",
    "Series",
    "SeriesRules",
    "WindowBuffer",
    "check_time_format",
    "describe",
    "detect_time_format",
    "interval_words",
    "iso_time",
    "parse_interval",
    "parse_time",
]

"""A sensor file as training sees it: each part of the split read as the runner reads a stream, through the
device runtime's Router (series.py there), so rows, gaps, filled values and keys mean the same in training,
evaluation and the runner; then the windows the runner would make, and what was dropped, by reason and line.
"""

from __future__ import annotations

import contextlib
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from edgeseq.data.split import PARTS, SplitPlan, assign_parts
from edgeseq.data.table import read_lines
from edgeseq.errors import DataError
from edgeseq_device.errors import InputError
from edgeseq_device.rows import BadRowError, Header, RowParser, is_header, is_missing, time_columns
from edgeseq_device.series import (
    FILLED,
    JUMPED,
    SLOT_TAKEN,
    SLOTS_FILLED,
    TIME_GAP,
    NewestFirstError,
    Router,
    SeriesRules,
    detect_time_format,
    parse_time,
)
from edgeseq_device.times import DATE_PATTERNS, detect_date_pattern

MOSTLY_MISSING = 0.5  # a feature missing in more of the training rows than this is refused
SEVERAL_SERIES = 0.1  # this share of rows repeating the time before, without --group-by: several series
LINES_SHOWN = 5  # line numbers kept per reason for the report


@dataclass(frozen=True)
class SeriesOptions:
    """What the user says about the file's rows; None means "work it out from the data"."""

    time_column: str | None = None
    time_format: str | None = None
    interval: float | None = None
    grid: bool = True  # with a time column, readings go on the interval grid (time semantics); False: rows
    fill_gaps: int = 0
    group_by: str | None = None
    delimiter: str | None = None  # None: found from the header (rows.py)
    split: SplitPlan = field(default_factory=SplitPlan)
    split_at: tuple[str, str] | None = None  # read once the time format is known


@dataclass
class Report:
    """What reading the file found: rows dropped by reason (with their first line numbers), missing values per
    column, gaps in time, filled rows, keys."""

    lines: int = 0
    dropped: Counter[str] = field(default_factory=Counter)
    dropped_lines: dict[str, list[int]] = field(default_factory=dict)
    missing: dict[str, int] = field(default_factory=dict)
    time_gaps: int = 0
    time_jumps: int = 0
    filled: int = 0
    slot_taken: int = 0  # on the time grid: readings in a slot that had one, not used
    slots_filled: int = 0  # on the time grid: empty slots filled (--fill-gaps)
    keys: int = 0

    def drop(self, reason: str, line: int) -> None:
        self.dropped[reason] += 1
        shown = self.dropped_lines.setdefault(reason, [])
        if len(shown) < LINES_SHOWN:
            shown.append(line)

    def to_json(self) -> dict[str, Any]:
        return {
            "lines": self.lines,
            "rows_dropped": {
                reason: {"rows": n, "first_lines": self.dropped_lines[reason]} for reason, n in self.dropped.items()
            },
            "missing_values": self.missing,
            "gaps_in_time": self.time_gaps,
            "jumps_back_in_time": self.time_jumps,
            "rows_filled": self.filled,
            "readings_in_a_slot_already_read": self.slot_taken,
            "empty_slots_filled": self.slots_filled,
            "keys": self.keys,
        }

    def words(self) -> list[str]:
        said = [f"{self.lines:,} data lines" + (f", {self.keys:,} keys" if self.keys else "")]
        if self.missing:
            said.append("missing values: " + ", ".join(f"{c} {n:,}" for c, n in self.missing.items()))
        for reason, n in sorted(self.dropped.items()):
            lines = ", ".join(map(str, self.dropped_lines[reason]))
            rows = "row" if n == 1 else "rows"
            said.append(f"{n:,} {rows} dropped as gaps ({reason}), first at line{'s' if n > 1 else ''} {lines}")
        if self.time_gaps:
            said.append(f"{self.time_gaps:,} gap{'s' if self.time_gaps != 1 else ''} in time")
        if self.time_jumps:
            said.append(f"{self.time_jumps:,} jump{'s' if self.time_jumps != 1 else ''} back in time (new segments)")
        if self.filled:
            said.append(f"{self.filled:,} rows filled (--fill-gaps)")
        if self.slots_filled:
            said.append(f"{self.slots_filled:,} empty grid slots filled (--fill-gaps)")
        if self.slot_taken:
            said.append(f"{self.slot_taken:,} readings in a grid slot already read (the first counts; not used)")
        return said


@dataclass(frozen=True)
class SeriesTable:
    """The rows the runner would keep, ordered by series segment (a run with no gap), one part after another."""

    path: Path
    features: tuple[str, ...]
    rules: SeriesRules
    values: np.ndarray  # [N, F] float64, filled values in place
    times: np.ndarray | None  # [N] unix seconds
    keys: np.ndarray | None  # [N] object
    lines: np.ndarray  # [N] file line numbers
    segment: np.ndarray  # [N] increasing; a window lies in one segment
    part: np.ndarray  # [N] 0 train, 1 validation, 2 test
    observed: np.ndarray  # [N, F] bool: read from the file, not filled
    line_parts: np.ndarray  # part of every data line of the file, for writing one part out
    header_lines: np.ndarray  # which data lines are a header again (columns found anew)
    report: Report
    # the file's header as found: its line, delimiter and preamble
    header: Header = field(default_factory=lambda: Header("", ",", 0))
    dialect: dict[str, Any] = field(default_factory=dict)  # the manifest's "csv" (RowParser.dialect)
    # [N] True where a reading was pushed; False for an empty grid slot filled (--fill-gaps), where the runner,
    # having no reading, makes no window. None: every row is a reading.
    reading: np.ndarray | None = None


def _ends(table: SeriesTable, part: int, window: int, horizon: int, target_index: int) -> np.ndarray:
    seg = table.segment
    t = np.arange(window - 1, len(seg) - horizon)
    ok = (seg[t - window + 1] == seg[t]) & (seg[t + horizon] == seg[t]) & (table.part[t] == part)
    ok &= table.observed[t + horizon, target_index]
    if table.reading is not None:
        ok &= table.reading[t]
    return t[ok]


def runner_window_ends(table: SeriesTable, part: str, window: int, horizon: int, target: str) -> np.ndarray:
    """Last rows t of the windows the runner makes in `part` (stride 1) whose target is known: row t + horizon
    in the same segment, with the target's value read from the file, not filled."""
    return _ends(table, PARTS.index(part), window, horizon, table.features.index(target))


def _read_times(
    texts: Sequence[str | None], time_column: str, time_format: str | None, path: Path
) -> tuple[np.ndarray, str]:
    first = next((t for t in texts if t), None)
    if first is None:
        raise DataError(f"{path}: the time column {time_column!r} is empty in every row")
    given_format = time_format is not None
    if time_format is None:
        time_format = detect_time_format(first) or _date_pattern(texts, time_column, path)
        if time_format is None:
            raise DataError(
                f"{path}: cannot read the time {first!r} (column {time_column!r}) as ISO 8601, unix seconds or "
                f"milliseconds, or a date and time such as {DATE_PATTERNS[0]!r}: "
                "give --time-format, e.g. '%d/%m/%Y %H:%M'"
            )
    times = np.full(len(texts), np.nan)
    for i, text in enumerate(texts):
        if text is not None:
            with contextlib.suppress(BadRowError):
                times[i] = parse_time(text, time_format)
    unread = [text for text, when in zip(texts, times, strict=True) if text is not None and np.isnan(when)]
    given = sum(text is not None for text in texts)
    if len(unread) > given / 2:  # a few bad times are bad rows; most of them is the wrong format
        raise DataError(
            f"{path}: {len(unread):,} of {given:,} times in column {time_column!r} do not read as "
            f"{time_format!r} (the first: {unread[0]!r}); "
            + ("check --time-format" if given_format else "give --time-format, e.g. '%d/%m/%Y %H:%M'")
        )
    return times, time_format


def _date_pattern(texts: Sequence[str | None], time_column: str, path: Path) -> str | None:
    """The one of DATE_PATTERNS that reads every time given, or None; DataError when dates read both day first and
    month first."""
    found = detect_date_pattern([t for t in texts if t and not is_missing(t)])
    if len(found) > 1 and len({pattern.split()[0] for pattern in found}) > 1:
        raise DataError(
            f"{path}: the times in column {time_column!r} read as {' and as '.join(map(repr, found))}: "
            "give --time-format"
        )
    return found[0] if found else None


def _steps_by_key(times: np.ndarray, keys: Sequence[str | None], where: np.ndarray) -> np.ndarray:
    last: dict[str | None, float] = {}
    steps = []
    for i in np.flatnonzero(where):
        key = keys[i]
        if key in last:
            steps.append(times[i] - last[key])
        last[key] = times[i]
    return np.asarray(steps)


@dataclass(frozen=True)
class _Lines:
    """Every data line of a file as the runner meets it: its fields (None when unreadable), the parser in force
    (a header again mid-file, as in concatenated files, brings its own column order), whether it is such a
    header, its key and its time text."""

    header: Header
    lines: list[Any]
    fields: list[list[str] | None]
    parsers: list[RowParser]
    headers: np.ndarray
    keys: list[str | None]
    texts: list[str | None]


def _read(path: Path, features: tuple[str, ...], options: SeriesOptions) -> _Lines:
    try:
        needed = [*features, *time_columns(options.time_column), *([options.group_by] if options.group_by else [])]
    except InputError as exc:
        raise DataError(f"--time-column: {exc}") from None
    header, lines = read_lines(path, needed, options.delimiter)

    def parser_for(text: str, delimiter: str | None) -> RowParser:
        try:
            return RowParser.of_line(text, features, options.time_column, options.group_by, delimiter)
        except InputError as exc:
            raise DataError(f"{path}: {exc}") from None

    parser = parser_for(header.line, header.delimiter)
    scratch = np.zeros(len(features))
    found = _Lines(header, lines, [], [], np.zeros(len(lines), dtype=bool), [], [])
    for i, line in enumerate(lines):
        row = None
        if isinstance(line, str):
            try:
                row = parser.split(line)
                parser.check_width(row)
            except BadRowError:
                row = None
            if is_header(line, features, options.delimiter) and not _parses(parser, row, scratch):
                parser, row = parser_for(line, options.delimiter), None  # as the runner: columns found anew
                found.headers[i] = True
        found.fields.append(row)
        found.parsers.append(parser)
        found.keys.append(parser.key(row) if row is not None else None)
        found.texts.append(parser.time_text(row) if row is not None else None)
    if not lines:
        raise DataError(f"{path} has a header and no data rows")
    return found


def _parses(parser: RowParser, row: list[str] | None, scratch: np.ndarray) -> bool:
    if row is None:
        return False
    try:
        parser.parse(row, scratch)
    except BadRowError:
        return False
    return True


def _cuts(texts: Sequence[str], time_format: str | None) -> tuple[float, float]:
    """--split-at dates, read in the data's own time format or else as ISO 8601 dates."""
    cuts = []
    for text in texts:
        for attempt in dict.fromkeys([time_format or "iso8601", "iso8601"]):
            try:
                cuts.append(parse_time(text, attempt))
                break
            except BadRowError:
                continue
        else:
            raise DataError(f"--split-at {text!r} is not a date or time (ISO 8601, or as the time column writes them)")
    return cuts[0], cuts[1]


def read_series(path: Path, features: Sequence[str], window: int, options: SeriesOptions) -> SeriesTable:
    """Read `path` and run each part of its split through the device runtime's rules, as the runner would."""
    path, features = Path(path), tuple(features)
    found = _read(path, features, options)
    keys = found.keys
    times, time_format = (None, None)
    if options.time_column:
        times, time_format = _read_times(found.texts, options.time_column, options.time_format, path)
        known = ~np.isnan(times)
        steps = _steps_by_key(times, keys, known)
        if len(steps) and (steps < 0).sum() > (steps > 0).sum():
            raise DataError(
                f"{path} runs newest first: {(steps < 0).sum():,} of {len(steps):,} time steps go back in time"
                f"{' within a key' if options.group_by else ''}; sort it oldest first"
            )
        repeats = int((steps == 0).sum())
        if not options.group_by and repeats > SEVERAL_SERIES * len(steps):
            raise DataError(
                f"{path}: {repeats:,} of {len(steps):,} rows repeat the time of the row before: several series in "
                "one file? Name their key column with --group-by"
            )
    plan = options.split
    if options.split_at is not None:
        plan = SplitPlan(plan.fractions, _cuts(options.split_at, time_format))
    parts = assign_parts(plan, len(found.lines), times, keys if options.group_by else None)

    interval = options.interval
    if times is not None and interval is None:
        steps = _steps_by_key(times, keys, ~np.isnan(times) & (parts == 0))
        steps = steps[steps > 0]
        if not len(steps):
            raise DataError(
                f"{path}: the training part has no two rows in time order ({int((parts == 0).sum()):,} lines before "
                "the split), so no interval to infer: check --split-at, or give --interval"
            )
        interval = usual_interval(float(np.median(steps)))
    origin = None
    if times is not None and options.grid:
        origin = grid_origin(times[~np.isnan(times) & (parts == 0)], interval)  # type: ignore[arg-type]
    rules = SeriesRules(time_format, interval, options.fill_gaps, options.group_by, origin)
    return _run_parts(path, features, window, rules, found, parts)


# Intervals loggers and sensors are set to, in seconds. The median step of a jittered stream with extra readings
# misses its interval by a few seconds (296 s for a 5-minute glucose monitor with 4% extra readings, in
# tests/test_time_grid.py), and a grid 4 s short drifts a slot every 75 readings; within 5% of one of these, the
# median step is taken to be it.
USUAL_INTERVALS = (
    1, 2, 5, 10, 15, 20, 30, 60, 120, 180, 300, 600, 900, 1200, 1800, 3600, 7200, 10800, 21600, 43200, 86400,
)  # fmt: skip
USUAL_WITHIN = 0.05


def usual_interval(median_step: float) -> float:
    """The usual interval within USUAL_WITHIN of the median step, else the median step itself."""
    nearest = min(USUAL_INTERVALS, key=lambda usual: abs(usual - median_step))
    return float(nearest) if abs(nearest - median_step) <= USUAL_WITHIN * nearest else median_step


def grid_origin(times: np.ndarray, interval: float) -> float:
    """The sensor's usual phase on the interval grid, from the training part's times: the circular mean of
    each time's place within its interval, as unix seconds in [0, interval) (whole seconds for an interval of a
    minute or more). A sensor that reads at :02:30 every 5 minutes gets slots centred on :02:30, :07:30, ..."""
    if not len(times):
        return 0.0
    angles = 2 * np.pi * np.mod(times, interval) / interval
    phase = float(np.arctan2(np.sin(angles).mean(), np.cos(angles).mean())) * interval / (2 * np.pi)
    phase = phase % interval
    if interval >= 60:
        phase = float(round(phase)) % interval
    return phase


def _run_parts(
    path: Path, features: tuple[str, ...], window: int, rules: SeriesRules, found: _Lines, parts: np.ndarray
) -> SeriesTable:
    lines, fields = found.lines, found.fields
    report = Report(lines=len(lines) - int(found.headers.sum()))
    missing_train = np.zeros(len(features), dtype=np.int64)
    missing_all = np.zeros(len(features), dtype=np.int64)
    train_rows = 0
    kept: list[tuple[Any, ...]] = []
    segment = -1
    all_keys: set[str | None] = set()
    parsers = list({id(parser): parser for parser in found.parsers}.values())
    dialect: dict[str, Any] = {}
    for part in range(len(PARTS)):
        router = Router(window, features, rules)
        for parser in parsers:  # each part is a stream of its own to the runner: its decimal mark decided anew
            parser.forget_decimal()
        segment_of: dict[str | None, int] = {}
        # a header again restarts every part's series, wherever it falls: the part's own stream (the sample of
        # the test part) carries it to the runner before the part's next line
        for i in np.flatnonzero((parts == part) | found.headers):
            line_number = int(i) + 2 + found.header.preamble
            line = lines[i]
            if found.headers[i]:
                router.restart()  # as the runner does at a header mid-stream
                continue
            if not isinstance(line, str):
                report.drop("line too long", line_number)
                router.unreadable()
                continue
            parser = found.parsers[i]
            try:
                series, _ = router.push(parser, fields[i] if fields[i] is not None else parser.split(line))
            except NewestFirstError as exc:
                raise DataError(f"{path}: {exc}") from None
            except BadRowError as exc:
                report.drop(exc.reason, line_number)
                report.time_gaps += exc.time_gap
                if exc.reason == "missing value":
                    _count(parser.missing, missing_all, missing_train, part)
                    train_rows += part == 0
                continue
            flags = router.flags
            if flags & SLOT_TAKEN:  # the slot's first reading counted; this one is counted, and not used
                report.slot_taken += 1
                continue
            _count(parser.missing, missing_all, missing_train, part)
            train_rows += part == 0
            report.time_gaps += bool(flags & TIME_GAP)
            report.time_jumps += bool(flags & JUMPED)
            report.filled += bool(flags & FILLED)
            if series.buffer.filled == 1:
                segment += 1
                segment_of[series.key] = segment
            all_keys.add(series.key)
            if flags & SLOTS_FILLED:  # empty grid slots before this reading, filled
                report.slots_filled += series.slots_filled
                filled = series.buffer.newest(series.slots_filled + 1)[:-1]
                for k, values in enumerate(filled):
                    slot_time = rules.slot_time(series.position - series.slots_filled + k)
                    kept.append(
                        (values.copy(), slot_time, series.key, line_number, segment_of[series.key], part,
                         np.zeros(len(features), dtype=bool), False)
                    )  # fmt: skip
            observed = np.ones(len(features), dtype=bool)
            observed[parser.missing or []] = False
            when = series.last_time if series.last_time is not None else np.nan
            row = series.buffer.last().copy()
            kept.append((row, when, series.key, line_number, segment_of[series.key], part, observed, True))
        if part == 0:
            dialect = parsers[0].dialect(found.header.preamble)  # as the training part decided it
    report.keys = len(all_keys) if rules.group_by else 0
    report.missing = {features[k]: int(n) for k, n in enumerate(missing_all) if n}
    _refuse_mostly_missing(path, features, missing_train, train_rows)
    if not kept:
        raise DataError(f"{path}: no usable row ({', '.join(f'{r} {n}' for r, n in report.dropped.items())})")
    order = np.argsort(np.array([k[4] for k in kept]), kind="stable")
    kept = [kept[i] for i in order]
    return SeriesTable(
        path=path,
        features=features,
        rules=rules,
        values=np.array([k[0] for k in kept]),
        times=np.array([k[1] for k in kept]) if rules.time_format else None,
        keys=np.array([k[2] for k in kept], dtype=object) if rules.group_by else None,
        lines=np.array([k[3] for k in kept]),
        segment=np.array([k[4] for k in kept]),
        part=np.array([k[5] for k in kept], dtype=np.int8),
        observed=np.array([k[6] for k in kept]),
        reading=np.array([k[7] for k in kept]) if rules.on_grid else None,
        line_parts=parts,
        header_lines=found.headers,
        report=report,
        header=found.header,
        dialect=dialect,
    )


def _count(missing: list[int] | None, total: np.ndarray, train: np.ndarray, part: int) -> None:
    if missing:
        total[missing] += 1
        if part == 0:
            train[missing] += 1


def _refuse_mostly_missing(path: Path, features: tuple[str, ...], missing: np.ndarray, rows: int) -> None:
    bad = [(features[k], n) for k, n in enumerate(missing) if rows and n > MOSTLY_MISSING * rows]
    if bad:
        said = ", ".join(f"{name!r} in {n:,} of {rows:,} ({n / rows:.0%})" for name, n in bad)
        raise DataError(
            f"{path}: {'a feature is' if len(bad) == 1 else 'features are'} missing in most training rows: {said}; "
            "leave it out of --features"
        )

"""A run's input a read at a time: the read's rows are parsed and their due windows staged, then the staged
windows are run back to back and their records written in one write (runner.py sets the run up and ends it).

Python work done right after a model call runs slower than the same work alone, the model having emptied the
CPU caches it relied on (measured: 16 us a row alone, 42 us between model calls); so the rows of a read are
parsed together, and its windows run together. A read whose lines are all plain (bulk.py) is parsed at once; any
other read, row by row through the rules, with a message per bad row.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from typing import Any

from edgeseq_device.bulk import PlainReader
from edgeseq_device.errors import InputError
from edgeseq_device.records import Writer
from edgeseq_device.rows import BadRowError, Header, RowParser, is_header
from edgeseq_device.scoring import Scorer
from edgeseq_device.series import FILLED, JUMPED, SLOT_TAKEN, SLOTS_FILLED, TIME_GAP
from edgeseq_device.signals import StopSignals
from edgeseq_device.sinks import SinkError
from edgeseq_device.sources.lines import Item, Notice, Refused, Reopened
from edgeseq_device.summary import EXIT_BAD_ROW, Stats, stopped
from edgeseq_device.times import iso_time
from edgeseq_device.window import PredictionError, StreamRunner

SHOWN_PER_REASON = 10  # skipped lines named per reason; a messy file's thousands are counted, not listed
# A model that fails on this many windows in a row fails on every window (a graph that asks for more memory
# than the box has, a broken file): the run stops with exit 1 rather than write a message per window forever.
# One failing window (an Embedding index out of range) is the data's; 100 in a row are the model's.
MODEL_FAILURES_IN_A_ROW = 100

STOPPED = object()  # what ReadLoop returns when a stop signal ended the run


def _finite(values: Any) -> bool:
    """No value is an infinite or NaN float (x - x is 0.0 for a finite x, NaN otherwise)."""
    return not any(v.__class__ is float and not math.isfinite(v) for v in values)


class ReadLoop:
    """One run's rows, a block (one read) at a time: each block is parsed first and its due windows staged,
    then the staged windows are run and their records written. A block of plain lines (bulk.py) is read at
    once; any other block, row by row with a message per bad row. Each method returns None to go on, an exit
    code, or STOPPED."""

    writer: Writer

    def __init__(
        self,
        fail: bool,
        runner: StreamRunner,
        stats: Stats,
        stop: StopSignals,
        say: Any,
        prog: str,
        header: Header,
        name: str,
        where: Callable[[int], str] = "line {}".format,
        finish_blocks: bool = False,
        delimiter: str | None = None,
    ) -> None:
        self.name, self.runner, self.stats, self.stop, self.say, self.prog = name, runner, stats, stop, say, prog
        self.where = where  # "line 12", or "message 11 on sensors/a/readings": the source names its rows
        # A source that acknowledges what it took (MQTT QoS 1) has its blocks finished before a stop is acted
        # on: a block is acknowledged whole, so none of its windows may be dropped (a block is at most 100)
        self.halt = None if finish_blocks else stop
        self.fail = fail  # --on-bad-row fail
        self.meta: list[tuple[int, str | None, str | None, int]] = []  # per staged window: row, time, key, line
        self.line_number, self.after_reopen = header.preamble + 1, False
        self.failures_in_a_row = 0
        self.delimiter = delimiter  # --delimiter, or None: each header's own, found as rows.py says
        self.use_header(header.line, header.delimiter)
        # On the time grid, a forecast names the slot it is for (target_time); with a Scorer (--score), forecasts
        # and the readings after them are paired. Both need where each staged window's last row stands.
        self.scorer: Scorer | None = None
        self.grid = runner.rules if runner.rules.on_grid and getattr(runner.spec, "horizon", None) else None
        self.placed: list[tuple[int, int, float]] = []  # per staged window: position, segment, persistence
        self.actuals: list[tuple[int, str | None, str | None, int, int, float, bool]] = []  # rows pushed, scored

    def score(self, scorer: Scorer) -> None:
        """Pair each forecast with its actual (scoring.py) and write the pairs as score records."""
        self.scorer = scorer
        self.stats.scoring = scorer

    @property
    def tracking(self) -> bool:
        return self.grid is not None or self.scorer is not None

    def use_header(self, line: str, delimiter: str | None = None) -> None:
        spec, rules = self.runner.spec, self.runner.rules
        # a header again, or a new file's, is split at the first delimiter that names the features
        delimiter = delimiter or self.delimiter
        self.parser = RowParser.of_line(line, spec.features, spec.time_column, rules.group_by, delimiter)
        self.parser.integers = getattr(spec, "integer_columns", {})  # a model over token ids
        bulk = not spec.states
        self.reader = PlainReader(self.parser, rules.time_format if rules.checks_time else None) if bulk else None

    def block(self, items: list[Item]) -> object:
        if self.halt is not None and self.halt.received is not None:
            return STOPPED
        if not items:
            return None
        if self.stats.first_row_at is None:
            self.stats.first_row_at = time.monotonic()
        if self.reader is None or self.after_reopen or not all(item.__class__ is str for item in items):
            return self.rows(items)
        if self.parser.key_index is not None:
            return self._keyed(items)  # type: ignore[arg-type]
        runner, stats, capacity = self.runner, self.stats, self.runner.capacity
        for start in range(0, len(items), capacity):
            if self.halt is not None and self.halt.received is not None:
                return STOPPED
            part = items[start : start + capacity]
            plain = self.reader.read(part)  # type: ignore[arg-type]
            due = None if plain is None else runner.push_plain(plain)
            if due is None:
                return self.rows(items[start:])
            row, line, texts = stats.rows + 1, self.line_number + 1, plain.time_texts
            stats.rows += len(part)
            self.line_number += len(part)
            self.meta += [(row + i, None if texts is None else texts[i], None, line + i) for i in due.tolist()]
            if self.tracking:
                self._track_plain(row, plain.values, texts, due.tolist())
            code = self.run()
            if code is not None:
                return code
        return None

    def _keyed(self, items: list[str]) -> object:
        """A keyed stream's block of plain lines: read at once (bulk.py), then each row to its key's series without
        being parsed again, its due window staged as the row path stages it. A row of a key not seen yet, or that
        is no plain step in its series (a gap, a time behind, a slot already read), takes the rules' own path."""
        plain = self.reader.read(items)  # type: ignore[union-attr]
        if plain is None:
            return self.rows(items)
        runner, stats, halt, scorer = self.runner, self.stats, self.halt, self.scorer
        series_of, router, window, stride = runner.keys.get, runner.router, runner.spec.window, runner.stride
        values, texts, keys = plain.values, plain.time_texts, plain.keys
        seconds = [None] * len(items) if plain.seconds is None else plain.seconds.tolist()
        for i, key in enumerate(keys):  # type: ignore[arg-type]
            if halt is not None and halt.received is not None:
                return STOPPED  # windows staged but not run are dropped: nothing computed is lost
            series = series_of(key)
            if series is None or not series.admit_plain_row(values[i], seconds[i]):
                code = self.rows(items[i : i + 1], run=False)
                if code is not None:
                    return code
                continue
            router.series, router.flags = series, 0
            stats.rows += 1
            self.line_number += 1
            when = None if texts is None else texts[i]
            if scorer is not None:
                self.parser.missing = None
                self._track_actual(stats.rows, when)
            extra = series.buffer.filled - window
            if extra >= 0 and extra % stride == 0:
                self._stage(when, key)
                if runner.full:
                    code = self.run()
                    if code is not None:
                        return code
        return self.run()

    def rows(self, items: list[Item], run: bool = True) -> object:
        """Row by row: the rules' own path, with a message for each bad row. What ends the run (a new header
        without a needed column, rows newest first) comes after the records of the rows before it. With `run`
        False, windows staged are left to be run with the rest of the block."""
        try:
            return self._rows(items, run)
        except InputError:
            code = self.run()
            if code is not None:
                return code
            raise

    def _rows(self, items: list[Item], run: bool = True) -> object:
        runner, stats, say, prog, halt = self.runner, self.stats, self.say, self.prog, self.halt
        features = runner.spec.features
        for line in items:
            if halt is not None and halt.received is not None:
                return STOPPED  # windows staged but not run are dropped: nothing computed is lost
            self.line_number += 1
            try:
                if line.__class__ is str:
                    if self.after_reopen:  # a new file may start with its own header
                        self.after_reopen = False
                        if is_header(line, features, self.delimiter):  # type: ignore[arg-type]
                            self.use_header(line)  # type: ignore[arg-type]
                            continue
                    stats.rows += 1
                    due, when = runner.push(self.parser, self.parser.split(line))  # type: ignore[arg-type]
                    if runner.flags:
                        stats.filled += bool(runner.flags & FILLED)
                        stats.time_gaps += bool(runner.flags & TIME_GAP)
                        stats.time_jumps += bool(runner.flags & JUMPED)
                        stats.slot_taken += bool(runner.flags & SLOT_TAKEN)
                        if runner.flags & SLOTS_FILLED:
                            stats.slots_filled += runner.router.series.slots_filled
                    if self.scorer is not None and not runner.flags & SLOT_TAKEN:
                        self._track_actual(stats.rows, when)
                    if self.parser.key_index is not None:
                        stats.keys = len(runner.keys)
                elif isinstance(line, Reopened):
                    stats.reopened += 1
                    runner.restart()
                    say(f"{prog}: reopened {self.name}: {line.reason}; a new window starts")
                    self.line_number, self.after_reopen = 0, True
                    continue
                elif isinstance(line, Notice):
                    say(f"{prog}: {line.text}")
                    self.line_number -= 1
                    continue
                elif isinstance(line, Refused):  # a message the source could not make a line of
                    stats.rows += 1
                    runner.unreadable()
                    raise BadRowError(line.reason, line.detail)
                else:
                    stats.rows += 1
                    runner.unreadable()
                    raise BadRowError("line too long", f"more than {line.limit:,} bytes")
            except BadRowError as exc:
                if line.__class__ is str and is_header(line, features, self.delimiter):  # type: ignore[arg-type]
                    # a header again (files concatenated, a writer restarted): its columns may be reordered
                    self.use_header(line)  # type: ignore[arg-type]
                    runner.restart()  # a writer restarted, or files concatenated: every series starts afresh
                    stats.rows -= 1
                    where = self.where(self.line_number)
                    say(f"{prog}: {where} is a header; columns found anew, every series starts afresh")
                    continue
                stats.skipped[exc.reason] += 1
                stats.time_gaps += exc.time_gap
                if self.fail:
                    code = self.run()  # the rows before it are run and written first
                    if code is None:
                        stopped(stats, say, prog, f"{self.where(self.line_number)}: {exc}")
                    return EXIT_BAD_ROW if code is None else code
                shown_so_far = stats.skipped[exc.reason]
                if shown_so_far <= SHOWN_PER_REASON:
                    say(f"{prog}: skipped {self.where(self.line_number)}: {exc}")
                    if shown_so_far == SHOWN_PER_REASON:
                        say(f"{prog}: further rows skipped for {exc.reason} are counted in the summary, not shown")
                continue
            if due:
                self._stage(when, runner.key)
                if runner.full or self.fail:  # --on-bad-row fail stops at the first failure, as it comes
                    code = self.run()
                    if code is not None:
                        return code
        return self.run() if run else None

    def _stage(self, when: str | None, key: str | None) -> None:
        """Stage the window of the row just pushed (its prediction is due), with what its record needs."""
        runner = self.runner
        runner.stage()
        self.meta.append((self.stats.rows, when, key, self.line_number))
        if self.tracking:
            series = runner.router.series
            target = series.buffer.last()[runner.spec.target_index]  # type: ignore[union-attr]
            self.placed.append((series.position, series.segment, float(target)))

    def _track_actual(self, row: int, when: str | None) -> None:
        """The row just pushed, as the actual of a forecast made H positions before it."""
        series, target = self.runner.router.series, self.runner.spec.target_index  # type: ignore[union-attr]
        observed = target not in (self.parser.missing or ())
        value = float(series.buffer.last()[target])
        self.actuals.append((row, when, series.key, series.position, series.segment, value, observed))

    def _track_plain(self, row: int, values: Any, texts: list[str] | None, due: list[int]) -> None:
        """A plain block's staged windows (and, scoring, its rows as actuals): one position a row, one segment."""
        series, target = self.runner.router.series, self.runner.spec.target_index  # type: ignore[union-attr]
        first, segment = series.position - len(values) + 1, series.segment
        column = values[:, target].tolist()
        self.placed += [(first + i, segment, column[i]) for i in due]
        if self.scorer is not None:
            times = texts or [None] * len(column)
            self.actuals += [(row + i, times[i], None, first + i, segment, v, True) for i, v in enumerate(column)]

    def _shown(self, count: int, message: str, what: str) -> None:
        """A window's message, for the first SHOWN_PER_REASON of its kind; the rest are counted in the summary."""
        if count <= SHOWN_PER_REASON:
            self.say(f"{self.prog}: {message}; not written")
            if count == SHOWN_PER_REASON:
                self.say(f"{self.prog}: further {what} are counted in the summary, not shown")

    def run(self) -> object:
        """Run the staged windows and write their records, in one write; a window the model fails on, or whose
        prediction is not finite, is reported instead. A stop signal received meanwhile returns STOPPED, once
        what was run is written."""
        if not self.meta and not self.actuals:
            return None
        stats, say, prog, writer = self.stats, self.say, self.prog, self.writer
        results = self.runner.run_staged(self.halt)
        records, failed, why = [], None, "--on-bad-row fail"
        forecasts: list[tuple[int, str | None, int, int, float, float]] = []  # scored: row, key, where, values
        for i, ((row, when, key, line_number), values) in enumerate(zip(self.meta, results, strict=False)):
            if values.__class__ is PredictionError:
                stats.model_failed += 1
                self.failures_in_a_row += 1
                if self.fail or self.failures_in_a_row >= MODEL_FAILURES_IN_A_ROW:
                    failed = f"{self.where(line_number)}: {values}"
                    if not self.fail:
                        why = f"the model failed on {MODEL_FAILURES_IN_A_ROW} windows in a row"
                    stats.rows = row  # the run stops here: rows of a plain read after it were not used
                    break
                self._shown(stats.model_failed, f"{self.where(line_number)}: {values}", "windows the model fails on")
                continue
            self.failures_in_a_row = 0
            first = values[0]  # type: ignore[index]
            if (first.__class__ is float and first - first != 0.0) or (len(values) > 1 and not _finite(values)):  # type: ignore[arg-type]
                stats.not_finite += 1  # inf and NaN are not JSON: reported, never written
                shown = f"{self.where(line_number)}: the prediction is {', '.join(map(repr, values))}"
                self._shown(stats.not_finite, shown, "predictions that are not finite")
                continue
            if self.placed:
                values = self._placed(i, row, key, values, forecasts)  # type: ignore[arg-type]
            records.append(writer.format(row, when, values, key))  # type: ignore[arg-type]
        self.meta.clear()
        self.placed.clear()
        forecast_rows = None
        if self.actuals:
            records, forecast_rows = self._scores(records, forecasts)
        if records:
            try:
                writer.write_all(records)
            except SinkError as exc:  # the records written whole are counted, no others
                written = len(records) - exc.unwritten
                stats.predictions += written if forecast_rows is None else sum(forecast_rows[:written])
                raise
            stats.predictions += len(records) if forecast_rows is None else sum(forecast_rows)
        if self.scorer is not None:
            for warning in self.scorer.warnings:
                say(f"{prog}: {warning}")
            self.scorer.warnings.clear()
        if failed is not None:
            stopped(stats, say, prog, failed, why)
            return EXIT_BAD_ROW
        return STOPPED if self.halt is not None and self.halt.received is not None else None

    def _placed(
        self, i: int, row: int, key: str | None, values: tuple[Any, ...], forecasts: list[tuple[Any, ...]]
    ) -> tuple[Any, ...]:
        """The i-th staged window's record values with its target_time (on the grid), and its forecast kept to be
        scored (with --score)."""
        position, segment, persistence = self.placed[i]
        if self.grid is not None:  # the slot H intervals after the window's last: the time it forecasts for
            values = (*values, iso_time(self.grid.slot_time(position + self.runner.spec.horizon)))  # type: ignore[union-attr]
        if self.scorer is not None:
            forecasts.append((row, key, position, segment, values[0], persistence))
        return values

    def _scores(
        self, records: list[str], forecasts: list[tuple[int, str | None, int, int, float, float]]
    ) -> tuple[list[str], list[bool]]:
        """The block's forecast records with a score record after each reading that settles a forecast, in row
        order (a reading's score before the forecast made at the same row); and which records are forecasts."""
        scorer, writer, grid = self.scorer, self.writer, self.grid
        merged: list[str] = []
        kinds: list[bool] = []
        f = 0
        for row, when, key, position, segment, value, observed in self.actuals:
            while f < len(forecasts) and forecasts[f][0] < row:
                merged.append(records[f])
                kinds.append(True)
                scorer.forecast(*forecasts[f][1:])  # type: ignore[union-attr]
                f += 1
            pair = scorer.actual(key, position, segment, value, observed)  # type: ignore[union-attr]
            if pair is not None:
                target_time = iso_time(grid.slot_time(position)) if grid is not None else when
                merged.append(writer.score(row, when, key, target_time, pair[0], value, pair[1]))
                kinds.append(False)
        for rest in range(f, len(forecasts)):
            merged.append(records[rest])
            kinds.append(True)
            scorer.forecast(*forecasts[rest][1:])  # type: ignore[union-attr]
        self.actuals.clear()
        return merged, kinds

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
from edgeseq_device.series import FILLED, JUMPED, TIME_GAP
from edgeseq_device.signals import StopSignals
from edgeseq_device.sinks import SinkError
from edgeseq_device.sources.lines import Item, Notice, Refused, Reopened
from edgeseq_device.summary import EXIT_BAD_ROW, Stats, stopped
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

    def use_header(self, line: str, delimiter: str | None = None) -> None:
        spec, rules = self.runner.spec, self.runner.rules
        # a header again, or a new file's, is split at the first delimiter that names the features
        delimiter = delimiter or self.delimiter
        self.parser = RowParser.of_line(line, spec.features, spec.time_column, rules.group_by, delimiter)
        self.parser.integers = getattr(spec, "integer_columns", {})  # a model over token ids
        bulk = not spec.states and self.parser.key_index is None
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
            code = self.run()
            if code is not None:
                return code
        return None

    def rows(self, items: list[Item]) -> object:
        """Row by row: the rules' own path, with a message for each bad row. What ends the run (a new header
        without a needed column, rows newest first) comes after the records of the rows before it."""
        try:
            return self._rows(items)
        except InputError:
            code = self.run()
            if code is not None:
                return code
            raise

    def _rows(self, items: list[Item]) -> object:
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
                runner.stage()
                self.meta.append((stats.rows, when, runner.key, self.line_number))
                if runner.full or self.fail:  # --on-bad-row fail stops at the first failure, as it comes
                    code = self.run()
                    if code is not None:
                        return code
        return self.run()

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
        if not self.meta:
            return None
        stats, say, prog, writer = self.stats, self.say, self.prog, self.writer
        results = self.runner.run_staged(self.halt)
        records, failed, why = [], None, "--on-bad-row fail"
        for (row, when, key, line_number), values in zip(self.meta, results, strict=False):  # fewer after a stop
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
            records.append(writer.format(row, when, values, key))  # type: ignore[arg-type]
        self.meta.clear()
        if records:
            try:
                writer.write_all(records)
            except SinkError as exc:  # the records written whole are counted, no others
                stats.predictions += len(records) - exc.unwritten
                raise
            stats.predictions += len(records)
        if failed is not None:
            stopped(stats, say, prog, failed, why)
            return EXIT_BAD_ROW
        return STOPPED if self.halt is not None and self.halt.received is not None else None

"""The streaming runner: sensor rows in, one prediction per window out, bad rows survived and reported.

The pipeline, one module a stage: `lines` (bytes to lines, following a file), `rows` (a line to values by
column name), `series` (missing values, time, gaps and keys: the rules training shares), `window` (values to a
prediction; no window spans a gap), `records` (a prediction to a JSON or CSV record); `task` says what the
model is (a forecaster, or a general sequence model) and checks it against the model before any row. This
module runs them over a stream and keeps the promises a user relies on:

- nothing computed is lost: a record is written and counted whole before a stop signal (SIGINT, SIGTERM) is
  acted on, and the summary's count is the number of records written;
- bad input never crashes the stream: a bad row is reported with its line number and counted, and is a gap;
- a broken stderr never stops the work (messages.Messages); a closed stdout ends it quietly;
- nothing is run before the model, its manifest and the stream's header have been checked.
"""

from __future__ import annotations

import contextlib
import io
import math
import os
import signal
import stat
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

import numpy as np

from edgeseq_device.errors import DeviceError, InputError
from edgeseq_device.lines import MAX_LINE_BYTES, LineSource, Notice, Reopened, TooLong
from edgeseq_device.manifest import manifest_path_for
from edgeseq_device.messages import Messages, point_at_devnull
from edgeseq_device.model import load_model
from edgeseq_device.records import Writer
from edgeseq_device.rows import BadRowError, RowParser, is_header, split_line
from edgeseq_device.series import FILLED, TIME_GAP
from edgeseq_device.signals import StopRequested, StopSignals
from edgeseq_device.task import resolve_rules, resolve_spec
from edgeseq_device.window import PredictionError, StreamRunner

DEFAULT_MODEL = Path("exported/sensor_lstm.onnx")
SHOWN_PER_REASON = 10  # skipped lines named per reason; a messy file's thousands are counted, not listed
EXIT_OK, EXIT_BAD_ROW, EXIT_USAGE = 0, 1, 2  # and 128 + the signal after SIGINT (130) or SIGTERM (143)


@dataclass(frozen=True)
class RunOptions:
    """Everything `edgeseq run` takes; the task fields are for a model without a manifest."""

    stream: str
    model: Path = DEFAULT_MODEL
    follow: bool = False
    stride: int = 1
    format: str = "jsonl"
    output: str | None = None
    threads: int = 1
    on_bad_row: str = "skip"
    features: tuple[str, ...] | None = None
    target: str | None = None
    window: int | None = None
    horizon: int | None = None
    time_column: str | None = None
    input_scale: tuple[float, ...] | None = None
    target_scale: float | None = None
    poll_seconds: float = 0.2
    progress_seconds: float = 10.0
    max_line: int = MAX_LINE_BYTES

    def task_overrides(self) -> dict[str, Any]:
        given = {
            "features": self.features,
            "target": self.target,
            "window": self.window,
            "horizon": self.horizon,
            "time_column": self.time_column,
            "input_scale": self.input_scale,
            "target_scale": self.target_scale,
        }
        return {k: v for k, v in given.items() if v is not None}


@dataclass
class Stats:
    rows: int = 0
    predictions: int = 0
    skipped: Counter[str] = field(default_factory=Counter)
    filled: int = 0
    time_gaps: int = 0
    not_finite: int = 0
    model_failed: int = 0
    reopened: int = 0
    keys: int = 0
    first_row_at: float | None = None
    finished_at: float | None = None

    def line(self, prog: str, final: bool) -> str:
        now = time.monotonic()
        elapsed = (self.finished_at or now) - self.first_row_at if self.first_row_at is not None else 0.0
        rate = self.rows / elapsed if elapsed > 0 else 0.0
        reasons = ", ".join(f"{reason} {n}" for reason, n in sorted(self.skipped.items()))
        skipped = sum(self.skipped.values())
        extra = f", {self.filled} rows filled (--fill-gaps)" if self.filled else ""
        extra += f", {self.time_gaps} gaps in time" if self.time_gaps else ""
        extra += f", {self.keys} series" if self.keys else ""
        extra += f", {self.not_finite} predictions not finite (not written)" if self.not_finite else ""
        extra += f", the model failed on {self.model_failed} windows (not written)" if self.model_failed else ""
        extra += f", input reopened {self.reopened} times" if self.reopened else ""
        return (
            f"{prog}: {'done' if final else 'progress'}: {self.rows} rows read, {self.predictions} predictions, "
            f"{skipped} rows skipped{f' ({reasons})' if reasons else ''}{extra}, {elapsed:.2f} s, {rate:,.0f} rows/s"
        )


def _same_file(a: str | Path, b: str | Path) -> bool:
    try:
        return os.path.samefile(a, b)
    except OSError:  # one of them does not exist (yet)
        return False


def _check_output(options: RunOptions) -> None:
    """Refuse an --output that would overwrite the input or the model: opening it empties it."""
    if options.output is None:
        return
    model = Path(options.model)
    protected = {"--stream": options.stream, "--model": model, "the model's manifest": manifest_path_for(model)}
    for what, path in protected.items():
        if path != "-" and _same_file(options.output, path):
            raise InputError(f"--output {options.output} is {what}: writing records there would destroy it")
    if options.stream == "-" and _stdin_is(options.output):
        raise InputError(f"--output {options.output} is the file on stdin: writing records there would destroy it")


def _is_terminal(stream: TextIO | None) -> bool:
    try:
        return stream is not None and stream.isatty()
    except (OSError, ValueError):
        return False


def _stdin_is(path: str) -> bool:
    try:
        stdin, other = os.fstat(sys.stdin.fileno()), os.stat(path)
    except (OSError, ValueError, AttributeError):  # no such file yet, or no real stdin
        return False
    return (stdin.st_dev, stdin.st_ino) == (other.st_dev, other.st_ino)


def run_stream(options: RunOptions, stdout: TextIO, stderr: TextIO, prog: str = "edgeseq") -> int:
    """Run `options`; return the exit code. Records go to `stdout` (or --output), everything else to `stderr`.

    Exit codes: 0 done (or stdout closed by its reader), 1 a bad row under --on-bad-row fail or records
    that cannot be written (a full disk), 2 bad usage, model, manifest or stream (header, not text,
    unreadable), 130 SIGINT, 143 SIGTERM; after a signal every record computed has been written and the
    summary says how many.
    """
    messages = Messages(stderr)
    say = messages.say
    if options.format not in ("jsonl", "csv"):
        say(f"{prog}: error: --format must be jsonl or csv, got {options.format!r}")
        return EXIT_USAGE
    if options.on_bad_row not in ("skip", "fail"):
        say(f"{prog}: error: --on-bad-row must be skip or fail, got {options.on_bad_row!r}")
        return EXIT_USAGE
    stats = Stats()
    # SIGHUP asks a service to reopen its followed file; on a terminal it keeps its default (a closed terminal
    # ends the run)
    with StopSignals(reopen=options.follow and not _is_terminal(stderr)) as stop:
        try:
            model = load_model(options.model, threads=options.threads, require_manifest=False)
            spec = resolve_spec(model, options.task_overrides())
            rules = resolve_rules(model, spec)
            runner = StreamRunner(model, spec, options.stride, rules)
            _check_output(options)
            source = LineSource(
                options.stream, follow=options.follow, poll_seconds=options.poll_seconds,
                max_line=options.max_line, stop=stop,
            )  # fmt: skip
        except DeviceError as exc:
            say(f"{prog}: error: {exc}")
            return EXIT_USAGE
        except StopRequested:  # while waiting for a FIFO's writer
            pass
        else:
            try:
                # a value near float32's limit overflows in scaling: the forecast is then reported as not
                # finite, and numpy's warning would only add two lines of source code to stderr
                with np.errstate(over="ignore", invalid="ignore"):
                    code = _stream(options, source, runner, stats, stop, stdout, say, prog)
            finally:
                source.close()
            if code is not None:
                return code
        stats.finished_at = time.monotonic()
        say(f"{prog}: {'interrupted' if stop.name == 'SIGINT' else 'stopped by ' + stop.name}")
        say(stats.line(prog, final=True))
        return 128 + (stop.received or signal.SIGINT)


def _stream(
    options: RunOptions,
    source: LineSource,
    runner: StreamRunner,
    stats: Stats,
    stop: StopSignals,
    stdout: TextIO,
    say: Any,
    prog: str,
) -> int | None:
    """The loop over rows; returns the exit code, or None when a stop signal ended it."""
    spec = runner.spec
    sink: TextIO | None = None
    try:
        lines = iter(source)
        try:
            header = next(lines, None)
            while isinstance(header, (Reopened, Notice)):  # a followed file replaced before it had a header
                say(
                    f"{prog}: reopened {source.name}: {header.reason}"
                    if isinstance(header, Reopened)
                    else f"{prog}: {header.text}"
                )
                header = next(lines, None)
        except InputError as exc:
            say(f"{prog}: error: {exc}")
            return EXIT_USAGE
        if isinstance(header, TooLong):
            say(f"{prog}: error: {source.name}: the header line is longer than {header.limit:,} bytes")
            return EXIT_USAGE
        if header is None or isinstance(header, Reopened) or not header.strip():
            say(f"{prog}: error: {source.name} has no header row")
            return EXIT_USAGE

        def parser_for(line: str) -> RowParser:
            return RowParser(split_line(line), spec.features, spec.time_column, runner.rules.group_by)

        try:
            parser = parser_for(header)
        except InputError as exc:
            say(f"{prog}: error: {source.name}: {exc}")
            return EXIT_USAGE
        if options.output is None and stdout is None:  # `>&-`: Python gives sys.stdout = None
            say(f"{prog}: error: stdout is closed: give --output FILE")
            return EXIT_USAGE
        try:
            sink = stdout if options.output is None else open(options.output, "w", encoding="utf-8")  # noqa: SIM115
        except OSError as exc:
            say(f"{prog}: error: cannot write {options.output}: {exc.strerror or exc}")
            return EXIT_USAGE
        if sink is stdout and hasattr(stdout, "reconfigure"):
            # a time text the terminal's encoding cannot show (PYTHONIOENCODING=ascii) is escaped, not fatal
            stdout.reconfigure(errors="backslashreplace")
        live = _live(options, sink)
        writer = Writer(
            sink, options.format, spec.time_column is not None, spec.record_fields, runner.rules.group_by, live
        )
        progress_every = options.progress_seconds
        next_progress = time.monotonic() + progress_every if progress_every > 0 else math.inf
        line_number, after_reopen = 1, False
        for line in lines:
            if stop.received is not None:
                return None
            line_number += 1
            if stats.first_row_at is None:
                stats.first_row_at = time.monotonic()
            try:
                if line.__class__ is str:
                    if after_reopen:  # a new file may start with its own header
                        after_reopen = False
                        if is_header(line, spec.features):
                            parser = parser_for(line)
                            continue
                    stats.rows += 1
                    due, when = runner.push(parser, split_line(line))
                    if runner.flags:
                        stats.filled += bool(runner.flags & FILLED)
                        stats.time_gaps += bool(runner.flags & TIME_GAP)
                    if parser.key_index is not None:
                        stats.keys = len(runner.keys)
                elif isinstance(line, Reopened):
                    stats.reopened += 1
                    runner.restart()
                    say(f"{prog}: reopened {source.name}: {line.reason}; a new window starts")
                    line_number, after_reopen = 0, True
                    continue
                elif isinstance(line, Notice):
                    say(f"{prog}: {line.text}")
                    line_number -= 1
                    continue
                else:
                    stats.rows += 1
                    runner.unreadable()
                    raise BadRowError("line too long", f"more than {line.limit:,} bytes")
            except BadRowError as exc:
                if line.__class__ is str and is_header(line, spec.features):
                    # a header again (files concatenated, a writer restarted): its columns may be reordered
                    parser = parser_for(line)
                    runner.restart()  # a writer restarted, or files concatenated: every series starts afresh
                    stats.rows -= 1
                    say(f"{prog}: line {line_number} is a header; columns found anew, every series starts afresh")
                    continue
                stats.skipped[exc.reason] += 1
                stats.time_gaps += exc.time_gap
                if options.on_bad_row == "fail":
                    return _stopped(stats, say, prog, f"line {line_number}: {exc}")
                shown_so_far = stats.skipped[exc.reason]
                if shown_so_far <= SHOWN_PER_REASON:
                    say(f"{prog}: skipped line {line_number}: {exc}")
                    if shown_so_far == SHOWN_PER_REASON:
                        say(f"{prog}: further rows skipped for {exc.reason} are counted in the summary, not shown")
                continue
            if due:
                try:
                    values = runner.predict()
                except PredictionError as exc:
                    stats.model_failed += 1
                    if options.on_bad_row == "fail":
                        return _stopped(stats, say, prog, f"line {line_number}: {exc}")
                    say(f"{prog}: line {line_number}: {exc}; not written")
                    continue
                bad = [v for v in values if v.__class__ is float and not math.isfinite(v)]
                if bad:  # inf and NaN are not JSON: reported, never written
                    stats.not_finite += 1
                    say(f"{prog}: line {line_number}: the prediction is {', '.join(map(repr, values))}; not written")
                else:
                    writer.write(stats.rows, when, values, runner.key)
                    stats.predictions += 1
            if time.monotonic() >= next_progress:
                if not live:  # a file being written shows its progress too
                    sink.flush()
                say(stats.line(prog, final=False))
                next_progress = time.monotonic() + progress_every
        if stop.received is not None:
            return None
        sink.flush()  # a file sink's one flush: a full disk is still reported, with exit code 1
    except StopRequested:
        return None
    except BrokenPipeError:
        if sink is stdout:  # the reader of the records went away (`| head`): everything computed was written
            silence_stdout()
            return EXIT_OK
        say(f"{prog}: error: cannot write {options.output}: its reader went away")
        return EXIT_BAD_ROW
    except OSError as exc:  # a full disk, a device gone: what was written before it stays
        say(f"{prog}: error: cannot write {options.output or 'stdout'}: {exc.strerror or exc}")
        return EXIT_BAD_ROW
    except InputError as exc:  # the input stopped being readable; a new file is not text or lacks a column
        say(f"{prog}: error: {source.name}: {exc}" if source.name not in str(exc) else f"{prog}: error: {exc}")
        stats.finished_at = time.monotonic()
        say(stats.line(prog, final=True))
        return EXIT_USAGE
    finally:
        # after a stop signal or --on-bad-row fail, every record computed is written here; a flush that fails
        # again (a full disk) was already reported
        if sink is not None:
            with contextlib.suppress(OSError, ValueError):
                if sink is stdout:
                    sink.flush()
                else:
                    sink.close()
    stats.finished_at = time.monotonic()
    say(stats.line(prog, final=True))
    return EXIT_OK


def _live(options: RunOptions, sink: TextIO) -> bool:
    """Whether records go to a live consumer, who must see each at once (a terminal, a pipe, a FIFO, a socket,
    or any sink of a --follow or stdin run); a regular file written from a file is flushed at the end, not per
    record, which a flush per record would slow."""
    if options.follow or options.stream == "-":
        return True
    try:
        mode = os.fstat(sink.fileno()).st_mode
    except (OSError, ValueError, AttributeError, io.UnsupportedOperation):  # an object without a descriptor
        return True
    return not stat.S_ISREG(mode)


def _stopped(stats: Stats, say: Any, prog: str, what: str) -> int:
    """--on-bad-row fail: say what stopped the run and the summary; exit 1."""
    say(f"{prog}: error: {what}; stopping (--on-bad-row fail)")
    stats.finished_at = time.monotonic()
    say(stats.line(prog, final=True))
    return EXIT_BAD_ROW


def silence_stdout() -> None:
    """After a closed stdout pipe: the interpreter's final flush must raise nothing either."""
    point_at_devnull(sys.stdout)

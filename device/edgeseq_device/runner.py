"""The streaming runner: sensor rows in, one prediction per window out, bad rows survived and reported.

The pipeline, one module a stage: `lines` (bytes to lines, a read's worth at a time, following a file), `rows` (a
line to values by column name), `series` (missing values, time, gaps and keys: the rules training shares),
`window` (values to a prediction; no window spans a gap), `records` (a prediction to a JSON or CSV record), and
`sinks` (where records go); `task` says what the model is (a forecaster, or a general sequence model) and checks
it against the model before any row. This module sets a run up and ends it; `reads` runs the stages over the
stream one read at a time: the read's rows are parsed and their due windows staged, then the staged windows are
run and their records written in one write. A read of plain lines (`bulk`: no bad row, no missing value, no
gap) is parsed at once with the same result as row by row. Together they keep the promises a user relies on:

- nothing computed is lost: a record is written and counted whole before a stop signal (SIGINT, SIGTERM) is
  acted on, and the summary's count is the number of records written; a stop ends the run at the next row or
  window, and windows staged but not yet run are dropped;
- bad input never crashes the stream: a bad row is reported with its line number and counted, and is a gap;
- a broken stderr never stops the work (messages.Messages); a closed stdout ends it quietly;
- a live reader (a pipe, a terminal, a followed stream) gets each block's records as soon as they are made;
- nothing is run before the model, its manifest (and, with --trust, its signature) and the stream's header have
  been checked.
"""

from __future__ import annotations

import contextlib
import errno
import math
import signal
import time
from collections.abc import Iterator
from dataclasses import dataclass, replace
from itertools import chain
from pathlib import Path
from typing import Any, TextIO

import numpy as np

from edgeseq_device import state
from edgeseq_device.errors import DeviceError, InputError
from edgeseq_device.messages import Messages
from edgeseq_device.metrics import DEFAULT_KEYS, serve
from edgeseq_device.model import companion_path, load_companion, load_model
from edgeseq_device.notify import Notifier
from edgeseq_device.reads import STOPPED, Item, ReadLoop
from edgeseq_device.records import Writer
from edgeseq_device.rows import Header, HeaderSearch, check_delimiter, time_columns
from edgeseq_device.scoring import ScoreOptions, Scorer
from edgeseq_device.signals import StopRequested, StopSignals
from edgeseq_device.sinks import (
    ReaderStalled,
    RecordSink,
    SinkError,
    check_output,
    is_terminal,
    open_sink,
    silence_stdout,
)
from edgeseq_device.sources import Source, is_mqtt, open_source
from edgeseq_device.sources.lines import MAX_LINE_BYTES, Notice, Reopened, TooLong
from edgeseq_device.summary import EXIT_BAD_ROW, EXIT_OK, EXIT_USAGE, Stats
from edgeseq_device.task import resolve_rules, resolve_spec
from edgeseq_device.trust import Trust
from edgeseq_device.window import StreamRunner

DEFAULT_MODEL = Path("exported/sensor_lstm.onnx")
# Windows a call when more are due (a backlog, a burst, many keys at once) and the model's batched file gives
# the single-window file's outputs bit for bit: 8 to 64 ran about 2x faster a window than 1 here (MEASURED.md)
BATCH = 32


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
    delimiter: str | None = None  # --delimiter; None: found from the header, as rows.py says
    input_scale: tuple[float, ...] | None = None
    target_scale: float | None = None
    poll_seconds: float = 0.2
    progress_seconds: float = 10.0
    max_line: int = MAX_LINE_BYTES
    # MQTT (--stream or --output mqtt:// or mqtts://): who we are to the broker, and how it is checked
    mqtt_credentials: str | None = None
    mqtt_ca: str | None = None
    mqtt_cert: str | None = None
    mqtt_key: str | None = None
    mqtt_insecure: bool = False
    mqtt_plaintext_password: bool = False
    mqtt_client_id: str | None = None
    mqtt_fields: tuple[str, ...] = ()
    state: str | None = None  # --state FILE: the series kept across a restart (state.py)
    batch: int | None = None  # windows a call at most; None: BATCH when the batched file is bit-identical, else 1
    trust: tuple[str, ...] = ()  # --trust: public keys (or folders of them); with any, only signed models load
    score: bool = False  # --score: each forecast paired with its actual as it arrives (scoring.py)
    score_window: int = ScoreOptions.rolling
    drift_factor: float = ScoreOptions.drift_factor
    drift_after: int = ScoreOptions.drift_after
    metrics: str | None = None  # --metrics HOST:PORT: Prometheus metrics served there (metrics.py)
    metrics_keys: int = DEFAULT_KEYS  # --metrics-keys: keys with their own per-key series

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
    if options.delimiter is not None:
        if is_mqtt(options.stream):
            why = "an MQTT message is JSON or a comma-separated line"
            say(f"{prog}: error: --delimiter is for a CSV file or stdin: {why}")
            return EXIT_USAGE
        try:
            options = replace(options, delimiter=check_delimiter(options.delimiter))
        except InputError as exc:
            say(f"{prog}: error: {exc}")
            return EXIT_USAGE
    if options.score and options.format != "jsonl":
        say(f"{prog}: error: --score writes score records as JSON lines beside the forecasts: use --format jsonl")
        return EXIT_USAGE
    try:
        score_options = ScoreOptions(options.score_window, options.drift_factor, options.drift_after)
    except ValueError as exc:
        say(f"{prog}: error: {exc}")
        return EXIT_USAGE
    stats = Stats()
    # SIGHUP asks a service to reopen its followed file; on a terminal it keeps its default (a closed terminal
    # ends the run)
    notifier = Notifier()  # systemd (Type=notify): READY=1, the watchdog's WATCHDOG=1, STOPPING=1 (notify.py)
    with StopSignals(reopen=options.follow and not is_terminal(stderr)) as stop, contextlib.ExitStack() as ends:
        ends.callback(notifier.stopping)
        if notifier.every:  # the loop's waits for input ping the watchdog, so a stuck loop does not
            stop.idle = notifier.alive
        metrics = None
        try:
            trust = Trust.load(options.trust) if options.trust else None
            model = load_model(options.model, threads=options.threads, require_manifest=False, trust=trust)
            spec = resolve_spec(model, options.task_overrides())
            rules = resolve_rules(model, spec)
            check_output(options)
            metrics = serve(options, stats, model, ends, say, prog)  # bound, or refused, before the source opens
            columns = (*time_columns(spec.time_column), *spec.features)
            source = open_source(options, stop, columns, rules.group_by)
        except DeviceError as exc:
            say(f"{prog}: error: {exc}")
            return EXIT_USAGE
        except StopRequested:  # while waiting for a FIFO's writer, or a broker
            source = None
        try:
            if source is not None and source.key_column is not None and source.key_column != rules.group_by:
                rules = replace(rules, group_by=source.key_column)  # MQTT topic levels key the series
            runner = StreamRunner(model, spec, options.stride, rules)
            scorer = _scorer(model, spec, score_options) if options.score else None
            if options.batch != 1:
                companion = load_companion(model, threads=options.threads)
                listed = companion_path(model)
                if companion is None and listed is not None:
                    say(f"{prog}: {listed.name}, the model's batched companion, is not beside it: one window a call")
                if companion is not None and (companion.bit_identical or options.batch is not None):
                    runner.use_companion(companion, options.batch or BATCH)
            if options.state is not None:
                say(f"{prog}: {state.load(options.state, runner, stats)}")
            if metrics is not None:
                runner.observe = metrics.observe
        except DeviceError as exc:
            if source is not None:
                source.close()
            say(f"{prog}: error: {exc}")
            return EXIT_USAGE
        if source is not None:
            notifier.ready()
            try:
                # a value near float32's limit overflows in scaling: the forecast is then reported as not
                # finite, and numpy's warning would only add two lines of source code to stderr
                with np.errstate(over="ignore", invalid="ignore"):
                    code = _stream(options, source, runner, stats, stop, stdout, say, prog, scorer)
            finally:
                if options.state is not None and stats.first_row_at is not None:  # a run that read no row changed none
                    try:
                        say(f"{prog}: {state.save(options.state, runner, stats)}")
                    except OSError as exc:
                        say(f"{prog}: error: cannot save the state to {options.state}: {exc.strerror or exc}")
                source.close()
            if code is not None:
                return code
        stats.finished_at = time.monotonic()
        say(f"{prog}: {'interrupted' if stop.name == 'SIGINT' else 'stopped by ' + stop.name}")
        say(stats.line(prog, final=True))
        return 128 + (stop.received or signal.SIGINT)


def _stream(
    options: RunOptions,
    source: Source,
    runner: StreamRunner,
    stats: Stats,
    stop: StopSignals,
    stdout: TextIO,
    say: Any,
    prog: str,
    scorer: Scorer | None = None,
) -> int | None:
    """The loop over blocks of rows; returns the exit code, or None when a stop signal ended it."""
    spec = runner.spec
    sink: RecordSink | None = None
    try:
        blocks = source.blocks()
        needed = (*spec.features, *time_columns(spec.time_column))
        needed += (runner.rules.group_by,) if runner.rules.group_by else ()
        try:
            header, rest = _header(blocks, say, prog, source.name, HeaderSearch(needed, options.delimiter))
        except InputError as exc:
            say(f"{prog}: error: {source.name}: {exc}" if source.name not in str(exc) else f"{prog}: error: {exc}")
            return EXIT_USAGE
        if isinstance(header, TooLong):
            say(f"{prog}: error: {source.name}: the header line is longer than {header.limit:,} bytes")
            return EXIT_USAGE
        if header is None:
            say(f"{prog}: error: {source.name} has no header row")
            return EXIT_USAGE
        if header.preamble or header.delimiter != ",":
            say(f"{prog}: {source.name}: {header.words()}")
        try:
            loop = ReadLoop(
                options.on_bad_row == "fail", runner, stats, stop, say, prog, header, source.name, source.where,
                finish_blocks=is_mqtt(options.stream), delimiter=options.delimiter,
            )  # fmt: skip
        except InputError as exc:
            say(f"{prog}: error: {source.name}: {exc}")
            return EXIT_USAGE
        if options.output is None and stdout is None:  # `>&-`: Python gives sys.stdout = None
            say(f"{prog}: error: stdout is closed: give --output FILE")
            return EXIT_USAGE
        try:
            # a time text the sink's encoding cannot show (PYTHONIOENCODING=ascii) is escaped, not fatal
            sink = open_sink(options, stdout, stopping=lambda: stop.received is not None)
        except OSError as exc:
            say(f"{prog}: error: cannot write {options.output}: {exc.strerror or exc}")
            return EXIT_USAGE
        except InputError as exc:  # an MQTT output the broker refuses, a setting it cannot use
            say(f"{prog}: error: {exc}")
            return EXIT_USAGE
        live = sink.live
        fields = (*spec.record_fields, *(("target_time",) if loop.grid is not None else ()))
        loop.writer = Writer(sink, options.format, spec.time_column is not None, fields, runner.rules.group_by)
        if scorer is not None:
            loop.score(scorer)
        progress_every = options.progress_seconds
        next_progress = time.monotonic() + progress_every if progress_every > 0 else math.inf
        for block in chain((rest,), blocks):
            code = loop.block(block)
            if code is not None:
                return None if code is STOPPED else code
            # the source acknowledges the block's items (an MQTT source, its messages) once their records are out:
            # at once for a file or a pipe, when the broker has acknowledged them for an MQTT sink
            sink.when_out(source.taken())
            if time.monotonic() >= next_progress:
                if not live:  # a file being written shows its progress too
                    _settle(sink.flush, stats)
                say(stats.line(prog, final=False))
                next_progress = time.monotonic() + progress_every
        if stop.received is not None:
            return None
        _settle(sink.flush, stats)  # a file's last records: a full disk is still reported, with exit code 1
    except StopRequested:
        return None
    except ReaderStalled as exc:  # after a stop signal: the summary counts the records its reader took
        say(f"{prog}: {options.output or 'stdout'}: {exc.strerror}; the records after those are not written")
        return None
    except OSError as exc:  # a full disk, a device gone, a reader gone: what was written before it stays
        if exc.errno == errno.EPIPE:
            if options.output is None:  # the reader of the records went away (`| head`): as `head` wants
                silence_stdout()
                return EXIT_OK
            say(f"{prog}: error: cannot write {options.output}: its reader went away")
            return EXIT_BAD_ROW
        say(
            f"{prog}: error: cannot write {options.output or 'stdout'}: {exc.strerror or exc}; "
            f"{stats.predictions:,} records written"
        )
        return EXIT_BAD_ROW
    except InputError as exc:  # the input stopped being readable; a new file is not text or lacks a column
        say(f"{prog}: error: {source.name}: {exc}" if source.name not in str(exc) else f"{prog}: error: {exc}")
        stats.finished_at = time.monotonic()
        say(stats.line(prog, final=True))
        return EXIT_USAGE
    finally:
        # after a stop signal or --on-bad-row fail, every record computed is written here; a write that fails
        # again (a full disk) was already reported
        if sink is not None:
            with contextlib.suppress(OSError, ValueError):
                _settle(sink.close, stats)
    stats.finished_at = time.monotonic()
    say(stats.line(prog, final=True))
    return EXIT_OK


def _scorer(model: Any, spec: Any, options: ScoreOptions) -> Scorer:
    """--score: a forecaster's scorer, with the manifest's test RMSE (when it has one) as the drift reference."""
    if not hasattr(spec, "horizon"):
        raise InputError(
            "--score is for a forecaster, whose actuals come later in the same stream; this model is not one"
        )
    metrics = model.manifest.data.get("metrics") if model.manifest is not None else None
    reference = None
    if isinstance(metrics, dict) and metrics.get("part") == "test" and isinstance(metrics.get("model"), dict):
        rmse = metrics["model"].get("rmse")
        reference = float(rmse) if isinstance(rmse, (int, float)) and math.isfinite(rmse) and rmse > 0 else None
    return Scorer(spec.horizon, options, reference)


def _settle(finish: Any, stats: Stats) -> None:
    """A sink's flush or close: the records it could not write are taken off the count, then the error goes on."""
    try:
        finish()
    except SinkError as exc:
        stats.predictions -= exc.unwritten
        raise


def _header(
    blocks: Iterator[list[Item]], say: Any, prog: str, name: str, search: HeaderSearch
) -> tuple[Header | TooLong | None, list[Item]]:
    """The stream's header (rows.HeaderSearch: within its first lines, its preamble counted) and the rest of its
    block, or None at the end of an input without a line; a followed file replaced before it had a header is said,
    and searched anew. Raises MissingColumnError when its first lines hold no header."""
    for block in blocks:
        for i, item in enumerate(block):
            if isinstance(item, Reopened):
                say(f"{prog}: reopened {name}: {item.reason}")
                search = HeaderSearch(search.columns, search.delimiter)
            elif isinstance(item, Notice):
                say(f"{prog}: {item.text}")
            elif isinstance(item, str):
                header = search.offer(item)
                if header is not None:
                    return header, block[i + 1 :]
            elif isinstance(item, TooLong):
                return item, block[i + 1 :]
    if search.candidates:
        raise search.refusal()
    return None, []

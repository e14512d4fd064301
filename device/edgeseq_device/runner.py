"""The streaming runner: sensor rows in, one forecast per window out, bad rows survived and reported.

Window semantics: a ring buffer keeps the last T good rows. A skipped (bad) row is a gap, and a window never
spans a gap: after one, the buffer refills with T good rows before the next forecast. A forecast comes out
once the buffer is full and then every `stride` good rows.
"""

from __future__ import annotations

import io
import json
import sys
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

import numpy as np
import onnxruntime as ort

from edgeseq_device.errors import DeviceError, InputError, ManifestError, SignatureError
from edgeseq_device.forecast import FORMULATION, ForecastSpec
from edgeseq_device.model import Model, load_model
from edgeseq_device.rows import BadRowError, RowParser, split_line

DEFAULT_MODEL = Path("exported/sensor_lstm.onnx")
EXIT_OK, EXIT_BAD_ROW, EXIT_USAGE, EXIT_INTERRUPTED = 0, 1, 2, 130


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


_OPTION = {
    "features": "--features",
    "target": "--target",
    "window": "--window",
    "horizon": "--horizon",
    "input_scale": "--input-scale",
    "target_scale": "--target-scale",
}


def resolve_spec(model: Model, overrides: dict[str, Any]) -> ForecastSpec:
    """The forecaster description: from the manifest when there is one, else from the options given.

    With a manifest, an option that contradicts it is refused. Without one, every task field must be given;
    the message lists what is missing.
    """
    if model.manifest is not None:
        data = dict(model.manifest.data)
        if data.get("kind") == "letters":
            raise ManifestError(
                f"{model.path} is the letter model: `run` streams sensor rows into a forecaster; "
                "for letters use `edgeseq letters` (one sequence per argument or stdin line)"
            )
        if data.get("kind") != "forecaster":
            raise ManifestError(f"{model.path} is not a forecaster (kind {data.get('kind')!r})")
        spec = ForecastSpec.from_json(data, str(model.manifest.path))
        for key, value in overrides.items():
            recorded = getattr(spec, key)
            if (tuple(value) if isinstance(value, (list, tuple)) else value) != recorded:
                raise ManifestError(
                    f"{_OPTION.get(key, '--' + key)} {value} contradicts {model.manifest.path}, which says {recorded}"
                )
    else:
        missing = [option for key, option in _OPTION.items() if key not in overrides]
        if missing:
            raise ManifestError(
                f"{model.path} has no manifest beside it; to run it anyway give {', '.join(missing)} "
                "(and --time-column if the stream has one)"
            )
        try:
            spec = ForecastSpec(
                features=tuple(overrides["features"]),
                target=overrides["target"],
                window=int(overrides["window"]),
                horizon=int(overrides["horizon"]),
                input_scale=tuple(float(s) for s in overrides["input_scale"]),
                target_scale=float(overrides["target_scale"]),
                time_column=overrides.get("time_column"),
            )
        except ValueError as exc:
            raise ManifestError(f"the options do not describe a forecaster ({FORMULATION}): {exc}") from None
    if model.inputs[0].shape != spec.input_shape:
        raise SignatureError(
            f"{model.path} takes {model.inputs[0]}, but the task needs shape {list(spec.input_shape)} "
            f"({spec.window} rows of {len(spec.features)} features)"
        )
    return spec


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

    def reset(self) -> None:
        self.filled = 0

    def view(self) -> np.ndarray:
        """The buffered rows oldest first; valid while `filled >= window`."""
        return self._data[self._next : self._next + self.window]


@dataclass
class Stats:
    rows: int = 0
    predictions: int = 0
    skipped: Counter[str] = field(default_factory=Counter)
    first_row_at: float | None = None
    finished_at: float | None = None

    def line(self, prog: str, final: bool) -> str:
        now = time.monotonic()
        elapsed = (self.finished_at or now) - self.first_row_at if self.first_row_at is not None else 0.0
        rate = self.rows / elapsed if elapsed > 0 else 0.0
        reasons = ", ".join(f"{reason} {n}" for reason, n in sorted(self.skipped.items()))
        skipped = sum(self.skipped.values())
        return (
            f"{prog}: {'done' if final else 'progress'}: {self.rows} rows read, {self.predictions} predictions, "
            f"{skipped} rows skipped{f' ({reasons})' if reasons else ''}, {elapsed:.2f} s, {rate:,.0f} rows/s"
        )


def _lines(handle: TextIO, follow: bool, poll_seconds: float) -> Iterator[str]:
    """Lines without their line break. With `follow`, wait at end of file for more, like `tail -f`;
    a partial last line is held until its line break arrives."""
    pending = ""
    while True:
        chunk = handle.readline()
        if not chunk:
            if not follow:
                if pending:
                    yield pending  # a last line without a line break: parsed, and reported if truncated
                return
            time.sleep(poll_seconds)
            continue
        if not chunk.endswith("\n"):
            if follow:
                pending += chunk
                continue
            yield pending + chunk
            return
        yield (pending + chunk).rstrip("\r\n")
        pending = ""


class Writer:
    """One record per line, flushed at once so a pipe downstream sees each as it is made."""

    def __init__(self, sink: TextIO, fmt: str, has_time: bool) -> None:
        self.sink, self.fmt, self.has_time = sink, fmt, has_time
        if fmt == "csv":
            sink.write("row,time,prediction\n" if has_time else "row,prediction\n")
            sink.flush()

    def write(self, row: int, when: str | None, prediction: float) -> None:
        if self.fmt == "jsonl":
            time_part = f', "time": {json.dumps(when)}' if self.has_time else ""
            self.sink.write(f'{{"row": {row}{time_part}, "prediction": {prediction!r}}}\n')
        elif self.has_time:
            quoted = '"' + when.replace('"', '""') + '"' if when and ("," in when or '"' in when) else when
            self.sink.write(f"{row},{quoted},{prediction!r}\n")
        else:
            self.sink.write(f"{row},{prediction!r}\n")
        self.sink.flush()


class StreamRunner:
    """Turns rows into forecasts with preallocated buffers: per row, a parse and two row writes; per forecast,
    one input fill and one session.run."""

    def __init__(self, model: Model, spec: ForecastSpec, stride: int = 1) -> None:
        if stride < 1:
            raise InputError(f"stride must be >= 1, got {stride}")
        self.model, self.spec, self.stride = model, spec, stride
        self.buffer = WindowBuffer(spec.window, len(spec.features))
        self._row = np.zeros(len(spec.features), dtype=np.float64)
        self._input = np.zeros(spec.input_shape, dtype=np.float32)
        self._scratch = np.zeros((spec.window, len(spec.features)), dtype=np.float64)
        self._output = np.zeros(model.outputs[0].shape, dtype=model.outputs[0].dtype)
        # Bound once to our own arrays: a forecast refills self._input in place, and onnxruntime writes
        # into self._output, with no feed dict, no output allocation and no copy per call.
        self._values = (ort.OrtValue.ortvalue_from_numpy(self._input), ort.OrtValue.ortvalue_from_numpy(self._output))
        self._binding = model.session.io_binding()
        self._binding.bind_ortvalue_input(model.inputs[0].name, self._values[0])
        self._binding.bind_ortvalue_output(model.outputs[0].name, self._values[1])
        self._target = spec.target_index

    def push(self, parser: RowParser, fields: list[str]) -> tuple[bool, str | None]:
        """Parse one row into the window; return (forecast due, time text). Raises BadRowError (and then
        resets the window, so no window spans the gap)."""
        try:
            when = parser.parse(fields, self._row)
        except BadRowError:
            self.buffer.reset()
            raise
        self.buffer.push(self._row)
        extra = self.buffer.filled - self.spec.window
        return extra >= 0 and extra % self.stride == 0, when

    def forecast(self) -> float:
        window = self.buffer.view()
        self.spec.model_input(window, out=self._input, scratch=self._scratch)
        self.model.session.run_with_iobinding(self._binding)
        return float(self.spec.to_target_units(self._output[0, 0], window[-1, self._target]))


def _open_input(stream: str) -> TextIO:
    if stream == "-":
        return io.TextIOWrapper(sys.stdin.buffer, encoding="utf-8", errors="replace", newline="")
    try:
        return open(stream, encoding="utf-8", errors="replace", newline="")
    except OSError as exc:
        raise InputError(f"cannot read {stream}: {exc.strerror or exc}") from None


def run_stream(options: RunOptions, stdout: TextIO, stderr: TextIO, prog: str = "edgeseq") -> int:
    """Run `options`; return the exit code. Records go to `stdout` (or --output), everything else to `stderr`."""

    def say(message: str) -> None:
        stderr.write(message + "\n")
        stderr.flush()

    if options.format not in ("jsonl", "csv"):
        say(f"{prog}: error: --format must be jsonl or csv, got {options.format!r}")
        return EXIT_USAGE
    if options.on_bad_row not in ("skip", "fail"):
        say(f"{prog}: error: --on-bad-row must be skip or fail, got {options.on_bad_row!r}")
        return EXIT_USAGE
    try:
        model = load_model(options.model, threads=options.threads, require_manifest=False)
        spec = resolve_spec(model, options.task_overrides())
        runner = StreamRunner(model, spec, options.stride)
        source = _open_input(options.stream)
    except DeviceError as exc:
        say(f"{prog}: error: {exc}")
        return EXIT_USAGE

    stats = Stats()
    sink: TextIO | None = None
    try:
        lines = _lines(source, options.follow, options.poll_seconds)
        header = next(lines, None)
        if header is None or not header.strip():
            say(f"{prog}: error: {options.stream} has no header row")
            return EXIT_USAGE
        try:
            parser = RowParser(split_line(header), spec.features, spec.time_column)
        except InputError as exc:
            say(f"{prog}: error: {options.stream}: {exc}")
            return EXIT_USAGE
        try:
            sink = stdout if options.output is None else open(options.output, "w", encoding="utf-8")  # noqa: SIM115
        except OSError as exc:
            say(f"{prog}: error: cannot write {options.output}: {exc.strerror or exc}")
            return EXIT_USAGE
        writer = Writer(sink, options.format, spec.time_column is not None)
        next_progress = time.monotonic() + options.progress_seconds if options.progress_seconds > 0 else None
        for line_number, line in enumerate(lines, start=2):
            if stats.first_row_at is None:
                stats.first_row_at = time.monotonic()
            stats.rows += 1
            try:
                due, when = runner.push(parser, split_line(line))
            except BadRowError as exc:
                stats.skipped[exc.reason] += 1
                if options.on_bad_row == "fail":
                    say(f"{prog}: error: line {line_number}: {exc}; stopping (--on-bad-row fail)")
                    stats.finished_at = time.monotonic()
                    say(stats.line(prog, final=True))
                    return EXIT_BAD_ROW
                say(f"{prog}: skipped line {line_number}: {exc}")
                continue
            if due:
                writer.write(line_number - 1, when, runner.forecast())
                stats.predictions += 1
            if next_progress is not None and time.monotonic() >= next_progress:
                say(stats.line(prog, final=False))
                next_progress = time.monotonic() + options.progress_seconds
    except KeyboardInterrupt:
        stats.finished_at = time.monotonic()
        say(f"{prog}: interrupted")
        say(stats.line(prog, final=True))
        return EXIT_INTERRUPTED
    except BrokenPipeError:
        # The reader went away (`| head`): everything computed was written; end quietly.
        silence_stdout()
        return EXIT_OK
    finally:
        source.close()
        if sink is not None and sink is not stdout:
            sink.close()
    stats.finished_at = time.monotonic()
    say(stats.line(prog, final=True))
    return EXIT_OK


def silence_stdout() -> None:
    """Point fd 1 at /dev/null so the interpreter's final flush of a closed pipe raises nothing."""
    import os

    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError):
        pass

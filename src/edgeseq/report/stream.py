"""The stream a run read, for the report's faint line of raw target values: read a line at a time through the
device runtime's LineSource and RowParser, as the runner reads it; rows it cannot use are skipped."""

from __future__ import annotations

from array import array
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edgeseq.errors import BadInputError
from edgeseq.report.records import NO_KEY, Scores
from edgeseq_device.errors import InputError
from edgeseq_device.files import not_found
from edgeseq_device.manifest import Manifest, manifest_path_for
from edgeseq_device.rows import HeaderSearch, RowParser, time_columns
from edgeseq_device.sources.lines import LineSource
from edgeseq_device.times import parse_time


@dataclass(frozen=True)
class StreamColumns:
    """Where a stream's target, time and key are, and how its times are written."""

    target: str
    time_column: str
    key_column: str | None = None
    time_format: str = "iso8601"


def stream_columns(
    model: Path | None, target: str | None, time_column: str | None, key_column: str | None
) -> StreamColumns:
    """The columns given, the ones a forecaster's manifest names (`model`: its ONNX file) filling the rest."""
    time_format = "iso8601"
    if model is not None:
        manifest = Manifest.load(manifest_path_for(Path(model)))
        series = manifest.data.get("series") if isinstance(manifest.data.get("series"), dict) else {}
        named = manifest.data.get("target")
        target = target or (named if isinstance(named, str) else None)
        time_column = time_column or manifest.data.get("time_column")
        key_column = key_column or series.get("group_by")
        time_format = str(series.get("time_format") or time_format)
    if not isinstance(target, str) or not isinstance(time_column, str):
        raise BadInputError(
            "--stream needs the stream's target and time columns: --target NAME and --time-column NAME, or --model "
            "FILE, a forecaster whose manifest names them"
        )
    return StreamColumns(target, time_column, key_column if isinstance(key_column, str) else None, time_format)


def read_stream(path: Path, columns: StreamColumns, scores: Scores) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """key -> (unix seconds, target values) of the stream's rows, for the keys of `scores` and within the span of
    their target times. Rows with a missing or bad value or a time that does not read are left out."""
    path = Path(path)
    target, time_column, key_column = columns.target, columns.time_column, columns.key_column
    if not scores.time_axis:
        raise BadInputError(f"--stream needs records with target times: {scores.why_rows}")
    if not path.is_file():
        raise BadInputError(not_found("stream file", path) if not path.exists() else f"{path} is not a file")
    wanted = {name: k for k, name in enumerate(scores.keys)}
    low, high = float(scores.x.min()), float(scores.x.max())
    xs = {name: array("d") for name in scores.keys}
    ys = {name: array("d") for name in scores.keys}
    names = [target, *time_columns(time_column), *([key_column] if key_column else [])]
    value = np.empty(1)
    try:
        source = LineSource(str(path))
        try:
            search, parser = HeaderSearch(names), None
            for line in source:
                if not isinstance(line, str):
                    continue  # too long: no row
                if parser is None:
                    header = search.offer(line)
                    if header is not None:
                        parser = RowParser.of_line(header.line, [target], time_column, key_column, header.delimiter)
                    continue
                try:
                    fields = parser.split(line)
                    when = parser.parse(fields, value)
                    key = parser.key(fields) if key_column else NO_KEY
                    if parser.missing or key not in wanted:
                        continue
                    seconds = parse_time(when or "", columns.time_format)
                except InputError:
                    continue
                if low <= seconds <= high:
                    xs[key].append(seconds)
                    ys[key].append(value[0])
            if parser is None:
                raise search.refusal()
        finally:
            source.close()
    except InputError as exc:
        raise BadInputError(f"{path}: {exc}") from None
    except OSError as exc:
        raise BadInputError(f"cannot read {path}: {exc.strerror or exc}") from None
    found = {k: (np.frombuffer(xs[k]), np.frombuffer(ys[k])) for k in scores.keys if len(xs[k])}
    if not found:
        raise BadInputError(
            f"{path}: no row of the plotted keys has a time within the records' target times "
            f"(--time-column {time_column!r}{f', --key-column {key_column!r}' if key_column else ''})"
        )
    return found

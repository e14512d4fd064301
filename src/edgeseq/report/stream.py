"""The stream a run read, for the report's faint line of raw target values: read a line at a time through the
device runtime's LineSource and RowParser, as the runner reads it; rows it cannot use are skipped."""

from __future__ import annotations

from array import array
from pathlib import Path

import numpy as np

from edgeseq.errors import BadInputError
from edgeseq.report.records import NO_KEY, Scores
from edgeseq_device.errors import InputError
from edgeseq_device.files import not_found
from edgeseq_device.rows import HeaderSearch, RowParser, time_columns
from edgeseq_device.sources.lines import LineSource
from edgeseq_device.times import parse_time


def read_stream(
    path: Path, target: str | None, time_column: str | None, key_column: str | None, scores: Scores
) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """key -> (unix seconds, target values) of the stream's rows, for the keys of `scores` and within the span of
    their target times. Rows with a missing or bad value or a time that is not ISO 8601 are left out."""
    path = Path(path)
    if target is None or time_column is None:
        raise BadInputError("--stream needs --target NAME and --time-column NAME: the stream's columns to plot")
    if not scores.time_axis:
        raise BadInputError(f"--stream needs records with target times: {scores.why_rows}")
    if not path.is_file():
        raise BadInputError(not_found("stream file", path) if not path.exists() else f"{path} is not a file")
    wanted = {name: k for k, name in enumerate(scores.keys)}
    low, high = float(scores.x.min()), float(scores.x.max())
    xs = {name: array("d") for name in scores.keys}
    ys = {name: array("d") for name in scores.keys}
    columns = [target, *time_columns(time_column), *([key_column] if key_column else [])]
    value = np.empty(1)
    try:
        source = LineSource(str(path))
        try:
            search, parser = HeaderSearch(columns), None
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
                    seconds = parse_time(when or "", "iso8601")
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
            f"{path}: no row of the plotted keys has an ISO 8601 time within the records' target times "
            f"(--time-column {time_column!r}{f', --key-column {key_column!r}' if key_column else ''})"
        )
    return found

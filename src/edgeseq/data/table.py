"""CSV files as training reads them: through the device runtime's LineSource, as `edgeseq run` reads them
(.csv, .csv.gz, .csv.xz, .csv.bz2; line breaks, line lengths, text checks)."""

from __future__ import annotations

import lzma
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edgeseq.errors import DataError
from edgeseq_device.errors import InputError
from edgeseq_device.rows import BadRowError, Header, HeaderSearch, RowParser
from edgeseq_device.sources.lines import LineSource, TooLong

DATASETS = Path(__file__).parent.parent / "datasets"
DEFAULT_SENSOR_DATA = DATASETS / "appliances_energy.csv.xz"
AIRPORT_WEATHER = DATASETS / "nyc_airport_weather.csv.xz"  # three stations, hourly, with NA and gaps
READ_ERRORS = (OSError, EOFError, lzma.LZMAError, ValueError)  # ValueError: a corrupt bz2 stream


@dataclass(frozen=True)
class SensorTable:
    """Named sensor columns of a CSV file, in file order, as float64 [rows, columns]."""

    path: Path
    columns: tuple[str, ...]
    values: np.ndarray
    times: tuple[str, ...] | None

    def column(self, name: str) -> np.ndarray:
        return self.values[:, self.columns.index(name)]


def read_all(path: Path) -> list[str | TooLong]:
    """Every line of a CSV file, as the runner would see it. DataError if unreadable or empty."""
    path = Path(path)
    try:
        source = LineSource(str(path))  # decompresses .gz, .xz and .bz2, as `edgeseq run` does
        try:
            lines = list(source)
        finally:
            source.close()
    except InputError as exc:  # not text
        raise DataError(str(exc)) from None
    except READ_ERRORS as exc:
        raise DataError(f"cannot read {path}: {getattr(exc, 'strerror', None) or exc}") from None
    if not lines:
        raise DataError(f"{path} is empty: expected a header row")
    return lines


def find_header(path: Path, lines: Sequence[str | TooLong], columns: Sequence[str], delimiter: str | None) -> Header:
    """The header among a file's first lines, as the runner finds it in a stream (rows.HeaderSearch)."""
    search = HeaderSearch(columns, delimiter)
    try:
        for line in lines:
            if not isinstance(line, str):
                raise DataError(
                    f"{path}: line {search.seen + 1:,} is too long for a header ({line.limit:,} bytes at most)"
                )
            header = search.offer(line)
            if header is not None:
                return header
        raise search.refusal()
    except InputError as exc:
        raise DataError(f"{path}: {exc}") from None


def read_lines(path: Path, columns: Sequence[str], delimiter: str | None = None) -> tuple[Header, list[str | TooLong]]:
    """(header, data lines) of a CSV file, each line as the runner would see it, the header found as the runner
    finds it (the lines before it are a preamble). DataError if unreadable or without a header."""
    lines = read_all(path)
    header = find_header(path, lines, columns, delimiter)
    return header, lines[header.preamble + 1 :]


def load_sensor_csv(path: Path, columns: Sequence[str], time_column: str | None = None) -> SensorTable:
    """Read `columns` (by name) of a CSV file with a header, through the device runtime's LineSource and
    RowParser, so that line breaks, line lengths, the header, its delimiter and fields mean what they mean to the
    runner.

    Quoted fields, leading spaces and scientific notation are read as they are. A bad row is an error that
    names its line: training data is not silently repaired.
    """
    path = Path(path)
    header, lines = read_lines(path, [*columns, *([time_column] if time_column else [])])
    try:
        parser = RowParser.of_line(header.line, columns, time_column, delimiter=header.delimiter)
    except InputError as exc:
        raise DataError(f"{path}: {exc}") from None
    rows, times = [], []
    row = np.empty(len(columns), dtype=np.float64)
    for line_number, line in enumerate(lines, start=header.preamble + 2):
        try:
            if not isinstance(line, str):
                raise BadRowError("line too long", f"more than {line.limit:,} bytes")
            time_text = parser.parse(parser.split(line), row)
            if parser.missing:
                names = ", ".join(repr(columns[i]) for i in parser.missing)
                raise BadRowError("missing value", f"{names} missing")
        except InputError as exc:
            raise DataError(f"{path} line {line_number}: {exc}") from None
        rows.append(row.copy())
        times.append(time_text)
    values = np.array(rows, dtype=np.float64).reshape(len(rows), len(columns))
    return SensorTable(path, tuple(columns), values, tuple(times) if time_column else None)

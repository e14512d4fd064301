"""Training data: the tutorial's letter rotations, and sensor tables read from CSV files."""

from __future__ import annotations

import gzip
import lzma
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import numpy as np

from edgeseq.errors import DataError
from edgeseq_device.errors import InputError
from edgeseq_device.letters import LetterCodec
from edgeseq_device.lines import LineSource
from edgeseq_device.rows import BadRowError, RowParser, split_line


def letter_patterns(vocabulary: str = "abcde", window: int = 4) -> list[tuple[str, str]]:
    """The tutorial's training set: each rotation of the vocabulary and the letter that follows it.

    For 'abcde' and window 4: abcd->e, bcde->a, cdea->b, deab->c, eabc->d.
    """
    cycle = vocabulary * (window // len(vocabulary) + 2)
    return [(cycle[i : i + window], cycle[i + window]) for i in range(len(vocabulary))]


def letter_arrays(codec: LetterCodec) -> tuple[np.ndarray, np.ndarray]:
    """(x [N, window, V] one-hot float32, y [N] int64 class indices), encoded by the device codec."""
    patterns = letter_patterns(codec.vocabulary, codec.window)
    x = codec.encode_batch([seq for seq, _ in patterns])
    y = np.array([codec.vocabulary.index(nxt) for _, nxt in patterns], dtype=np.int64)
    return x, y


DEFAULT_SENSOR_DATA = Path(__file__).parent / "datasets" / "appliances_energy.csv.xz"


@dataclass(frozen=True)
class SensorTable:
    """Named sensor columns of a CSV file, in file order, as float64 [rows, columns]."""

    path: Path
    columns: tuple[str, ...]
    values: np.ndarray
    times: tuple[str, ...] | None

    def column(self, name: str) -> np.ndarray:
        return self.values[:, self.columns.index(name)]


def open_binary(path: Path) -> BinaryIO:
    """Open a CSV file for reading bytes, transparently decompressing .xz and .gz."""
    opener = {".xz": lzma.open, ".gz": gzip.open}.get(path.suffix, open)
    return opener(path, "rb")


def load_sensor_csv(path: Path, columns: Sequence[str], time_column: str | None = None) -> SensorTable:
    """Read `columns` (by name) of a CSV file with a header, through the device runtime's LineSource and
    RowParser, so that line breaks, line lengths and fields mean what they mean to the runner.

    Quoted fields, leading spaces and scientific notation are read as they are. A bad row is an error that
    names its line: training data is not silently repaired.
    """
    path = Path(path)
    try:
        with open_binary(path) as handle:
            lines = iter(LineSource.from_reader(handle.read, str(path)))
            header = next(lines, None)
            if not isinstance(header, str) or not header.strip():
                raise DataError(f"{path} is empty or its header line is too long: expected a header row")
            try:
                parser = RowParser(split_line(header), columns, time_column)
            except InputError as exc:
                raise DataError(f"{path}: {exc}") from None
            rows, times = [], []
            row = np.empty(len(columns), dtype=np.float64)
            for line_number, line in enumerate(lines, start=2):
                try:
                    if not isinstance(line, str):
                        raise BadRowError("line too long", f"more than {line.limit:,} bytes")
                    time_text = parser.parse(split_line(line), row)
                except InputError as exc:
                    raise DataError(f"{path} line {line_number}: {exc}") from None
                rows.append(row.copy())
                times.append(time_text)
    except InputError as exc:  # not text
        raise DataError(str(exc)) from None
    except (OSError, EOFError, lzma.LZMAError) as exc:
        raise DataError(f"cannot read {path}: {getattr(exc, 'strerror', None) or exc}") from None
    values = np.array(rows, dtype=np.float64).reshape(len(rows), len(columns))
    return SensorTable(path, tuple(columns), values, tuple(times) if time_column else None)


@dataclass(frozen=True)
class Split:
    """Row ranges [start, stop) of a time-ordered train / validation / test split."""

    train: tuple[int, int]
    validation: tuple[int, int]
    test: tuple[int, int]

    @classmethod
    def by_fractions(cls, rows: int, train: float = 0.70, validation: float = 0.15) -> Split:
        a, b = int(rows * train), int(rows * (train + validation))
        return cls((0, a), (a, b), (b, rows))

    def parts(self) -> dict[str, tuple[int, int]]:
        return {"train": self.train, "validation": self.validation, "test": self.test}


def window_ends(part: tuple[int, int], window: int, horizon: int, stride: int = 1) -> np.ndarray:
    """Last rows t of the windows that lie wholly inside `part`, with their target row t + horizon too.

    So no window, and no target, straddles a split boundary.
    """
    start, stop = part
    return np.arange(start + window - 1, stop - horizon, stride, dtype=np.intp)

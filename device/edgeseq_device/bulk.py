"""Many plain rows at once: the runner's fast path over the lines of one read.

The rules are defined row by row: `rows.split_line` and `RowParser.parse` read a line, `times.parse_time` its
time, `series.Series.admit` checks it against its series. This module only recognises a block of lines in which
every line is *plain*, one the row path would read with no question asked:
- it splits as `split_line` splits it at the stream's delimiter without the csv module (no quote, or every field
  quoted with no quote or line break inside one) into the header's number of fields;
- each of the model's values is an ASCII number without `_`, finite and within float32's range (so no missing
  value, no NaN, no infinity), and where decimal commas may be written (rows.py) no value of the block has a
  mark other than the stream's (or, before the stream's is decided, the block's values show one mark only);
- with time checks, each time is one `times.many_times` reads (ISO 8601 without a zone, or unix seconds) in one
  column (not a date and a time in two);
and reads it with C loops and numpy instead of a Python loop per row. The values, the time texts and the
seconds are those the row path gives, bit for bit (tests/test_bulk.py holds the two equal with hypothesis). A
block with anything else in it (a bad row, a missing value, a header, a strptime time) is not plain: the row
path reads it, and reports what it finds line by line.
"""

from __future__ import annotations

from dataclasses import dataclass
from itertools import chain, repeat
from operator import itemgetter, methodcaller

import numpy as np

from edgeseq_device.rows import FLOAT32_MAX, RowParser
from edgeseq_device.times import many_times


@dataclass(frozen=True)
class PlainRows:
    """A block's values [n, F] (float64, in the parser's column order), its time texts (stripped, or None
    without a time column), their seconds (or None when the rules check no time), and its keys (as
    `RowParser.key` reads them, or None without a key column)."""

    values: np.ndarray
    time_texts: list[str] | None
    seconds: np.ndarray | None
    keys: list[str] | None = None


def split_plain(lines: list[str], width: int, delimiter: str = ",") -> list[list[str]] | None:
    """Each line's fields as `split_line` gives them, when every line is plain and has `width` fields; else None."""
    if not lines:
        return None
    if not any(map(str.__contains__, lines, repeat('"'))):
        fields = [line.split(delimiter) for line in lines]
    else:
        # split_line's quoted form: the line starts and ends with a quote, and every other quote is part of a
        # '","' (the delimiter between quotes) between two fields. A line with `width` fields holds width - 1 of
        # those, and so at least 2 * (width - 1) quotes inside; the block's total equal to exactly that means no
        # line has another.
        if min(map(len, lines)) < 2:
            return None
        inners = [line[1:-1] for line in lines if line[0] == '"' == line[-1]]
        if len(inners) != len(lines) or sum(map(str.count, inners, repeat('"'))) != 2 * len(lines) * (width - 1):
            return None
        between = f'"{delimiter}"'
        fields = [inner.split(between) for inner in inners]
    return fields if set(map(len, fields)) == {width} else None


class PlainReader:
    """Reads plain blocks of one stream: its header's parser and the time format its rules check (or None)."""

    def __init__(self, parser: RowParser, time_format: str | None) -> None:
        self.parser, self.delimiter = parser, parser.delimiter
        self.width, self.time_index, self.time_format = parser.width, parser.time_index, time_format
        self.joined = parser.time_second is not None  # a date and a time in two columns: the row path's
        self.count = len(parser.indices)
        self._values = itemgetter(*parser.indices.tolist())
        if self.count == 1:  # itemgetter of one index gives the item, not a tuple
            one = self._values
            self._values = lambda fields: (one(fields),)

    def read(self, lines: list[str]) -> PlainRows | None:
        """The block's rows, if every line is plain; else None (and nothing is read, nor the decimal mark decided)."""
        fields = split_plain(lines, self.width, self.delimiter)
        if fields is None or self.joined:
            return None
        texts = list(map(self._values, fields))
        joined = "".join(chain.from_iterable(texts))
        if not joined.isascii() or "_" in joined:  # float() also reads 1_000 and other scripts' digits
            return None
        numbers = chain.from_iterable(texts)
        mark = None
        if self.parser.marks:  # rows.RowParser._with_point, for a block that shows one mark
            comma, point = "," in joined, "." in joined
            if comma and point:  # both in a number, or each in its own: the row path says which is bad
                return None
            mark = "," if comma else "." if point else None
            if mark is not None and self.parser.decimal not in (None, mark):
                return None
            if comma:
                numbers = map(methodcaller("replace", ",", "."), numbers)
        try:
            values = np.fromiter(map(float, numbers), np.float64, len(lines) * self.count)
        except ValueError:  # a missing value, a word: the row path says which
            return None
        values = values.reshape(len(lines), self.count)
        if not bool((np.abs(values) <= FLOAT32_MAX).all()):  # NaN fails too
            return None
        for k, size in self.parser.integers.items():  # token ids: a block with another value goes row by row
            ids = values[:, k]
            if not bool(((ids >= 0) & (ids < size) & (ids == np.floor(ids))).all()):
                return None
        keys = None if self.parser.key_index is None else list(map(self.parser.key, fields))
        if self.time_index is None:
            return self._decided(mark, PlainRows(values, None, None, keys))
        index = self.time_index
        time_texts = [row[index].strip() for row in fields]
        if self.time_format is None:
            return self._decided(mark, PlainRows(values, time_texts, None, keys))
        seconds = many_times(time_texts, self.time_format)
        return None if seconds is None else self._decided(mark, PlainRows(values, time_texts, seconds, keys))

    def _decided(self, mark: str | None, rows: PlainRows) -> PlainRows:
        """The block is read: its mark, if any, is the stream's from now on, as the row path would have decided."""
        if mark is not None:
            self.parser.decimal = mark
        return rows

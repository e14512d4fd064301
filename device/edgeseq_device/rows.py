"""Sensor rows by column name: a CSV's dialect (where its header is, its delimiter, its decimal mark), a header ->
the model's columns, a CSV row -> float values or a reason.

The dialect is found, not assumed, by the rules below; training and the runner both call them, so a file means the
same to both, and each stream (a training file, a stream at run time) is read by what it is itself:
- the header is the first line, within the first HEADER_SEARCH_LINES, that names every column needed (the
  features, the time column or columns, the key column); the lines before it are a preamble, skipped and counted;
  a line starting with `#` is never the header. Once a line that names some of them is followed by a line of as
  many fields (the data has begun), the search ends there, so a header that lacks a column is refused at once;
- the delimiter is the first of DELIMITERS (comma, semicolon, tab, `|`) under which that line names them, unless
  one is given (`--delimiter`); quoting follows the csv module's rules for it;
- with a delimiter other than the comma, a number may be written with a decimal comma (`21,3`); the first value
  of the stream that shows a decimal mark decides the stream's (a comma or a point), and from then on a value
  with the other mark is a bad row ("other decimal mark"), and so is a value with both (`1.234,5`: "thousands
  separator"): a number is never read as a wrong one. With the comma delimiter the decimal mark is the point,
  always: a quoted `"21,3"` there is non-numeric.
"""

from __future__ import annotations

import csv
import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from edgeseq_device.errors import InputError
from edgeseq_device.messages import shown, shown_list

FLOAT32_MAX = float(np.finfo(np.float32).max)
# What sensor logs, spreadsheets and databases write for "no reading". Compared without case and spaces.
MISSING_TOKENS = ("", "NA", "N/A", "#N/A", "NaN", "null", "nil", "None", "-", "?")
_MISSING = frozenset(token.lower() for token in MISSING_TOKENS)


def is_missing(text: str) -> bool:
    """Whether a field is a missing value (one of MISSING_TOKENS, any case, spaces around)."""
    return text.strip().lower() in _MISSING


class MissingColumnError(InputError):
    """The header lacks a column the model needs."""


class DuplicateColumnError(InputError):
    """The header names a column the model needs more than once: which one is meant is ambiguous."""


class BadRowError(InputError):
    """One row cannot be used; `reason` is a short, countable category ('non-numeric', 'nan/inf', ...)."""

    time_gap = False  # the row also came after a gap in time (series/): counted though the row is dropped

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason


DELIMITERS = (",", ";", "\t", "|")
HEADER_SEARCH_LINES = 100


def delimiter_words(delimiter: str) -> str:
    """A delimiter as a message shows it: tab by name, any other as itself."""
    return "tab" if delimiter == "\t" else delimiter


def check_delimiter(text: str) -> str:
    """`--delimiter`'s value -> the delimiter: one character (or `tab`) that is not a quote or a line break."""
    delimiter = "\t" if text in ("tab", "\\t") else text
    if len(delimiter) != 1 or delimiter in '"\r\n' or delimiter.isalnum():
        raise InputError(f"--delimiter takes one character such as , ; | or the word tab, got {shown(text)}")
    return delimiter


def split_line(line: str, delimiter: str = ",") -> list[str]:
    """One CSV line (no line break) -> fields. Quotes are honoured within the line and never span lines,
    so a stray quote in one bad row cannot swallow the good rows after it."""
    if '"' not in line:
        return line.split(delimiter)
    inner, between = line[1:-1], f'"{delimiter}"'
    if line[:1] == '"' and line[-1:] == '"' and len(line) > 1 and '"' not in inner.replace(between, ""):
        # every field quoted and no quote inside one (the bundled data set's form): what csv.reader returns,
        # split in C without its per-character state machine (a hypothesis test holds the two equal)
        return inner.split(between)
    try:
        return next(csv.reader((line,), delimiter=delimiter), [])
    except csv.Error as exc:
        raise BadRowError("unparsable", str(exc)) from None


def _names(line: str, delimiter: str) -> list[str]:
    try:
        return [_clean(f) for f in split_line(line, delimiter)]
    except BadRowError:
        return []


def _is_comment(line: str) -> bool:
    return line.lstrip("\ufeff").lstrip().startswith("#")


def header_delimiter(line: str, columns: Sequence[str], delimiter: str | None = None) -> str | None:
    """The first delimiter (`delimiter`, else each of DELIMITERS) under which `line` names every one of
    `columns`, or None: such a line is a header."""
    if _is_comment(line):
        return None
    for tried in (delimiter,) if delimiter else DELIMITERS:
        names = set(_names(line, tried))
        if all(c in names for c in columns):
            return tried
    return None


def is_header(line: str, columns: Sequence[str], delimiter: str | None = None) -> bool:
    """Whether `line` names every one of `columns`: the header of a file that follows another."""
    return header_delimiter(line, columns, delimiter) is not None


def _clean(name: str) -> str:
    return name.lstrip("\ufeff").strip().strip('"').strip()


@dataclass(frozen=True)
class Header:
    """A stream's header as found: the line, its delimiter, and the lines before it (the preamble)."""

    line: str
    delimiter: str
    preamble: int

    def words(self) -> str:
        """Where the header was found and how it splits, for a message: 'skipped 2 lines before the header, which
        is split at ';''."""
        split = f"split at {quoted_delimiter(self.delimiter)}"
        if not self.preamble:
            return f"the header is {split}"
        lines = f"{self.preamble:,} line{'s' if self.preamble > 1 else ''}"
        return f"skipped {lines} before the header" + ("" if self.delimiter == "," else f", which is {split}")


class HeaderSearch:
    """Finds a stream's header among its first lines, as the module's docstring says: `offer` each line in turn
    until it returns the Header; `refusal()` is the error to raise when the lines ran out first (or `offer` raises
    it, once HEADER_SEARCH_LINES are seen or the data has begun without a header)."""

    def __init__(self, columns: Sequence[str], delimiter: str | None = None) -> None:
        self.columns, self.delimiter = tuple(dict.fromkeys(columns)), delimiter
        self.seen = 0
        # the line that named most of the columns: (how many, line number, delimiter, its names)
        self._best: tuple[int, int, str, list[str]] | None = None
        self._first: tuple[int, str] | None = None  # the first line that could have been the header

    @property
    def candidates(self) -> bool:
        """Whether a line offered could have been the header (one that is not a comment, nor blank)."""
        return self._first is not None

    def offer(self, line: str) -> Header | None:
        self.seen += 1
        found = header_delimiter(line, self.columns, self.delimiter)
        if found is not None:
            return Header(line, found, self.seen - 1)
        if not _is_comment(line) and line.strip():
            if self._first is None:
                self._first = (self.seen, line)
            best = self._best
            for tried in (self.delimiter,) if self.delimiter else DELIMITERS:
                names = _names(line, tried)
                if best is not None and best[2] == tried and len(names) == len(best[3]) and self.seen > best[1]:
                    raise self.refusal()  # a row of the near-header's width: the data has begun
                named = sum(c in names for c in self.columns)
                if named and (best is None or named > best[0]):
                    self._best = (named, self.seen, tried, names)
        if self.seen >= HEADER_SEARCH_LINES:
            raise self.refusal()
        return None

    def refusal(self) -> MissingColumnError:
        """Why no header was found, in a line that names the dialects tried."""
        delimiters = (self.delimiter,) if self.delimiter else DELIMITERS
        tried = ("delimiter " if self.delimiter else "any of ") + " ".join(map(delimiter_words, delimiters))
        within = f"in the first {self.seen:,} lines" if self.seen > 1 else "in the first line"
        if self._best is not None:
            _, number, delimiter, names = self._best
            missing = [c for c in self.columns if c not in names]
            return MissingColumnError(
                f"missing column{'s' if len(missing) > 1 else ''} {shown_list(missing)} (the header has "
                f"{shown_list(names)}: line {number:,}, split at {quoted_delimiter(delimiter)}; tried {tried})"
            )
        if self._first is None:
            return MissingColumnError(f"no header: nothing but comments and blank lines {within}")
        number, line = self._first
        counts = {d: len(_names(line, d)) for d in delimiters}
        most = max(counts, key=counts.__getitem__)
        split = (
            f"splits into 1 name with {tried}"
            if counts[most] == 1
            else f"splits at {quoted_delimiter(most)} into {counts[most]:,} names, none of them needed"
        )
        return MissingColumnError(
            f"no header {within}: the header line (line {number:,}, {shown(line, 60)}) {split} "
            f"(needed: {shown_list(list(self.columns))})"
        )


def describe_dialect(dialect: dict[str, object]) -> str:
    """The manifest's "csv" (the training file's dialect) in a line, for `edgeseq info`."""
    decimal = {",": "decimal commas", ".": "decimal points"}.get(str(dialect.get("decimal_mark")), "no decimal mark")
    preamble = int(dialect.get("preamble_lines") or 0)  # type: ignore[call-overload]
    skipped = f", {preamble:,} line{'s' if preamble != 1 else ''} before the header" if preamble else ""
    delimiter = quoted_delimiter(str(dialect.get("delimiter", ",")))
    return f"the training file: split at {delimiter}, {decimal}{skipped} (a stream's own is found when it runs)"


def time_columns(time_column: str | None) -> tuple[str, ...]:
    """The column names of a time column: "date" is one; "Date (MM/DD/YYYY),Time (HH:MM)", a date column and a
    time column, is two (a comma in --time-column separates them)."""
    if not time_column:
        return ()
    names = tuple(name.strip() for name in time_column.split(","))
    if len(names) > 2 or not all(names):
        raise InputError(
            f"a time column is one name, or a date column and a time column as DATE,TIME; got {shown(time_column)}"
        )
    return names


def quoted_delimiter(delimiter: str) -> str:
    """A delimiter as a sentence shows it: 'tab', or the character quoted."""
    return "tab" if delimiter == "\t" else repr(delimiter)


class RowParser:
    """Finds `columns` in a header by name (order and extra columns do not matter) and parses rows.

    `time_column`, when given, is carried along as text, and so is `key_column`; a time column of two names,
    "DATE,TIME" (time_columns), is the two fields joined by a space, as pandas' `parse_dates=[[date, time]]` joins
    them. A missing value (one of
    MISSING_TOKENS, or a number that is NaN) is written as NaN and its column index listed in `missing`; what it
    means is for the series rules (series/) to say. Training, evaluation and the runner all read rows through
    this class, so a file parses the same way everywhere.
    """

    missing: list[int] | None = None
    # column index -> N, for a column of token ids: a value that is not an integer 0 to N-1 is a bad row ("not an id")
    integers: dict[int, int] = {}  # noqa: RUF012 (replaced, never changed in place)

    def __init__(
        self,
        header: Sequence[str],
        columns: Sequence[str],
        time_column: str | None = None,
        key_column: str | None = None,
        delimiter: str = ",",
    ) -> None:
        names = [_clean(h) for h in header]
        times = time_columns(time_column)
        wanted = [*columns, *times, *([key_column] if key_column else [])]
        missing = [c for c in wanted if c not in names]
        if missing:
            raise MissingColumnError(
                f"missing column{'s' if len(missing) > 1 else ''} {shown_list(missing)} "
                f"(the header has {shown_list(names) if names else 'no columns'})"
            )
        doubled = [c for c in dict.fromkeys(wanted) if names.count(c) > 1]
        if doubled:
            where = "; ".join(
                f"{shown(c)} is field {' and '.join(str(i + 1) for i, n in enumerate(names) if n == c)}"
                for c in doubled
            )
            raise DuplicateColumnError(f"the header names a column more than once ({where}): rename one")
        self.columns = tuple(columns)
        self.indices = np.array([names.index(c) for c in columns], dtype=np.intp)
        self.time_index = names.index(times[0]) if times else None
        self.time_second = names.index(times[1]) if len(times) > 1 else None  # a time of day, after a date
        self.key_index = names.index(key_column) if key_column else None
        self.width = len(names)
        self.delimiter = delimiter
        # a decimal comma is possible only where the comma is not the delimiter; the stream's first value that
        # shows a mark decides it (None: not yet)
        self.marks = delimiter != ","
        self.decimal: str | None = None if self.marks else "."

    @classmethod
    def of_line(
        cls,
        line: str,
        columns: Sequence[str],
        time_column: str | None = None,
        key_column: str | None = None,
        delimiter: str | None = None,
    ) -> RowParser:
        """The parser of a header line: split at `delimiter`, or else at the first of DELIMITERS under which it names
        `columns` (a comma when none does: the error then names what is missing)."""
        if delimiter is None:
            delimiter = header_delimiter(line, columns) or ","
        return cls(split_line(line, delimiter), columns, time_column, key_column, delimiter)

    def dialect(self, preamble: int = 0) -> dict[str, object]:
        """The dialect read so far, as JSON (the manifest's "csv"): the delimiter, the decimal mark (None while no
        value has shown one), the lines before the header."""
        return {"delimiter": self.delimiter, "decimal_mark": self.decimal, "preamble_lines": preamble}

    def forget_decimal(self) -> None:
        """A new stream under this header: its decimal mark is decided anew."""
        self.decimal = None if self.marks else "."

    def split(self, line: str) -> list[str]:
        """A line of this header's stream -> fields."""
        return split_line(line, self.delimiter)

    def check_width(self, fields: Sequence[str]) -> None:
        """Raise BadRowError unless `fields` is a row of the header's width."""
        if len(fields) == 0 or (len(fields) == 1 and not fields[0].strip()):
            raise BadRowError("empty", "empty line")
        if len(fields) != self.width:
            # An unquoted comma in one field shifts every field after it: the row's values are not where
            # the header says, so a row of the wrong width is never used.
            reason = "too few fields" if len(fields) < self.width else "too many fields"
            raise BadRowError(reason, f"{len(fields):,} fields, the header has {self.width}")

    def key(self, fields: Sequence[str]) -> str | None:
        """The row's key (a row of the header's width), or None without a key column."""
        return None if self.key_index is None else fields[self.key_index].strip()

    def parse(self, fields: Sequence[str], out: np.ndarray) -> str | None:
        """Write the row's values into `out` (shape [len(columns)]); return its time text, if any.

        Raises BadRowError with a reason; `out` may then hold part of the row and must not be used. Missing
        values are NaN in `out`, their indices in `self.missing` (None when there are none).
        """
        self.check_width(fields)
        missing = None
        marks = self.marks
        for k, i in enumerate(self.indices):
            text = fields[i]
            if marks and ("," in text or "." in text):
                text = self._with_point(text, k)
            try:
                value = float(text)
                if not text.isascii() or "_" in text:  # float() also reads 1_000 and non-ASCII digits
                    raise ValueError(text)
            except ValueError:
                if text.strip().lower() not in _MISSING:
                    raise BadRowError("non-numeric", f"column {shown(self.columns[k])} is {shown(text, 24)}") from None
                value = math.nan
            if value != value:  # NaN, written as a token or as a number, is a missing value
                missing = [k] if missing is None else [*missing, k]
                out[k] = math.nan
                continue
            if not math.isfinite(value):
                raise BadRowError("infinite", f"column {shown(self.columns[k])} is {shown(text, 24)}")
            if abs(value) > FLOAT32_MAX:  # the model computes in float32: this would become inf
                raise BadRowError("out of range", f"column {shown(self.columns[k])} is {shown(text, 24)}")
            if self.integers and k in self.integers and not (0 <= value < self.integers[k] and value.is_integer()):
                ids = f"token ids are 0 to {self.integers[k] - 1:,}"
                raise BadRowError("not an id", f"column {shown(self.columns[k])} is {shown(text, 24)}: {ids}")
            out[k] = value
        self.missing = missing
        return self.time_text(fields)

    def time_text(self, fields: Sequence[str]) -> str | None:
        """The time of a row of the header's width, as text: its time field, or its date and time joined."""
        if self.time_index is None:
            return None
        if self.time_second is None:
            return fields[self.time_index].strip()
        return f"{fields[self.time_index].strip()} {fields[self.time_second].strip()}"

    def _with_point(self, text: str, k: int) -> str:
        """A value of a stream that may write decimal commas, as float() reads it; the first number with a mark
        decides the stream's. Raises BadRowError for a number with both marks, or with the other one."""
        comma = "," in text
        if comma and "." in text:
            raise BadRowError(
                "thousands separator",
                f"column {shown(self.columns[k])} is {shown(text, 24)}: a point and a comma in one number",
            )
        mark = "," if comma else "."
        if mark != self.decimal:
            if self.decimal is not None:
                raise BadRowError(
                    "other decimal mark",
                    f"column {shown(self.columns[k])} is {shown(text, 24)}: this stream writes decimal "
                    f"{'commas' if self.decimal == ',' else 'points'}",
                )
            read = text.replace(",", ".") if comma else text
            if _number(read):  # a word with a point in it decides nothing
                self.decimal = mark
            return read
        return text.replace(",", ".") if comma else text


def _number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return text.isascii() and "_" not in text

"""Sensor rows by column name: a CSV header -> the model's columns, a CSV row -> float values or a reason."""

from __future__ import annotations

import csv
import math
from collections.abc import Sequence

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

    time_gap = False  # the row also came after a gap in time (series.py): counted though the row is dropped

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason


def split_line(line: str) -> list[str]:
    """One CSV line (no line break) -> fields. Quotes are honoured within the line and never span lines,
    so a stray quote in one bad row cannot swallow the good rows after it."""
    if '"' not in line:
        return line.split(",")
    inner = line[1:-1]
    if line[:1] == '"' and line[-1:] == '"' and len(line) > 1 and '"' not in inner.replace('","', ""):
        # every field quoted and no quote inside one (the bundled data set's form): what csv.reader returns,
        # split in C without its per-character state machine (a hypothesis test holds the two equal)
        return inner.split('","')
    try:
        return next(csv.reader((line,)), [])
    except csv.Error as exc:
        raise BadRowError("unparsable", str(exc)) from None


def is_header(line: str, columns: Sequence[str]) -> bool:
    """Whether `line` names every one of `columns`: the header of a file that follows another."""
    try:
        names = {_clean(f) for f in split_line(line)}
    except BadRowError:
        return False
    return all(c in names for c in columns)


def _clean(name: str) -> str:
    return name.lstrip("\ufeff").strip().strip('"').strip()


class RowParser:
    """Finds `columns` in a header by name (order and extra columns do not matter) and parses rows.

    `time_column`, when given, is carried along as text, and so is `key_column`. A missing value (one of
    MISSING_TOKENS, or a number that is NaN) is written as NaN and its column index listed in `missing`; what it
    means is for the series rules (series.py) to say. Training, evaluation and the runner all read rows through
    this class, so a file parses the same way everywhere.
    """

    missing: list[int] | None = None

    def __init__(
        self,
        header: Sequence[str],
        columns: Sequence[str],
        time_column: str | None = None,
        key_column: str | None = None,
    ) -> None:
        names = [_clean(h) for h in header]
        wanted = list(columns) + [c for c in (time_column, key_column) if c]
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
        self.time_index = names.index(time_column) if time_column else None
        self.key_index = names.index(key_column) if key_column else None
        self.width = len(names)

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
        for k, i in enumerate(self.indices):
            text = fields[i]
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
            out[k] = value
        self.missing = missing
        return fields[self.time_index].strip() if self.time_index is not None else None

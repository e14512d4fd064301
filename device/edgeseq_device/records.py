"""Predictions to output records: JSON lines or CSV, one per window, written a block at a time and flushed at
once when a live consumer reads them."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from edgeseq_device.sinks import RecordSink


def json_text(text: str | None) -> str:
    """`json.dumps(text)`, without its cost for the usual time text (printable ASCII, no quote or backslash)."""
    if text.__class__ is str and text.isascii() and text.isprintable() and '"' not in text and "\\" not in text:
        return f'"{text}"'
    return json.dumps(text)


def _csv_field(value: Any) -> str:
    text = value if isinstance(value, str) else repr(value)
    return '"' + text.replace('"', '""') + '"' if any(c in text for c in ',"\n\r') else text


class Writer:
    """One record per line, to a sink (sinks.py) that sends a live reader each read's records at once and
    writes every record whole or not at all.

    Records are `row`, `time` (when the stream has a time column), `key` (when it has a key column) and the
    task's fields: `prediction` for a forecaster, and `target_time` for one on the time grid. With --score, score
    records (`score`) go in the same output, marked `"kind": "score"`. Numbers are always finite here: the runner
    reports a non-finite value instead of writing it, since `inf` and `NaN` are not JSON.
    """

    def __init__(
        self,
        sink: RecordSink,
        fmt: str,
        has_time: bool,
        fields: Sequence[str] = ("prediction",),
        key_column: str | None = None,
    ) -> None:
        self.sink, self.fmt, self.has_time, self.has_key = sink, fmt, has_time, key_column is not None
        self.keys = [f", {json.dumps(name)}: " for name in fields]
        if fmt == "csv":
            head = ["row", *(["time"] if has_time else []), *(["key"] if self.has_key else [])]
            sink.write([",".join([*head, *map(_csv_field, fields)]) + "\n"])

    def format(self, row: int, when: str | None, values: Sequence[Any], key: str | None = None) -> str:
        """The record as a line, with its line break."""
        if self.fmt == "jsonl":
            head = f'{{"row": {row}, "time": {json_text(when)}' if self.has_time else f'{{"row": {row}'
            if self.has_key:
                head += f', "key": {json.dumps(key)}'
            if len(values) == 1 and values[0].__class__ is float:  # a forecast: the per-row path, kept short
                return f"{head}{self.keys[0]}{values[0]!r}}}\n"
            pairs = zip(self.keys, values, strict=True)
            parts = [key + (json.dumps(v) if v.__class__ is str else repr(v)) for key, v in pairs]
            return head + "".join(parts) + "}\n"
        head = [str(row), *([_csv_field(when or "")] if self.has_time else [])]
        if self.has_key:
            head.append(_csv_field(key or ""))
        return ",".join([*head, *map(_csv_field, values)]) + "\n"

    def score(
        self, row: int, when: str | None, key: str | None, target_time: str | None, prediction: float, actual: float,
        persistence: float,
    ) -> str:  # fmt: skip
        """A score record (scoring.py): a forecast and the actual it forecast, as a JSON line marked `"kind":
        "score"`, with the row and time of the actual's reading."""
        head = f'{{"kind": "score", "row": {row}'
        if self.has_time:
            head += f', "time": {json_text(when)}'
        if self.has_key:
            head += f', "key": {json.dumps(key)}'
        if target_time is not None:
            head += f', "target_time": {json_text(target_time)}'
        return (
            f'{head}, "prediction": {prediction!r}, "actual": {actual!r}, "error": {prediction - actual!r}, '
            f'"persistence": {persistence!r}, "persistence_error": {persistence - actual!r}}}\n'
        )

    def write_all(self, records: list[str]) -> None:
        """Write formatted records, whole, in one write to the sink (sinks.RecordSink)."""
        self.sink.write(records)

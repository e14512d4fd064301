"""A run's JSON-lines records (`edgeseq run --score`) read a line at a time into numpy arrays, one per field of
the score records; forecast records are only counted."""

from __future__ import annotations

import json
import math
from array import array
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import numpy as np

from edgeseq.errors import BadInputError
from edgeseq_device.files import not_found
from edgeseq_device.messages import shown
from edgeseq_device.rows import BadRowError
from edgeseq_device.times import parse_time

NO_KEY = ""  # the one series of a stream without keys
_EPOCH = datetime(1970, 1, 1)
_FIRST_DATE = (datetime(2, 1, 1) - _EPOCH).total_seconds()
_LAST_DATE = (datetime(9998, 12, 31) - _EPOCH).total_seconds()


@dataclass(frozen=True)
class Scores:
    """The score records of a run, in file order: one entry per forecast whose actual arrived.

    `x` is the target time in unix seconds when every score record's target_time reads as an ISO 8601 time, else
    the row of the actual (`time_axis` says which, and `why_rows` why rows were used)."""

    path: Path
    keys: tuple[str, ...]  # in order of first appearance
    key: np.ndarray  # int index into keys, per score record
    x: np.ndarray
    time_axis: bool
    why_rows: str | None
    prediction: np.ndarray
    actual: np.ndarray
    persistence: np.ndarray  # NaN where a record has none
    forecasts: int  # forecast records (no "kind"), scored or not
    forecasts_per_key: dict[str, int]
    other_records: int  # records of another kind, skipped

    def __len__(self) -> int:
        return len(self.prediction)


def _seconds(text: object) -> float | None:
    """An ISO 8601 time text -> unix seconds (times without a zone read as UTC, as the runner reads them)."""
    if not isinstance(text, str):
        return None
    try:
        moment = datetime.fromisoformat(text)  # the common case, without parse_time's extra calls
        if moment.tzinfo is None:
            return (moment - _EPOCH).total_seconds()
    except ValueError:
        pass
    try:
        return parse_time(text, "iso8601")
    except BadRowError:
        return None


def _finite(value: object) -> float | None:
    """A JSON number as a finite float, or None (not a number, NaN, infinite, an integer too large for a float)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    try:
        number = float(value)
    except OverflowError:
        return None
    return number if math.isfinite(number) else None


def _number(record: dict, field: str, where: str, required: bool = True) -> float:
    value = record.get(field)
    number = _finite(value)
    if number is None:
        if not required:  # persistence: none, as where a record has none
            return math.nan
        said = shown(json.dumps(value), 40)
        raise BadInputError(f"{where}: a score record whose {field!r} is {said}, not a finite number")
    return number


def _not_an_object(path: Path, number: int, line: str) -> BadInputError:
    hint = ""
    if "," in line and not line.lstrip().startswith(("{", "[")):
        hint = " (a CSV record file? edgeseq report reads the JSON lines of edgeseq run --score, --format jsonl)"
    return BadInputError(f"{path} line {number:,}: not a JSON object: {shown(line.rstrip(), 40)}{hint}")


def read_scores(path: Path) -> Scores:
    """Read the records file at `path`. BadInputError (one line, naming the line) for a missing or unreadable file,
    a line that is not a JSON object, a score record without numbers, or a file with no score records."""
    path = Path(path)
    if not path.is_file():
        raise BadInputError(not_found("records file", path) if not path.exists() else f"{path} is not a file")
    keys: dict[str, int] = {}
    key_ids = array("l")
    xs, rows, prediction, actual, persistence = (array("d") for _ in range(5))
    forecasts_per_key: dict[str, int] = {}
    forecasts = other = 0
    bad_time: str | None = None
    number = 0
    try:
        with open(path, encoding="utf-8") as lines:
            for number, line in enumerate(lines, start=1):
                if not line.strip():
                    continue
                try:
                    record = json.loads(line)
                except ValueError:
                    raise _not_an_object(path, number, line) from None
                if not isinstance(record, dict):
                    raise _not_an_object(path, number, line)
                kind = record.get("kind")
                key = record.get("key")
                key = NO_KEY if key is None else str(key)
                if kind is None:
                    forecasts += 1
                    forecasts_per_key[key] = forecasts_per_key.get(key, 0) + 1
                    continue
                if kind != "score":
                    other += 1
                    continue
                where = f"{path} line {number:,}"
                prediction.append(_number(record, "prediction", where))
                actual.append(_number(record, "actual", where))
                persistence.append(_number(record, "persistence", where, required=False))
                key_ids.append(keys.setdefault(key, len(keys)))
                row = _finite(record.get("row"))
                rows.append(len(rows) if row is None else row)
                if bad_time is None:
                    seconds = _seconds(record.get("target_time"))
                    if seconds is None:
                        text = record.get("target_time")
                        said = "no target_time" if text is None else f"target_time {shown(str(text), 40)}, not ISO 8601"
                        bad_time = f"line {number:,} has {said}"
                    else:
                        xs.append(seconds)
    except UnicodeDecodeError as exc:
        raise BadInputError(f"{path} line {number + 1:,}: not UTF-8 text ({exc.reason})") from None
    except OSError as exc:
        raise BadInputError(f"cannot read {path}: {exc.strerror or exc}") from None
    if not prediction:
        seen = f"{forecasts:,} forecast records" if forecasts else "no records"
        raise BadInputError(f"{path} has no score records ({seen}): run with edgeseq run --score")
    if bad_time is None and xs:
        low, high = min(xs), max(xs)
        margin = (high - low) * 0.1  # a plot's axis pads the data's span: its dates must stay within years 1 to 9999
        if low - margin < _FIRST_DATE or high + margin > _LAST_DATE:
            bad_time = "target times too near year 1 or 9999 for a plot's dates"
    time_axis = bad_time is None
    return Scores(
        path=path,
        keys=tuple(keys),
        key=np.frombuffer(key_ids, dtype=np.int64 if key_ids.itemsize == 8 else np.int32).astype(np.intp),
        x=np.frombuffer(xs if time_axis else rows, dtype=np.float64),
        time_axis=time_axis,
        why_rows=bad_time,
        prediction=np.frombuffer(prediction, dtype=np.float64),
        actual=np.frombuffer(actual, dtype=np.float64),
        persistence=np.frombuffer(persistence, dtype=np.float64),
        forecasts=forecasts,
        forecasts_per_key=forecasts_per_key,
        other_records=other,
    )

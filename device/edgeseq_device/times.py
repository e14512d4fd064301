"""Time texts to unix seconds: one at a time (`parse_time`, the definition the series rules use row by row), or
a block's worth at once (`many_times`, the runner's fast path, which gives the same seconds for every text it
takes and declines anything else); and intervals such as '10min'.

Times without a zone are read as UTC: no daylight-saving shifts. With a strptime pattern, an hour of 24:00 (as
typical-year files and many loggers write the end of a day) is the next day's 00:00.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from datetime import datetime, timedelta
from itertools import repeat

import numpy as np

from edgeseq_device.messages import shown
from edgeseq_device.rows import BadRowError

TIME_FORMATS = ("iso8601", "unix-seconds", "unix-milliseconds")  # or a strptime pattern: "%d/%m/%Y %H:%M"
_UNITS = {"ms": 1e-3, "s": 1.0, "sec": 1.0, "min": 60.0, "h": 3600.0, "d": 86400.0}


# Unix times are read in seconds or milliseconds; either must fall within years 1 to 9999, as datetimes do.
_UNIX_SCALE = {"unix-seconds": 1.0, "unix-milliseconds": 1e-3}
_LATEST = 253402300799.0  # 9999-12-31T23:59:59Z
_EARLIEST = -62135596800.0  # 0001-01-01T00:00:00Z
_EPOCH = datetime(1970, 1, 1)


def parse_time(text: str, time_format: str) -> float:
    """A time text -> unix seconds. Times without a zone are read as UTC (no daylight-saving shifts)."""
    try:
        scale = _UNIX_SCALE.get(time_format)
        if scale is not None:
            value = float(text) * scale
            if not _EARLIEST <= value <= _LATEST:  # also false for NaN
                raise ValueError("out of range")
            return value
        if time_format == "iso8601":
            try:
                moment = datetime.fromisoformat(text)
            except ValueError:  # Python 3.10's fromisoformat knows no "Z"; and spaces around
                text = text.strip()
                moment = datetime.fromisoformat(text[:-1] + "+00:00" if text[-1:] in ("Z", "z") else text)
        else:
            moment = _strptime(text.strip(), time_format)
        if moment.tzinfo is None:  # the runner's per-row path: subtraction is 4x faster than .timestamp()
            return (moment - _EPOCH).total_seconds()
        return moment.timestamp()
    except (ValueError, IndexError, OverflowError, OSError):
        raise BadRowError("bad time", f"time {shown(text, 40)} is not {_format_words(time_format)}") from None


_MIDNIGHT_AS_24 = re.compile(r"(?<![0-9:])24:00(:00)?(?![0-9:])")


def _strptime(text: str, pattern: str) -> datetime:
    """datetime.strptime, and 24:00 (or 24:00:00) as the next day's midnight."""
    try:
        return datetime.strptime(text, pattern)
    except ValueError:
        midnight, count = _MIDNIGHT_AS_24.subn(lambda m: "00:00" + (m.group(1) or ""), text)
        if count != 1:
            raise
        return datetime.strptime(midnight, pattern) + timedelta(days=1)


def iso_time(seconds: float) -> str:
    """Unix seconds as an ISO 8601 time without a zone (UTC, as times are read): 1997-01-02 00:00:00."""
    return (_EPOCH + timedelta(seconds=seconds)).isoformat(sep=" ")


# Date and time patterns that training tries when a time is neither ISO 8601 nor unix time: day-first and
# month-first dates are both here, and a file whose dates read either way is asked for --time-format
DATE_PATTERNS = tuple(
    f"{date} {clock}" for date in ("%m/%d/%Y", "%d/%m/%Y", "%d.%m.%Y", "%Y/%m/%d") for clock in ("%H:%M", "%H:%M:%S")
)


def detect_date_pattern(texts: Sequence[str]) -> list[str]:
    """The DATE_PATTERNS that read every one of `texts` (a date and a time of day each)."""
    found = []
    for pattern in DATE_PATTERNS:
        try:
            for text in texts:
                _strptime(text.strip(), pattern)
        except ValueError:
            continue
        found.append(pattern)
    return found


def _format_words(time_format: str) -> str:
    words = {"iso8601": "an ISO 8601 time", "unix-seconds": "unix seconds", "unix-milliseconds": "unix milliseconds"}
    return words.get(time_format, repr(time_format))


def detect_time_format(text: str) -> str | None:
    """Which of TIME_FORMATS reads `text` (a first time value), or None. ISO 8601 first, so 20260301 is a
    date; a number is unix seconds unless that would be after year 9999, then milliseconds."""
    for time_format in TIME_FORMATS:
        try:
            parse_time(text, time_format)
        except BadRowError:
            continue
        return time_format
    return None


def check_time_format(time_format: str) -> None:
    """ValueError unless `time_format` is one of TIME_FORMATS or a strptime pattern that reads what it writes."""
    if time_format in TIME_FORMATS:
        return
    sample = datetime(2001, 2, 3, 4, 5, 6)
    try:
        datetime.strptime(sample.strftime(time_format), time_format)
    except (ValueError, TypeError) as exc:
        raise ValueError(f"time format {time_format!r} is not a usable strptime pattern ({exc})") from None


def parse_interval(text: str) -> float:
    """'10min', '1h', '15.625ms', '600' (seconds) -> seconds. ValueError otherwise."""
    match = re.fullmatch(r"\s*(\d+(?:\.\d*)?|\.\d+)\s*(ms|s|sec|min|h|d)?\s*", text)
    if not match or not 0 < float(match.group(1)) * _UNITS[match.group(2) or "s"] < 1e12:
        raise ValueError(f"{text!r} is not an interval such as 10min, 1h, 30s, 15.625ms or 1d")
    return float(match.group(1)) * _UNITS[match.group(2) or "s"]


def interval_words(seconds: float) -> str:
    for unit, size in (("d", 86400.0), ("h", 3600.0), ("min", 60.0), ("s", 1.0)):
        if seconds >= size and (seconds / size).is_integer():
            return f"{int(seconds / size)}{unit}"
    return f"{seconds * 1000:g}ms" if seconds < 1 else f"{seconds:g}s"


def many_times(texts: Sequence[str], time_format: str) -> np.ndarray | None:
    """The seconds of every text (stripped) as `parse_time` gives them, float64, by the same arithmetic in C
    loops; or None when one of them is anything but the plain case (a zone, a bad time, a strptime pattern),
    which the row path then reads and reports one by one. A hypothesis test holds the two equal."""
    scale = _UNIX_SCALE.get(time_format)
    try:
        if scale is not None:
            seconds = np.fromiter(map(float, texts), np.float64, len(texts)) * scale
            # NaN fails both comparisons, as in parse_time
            return seconds if bool(((seconds >= _EARLIEST) & (seconds <= _LATEST)).all()) else None
        if time_format != "iso8601":
            return None
        # a time with a zone cannot be subtracted from the naive epoch: TypeError, and the row path reads it
        since = map(datetime.__sub__, map(datetime.fromisoformat, texts), repeat(_EPOCH))
        return np.fromiter(map(timedelta.total_seconds, since), np.float64, len(texts))
    except (ValueError, TypeError, OverflowError):
        return None

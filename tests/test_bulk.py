"""The runner's fast path (bulk.py, times.many_times, Series.admit_plain, WindowBuffer.push_many, records.json_text)
against the row-by-row definitions it must equal: whatever the fast path takes, it reads as the row path does,
bit for bit; what it declines, the row path reads. Then whole runs, fast path on and off, give the same bytes."""

from __future__ import annotations

import io
import json
import math
import re
from datetime import datetime, timedelta, timezone
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

import edgeseq_device.bulk as bulk
from edgeseq_device.bulk import PlainReader, split_plain
from edgeseq_device.records import json_text
from edgeseq_device.rows import BadRowError, RowParser, split_line
from edgeseq_device.runner import RunOptions, run_stream
from edgeseq_device.series import GAP_TOLERANCE, Series, SeriesRules, WindowBuffer, parse_time
from edgeseq_device.times import many_times
from tests.streams import LINES, SENSOR_CSV, SENSOR_ONNX, write_lines

# --- fields and values -------------------------------------------------------------------------------------

PLAIN = st.one_of(
    st.floats(allow_nan=False, allow_infinity=False, width=32).map(repr),
    st.integers(-(10**6), 10**6).map(str),
    st.sampled_from([" 7.25 ", "+.5", "-0", "1e-300", "3.4e38"]),
)
ODD = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True).filter(lambda v: not abs(v) <= 3.4028234663852886e38).map(repr),
    st.sampled_from(["1e39", "-3.5e38", "1_000", "\u0663", "0x10", "", "NA", "nan", "-", "?", "1,5", "x"]),
    st.sampled_from(['"', '""', 'a"b', ",", "\t", " "]),
)
TIMES = st.sampled_from(["2026-03-01 00:00:00", "1772323200", "2026-03-01T00:00:00+01:00"])


def _line(fields: list[str], quoted: bool) -> str:
    return ",".join(f'"{f}"' for f in fields) if quoted else ",".join(fields)


@st.composite
def blocks(draw, width: int = 4):
    """Lines of `width` plain fields, and sometimes one thing that is not plain: an odd value, a field too
    many, a quote, the other quoting, a line cut short."""
    quoted = draw(st.booleans())
    rows = [[draw(TIMES)] + [draw(PLAIN) for _ in range(width - 1)] for _ in range(draw(st.integers(1, 8)))]
    where = draw(st.integers(0, len(rows) - 1))
    change = draw(st.sampled_from(["none", "none", "value", "value", "insert", "requote", "cut"]))
    if change == "value":
        rows[where][draw(st.integers(0, width - 1))] = draw(ODD)
    elif change == "insert":
        rows[where].insert(draw(st.integers(0, width)), draw(ODD))
    lines = [_line(row, quoted != (change == "requote" and i == where)) for i, row in enumerate(rows)]
    if change == "cut":
        lines[where] = lines[where][: draw(st.integers(0, len(lines[where])))]
    return lines


HEADER = ["time", "a", "b", "c"]

# The plain forms, as bulk.py's docstring names them, written out here: a plain block must take the fast path.
NUMBER = re.compile(r"\s*[+-]?([0-9]+\.?[0-9]*|\.[0-9]+)([eE][+-]?[0-9]+)?\s*")  # ASCII digits, no "_"
NAIVE_ISO = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}[ T][0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]{1,6})?|[0-9]{8}T[0-9]{6}")
FLOAT32_MAX = 3.4028234663852886e38


def _plain_time(text: str, time_format: str | None) -> bool:
    if time_format == "iso8601":
        return NAIVE_ISO.fullmatch(text) is not None  # no zone
    return time_format is None or NUMBER.fullmatch(text) is not None


def _plain(lines: list[str], time_format: str | None) -> bool:
    """Every line of the block unquoted, or every field of every line quoted with no quote inside (one quoting
    for the whole block); the header's 4 fields; each value an ASCII number within float32's range; the time one
    the rules' format reads without a zone."""
    quoted = any('"' in line for line in lines)
    for line in lines:
        if quoted:
            if len(line) < 2 or not line[0] == line[-1] == '"':
                return False
            fields = line[1:-1].split('","')
            if any('"' in field for field in fields):
                return False
        else:
            fields = line.split(",")
        if len(fields) != len(HEADER) or not _plain_time(fields[0], time_format):
            return False
        if not all(NUMBER.fullmatch(f) and abs(float(f)) <= FLOAT32_MAX for f in fields[1:]):
            return False
    return True


def _row_path(lines: list[str], parser: RowParser, time_format: str | None):
    """What the row path makes of each line, or the first BadRowError."""
    values, texts, seconds = [], [], []
    for line in lines:
        out = np.empty(len(parser.indices))
        text = parser.parse(split_line(line), out)
        if parser.missing:
            raise BadRowError("missing value", "-")
        values.append(out)
        texts.append(text)
        if time_format is not None:
            seconds.append(parse_time(text, time_format))
    return np.array(values), texts, seconds


@settings(max_examples=600, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(lines=blocks(), time_format=st.sampled_from([None, "iso8601", "unix-seconds"]))
@example(lines=['"t","1_000","2","3"'], time_format=None)  # float() reads 1_000; the rules do not
@example(lines=['"t","\u0663","2","3"'], time_format=None)  # nor another script's digits
@example(lines=["t,1e39,2,3"], time_format=None)  # beyond float32
@example(lines=["t,nan,2,3"], time_format=None)  # a missing value
@example(lines=['"a"b","1","2","3"'], time_format=None)  # a stray quote: split_line's csv path gives 'ab"'
@example(lines=['"t","1","2","3"', '"a"b","1","2","3"'], time_format=None)
def test_a_plain_block_reads_as_the_row_path_reads_it(lines, time_format):
    parser = RowParser(HEADER, ["a", "c", "b"], "time")
    got = PlainReader(parser, time_format).read(lines)
    try:
        values, texts, seconds = _row_path(lines, parser, time_format)
    except BadRowError:
        assert got is None  # a block with a bad row or a missing value is the row path's
        return
    if got is None:  # declined: allowed only when the block is not of the plain forms
        assert not _plain(lines, time_format), "a plain block was declined"
        return
    assert got.values.tobytes() == values.tobytes()  # bit for bit, -0.0 included
    assert got.time_texts == texts
    if time_format is None:
        assert got.seconds is None
    else:
        assert got.seconds.tolist() == seconds


@pytest.mark.parametrize("quoted", [False, True])
def test_the_plain_forms_are_taken(quoted):
    # the declining path must not be all there is: the usual rows, quoted and not, are read in bulk
    lines = [
        _line(["2026-03-01 00:00:00", "1.5", "-2", "3e2"], quoted),
        _line(["2026-03-01 00:10:00", "0", "1", "2"], quoted),
    ]
    got = PlainReader(RowParser(HEADER, ["a", "b"], "time"), "iso8601").read(lines)
    assert got is not None and got.values.tolist() == [[1.5, -2.0], [0.0, 1.0]]
    assert got.seconds.tolist() == [1772323200.0, 1772323800.0]


@settings(max_examples=500, deadline=None)
@given(
    st.lists(
        st.one_of(
            st.text(alphabet='ab,"\n ', max_size=12),
            st.lists(st.text(alphabet='ab,"', max_size=3), min_size=1, max_size=3).map(lambda f: _line(f, True)),
        ),
        min_size=1,
        max_size=6,
    ),
    st.integers(1, 4),
)
@example(['"a"b","1"'], 2)
@example(['"a""b","1"', '"x","y"'], 2)
def test_split_plain_is_split_line_wherever_it_answers(lines, width):
    lines = [line.replace("\n", "") for line in lines]
    got = split_plain(lines, width)
    if got is None:
        return
    expected = [split_line(line) for line in lines]
    assert got == expected and all(len(f) == width for f in got)


# --- times -------------------------------------------------------------------------------------------------

MOMENTS = st.datetimes(min_value=datetime(1, 1, 2), max_value=datetime(9999, 12, 30))
ISO_TEXTS = st.one_of(
    MOMENTS.map(lambda d: d.isoformat(sep=" ")),
    MOMENTS.map(lambda d: d.isoformat(timespec="microseconds")),
    MOMENTS.map(lambda d: d.replace(tzinfo=timezone(timedelta(hours=2))).isoformat()),
    MOMENTS.map(lambda d: d.strftime("%Y%m%dT%H%M%S")),
    st.sampled_from(["2026-03-01T00:00:00Z", "2026-02-30 00:00:00", "", "yesterday", "2026-03-01 24:00:00"]),
)
UNIX_TEXTS = st.one_of(
    st.floats(-7e10, 3e11).map(repr), st.sampled_from(["nan", "inf", "1e300", "1_000", " 12 ", "12s"])
)


@settings(max_examples=300, deadline=None)
@given(st.lists(ISO_TEXTS, min_size=1, max_size=8))
def test_many_iso_times_are_parse_time_or_declined(texts):
    _same_times(texts, "iso8601")


@settings(max_examples=300, deadline=None)
@given(st.lists(UNIX_TEXTS, min_size=1, max_size=8), st.sampled_from(["unix-seconds", "unix-milliseconds"]))
def test_many_unix_times_are_parse_time_or_declined(texts, time_format):
    _same_times(texts, time_format)


def _same_times(texts: list[str], time_format: str) -> None:
    got = many_times(texts, time_format)
    try:
        expected = [parse_time(text, time_format) for text in texts]
    except BadRowError:
        assert got is None
        return
    if got is None:  # declined: allowed only for a text that is not of the plain forms (a zone, say)
        assert not all(_plain_time(text, time_format) for text in texts), "plain times were declined"
        return
    assert got.tolist() == expected


def test_naive_iso_and_unix_times_are_taken_and_a_zone_or_a_pattern_is_not():
    assert many_times(["2016-01-11 17:00:00", "2016-01-11T17:10:00"], "iso8601").tolist() == [
        1452531600.0,
        1452532200.0,
    ]
    assert many_times(["1452531600250"], "unix-milliseconds").tolist() == [1452531600.25]
    assert many_times(["2016-01-11T17:00:00+01:00"], "iso8601") is None
    assert many_times(["11/01/2016 17:00"], "%d/%m/%Y %H:%M") is None


# --- records -----------------------------------------------------------------------------------------------


@settings(max_examples=500, deadline=None)
@given(st.one_of(st.text(), st.text(alphabet='ab 1:-"\\/\x7f\x1f\u00e9\u2028')))
@example("2026-03-01 00:00:00")
@example("a\\b")
@example('a"b')
def test_json_text_is_json_dumps(text):
    assert json_text(text) == json.dumps(text)


# --- the ring buffer and the series rules ------------------------------------------------------------------


@settings(max_examples=200, deadline=None)
@given(st.integers(2, 7), st.lists(st.integers(0, 20), min_size=1, max_size=6))
def test_push_many_is_pushes(window, sizes):
    one, many = WindowBuffer(window, 2), WindowBuffer(window, 2)
    counter = 0
    for size in sizes:
        rows = np.arange(counter, counter + size, dtype=np.float64).repeat(2).reshape(size, 2)
        counter += size
        for row in rows:
            one.push(row)
        many.push_many(rows)
        assert (one.filled, one._next) == (many.filled, many._next)
        for count in range(1, min(one.filled, window) + 1):
            assert many.newest(count).tolist() == one.newest(count).tolist() == rows_before(counter, count)


def rows_before(counter: int, count: int) -> list[list[float]]:
    return [[float(v), float(v)] for v in range(counter - count, counter)]


STEPS = st.lists(st.sampled_from([600.0, 300.0, 899.0, 900.0, 901.0, 0.0, -600.0, 1e6]), min_size=1, max_size=10)


@settings(max_examples=300, deadline=None)
@given(STEPS, st.integers(0, 3), st.booleans(), st.integers(0, 2), st.booleans())
def test_admit_plain_is_admits_or_nothing(steps, earlier, fill, runs, back):
    rules = SeriesRules(time_format="iso8601", interval=600.0, fill_gaps=2 if fill else 0)
    one, many = Series(4, ["a", "b"], rules), Series(4, ["a", "b"], rules)
    when = 1e9
    for i in range(earlier):  # some history first, maybe with values carried forward
        when += 600.0
        for series in (one, many):
            missing = [0] if fill and 1 <= i <= runs else None  # carried from the row before
            series.admit(np.array([math.nan if missing else 1.0, 2.0]), missing, when, "t")
    if back and earlier:  # a row behind the newest time: a bad row, and a count of rows behind
        for series in (one, many):
            with pytest.raises(BadRowError):
                series.admit(np.array([1.0, 2.0]), None, when - 60.0, "t")
        assert many._behind == 1
    times = when + np.cumsum(steps)
    rows = np.arange(2 * len(steps), dtype=np.float64).reshape(-1, 2)
    before = _state(many)
    taken = many.admit_plain(rows, times)
    flags = []
    try:
        for row, moment in zip(rows, times, strict=True):
            flags.append(one.admit(row.copy(), None, float(moment), "t"))
    except BadRowError:
        flags.append(-1)
    if taken:
        assert flags == [0] * len(steps) and _state(many) == _state(one)
    else:
        assert any(flags) and _state(many) == before  # a flag or a bad row: nothing was pushed


def _state(series: Series) -> tuple:
    filled = series.buffer.filled
    shown = series.buffer.newest(min(filled, series.buffer.window)).tolist() if filled else []
    return (series.last_time, series._forward, series._behind, series._runs, filled, shown)


def test_gap_tolerance_is_what_admit_plain_checks():
    series = Series(3, ["a"], SeriesRules(time_format="iso8601", interval=600.0))
    assert series.admit_plain(np.zeros((2, 1)), np.array([0.0, GAP_TOLERANCE * 600.0]))
    assert not series.admit_plain(np.zeros((1, 1)), np.array([GAP_TOLERANCE * 600.0 * 2 + 0.001]))


# --- whole runs, fast path on and off ----------------------------------------------------------------------


def _run(stream: Path, monkeypatch, fast: bool, **options) -> tuple[int, str, str]:
    with monkeypatch.context() as patch:
        if not fast:
            patch.setattr(bulk.PlainReader, "read", lambda self, lines: None)
        out, err = io.StringIO(), io.StringIO()
        code = run_stream(RunOptions(stream=str(stream), model=SENSOR_ONNX, **options), out, err)
    summary = [line.rsplit(", ", 2)[0] for line in err.getvalue().splitlines()]  # without the time and rate
    return code, out.getvalue(), "\n".join(summary)


def _sensor_variants(tmp_path: Path) -> list[Path]:
    body = LINES[1:]
    rows = [LINES[0]]
    for i, line in enumerate(body * 2):
        if i % 700 == 350:
            rows.append(line.replace('"', "").replace(",", ",NA,", 1))  # unquoted, a field too many
        elif i % 500 == 250:
            continue  # a row lost: a gap in time
        elif i % 900 == 450:
            rows.append(line.replace(line.split(",")[5], '"NA"'))  # a missing value
        else:
            rows.append(line)
        if i == 1500:
            rows.append(LINES[0])  # a header again
    return [SENSOR_CSV, write_lines(tmp_path / "variants.csv", rows)]


@pytest.mark.parametrize("stride", [1, 5])
def test_a_run_gives_the_same_records_and_messages_with_and_without_the_fast_path(tmp_path, monkeypatch, stride):
    for stream in _sensor_variants(tmp_path):
        fast = _run(stream, monkeypatch, True, stride=stride, progress_seconds=0)
        slow = _run(stream, monkeypatch, False, stride=stride, progress_seconds=0)
        assert fast == slow
        assert fast[1].count("\n") > 2000 / stride


def test_the_fast_path_is_taken_on_the_sample(monkeypatch):
    seen = []
    real = bulk.PlainReader.read

    def counting(self, lines):
        got = real(self, lines)
        seen.append(got is not None)
        return got

    monkeypatch.setattr(bulk.PlainReader, "read", counting)
    run_stream(RunOptions(stream=str(SENSOR_CSV), model=SENSOR_ONNX), io.StringIO(), io.StringIO())
    assert seen and all(seen)  # every block of the clean sample was read at once

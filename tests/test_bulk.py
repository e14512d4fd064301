"""The runner's fast path (bulk.py, times.many_times, Series.admit_plain, WindowBuffer.push_many, records.json_text)
against the row-by-row definitions it must equal: whatever the fast path takes, it reads as the row path does,
bit for bit; what it declines, the row path reads. Then whole runs, fast path on and off, give the same bytes."""

from __future__ import annotations

import io
import json
import math
import re
import shutil
from datetime import datetime, timedelta, timezone
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

import edgeseq_device.bulk as bulk
from edgeseq_device.bulk import PlainReader, split_plain
from edgeseq_device.records import json_text
from edgeseq_device.rows import DELIMITERS, BadRowError, RowParser, split_line
from edgeseq_device.runner import RunOptions, run_stream
from edgeseq_device.series import GAP_TOLERANCE, Series, SeriesRules, WindowBuffer, parse_time
from edgeseq_device.times import many_times
from tests.streams import LINES, SENSOR_CSV, SENSOR_ONNX, in_dialect, write_lines

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
        text = parser.parse(parser.split(line), out)
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


# --- every delimiter and decimal mark ------------------------------------------------------------------------

MARKED = st.sampled_from(["1.234,5", "1,234.5", "1,2,3", "2,", ",5", "1 ,5", "n.a."])


def _dialect_line(fields: list[str], delimiter: str, quoted: bool) -> str:
    return delimiter.join(f'"{f}"' for f in fields) if quoted else delimiter.join(fields)


@st.composite
def dialect_blocks(draw, width: int = 4):
    """(lines, delimiter, decimal mark written, mark already decided): lines of `width` plain fields in a dialect,
    and sometimes one thing that is not plain: an odd value, the other mark, both marks, a delimiter in a field."""
    delimiter = draw(st.sampled_from(DELIMITERS))
    mark = "." if delimiter == "," else draw(st.sampled_from([".", ","]))
    decided = "." if delimiter == "," else draw(st.sampled_from([None, None, ".", ","]))
    quoted = draw(st.booleans())
    rows = [
        [draw(TIMES)] + [draw(PLAIN).replace(".", mark) for _ in range(width - 1)]
        for _ in range(draw(st.integers(1, 8)))
    ]
    where = draw(st.integers(0, len(rows) - 1))
    change = draw(st.sampled_from(["none", "none", "value", "other mark", "marked", "insert", "requote", "cut"]))
    column = draw(st.integers(1, width - 1))
    if change == "value":
        rows[where][column] = draw(st.one_of(ODD, st.sampled_from(DELIMITERS)))
    elif change == "other mark":
        rows[where][column] = draw(PLAIN).replace(".", "," if mark == "." else ".")
    elif change == "marked":
        rows[where][column] = draw(MARKED)
    elif change == "insert":
        rows[where].insert(draw(st.integers(0, width)), draw(ODD))
    lines = [
        _dialect_line(row, delimiter, quoted != (change == "requote" and i == where)) for i, row in enumerate(rows)
    ]
    if change == "cut":
        lines[where] = lines[where][: draw(st.integers(0, len(lines[where])))]
    return lines, delimiter, decided


def _plain_in_dialect(lines: list[str], time_format: str | None, delimiter: str, decided: str | None) -> bool:
    """_plain for any delimiter: one quoting for the block, the header's fields, each value a number within
    float32's range; and, where decimal commas may be written, one mark in the block's values, the stream's if
    it is decided."""
    quoted = any('"' in line for line in lines)
    between = f'"{delimiter}"'
    marks = set()
    for line in lines:
        if quoted:
            if len(line) < 2 or not line[0] == line[-1] == '"':
                return False
            fields = line[1:-1].split(between)
            if any('"' in field for field in fields):
                return False
        else:
            fields = line.split(delimiter)
        if len(fields) != len(HEADER) or not _plain_time(fields[0], time_format):
            return False
        for field in fields[1:]:
            marks |= {m for m in ",." if m in field}
            number = field.replace(",", ".") if delimiter != "," else field
            if not (NUMBER.fullmatch(number) and abs(float(number)) <= FLOAT32_MAX):
                return False
    return len(marks) <= 1 and (decided is None or marks <= {decided})


def _parser_in(delimiter: str, decided: str | None) -> RowParser:
    parser = RowParser(HEADER, ["a", "c", "b"], "time", delimiter=delimiter)
    parser.decimal = decided
    return parser


@settings(max_examples=800, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(block=dialect_blocks(), time_format=st.sampled_from([None, "iso8601", "unix-seconds"]))
@example(block=(["t;1,5;2;3", "t;2.5;2;3"], ";", None), time_format=None)  # two marks: the first decides
@example(block=(["t;1.234,5;2;3"], ";", None), time_format=None)  # a thousands separator
@example(block=(["t;1,5;2;3"], ";", "."), time_format=None)  # the other mark
@example(block=(['"t"\t"1,5"\t"2"\t"3"'], "\t", ","), time_format=None)
@example(block=(['"t","1,5","2","3"'], ",", "."), time_format=None)  # a quoted decimal comma: non-numeric
def test_a_plain_block_reads_as_the_row_path_reads_it_in_every_dialect(block, time_format):
    lines, delimiter, decided = block
    fast, slow = _parser_in(delimiter, decided), _parser_in(delimiter, decided)
    got = PlainReader(fast, time_format).read(lines)
    try:
        values, texts, seconds = _row_path(lines, slow, time_format)
    except BadRowError:
        assert got is None and fast.decimal == decided  # the row path's: declined, and nothing decided
        return
    if got is None:  # declined: allowed only when the block is not of the plain forms
        assert not _plain_in_dialect(lines, time_format, delimiter, decided), "a plain block was declined"
        assert fast.decimal == decided
        return
    assert got.values.tobytes() == values.tobytes()  # bit for bit, -0.0 included
    assert got.time_texts == texts
    assert fast.decimal == slow.decimal  # the stream's mark, decided as the row path decides it
    assert got.seconds is None if time_format is None else got.seconds.tolist() == seconds


@pytest.mark.parametrize("delimiter", DELIMITERS)
@pytest.mark.parametrize("quoted", [False, True])
def test_the_plain_forms_are_taken_in_every_dialect(delimiter, quoted):
    mark = "." if delimiter == "," else ","
    lines = [
        _dialect_line(["2026-03-01 00:00:00", f"1{mark}5", "-2", f"3{mark}0e2"], delimiter, quoted),
        _dialect_line(["2026-03-01 00:10:00", "0", f"-0{mark}25", "2"], delimiter, quoted),
    ]
    parser = RowParser(HEADER, ["a", "b"], "time", delimiter=delimiter)
    got = PlainReader(parser, "iso8601").read(lines)
    assert got is not None and got.values.tolist() == [[1.5, -2.0], [0.0, -0.25]]
    assert parser.decimal == mark


@settings(max_examples=300, deadline=None)
@given(
    st.lists(st.lists(st.text(alphabet='ab,;|\t"', max_size=3), min_size=1, max_size=3), min_size=1, max_size=6),
    st.sampled_from(DELIMITERS),
    st.booleans(),
    st.integers(1, 4),
)
def test_split_plain_is_split_line_wherever_it_answers_in_every_dialect(rows, delimiter, quoted, width):
    lines = [_dialect_line(row, delimiter, quoted) for row in rows]
    got = split_plain(lines, width, delimiter)
    if got is None:
        return
    assert got == [split_line(line, delimiter) for line in lines] and all(len(f) == width for f in got)


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
    return [
        SENSOR_CSV,
        write_lines(tmp_path / "variants.csv", rows),
        write_lines(tmp_path / "variants.semicolon.csv", in_dialect(rows, ";", ",")),  # decimal commas too
        write_lines(tmp_path / "variants.tab.csv", ["# exported", *in_dialect(rows, "\t", quoted=False)]),
    ]


@pytest.mark.parametrize("stride", [1, 5])
def test_a_run_gives_the_same_records_and_messages_with_and_without_the_fast_path(tmp_path, monkeypatch, stride):
    for stream in _sensor_variants(tmp_path):
        fast = _run(stream, monkeypatch, True, stride=stride, progress_seconds=0)
        slow = _run(stream, monkeypatch, False, stride=stride, progress_seconds=0)
        assert fast == slow
        assert fast[1].count("\n") > 2000 / stride


@pytest.mark.parametrize("dialect", [(",", "."), (";", ","), ("\t", "."), ("|", ",")])
def test_the_fast_path_is_taken_on_the_sample(tmp_path, monkeypatch, dialect):
    stream = write_lines(tmp_path / "sample.csv", in_dialect(LINES, *dialect))
    seen = []
    real = bulk.PlainReader.read

    def counting(self, lines):
        got = real(self, lines)
        seen.append(got is not None)
        return got

    monkeypatch.setattr(bulk.PlainReader, "read", counting)
    out = io.StringIO()
    run_stream(RunOptions(stream=str(stream), model=SENSOR_ONNX), out, io.StringIO())
    assert seen and all(seen)  # every block of the clean sample was read at once, in every dialect
    assert out.getvalue().count("\n") == 2926


# --- a keyed stream's plain blocks --------------------------------------------------------------------------


def _keyed_model(folder: Path, grid: bool) -> Path:
    """The shipped forecaster with a manifest that keys its series by `sensor` (and, with `grid`, puts them on
    the 10-minute grid)."""
    folder.mkdir()
    shutil.copy(SENSOR_ONNX, folder / SENSOR_ONNX.name)
    manifest = json.loads(SENSOR_ONNX.with_suffix(".json").read_text())
    manifest["series"]["group_by"] = "sensor"
    manifest.pop("batched", None)
    if grid:
        manifest["series"].update(grid_origin="1970-01-01 00:00:00", gap_when_step_exceeds=None)
    (folder / SENSOR_ONNX.with_suffix(".json").name).write_text(json.dumps(manifest))
    return folder / SENSOR_ONNX.name


def _keyed_stream(path: Path) -> Path:
    """Seven sensors interleaved, each the sample's rows in order, with a row lost (a gap), a missing value, a
    reading repeated (a time behind), an extra reading 3 minutes on (a slot already read, on the grid), a key
    that starts late and a row without a key, in some of them."""
    body = LINES[1:1201]
    rows = [LINES[0] + ',"sensor"']
    for i, line in enumerate(body):
        for k in range(7):
            if k == 3 and i % 300 == 150:
                continue
            if k == 6 and i < 400:
                continue  # a key that starts late
            row = f'{line},"s{k}"'
            if k == 4 and i % 250 == 120:
                row = row.replace(line.split(",")[5], '"NA"')
            rows.append(row)
            if k == 5 and i % 200 == 100:
                rows.append(row)  # the same reading again
            if k == 2 and i % 180 == 90:
                rows.append(re.sub(r"(\d\d:\d)0:00", r"\g<1>3:00", row, count=1))  # 3 minutes on
        if i == 600:
            rows.append(f'{line},""')
    return write_lines(path, rows)


@pytest.mark.parametrize("grid", [False, True])
@pytest.mark.parametrize(("stride", "score"), [(1, False), (1, True), (5, True)])
def test_a_keyed_stream_gives_the_same_records_and_messages_with_and_without_the_fast_path(
    tmp_path, monkeypatch, grid, stride, score
):
    model = _keyed_model(tmp_path / "model", grid)
    stream = _keyed_stream(tmp_path / "keyed.csv")
    taken = []
    real = bulk.PlainReader.read

    def counting(self, lines):
        got = real(self, lines)
        taken.append(got is not None)
        return got

    results = []
    for fast in (True, False):
        with monkeypatch.context() as patch:
            patch.setattr(bulk.PlainReader, "read", counting if fast else lambda self, lines: None)
            out, err = io.StringIO(), io.StringIO()
            options = RunOptions(stream=str(stream), model=model, stride=stride, score=score, progress_seconds=0)
            code = run_stream(options, out, err)
        summary = [re.sub(r", [\d.]+ s, [\d,]+ rows/s", "", line) for line in err.getvalue().splitlines()]
        results.append((code, out.getvalue(), summary))
    assert results[0] == results[1]
    assert sum(taken) > 0.8 * len(taken)  # most reads were read at once
    assert results[0][1].count("\n") > 6000 / stride
    if score:
        assert '"kind": "score"' in results[0][1]
    if grid:
        assert "readings in a slot already read" in results[0][2][-1]

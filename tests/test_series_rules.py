"""The series rules of the device runtime: missing tokens, time formats, intervals, carried-forward values,
gaps in time, bad times and keys; and a gateway's stream of 1,000 interleaved sensors."""

import json
import math
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from edgeseq_device.errors import ManifestError
from edgeseq_device.rows import BadRowError, RowParser
from edgeseq_device.series import (
    FILLED,
    JUMPED,
    TIME_GAP,
    NewestFirstError,
    Router,
    Series,
    SeriesRules,
    detect_time_format,
    parse_interval,
    parse_time,
)

UTC = timezone.utc
# What the README's table of series rules promises is read as a missing value, written out here rather than
# taken from the code's constant: a token dropped from the code must fail these tests.
MISSING = ("", "NA", "N/A", "#N/A", "NaN", "null", "nil", "None", "-", "?")


def test_the_readme_lists_the_same_missing_tokens():
    from tests.conftest import REPO

    readme = (REPO / "README.md").read_text()
    assert (
        "| an empty field, " + ", ".join(f"`{token}`" for token in MISSING[1:]) + " (any case, spaces around) |"
        in readme
    )


@pytest.mark.parametrize("token", MISSING)
@given(
    case=st.sampled_from([str.lower, str.upper, str.title, lambda s: s]),
    pad=st.sampled_from(["", " ", "  "]),
    column=st.integers(0, 2),
)
@settings(max_examples=30)
def test_every_missing_token_in_any_case_and_padding_is_a_missing_value(token, case, pad, column):
    parser = RowParser(["t", "a", "b", "c"], ["a", "b", "c"], "t")
    fields = ["noon", "1", "2", "3"]
    fields[column + 1] = pad + case(token) + pad
    out = np.zeros(3)
    assert parser.parse(fields, out) == "noon"
    assert parser.missing == [column] and math.isnan(out[column])
    assert np.isfinite(np.delete(out, column)).all()


@given(st.one_of(st.text(max_size=12), st.sampled_from(MISSING).map(lambda t: f" {t.swapcase()} ")))
@example("NA")
@example("n/a")
@example("7.5")
def test_a_field_is_a_number_a_missing_value_or_a_bad_row(text):
    parser = RowParser(["a"], ["a"])
    out = np.zeros(1)
    token = text.strip().lower() in {t.lower() for t in MISSING}
    try:
        parser.parse([text], out)
    except BadRowError as exc:
        if exc.reason == "empty":  # the line's only field is blank: an empty line, not a missing value
            assert not text.strip()
        else:
            assert not token and exc.reason in {"non-numeric", "infinite", "out of range"}
        return
    if parser.missing:
        assert token or math.isnan(float(text))
    else:
        assert not token and out[0] == float(text)


@pytest.mark.parametrize(
    ("text", "time_format", "expected"),
    [
        ("2013-01-01T06:00:00Z", "iso8601", datetime(2013, 1, 1, 6, tzinfo=UTC)),
        ("2013-01-01T07:00:00+01:00", "iso8601", datetime(2013, 1, 1, 6, tzinfo=UTC)),
        ("2016-01-11 17:00:00", "iso8601", datetime(2016, 1, 11, 17, tzinfo=UTC)),
        ("2016-01-11 17:00", "iso8601", datetime(2016, 1, 11, 17, tzinfo=UTC)),
        ("2016-01-11 17:00:00.250", "iso8601", datetime(2016, 1, 11, 17, 0, 0, 250000, tzinfo=UTC)),
        ("1452531600", "unix-seconds", datetime(2016, 1, 11, 17, tzinfo=UTC)),
        ("1452531600.5", "unix-seconds", datetime(2016, 1, 11, 17, 0, 0, 500000, tzinfo=UTC)),
        ("1452531600250", "unix-milliseconds", datetime(2016, 1, 11, 17, 0, 0, 250000, tzinfo=UTC)),
        ("20160111", "iso8601", datetime(2016, 1, 11, tzinfo=UTC)),
        ("11/01/2016 17:00", "%d/%m/%Y %H:%M", datetime(2016, 1, 11, 17, tzinfo=UTC)),
    ],
)
def test_times_parse_to_unix_seconds(text, time_format, expected):
    assert parse_time(text, time_format) == expected.timestamp()
    if time_format != "%d/%m/%Y %H:%M":
        assert detect_time_format(text) == time_format


@pytest.mark.parametrize(
    ("text", "time_format"),
    [
        ("", "iso8601"),
        ("yesterday", "iso8601"),
        ("2016-13-01 00:00", "iso8601"),
        ("nan", "unix-seconds"),
        ("inf", "unix-seconds"),
        ("1452531600250", "unix-seconds"),  # milliseconds read as seconds: year 47,999
        ("1e30", "unix-milliseconds"),
    ],
)
def test_an_unreadable_time_is_a_bad_row(text, time_format):
    with pytest.raises(BadRowError) as info:
        parse_time(text, time_format)
    assert info.value.reason == "bad time"


def test_nanoseconds_are_no_time_format():
    assert detect_time_format("1452531600250000000") is None


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("10min", 600), ("1h", 3600), ("30s", 30), ("15.625ms", 0.015625), ("1d", 86400), ("600", 600)],
)
def test_intervals_are_read_with_their_units(text, seconds):
    assert parse_interval(text) == seconds


@pytest.mark.parametrize("text", ["", "0", "-1h", "10 minutes", "h", "1e3"])
def test_a_bad_interval_is_refused(text):
    with pytest.raises(ValueError, match="is not an interval"):
        parse_interval(text)


def _series(fill: int = 0, interval: float | None = 60.0, window: int = 3) -> Series:
    return Series(window, ("a", "b"), SeriesRules("unix-seconds" if interval else None, interval, fill))


def _admit(series: Series, when: float | None, a: float, b: float) -> int:
    row = np.array([a, b])
    missing = [i for i, v in enumerate(row) if math.isnan(v)] or None
    return series.admit(row, missing, when, str(when))


def test_fill_gaps_carries_each_column_forward_for_at_most_k_rows_in_a_row():
    series = _series(fill=2)
    assert _admit(series, 0, 1.0, 10.0) == 0
    assert _admit(series, 60, math.nan, 11.0) == FILLED
    assert series.buffer.last().tolist() == [1.0, 11.0]
    assert _admit(series, 120, math.nan, 12.0) == FILLED  # the second in a row: still within K = 2
    with pytest.raises(BadRowError, match="more than 2 rows in a row"):
        _admit(series, 180, math.nan, 13.0)
    assert series.buffer.filled == 0  # a gap: the window starts afresh
    with pytest.raises(BadRowError, match="'a' missing"):
        _admit(series, 240, math.nan, 14.0)  # nothing to carry across a gap
    assert _admit(series, 300, 2.0, 15.0) == 0
    assert _admit(series, 360, 3.0, math.nan) == FILLED and series.buffer.last().tolist() == [3.0, 15.0]


def test_without_fill_gaps_a_missing_value_is_a_gap():
    series = _series(fill=0)
    _admit(series, 0, 1.0, 1.0)
    with pytest.raises(BadRowError) as info:
        _admit(series, 60, 1.0, math.nan)
    assert info.value.reason == "missing value" and series.buffer.filled == 0


def test_a_step_over_one_and_a_half_intervals_is_a_gap_before_the_row():
    series = _series()
    _admit(series, 0, 1, 1)
    assert _admit(series, 89, 1, 1) == 0  # jitter: 1.48 intervals
    assert _admit(series, 180, 1, 1) == TIME_GAP  # 1.52 intervals: a reading was lost
    assert series.buffer.filled == 1  # the row itself starts the new window


@pytest.mark.parametrize(("step", "reason"), [(0, "duplicate time"), (-60, "time went backwards")])
def test_a_duplicated_or_backwards_time_is_a_bad_row_but_no_gap(step, reason):
    # Before: a gap, so a reading delivered twice (MQTT QoS 1 redelivers what was not acknowledged) threw away the
    # window, and the next T-1 forecasts with it
    series = _series()
    _admit(series, 600, 1, 1)
    _admit(series, 660, 1, 1)
    with pytest.raises(BadRowError) as info:
        _admit(series, 660 + step, 1, 1)
    assert info.value.reason == reason and series.buffer.filled == 2  # not pushed, nothing thrown away
    assert _admit(series, 720, 1, 1) == 0 and series.buffer.filled == 3  # the window goes on


def test_readings_replayed_out_of_order_are_all_refused_not_only_the_first():
    series = _series()
    for t in range(0, 660, 60):
        _admit(series, t, 1, 1)
    for t in range(300, 660, 60):  # 5 to 10 again
        with pytest.raises(BadRowError):
            _admit(series, t, 1, 1)
    assert _admit(series, 660, 1, 1) == 0 and series.buffer.filled == 12  # the eleven before, and this one


def test_a_clock_set_back_for_good_is_followed_after_100_rows():
    series = _series()  # window 3, interval 60 s: a jump back is more than 10 x 3 x 60 = 1,800 s
    _admit(series, 10**6, 1, 1)
    _admit(series, 10**6 + 60, 1, 1)
    start = 10**6 - 1000  # set back by less than a jump: a replay, until 100 rows say the clock is new
    for k in range(100):
        with pytest.raises(BadRowError, match="before the newest time"):
            _admit(series, start + k, 1, 1)
    assert _admit(series, start + 160, 1, 1) == 0  # the series now follows the new clock


@pytest.mark.parametrize("back", [1801, 10**6, 3 * 365 * 86400])
def test_a_jump_back_by_more_than_ten_windows_is_a_new_segment(back):
    series = _series()
    for t in range(0, 600, 60):
        _admit(series, 10**8 + t, 1, 1)
    assert _admit(series, 10**8 + 540 - back, 2, 2) == JUMPED  # no bad row: the next window starts here
    assert series.buffer.filled == 1 and series.last_time == 10**8 + 540 - back
    assert _admit(series, 10**8 + 600 - back, 3, 3) == 0 and series.buffer.filled == 2


def test_a_step_back_within_ten_windows_is_still_a_replay():
    series = _series()
    for t in range(0, 600, 60):
        _admit(series, 10**8 + t, 1, 1)
    with pytest.raises(BadRowError, match="before the newest time"):
        _admit(series, 10**8 + 540 - 1800, 2, 2)
    assert series.buffer.filled == 10  # nothing thrown away


def test_a_series_that_only_goes_back_in_time_runs_newest_first():
    series = _series()
    _admit(series, 1000, 1, 1)
    for k in range(1, 5):
        with pytest.raises(BadRowError):
            _admit(series, 1000 - 60 * k, 1, 1)
    with pytest.raises(NewestFirstError, match="the first 5 time steps all go back in time"):
        _admit(series, 1000 - 300, 1, 1)


def test_rules_round_trip_through_json_and_refuse_nonsense():
    rules = SeriesRules("iso8601", 600.0, 3, "station")
    assert SeriesRules.from_json(json.loads(json.dumps(rules.to_json()))) == rules
    assert SeriesRules.from_json(None) == SeriesRules()
    for bad in ({"fill_gaps": "3"}, {"fill_gaps": True}, {"interval_seconds": -5}, {"interval_seconds": "x"}):
        with pytest.raises(ManifestError, match="not a usable 'series'"):
            SeriesRules.from_json(bad)


def test_a_gateway_keeps_one_window_per_key_and_never_mixes_them():
    """1,000 sensors, readings interleaved: each key's windows hold its own rows only."""
    keys, steps, window = 1000, 5, 3
    rules = SeriesRules("unix-seconds", 60.0, 0, "sensor")
    router = Router(window, ("v",), rules)
    parser = RowParser(["sensor", "t", "v"], ["v"], "t", "sensor")
    rng = np.random.default_rng(0)
    order = [(k, s) for s in range(steps) for k in rng.permutation(keys)]
    full = {}
    for k, s in order:
        series, _ = router.push(parser, [f"s{k}", str(60 * s), str(k * 1000 + s)])
        if series.buffer.filled >= window:
            full[(k, s)] = series.buffer.view()[:, 0].tolist()
    assert len(router.keys) == keys
    assert len(full) == keys * (steps - window + 1)
    for (k, s), values in full.items():
        assert values == [k * 1000 + s - 2, k * 1000 + s - 1, k * 1000 + s]
    # memory grows with keys x window x features, not with rows
    assert all(series.buffer._data.shape == (2 * window, 1) for series in router.keys.values())


def test_an_empty_or_missing_key_and_a_key_past_the_limit_are_bad_rows():
    router = Router(2, ("v",), SeriesRules(group_by="sensor"), max_keys=2)
    parser = RowParser(["sensor", "v"], ["v"], None, "sensor")
    for key in ("", " NA ", "null"):
        with pytest.raises(BadRowError) as info:
            router.push(parser, [key, "1"])
        assert info.value.reason == "no key"
    router.push(parser, ["a", "1"])
    router.push(parser, ["b", "1"])
    with pytest.raises(BadRowError, match="would be key 3; the limit is 2") as info:
        router.push(parser, ["c", "1"])
    assert info.value.reason == "too many keys" and set(router.keys) == {"a", "b"}
    router.push(parser, ["a", "2"])  # known keys go on


@pytest.mark.parametrize("text", ["1_000", "\u0661\u0662", "\uff11"])
def test_numbers_python_reads_but_a_sensor_log_never_writes_are_non_numeric(text):
    with pytest.raises(BadRowError) as info:
        RowParser(["a"], ["a"]).parse([text], np.zeros(1))
    assert info.value.reason == "non-numeric"


def test_a_key_longer_than_the_limit_is_a_bad_row_and_costs_no_series():
    router = Router(2, ("v",), SeriesRules(group_by="sensor"))
    parser = RowParser(["sensor", "v"], ["v"], None, "sensor")
    router.push(parser, ["k" * 256, "1"])  # at the limit: a key like any other
    with pytest.raises(BadRowError, match=r"key 'k{40}'… \(257 characters\) is longer than 256 characters") as info:
        router.push(parser, ["k" * 257, "1"])
    assert info.value.reason == "key too long" and list(router.keys) == ["k" * 256]


def test_300_keys_of_a_megabyte_each_stay_in_bounded_memory(tmp_path: Path):
    """Before: the key count was capped, not their size: 500 keys of 1,000,000 characters took 560 MB."""
    import subprocess
    import sys

    script = (
        "import re\n"
        "from edgeseq_device.rows import BadRowError, RowParser\n"
        "from edgeseq_device.series import Router, SeriesRules\n"
        "router = Router(36, ('v',), SeriesRules(group_by='sensor'))\n"
        "parser = RowParser(['sensor', 'v'], ['v'], None, 'sensor')\n"
        "refused = 0\n"
        "for k in range(300):\n"
        "    try:\n"
        "        router.push(parser, [str(k) * (1_000_000 // len(str(k))), '1'])\n"
        "    except BadRowError:\n"
        "        refused += 1\n"
        # VmHWM, this program's own peak: ru_maxrss would carry pytest's, from before the exec
        "peak = int(re.search(r'VmHWM:\\s+(\\d+) kB', open('/proc/self/status').read()).group(1))\n"
        "print(refused, len(router.keys), peak // 1024)\n"
    )
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    refused, kept, peak_mb = map(int, proc.stdout.split())
    assert (refused, kept) == (300, 0)
    assert peak_mb < 250, peak_mb  # the bar; measured here: see the closing note


@pytest.mark.parametrize(("value", "reason"), [("NA", "missing value"), ("warm", "non-numeric"), ("inf", "infinite")])
def test_a_row_dropped_for_its_values_is_the_gap_and_its_time_moves_the_clock(value, reason):
    # Before: a non-numeric row left the clock where it was, so the next row was also a gap in time; a row
    # with a missing value moved it. Both drop a row, and now count alike.
    rules = SeriesRules(time_format="iso8601", interval=600.0)
    router = Router(2, ("v",), rules)
    parser = RowParser(["time", "v"], ["v"], "time")
    router.push(parser, ["2026-01-01T00:00:00", "1"])
    with pytest.raises(BadRowError) as info:
        router.push(parser, ["2026-01-01T00:10:00", value])
    assert info.value.reason == reason and info.value.time_gap is False
    router.push(parser, ["2026-01-01T00:20:00", "2"])
    assert not router.flags & TIME_GAP  # one interval after the dropped row: no gap in time
    with pytest.raises(BadRowError) as info:  # a dropped row after 30 minutes lost: that gap is counted
        router.push(parser, ["2026-01-01T01:00:00", value])
    assert info.value.time_gap is True


def test_a_row_whose_key_cannot_be_read_breaks_no_series():
    router = Router(2, ("v",), SeriesRules(group_by="sensor"))
    parser = RowParser(["sensor", "v"], ["v"], None, "sensor")
    router.push(parser, ["a", "1"])
    with pytest.raises(BadRowError, match="too few fields"):
        router.push(parser, ["a"])
    series, _ = router.push(parser, ["a", "2"])
    assert series.buffer.filled == 2  # the short row was nobody's


def test_gateway_stream_of_1000_keys_through_edgeseq_run(tmp_path: Path):
    """The same through `edgeseq run` with a keyed manifest: every record carries its key, and each key's
    forecasts equal those of its rows streamed alone."""
    from tests.messy import FEATURES
    from tests.streams import records, run
    from tests.test_messy_data import T

    pytest.importorskip("onnxruntime")
    model = _keyed_model(tmp_path)
    keys, steps = 1000, T + 1
    rng = np.random.default_rng(1)
    base = rng.normal(size=(keys, 3)) * [3, 10, 2] + [12, 60, 1013]
    header = "station,time," + ",".join(FEATURES) + ",note"
    lines = [header]
    for s in range(steps):
        when = datetime(2026, 3, 10, tzinfo=UTC).timestamp() + 600 * s
        stamp = datetime.fromtimestamp(when, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        for k in rng.permutation(keys):
            v = base[k] + rng.normal(0, 0.1, 3)
            lines.append(f"k{k},{stamp},{v[0]:.3f},{v[1]:.2f},{v[2]:.2f},ok")
    stream = tmp_path / "gateway.csv"
    stream.write_text("\n".join(lines) + "\n")
    ran = run("--stream", stream, "--model", model)
    assert ran.exit_code == 0, ran.output
    recs = records(ran.stdout)
    assert len(recs) == keys * 2 and "1000 series" in ran.stderr
    for key in ("k0", "k517", "k999"):
        alone = tmp_path / f"{key}.csv"
        alone.write_text("\n".join([header, *[x for x in lines[1:] if x.startswith(key + ",")]]) + "\n")
        solo = run("--stream", alone, "--model", model)
        assert [r["prediction"] for r in records(solo.stdout)] == [r["prediction"] for r in recs if r["key"] == key]


def _keyed_model(tmp_path: Path) -> Path:
    """The messy-data test's model: trained once per session by its module fixture is not reachable here, so
    train a tiny one on the messy file."""
    from typer.testing import CliRunner

    from edgeseq.cli import app
    from tests.messy import FEATURES, write_messy_csv
    from tests.test_messy_data import TINY

    data = write_messy_csv(tmp_path / "stations.csv", steps=400)
    out = tmp_path / "m"
    args = ["train", "forecaster", "--data", str(data), "--features", ",".join(FEATURES), "--target", "temp"]
    args += ["--time-column", "time", "--group-by", "station", "--out", str(out), "--name", "g", *TINY]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    return out / "g.onnx"

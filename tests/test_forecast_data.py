"""Sensor data: reading CSVs as they are, time-ordered splits without leakage, the one pre/post-processing."""

from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from edgeseq.data import DEFAULT_SENSOR_DATA, load_sensor_csv
from edgeseq.data.series import Report, SeriesTable, runner_window_ends
from edgeseq.data.split import SplitPlan, assign_parts
from edgeseq.errors import DataError
from edgeseq.train import ForecasterConfig, prepare_forecast_data
from edgeseq_device.forecast import ForecastSpec
from edgeseq_device.rows import BadRowError, MissingColumnError, RowParser
from tests.synthetic import write_sensor_csv


def test_loader_reads_quoted_fields_leading_spaces_and_scientific_notation(tmp_path: Path):
    path = tmp_path / "q.csv"
    path.write_text('"date","T_out","T1"\n"2016-01-11 17:00:00"," 6.5999999999999996e+00","19.890000000000001"\n')
    table = load_sensor_csv(path, ["T1", "T_out"], "date")
    assert table.values.tolist() == [[19.89, 6.6]]
    assert table.times == ("2016-01-11 17:00:00",)


def test_the_bundled_data_set_loads_whole():
    table = load_sensor_csv(DEFAULT_SENSOR_DATA, ["T2", "RH_2", "T_out"], "date")
    assert table.values.shape == (19735, 3)
    assert table.times[0] == "2016-01-11 17:00:00" and table.times[-1] == "2016-05-27 18:00:00"
    assert np.isfinite(table.values).all()


@pytest.mark.parametrize(
    ("features", "target", "message"),
    [
        (("temp", "humidity"), "temp", "missing column 'humidity'"),
        (("temp", "hum"), "outside", "target 'outside' must also be a feature"),
        (("temp", "temp"), "temp", "features repeat a name"),
    ],
)
def test_wrong_names_are_clear_errors(tmp_path: Path, features, target, message):
    config = ForecasterConfig(
        data=write_sensor_csv(tmp_path / "s.csv"), features=features, target=target, time_column="time"
    )
    with pytest.raises(DataError, match=message):
        prepare_forecast_data(config)


def test_a_file_shorter_than_a_window_per_split_is_a_clear_error(tmp_path: Path):
    config = ForecasterConfig(
        data=write_sensor_csv(tmp_path / "s.csv", rows=80), features=("temp", "hum"), target="temp", time_column=None
    )
    with pytest.raises(DataError, match=r"the validation and test parts get no window of 36 rows with a target 6"):
        prepare_forecast_data(config)


def _table(lengths: list[int], part: list[int], observed: np.ndarray | None = None) -> SeriesTable:
    segment = np.repeat(np.arange(len(lengths)), lengths)
    n = len(segment)
    return SeriesTable(
        path=Path("x.csv"), features=("a",), rules=None, values=np.zeros((n, 1)), times=None, keys=None,
        lines=np.arange(n), segment=segment, part=np.repeat(np.array(part, dtype=np.int8), lengths),
        observed=np.ones((n, 1), bool) if observed is None else observed, line_parts=np.zeros(0),
        header_lines=np.zeros(0, bool), report=Report(),
    )  # fmt: skip


@given(
    lengths=st.lists(st.integers(1, 60), min_size=1, max_size=8),
    window=st.integers(2, 20),
    horizon=st.integers(1, 10),
    data=st.data(),
)
def test_windows_and_their_targets_stay_inside_one_gap_free_segment_of_their_part(lengths, window, horizon, data):
    part = sorted(data.draw(st.lists(st.integers(0, 2), min_size=len(lengths), max_size=len(lengths))))
    table = _table(lengths, part)
    for index, name in enumerate(("train", "validation", "test")):
        ends = runner_window_ends(table, name, window, horizon, "a")
        for t in ends:
            span = table.segment[t - window + 1 : t + horizon + 1]
            assert t - window + 1 >= 0 and (span == span[0]).all() and table.part[t] == index
        # every segment of this part long enough gives exactly its length - window - horizon + 1 windows
        expected = sum(max(0, n - window - horizon + 1) for n, p in zip(lengths, part, strict=True) if p == index)
        assert len(ends) == expected


def test_a_filled_target_is_not_a_target():
    observed = np.ones((10, 1), bool)
    observed[7] = False
    ends = runner_window_ends(_table([10], [0], observed), "train", 3, 2, "a")
    assert ends.tolist() == [2, 3, 4, 6, 7]  # the window ending at 5 would be scored on a filled value


def test_splits_are_by_time_across_keys_and_cover_every_line():
    times = np.arange(1000, dtype=float)
    parts = assign_parts(SplitPlan(), len(times), times)
    assert np.bincount(parts).tolist() == [700, 150, 150]
    # two keys one after the other: each gets its own train, validation and test periods
    keyed = assign_parts(SplitPlan(), 2000, np.concatenate([times, times]))
    assert np.bincount(keyed[:1000]).tolist() == np.bincount(keyed[1000:]).tolist() == [700, 150, 150]
    # a line whose time could not be read goes with the line before
    times[701] = np.nan
    assert assign_parts(SplitPlan(), len(times), times)[701] == 1
    # without times, each key's own lines are split by the fractions
    keys = ["a", "b"] * 100
    by_rows = assign_parts(SplitPlan(), len(keys), None, keys)
    assert np.bincount(by_rows[0::2]).tolist() == np.bincount(by_rows[1::2]).tolist() == [70, 15, 15]


def test_scaling_does_not_see_the_validation_or_test_part(tmp_path: Path):
    clean = write_sensor_csv(tmp_path / "a.csv", rows=600)
    lines = clean.read_text().splitlines()
    # Rewrite every row after the training part with wild values: the scaling must not move.
    header, rows = lines[0], lines[1:]
    train_rows = int(len(rows) * 0.7)
    wild = [",".join(["1e6", r.split(",")[1], "-500", "99", "1e4"]) for r in rows[train_rows:]]
    changed = tmp_path / "b.csv"
    changed.write_text("\n".join([header, *rows[:train_rows], *wild]) + "\n")
    config = {"features": ("temp", "hum", "outside"), "target": "temp", "time_column": "time"}
    spec_a = prepare_forecast_data(ForecasterConfig(data=clean, **config)).spec
    spec_b = prepare_forecast_data(ForecasterConfig(data=changed, **config)).spec
    assert spec_a == spec_b


def _spec() -> ForecastSpec:
    return ForecastSpec(("a", "b"), "b", window=4, horizon=2, input_scale=(2.0, 0.5), target_scale=3.0)


def test_window_input_is_relative_to_the_last_row_and_scaled():
    rows = np.array([[1.0, 10.0], [2.0, 11.0], [4.0, 9.0], [5.0, 10.5]])
    x = _spec().model_input(rows)
    expected = np.array([[-2.0, -1.0], [-1.5, 1.0], [-0.5, -3.0], [0.0, 0.0]], dtype=np.float32)
    assert x.shape == (1, 4, 2) and x.dtype == np.float32
    np.testing.assert_array_equal(x[0], expected)


def test_batch_windows_equal_single_windows_and_the_output_transform_inverts_the_target():
    values = np.random.default_rng(1).normal(size=(30, 2)).cumsum(axis=0)
    spec, ends = _spec(), np.arange(3, 28)
    batch = spec.model_inputs(values, ends)
    for i, end in enumerate(ends):
        np.testing.assert_array_equal(batch[i], spec.model_input(values[end - 3 : end + 1])[0])
    recovered = spec.to_target_units(spec.training_target(values, ends), values[ends, 1])
    np.testing.assert_allclose(recovered, values[ends + 2, 1], atol=1e-5)


def test_spec_survives_a_json_round_trip():
    spec = _spec()
    assert ForecastSpec.from_json(spec.to_json()) == spec


def test_row_parser_finds_columns_by_name_in_any_order():
    parser = RowParser(['"x"', " b ", "a", "t"], ["a", "b"], "t")
    out = np.empty(2)
    assert parser.parse(["junk", "2.5", " 1e1", "noon"], out) == "noon"
    assert out.tolist() == [10.0, 2.5]
    with pytest.raises(MissingColumnError, match="missing columns 'c', 'd'"):
        RowParser(["a", "b"], ["a", "c", "d"])


@pytest.mark.parametrize(
    ("fields", "reason"),
    [
        ([], "empty"),
        ([""], "empty"),
        (["1"], "too few fields"),
        (["1", "x"], "non-numeric"),
        (["1", "inf"], "infinite"),
    ],
)
def test_row_parser_names_the_reason(fields, reason):
    with pytest.raises(BadRowError) as info:
        RowParser(["a", "b"], ["a", "b"]).parse(fields, np.empty(2))
    assert info.value.reason == reason


@given(st.lists(st.one_of(st.text(), st.binary().map(lambda b: b.decode("latin-1"))), max_size=6))
def test_row_parser_never_raises_anything_but_bad_row(fields):
    parser = RowParser(["t", "a", "b"], ["a", "b"], "t")
    out = np.empty(2)
    try:
        parser.parse(fields, out)
    except BadRowError as exc:
        assert exc.reason in {
            "empty",
            "too few fields",
            "too many fields",
            "non-numeric",
            "infinite",
            "out of range",
            "unparsable",
        }
    else:
        missing = parser.missing or []
        assert np.isnan(out[missing]).all()
        assert np.isfinite(np.delete(out, missing)).all()


@given(
    st.floats(-1e4, 1e4, allow_nan=False),
    st.floats(-50, 50, allow_nan=False, width=32),
    st.floats(1e-3, 1e3, allow_nan=False),
)
def test_the_runners_record_and_the_evaluation_transform_are_the_manifests_formula(last, output, scale):
    """record_values (the runner's per-forecast path, in Python floats) and to_target_units (evaluation, in
    numpy) both equal the manifest's formula, forecast = last_target + target_scale * output, in doubles, to the
    last bit; and a file that applies it in its graph has its output written as it is."""
    spec = ForecastSpec(("a", "b"), "b", window=4, horizon=2, input_scale=(1.0, 1.0), target_scale=scale)
    rows = np.zeros((4, 2))
    rows[-1, 1] = last
    out = np.array([[output]], dtype=np.float32)
    formula = last + scale * float(np.float32(output))
    assert spec.record_values(out, rows) == (formula,)
    assert float(spec.to_target_units(out[0, 0], last)) == formula
    in_graph = ForecastSpec(("a", "b"), "b", 4, 2, (1.0, 1.0), scale, in_graph=True)
    assert in_graph.record_values(np.array([[last]]), rows) == (last,)


_FIELD = st.text(alphabet='ab ,"\t\r\x00\u00e9', max_size=6)


@settings(max_examples=1500)
@given(st.lists(st.tuples(_FIELD, st.booleans()), min_size=1, max_size=6), st.text(alphabet='a,"', max_size=12))
def test_split_line_equals_the_csv_module_on_quoted_and_plain_lines(fields, raw):
    """split_line's fast path for fully quoted lines gives what csv.reader gives, or the same error."""
    import csv

    from edgeseq_device.rows import split_line

    quoted = ",".join('"' + f.replace('"', '""') + '"' if q else f for f, q in fields)
    for line in (quoted, raw, '"' + raw + '"'):
        line = line.replace("\r", "")
        if '"' not in line:  # no quotes: a plain split, as before (an empty line is one empty field)
            assert split_line(line) == line.split(",")
            continue
        try:
            expected = next(csv.reader((line,)), [])
        except csv.Error:
            with pytest.raises(BadRowError):
                split_line(line)
            continue
        assert split_line(line) == expected, line

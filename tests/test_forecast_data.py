"""Sensor data: reading CSVs as they are, time-ordered splits without leakage, the one pre/post-processing."""

from pathlib import Path

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from edgeseq.data import DEFAULT_SENSOR_DATA, Split, load_sensor_csv, window_ends
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
    with pytest.raises(DataError, match=r"has 80 rows, too few for a window of 36 rows and a horizon of 6"):
        prepare_forecast_data(config)


@given(
    start=st.integers(0, 50),
    length=st.integers(0, 200),
    window=st.integers(2, 40),
    horizon=st.integers(1, 20),
)
def test_windows_and_their_targets_stay_inside_their_part(start, length, window, horizon):
    ends = window_ends((start, start + length), window, horizon)
    assert np.all(ends - window + 1 >= start)
    assert np.all(ends + horizon < start + length)
    assert len(ends) == max(0, length - window - horizon + 1)


def test_splits_are_time_ordered_and_cover_every_row():
    split = Split.by_fractions(1000)
    assert split.train == (0, 700) and split.validation == (700, 850) and split.test == (850, 1000)


def test_scaling_does_not_see_the_validation_or_test_part(tmp_path: Path):
    clean = write_sensor_csv(tmp_path / "a.csv", rows=600)
    lines = clean.read_text().splitlines()
    # Rewrite every row after the training part with wild values: the scaling must not move.
    header, rows = lines[0], lines[1:]
    train_rows = Split.by_fractions(len(rows)).train[1]
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
    [([], "empty"), ([""], "empty"), (["1"], "too few fields"), (["1", "x"], "non-numeric"), (["1", "nan"], "nan/inf")],
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
            "nan/inf",
            "out of range",
            "unparsable",
        }
    else:
        assert np.isfinite(out).all()

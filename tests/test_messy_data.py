"""Messy data: missing tokens, gaps in time, bad times and interleaved keys mean the same in training, in
evaluation and in the runner; checked against an independent reading of the file (tests/messy.py)."""

import json
import re
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from edgeseq.cli import app
from tests.conftest import EXPORTED
from tests.messy import (
    FEATURES,
    KEYS,
    START,
    STEP,
    gap_free_windows,
    gaps_in_time,
    read_independently,
    target_after,
    write_messy_csv,
)
from tests.streams import records, run

T, H = 12, 3
TINY = ["--units", "8,8", "--epochs", "2", "--window", str(T), "--horizon", str(H)]


def train(*args):
    return CliRunner().invoke(app, ["train", "forecaster", *[str(a) for a in args]])


@pytest.fixture(scope="module")
def messy(tmp_path_factory):
    """One training on the messy file (3 keys, no filling), its manifest, and `edgeseq run` on its sample."""
    root = tmp_path_factory.mktemp("messy")
    data = write_messy_csv(root / "stations.csv")
    out = root / "out"
    result = train(
        "--data", data, "--features", ",".join(FEATURES), "--target", "temp", "--time-column", "time",
        "--group-by", "station", "--out", out, "--name", "st", *TINY,
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    manifest = json.loads((out / "st.json").read_text())
    sample = out / manifest["sample"]["file"]
    ran = run("--stream", sample, "--model", out / "st.onnx")
    assert ran.exit_code == 0, ran.output
    return {"data": data, "out": out, "manifest": manifest, "train": result, "sample": sample, "run": ran}


def test_the_messy_file_trains_with_one_command_and_reports_what_it_dropped(messy):
    manifest, said = messy["manifest"], messy["train"].output
    assert manifest["series"]["group_by"] == "station" and manifest["series"]["interval_seconds"] == 600.0
    assert manifest["series"]["time_format"] == "iso8601"
    report = manifest["data"]
    assert report["keys"] == 3
    # each of the 12 tokens in a feature column of each of the 3 keys, and one more NA in the test period
    assert sum(report["missing_values"].values()) == 3 * 12 + 1
    dropped = report["rows_dropped"]
    assert dropped["missing value"]["rows"] == 37
    assert dropped["duplicate time"]["rows"] == 2 and dropped["time went backwards"]["rows"] == 2
    assert dropped["non-numeric"]["rows"] == 1 and dropped["too few fields"]["rows"] == 1
    lines = read_independently(messy["data"])
    twice = [x.number + 1 for x in lines if x.key == "north" and x.when == START + 300 * STEP]
    assert dropped["duplicate time"]["first_lines"][0] == twice[1]  # the file line of the second copy
    assert "rows dropped as gaps (duplicate time), first at line" in said and "missing values: temp" in said
    assert "gaps in time" in said


def test_no_window_spans_a_gap_and_each_record_names_its_key(messy):
    sample_lines = read_independently(messy["sample"])
    windows = gap_free_windows(sample_lines, T)
    recs = records(messy["run"].stdout)
    assert {r["key"] for r in recs} == set(KEYS)
    # the runner makes a record for exactly the windows an independent reading finds gap-free
    assert sorted(r["row"] for r in recs) == sorted(windows)
    for r in recs:
        assert windows[r["row"]][-1].key == r["key"]


def test_edgeseq_run_on_the_test_period_reproduces_the_manifest_metrics(messy):
    manifest = messy["manifest"]
    sample_lines = read_independently(messy["sample"])
    scored = []
    for r in records(messy["run"].stdout):
        actual = target_after(sample_lines, r["row"], H)
        if actual is not None:
            scored.append((r["prediction"], actual))
    predicted, actual = np.array(scored).T
    rmse = float(np.sqrt(np.mean((predicted - actual) ** 2)))
    assert len(scored) == manifest["metrics"]["windows"]
    assert abs(rmse - manifest["metrics"]["model"]["rmse"]) <= 1e-6, (rmse, manifest["metrics"]["model"]["rmse"])


def test_the_split_is_by_time_across_keys(messy):
    split = messy["manifest"]["split"]
    assert split["by"] == "time, across all keys"
    for part in ("train", "validation", "test"):
        assert split[part]["keys"] == 3 and split[part]["windows"] > 0
    assert split["train"]["window_ends"][1] < split["validation"]["window_ends"][0]
    assert split["validation"]["window_ends"][1] < split["test"]["window_ends"][0]


def test_the_summary_says_lstm_ridge_and_persistence(messy):
    said = messy["train"].stdout
    assert "LSTM" in said and "ridge" in said and "persistence" in said
    verdict = messy["manifest"]["metrics"]["verdict"]
    if messy["manifest"]["metrics"]["rmse_ratio_to_ridge"] >= 1:
        assert "warning: the LSTM does not beat ridge regression" in said and verdict in said
    else:
        assert verdict.startswith(("the LSTM beats", "the LSTM does not beat persistence"))


def test_the_runner_reports_gaps_and_bad_times_by_line(messy):
    ran = run("--stream", messy["data"], "--model", messy["out"] / "st.onnx")
    assert ran.exit_code == 0, ran.output
    lines = read_independently(messy["data"])
    second = [x.number + 1 for x in lines if x.key == "north" and x.when == START + 300 * STEP][1]
    late = next(i + 1 for i, text in enumerate(messy["data"].read_text().splitlines()) if text.endswith(",late"))
    assert len([x for x in lines if x.key == "north" and x.when == START + 300 * STEP]) == 2
    assert f"skipped line {second}: duplicate time: time '2026-03-03T02:00:00Z' repeats the newest time" in ran.stderr
    assert f"skipped line {late}: time went backwards" in ran.stderr
    summary = ran.stderr.splitlines()[-1]
    assert f"{gaps_in_time(lines)} gaps in time" in summary, summary  # counted independently
    assert "3 series" in summary and "missing value 37" in summary
    # the same rows are gaps in the runner as in training
    dropped = messy["manifest"]["data"]["rows_dropped"]
    assert sum(r["rows"] for r in dropped.values()) == int(summary.split(" rows skipped")[0].rsplit(" ", 1)[1])
    # a messy file's thousands of skipped rows are counted, not listed: at most 10 lines per reason
    assert ran.stderr.count("missing value:") == 10 and "further rows skipped for missing value" in ran.stderr


def test_a_file_newest_first_is_refused_in_training_and_in_the_runner(messy, tmp_path: Path):
    text = messy["data"].read_text()
    header, *rows = text.splitlines()
    reversed_file = tmp_path / "newest_first.csv"
    reversed_file.write_text("\n".join([header, *rows[::-1]]) + "\n")
    result = train(
        "--data", reversed_file, "--features", ",".join(FEATURES), "--target", "temp", "--time-column", "time",
        "--group-by", "station", "--out", tmp_path / "o", *TINY,
    )  # fmt: skip
    assert result.exit_code == 2 and "runs newest first" in result.stderr
    # one series: the runner refuses the stream at its fifth step
    single = tmp_path / "single.csv"
    sensor = (EXPORTED / "sensor.csv").read_text().splitlines()
    single.write_text("\n".join([sensor[0], *sensor[:0:-1]]) + "\n")
    ran = run("--stream", single, "--model", EXPORTED / "sensor_lstm.onnx")
    assert ran.exit_code == 2 and "the first 5 time steps all go back in time" in ran.stderr and ran.stdout == ""
    # keyed: a key running newest first is that key's bad rows; the stream (and other keys) go on
    ran = run("--stream", reversed_file, "--model", messy["out"] / "st.onnx")
    assert ran.exit_code == 0 and ran.stdout == ""
    assert "the rows of station 'north' run newest first" in ran.stderr


def test_fill_gaps_carries_the_last_value_forward_in_training_and_in_the_runner(messy, tmp_path: Path):
    """With --fill-gaps 2 the runner's forecasts over a row with a missing value equal its forecasts on the
    same stream with that value written in by hand as the key's previous value."""
    out = tmp_path / "fill"
    result = train(
        "--data", messy["data"], "--features", ",".join(FEATURES), "--target", "temp", "--time-column", "time",
        "--group-by", "station", "--fill-gaps", "2", "--out", out, "--name", "f", *TINY,
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    manifest = json.loads((out / "f.json").read_text())
    assert manifest["series"]["fill_gaps"] == 2 and manifest["data"]["rows_filled"] > 0
    sample = (out / "f.test.csv").read_text().splitlines()
    header = sample[0].split(",")
    na = next(i for i, line in enumerate(sample) if line.startswith("east,") and ",NA," in line)
    before = next(i for i in range(na - 1, 0, -1) if sample[i].startswith("east,"))
    column = header.index("hum")
    by_hand = sample[na].split(",")
    by_hand[column] = sample[before].split(",")[column]
    written = [*sample[:na], ",".join(by_hand), *sample[na + 1 :]]
    (tmp_path / "by_hand.csv").write_text("\n".join(written) + "\n")
    filled = run("--stream", out / "f.test.csv", "--model", out / "f.onnx")
    manual = run("--stream", tmp_path / "by_hand.csv", "--model", out / "f.onnx")
    assert filled.exit_code == manual.exit_code == 0
    assert records(filled.stdout) == records(manual.stdout)
    # windows of east that hold the filled row were made (rows are interleaved, three keys)
    assert any(na <= r["row"] < na + 3 * T and r["key"] == "east" for r in records(filled.stdout))
    counted = [re.search(r"(\d+) rows filled", r.stderr) for r in (filled, manual)]
    assert int(counted[0][1]) == int(counted[1][1]) + 1  # the row written by hand needed no filling
    without = run("--stream", out / "f.test.csv", "--model", messy["out"] / "st.onnx")
    assert len(records(without.stdout)) < len(records(filled.stdout))  # no filling: the NA row is a gap


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--split", "0.7,0.2"], "--split takes three positive fractions that add up to 1"),
        (["--split", "0.5,0.5,0.5"], "--split takes three positive fractions that add up to 1"),
        (["--split", "0.8,0.2,0"], "--split takes three positive fractions that add up to 1"),
        (["--split-at", "2026-03-05"], "--split-at takes two dates"),
        (["--split-at", "2026-03-06,2026-03-05"], "the start of validation before the start of test"),
        (["--split-at", "soon,later"], "--split-at 'soon' is not a date or time"),
        (["--split-at", "2020-01-01,2020-02-01"], "the training part has no two rows in time order (0 lines"),
        (["--split", "0.6,0.2,0.2", "--split-at", "2026-03-05,2026-03-06"], "give --split or --split-at, not both"),
        (["--interval", "10 minutes"], "--interval: '10 minutes' is not an interval"),
        (["--time-format", "%d/%m/%Y"], "do not read as '%d/%m/%Y' (the first: '2026-03-01T00:00:00Z')"),
        (["--group-by", "temp"], "--group-by 'temp' is one of --features: the key column must be another"),
        (["--group-by", "time"], "--group-by 'time' is the time column: the key column must be another"),
        (["--split", "nan,0.5,0.5"], "--split takes three positive fractions that add up to 1"),
        (["--interval", "9" * 400 + "d"], "is not an interval"),
        (["--time-format", "%Q"], "--time-format: time format '%Q' is not a usable strptime pattern"),
        (["--group-by", "sensor"], "missing column 'sensor'"),
    ],
)
def test_split_and_time_options_refuse_nonsense_in_one_line(messy, tmp_path: Path, args, message):
    """Each a one-line error, exit 2; a keyed file without --group-by is caught by its repeated times."""
    result = train(
        "--data", messy["data"], "--features", ",".join(FEATURES), "--target", "temp", "--time-column", "time",
        "--group-by", "station", "--out", tmp_path / "o", *TINY, *args,
    )  # fmt: skip
    assert result.exit_code == 2 and message in result.stderr, result.output
    assert "Traceback" not in result.output and len(result.stderr.strip().splitlines()) <= 2


def test_split_at_dates_put_every_key_s_windows_on_the_right_side(messy, tmp_path: Path):
    result = train(
        "--data", messy["data"], "--features", ",".join(FEATURES), "--target", "temp", "--time-column", "time",
        "--group-by", "station", "--split-at", "2026-03-05,2026-03-06T12:00:00Z", "--out", tmp_path, "--name", "s",
        *TINY,
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    split = json.loads((tmp_path / "s.json").read_text())["split"]
    assert split["split_at"] == ["2026-03-05", "2026-03-06T12:00:00Z"] and split["fractions"] is None
    assert split["train"]["window_ends"][1] < "2026-03-05" <= split["validation"]["window_ends"][0]
    assert split["validation"]["window_ends"][1] < "2026-03-06T12:00:00Z" <= split["test"]["window_ends"][0]
    sample = read_independently(tmp_path / "s.test.csv")
    assert min(line.when for line in sample if line.when) >= START.replace(day=6, hour=12)


def test_a_bz2_file_trains_like_the_plain_one(messy, tmp_path: Path):
    import bz2

    packed = tmp_path / "stations.csv.bz2"
    packed.write_bytes(bz2.compress(messy["data"].read_bytes()))
    result = train(
        "--data", packed, "--features", ",".join(FEATURES), "--target", "temp", "--time-column", "time",
        "--group-by", "station", "--out", tmp_path, "--name", "b", *TINY,
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    manifest = json.loads((tmp_path / "b.json").read_text())
    assert manifest["data"]["rows_dropped"] == messy["manifest"]["data"]["rows_dropped"]
    assert manifest["split"] == messy["manifest"]["split"]


def test_no_training_window_spans_a_gap(messy):
    """Every window of every part (train, validation, test) is one an independent reading finds gap-free, row
    for row; and training makes every gap-free window that lies inside one part."""
    from edgeseq.train import ForecasterConfig, prepare_forecast_data

    config = ForecasterConfig(
        data=messy["data"], features=FEATURES, target="temp", window=T, horizon=H, time_column="time",
        group_by="station",
    )  # fmt: skip
    data = prepare_forecast_data(config)
    lines = read_independently(messy["data"])
    windows = gap_free_windows(lines, T)
    total = 0
    for part, ends in data.ends.items():
        for end in ends:
            number = int(data.table.lines[end]) - 1  # data line number, as read_independently counts
            expected = [line.number + 1 for line in windows[number]]
            assert data.table.lines[end - T + 1 : end + 1].tolist() == expected, (part, number)
            assert target_after(lines, number, H) == pytest.approx(data.table.values[end + H, 0])
        total += len(ends)
    assert total == sum(messy["manifest"]["split"][p]["windows"] for p in ("train", "validation", "test"))


def test_time_options_without_a_time_column_are_refused(messy, tmp_path: Path):
    for option, value in (("--time-format", "%Y"), ("--split-at", "2026-03-05,2026-03-06"), ("--interval", "1h")):
        result = train(
            "--data", messy["data"], "--features", "temp", "--target", "temp", "--group-by", "station",
            option, value, "--out", tmp_path, *TINY,
        )  # fmt: skip
        assert result.exit_code == 2 and "needs" in result.stderr and "--time-column" in result.stderr, option


def test_a_keyed_file_without_group_by_is_told_to_use_it(messy, tmp_path: Path):
    result = train(
        "--data", messy["data"], "--features", ",".join(FEATURES), "--target", "temp", "--time-column", "time",
        "--out", tmp_path, *TINY,
    )  # fmt: skip
    assert (
        result.exit_code == 2 and "several series in one file? Name their key column with --group-by" in result.stderr
    )

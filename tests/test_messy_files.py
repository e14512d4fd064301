"""Files as people have them, read the same in training and in the runner: a header again mid-file, a line
too long in the test period, one station after another under reordered columns, and features that are
constant, near-constant or mostly missing."""

import json
from datetime import datetime
from pathlib import Path

import numpy as np

from tests.messy import FEATURES, KEYS, write_messy_csv
from tests.streams import records, run
from tests.test_messy_data import TINY, H, T, train


def test_a_constant_feature_is_refused_by_name_or_dropped(tmp_path: Path):
    data = write_messy_csv(tmp_path / "c.csv", steps=400, constant=True)
    base = ["--data", data, "--target", "temp", "--time-column", "time", "--group-by", "station", *TINY]
    result = train(*base, "--features", "temp,hum,status", "--out", tmp_path / "a")
    assert result.exit_code == 2
    assert "'status' is constant in the training windows" in result.stderr and "--drop-constant" in result.stderr
    kept = train(*base, "--features", "temp,hum,status", "--drop-constant", "--out", tmp_path / "b", "--name", "d")
    assert kept.exit_code == 0, kept.output
    manifest = json.loads((tmp_path / "b" / "d.json").read_text())
    assert manifest["features"] == ["temp", "hum"]
    assert manifest["data"]["dropped_features"] == {"status": "constant in the training windows"}
    assert "dropped feature 'status'" in kept.output


def test_a_feature_missing_in_most_rows_is_refused_by_name(tmp_path: Path):
    lines = write_messy_csv(tmp_path / "m.csv", steps=300).read_text().splitlines()
    header = lines[0].split(",")
    gone = header.index("hum")
    rows = [",".join("NA" if i == gone else f for i, f in enumerate(line.split(","))) for line in lines[1:]]
    (tmp_path / "gone.csv").write_text("\n".join([lines[0], *rows]) + "\n")
    result = train(
        "--data", tmp_path / "gone.csv", "--features", "temp,hum", "--target", "temp", "--time-column", "time",
        "--group-by", "station", "--out", tmp_path / "o", *TINY,
    )  # fmt: skip
    assert result.exit_code == 2
    assert "missing in most training rows: 'hum' in" in result.stderr and "(100%)" in result.stderr


def _room(tmp_path: Path, name: str, lines: list[str]) -> tuple[dict, list[dict]]:
    """Train the tiny forecaster on `lines` (one series), run its test sample; (manifest, records)."""
    data = tmp_path / f"{name}.csv"
    data.write_text("\n".join(lines) + "\n")
    out = tmp_path / name
    result = train(
        "--data", data, "--features", "temp,hum", "--target", "temp", "--time-column", "time", "--out", out,
        "--name", name, *TINY,
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    ran = run("--stream", out / f"{name}.test.csv", "--model", out / f"{name}.onnx")
    assert ran.exit_code == 0, ran.output
    return json.loads((out / f"{name}.json").read_text()), records(ran.stdout)


def test_a_header_again_mid_file_is_read_in_training_as_in_the_runner(tmp_path: Path):
    """Files concatenated, the second with its columns reordered: training takes the header as the runner
    does (columns found anew, a fresh start), so it reads the same numbers as a file with a gap there."""
    from tests.synthetic import write_sensor_csv

    lines = write_sensor_csv(tmp_path / "room.csv", rows=600).read_text().splitlines()
    header = lines[0].split(",")
    order = [header.index(c) for c in ("temp", "time", "outside", "hum", "noise")]
    cut = 560  # in the test period
    reordered = [",".join(line.split(",")[i] for i in order) for line in lines[cut:]]
    swapped = [*lines[:cut], ",".join(header[i] for i in order), *reordered]
    with_gap = [*lines[:cut], "", *lines[cut:]]
    manifest_a, records_a = _room(tmp_path, "swapped", swapped)
    manifest_b, records_b = _room(tmp_path, "gap", with_gap)
    assert manifest_a["split"]["test"]["windows"] == manifest_b["split"]["test"]["windows"]
    assert manifest_a["metrics"]["model"] == manifest_b["metrics"]["model"]
    assert [(r["time"], r["prediction"]) for r in records_a] == [(r["time"], r["prediction"]) for r in records_b]
    restart = next(i for i, r in enumerate(records_a) if r["time"] > lines[cut - 1].split(",")[1])
    assert records_a[restart]["time"] == lines[cut + T - 1].split(",")[1]  # T rows after the header, no sooner


def test_a_line_too_long_in_the_test_period_stays_a_gap_in_the_sample(tmp_path: Path):
    from tests.synthetic import write_sensor_csv

    lines = write_sensor_csv(tmp_path / "room.csv", rows=600).read_text().splitlines()
    long_at = 560
    lines[long_at] = "x" * (1 << 20) + ",1"
    manifest, recs = _room(tmp_path, "long", lines)
    times = [r["time"] for r in recs]
    after = lines[long_at + 1].split(",")[1]
    assert after not in times and lines[long_at + T].split(",")[1] in times  # the window refills after the gap
    with_target = [r for r in recs if r["row"] + H <= manifest["sample"]["rows"]]
    assert manifest["metrics"]["windows"] <= len(with_target)


def test_a_header_in_another_part_still_heads_the_test_sample(tmp_path: Path):
    """One station's lines after another's, the last station's columns reordered under a header of their own
    that falls in the validation period: the test sample carries that header to the runner, so `edgeseq run`
    reproduces the manifest's RMSE on the same windows."""
    from edgeseq.train import ForecasterConfig, prepare_forecast_data

    lines = write_messy_csv(tmp_path / "m.csv", steps=500).read_text().splitlines()
    header = lines[0].split(",")
    by_key = {key: [x for x in lines[1:] if x.startswith(key + ",")] for key in KEYS}
    order = [header.index(c) for c in ("hum", "press", "time", "note", "temp", "station")]
    south = [",".join(x.split(",")[i] for i in order) for x in by_key["south"]]
    data = tmp_path / "stations.csv"
    east = by_key["east"][: int(len(by_key["east"]) * 0.8)]  # stops in the validation period
    data.write_text("\n".join([lines[0], *by_key["north"], *east, ",".join(header[i] for i in order), *south]) + "\n")
    out = tmp_path / "o"
    result = train(
        "--data", data, "--features", ",".join(FEATURES), "--target", "temp", "--time-column", "time",
        "--group-by", "station", "--out", out, "--name", "h", *TINY,
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    manifest = json.loads((out / "h.json").read_text())
    ran = run("--stream", out / "h.test.csv", "--model", out / "h.onnx")
    assert ran.exit_code == 0, ran.output
    config = ForecasterConfig(
        data=data, features=FEATURES, target="temp", window=T, horizon=H, time_column="time", group_by="station"
    )
    prepared = prepare_forecast_data(config)
    ends, table = prepared.ends["test"], prepared.table
    actual = {(table.keys[e], table.times[e]): a for e, a in zip(ends, prepared.actual("test"), strict=True)}
    scored = []
    for r in records(ran.stdout):
        when = datetime.fromisoformat(r["time"].replace("Z", "+00:00")).timestamp()
        if (r["key"], when) in actual:
            scored.append((r["prediction"], actual[(r["key"], when)]))
    predicted, target = np.array(scored).T
    assert {r["key"] for r in records(ran.stdout)} >= {"north", "south"}
    assert len(scored) == manifest["metrics"]["windows"]
    assert abs(np.sqrt(np.mean((predicted - target) ** 2)) - manifest["metrics"]["model"]["rmse"]) <= 1e-6


def test_a_feature_moving_by_less_than_float32_resolves_is_refused(tmp_path: Path):
    """20 plus noise of 1e-9 moves in every window, but a scale of 1e-9 would turn any real move into a huge
    input: refused by name, as a constant one is."""
    from tests.synthetic import write_sensor_csv

    lines = write_sensor_csv(tmp_path / "room.csv", rows=600).read_text().splitlines()
    rng = np.random.default_rng(0)
    jitter = [f"{line},{20 + rng.normal(0, 1e-9):.12f}" for line in lines[1:]]
    (tmp_path / "jitter.csv").write_text("\n".join([lines[0] + ",status", *jitter]) + "\n")
    result = train(
        "--data", tmp_path / "jitter.csv", "--features", "temp,hum,status", "--target", "temp", "--time-column",
        "time", "--out", tmp_path / "o", *TINY,
    )  # fmt: skip
    assert result.exit_code == 2
    assert "'status' is near-constant: it moves by 1.4e-09 in its windows, below float32's resolution" in result.stderr

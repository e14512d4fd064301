"""A typical-year weather file, as NREL's TMY3 files are written (issue 28): a metadata line before the header, the
date and the time in two columns with hours 01:00 to 24:00 (24:00 being the next day's midnight), and each month
from another year, so that the time jumps forward and back at month boundaries. It trains with --features,
--target and --time-column "Date (MM/DD/YYYY),Time (HH:MM)" only, and `edgeseq run` streams it back, losing only
the windows that would span a month boundary."""

from __future__ import annotations

import json
import math
from datetime import datetime, timedelta
from itertools import pairwise
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from edgeseq.cli import app
from edgeseq_device.times import iso_time, parse_time
from tests.streams import records, run

YEARS = (1988, 1996, 1990, 1985, 1999, 1991, 1987, 1994, 1986, 1998, 1989, 1993)  # month by month, as TMY3
DAYS = 14  # of each month: enough for a 13th day, which tells month-first dates from day-first ones
TIME = "Date (MM/DD/YYYY),Time (HH:MM)"
WINDOW, HORIZON = 12, 3


def write_typical_year(path: Path) -> Path:
    """12 months of DAYS days, hourly, written as TMY3 writes them; the hour 24:00 ends each day."""
    rng = np.random.default_rng(3)
    lines = ['690150,"TWENTYNINE PALMS",CA,-8.0,34.300,-116.167,626', f"{TIME},GHI (W/m^2),Dry-bulb (C),RHum (%)"]
    for month, year in enumerate(YEARS, start=1):
        for day in range(1, DAYS + 1):
            for hour in range(1, 25):
                sun = max(0.0, math.sin(math.pi * (hour - 6) / 12))
                temp = 10 + month + 8 * sun + rng.normal(0, 0.3)
                fields = [f"{month:02d}/{day:02d}/{year}", f"{hour:02d}:00", f"{900 * sun:.0f}", f"{temp:.1f}"]
                lines.append(",".join([*fields, f"{60 - 2 * temp + rng.normal(0, 1):.0f}"]))
    path.write_text("\n".join(lines) + "\n")
    return path


def test_24_00_is_the_next_days_midnight():
    assert iso_time(parse_time("01/31/1988 24:00", "%m/%d/%Y %H:%M")) == "1988-02-01 00:00:00"
    assert parse_time("12/31/1999 24:00", "%m/%d/%Y %H:%M") == parse_time("2000-01-01T00:00:00", "iso8601")


def train(data: Path, out: Path, name: str, features: str, *extra: str, epochs: int = 1) -> str:
    """`edgeseq train forecaster` on `data` with the tests' small settings, the target Dry-bulb (C); its output."""
    result = CliRunner().invoke(
        app,
        ["train", "forecaster", "--data", str(data), "--features", features, "--target", "Dry-bulb (C)", *extra,
         "--out", str(out), "--name", name, "--units", "8,8", "--epochs", str(epochs), "--window", str(WINDOW),
         "--horizon", str(HORIZON)],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    return result.output


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> tuple[Path, Path, dict]:
    folder = tmp_path_factory.mktemp("tmy")
    data = write_typical_year(folder / "tmy3.csv")
    out = folder / "out"
    train(data, out, "tmy", "Dry-bulb (C),RHum (%),GHI (W/m^2)", "--time-column", TIME, epochs=2)
    return data, out, json.loads((out / "tmy.json").read_text())


def test_a_typical_year_trains_with_its_two_time_columns(trained):
    _, _, manifest = trained
    assert manifest["time_column"] == TIME
    assert manifest["series"]["time_format"] == "%m/%d/%Y %H:%M"  # found: month first, as day 13 shows
    assert manifest["series"]["interval_seconds"] == 3600
    assert manifest["csv"] == {"delimiter": ",", "decimal_mark": ".", "preamble_lines": 1}
    data = manifest["data"]
    assert data["rows_dropped"] == {}  # 24:00 and the jumps are no bad rows
    # each of the 11 month boundaries is a gap forward or a jump back, within the part each falls in
    assert data["gaps_in_time"] + data["jumps_back_in_time"] <= 11 and data["jumps_back_in_time"] >= 1


def test_a_typical_year_streams_back_losing_only_the_month_boundaries(trained):
    data, out, _ = trained
    result = run("--stream", data, "--model", out / "tmy.onnx")
    assert result.exit_code == 0, result.stderr
    got = records(result.stdout)
    per_month = DAYS * 24
    assert len(got) == 12 * (per_month - WINDOW + 1)  # every window that lies within a month, no other
    jumps_back = sum(b < a for a, b in pairwise(YEARS))
    assert "0 rows skipped" in result.stderr
    assert f"{11 - jumps_back} gaps in time, {jumps_back} jumps back in time" in result.stderr
    assert "skipped 1 line before the header" in result.stderr
    # the time in ISO 8601: the first window ends on 01/01/1988 12:00, the 13th on 01/01/1988 24:00
    assert got[0]["time"] == "1988-01-01 12:00:00" and got[0]["row"] == WINDOW
    assert got[12]["time"] == "1988-01-02 00:00:00"
    assert got[per_month - WINDOW + 1]["time"] == "1996-02-01 12:00:00"  # February: from 1996
    start = datetime(1988, 1, 1, 12)
    assert [r["time"] for r in got[: per_month - WINDOW + 1]] == [
        (start + timedelta(hours=h)).isoformat(sep=" ") for h in range(per_month - WINDOW + 1)
    ]


def test_the_test_period_streams_back_as_training_wrote_it(trained):
    _, out, manifest = trained
    result = run("--stream", out / "tmy.test.csv", "--model", out / "tmy.onnx")
    assert result.exit_code == 0, result.stderr
    assert "0 rows skipped" in result.stderr
    assert len(records(result.stdout)) >= manifest["split"]["test"]["windows"]


def test_a_typical_year_trains_with_features_and_target_only(tmp_path):
    data = write_typical_year(tmp_path / "tmy3.csv")
    out = tmp_path / "out"
    assert "skipped 1 line before the header" in train(data, out, "tmy", "Dry-bulb (C),RHum (%)")
    ran = run("--stream", data, "--model", out / "tmy.onnx")
    assert ran.exit_code == 0, ran.stderr
    assert len(records(ran.stdout)) == 12 * DAYS * 24 - WINDOW + 1  # no times: one series, row after row


# --- a real TMY3 file ---------------------------------------------------------------------------------------------
REAL = Path(__file__).parent / "data" / "tmy3_703165_excerpt.csv.xz"  # pvlib's 703165TY.csv, days 13-15 (README)


def real_typical_year(folder: Path) -> tuple[Path, list[datetime]]:
    """The excerpt as it was exported, and each row's time read here with the TMY3 rule (24:00: the next day)."""
    import csv
    import lzma

    with lzma.open(REAL, "rt", newline="") as handle:
        text = handle.read()
    path = folder / "703165TY.csv"
    path.write_text(text, newline="")
    rows = list(csv.reader(text.splitlines()[2:]))
    times = []
    for date, clock, *_ in rows:
        month, day, year = map(int, date.split("/"))
        hour = int(clock.split(":")[0])
        times.append(datetime(year, month, day) + timedelta(hours=hour))
    return path, times


def test_a_real_tmy3_file_trains_with_its_columns_and_streams_back(tmp_path):
    data, times = real_typical_year(tmp_path)
    assert len(times) == 12 * 3 * 24
    out = tmp_path / "out"
    train(data, out, "sandpoint", "Dry-bulb (C),Dew-point (C),RHum (%),GHI (W/m^2)", "--time-column", TIME)
    manifest = json.loads((out / "sandpoint.json").read_text())
    assert manifest["series"]["time_format"] == "%m/%d/%Y %H:%M" and manifest["series"]["interval_seconds"] == 3600
    assert manifest["csv"] == {"delimiter": ",", "decimal_mark": ".", "preamble_lines": 1}
    assert manifest["data"]["rows_dropped"] == {}

    ran = run("--stream", data, "--model", out / "sandpoint.onnx")
    assert ran.exit_code == 0, ran.stderr
    got = records(ran.stdout)
    # a window within each month's 72 hours, none across a boundary; the boundaries counted from the file's own
    # dates: forward (a gap) or back (a jump, years back)
    assert len(got) == 12 * (72 - WINDOW + 1)
    starts = [b for a, b in pairwise(times) if b - a != timedelta(hours=1)]
    back = sum(b < a for a, b in pairwise(times))
    assert len(starts) == 11 and back == 5
    assert f"{11 - back} gaps in time, {back} jumps back in time" in ran.stderr and "0 rows skipped" in ran.stderr
    want = [t for i, t in enumerate(times) if i % 72 >= WINDOW - 1]  # each month's rows from its window's end
    assert [r["time"] for r in got] == [t.isoformat(sep=" ") for t in want]
    assert got[12]["time"] == "1997-01-14 00:00:00"  # 01/13/1997 24:00

"""CSV as people export it (issue 28): the shipped sample written again as spreadsheets and loggers write it (a
semicolon with decimal commas, a tab, a pipe, comment lines before the header, a BOM with CRLF line ends) gives
exactly the records of the file itself through the runner, and the same windows to training; what stays refused
is refused in one line that names the dialect tried."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from edgeseq.train import ForecasterConfig, prepare_forecast_data
from edgeseq_device.rows import DELIMITERS, BadRowError, HeaderSearch, MissingColumnError, RowParser, split_line
from tests.streams import LINES, MANIFEST, SENSOR_CSV, SENSOR_ONNX, cli, finish, in_dialect, records, run, write_lines

PLAIN_RECORDS = 2926  # `edgeseq run --stream exported/sensor.csv`

# name -> (the sample's lines in that dialect, its delimiter, what the runner says about its header on stderr)
DIALECTS = {
    "semicolon, decimal commas, quoted": (in_dialect(LINES, ";", ","), ";", "the header is split at ';'"),
    "semicolon, decimal commas": (in_dialect(LINES, ";", ",", quoted=False), ";", "the header is split at ';'"),
    "tab": (in_dialect(LINES, "\t", quoted=False), "\t", "the header is split at tab"),
    "pipe, quoted": (in_dialect(LINES, "|"), "|", "the header is split at '|'"),
    "two # lines": (["# logger export v2", "# site: basement", *LINES], ",", "skipped 2 lines before the header"),
    "a metadata line, tab": (
        ["690150,TWENTYNINE PALMS,CA,-8.0", *in_dialect(LINES, "\t", quoted=False)],
        "\t",
        "skipped 1 line before the header, which is split at tab",
    ),
}


def _write(tmp_path: Path, name: str) -> Path:
    return write_lines(tmp_path / f"{name.replace(' ', '_').replace(',', '')}.csv", DIALECTS[name][0])


@pytest.fixture(scope="module")
def plain() -> list[dict]:
    result = run("--stream", SENSOR_CSV, "--model", SENSOR_ONNX)
    assert result.exit_code == 0, result.stderr
    got = records(result.stdout)
    assert len(got) == PLAIN_RECORDS
    return got


@pytest.mark.parametrize("name", list(DIALECTS))
def test_each_dialect_gives_the_records_of_the_plain_file(tmp_path, plain, name):
    result = run("--stream", _write(tmp_path, name), "--model", SENSOR_ONNX)
    assert result.exit_code == 0, result.stderr
    assert records(result.stdout) == plain  # every record, row numbers, times and forecasts
    assert DIALECTS[name][2] in result.stderr
    assert "0 rows skipped" in result.stderr


def test_a_bom_and_crlf_give_the_records_of_the_plain_file(tmp_path, plain):
    path = tmp_path / "excel.csv"
    path.write_bytes(b"\xef\xbb\xbf" + "\r\n".join(in_dialect(LINES, ";", ",")).encode() + b"\r\n")
    result = run("--stream", path, "--model", SENSOR_ONNX)
    assert result.exit_code == 0, result.stderr
    assert records(result.stdout) == plain


def test_stdin_and_the_device_runtime_read_a_semicolon_stream_too(tmp_path, plain):
    text = "\n".join(DIALECTS["semicolon, decimal commas"][0]) + "\n"
    result = run("--stream", "-", "--model", SENSOR_ONNX, stdin=text)
    assert result.exit_code == 0, result.stderr
    assert records(result.stdout) == plain
    proc = cli("--stream", "-", "--model", SENSOR_ONNX, module="edgeseq_device", stdin=-1)
    out, err = finish(proc, text)
    assert proc.returncode == 0, err
    assert records(out) == plain and "edgeseq_device: stdin: the header is split at ';'" in err


def test_a_given_delimiter_is_used(tmp_path, plain):
    path = _write(tmp_path, "tab")
    result = run("--stream", path, "--model", SENSOR_ONNX, "--delimiter", "tab")
    assert result.exit_code == 0 and records(result.stdout) == plain


@pytest.mark.parametrize("name", list(DIALECTS))
def test_training_reads_each_dialect_to_the_same_windows(tmp_path, name):
    config = ForecasterConfig(
        data=SENSOR_CSV, features=tuple(MANIFEST["features"]), target=MANIFEST["target"], window=12, horizon=3
    )
    expected = prepare_forecast_data(config)
    got = prepare_forecast_data(ForecasterConfig(**{**config.__dict__, "data": _write(tmp_path, name)}))
    assert {p: e.tolist() for p, e in got.ends.items()} == {p: e.tolist() for p, e in expected.ends.items()}
    assert got.table.values.tobytes() == expected.table.values.tobytes()
    assert got.table.times.tolist() == expected.table.times.tolist()
    assert got.inputs("train").tobytes() == expected.inputs("train").tobytes()
    preamble = got.table.header.preamble
    assert (got.table.lines - preamble).tolist() == expected.table.lines.tolist()  # file lines, preamble counted
    decimal = "," if "decimal commas" in name else "."
    assert got.table.dialect == {
        "delimiter": DIALECTS[name][1],
        "decimal_mark": decimal,
        "preamble_lines": preamble,
    }
    assert got.parts()["train"]["lines"][0] == 2 + preamble


# --- decimal commas ---------------------------------------------------------------------------------------------


def _parser(delimiter: str = ";") -> RowParser:
    return RowParser(["t", "a", "b"], ["a", "b"], "t", delimiter=delimiter)


def test_decimal_commas_read_as_numbers_and_the_first_mark_decides():
    parser, out = _parser(), np.zeros(2)
    parser.parse(["x", "21,3", "-0,5"], out)
    assert out.tolist() == [21.3, -0.5] and parser.decimal == ","
    parser.parse(["x", "7", "1,5e3"], out)
    assert out.tolist() == [7.0, 1500.0]
    with pytest.raises(BadRowError, match="this stream writes decimal commas") as caught:
        parser.parse(["x", "1.234", "1"], out)  # a thousands separator, or the other mark: never 1.234
    assert caught.value.reason == "other decimal mark"
    points = _parser()
    points.parse(["x", "2.5", "1"], out)
    with pytest.raises(BadRowError, match="this stream writes decimal points"):
        points.parse(["x", "2,5", "1"], out)


@pytest.mark.parametrize("text", ["1.234,5", "1,234.5", "-12.345,67"])
def test_a_number_with_both_marks_is_a_bad_row(text):
    parser = _parser()
    with pytest.raises(BadRowError, match="a point and a comma in one number") as caught:
        parser.parse(["x", text, "1"], np.zeros(2))
    assert caught.value.reason == "thousands separator" and parser.decimal is None


def test_the_comma_delimiter_never_reads_a_decimal_comma():
    with pytest.raises(BadRowError) as caught:
        _parser(",").parse(["x", "21,3", "1"], np.zeros(2))  # a quoted "21,3" in a comma-delimited file
    assert caught.value.reason == "non-numeric"


def test_a_word_with_a_point_decides_nothing():
    parser = _parser()
    with pytest.raises(BadRowError):
        parser.parse(["x", "n.a.", "1"], np.zeros(2))
    assert parser.decimal is None


# --- what stays refused, in one line --------------------------------------------------------------------------


def _refused(tmp_path: Path, lines: list[str], *options: str) -> str:
    result = run("--stream", write_lines(tmp_path / "in.csv", lines), "--model", SENSOR_ONNX, *options)
    assert result.exit_code == 2, result.stderr
    assert result.stdout == ""
    assert len(result.stderr.splitlines()) == 1, result.stderr
    return result.stderr.strip()


def test_a_header_that_splits_into_one_name_is_refused_naming_the_delimiters_tried(tmp_path):
    lines = [line.replace(",", " ").replace('"', "") for line in LINES[:50]]
    said = _refused(tmp_path, lines)
    assert said.startswith(f"edgeseq: error: {tmp_path / 'in.csv'}: no header in the first 50 lines: the header ")
    assert "(line 1, 'date Appliances lights" in said
    assert "splits into 1 name with any of , ; tab |" in said


def test_a_header_without_a_column_is_refused_at_once_naming_its_delimiter(tmp_path):
    lines = in_dialect([LINES[0].replace('"RH_out"', '"RH_outside"'), *LINES[1:300]], ";")
    said = _refused(tmp_path, lines)
    assert "missing column 'RH_out' (the header has 'date', 'Appliances'" in said
    assert "line 1, split at ';'; tried any of , ; tab |)" in said
    assert "no header" not in said  # the data began on line 2: the search ends there, not 100 lines on


def test_a_given_delimiter_that_does_not_split_the_header_is_refused(tmp_path):
    said = _refused(tmp_path, LINES[:20], "--delimiter", ";")
    assert "splits into 1 name with delimiter ;" in said


def test_a_delimiter_that_cannot_be_one_is_refused(tmp_path):
    said = _refused(tmp_path, LINES[:20], "--delimiter", "ab")
    assert said == "edgeseq: error: --delimiter takes one character such as , ; | or the word tab, got 'ab'"


def test_no_header_in_the_first_100_lines_is_refused(tmp_path):
    said = _refused(tmp_path, [f"# comment {i}" for i in range(150)] + LINES[:10])
    assert "no header: nothing but comments and blank lines in the first 100 lines" in said


def test_bad_marks_are_bad_rows_counted_by_reason(tmp_path):
    lines = in_dialect(LINES[:400], ";", ",", quoted=False)
    fields = lines[100].split(";")
    fields[5] = "1." + fields[5]  # T2 with a thousands separator: 1.021,6
    lines[100] = ";".join(fields)
    lines[200] = lines[200].replace(",", ".")  # decimal points in a stream of decimal commas
    result = run("--stream", write_lines(tmp_path / "in.csv", lines), "--model", SENSOR_ONNX)
    assert result.exit_code == 0, result.stderr
    assert "skipped line 101: thousands separator: column" in result.stderr
    assert "skipped line 201: other decimal mark: column" in result.stderr
    assert "2 rows skipped" in result.stderr
    fail = run("--stream", tmp_path / "in.csv", "--model", SENSOR_ONNX, "--on-bad-row", "fail")
    assert fail.exit_code == 1 and "line 101: thousands separator" in fail.stderr


def test_the_header_search_ends_where_the_data_begins():
    search = HeaderSearch(["a", "b", "zz"])
    assert search.offer("# export") is None and search.offer("t;a;b") is None
    with pytest.raises(MissingColumnError, match="missing column 'zz'"):
        search.offer("1;2;3")


def test_the_manifest_records_the_dialect_and_info_shows_it():
    from edgeseq_device.rows import describe_dialect

    said = describe_dialect({"delimiter": ";", "decimal_mark": ",", "preamble_lines": 2})
    assert said == (
        "the training file: split at ';', decimal commas, 2 lines before the header (a stream's own is found "
        "when it runs)"
    )
    assert json.loads(json.dumps(_parser().dialect(2))) == {"delimiter": ";", "decimal_mark": None, "preamble_lines": 2}


def test_a_semicolon_file_with_a_preamble_trains_and_its_model_runs_on_any_dialect(tmp_path):
    from typer.testing import CliRunner

    from edgeseq.cli import app
    from tests.synthetic import write_sensor_csv

    plain = write_sensor_csv(tmp_path / "room.csv", rows=600).read_text().splitlines()
    data = write_lines(tmp_path / "room.semicolon.csv", ["# logger export v2", *in_dialect(plain, ";", ",")])
    out = tmp_path / "out"
    result = CliRunner().invoke(
        app,
        ["train", "forecaster", "--data", str(data), "--features", "temp,hum,outside", "--target", "temp",
         "--time-column", "time", "--out", str(out), "--name", "room", "--units", "8,8", "--epochs", "2",
         "--window", "12", "--horizon", "3"],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    manifest = json.loads((out / "room.json").read_text())
    assert manifest["csv"] == {"delimiter": ";", "decimal_mark": ",", "preamble_lines": 1}
    assert manifest["split"]["train"]["lines"][0] == 3  # the preamble, then the header, then the first row
    info = CliRunner().invoke(app, ["info", str(out / "room.onnx")])
    assert "csv         the training file: split at ';', decimal commas, 1 line before the header" in info.output
    # the test period as training wrote it (semicolons, decimal commas) and as a comma file: the same records
    sample = (out / "room.test.csv").read_text().splitlines()
    assert sample[0] == "noise;time;hum;temp;outside"
    commas = [line.replace(",", ".").replace(";", ",") for line in sample]
    as_written = run("--stream", out / "room.test.csv", "--model", out / "room.onnx")
    as_commas = run("--stream", write_lines(tmp_path / "commas.csv", commas), "--model", out / "room.onnx")
    assert as_written.exit_code == as_commas.exit_code == 0, as_written.stderr + as_commas.stderr
    assert records(as_written.stdout) == records(as_commas.stdout)
    # the test windows, and the last H, whose targets are past the end of the file
    assert len(records(as_written.stdout)) == manifest["split"]["test"]["windows"] + 3


def test_the_device_runtimes_own_command_takes_delimiter(tmp_path, plain):
    path = _write(tmp_path, "pipe, quoted")
    out, err = finish(cli("--stream", path, "--model", SENSOR_ONNX, "--delimiter", "|", module="edgeseq_device"))
    assert records(out) == plain, err
    out, err = finish(cli("--stream", path, "--model", SENSOR_ONNX, "--delimiter", ";", module="edgeseq_device"))
    assert out == "" and "splits into 1 name with delimiter ;" in err and len(err.splitlines()) == 1


def test_training_takes_delimiter_and_refuses_in_one_line(tmp_path):
    from typer.testing import CliRunner

    from edgeseq.cli import app

    path = _write(tmp_path, "semicolon, decimal commas")
    args = ["train", "forecaster", "--data", str(path), "--features", "T2,RH_2", "--target", "T2", "--epochs", "1"]
    bad = CliRunner().invoke(app, [*args, "--delimiter", "::"])
    assert bad.exit_code == 2
    assert "--delimiter takes one character such as , ; | or the word tab, got '::'" in bad.output
    wrong = CliRunner().invoke(app, [*args, "--delimiter", "tab", "--out", str(tmp_path / "out")])
    assert wrong.exit_code == 2 and not list((tmp_path / "out").glob("*.onnx"))
    said = [line for line in wrong.output.splitlines() if "error" in line]
    assert len(said) == 1 and "no header in the first 100 lines" in said[0]
    assert "splits into 1 name with delimiter tab" in said[0]


def test_a_replay_of_recent_readings_stays_refused(tmp_path, plain):
    lines = list(LINES)
    lines[1001:1001] = LINES[990:1001]  # eleven readings sent again (a resent block): behind the newest, not a jump
    result = run("--stream", write_lines(tmp_path / "replay.csv", lines), "--model", SENSOR_ONNX)
    assert result.exit_code == 0, result.stderr
    assert "11 rows skipped (duplicate time 1, time went backwards 10)" in result.stderr
    assert "jump" not in result.stderr
    got = records(result.stdout)
    assert [r["prediction"] for r in got] == [r["prediction"] for r in plain]  # the window went on as if not sent


NAME = st.text(alphabet="abcxyz_ ()/%", min_size=1, max_size=8).map(str.strip).filter(bool)


@settings(max_examples=300, deadline=None)
@given(
    columns=st.lists(NAME, min_size=1, max_size=4, unique=True),
    extra=st.lists(NAME, max_size=3),
    delimiter=st.sampled_from(DELIMITERS),
    quoted=st.booleans(),
    preamble=st.lists(
        st.one_of(st.just(""), st.text(alphabet="# abc:=,.0123", max_size=20).map(lambda t: "#" + t),
                  st.text(alphabet="0123456789.:- ", max_size=20)),
        max_size=5,
    ),
)  # fmt: skip
def test_the_header_is_found_after_any_preamble_in_any_dialect(columns, extra, delimiter, quoted, preamble):
    names = [n for n in extra if n not in columns] + columns
    header = delimiter.join(f'"{n}"' if quoted else n for n in names)
    search = HeaderSearch(columns)
    found = None
    for line in [*preamble, header]:
        found = search.offer(line)
        if found is not None:
            break
    assert found is not None and found.preamble == len(preamble) and found.line == header
    # the first delimiter that names every column: the header's own, or one listed before it that does too
    assert found.delimiter == next(d for d in DELIMITERS if set(columns) <= {n.strip().strip('"') for n in
                                                                             split_line(header, d)})  # fmt: skip


def test_delimiter_is_refused_for_an_mqtt_stream():
    result = run("--stream", "mqtt://localhost:1/sensors/+", "--model", SENSOR_ONNX, "--delimiter", ";")
    assert result.exit_code == 2 and result.stdout == ""
    assert result.stderr == (
        "edgeseq: error: --delimiter is for a CSV file or stdin: an MQTT message is JSON or a comma-separated line\n"
    )

"""Input that used to be lost, truncated or misread with exit 0, and hostile input: each case as a user has it."""

from __future__ import annotations

import gzip
import os
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from edgeseq_device.sources.lines import LineSource, TooLong
from tests.streams import HEADER, LINES, SENSOR_CSV, SENSOR_ONNX, T, cli, finish, records, run, write_lines


@pytest.fixture(scope="module")
def clean_records() -> list[dict]:
    result = run("--stream", SENSOR_CSV, "--model", SENSOR_ONNX)
    assert result.exit_code == 0, result.output
    return records(result.stdout)


def test_a_lone_carriage_return_splits_a_line_and_the_stream_goes_on(tmp_path: Path, clean_records):
    # Before: `x\r` looked like a truncated last line and the stream ended at line 42 with exit 0.
    path = tmp_path / "junkcr.csv"
    path.write_bytes(("\n".join(LINES[:41]) + "\nx\ry\r\n" + "\n".join(LINES[41:]) + "\n").encode())
    result = run("--stream", path, "--model", SENSOR_ONNX)
    assert result.exit_code == 0, result.output
    assert "skipped line 42: too few fields" in result.stderr and "skipped line 43: too few fields" in result.stderr
    rows = [r["row"] for r in records(result.stdout)]
    # rows 41 and 42 are x and y: a gap, then T good rows before the next window
    assert rows == list(range(T, 41)) + list(range(42 + T, len(LINES) + 2))
    assert f"{len(LINES) + 1} rows read" in result.stderr


def test_a_file_with_carriage_returns_only_reads_every_row(tmp_path: Path, clean_records):
    path = tmp_path / "mac.csv"
    path.write_bytes(("\r".join(LINES) + "\r").encode())
    result = run("--stream", path, "--model", SENSOR_ONNX)
    assert result.exit_code == 0, result.output
    assert records(result.stdout) == clean_records


def test_crlf_line_ends_give_the_same_records(tmp_path: Path, clean_records):
    path = tmp_path / "dos.csv"
    path.write_bytes(("\r\n".join(LINES) + "\r\n").encode())
    assert records(run("--stream", path, "--model", SENSOR_ONNX).stdout) == clean_records


def _shifted(line: str) -> str:
    """An unquoted comma inside the time column: every field after it moves one place right."""
    first, rest = line.split(",", 1)
    return first.strip('"').replace(" ", ", ") + "," + rest


def test_a_row_with_more_fields_than_the_header_is_a_bad_row(tmp_path: Path, clean_records):
    lines = [*LINES[:60], _shifted(LINES[60]), *LINES[61:100]]
    result = run("--stream", write_lines(tmp_path / "s.csv", lines), "--model", SENSOR_ONNX)
    assert result.exit_code == 0, result.output
    assert f"skipped line 61: too many fields: {len(HEADER) + 1} fields, the header has {len(HEADER)}" in result.stderr
    got = records(result.stdout)
    assert [r["row"] for r in got] == list(range(T, 60)) + list(range(60 + T, 100))
    expected = {r["row"]: r["prediction"] for r in clean_records}
    assert all(r["prediction"] == expected[r["row"]] for r in got)


def test_a_row_of_ten_thousand_fields_is_a_bad_row(tmp_path: Path):
    lines = [*LINES[:60], LINES[60] + ",1" * 10_000, *LINES[61:100]]
    result = run("--stream", write_lines(tmp_path / "s.csv", lines), "--model", SENSOR_ONNX)
    assert result.exit_code == 0
    assert "skipped line 61: too many fields: 10,029 fields" in result.stderr


def test_a_line_longer_than_one_mib_is_a_bad_row_and_memory_stays_bounded(tmp_path: Path):
    long_line = LINES[60] + " " * (2 << 20)
    path = write_lines(tmp_path / "s.csv", [*LINES[:60], long_line, *LINES[61:100]])
    result = run("--stream", path, "--model", SENSOR_ONNX)
    assert result.exit_code == 0
    assert "skipped line 61: line too long: more than 1,048,576 bytes" in result.stderr
    assert [r["row"] for r in records(result.stdout)][-1] == 99
    assert len(result.stderr) < 2000


def test_a_header_longer_than_the_limit_is_fatal_with_a_short_message(tmp_path: Path):
    path = write_lines(tmp_path / "wide.csv", ["x" * (3 << 20), *LINES[1:10]])
    result = run("--stream", path, "--model", SENSOR_ONNX)
    assert result.exit_code == 2 and result.stdout == ""
    assert result.stderr == f"edgeseq: error: {path}: the header line is longer than 1,048,576 bytes\n"


def test_zeros_on_stdin_are_refused_as_not_text_at_once():
    proc = cli("--stream", "-", "--model", SENSOR_ONNX, stdin=open("/dev/zero", "rb"))  # noqa: SIM115
    _, err = finish(proc)
    assert proc.returncode == 2
    assert err == "edgeseq: error: stdin is not CSV text: its first line holds NUL bytes\n"


@pytest.mark.parametrize(
    ("name", "content", "what"),
    [
        ("s.csv", gzip.compress(SENSOR_CSV.read_bytes()), "gzip-compressed"),
        ("s.csv", "\n".join(LINES[:50]).encode("utf-16"), "UTF-16 text"),
    ],
)
def test_a_stream_that_is_not_csv_text_is_one_line_without_its_bytes(tmp_path: Path, name, content, what):
    path = tmp_path / name
    path.write_bytes(content)
    result = run("--stream", path, "--model", SENSOR_ONNX)
    assert result.exit_code == 2 and result.stdout == ""
    assert result.stderr.startswith(f"edgeseq: error: {path} is {what}, not CSV text")
    assert len(result.stderr.splitlines()) == 1
    assert all(ch.isprintable() for ch in result.stderr.rstrip("\n"))


def test_control_characters_in_the_header_are_escaped_in_messages(tmp_path: Path):
    header = LINES[0].replace('"lights"', '"RH\x1b[31mout\x07"').replace('"RH_out"', '"RH_outside"')
    result = run("--stream", write_lines(tmp_path / "s.csv", [header, *LINES[1:40]]), "--model", SENSOR_ONNX)
    assert result.exit_code == 2
    assert "\x1b" not in result.stderr and "\x07" not in result.stderr
    assert "'RH\\x1b[31mout\\x07'" in result.stderr


def test_a_fifty_megabyte_header_name_is_not_echoed_whole(tmp_path: Path):
    header = LINES[0].replace('"lights"', '"' + "R" * 100_000 + '"').replace('"RH_out"', '"RH_outside"')
    result = run("--stream", write_lines(tmp_path / "s.csv", [header, *LINES[1:40]]), "--model", SENSOR_ONNX)
    assert result.exit_code == 2 and "missing column 'RH_out'" in result.stderr
    assert len(result.stderr) < 3000 and "(100,000 characters)" in result.stderr


def test_a_duplicated_column_the_model_needs_is_refused(tmp_path: Path):
    header = LINES[0].replace('"T6"', '"T2"')
    result = run("--stream", write_lines(tmp_path / "s.csv", [header, *LINES[1:40]]), "--model", SENSOR_ONNX)
    assert result.exit_code == 2 and result.stdout == ""
    t2, t6 = HEADER.index("T2") + 1, HEADER.index("T6") + 1
    assert f"'T2' is field {t2} and {t6}" in result.stderr


def test_a_duplicated_column_the_model_does_not_need_is_fine(tmp_path: Path, clean_records):
    header = LINES[0].replace('"T6"', '"T7"')
    result = run("--stream", write_lines(tmp_path / "s.csv", [header, *LINES[1:60]]), "--model", SENSOR_ONNX)
    assert result.exit_code == 0 and records(result.stdout) == clean_records[: 60 - T]


def test_output_equal_to_the_stream_is_refused_and_the_input_kept(tmp_path: Path):
    path = write_lines(tmp_path / "s.csv", LINES[:100])
    before = path.read_bytes()
    result = run("--stream", path, "--model", SENSOR_ONNX, "--output", path)
    assert result.exit_code == 2
    assert f"--output {path} is --stream" in result.stderr
    assert path.read_bytes() == before
    os.link(path, tmp_path / "hard.csv")  # the same file under another name
    assert run("--stream", path, "--model", SENSOR_ONNX, "--output", tmp_path / "hard.csv").exit_code == 2
    assert path.read_bytes() == before


def test_follow_on_stdin_ends_when_the_producer_closes_the_pipe():
    proc = cli("--stream", "-", "--model", SENSOR_ONNX, "--follow", stdin=-1)
    out, err = finish(proc, "\n".join(LINES[:50]) + "\n")
    assert proc.returncode == 0, err
    assert len(records(out)) == 50 - T and "49 rows read" in err


# Lines: the same split whatever the chunking, for any bytes; never a line over the limit.


def _reference(data: bytes) -> list[bytes]:
    return data.splitlines()  # bytes.splitlines breaks at \n, \r\n and \r only


@settings(max_examples=300, deadline=None)
@given(
    st.lists(st.sampled_from([b"a", b",", b"1", b"\r", b"\n", b"\r\n", b"\xff", b"\x00", b"xyz"]), max_size=60),
    st.data(),
)
def test_lines_split_the_same_for_every_chunking(pieces, data):
    raw = b"Z\n" + b"".join(pieces)  # a clean first line: a NUL in the first line means "not text"
    cuts = sorted(data.draw(st.lists(st.integers(0, len(raw)), max_size=8)))
    chunks = [raw[a:b] for a, b in zip([0, *cuts], [*cuts, len(raw)], strict=True)]
    chunks = [c for c in chunks if c] + [b""]
    feed = iter(chunks)
    got = list(LineSource.from_reader(lambda n: next(feed, b""), "test", max_line=8))
    expected = [TooLong(8) if len(line) > 8 else line.decode("utf-8", "replace") for line in _reference(raw)]
    assert got == expected


def test_the_runner_parses_rows_the_training_loader_parses(tmp_path: Path):
    from edgeseq.data import load_sensor_csv

    path = tmp_path / "mixed.csv"
    path.write_bytes(("\r".join(LINES[:30]) + "\r\n" + "\n".join(LINES[30:60]) + "\n").encode())
    table = load_sensor_csv(path, ("T2", "RH_2"), "date")
    assert len(table.values) == 59
    t2 = HEADER.index("T2")
    expected = [float(LINES[i].split(",")[t2].strip('" ')) for i in (1, 30, 59)]
    np.testing.assert_array_equal(table.column("T2")[[0, 29, 58]], expected)


# Found by an adversarial review of this runner.


def test_stdin_read_from_the_output_file_is_refused_and_the_file_kept(tmp_path: Path):
    path = write_lines(tmp_path / "v.csv", LINES[:200])
    before = path.read_bytes()
    with path.open("rb") as stdin:
        proc = cli("--stream", "-", "--model", SENSOR_ONNX, "--output", path, stdin=stdin)
        _, err = finish(proc)
    assert proc.returncode == 2 and "is the file on stdin" in err
    assert path.read_bytes() == before


def test_a_header_again_mid_stream_maps_the_columns_anew(tmp_path: Path):
    # `cat jan.csv feb.csv | edgeseq run --stream -` where feb.csv orders its columns differently
    fields = [line.split(",") for line in LINES[200:300]]
    reordered = [",".join(row[::-1]) for row in [LINES[0].split(","), *fields]]
    combined = write_lines(tmp_path / "both.csv", [*LINES[:100], *reordered])
    alone = write_lines(tmp_path / "feb.csv", reordered)
    result = run("--stream", combined, "--model", SENSOR_ONNX)
    assert result.exit_code == 0, result.output
    assert "line 101 is a header; columns found anew, every series starts afresh" in result.stderr
    expected = [r["prediction"] for r in records(run("--stream", alone, "--model", SENSOR_ONNX).stdout)]
    got = records(result.stdout)
    assert [r["prediction"] for r in got if r["row"] > 99] == expected
    assert next(r["row"] for r in got if r["row"] > 99) == 99 + T  # the header is not a data row


def test_a_live_stream_ending_lines_with_a_lone_cr_is_not_kept_a_row_behind():
    proc = cli("--stream", "-", "--model", SENSOR_ONNX, stdin=-1)
    try:
        proc.stdin.write("\r".join(LINES[: T + 1]) + "\r")  # header and T rows: exactly one window
        proc.stdin.flush()
        first = _readline_within(proc, 30)
    finally:
        proc.kill()
    assert first is not None and records(first)[0]["row"] == T


def test_a_sensor_writing_a_row_at_a_time_gets_each_forecast_before_its_next_row():
    # the runner works a read at a time: a read that holds one row must give its record at once, not wait
    # for a block to fill, and flush it (stdout on a pipe is block-buffered unless PYTHONUNBUFFERED is set)
    env = {k: v for k, v in os.environ.items() if k != "PYTHONUNBUFFERED"}
    proc = cli("--stream", "-", "--model", SENSOR_ONNX, stdin=-1, env=env)
    try:
        proc.stdin.write("\n".join(LINES[:T]) + "\n")  # the header and T - 1 rows: no window yet
        proc.stdin.flush()
        seen = []
        for line in LINES[T : T + 5]:
            proc.stdin.write(line + "\n")
            proc.stdin.flush()
            seen.append(_readline_within(proc, 30))
    finally:
        proc.kill()
    assert [records(r)[0]["row"] for r in seen if r] == [T, T + 1, T + 2, T + 3, T + 4]


def _readline_within(proc, seconds: float) -> str | None:
    import threading

    got: list[str] = []
    reader = threading.Thread(target=lambda: got.append(proc.stdout.readline()), daemon=True)
    reader.start()
    reader.join(seconds)
    return got[0] if got else None


def test_a_compressed_stream_is_recognised_even_when_its_first_read_is_one_byte():
    import subprocess
    import sys

    data = gzip.compress(SENSOR_CSV.read_bytes())
    feeder = subprocess.Popen(
        [sys.executable, "-c", "import sys, time; d = sys.stdin.buffer.read(); o = sys.stdout.buffer; "
         "o.write(d[:1]); o.flush(); time.sleep(0.5); o.write(d[1:]); o.flush()"],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE,
    )  # fmt: skip
    proc = cli("--stream", "-", "--model", SENSOR_ONNX, stdin=feeder.stdout)
    feeder.stdout.close()  # the runner holds the only read end: when it exits, the feeder's writes fail
    feeder.stdin.write(data)
    feeder.stdin.close()
    _, err = finish(proc)
    feeder.kill()
    assert (
        proc.returncode == 2 and err == "edgeseq: error: stdin is gzip-compressed, not CSV text; decompress it first\n"
    )


def test_control_characters_in_paths_are_escaped(tmp_path: Path):
    result = run("--stream", tmp_path / "\x1b[31mnope.csv", "--model", SENSOR_ONNX)
    assert result.exit_code == 2 and "\x1b" not in result.stderr and "\\x1b[31mnope.csv" in result.stderr


def test_a_value_near_float32_max_gives_no_numpy_warning(tmp_path: Path):
    t2 = HEADER.index("T2")
    fields = LINES[60].split(",")
    fields[t2] = '"3.4e38"'
    lines = [*LINES[:60], ",".join(fields), *LINES[61:100]]
    result = run("--stream", write_lines(tmp_path / "s.csv", lines), "--model", SENSOR_ONNX)
    assert result.exit_code == 0 and "Warning" not in result.stderr


def test_a_time_text_stdout_cannot_encode_is_escaped_not_fatal(tmp_path: Path):
    # ISO 8601 takes any one character between date and time: a time that parses but is not ASCII
    lines = [LINES[0], *(line.replace(" ", "\u2600", 1) for line in LINES[1:60])]
    path = write_lines(tmp_path / "sun.csv", lines)
    proc = cli(
        "--stream", path, "--model", SENSOR_ONNX, "--format", "csv", env={**os.environ, "PYTHONIOENCODING": "ascii"}
    )
    out, err = finish(proc)
    assert proc.returncode == 0, err
    assert "2016-05-07\\u260010:30:00" in out.splitlines()[1]

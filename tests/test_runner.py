"""The streaming runner: golden parity with evaluation, stdin, follow, bad rows under both policies, checks."""

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import EXPORTED, LETTER_ONNX, REPO
from tests.helpers import old_format_forecaster
from tests.streams import LINES, MANIFEST, SENSOR_CSV, SENSOR_ONNX, H, T, cli, records, run, write_lines


def column(name: str) -> np.ndarray:
    header = [h.strip('"') for h in LINES[0].split(",")]
    index = header.index(name)
    return np.array([float(line.split(",")[index].strip('" ')) for line in LINES[1:]])


@pytest.fixture(scope="module")
def full_run():
    result = run("--stream", SENSOR_CSV, "--model", SENSOR_ONNX)
    assert result.exit_code == 0, result.output
    return records(result.stdout), result.stderr


def test_one_record_per_window_with_row_time_prediction(full_run):
    recs, _ = full_run
    assert len(recs) == len(LINES) - 1 - T + 1
    assert recs[0]["row"] == T and recs[-1]["row"] == len(LINES) - 1
    assert recs[0]["time"] == LINES[T].split(",")[0].strip('"')
    assert set(recs[0]) == {"row", "time", "prediction"}


@pytest.fixture(scope="module")
def keras_forecasts() -> dict[int, float]:
    """The forecast of the window ending at each data row of sensor.csv (row 1 is the line after the header): the
    rows read with the csv module, scaled by the manifest's formula in numpy, the Keras network, and the
    manifest's output transform, forecast = last_target + target_scale * output."""
    import csv

    from edgeseq import frameworks

    rows = list(csv.reader(LINES))
    indices = [rows[0].index(name) for name in MANIFEST["features"]]
    values = np.array([[float(row[i]) for i in indices] for row in rows[1:]])
    ends = np.arange(T - 1, len(values))
    raw = np.stack([values[end - T + 1 : end + 1] for end in ends])
    scaling = MANIFEST["scaling"]
    scaled = ((raw - raw[:, -1:, :]) / np.asarray(scaling["input_scale"])).astype(np.float32)
    _, keras = frameworks.tensorflow()
    change = keras.models.load_model(EXPORTED / "sensor_lstm.keras")(scaled, training=False).numpy().reshape(-1)
    last = values[ends, MANIFEST["features"].index(MANIFEST["target"])]
    forecast = last + scaling["target_scale"] * change.astype(np.float64)
    return dict(zip((ends + 1).tolist(), forecast.tolist(), strict=True))


@pytest.mark.parametrize("file", ["scaled in its graph", "scaled by the runner"])
def test_golden_runner_equals_keras_and_the_manifests_formulas_on_every_window(
    tmp_path: Path, full_run, keras_forecasts, file
):
    # the shipped file (its graph scales), and the bare network as files were before (the runner scales, in numpy)
    if file == "scaled in its graph":
        recs = full_run[0]
    else:
        result = run("--stream", SENSOR_CSV, "--model", old_format_forecaster(tmp_path))
        assert result.exit_code == 0, result.output
        recs = records(result.stdout)
    assert [r["row"] for r in recs] == list(keras_forecasts)  # a record for every window, in order
    worst = max(abs(r["prediction"] - keras_forecasts[r["row"]]) for r in recs)
    bar = 1e-5 * MANIFEST["scaling"]["target_scale"]  # export's parity bar, in deg C
    assert worst <= bar, f"max abs diff {worst:.3g} > {bar:.3g} deg C over {len(recs)} windows"
    # the windows evaluation scored are those with a known target, H rows on
    assert sum(r["row"] + H <= len(LINES) - 1 for r in recs) == MANIFEST["metrics"]["windows"]


def test_rmse_from_the_records_matches_evaluation_and_beats_persistence(full_run):
    recs, _ = full_run
    target = column(MANIFEST["target"])
    scored = [r for r in recs if r["row"] + H <= len(target)]
    predicted = np.array([r["prediction"] for r in scored])
    actual = np.array([target[r["row"] + H - 1] for r in scored])
    last = np.array([target[r["row"] - 1] for r in scored])
    rmse = float(np.sqrt(np.mean((predicted - actual) ** 2)))
    persistence = float(np.sqrt(np.mean((last - actual) ** 2)))
    assert rmse == pytest.approx(MANIFEST["metrics"]["model"]["rmse"], abs=1e-6)
    assert rmse < 0.9 * persistence


def test_summary_goes_to_stderr_only(full_run):
    _, stderr = full_run
    assert f"{len(LINES) - 1} rows read, {len(LINES) - T} predictions, 0 rows skipped" in stderr
    assert "rows/s" in stderr


def test_stdin_gives_the_same_records(full_run):
    result = run("--stream", "-", "--model", SENSOR_ONNX, stdin="\n".join(LINES[:200]) + "\n")
    assert result.exit_code == 0, result.output
    assert records(result.stdout) == full_run[0][: 200 - T]


def test_column_order_and_extra_columns_do_not_matter(tmp_path: Path, full_run):
    fields = [line.split(",") for line in LINES[:120]]
    shuffled = [",".join([*row[::-1], "extra"]) for row in fields]
    result = run("--stream", write_lines(tmp_path / "s.csv", shuffled), "--model", SENSOR_ONNX)
    assert result.exit_code == 0, result.output
    assert records(result.stdout) == full_run[0][: 120 - T]


def test_stride_and_csv_format(tmp_path: Path, full_run):
    result = run("--stream", SENSOR_CSV, "--model", SENSOR_ONNX, "--stride", "5", "--format", "csv")
    assert result.exit_code == 0
    out = result.stdout.splitlines()
    assert out[0] == "row,time,prediction"
    rows = [int(line.split(",")[0]) for line in out[1:]]
    assert rows[:3] == [T, T + 5, T + 10]
    expected = {r["row"]: r["prediction"] for r in full_run[0]}
    assert all(float(line.split(",")[2]) == expected[int(line.split(",")[0])] for line in out[1:])


def test_output_file(tmp_path: Path, full_run):
    target = tmp_path / "out.jsonl"
    result = run("--stream", SENSOR_CSV, "--model", SENSOR_ONNX, "--output", target)
    assert result.exit_code == 0 and result.stdout == ""
    assert records(target.read_text()) == full_run[0]


BAD_ROWS = {
    "empty": ("", "empty"),
    "non-numeric": ("REPLACE_T2:warm", "non-numeric"),
    "nan": ("REPLACE_T2:nan", "missing value"),
    "NA": ("REPLACE_T2:NA", "missing value"),
    "nil": ("REPLACE_T2: nil ", "missing value"),
    "empty field": ("REPLACE_T2:", "missing value"),
    "inf": ("REPLACE_T2:-inf", "infinite"),
    "too few fields": ('"2016-05-07 09:00:00","60"', "too few fields"),
    "binary junk": ("\x00\x01\x02\ufffd\ufffd,\x7f", "too few fields"),
}


def _bad_line(kind: str) -> str:
    text, _ = BAD_ROWS[kind]
    if text.startswith("REPLACE_T2:"):
        header = [h.strip('"') for h in LINES[0].split(",")]
        fields = LINES[60].split(",")
        fields[header.index("T2")] = f'"{text.split(":", 1)[1]}"'
        return ",".join(fields)
    return text


@pytest.mark.parametrize("kind", list(BAD_ROWS))
def test_bad_row_is_skipped_reported_and_the_window_refills(tmp_path: Path, kind, full_run):
    bad_at = 60  # data row number of the bad line (file line 61)
    lines = [*LINES[:bad_at], _bad_line(kind), *LINES[bad_at + 1 : 160]]
    result = run("--stream", write_lines(tmp_path / "s.csv", lines), "--model", SENSOR_ONNX)
    assert result.exit_code == 0, result.output
    reason = BAD_ROWS[kind][1]
    assert f"skipped line {bad_at + 1}: {reason}" in result.stderr
    assert f"1 rows skipped ({reason} 1)" in result.stderr
    rows = [r["row"] for r in records(result.stdout)]
    assert rows == list(range(T, bad_at)) + list(range(bad_at + T, 160))
    expected = {r["row"]: r["prediction"] for r in full_run[0]}
    assert all(r["prediction"] == expected[r["row"]] for r in records(result.stdout) if r["row"] < bad_at)


@pytest.mark.parametrize("kind", list(BAD_ROWS))
def test_fail_policy_stops_with_exit_1_after_writing_what_came_before(tmp_path: Path, kind):
    lines = [*LINES[:60], _bad_line(kind), *LINES[61:100]]
    result = run("--stream", write_lines(tmp_path / "s.csv", lines), "--model", SENSOR_ONNX, "--on-bad-row", "fail")
    assert result.exit_code == 1
    assert [r["row"] for r in records(result.stdout)] == list(range(T, 60))
    assert f"line 61: {BAD_ROWS[kind][1]}" in result.stderr and "--on-bad-row fail" in result.stderr


def test_truncated_final_line_is_reported_not_fatal(tmp_path: Path):
    truncated = LINES[99][: len(LINES[99]) // 3]
    path = write_lines(tmp_path / "s.csv", [*LINES[:99], truncated], final_newline=False)
    result = run("--stream", path, "--model", SENSOR_ONNX)
    assert result.exit_code == 0
    assert "skipped line 100: too few fields" in result.stderr
    assert [r["row"] for r in records(result.stdout)][-1] == 98


def test_missing_column_is_fatal_at_start_with_exit_2(tmp_path: Path):
    header = LINES[0].replace('"RH_out"', '"RH_outside"')
    result = run("--stream", write_lines(tmp_path / "s.csv", [header, *LINES[1:50]]), "--model", SENSOR_ONNX)
    assert result.exit_code == 2
    assert "missing column 'RH_out'" in result.stderr and result.stdout == ""


def test_tampered_model_is_refused_before_anything_runs(tmp_path: Path):
    for name in ("sensor_lstm.onnx", "sensor_lstm.json"):
        (tmp_path / name).write_bytes((EXPORTED / name).read_bytes())
    model = tmp_path / "sensor_lstm.onnx"
    content = bytearray(model.read_bytes())
    content[-1] ^= 0xFF
    model.write_bytes(bytes(content))
    result = run("--stream", SENSOR_CSV, "--model", model)
    assert result.exit_code == 2 and result.stdout == ""
    assert "does not match its manifest" in result.stderr


def test_a_signature_that_differs_from_the_manifest_is_refused(tmp_path: Path):
    manifest = dict(MANIFEST)
    manifest["inputs"] = [{"name": "window", "shape": [1, 24, 5], "dtype": "float32"}]
    (tmp_path / "sensor_lstm.onnx").write_bytes(SENSOR_ONNX.read_bytes())
    (tmp_path / "sensor_lstm.json").write_text(json.dumps(manifest))
    result = run("--stream", SENSOR_CSV, "--model", tmp_path / "sensor_lstm.onnx")
    assert result.exit_code == 2 and "its manifest says window float32[1, 24, 5]" in result.stderr


def test_without_manifest_it_lists_what_is_missing_then_runs_when_given(tmp_path: Path, full_run):
    # the options describe a file that takes scaled windows: the network alone, as files were before
    # the scaling moved into the graph
    bare = old_format_forecaster(tmp_path)
    bare.with_suffix(".json").unlink()
    refused = run("--stream", SENSOR_CSV, "--model", bare, "--window", "36")
    assert refused.exit_code == 2
    assert "--features, --target, --horizon, --input-scale, --target-scale" in refused.stderr
    scaling = MANIFEST["scaling"]
    given = run(
        "--stream", SENSOR_CSV, "--model", bare, "--features", ",".join(MANIFEST["features"]),
        "--target", MANIFEST["target"], "--window", T, "--horizon", H, "--time-column", "date",
        "--input-scale", ",".join(map(repr, scaling["input_scale"])), "--target-scale", repr(scaling["target_scale"]),
    )  # fmt: skip
    assert given.exit_code == 0, given.output
    assert records(given.stdout) == full_run[0]


def test_a_raw_window_file_without_its_manifest_says_to_bring_the_manifest(tmp_path: Path):
    bare = tmp_path / "bare.onnx"
    bare.write_bytes(SENSOR_ONNX.read_bytes())
    scaling = MANIFEST["scaling"]
    result = run(
        "--stream", SENSOR_CSV, "--model", bare, "--features", ",".join(MANIFEST["features"]),
        "--target", MANIFEST["target"], "--window", T, "--horizon", H,
        "--input-scale", ",".join(map(repr, scaling["input_scale"])), "--target-scale", repr(scaling["target_scale"]),
    )  # fmt: skip
    assert result.exit_code == 2
    assert "takes window float64[1, 36, 5]: raw windows" in result.stderr and "manifest beside it" in result.stderr


def test_letter_model_is_refused_clearly():
    result = run("--stream", SENSOR_CSV, "--model", LETTER_ONNX)
    assert result.exit_code == 2
    assert "is the letter model" in result.stderr and "edgeseq letters" in result.stderr


def test_follow_mode_sees_rows_appended_by_a_writer(tmp_path: Path):
    path = write_lines(tmp_path / "grow.csv", LINES[: T - 1])

    def writer():
        with path.open("a") as handle:
            for line in LINES[T - 1 : T + 10]:  # data rows T-1 .. T+9: windows end at rows T .. T+9
                time.sleep(0.05)
                handle.write(line + "\n")
                handle.flush()

    proc = cli("--stream", str(path), "--model", str(SENSOR_ONNX), "--follow")
    watchdog = threading.Timer(60, proc.kill)  # a hang fails the test instead of stalling the suite
    watchdog.start()
    thread = threading.Thread(target=writer)
    thread.start()
    got = [json.loads(proc.stdout.readline() or "null") for _ in range(10)]
    thread.join()
    watchdog.cancel()
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=30)
    assert [r["row"] for r in got] == list(range(T, T + 10))
    assert proc.returncode == 130 and "Traceback" not in err and "interrupted" in err


def test_a_closed_pipe_ends_quietly(tmp_path: Path):
    proc = cli("--stream", str(SENSOR_CSV), "--model", str(SENSOR_ONNX))
    first = [proc.stdout.readline() for _ in range(3)]
    proc.stdout.close()
    proc.wait(timeout=60)
    err = proc.stderr.read()
    assert all(json.loads(line)["row"] for line in first)
    assert "Traceback" not in err and "Error" not in err
    assert proc.returncode == 0


def test_the_device_front_end_runs_the_same_runner(full_run):
    proc = subprocess.run(
        [sys.executable, "-m", "edgeseq_device", "run", "--stream", str(SENSOR_CSV), "--model", str(SENSOR_ONNX)],
        cwd=REPO, capture_output=True, text=True, timeout=120, env={**os.environ},
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert records(proc.stdout) == full_run[0]


def test_an_unwritable_output_is_one_line_exit_2(tmp_path: Path):
    result = run("--stream", SENSOR_CSV, "--model", SENSOR_ONNX, "--output", tmp_path / "no" / "such" / "x.jsonl")
    assert result.exit_code == 2
    assert result.stderr.startswith("edgeseq: error: cannot write ") and len(result.stderr.splitlines()) == 1


def test_a_byte_order_mark_before_the_header_is_ignored(tmp_path: Path, full_run):
    path = tmp_path / "bom.csv"
    path.write_text("\ufeff" + "\n".join(LINES[:60]) + "\n", encoding="utf-8")
    result = run("--stream", path, "--model", SENSOR_ONNX)
    assert result.exit_code == 0, result.output
    assert records(result.stdout) == full_run[0][: 60 - T]


def test_a_value_beyond_float32_is_a_bad_row(tmp_path: Path):
    header = [h.strip('"') for h in LINES[0].split(",")]
    fields = LINES[60].split(",")
    fields[header.index("T2")] = '"1e300"'
    lines = [*LINES[:60], ",".join(fields), *LINES[61:100]]
    result = run("--stream", write_lines(tmp_path / "s.csv", lines), "--model", SENSOR_ONNX)
    assert result.exit_code == 0
    assert "skipped line 61: out of range" in result.stderr and "RuntimeWarning" not in result.stderr


def test_a_header_only_stream_reports_zero_rows(tmp_path: Path):
    result = run("--stream", write_lines(tmp_path / "h.csv", LINES[:1]), "--model", SENSOR_ONNX)
    assert result.exit_code == 0 and result.stdout == ""
    assert "0 rows read, 0 predictions, 0 rows skipped, 0.00 s" in result.stderr

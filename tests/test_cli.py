"""The CLI as a user meets it: outputs, one-line errors, exit codes (typer.testing.CliRunner)."""

import json
from pathlib import Path

import onnx
import pytest
from typer.testing import CliRunner

import edgeseq
from edgeseq.cli import app
from tests.conftest import LETTER_KERAS, LETTER_ONNX
from tests.streams import LINES, SENSOR_CSV, SENSOR_ONNX, write_lines

runner = CliRunner()


def invoke(*args, stdin=None):
    return runner.invoke(app, [str(a) for a in args], input=stdin)


def test_letters_predicts_the_five_patterns():
    result = invoke("letters", "--model", LETTER_ONNX, "abcd", "bcde", "cdea", "deab", "eabc")
    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines() == ["abcd -> e", "bcde -> a", "cdea -> b", "deab -> c", "eabc -> d"]


def test_letters_reads_stdin_when_given_no_arguments():
    result = invoke("letters", "--model", LETTER_ONNX, stdin="abcd\r\n  eabc\n")
    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines() == ["abcd -> e", "eabc -> d"]


@pytest.mark.parametrize(
    ("args", "stdin", "message"),
    [
        (["abcd", "abcz"], None, "argument 2: 'abcz': 'z' is not in the vocabulary 'abcde'"),
        (["abcd", "abc"], None, "argument 2: 'abc': expected 4 letters from 'abcde', got 3"),
        (["abcd", "abcde"], None, "argument 2: 'abcde': expected 4 letters from 'abcde', got 5"),
        ([], "abcd\n\nbcde\n", "stdin line 2: empty input: expected a sequence of letters"),
        ([], "abcd\nABCD\n", "stdin line 2: 'ABCD': 'A' is not in the vocabulary 'abcde'"),
    ],
)
def test_bad_input_is_one_line_exit_2_after_good_answers(args, stdin, message):
    result = invoke("letters", "--model", LETTER_ONNX, *args, stdin=stdin)
    assert result.exit_code == 2
    assert result.stdout == "abcd -> e\n"
    assert result.stderr == f"edgeseq: error: {message}\n"


def test_missing_model_is_one_line_exit_2(tmp_path: Path):
    result = invoke("letters", "--model", tmp_path / "none.onnx", "abcd")
    assert result.exit_code == 2
    assert result.stderr.strip() == f"edgeseq: error: model file not found: {tmp_path / 'none.onnx'}"
    assert result.stdout == ""


def test_the_default_model_path_missing_says_it_is_relative_to_where_the_command_runs(tmp_path: Path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # not the clone: exported/ is not here
    result = invoke("run", "--stream", str(SENSOR_CSV))
    assert result.exit_code == 2
    assert result.stderr == (
        f"edgeseq: error: model file not found: exported/sensor_lstm.onnx (a relative path: looked for in {tmp_path})\n"
    )


def test_one_gap_in_time_is_singular_in_the_summary(tmp_path: Path):
    lines = [*LINES[:60], *LINES[62:100]]  # 20 minutes missing once: one step over 1.5 intervals
    result = invoke("run", "--stream", str(write_lines(tmp_path / "gap.csv", lines)), "--model", str(SENSOR_ONNX))
    assert result.exit_code == 0
    assert ", 1 gap in time," in result.stderr and "1 gaps" not in result.stderr


def test_corrupt_model_is_one_line_exit_2(tmp_path: Path):
    bad = tmp_path / "broken.onnx"
    bad.write_bytes(LETTER_ONNX.read_bytes()[:200])
    result = invoke("letters", "--model", bad, "abcd")
    assert result.exit_code == 2
    assert len(result.stderr.strip().splitlines()) == 1
    assert f"{bad} is not a loadable ONNX model" in result.stderr


def test_tampered_model_fails_its_sha256_check(letter_copy: Path):
    proto = onnx.load(letter_copy)
    proto.metadata_props[0].value += " (edited)"  # still a valid model, no longer the exported one
    onnx.save(proto, letter_copy)
    result = invoke("letters", "--model", letter_copy, "abcd")
    assert result.exit_code == 2
    assert "letter_rnn.onnx does not match its manifest" in result.stderr
    assert "the file was changed after export" in result.stderr


def test_a_model_without_manifest_runs_from_its_metadata(letter_copy: Path):
    letter_copy.with_suffix(".json").unlink()
    result = invoke("letters", "--model", letter_copy, "deab")
    assert result.exit_code == 0 and result.stdout == "deab -> c\n"


def test_info_shows_signature_ops_size_and_manifest_check():
    result = invoke("info", LETTER_ONNX)
    assert result.exit_code == 0, result.output
    out = result.stdout
    assert "letters float32[1, 4, 5]" in out and "probs float32[1, 5]" in out
    assert f"({LETTER_ONNX.stat().st_size:,} bytes)" in out
    assert "ok: sha256 and signature match" in out
    assert "vocabulary = abcde" in out
    assert "Softmax 1" in out


def test_info_json_counts_op_types_like_onnx(letter_copy: Path):
    result = invoke("info", "--json", LETTER_ONNX)
    data = json.loads(result.stdout)
    proto = onnx.load(LETTER_ONNX)
    top_level = {n.op_type for n in proto.graph.node}
    assert top_level <= set(data["op_types"])
    assert data["op_types"]["Softmax"] == sum(n.op_type == "Softmax" for n in proto.graph.node)


def test_info_reports_a_failed_manifest_check_instead_of_refusing(letter_copy: Path):
    manifest = json.loads(letter_copy.with_suffix(".json").read_text())
    manifest["files"]["letter_rnn.onnx"]["sha256"] = "0" * 64
    letter_copy.with_suffix(".json").write_text(json.dumps(manifest))
    result = invoke("info", letter_copy)
    assert result.exit_code == 0
    assert "FAILED: letter_rnn.onnx does not match its manifest" in result.stdout


def test_info_on_missing_file_is_exit_2(tmp_path: Path):
    result = invoke("info", tmp_path / "x.onnx")
    assert result.exit_code == 2 and "model file not found" in result.stderr


def test_export_into_a_directory_reports_parity(tmp_path: Path):
    (tmp_path / LETTER_KERAS.name).write_bytes(LETTER_KERAS.read_bytes())
    result = invoke("export", "--model", "letter_rnn", "--out", tmp_path)
    assert result.exit_code == 0, result.output
    assert "letter_rnn: " in result.stdout and "parity max abs diff" in result.stdout
    assert (tmp_path / "letter_rnn.onnx").exists() and (tmp_path / "letter_rnn.json").exists()


def test_export_refuses_an_opset_below_17(tmp_path: Path):
    result = invoke("export", "--out", tmp_path, "--opset", "13")
    assert result.exit_code == 2
    assert "greater than or equal to 17" in result.output


def test_version():
    result = invoke("--version")
    assert result.exit_code == 0 and result.stdout.strip() == f"edgeseq {edgeseq.__version__}"


def test_export_without_the_train_extra_says_what_to_install(tmp_path: Path, monkeypatch):
    import importlib.util

    from edgeseq.frameworks import install_command

    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name in ("onnx", "tf2onnx") else real_find_spec(name, *a)
    )
    result = invoke("export", "--out", tmp_path / "out")
    assert result.exit_code == 2  # an environment the user fixes with the pip command given, like bad input
    assert result.stderr == (
        f"edgeseq: error: training and export need tf2onnx, onnx, which are not installed: {install_command('train')}\n"
    )
    assert not (tmp_path / "out").exists()


def test_info_shows_the_fusion_audit():
    result = invoke("info", LETTER_ONNX)
    assert "fusion      all fused (layers rnn (SimpleRNN); expected RNN x1, found RNN x1)" in result.stdout


def test_export_refuses_an_unfused_model_with_exit_1_and_allow_unfused_warns(tmp_path: Path, monkeypatch):
    from tests.helpers import force_unfused

    force_unfused(monkeypatch)
    (tmp_path / LETTER_KERAS.name).write_bytes(LETTER_KERAS.read_bytes())
    refused = invoke("export", "--model", "letter_rnn", "--out", tmp_path)
    assert refused.exit_code == 1
    named = "cannot write every recurrent layer as a fused ONNX op (rnn (SimpleRNN): forced by the test)"
    assert named in refused.stderr
    assert "--allow-unfused" in refused.stderr
    allowed = invoke("export", "--model", "letter_rnn", "--out", tmp_path, "--allow-unfused")
    assert allowed.exit_code == 0
    assert "warning: letter_rnn: recurrent layers were not all fused" in allowed.stderr


def test_letters_into_a_closed_pipe_ends_quietly_with_exit_0(tmp_path: Path):
    import subprocess
    import sys

    many = tmp_path / "many.txt"
    many.write_text("abcd\n" * 20000)  # far more output than a pipe buffer holds
    with many.open() as stdin:
        proc = subprocess.Popen(
            [sys.executable, "-m", "edgeseq", "letters", "--model", str(LETTER_ONNX)],
            stdin=stdin, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )  # fmt: skip
        assert proc.stdout.readline() == "abcd -> e\n"
        proc.stdout.close()
        assert proc.wait(timeout=60) == 0
    assert "Traceback" not in proc.stderr.read()

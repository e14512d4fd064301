"""Help and messages as a terminal shows them: wrapped to its width, nothing cut, no text taken as markup."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from edgeseq.cli import app
from tests.conftest import REPO
from tests.test_docs import COMMANDS


def help_text(*command: str, columns: int = 80) -> str:
    proc = subprocess.run(
        [sys.executable, "-m", "edgeseq", *command, "--help"],
        cwd=REPO, capture_output=True, text=True, timeout=60, env={**os.environ, "COLUMNS": str(columns)},
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


@pytest.mark.parametrize("command", COMMANDS)
def test_help_fits_80_columns_and_wraps_paragraphs_evenly(command):
    text = help_text(*command.split())
    assert all(len(line) <= 80 for line in text.splitlines()), text
    assert "<bool>" not in text  # flags take no value
    description = text.split("Options:", 1)[0].split("Arguments:", 1)[0]
    for paragraph in description.split("\n\n")[1:]:
        lines = [line for line in paragraph.splitlines() if line.strip()]
        # re-wrapped paragraphs: only the last line of a paragraph may be short (the docstring's own line
        # breaks used to come through, giving alternating long and short lines)
        assert all(len(line) >= 50 for line in lines[:-1]), paragraph


def test_help_shows_choices_defaults_and_install_commands_whole():
    export = help_text("export")
    assert "--model all|letter_rnn|sensor_lstm" in export
    # from a clone, where 'edgeseq[train]' names nothing on the index
    assert "pip install '.[train]'" in " ".join(export.split())
    assert "pip install 'edgeseq[train]'" in export
    assert "[default: exported/sensor_lstm.onnx]" in help_text("quantize")
    assert "pip install 'edgeseq[bench]'" in help_text("bench")
    for columns in (80, 120):  # a default path is never broken at its hyphen
        bundle = " ".join(help_text("bundle", columns=columns).split())
        assert "[default: exported/sensor_lstm.dynamic-int8.onnx]" in bundle


def test_arguments_read_as_click_shows_them():
    # typer 0.29's own forms were `{FILE}`, `FILE <path>`, `[SEQUENCE...]...` and `SEQUENCE... <list[str]>`
    info, letters = help_text("info"), help_text("letters")
    assert info.startswith("Usage: python -m edgeseq info [OPTIONS] FILE\n") and "\n  FILE  An ONNX file" in info
    assert letters.startswith("Usage: python -m edgeseq letters [OPTIONS] [SEQUENCE]...\n")
    assert "\n  SEQUENCE  Sequences of 4 letters" in letters
    assert "<" not in info + letters


def test_choices_are_refused_naming_the_option_the_value_and_the_choices():
    cases = {
        ("run", "--stream", "x.csv", "--format", "json"): "'--format': 'json': choose jsonl or csv",
        ("run", "--stream", "x.csv", "--on-bad-row", "stop"): "'--on-bad-row': 'stop': choose skip or fail",
        ("export", "--model", "lstm"): "'--model': 'lstm': choose all, letter_rnn or sensor_lstm",
        ("bundle", "--platform", "linux-arm64", "--out", "x"): (
            "'--platform': 'linux-arm64': choose linux-aarch64 or linux-x86_64"
        ),
    }
    for args, message in cases.items():
        result = CliRunner().invoke(app, list(args))
        assert result.exit_code == 2 and f"Error: Invalid value for {message}" in result.output, result.output
        assert "Value error" not in result.output


def test_the_train_example_is_one_command_as_printed():
    text = help_text("train", "forecaster")
    lines = text.split("Example", 1)[1].split("\n\n", 1)[0].splitlines()[1:]
    assert lines[0].strip().startswith("edgeseq train forecaster") and lines[0].endswith(" \\")
    assert lines[1].strip().endswith("--time-column date")  # a shell joins the two at the backslash


def test_the_device_front_end_help_stands_on_its_own():
    proc = subprocess.run(
        [sys.executable, "-m", "edgeseq_device", "run", "--help"], cwd=REPO, capture_output=True, text=True,
        env={**os.environ, "COLUMNS": "80"},
    )  # fmt: skip
    assert proc.returncode == 0
    assert max(map(len, proc.stdout.splitlines())) <= 80, proc.stdout  # paragraphs re-wrapped to the terminal
    assert "edgeseq run --help" not in proc.stdout  # a device box has no `edgeseq` command
    for option in ("--stream PATH|-", "--follow", "--on-bad-row", "--threads N", "SIGTERM", "exit 143"):
        assert option in proc.stdout


@pytest.mark.parametrize("name", ["room[train].csv", "room[/].csv", "[bold]x[/bold].csv"])
def test_user_paths_are_printed_as_they_are_never_as_markup(tmp_path: Path, name):
    # Before: 'room[/].csv' died with rich.errors.MarkupError, and 'room[train].csv' printed as 'room.csv'.
    data = tmp_path / name
    result = CliRunner().invoke(
        app, ["train", "forecaster", "--data", str(data), "--features", "a,b", "--target", "a", "--out", tmp_path]
    )
    assert result.exit_code == 2, result.output
    assert f"reading {data}" in result.stderr
    assert result.stderr.strip().splitlines()[-1].startswith("edgeseq: error: cannot read")
    assert "Traceback" not in result.output


def test_letters_with_invalid_utf8_on_stdin_is_one_line_exit_2():
    result = CliRunner().invoke(app, ["letters"], input=b"abcd\nab\xffd\nbcde\n")
    assert result.exit_code == 2
    assert result.stdout == "abcd -> e\n"
    assert result.stderr == "edgeseq: error: stdin line 2: 'ab\ufffdd': '\ufffd' is not in the vocabulary 'abcde'\n"


def test_letters_escapes_control_characters_and_bounds_long_input():
    result = CliRunner().invoke(app, ["letters", "ab\x1b[2Jd"])
    assert result.exit_code == 2 and "\x1b" not in result.stderr
    long = CliRunner().invoke(app, ["letters", "a" * 100_000])
    assert long.exit_code == 2 and len(long.stderr) < 300 and "(100,000 characters)" in long.stderr

"""`edgeseq run`'s start without typer (edgeseq/cli_run.py): every command line it takes gives the runner the
options typer would give it, and every other one goes to typer."""

import subprocess
import sys

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

import edgeseq_device.runner as runner_module
from edgeseq.cli import app
from edgeseq.cli_run import parse
from tests.conftest import REPO
from tests.streams import SENSOR_CSV, SENSOR_ONNX


def typer_options(argv: list[str], monkeypatch) -> object | None:
    """The RunOptions typer's `run` hands the runner for argv, or None when typer refuses argv."""
    seen = []
    monkeypatch.setattr(runner_module, "run_stream", lambda options, *_a, **_k: seen.append(options) or 0)
    result = CliRunner().invoke(app, ["run", *argv])
    return seen[0] if result.exit_code == 0 and seen else None


VALID = [
    ["--stream", "data.csv"],
    ["--stream", "-", "--follow"],
    ["--stream=data.csv", "--model=m.onnx", "--stride=3", "--format=csv", "--output=out.csv"],
    ["--follow", "--stream", "a.csv", "--threads", "2", "--on-bad-row", "fail", "--stream", "b.csv"],
    ["--stream", "s.csv", "--features", " a, b ,,c", "--target", "a", "--window", "12", "--horizon", "3",
     "--time-column", "t", "--input-scale", "1,2.5,1e-3", "--target-scale", "-0.5"],
    ["--stream", "s.csv", "--trust", "keys/edgeseq.pem", "--trust=/etc/edgeseq/trusted"],
]  # fmt: skip
REFUSED_OR_TYPERS = [
    [],
    ["--help"],
    ["--stream"],
    ["--stream", "s.csv", "--stride", "0"],
    ["--stream", "s.csv", "--window", "1"],
    ["--stream", "s.csv", "--format", "xml"],
    ["--stream", "s.csv", "--bogus"],
    ["--stream", "s.csv", "--input-scale", "1,x"],
    ["--stream", "s.csv", "--threads", "two"],
    ["--stream", "--follow"],
    ["--stream", "s.csv", "--output", ""],
    ["--stream", "s.csv", "extra"],
]


@pytest.mark.parametrize("argv", VALID)
def test_a_plain_command_line_gives_the_runner_what_typer_gives_it(argv, monkeypatch):
    ours = parse(argv)
    assert ours is not None
    assert ours == typer_options(argv, monkeypatch)


@pytest.mark.parametrize("argv", REFUSED_OR_TYPERS)
def test_anything_else_goes_to_typer(argv):
    assert parse(argv) is None


# each option's values: valid ones and the edge cases typer refuses or reads its own way
_POOLS = {
    "--stream": ["s.csv", "-", "a b.csv", "--x"], "--model": ["m.onnx", "dir/m.onnx", ""],
    "--output": ["o.jsonl", "-", "."], "--target": ["t", "-t"], "--time-column": ["time", ""],
    "--stride": ["0", "1", "2", "-1", "+3", " 4", "1.5", "x"], "--threads": ["1", "2", "0", "01"],
    "--window": ["1", "2", "12"], "--horizon": ["0", "1", "6"],
    "--format": ["jsonl", "csv", "JSONL", "xml"], "--on-bad-row": ["skip", "fail", "Skip"],
    "--features": ["a,b", " a ,, b", ",", "a"], "--input-scale": ["1,2", "1e-3", "x", "1,,2", " 2 "],
    "--target-scale": ["0.5", "-1", "nan", "inf", "x", "1e400"],
    "--trust": ["k.pem", "keys/", "-k", ""],
}  # fmt: skip


@settings(max_examples=400, deadline=None)
@given(st.data())
def test_parse_never_disagrees_with_typer(data):
    argv = ["--stream", "s.csv"]  # most lines then parse here, and are compared
    for _ in range(data.draw(st.integers(0, 5))):
        option = data.draw(st.sampled_from([*_POOLS, "--follow", "--help", "--bogus"]))
        if option not in _POOLS:
            argv.append(option)
            continue
        value = data.draw(st.sampled_from(_POOLS[option]))
        argv += [f"{option}={value}"] if data.draw(st.booleans()) else [option, value]
    ours = parse(argv)
    if ours is None:
        return  # typer takes it: its answer is the CLI's by definition
    with pytest.MonkeyPatch.context() as monkeypatch:
        assert repr(ours) == repr(typer_options(argv, monkeypatch)), argv  # repr: NaN equals itself there


def _imports(*args: str) -> tuple[int, str]:
    proc = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "edgeseq", "run", *args],
        cwd=REPO, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    return proc.returncode, proc.stderr


def test_a_plain_run_never_imports_typer_and_a_bad_one_gets_typers_message():
    code, err = _imports("--stream", str(SENSOR_CSV), "--model", str(SENSOR_ONNX), "--output", "/dev/null")
    assert code == 0 and "2926 predictions" in err
    assert "| typer" not in err and "| pydantic" not in err and "| click" not in err
    code, err = _imports("--stream", str(SENSOR_CSV), "--stride", "0")
    assert code == 2 and "| typer" in err and "Invalid value for '--stride'" in err

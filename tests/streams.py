"""Helpers for tests that stream rows through the runner: the committed sample, and ways to run the CLI."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path

from typer.testing import CliRunner

from edgeseq.cli import app
from tests.conftest import EXPORTED, REPO

SENSOR_CSV = EXPORTED / "sensor.csv"
SENSOR_ONNX = EXPORTED / "sensor_lstm.onnx"
MANIFEST = json.loads((EXPORTED / "sensor_lstm.json").read_text())
T, H = MANIFEST["window"], MANIFEST["horizon"]
LINES = SENSOR_CSV.read_text().splitlines()
HEADER = [h.strip('"') for h in LINES[0].split(",")]


def run(*args, stdin=None):
    """`edgeseq run ARGS` in this process, through typer's CliRunner."""
    return CliRunner().invoke(app, ["run", *[str(a) for a in args]], input=stdin)


def records(text: str) -> list[dict]:
    return [json.loads(line) for line in text.splitlines()]


def write_lines(path: Path, lines: list[str], final_newline: bool = True) -> Path:
    path.write_text("\n".join(lines) + ("\n" if final_newline else ""))
    return path


def cli(*args: str, module: str = "edgeseq", **kwargs) -> subprocess.Popen:
    """`python -m MODULE run ARGS` as a child process, with text pipes (override with keyword arguments)."""
    options = {"stdout": subprocess.PIPE, "stderr": subprocess.PIPE, "text": True, **kwargs}
    return subprocess.Popen([sys.executable, "-m", module, "run", *map(str, args)], cwd=REPO, **options)


def finish(proc: subprocess.Popen, stdin: str | None = None, timeout: float = 60) -> tuple[str, str]:
    """communicate(), but a child still running after `timeout` is killed: a hang fails the test and leaves
    nothing behind."""
    try:
        return proc.communicate(stdin, timeout=timeout)
    finally:
        proc.kill()


def in_dialect(lines: list[str], delimiter: str = ",", decimal: str = ".", quoted: bool | None = None) -> list[str]:
    """Comma-delimited CSV lines written again with another delimiter and decimal mark, as spreadsheets and
    loggers export them: each line quoted as it was (or as `quoted` says)."""
    out = []
    for line in lines:
        fields = next(csv.reader([line]))
        if decimal == ",":
            fields = [f.replace(".", ",") for f in fields]
        quote = line.startswith('"') if quoted is None else quoted
        out.append(delimiter.join(f'"{f}"' if quote else f for f in fields))
    return out

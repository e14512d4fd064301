"""`python -m edgeseq_device run --stream ...`: the streaming runner on a box with numpy + onnxruntime only.

The same runner as `edgeseq run` (edgeseq_device.runner.run_stream); this front end only parses arguments.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from edgeseq_device.runner import DEFAULT_MODEL, RunOptions, run_stream


def _floats(text: str) -> tuple[float, ...]:
    return tuple(float(v) for v in text.split(","))


def _names(text: str) -> tuple[str, ...]:
    return tuple(n.strip() for n in text.split(",") if n.strip())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m edgeseq_device", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    run = commands.add_parser("run", help="stream sensor rows through a forecaster (see `edgeseq run --help`)")
    run.add_argument("--stream", required=True, help="CSV file with a header row, or - for stdin")
    run.add_argument("--model", type=Path, default=DEFAULT_MODEL, help="the forecaster's ONNX file")
    run.add_argument("--follow", action="store_true", help="keep reading a growing file until Ctrl-C")
    run.add_argument("--stride", type=int, default=1, help="one forecast every N rows once the window is full")
    run.add_argument("--format", choices=("jsonl", "csv"), default="jsonl")
    run.add_argument("--output", help="write records to FILE instead of stdout")
    run.add_argument("--threads", type=int, default=1, help="onnxruntime intra-op threads")
    run.add_argument("--on-bad-row", choices=("skip", "fail"), default="skip")
    run.add_argument("--features", type=_names, help="no manifest: comma-separated input columns")
    run.add_argument("--target", help="no manifest: the target column")
    run.add_argument("--window", type=int, help="no manifest: rows per window")
    run.add_argument("--horizon", type=int, help="no manifest: rows ahead")
    run.add_argument("--time-column", help="no manifest: a time column to echo")
    run.add_argument("--input-scale", type=_floats, help="no manifest: per-feature scales")
    run.add_argument("--target-scale", type=float, help="no manifest: the target scale")
    args = parser.parse_args(argv)
    options = RunOptions(**{k: v for k, v in vars(args).items() if k != "command"})
    return run_stream(options, sys.stdout, sys.stderr, prog="edgeseq_device")


if __name__ == "__main__":
    sys.exit(main())

"""python -m edgeseq_device run --stream PATH|- [options]

Stream sensor rows (a CSV with a header, from a file, .gz, .xz or .bz2 too, or stdin) through an exported
model (the forecaster, or one exported with `edgeseq export --keras`) and write one record per window as JSON
lines (or CSV), on a box with numpy and onnxruntime only. This is the same runner as `edgeseq run`
(edgeseq_device.runner.run_stream).

Columns are found by name. The header is the first line, within the first 100, that names them (the lines
before it are skipped and counted), split at the first of , ; tab | that does (or --delimiter); with a delimiter
other than the comma, decimal commas (21,3) are read. A bad row (empty, non-numeric, inf, more or fewer fields
than the header, longer than 1 MiB, a token model's id that is not an integer 0 to N-1) is reported on stderr and
skipped, and no window spans it; so is a missing value, a gap in time or a duplicated or backwards time, by the
series rules in the model's manifest. With a key column (a model trained with --group-by) each key is its own
series, and each record carries its "key".
--follow reads a growing file like tail -F and reopens it when it is truncated or rotated; SIGHUP does not end
a --follow run whose stderr is not a terminal (a service): it is logged and looked at at the next poll. Rows are
taken a read at a time; a live reader gets each read's records at once. Ctrl-C (exit 130) and SIGTERM
(exit 143) stop at the next row or window, with every forecast computed written and a summary on stderr.
With --trust, only a model whose OpenSSF Model Signing signature (<name>.sig) is by a trusted key and covers
its files as they are is run. Exit codes: 0 done, 1 a bad row under --on-bad-row fail, 2 bad usage, model,
manifest, signature or header.
"""

from __future__ import annotations

import sys


def _floats(text: str) -> tuple[float, ...]:
    return tuple(float(v) for v in text.split(","))


def _names(text: str) -> tuple[str, ...]:
    return tuple(n.strip() for n in text.split(",") if n.strip())


def _positive(text: str) -> int:
    import argparse

    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {value}")
    return value


def _paragraphs(text: str, width: int, indent: str) -> str:
    """The description's paragraphs, each re-wrapped to the terminal's width (argparse's default formatter
    would join them into one; the raw one would keep lines wider than the terminal)."""
    import textwrap

    return "\n\n".join(
        textwrap.fill(" ".join(paragraph.split()), width, initial_indent=indent, subsequent_indent=indent)
        for paragraph in text.strip().split("\n\n")
    )


def main(argv: list[str] | None = None) -> int:
    import argparse
    from pathlib import Path

    class Help(argparse.HelpFormatter):
        def _fill_text(self, text: str, width: int, indent: str) -> str:
            return _paragraphs(text, width, indent)

    from edgeseq_device.runner import DEFAULT_MODEL, RunOptions, run_stream

    parser = argparse.ArgumentParser(prog="python -m edgeseq_device", description=__doc__, formatter_class=Help)
    commands = parser.add_subparsers(dest="command", required=True)
    run = commands.add_parser(
        "run",
        help="stream sensor rows through an exported model",
        description=__doc__,
        formatter_class=Help,
    )
    run.add_argument(
        "--stream", required=True, metavar="PATH|-|URL",
        help="CSV file with a header row, - for stdin, or mqtt://HOST:PORT/TOPIC_FILTER (mqtts:// for TLS)",
    )  # fmt: skip
    run.add_argument(
        "--model",
        type=Path,
        default=DEFAULT_MODEL,
        metavar="FILE",
        help="the model's ONNX file, with its manifest beside it",
    )
    run.add_argument(
        "--trust", action="append", default=[], metavar="KEY|DIR",
        help="run only a model signed by this public key (PEM), or by a key in this folder of *.pem (repeat to "
        "trust several, for key rotation)",
    )  # fmt: skip
    run.add_argument("--follow", action="store_true", help="keep reading a growing file, like tail -F")
    run.add_argument("--stride", type=_positive, default=1, metavar="N", help="one forecast every N rows")
    run.add_argument("--format", choices=("jsonl", "csv"), default="jsonl", help="record format (default jsonl)")
    run.add_argument(
        "--output", metavar="FILE|URL",
        help="write records to FILE instead of stdout, or publish them to mqtt://HOST:PORT/TOPIC ({key}: the key)",
    )  # fmt: skip
    run.add_argument("--threads", type=_positive, default=1, metavar="N", help="onnxruntime threads, <= CPUs")
    run.add_argument("--on-bad-row", choices=("skip", "fail"), default="skip", help="skip (default) or fail")
    run.add_argument("--features", type=_names, metavar="NAMES", help="no manifest: comma-separated input columns")
    run.add_argument("--target", metavar="NAME", help="no manifest: the target column")
    run.add_argument("--window", type=int, metavar="T", help="no manifest: rows per window")
    run.add_argument("--horizon", type=int, metavar="H", help="no manifest: rows ahead")
    run.add_argument("--time-column", metavar="NAME", help="no manifest: a time column to echo (DATE,TIME: two)")
    run.add_argument(
        "--delimiter", metavar="CHAR",
        help="the field delimiter, e.g. ';' or tab (default: the first of , ; tab | that splits the header into the "
        "columns the model reads)",
    )  # fmt: skip
    run.add_argument("--input-scale", type=_floats, metavar="NUMBERS", help="no manifest: per-feature scales")
    run.add_argument("--target-scale", type=float, metavar="NUMBER", help="no manifest: the target scale")
    mqtt = run.add_argument_group(
        "MQTT", "mqtt:// or mqtts:// in --stream or --output (pip install 'edgeseq-device[mqtt]')"
    )
    mqtt.add_argument(
        "--mqtt-credentials", metavar="FILE",
        help="a file of one line, USERNAME:PASSWORD, only its owner may read (or EDGESEQ_MQTT_CREDENTIALS)",
    )  # fmt: skip
    mqtt.add_argument("--mqtt-ca", metavar="FILE", help="the CA that signed the broker's certificate")
    mqtt.add_argument("--mqtt-cert", metavar="FILE", help="a client certificate (with --mqtt-key)")
    mqtt.add_argument("--mqtt-key", metavar="FILE", help="the client certificate's key")
    mqtt.add_argument("--mqtt-insecure", action="store_true", help="TLS without checking the certificate or name")
    mqtt.add_argument(
        "--mqtt-plaintext-password", action="store_true",
        help="send the password over plain mqtt:// to a broker not on this machine",
    )  # fmt: skip
    mqtt.add_argument("--mqtt-client-id", metavar="ID", help="the client id the broker keeps the session by")
    mqtt.add_argument(
        "--mqtt-field", dest="mqtt_fields", action="append", default=[], metavar="COLUMN=PATH",
        help="where a column is in nested JSON, e.g. T2=SI7021.Temperature (repeat)",
    )  # fmt: skip
    run.add_argument(
        "--batch", type=_positive, metavar="N",
        help="windows a model call at most, when several are due (default: 32 when the batched file gives the "
        "same forecasts bit for bit, else 1); 1: one window a call",
    )  # fmt: skip
    run.add_argument(
        "--state", metavar="FILE",
        help="keep each series' window in FILE across a restart (written at the end, read at the start)",
    )  # fmt: skip
    scoring = run.add_argument_group("scoring", "a forecaster scored by the actuals its stream brings later")
    scoring.add_argument(
        "--score", action="store_true",
        help="write a score record (kind: score) when each forecast's actual arrives; rolling RMSE in the summary",
    )  # fmt: skip
    scoring.add_argument("--score-window", type=_positive, default=288, metavar="N", help="rolling figures over N")
    scoring.add_argument(
        "--drift-factor", type=float, default=2.0, metavar="K",
        help="warn when the rolling RMSE exceeds persistence's or K x the manifest's test RMSE ...",
    )  # fmt: skip
    scoring.add_argument("--drift-after", type=_positive, default=36, metavar="M", help="... for M in a row")
    run.add_argument(
        "--metrics", metavar="HOST:PORT",
        help="serve Prometheus metrics at http://HOST:PORT/metrics (pip install 'edgeseq-device[metrics]')",
    )  # fmt: skip
    run.add_argument(
        "--metrics-keys", type=_positive, default=100, metavar="N",
        help="keys with their own per-key series in the metrics, the rest aggregated (default 100)",
    )  # fmt: skip
    args = parser.parse_args(argv)
    values = {k: v for k, v in vars(args).items() if k != "command"}
    options = RunOptions(**{**values, "mqtt_fields": tuple(values["mqtt_fields"]), "trust": tuple(values["trust"])})
    return run_stream(options, sys.stdout, sys.stderr, prog="edgeseq_device")


if __name__ == "__main__":
    from edgeseq_device.interrupt import CtrlC

    with CtrlC("edgeseq_device") as ctrl_c:
        from edgeseq_device import runner  # noqa: F401 - numpy and onnxruntime, imported while SIGINT waits

        ctrl_c.armed()
        code = main()
    sys.exit(code)

"""The `edgeseq` command: a thin typer front end; the work lives in plain functions it calls."""

from __future__ import annotations

import io
import json
import sys
from pathlib import Path

import typer

import edgeseq
from edgeseq.cli_bundle import bundle
from edgeseq.cli_export import export, quantize_command
from edgeseq.cli_output import (
    EXPORTED,
    PlainArguments,
    RichProgress,
    choice,
    floats,
    format_info,
    print_bench,
    user_errors,
)
from edgeseq.cli_train import train_app

app = typer.Typer(
    name="edgeseq",
    help="Keras sequence models to small, fast, verified ONNX files, run on edge devices.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    # Plain help: paragraphs re-wrapped to the terminal, nothing cut, and no text parsed as rich markup
    # (which ate the "[train]" of pip install 'edgeseq[train]').
    rich_markup_mode=None,
)

app.add_typer(train_app, name="train")
app.command()(export)
app.command("quantize")(quantize_command)
app.command()(bundle)

DEFAULT_LETTER_MODEL = EXPORTED / "letter_rnn.onnx"
DEFAULT_SENSOR_MODEL = EXPORTED / "sensor_lstm.onnx"


def _version(value: bool) -> None:
    if value:
        typer.echo(f"edgeseq {edgeseq.__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(False, "--version", callback=_version, is_eager=True, help="Print the version."),
) -> None:
    """Keras sequence models to small, fast, verified ONNX files, run on edge devices."""


@app.command()
def bench(
    model: str = typer.Option(
        "sensor_lstm",
        "--model",
        metavar="NAME",
        help="Which exported model to measure: its name in --exported (letter_rnn, sensor_lstm, or your own).",
    ),
    threads: int = typer.Option(
        1, "--threads", min=1, metavar="N", help="Threads for every runtime (Keras, LiteRT, ORT)."
    ),
    json_path: Path | None = typer.Option(None, "--json", metavar="FILE", help="Write the results as JSON to FILE."),
    plot_path: Path | None = typer.Option(
        None, "--plot", metavar="FILE", help="Write a PNG bar chart of p50 latency to FILE."
    ),
    markdown: Path | None = typer.Option(
        None, "--markdown", metavar="FILE", help="Write the table, machine and command to FILE."
    ),
    windows: int = typer.Option(100, "--windows", min=1, metavar="N", help="Distinct real input windows per round."),
    rounds: int = typer.Option(
        5, "--rounds", min=1, metavar="N", help="Rounds over the windows; paths alternate per round."
    ),
    quick: bool = typer.Option(False, "--quick", help="A few iterations only: checks that every path runs."),
    exported: Path = typer.Option(EXPORTED, "--exported", metavar="DIR", help="Directory of the exported models."),
) -> None:
    """Measure the same trained model through Keras, LiteRT and onnxruntime, side by side.

    Paths: Keras predict, a direct Keras call, a tf.function; LiteRT fp32 and dynamic-range (converted from
    the same Keras model, run with XNNPACK and num_threads set); onnxruntime fp32, dynamic-int8, static-int8
    and fp16; the edgeseq runner end to end. All run the same real windows, warmed up, in rounds that
    alternate the paths. Reports p50/p99 latency, file size, load time, agreement with Keras, and the peak
    RSS of minimal processes running onnxruntime and LiteRT. Then batched throughput: microseconds per window
    through each file's batched companion at batches of 1, 8, 32 and 64 windows, beside its single-window file
    (and LiteRT resized to those batches, where it can be). Needs the bench extra: pip install 'edgeseq[bench]'
    (from a clone: pip install '.[bench]').
    """
    progress = RichProgress()
    with user_errors():
        from edgeseq.bench import BenchConfig
        from edgeseq.bench import bench as run_bench
        from edgeseq.bench_report import plot, render_markdown, save_json

        config = BenchConfig(
            model=model,
            exported=exported,
            threads=threads,
            windows=5 if quick else windows,
            rounds=1 if quick else rounds,
            warmup=2 if quick else 20,
            rss_calls=5 if quick else 200,
            batched_windows=64 if quick else 256,
        )
        try:
            result = run_bench(config, progress)
        finally:
            progress.close()
        command = "edgeseq bench " + " ".join(sys.argv[2:]) if len(sys.argv) > 1 else "edgeseq bench"
        print_bench(result)
        if json_path:
            save_json(result, json_path)
        if plot_path:
            plot(result, plot_path)
        if markdown:
            markdown.write_text(render_markdown(result, command) + "\n", encoding="utf-8")


@app.command(cls=PlainArguments)
def letters(
    sequences: list[str] | None = typer.Argument(
        None,
        metavar="SEQUENCE",
        help="Sequences of 4 letters from 'abcde'. With none, one per line is read from stdin.",
        show_default=False,
    ),
    model: Path = typer.Option(DEFAULT_LETTER_MODEL, "--model", metavar="FILE", help="The letter model's ONNX file."),
) -> None:
    """Predict the letter that follows each sequence, through the device runtime (onnxruntime, no Keras).

    Prints 'abcd -> e' per input. A bad input (a letter outside the vocabulary, a wrong length, an empty
    line) stops the run with a one-line error and exit code 2; the inputs before it are still answered.
    """
    from edgeseq_device.errors import InputError
    from edgeseq_device.letters import LetterPredictor, numbered, predict_each
    from edgeseq_device.model import load_model

    with user_errors():
        if sys.stdout is None:  # `>&-`
            raise InputError("stdout is closed: there is nowhere to print the predictions")
        predictor = LetterPredictor(load_model(model))
        if not sequences and sys.stdin is None:  # `<&-`
            raise InputError("stdin is closed: give the sequences as arguments")
        if sequences:
            inputs = numbered("argument", sequences)
        else:
            if sys.stdin.isatty():
                typer.echo("type one sequence per line; Ctrl-D ends", err=True)
            # Bytes that are not UTF-8 become U+FFFD, which the codec then reports as not in the vocabulary.
            stdin = io.TextIOWrapper(sys.stdin.buffer, encoding="utf-8", errors="replace")
            inputs = numbered("stdin line", stdin)
        try:
            for sequence, letter in predict_each(predictor, inputs):
                typer.echo(f"{sequence} -> {letter}")
                sys.stdout.flush()
        except BrokenPipeError:
            # `edgeseq letters ... | head`: the reader left; what was computed has been written.
            from edgeseq_device.runner import silence_stdout

            silence_stdout()


@app.command()
def run(
    stream: str = typer.Option(
        ...,
        "--stream",
        metavar="PATH|-|URL",
        help="CSV file with a header row, - for stdin, or mqtt://HOST:PORT/TOPIC_FILTER (mqtts:// for TLS).",
    ),
    model: Path = typer.Option(
        DEFAULT_SENSOR_MODEL,
        "--model",
        metavar="FILE",
        help="The model's ONNX file (or a variant), with its manifest beside it.",
    ),
    follow: bool = typer.Option(
        False, "--follow", help="Keep reading a growing file, like tail -F, until Ctrl-C or SIGTERM."
    ),
    stride: int = typer.Option(
        1, "--stride", min=1, metavar="N", help="One forecast every N rows once the window is full."
    ),
    fmt: str = typer.Option(
        "jsonl", "--format", parser=choice("jsonl", "csv"), metavar="jsonl|csv", help="Records as JSON lines or CSV."
    ),
    output: str | None = typer.Option(
        None,
        "--output",
        metavar="FILE|URL",
        help="Write records to FILE instead of stdout, or publish them to mqtt://HOST:PORT/TOPIC ({key} in it is "
        "each record's key).",
    ),
    threads: int = typer.Option(
        1, "--threads", min=1, metavar="N", help="onnxruntime intra-op threads, at most the CPUs available."
    ),
    on_bad_row: str = typer.Option(
        "skip",
        "--on-bad-row",
        parser=choice("skip", "fail"),
        metavar="skip|fail",
        help="skip: report on stderr and go on; fail: stop with exit code 1.",
    ),
    features: str | None = typer.Option(
        None, "--features", metavar="NAMES", help="No manifest: comma-separated input columns."
    ),
    target: str | None = typer.Option(None, "--target", metavar="NAME", help="No manifest: the target column."),
    window: int | None = typer.Option(None, "--window", min=2, metavar="T", help="No manifest: rows per window (T)."),
    horizon: int | None = typer.Option(None, "--horizon", min=1, metavar="H", help="No manifest: rows ahead (H)."),
    time_column: str | None = typer.Option(
        None, "--time-column", metavar="NAME", help="No manifest: a time column to echo (DATE,TIME: two columns)."
    ),
    delimiter: str | None = typer.Option(
        None,
        "--delimiter",
        metavar="CHAR",
        help="The field delimiter, e.g. ';' or tab [default: the first of , ; tab | that splits the header into the "
        "columns the model reads].",
        show_default=False,
    ),
    input_scale: str | None = typer.Option(
        None, "--input-scale", metavar="NUMBERS", help="No manifest: per-feature scales."
    ),
    target_scale: float | None = typer.Option(
        None, "--target-scale", metavar="NUMBER", help="No manifest: the target scale."
    ),
    mqtt_credentials: str | None = typer.Option(
        None,
        "--mqtt-credentials",
        metavar="FILE",
        help="MQTT: a file of one line, USERNAME:PASSWORD, that only its owner may read (or set "
        "EDGESEQ_MQTT_CREDENTIALS). Never on the command line.",
    ),
    mqtt_ca: str | None = typer.Option(
        None, "--mqtt-ca", metavar="FILE", help="mqtts://: the CA that signed the broker's certificate."
    ),
    mqtt_cert: str | None = typer.Option(
        None, "--mqtt-cert", metavar="FILE", help="mqtts://: a client certificate (with --mqtt-key)."
    ),
    mqtt_key: str | None = typer.Option(None, "--mqtt-key", metavar="FILE", help="mqtts://: the client key."),
    mqtt_insecure: bool = typer.Option(
        False, "--mqtt-insecure", help="mqtts:// without checking the broker's certificate or name (a test bench)."
    ),
    mqtt_plaintext_password: bool = typer.Option(
        False,
        "--mqtt-plaintext-password",
        help="Send the password over plain mqtt:// to a broker not on this machine (refused by default).",
    ),
    mqtt_client_id: str | None = typer.Option(
        None,
        "--mqtt-client-id",
        metavar="ID",
        help="MQTT client id; the broker keeps the session by it (default: from the host, the topic and the model).",
    ),
    batch: int | None = typer.Option(
        None,
        "--batch",
        min=1,
        metavar="N",
        help="Windows a model call at most, when several are due (a backlog, a burst, many keys) [default: 32 "
        "when the model's batched file gives the same forecasts bit for bit, else 1]; 1: one window a call.",
        show_default=False,
    ),
    state: str | None = typer.Option(
        None,
        "--state",
        metavar="FILE",
        help="Keep each series' window (and the row count) in FILE across a restart: written when the run ends, "
        "read when the next starts. For a stream that is not read again, such as MQTT.",
    ),
    mqtt_field: list[str] = typer.Option(
        [],
        "--mqtt-field",
        metavar="COLUMN=PATH",
        help="Where a column is in a nested JSON message, e.g. T2=SI7021.Temperature (repeat for several).",
        show_default=False,
    ),
    trust: list[str] = typer.Option(
        [],
        "--trust",
        metavar="KEY|DIR",
        help="Run only a model signed (edgeseq sign) by this public key (PEM), or by a key in this folder of *.pem; "
        "repeat to trust several (key rotation). An unsigned model, another key's signature, or a file changed, "
        "added or removed since signing is refused (exit 2).",
        show_default=False,
    ),
    score: bool = typer.Option(
        False,
        "--score",
        help="A forecaster scores itself: when the reading a forecast was for arrives, a score record "
        '({"kind": "score", "target_time", "prediction", "actual", "error", "persistence", ...}) follows in the '
        "same JSON lines; rolling RMSE and MAE of the model and of persistence go in the progress and summary lines.",
    ),
    score_window: int = typer.Option(
        288, "--score-window", min=1, metavar="N", help="--score: rolling figures over the last N scored forecasts."
    ),
    drift_factor: float = typer.Option(
        2.0,
        "--drift-factor",
        metavar="K",
        help="--score: warn of drift when the rolling RMSE (over a full --score-window) exceeds persistence's, or K "
        "x the manifest's test RMSE, for --drift-after forecasts in a row (once an episode).",
    ),
    drift_after: int = typer.Option(
        36, "--drift-after", min=1, metavar="M", help="--score: forecasts in a row over the bar before a warning."
    ),
    metrics: str | None = typer.Option(
        None,
        "--metrics",
        metavar="HOST:PORT",
        help="Serve Prometheus metrics at http://HOST:PORT/metrics while the run lasts: rows, predictions, skipped "
        "rows by reason, gaps, model latency, scores (pip install 'edgeseq[metrics]'). A port in use is refused "
        "(exit 2) before any row is read.",
    ),
    metrics_keys: int = typer.Option(
        100, "--metrics-keys", min=1, metavar="N", help="Keys with their own per-key metrics; the rest are one."
    ),
) -> None:
    r"""Stream sensor rows through an exported model: one record per window.

    Reads a CSV with a header from a file (.csv, .csv.gz, .csv.xz, .csv.bz2) or stdin (-); columns are found
    by name (order and extra columns do not matter). The header is the first line, within the first 100, that
    names them (lines before it, and # comments, are skipped and counted), split at the first of , ; tab | that
    does (or --delimiter); with a delimiter other than the comma, decimal commas (21,3) are read, the stream's
    first number with a decimal mark deciding which, and a number with the other mark or both (1.234,5) is a bad
    row. A ring buffer keeps the last T rows of each series (each
    key, for a model trained with --group-by); a record comes out once it is full and then every --stride
    rows, as JSON lines (or CSV). The input is taken a read at a time (at most 64 KiB, never waiting for
    more); a live reader (a terminal, a pipe, --follow, stdin) gets each read's records flushed at once, so a
    sensor writing a row at a time gets each forecast as its row arrives; a file written from a file is
    flushed at each progress line and at the end. For the forecaster, {"row", "time", "key",
    "prediction"}: the target H rows ahead, in its units ("key" only with a key column). For a model
    exported with `export --keras`, its manifest's fields: "label" and "probability" for a classifier,
    "prediction" (or one field per target) for a regressor; a stateful model takes T new rows per call and
    carries its state on.

    A bad row (empty, non-numeric, inf, more or fewer fields than the header, longer than 1 MiB) is reported
    on stderr with its line number and skipped, and the window refills after it: no window spans a skipped
    row (in a keyed stream, its key's window; a row whose key cannot be read breaks no series). The manifest's
    series rules, the ones training used, say the rest: a missing value (empty, NA, N/A, #N/A,
    NaN, null, nil, None, -, ?) is a gap unless filled (--fill-gaps at training); a step in time over 1.5
    intervals is a gap; a duplicated or backwards time is a bad row, but no gap. Lines may end in \n, \r\n or
    \r.

    --follow keeps reading a growing file like tail -F: a file that is truncated or replaced (log rotation) is
    reopened from its start, and a new window starts; SIGHUP (systemctl reload) is logged and looked at at
    the next poll, and does not end a --follow run whose stderr is not a terminal. Stdin ends when its
    writer closes it.

    From MQTT (--stream mqtt://HOST:PORT/sensors/+/readings): one reading per message, a JSON object keyed by
    column name (or a CSV line of the time and the features, in the manifest's order); the topic levels that
    + and # stand for are the key, so each sensor is its own series. QoS 1 in a persistent session: what
    arrives while edgeseq is away is delivered when it is back, each message is acknowledged once its
    forecasts are out, a redelivered reading is a duplicate, never a second forecast. A message that cannot be
    a row is a bad row, counted by reason with its topic. With --output mqtt://HOST:PORT/forecasts/{key} each
    record is published (QoS 1) to its key's topic. edgeseq/CLIENT_ID/status says online, and offline at a
    clean stop or, by the last will, after a crash.

    A missing or duplicated column, a file that is not CSV text, a model whose sha256, signature or own
    metadata (features, window, scaling...) differs from its manifest, or one that keeps tensor data in
    another file stops before anything runs (exit 2). Ctrl-C (exit 130) and SIGTERM (exit 143) stop at the
    next row or window: every forecast computed is written, then the summary. Progress and the
    summary go to stderr; if stderr is closed, the run goes on. Runs on the device runtime only (numpy +
    onnxruntime).
    """
    with user_errors():  # Ctrl-C before the runner has installed its own handlers
        from edgeseq.cli_run import run_options
        from edgeseq_device.runner import run_stream

        options = run_options(
            stream=stream,
            model=model,
            follow=follow,
            stride=stride,
            fmt=fmt,
            output=output,
            threads=threads,
            on_bad_row=on_bad_row,
            features=features,
            target=target,
            window=window,
            horizon=horizon,
            time_column=time_column,
            delimiter=delimiter,
            input_scale=floats(input_scale, "--input-scale"),
            target_scale=target_scale,
            mqtt_credentials=mqtt_credentials,
            mqtt_ca=mqtt_ca,
            mqtt_cert=mqtt_cert,
            mqtt_key=mqtt_key,
            mqtt_insecure=mqtt_insecure,
            mqtt_plaintext_password=mqtt_plaintext_password,
            mqtt_client_id=mqtt_client_id,
            mqtt_fields=mqtt_field,
            state=state,
            batch=batch,
            trust=trust,
            score=score,
            score_window=score_window,
            drift_factor=drift_factor,
            drift_after=drift_after,
            metrics=metrics,
            metrics_keys=metrics_keys,
        )
        code = run_stream(options, sys.stdout, sys.stderr)
    raise typer.Exit(code)


@app.command()
def report(
    records: Path = typer.Option(
        ...,
        "--records",
        metavar="FILE",
        help="The JSON lines of a run with --score (edgeseq run --score --output FILE).",
    ),
    out: Path = typer.Option(Path("report.html"), "--out", metavar="FILE", help="The HTML page to write."),
    files: Path | None = typer.Option(
        None,
        "--files",
        metavar="DIR",
        help="Where the PNGs and figures.csv go [default: <out's name>_files beside the page].",
        show_default=False,
    ),
    keys: int = typer.Option(3, "--keys", min=1, metavar="N", help="Keys plotted: the first N to appear."),
    window: int = typer.Option(
        288, "--window", min=1, metavar="N", help="Scored forecasts in the rolling RMSE, per key."
    ),
    max_points: int = typer.Option(
        2000, "--max-points", min=10, metavar="N", help="Points a plotted line keeps at most (min and max per run)."
    ),
    stream: Path | None = typer.Option(
        None, "--stream", metavar="FILE", help="The CSV the run read: its raw target drawn faintly behind the actuals."
    ),
    model: Path | None = typer.Option(
        None,
        "--model",
        metavar="FILE",
        help="--stream: the forecaster that ran (its ONNX file): its manifest names the stream's target, time and "
        "key columns and how times are written.",
    ),
    target: str | None = typer.Option(None, "--target", metavar="NAME", help="--stream: the target column."),
    time_column: str | None = typer.Option(
        None, "--time-column", metavar="NAME", help="--stream: the ISO 8601 time column (DATE,TIME: two columns)."
    ),
    key_column: str | None = typer.Option(
        None, "--key-column", metavar="NAME", help="--stream: the key column of a keyed stream."
    ),
) -> None:
    """Write a self-contained HTML page (no network, plots inline) on how a run's forecasts did: forecast, actual
    and persistence over the target time for the first keys; each error against the rolling RMSE of the model
    and of persistence; the distribution of errors; and a table of figures per key and over all keys (count,
    RMSE, MAE and bias of the model and of persistence, and skill = 1 - RMSE model / RMSE persistence).

    The figures use every score record; the plots keep at most --max-points points a line (the lowest and
    highest of each run of points), and the page says so. The PNGs and figures.csv (every key) are also written
    to --files. Reads the file a line at a time; lines that are not JSON objects (a CSV record file) are refused
    naming the line. Needs the 'report' extra (matplotlib).
    """
    with user_errors():
        from edgeseq.report import ReportConfig, write_report

        config = ReportConfig(
            keys=keys,
            window=window,
            max_points=max_points,
            files=files,
            stream=stream,
            model=model,
            target=target,
            time_column=time_column,
            key_column=key_column,
        )
        command = "edgeseq report " + " ".join(sys.argv[2:]) if len(sys.argv) > 1 else "edgeseq report"
        done = write_report(records, out, config, command)
        typer.echo(
            f"{done.page} ({done.size:,} bytes): {done.scores:,} score records; {', '.join(str(f) for f in done.files)}"
        )


@app.command(cls=PlainArguments)
def sign(
    model: Path = typer.Argument(
        ..., metavar="FILE", help="An exported model: its ONNX file (or any of its variants), its manifest beside it."
    ),
    key: Path = typer.Option(
        ...,
        "--key",
        metavar="PRIVATE.pem",
        help="The elliptic-curve private key (P-256, P-384 or P-521, PEM, unencrypted) to sign with. Keep it off "
        "the box; the box is given the public half.",
    ),
) -> None:
    """Sign a model with an OpenSSF Model Signing signature (model_signing, with a key pair): <name>.sig beside it,
    covering its manifest and every <name>.*onnx (variants and batched companions), each by its sha256. A box
    given the public key (edgeseq run --trust KEY) then runs the model only as it was signed. Re-sign after a
    re-export. Needs the 'sign' extra."""
    with user_errors():
        from edgeseq.sign import sign_model

        typer.echo(str(sign_model(model, key)))


@app.command(cls=PlainArguments)
def info(
    model: Path = typer.Argument(..., metavar="FILE", help="An ONNX file, e.g. exported/letter_rnn.onnx."),
    as_json: bool = typer.Option(False, "--json", help="Print the description as JSON."),
    trust: list[str] = typer.Option(
        [],
        "--trust",
        metavar="KEY|DIR",
        help="Check the model's signature against this public key (PEM) or folder of *.pem (repeatable).",
        show_default=False,
    ),
) -> None:
    """Show a model's inputs and outputs, op-type counts, size, metadata, whether its manifest matches, who signed
    it (and with --trust whether the signature holds), and its batched companion (file, batch axis, parity with
    one window a call)."""
    from edgeseq.info import describe

    with user_errors():
        description = describe(model, tuple(trust))
        typer.echo(json.dumps(description, indent=2) if as_json else format_info(description))


def main() -> None:
    try:
        app()
    except BrokenPipeError:
        # `edgeseq letters ... | head`: the reader left; what was computed has been written.
        sys.stderr.close()
        sys.exit(0)


if __name__ == "__main__":
    main()

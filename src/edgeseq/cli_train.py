"""`edgeseq train ...`: train on your own data and export, with the same checks as `edgeseq export`."""

from __future__ import annotations

from pathlib import Path

import typer

from edgeseq.cli_output import EXPORTED, RichProgress, export_summary, user_errors
from edgeseq.cli_run import names
from edgeseq.errors import BadInputError

train_app = typer.Typer(
    help="Train a model on your own data and export it.", no_args_is_help=True, rich_markup_mode=None
)


def _interval(text: str | None, time_column: str | None) -> float | None:
    from edgeseq_device.series import parse_interval

    if text is None:
        return None
    if time_column is None:
        raise BadInputError("--interval needs --time-column: without times there are no steps to check")
    try:
        return parse_interval(text)
    except ValueError as exc:
        raise BadInputError(f"--interval: {exc}") from None


def _delimiter(text: str | None) -> str | None:
    from edgeseq_device.errors import InputError
    from edgeseq_device.rows import check_delimiter

    try:
        return None if text is None else check_delimiter(text)
    except InputError as exc:
        raise BadInputError(str(exc)) from None


def _fractions(text: str | None, split_at: str | None) -> tuple[float, float, float]:
    if text is None:
        from edgeseq.data.split import DEFAULT_FRACTIONS

        return DEFAULT_FRACTIONS
    if split_at is not None:
        raise BadInputError("give --split or --split-at, not both: both say where the parts begin")
    try:
        values = tuple(float(v) for v in text.split(","))
    except ValueError:
        values = ()
    if len(values) != 3 or not all(0 < v < 1 for v in values) or abs(sum(values) - 1) > 1e-6:  # NaN fails
        raise BadInputError(
            f"--split takes three positive fractions that add up to 1, such as 0.7,0.15,0.15; got {text!r}"
        )
    return values  # type: ignore[return-value]


def _dates(text: str | None) -> tuple[str, str] | None:
    if text is None:
        return None
    dates = tuple(d.strip() for d in text.split(","))
    if len(dates) != 2 or not all(dates):
        raise BadInputError(f"--split-at takes two dates, where validation and test start; got {text!r}")
    return dates  # type: ignore[return-value]


@train_app.command("forecaster")
def train_forecaster_command(
    data: Path = typer.Option(
        ..., "--data", metavar="FILE", help="A CSV file with a header row (.csv, .csv.gz, .csv.xz or .csv.bz2)."
    ),
    features: str = typer.Option(
        ..., "--features", metavar="NAMES", help="Comma-separated input columns, in model order."
    ),
    target: str = typer.Option(
        ..., "--target", metavar="NAME", help="The column to forecast; it must be one of --features."
    ),
    window: int = typer.Option(36, "--window", min=2, metavar="T", help="T: rows per input window."),
    horizon: int = typer.Option(
        6, "--horizon", min=1, metavar="H", help="H: forecast the target H rows after the window."
    ),
    time_column: str | None = typer.Option(
        None,
        "--time-column",
        metavar="NAME",
        help="The time of each row: parsed, and a step longer than 1.5 intervals is a gap no window spans; "
        "DATE,TIME for a date and a time of day in two columns, read together.",
    ),
    time_format: str | None = typer.Option(
        None,
        "--time-format",
        metavar="FORMAT",
        help="How times are written when not ISO 8601, unix seconds, unix milliseconds or a date and time found by "
        "itself: a strptime pattern such as '%d/%m/%Y %H:%M' (of the joined text for DATE,TIME; 24:00 is the next "
        "day's 00:00).",
    ),
    interval: str | None = typer.Option(
        None,
        "--interval",
        metavar="STEP",
        help="The sampling interval, e.g. 10min, 1h, 30s, 15.625ms [default: the median step of the training rows].",
    ),
    fill_gaps: int = typer.Option(
        0,
        "--fill-gaps",
        min=0,
        metavar="K",
        help="Carry a missing value's last good value forward for up to K rows in a row, here and in `run`; "
        "0: a row with a missing value is a gap.",
    ),
    group_by: str | None = typer.Option(
        None,
        "--group-by",
        metavar="COLUMN",
        help="A key column (a station, a sensor id): each key is its own series, here and in `run`.",
    ),
    delimiter: str | None = typer.Option(
        None,
        "--delimiter",
        metavar="CHAR",
        help="The field delimiter, e.g. ';' or tab [default: the first of , ; tab | that splits the header into the "
        "columns named].",
    ),
    split: str | None = typer.Option(
        None,
        "--split",
        metavar="A,B,C",
        help="Train, validation and test fractions, in time order [default: 0.7,0.15,0.15].",
    ),
    split_at: str | None = typer.Option(
        None,
        "--split-at",
        metavar="DATE,DATE",
        help="Where validation and test start, e.g. 2016-04-16,2016-05-07 (instead of --split).",
    ),
    drop_constant: bool = typer.Option(
        False, "--drop-constant", help="Leave out constant and near-constant features instead of refusing them."
    ),
    out: Path = typer.Option(EXPORTED, "--out", metavar="DIR", help="Directory the artifacts are written to."),
    name: str = typer.Option(
        "forecaster",
        "--name",
        metavar="NAME",
        help="Artifact name: <out>/<name>.onnx, .json, .keras, and <name>.test.csv (the test period, for `run`).",
    ),
    epochs: int = typer.Option(
        40, "--epochs", min=1, metavar="N", help="Most epochs; early stopping usually ends sooner."
    ),
    patience: int = typer.Option(
        5, "--patience", min=1, metavar="N", help="Epochs without validation improvement to stop."
    ),
    units: str = typer.Option("80,100", "--units", metavar="N,N", help="Sizes of the two LSTM layers."),
    batch_size: int = typer.Option(128, "--batch-size", min=1, metavar="N", help="Training batch size."),
    seed: int = typer.Option(7, "--seed", metavar="N", help="Random seed."),
    allow_unfused: bool = typer.Option(
        False, "--allow-unfused", help="Warn instead of failing when a recurrent layer stays a Loop/Scan."
    ),
) -> None:
    """Train the LSTM forecaster on any CSV and export it, with the same checks as `edgeseq export`.

    The header is the first line, within the first 100, that names the columns (lines before it are skipped and
    counted), split at the first of , ; tab | that does (or --delimiter); decimal commas (21,3) are read where the
    comma is not the delimiter; the manifest records the file's dialect. Rows are read as `edgeseq run` reads
    them: a missing value (empty, NA, N/A, #N/A, NaN, null, nil, None, -, ?), a bad row, a duplicated or
    backwards time and a step in time longer than 1.5 intervals are gaps, and no window spans one; a jump back
    in time by more than 10 windows starts a new segment. The data is split by time (across all keys with
    --group-by) into train, validation and test; scaling is fitted on train only; the test report compares the
    LSTM with ridge regression and persistence, in the target's units, on exactly the windows `edgeseq run` makes
    on the test period.

    \b
    Example (one command; its lines are kept as they are, so it can be pasted):
      edgeseq train forecaster --data room.csv --features temp,hum,out_temp \\
          --target temp --window 36 --horizon 6 --time-column date
    """
    progress = RichProgress()
    with user_errors():
        from edgeseq.export import export_forecaster
        from edgeseq.train import ForecasterConfig

        try:
            sizes = tuple(int(u) for u in units.split(","))
        except ValueError:
            sizes = ()
        if len(sizes) != 2 or min(sizes) < 1:
            raise BadInputError(f"--units takes two positive sizes such as 80,100, got {units!r}")
        if not name or "." in name or "/" in name or "\\" in name:
            raise BadInputError(f"--name {name!r}: use a plain file stem such as 'room_temp' (no dots or slashes)")
        config = ForecasterConfig(
            data=data,
            features=names(features),
            target=target.strip(),
            window=window,
            horizon=horizon,
            time_column=time_column,
            time_format=time_format,
            interval=_interval(interval, time_column),
            fill_gaps=fill_gaps,
            group_by=group_by.strip() if group_by else None,
            delimiter=_delimiter(delimiter),
            split=_fractions(split, split_at),
            split_at=_dates(split_at),
            drop_constant=drop_constant,
            units=sizes,
            epochs=epochs,
            patience=patience,
            batch_size=batch_size,
            seed=seed,
        )
        try:
            result = export_forecaster(
                out,
                name=name,
                retrain=True,
                config=config,
                progress=progress,
                sample=f"{name}.test.csv",
                allow_unfused=allow_unfused,
            )
        finally:
            progress.close()
        typer.echo(export_summary(result))

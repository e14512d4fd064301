"""`edgeseq train ...`: train on your own data and export, with the same checks as `edgeseq export`."""

from __future__ import annotations

from pathlib import Path

import typer

from edgeseq.cli_output import EXPORTED, RichProgress, export_summary, names, user_errors
from edgeseq.errors import BadInputError

train_app = typer.Typer(
    help="Train a model on your own data and export it.", no_args_is_help=True, rich_markup_mode=None
)


@train_app.command("forecaster")
def train_forecaster_command(
    data: Path = typer.Option(
        ..., "--data", metavar="FILE", help="A CSV file with a header row (.csv, .csv.gz or .csv.xz)."
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
        None, "--time-column", metavar="NAME", help="A column carried along as time."
    ),
    out: Path = typer.Option(EXPORTED, "--out", metavar="DIR", help="Directory the artifacts are written to."),
    name: str = typer.Option(
        "forecaster", "--name", metavar="NAME", help="Artifact name: <out>/<name>.onnx, .json, .keras."
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

    The data is split by time 70/15/15 into train, validation and test; scaling is fitted on train only;
    the test report compares the model with persistence and ridge regression in the target's units.
    Example: edgeseq train forecaster --data room.csv --features temp,hum,out_temp --target temp
    --window 36 --horizon 6 --time-column date
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
            units=sizes,
            epochs=epochs,
            patience=patience,
            batch_size=batch_size,
            seed=seed,
        )
        try:
            result = export_forecaster(
                out, name=name, retrain=True, config=config, progress=progress, sample=None, allow_unfused=allow_unfused
            )
        finally:
            progress.close()
        typer.echo(export_summary(result))

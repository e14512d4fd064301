"""Seeded, deterministic training: the letter RNN and the LSTM sensor forecaster."""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from edgeseq import frameworks
from edgeseq.data import DEFAULT_SENSOR_DATA, letter_arrays
from edgeseq.data.series import SeriesOptions, SeriesTable, read_series, runner_window_ends
from edgeseq.data.split import DEFAULT_FRACTIONS, PARTS, SplitPlan
from edgeseq.errors import DataError, TrainingError
from edgeseq.models import build_forecaster, build_letter_rnn
from edgeseq.progress import Progress, Silent
from edgeseq_device.forecast import ForecastSpec, fit_scaling
from edgeseq_device.letters import LetterCodec
from edgeseq_device.series import check_time_format

NEAR_CONSTANT = 0.01  # a feature that moves within fewer training windows than this is refused
FLOAT32_RESOLUTION = 1e-6  # a spread below this times a feature's size is rounding noise in float32 (eps 1.2e-7)


@dataclass(frozen=True)
class LetterConfig:
    """The tutorial's settings; these defaults are what `edgeseq export` uses."""

    vocabulary: str = "abcde"
    window: int = 4
    units: int = 3
    epochs: int = 100
    batch_size: int = 32
    learning_rate: float = 0.01
    seed: int = 7

    @property
    def codec(self) -> LetterCodec:
        return LetterCodec(self.vocabulary, self.window)


def seed_everything(seed: int) -> None:
    """Same seed, same machine, same model: Python, numpy and TF seeds plus deterministic TF ops."""
    tf, keras = frameworks.tensorflow()
    keras.backend.clear_session()
    keras.utils.set_random_seed(seed)
    tf.config.experimental.enable_op_determinism()


def _epoch_callback(keras: Any, progress: Progress, epochs: int) -> Any:
    class _Report(keras.callbacks.Callback):
        def on_epoch_end(self, epoch: int, logs: dict[str, float] | None = None) -> None:
            progress.epoch(epoch + 1, epochs, dict(logs or {}))

    return _Report()


def train_letter_rnn(config: LetterConfig = LetterConfig(), progress: Progress = Silent()) -> tuple[Any, dict]:
    """Train the letter RNN; return (model, training record). Raises TrainingError below 100% on the patterns."""
    _, keras = frameworks.tensorflow()
    seed_everything(config.seed)
    x, y = letter_arrays(config.codec)
    model = build_letter_rnn(config.window, len(config.vocabulary), config.units)
    model.compile(
        optimizer=keras.optimizers.Adam(config.learning_rate),
        loss="sparse_categorical_crossentropy",
        metrics=["accuracy"],
    )
    started = time.perf_counter()
    history = model.fit(
        x,
        y,
        epochs=config.epochs,
        batch_size=config.batch_size,
        verbose=0,
        callbacks=[_epoch_callback(keras, progress, config.epochs)],
    )
    seconds = time.perf_counter() - started
    predicted = np.argmax(model(x, training=False).numpy(), axis=1)
    accuracy = float(np.mean(predicted == y))
    if accuracy < 1.0:
        raise TrainingError(
            f"letter RNN reached {accuracy:.0%} on its {len(y)} patterns after {config.epochs} epochs "
            f"(seed {config.seed}); the bar is 100%"
        )
    record = {
        "config": asdict(config),
        "epochs_run": len(history.history["loss"]),
        "final_loss": float(history.history["loss"][-1]),
        "train_accuracy": accuracy,
        "seconds": round(seconds, 2),
    }
    return model, record


@dataclass(frozen=True)
class ForecasterConfig:
    """The default sensor task and the tutorial's training settings; see README 'The default forecast task'
    and 'Training on your own data' (missing values, time, keys and the split)."""

    data: Path = DEFAULT_SENSOR_DATA
    features: tuple[str, ...] = ("T2", "RH_2", "T_out", "RH_out", "Tdewpoint")
    target: str = "T2"
    window: int = 36
    horizon: int = 6
    time_column: str | None = "date"
    time_format: str | None = None  # None: ISO 8601, unix seconds or milliseconds, told by the first time
    interval: float | None = None  # seconds; None: the median step of the training rows
    fill_gaps: int = 0
    group_by: str | None = None
    delimiter: str | None = None  # None: found from the header, as `edgeseq run` finds it
    split: tuple[float, float, float] = DEFAULT_FRACTIONS
    split_at: tuple[str, str] | None = None
    drop_constant: bool = False
    units: tuple[int, int] = (80, 100)
    epochs: int = 40
    patience: int = 5
    batch_size: int = 128
    learning_rate: float = 1e-3
    seed: int = 7

    def to_json(self) -> dict[str, Any]:
        record = asdict(self)
        # The bundled data set by name (it moves with the package); any other file by the path given.
        record["data"] = self.data.name if Path(self.data) == DEFAULT_SENSOR_DATA else str(self.data)
        return record

    @classmethod
    def from_json(cls, record: Mapping[str, Any]) -> ForecasterConfig:
        """A config as a manifest recorded it (before issue 12 the split was train_fraction and
        validation_fraction)."""
        config = dict(record)
        data = config.get("data", DEFAULT_SENSOR_DATA.name)
        config["data"] = DEFAULT_SENSOR_DATA if data == DEFAULT_SENSOR_DATA.name else Path(data)
        if "train_fraction" in config:
            a, b = config.pop("train_fraction"), config.pop("validation_fraction")
            config["split"] = (a, b, 1 - a - b)
        for name in ("features", "units", "split", "split_at"):
            if config.get(name) is not None:
                config[name] = tuple(config[name])
        return cls(**config)


@dataclass(frozen=True)
class ForecastData:
    """The file read as series, the windows of each part (those the runner makes), and the scaling fitted on
    the training windows; `config` is the one the data was prepared with (less any dropped features)."""

    config: ForecasterConfig
    table: SeriesTable
    ends: dict[str, np.ndarray]
    spec: ForecastSpec
    dropped: tuple[tuple[str, str], ...] = ()  # (feature, why) left out by --drop-constant

    def inputs(self, part: str) -> np.ndarray:
        """The network's inputs (scaled windows, float32): what Keras trains on and ridge regresses on."""
        return self.spec.network_inputs(self.table.values, self.ends[part])

    def targets(self, part: str) -> np.ndarray:
        return self.spec.training_target(self.table.values, self.ends[part])

    def last_target(self, part: str) -> np.ndarray:
        return self.table.values[self.ends[part], self.spec.target_index]

    def actual(self, part: str) -> np.ndarray:
        return self.table.values[self.ends[part] + self.spec.horizon, self.spec.target_index]

    def parts(self) -> dict[str, dict[str, Any]]:
        """Per part: rows kept, windows, its first and last file line, keys, and the first and last time of its
        windows' last rows."""
        described = {}
        for index, part in enumerate(PARTS):
            rows = self.table.part == index
            ends = self.ends[part]
            entry: dict[str, Any] = {"rows": int(rows.sum()), "windows": len(ends)}
            # file line numbers: the header's is the preamble's length + 1
            lines = np.flatnonzero(self.table.line_parts == index) + 2 + self.table.header.preamble
            if len(lines):
                entry["lines"] = [int(lines[0]), int(lines[-1])]
            if self.table.keys is not None:
                entry["keys"] = len(set(self.table.keys[rows]))
            if self.table.times is not None and len(ends):
                first, last = self.table.times[ends].min(), self.table.times[ends].max()
                entry["window_ends"] = [_iso(first), _iso(last)]
            described[part] = entry
        return described


def _iso(seconds: float) -> str:
    from datetime import datetime, timedelta, timezone

    moment = datetime(1970, 1, 1, tzinfo=timezone.utc) + timedelta(seconds=float(seconds))  # any year 1 to 9999
    return moment.isoformat().replace("+00:00", "Z")


def _degenerate(values: np.ndarray, ends: np.ndarray, features: tuple[str, ...], window: int) -> dict[str, str]:
    """Features that are constant, move within fewer than NEAR_CONSTANT of the training windows, or move by
    less than float32 can tell apart at their size: scaled by such a tiny spread, any move at run time would
    throw the forecast far off."""
    windows = sliding_window_view(values, window, axis=0)[ends - window + 1]  # [N, F, T]
    moves = np.ptp(windows, axis=2) > 0
    spread = (windows - windows[:, :, -1:]).std(axis=(0, 2)) if len(windows) else np.zeros(len(features))
    found = {}
    for k, name in enumerate(features):
        share = float(moves[:, k].mean()) if len(moves) else 0.0
        size = max(1.0, float(np.median(np.abs(values[ends, k])))) if len(ends) else 1.0
        if share == 0.0:
            found[name] = "constant in the training windows"
        elif share < NEAR_CONSTANT:
            found[name] = f"near-constant: it moves in {share:.2%} of the training windows"
        elif spread[k] < FLOAT32_RESOLUTION * size:
            found[name] = (
                f"near-constant: it moves by {spread[k]:.2g} in its windows, below float32's resolution at its "
                f"size ({size:.3g})"
            )
    return found


def prepare_forecast_data(config: ForecasterConfig) -> ForecastData:
    """Read the file as the runner reads it (gaps, missing values, keys), split it by time, refuse what cannot
    be learnt from, and fit the scaling on the training windows only."""
    features = list(config.features)
    if len(set(features)) != len(features):
        raise DataError(f"features repeat a name: {', '.join(features)}")
    if config.target not in features:
        raise DataError(
            f"target {config.target!r} must also be a feature: the model forecasts its change from its own "
            f"recent values (features: {', '.join(features)})"
        )
    if config.window < 2 or config.horizon < 1:
        raise DataError(f"window must be >= 2 and horizon >= 1 (got {config.window} and {config.horizon})")
    if config.group_by and config.group_by in features:
        raise DataError(f"--group-by {config.group_by!r} is one of --features: the key column must be another")
    if config.group_by and config.group_by == config.time_column:
        raise DataError(f"--group-by {config.group_by!r} is the time column: the key column must be another")
    for given, option in ((config.split_at, "--split-at"), (config.time_format, "--time-format")):
        if given and not config.time_column:
            raise DataError(f"{option} needs a time column (--time-column)")
    if config.time_format is not None:
        try:
            check_time_format(config.time_format)
        except ValueError as exc:
            raise DataError(f"--time-format: {exc}") from None
    options = SeriesOptions(
        time_column=config.time_column,
        time_format=config.time_format,
        interval=config.interval,
        fill_gaps=config.fill_gaps,
        group_by=config.group_by,
        delimiter=config.delimiter,
        split=SplitPlan(tuple(config.split)),
        split_at=tuple(config.split_at) if config.split_at else None,
    )
    table = read_series(config.data, features, config.window, options)
    ends = {part: runner_window_ends(table, part, config.window, config.horizon, config.target) for part in PARTS}
    short = [part for part, e in ends.items() if len(e) == 0]
    if short:
        raise DataError(
            f"{config.data}: the {' and '.join(short)} part{'s get' if len(short) > 1 else ' gets'} no window of "
            f"{config.window} rows with a target {config.horizon} rows on and no gap between "
            f"({len(table.values):,} rows kept of {table.report.lines:,}; windows: "
            f"{', '.join(f'{p} {len(e)}' for p, e in ends.items())}). Each part needs a stretch of at least "
            f"{config.window + config.horizon} rows without a gap"
        )
    degenerate = _degenerate(table.values, ends["train"], tuple(features), config.window)
    if degenerate:
        said = "; ".join(f"{name!r} is {why}" for name, why in degenerate.items())
        if config.target in degenerate or not config.drop_constant:
            hint = "" if config.target in degenerate else ": leave it out of --features, or pass --drop-constant"
            raise DataError(f"{config.data}: {said}{hint}")
        kept = tuple(f for f in features if f not in degenerate)
        data = prepare_forecast_data(replace(config, features=kept, drop_constant=False))
        return replace(data, config=replace(data.config, drop_constant=True), dropped=tuple(degenerate.items()))
    try:
        spec = fit_scaling(
            table.values, ends["train"], features, config.target, config.window, config.horizon, config.time_column
        )
    except ValueError as exc:
        raise DataError(f"{config.data}: {exc}") from None
    return ForecastData(config, table, ends, spec)


def train_forecaster(
    config: ForecasterConfig = ForecasterConfig(), progress: Progress = Silent(), data: ForecastData | None = None
) -> tuple[Any, dict, ForecastData]:
    """Train the forecaster with Adam + MSE and early stopping on validation loss (best weights restored)."""
    _, keras = frameworks.tensorflow()
    data = data or prepare_forecast_data(config)
    config = data.config
    seed_everything(config.seed)
    model = build_forecaster(config.window, len(config.features), config.units)
    model.compile(optimizer=keras.optimizers.Adam(config.learning_rate), loss="mse")
    stop = keras.callbacks.EarlyStopping(monitor="val_loss", patience=config.patience, restore_best_weights=True)
    started = time.perf_counter()
    history = model.fit(
        data.inputs("train"),
        data.targets("train"),
        validation_data=(data.inputs("validation"), data.targets("validation")),
        epochs=config.epochs,
        batch_size=config.batch_size,
        shuffle=True,
        verbose=0,
        callbacks=[stop, _epoch_callback(keras, progress, config.epochs)],
    )
    val_loss = [float(v) for v in history.history["val_loss"]]
    record = {
        "config": config.to_json(),
        "epochs_run": len(val_loss),
        "best_epoch": int(np.argmin(val_loss)) + 1,
        "history": {"loss": [float(v) for v in history.history["loss"]], "val_loss": val_loss},
        "seconds": round(time.perf_counter() - started, 1),
        "windows": {name: len(e) for name, e in data.ends.items()},
    }
    return model, record, data

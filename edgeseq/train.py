"""Seeded, deterministic training: the letter RNN and the LSTM sensor forecaster."""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from edgeseq import frameworks
from edgeseq.data import DEFAULT_SENSOR_DATA, SensorTable, Split, letter_arrays, load_sensor_csv, window_ends
from edgeseq.errors import DataError, TrainingError
from edgeseq.models import build_forecaster, build_letter_rnn
from edgeseq.progress import Progress, Silent
from edgeseq_device.forecast import ForecastSpec, fit_scaling
from edgeseq_device.letters import LetterCodec


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
    """The default sensor task and the tutorial's training settings; see README 'The default forecast task'."""

    data: Path = DEFAULT_SENSOR_DATA
    features: tuple[str, ...] = ("T2", "RH_2", "T_out", "RH_out", "Tdewpoint")
    target: str = "T2"
    window: int = 36
    horizon: int = 6
    time_column: str | None = "date"
    train_fraction: float = 0.70
    validation_fraction: float = 0.15
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


@dataclass(frozen=True)
class ForecastData:
    """A sensor table, its time-ordered split, the window ends of each part, and the scaling fitted on train."""

    table: SensorTable
    split: Split
    ends: dict[str, np.ndarray]
    spec: ForecastSpec

    def inputs(self, part: str) -> np.ndarray:
        return self.spec.model_inputs(self.table.values, self.ends[part])

    def targets(self, part: str) -> np.ndarray:
        return self.spec.training_target(self.table.values, self.ends[part])

    def last_target(self, part: str) -> np.ndarray:
        return self.table.values[self.ends[part], self.spec.target_index]

    def actual(self, part: str) -> np.ndarray:
        return self.table.values[self.ends[part] + self.spec.horizon, self.spec.target_index]


def prepare_forecast_data(config: ForecasterConfig) -> ForecastData:
    """Load the columns, split by time, and fit the scaling on the training windows only."""
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
    table = load_sensor_csv(config.data, features, config.time_column)
    split = Split.by_fractions(len(table.values), config.train_fraction, config.validation_fraction)
    ends = {name: window_ends(part, config.window, config.horizon) for name, part in split.parts().items()}
    short = [name for name, e in ends.items() if len(e) == 0]
    if short:
        raise DataError(
            f"{config.data} has {len(table.values)} rows, too few for a window of {config.window} rows and a "
            f"horizon of {config.horizon}: the {' and '.join(short)} part gets no window (each of train, "
            f"validation and test needs at least {config.window + config.horizon} rows)"
        )
    spec = fit_scaling(
        table.values, ends["train"], features, config.target, config.window, config.horizon, config.time_column
    )
    return ForecastData(table, split, ends, spec)


def train_forecaster(
    config: ForecasterConfig = ForecasterConfig(), progress: Progress = Silent(), data: ForecastData | None = None
) -> tuple[Any, dict, ForecastData]:
    """Train the forecaster with Adam + MSE and early stopping on validation loss (best weights restored)."""
    _, keras = frameworks.tensorflow()
    data = data or prepare_forecast_data(config)
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

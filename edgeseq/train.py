"""Seeded, deterministic training of the letter RNN."""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from edgeseq import frameworks
from edgeseq.data import letter_arrays
from edgeseq.errors import TrainingError
from edgeseq.models import build_letter_rnn
from edgeseq.progress import Progress, Silent
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

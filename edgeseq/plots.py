"""PNG plots of a trained forecaster: loss per epoch, and forecast vs actual vs persistence on test."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_loss(history: dict[str, list[float]], best_epoch: int, path: Path, title: str) -> None:
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(7, 4), dpi=100)
    epochs = np.arange(1, len(history["loss"]) + 1)
    ax.plot(epochs, history["loss"], marker="o", label="training loss")
    ax.plot(epochs, history["val_loss"], marker="o", label="validation loss")
    ax.axvline(best_epoch, color="grey", linestyle="--", label=f"best epoch ({best_epoch}), weights restored")
    ax.set(xlabel="epoch", ylabel="MSE (scaled change over the horizon)", title=title)
    ax.legend()
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def plot_forecast(
    times: list[str] | None,
    actual: np.ndarray,
    model: np.ndarray,
    persistence: np.ndarray,
    path: Path,
    title: str,
    units: str,
) -> None:
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(10, 4), dpi=100)
    x = np.arange(len(actual))
    ax.plot(x, actual, color="black", linewidth=1.5, label="actual")
    ax.plot(x, model, color="tab:blue", linewidth=1.0, label="LSTM forecast")
    ax.plot(x, persistence, color="tab:orange", linewidth=1.0, linestyle="--", label="persistence")
    if times:
        ticks = x[:: max(1, len(x) // 6)]
        ax.set_xticks(ticks, [times[i][:16] for i in ticks], rotation=15, fontsize=8)
    ax.set(ylabel=units, title=title)
    ax.legend()
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)

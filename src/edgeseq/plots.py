"""PNG plots of a trained forecaster: loss per epoch, and forecast vs actual vs persistence on test."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np

# About this many sampling intervals make a forecast readable: steps are visible, yet the shape shows.
TARGET_POINTS = 300
DAY = 86400.0
# Lengths a reader takes in at a glance, per unit; the span is the one nearest TARGET_POINTS intervals.
NATURAL = [
    ("µs", 1e-6, (1, 2, 3, 5, 10, 20, 30, 50, 100, 200, 300, 500)),
    ("ms", 1e-3, (1, 2, 3, 5, 10, 20, 30, 50)),
    ("s", 1.0, (0.1, 0.2, 0.3, 0.5, 1, 2, 3, 5, 10, 15, 20, 30)),
    ("min", 60.0, (1, 2, 3, 5, 10, 15, 20, 30)),
    ("h", 3600.0, (1, 2, 3, 6, 12)),
    ("day", DAY, (1, 2, 3, 4, 5)),
    ("week", 7 * DAY, (1, 2, 3)),
    ("month", 30.4375 * DAY, (1, 2, 3, 6)),
    ("year", 365.25 * DAY, (1, 2, 3, 5, 10, 20, 50, 100)),
]
SPOKEN = {"day", "week", "month", "year"}  # written out, so they take a plural


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def choose_span(interval: float | None, n_points: int) -> tuple[int, str]:
    """How many points from the start to plot, and that span in words ("first 2 days", "all 40 points")."""
    if interval is None or interval <= 0:
        points, noun = TARGET_POINTS, "rows"
        words = f"first {points} rows"
    else:
        target = TARGET_POINTS * interval
        candidates = [(unit, size, count) for unit, size, counts in NATURAL for count in counts]
        unit, size, count = min(candidates, key=lambda c: abs(math.log(c[1] * c[2] / target)))
        points, noun = max(1, round(size * count / interval)), "points"
        words = f"first {count:g} {unit}{'s' if unit in SPOKEN and count != 1 else ''}"
    if n_points < points:
        return n_points, f"all {n_points} {noun}"
    return points, words


def loss_figure(history: dict[str, list[float]], best_epoch: int, title: str) -> Any:
    from matplotlib.ticker import MaxNLocator

    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(7, 4), dpi=100)
    epochs = np.arange(1, len(history["loss"]) + 1)
    ax.plot(epochs, history["loss"], marker="o", label="training loss")
    ax.plot(epochs, history["val_loss"], marker="o", label="validation loss")
    ax.axvline(best_epoch, color="grey", linestyle="--", label=f"best epoch ({best_epoch}), weights restored")
    # Half an epoch each side keeps a lone epoch from a view 0.1 wide; min_n_ticks=1 stops MaxNLocator falling
    # back to fractional ticks when the view holds fewer than two whole epochs.
    ax.set_xlim(0.5, len(epochs) + 0.5)
    ax.xaxis.set_major_locator(MaxNLocator(integer=True, min_n_ticks=1))
    ax.set(xlabel="epoch", ylabel="MSE (scaled change over the horizon)", title=title)
    ax.legend()
    ax.grid(alpha=0.3)
    fig.tight_layout()
    return fig


def plot_loss(history: dict[str, list[float]], best_epoch: int, path: Path, title: str) -> None:
    _save(loss_figure(history, best_epoch, title), path)


def forecast_figure(
    times: np.ndarray | None,
    actual: np.ndarray,
    model: np.ndarray,
    persistence: np.ndarray,
    title: str,
    units: str,
    interval: float | None,
) -> Any:
    """The forecast figure for `plot_forecast`; returned so its axes can be inspected."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(10, 4), dpi=100)
    ax.set(ylabel=units, title=title)
    points, words = choose_span(interval, len(actual))
    if times is not None and interval and interval > 0 and points:
        times = np.asarray(times, dtype=np.float64)[:points]
        # Gaps in the data shorten the count, never stretch the span past what `words` says.
        points = int(np.count_nonzero(times < times[0] + (points - 0.5) * interval))
    if points == 0:
        ax.text(0.5, 0.5, "no test windows", ha="center", va="center", transform=ax.transAxes, fontsize=14)
        ax.set(xticks=[], yticks=[])
        fig.tight_layout()
        return fig
    series = [np.asarray(a, dtype=np.float64)[:points] for a in (actual, model, persistence)]
    if times is None:
        x = np.arange(points, dtype=np.float64)
        ax.set_xlabel(f"row ({words} of the test split)")
    else:
        x = _date_axis(ax, times[:points])
        if interval and interval > 0:
            # A NaN after each gap keeps matplotlib from drawing a line across the missing stretch.
            gaps = np.flatnonzero(np.diff(times[:points]) > 1.5 * interval) + 1
            x, *series = (np.insert(a, gaps, np.nan) for a in (x, *series))
        ax.set_xlabel(f"time, UTC ({words} of the test split)")
    ax.plot(x, series[0], color="black", linewidth=1.5, label="actual")
    ax.plot(x, series[1], color="tab:blue", linewidth=1.0, label="LSTM forecast")
    ax.plot(x, series[2], color="tab:orange", linewidth=1.0, linestyle="--", label="persistence")
    ax.legend()
    ax.grid(alpha=0.3)
    fig.tight_layout()
    return fig


def plot_forecast(
    times: np.ndarray | None,
    actual: np.ndarray,
    model: np.ndarray,
    persistence: np.ndarray,
    path: Path,
    title: str,
    units: str,
    interval: float | None,
) -> None:
    _save(forecast_figure(times, actual, model, persistence, title, units, interval), path)


def _date_axis(ax: Any, unix_seconds: np.ndarray) -> np.ndarray:
    """Sets readable UTC date ticks on `ax`, from milliseconds to years, and returns the x values to plot."""
    import datetime as dt

    import matplotlib.dates as mdates

    locator = mdates.AutoDateLocator(tz=dt.timezone.utc)
    ax.xaxis.set_major_locator(locator)
    ax.xaxis.set_major_formatter(mdates.ConciseDateFormatter(locator, tz=dt.timezone.utc))
    # Whole microseconds: exact in datetime64 and the finest step matplotlib's date locators place ticks at.
    return mdates.date2num(np.round(unix_seconds * 1e6).astype("datetime64[us]"))


def _save(fig: Any, path: Path) -> None:
    fig.savefig(path)
    _pyplot().close(fig)

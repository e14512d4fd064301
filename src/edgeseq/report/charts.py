"""The report's plots as PNG bytes (matplotlib, Agg): forecast, actual and persistence over time; the error
against its rolling RMSE; the distribution of errors. Each says what it thinned."""

from __future__ import annotations

import io
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from edgeseq.report.figures import Thinned, rolling_rmse, thin
from edgeseq.report.records import NO_KEY

FORECAST, ACTUAL, PERSISTENCE, STREAM = "tab:blue", "black", "tab:orange", "#b0b0b0"
WIDTH, PANEL_HEIGHT, DPI = 11.0, 2.8, 100
BINS = 80
FEW = 100  # a line of at most this many points marks each
TAILS = 0.5  # percent of errors at each end that the histogram's range leaves out (counted in its end bins)


@dataclass(frozen=True)
class Series:
    """One key's score records, in file order, as the plots take them; `stream` is the raw target (x, value)."""

    key: str
    x: np.ndarray
    prediction: np.ndarray
    actual: np.ndarray
    persistence: np.ndarray
    stream: tuple[np.ndarray, np.ndarray] | None = None


@dataclass(frozen=True)
class Chart:
    name: str  # the file name, e.g. forecast.png
    title: str
    png: bytes
    notes: tuple[str, ...]  # what was thinned or left out, as the page says it


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _png(fig: Any) -> bytes:
    """The figure as a PNG of 256 colours: a plot has few, and the page half the size of matplotlib's RGBA."""
    from PIL import Image  # matplotlib's own dependency

    drawn = io.BytesIO()
    fig.savefig(drawn, format="png", dpi=DPI)
    _pyplot().close(fig)
    drawn.seek(0)
    with Image.open(drawn) as image:
        palette = image.convert("RGB").quantize(colors=256, method=Image.Quantize.MEDIANCUT)
    buffer = io.BytesIO()
    palette.save(buffer, format="PNG", optimize=True)
    return buffer.getvalue()


def _axis(values: np.ndarray, time_axis: bool) -> np.ndarray:
    # whole microseconds: datetime64 plots as dates with matplotlib's own locators
    return np.round(values * 1e6).astype("datetime64[us]") if time_axis else values


def _panels(count: int, title: str) -> tuple[Any, list[Any]]:
    plt = _pyplot()
    fig, axes = plt.subplots(count, 1, figsize=(WIDTH, 0.9 + PANEL_HEIGHT * count), squeeze=False, layout="constrained")
    fig.suptitle(title)
    return fig, [row[0] for row in axes]


def _label(series: Series) -> str:
    if series.key == NO_KEY:
        return ""
    key = series.key if len(series.key) <= 60 else series.key[:59] + "…"
    return "key " + key.replace("$", r"\$")  # a $ would start matplotlib's mathtext


def _each_line(series: Series) -> str:
    return f"{_label(series)}, each line" if series.key != NO_KEY else "each line"


def _gap_breaks(x: np.ndarray, kept: np.ndarray) -> np.ndarray:
    """Where a NaN goes among the kept points so that no line is drawn across a gap: a step in x over 1.5 times
    the median step (a stretch with no score records: actuals that never came, a pause in the stream)."""
    steps = np.diff(x)
    if len(steps) < 2:
        return np.empty(0, dtype=np.intp)
    positive = steps[steps > 0]
    if len(positive) == 0:
        return np.empty(0, dtype=np.intp)
    gaps = np.concatenate([[0], np.cumsum(steps > 1.5 * np.median(positive))])  # gaps before each point
    return np.flatnonzero(np.diff(gaps[kept]) > 0) + 1


def _plot(ax: Any, x: np.ndarray, y: np.ndarray, max_points: int, time_axis: bool, **style: Any) -> Thinned:
    kept = thin(y, max_points)
    breaks = _gap_breaks(x, kept.indices)
    xs = np.insert(x[kept.indices], breaks, np.nan)
    ys = np.insert(y[kept.indices], breaks, np.nan)
    if len(kept.indices) <= FEW:  # a few points: each shown, not only the segments between them
        style = {"marker": "o", "markersize": 3, **style}
    ax.plot(_axis(xs, time_axis), ys, **style)
    return kept


def _time_label(ax: Any, time_axis: bool) -> None:
    ax.set_xlabel("target time" if time_axis else "row of the actual")
    ax.grid(alpha=0.3)


def forecast_chart(
    series: Sequence[Series],
    time_axis: bool,
    max_points: int,
    units: str = "",
    name: str = "forecast.png",
    title: str = "Forecast, actual and persistence over time",
) -> Chart:
    """Forecast, actual and persistence over the target time, one panel per key."""
    fig, axes = _panels(len(series), title)
    notes = []
    for ax, one in zip(axes, series, strict=True):
        raw = ""
        if one.stream is not None:
            kept = _plot(ax, *one.stream, max_points, time_axis, color=STREAM, lw=3, label="stream (raw target)")
            raw = f"; the stream's raw target: {kept.words()}"
        _plot(ax, one.x, one.persistence, max_points, time_axis, color=PERSISTENCE, lw=1, label="persistence")
        _plot(ax, one.x, one.prediction, max_points, time_axis, color=FORECAST, lw=1.2, label="forecast")
        kept = _plot(ax, one.x, one.actual, max_points, time_axis, color=ACTUAL, lw=1, label="actual")
        notes.append(f"{_each_line(one)}: {kept.words()}{raw}")
        ax.set_title(_label(one), loc="left", fontsize=10)
        ax.set_ylabel(units or "value")
        _time_label(ax, time_axis)
        ax.legend(loc="upper right", fontsize=8, ncols=4)
    return Chart(name, title, _png(fig), tuple(notes))


def recent(series: Series, count: int) -> Series:
    """The last `count` score records of a key, and its stream from the first of them on."""
    x = series.x[-count:]
    stream = series.stream
    if stream is not None and len(x):
        later = stream[0] >= x[0]
        stream = (stream[0][later], stream[1][later])
    return Series(
        series.key, x, series.prediction[-count:], series.actual[-count:], series.persistence[-count:], stream
    )


def error_chart(series: Sequence[Series], time_axis: bool, max_points: int, window: int) -> Chart:
    """The model's error (prediction - actual) against the rolling RMSE of the model and of persistence."""
    fig, axes = _panels(len(series), f"Error and rolling RMSE over the last {window:,} scored forecasts")
    notes = []
    for ax, one in zip(axes, series, strict=True):
        errors = one.prediction - one.actual
        ax.axhline(0.0, color="grey", lw=0.8)
        kept = _plot(ax, one.x, errors, max_points, time_axis, color=FORECAST, lw=0.6, alpha=0.35, label="error")
        _plot(
            ax,
            one.x,
            rolling_rmse(one.persistence - one.actual, window),
            max_points,
            time_axis,
            color=PERSISTENCE,
            lw=1.8,
            label="rolling RMSE, persistence",
        )
        _plot(
            ax,
            one.x,
            rolling_rmse(errors, window),
            max_points,
            time_axis,
            color=FORECAST,
            lw=1.8,
            label="rolling RMSE, model",
        )
        notes.append(f"{_each_line(one)}: {kept.words()}")
        ax.set_title(_label(one), loc="left", fontsize=10)
        ax.set_ylabel("forecast - actual")
        _time_label(ax, time_axis)
        ax.legend(loc="upper right", fontsize=8, ncols=3)
    return Chart("error.png", "Error against the rolling RMSE", _png(fig), tuple(notes))


def histogram_chart(errors: np.ndarray, persistence_errors: np.ndarray) -> Chart:
    """The distribution of every score record's error, the model's and persistence's, over the same bins."""
    both = np.concatenate([errors, persistence_errors[~np.isnan(persistence_errors)]])
    low, high = np.percentile(both, [TAILS, 100 - TAILS])
    if not high > low:
        low, high = low - 0.5, high + 0.5
    outside = int(((both < low) | (both > high)).sum())
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(WIDTH, 4.2), layout="constrained")
    edges = np.linspace(low, high, BINS + 1)
    for values, colour, label in (
        (persistence_errors[~np.isnan(persistence_errors)], PERSISTENCE, "persistence"),
        (errors, FORECAST, "model"),
    ):
        if len(values):
            clipped = np.clip(values, low, high)
            ax.hist(clipped, bins=edges, color=colour, alpha=0.45, label=f"{label} ({len(values):,})")
            ax.hist(clipped, bins=edges, color=colour, histtype="step", lw=1.5)
    ax.axvline(0.0, color="grey", lw=0.8)
    ax.set(xlabel="forecast - actual", ylabel="score records", title="Distribution of errors, all keys")
    ax.grid(alpha=0.3)
    ax.legend()
    notes = [f"all {len(errors):,} score records"]
    if outside:
        notes.append(
            f"{outside:,} errors beyond the {TAILS:g}th and {100 - TAILS:g}th percentiles are counted in the end bins"
        )
    return Chart("errors.png", "Distribution of errors", _png(fig), tuple(notes))

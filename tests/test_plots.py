"""Plots fit the data: spans in the data's own time units, readable ticks, gaps left open, integer epochs."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from edgeseq.plots import choose_span, forecast_figure, loss_figure, plot_forecast, plot_loss
from tests.helpers import assert_drawn_png

START = 1_700_000_000.0  # 2023-11-14 22:13:20 UTC


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    import matplotlib.pyplot as plt

    plt.close("all")


@pytest.mark.parametrize(
    ("interval", "points", "words"),
    [
        (1e-3, 300, "first 0.3 s"),
        (1 / 64, 320, "first 5 s"),
        (600.0, 288, "first 2 days"),
        (3600.0, 336, "first 2 weeks"),
        (86400.0, 365, "first 1 year"),
    ],
)
def test_span_is_a_natural_length_in_the_data_units(interval: float, points: int, words: str) -> None:
    assert choose_span(interval, 100_000) == (points, words)


def test_span_never_asks_for_more_points_than_there_are() -> None:
    assert choose_span(600.0, 100) == (100, "all 100 points")
    assert choose_span(None, 50) == (50, "all 50 rows")
    assert choose_span(None, 1000) == (300, "first 300 rows")
    assert choose_span(600.0, 0) == (0, "all 0 points")


def _series(n: int, interval: float, start: float = START) -> tuple[np.ndarray, np.ndarray]:
    return start + np.arange(n) * interval, np.sin(np.arange(n) / 7.0)


def _visible_tick_labels(fig) -> list[str]:
    fig.canvas.draw()
    ax = fig.axes[0]
    lo, hi = ax.get_xlim()
    return [t.label1.get_text() for t in ax.xaxis.get_major_ticks() if lo <= t.get_loc() <= hi]


@pytest.mark.parametrize(("interval", "start"), [(1e-3, START), (1e-3, START + 0.0005), (1 / 64, START + 59.5)])
def test_fast_data_gets_distinct_time_ticks(interval: float, start: float) -> None:
    times, y = _series(5000, interval, start)
    fig = forecast_figure(times, y, y + 0.1, y - 0.1, "fast", "g", interval)
    labels = _visible_tick_labels(fig)
    assert len(labels) >= 3, labels
    assert len(set(labels)) == len(labels), labels
    assert "of the test split" in fig.axes[0].get_xlabel()


def test_plotted_span_matches_the_words() -> None:
    times, y = _series(5000, 600.0)
    fig = forecast_figure(times, y, y, y, "10-min", "kW", 600.0)
    actual = fig.axes[0].lines[0]
    assert len(actual.get_xdata()) == 288
    assert "first 2 days" in fig.axes[0].get_xlabel()


def test_a_gap_breaks_the_line() -> None:
    times, y = _series(400, 60.0)  # minute data: the span is 6 h, 360 points
    times[200:] += 3600.0  # an hour missing after row 199
    fig = forecast_figure(times, y, y, y, "gappy", "kW", 60.0)
    for line in fig.axes[0].lines:
        xs, ys = (np.asarray(v, dtype=float) for v in line.get_data())
        assert np.flatnonzero(np.isnan(ys)).tolist() == [200]
        assert np.flatnonzero(np.isnan(xs)).tolist() == [200]
        # The span is measured in time, so the missing hour leaves fewer points rather than a longer span.
        assert len(ys) == 300 + 1


def test_without_times_the_axis_is_rows() -> None:
    y = np.arange(1000, dtype=float)
    fig = forecast_figure(None, y, y, y, "no clock", "kW", None)
    assert fig.axes[0].lines[0].get_xdata().tolist() == list(range(300))
    assert fig.axes[0].get_xlabel() == "row (first 300 rows of the test split)"


def test_empty_test_split_says_so(tmp_path: Path) -> None:
    empty = np.array([])
    fig = forecast_figure(empty, empty, empty, empty, "empty", "kW", 600.0)
    assert [t.get_text() for t in fig.axes[0].texts] == ["no test windows"]
    path = tmp_path / "empty.png"
    plot_forecast(None, empty, empty, empty, path, "empty", "kW", None)
    assert_drawn_png(path, (1000, 400))


def _spans(low: float, high: float, limits: tuple[float, float], share: float) -> bool:
    """The data [low, high] lies inside the axis' limits and fills at least `share` of them."""
    return limits[0] <= low <= high <= limits[1] and high - low >= share * (limits[1] - limits[0])


@pytest.mark.parametrize("interval", [1e-3, 1 / 64, 600.0, 3600.0, 86400.0])
def test_forecast_png_is_written_with_its_three_lines_and_axes_that_span_them(tmp_path: Path, interval: float) -> None:
    times, y = _series(1000, interval)
    series = (y, y + 0.5, y - 0.5)  # actual, LSTM, persistence: apart, so each line shows
    path = tmp_path / "forecast.png"
    plot_forecast(times, *series, path, "title", "kW", interval)
    assert_drawn_png(path, (1000, 400), ("black", "tab:blue", "tab:orange"))
    ax = forecast_figure(times, *series, "title", "kW", interval).axes[0]
    assert [line.get_color() for line in ax.lines] == ["black", "tab:blue", "tab:orange"]
    for line, expected in zip(ax.lines, series, strict=True):
        plotted = np.asarray(line.get_ydata(), dtype=float)
        assert len(plotted) >= 100 and plotted.tolist() == expected[: len(plotted)].tolist()  # the first points
    xs = np.concatenate([np.asarray(line.get_xdata(), dtype=float) for line in ax.lines])
    ys = np.concatenate([np.asarray(line.get_ydata(), dtype=float) for line in ax.lines])
    assert _spans(xs.min(), xs.max(), ax.get_xlim(), 0.9), (xs.min(), xs.max(), ax.get_xlim())
    assert _spans(ys.min(), ys.max(), ax.get_ylim(), 0.8), (ys.min(), ys.max(), ax.get_ylim())


@pytest.mark.parametrize("epochs", [1, 2, 3, 40])
def test_loss_plot_ticks_are_whole_epochs(tmp_path: Path, epochs: int) -> None:
    history = {"loss": list(np.linspace(1, 0.1, epochs)), "val_loss": list(np.linspace(1.1, 0.2, epochs))}
    fig = loss_figure(history, epochs, "loss")
    labels = _visible_tick_labels(fig)
    assert labels and all(label.isdigit() for label in labels), labels
    ax = fig.axes[0]
    losses = history["loss"] + history["val_loss"]
    assert _spans(1, epochs, ax.get_xlim(), 0.0) and _spans(min(losses), max(losses), ax.get_ylim(), 0.8)
    path = tmp_path / "loss.png"
    plot_loss(history, epochs, path, "loss")
    assert_drawn_png(path, (700, 400), ("tab:blue", "tab:orange"))

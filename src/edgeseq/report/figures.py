"""The numbers of a report: RMSE, MAE and bias of the model and of persistence, skill, rolling RMSE, and the
points a plot keeps of a long series. Computed on every score record; only plots are thinned."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from edgeseq.report.records import NO_KEY, Scores

ALL_KEYS = "all keys"


@dataclass(frozen=True)
class Figures:
    """One row of the table: a key's score records (or all of them)."""

    key: str
    count: int
    rmse: float
    mae: float
    bias: float  # mean of prediction - actual: above zero, the model forecasts too high
    persistence_count: int  # records that carry a persistence forecast
    persistence_rmse: float
    persistence_mae: float
    persistence_bias: float

    @property
    def skill(self) -> float:
        """1 - RMSE_model / RMSE_persistence: 0 is no better than persistence, 1 is perfect, below 0 is worse.
        NaN when persistence has no figures or a RMSE of 0."""
        if not self.persistence_rmse > 0:  # also NaN
            return math.nan
        return 1.0 - self.rmse / self.persistence_rmse


def _rmse_mae_bias(errors: np.ndarray) -> tuple[float, float, float]:
    if len(errors) == 0:
        return math.nan, math.nan, math.nan
    with np.errstate(over="ignore", invalid="ignore"):  # errors near 1e308 square to inf, which the table shows
        return float(np.sqrt(np.mean(errors * errors))), float(np.mean(np.abs(errors))), float(np.mean(errors))


def figures_of(label: str, prediction: np.ndarray, actual: np.ndarray, persistence: np.ndarray) -> Figures:
    errors = prediction - actual
    known = ~np.isnan(persistence)
    persistence_errors = persistence[known] - actual[known]
    return Figures(label, len(errors), *_rmse_mae_bias(errors), int(known.sum()), *_rmse_mae_bias(persistence_errors))


def table(scores: Scores) -> list[Figures]:
    """Figures per key, in order of first appearance, then over all keys (the one row of a stream without keys)."""
    rows = []
    if scores.keys != (NO_KEY,):
        order = np.argsort(scores.key, kind="stable")
        bounds = np.searchsorted(scores.key[order], np.arange(len(scores.keys) + 1))
        for k, name in enumerate(scores.keys):
            chosen = order[bounds[k] : bounds[k + 1]]
            rows.append(figures_of(name, scores.prediction[chosen], scores.actual[chosen], scores.persistence[chosen]))
    rows.append(figures_of(ALL_KEYS, scores.prediction, scores.actual, scores.persistence))
    return rows


def rolling_rmse(errors: np.ndarray, window: int) -> np.ndarray:
    """RMSE over the last `window` errors at each point (over all of them while there are fewer); NaN errors
    (no persistence forecast) count as absent."""
    present = ~np.isnan(errors)
    with np.errstate(over="ignore", invalid="ignore"):
        squares = np.concatenate([[0.0], np.cumsum(np.where(present, errors * errors, 0.0))])
    counts = np.concatenate([[0], np.cumsum(present)])
    end = np.arange(1, len(errors) + 1)
    start = np.maximum(end - window, 0)
    n = counts[end] - counts[start]
    with np.errstate(invalid="ignore", divide="ignore"):
        # a float64 cumulative sum of squares can come out a hair below zero after subtraction
        return np.sqrt(np.maximum(squares[end] - squares[start], 0.0) / n)


@dataclass(frozen=True)
class Thinned:
    """The indices a plot keeps of a series of `total` points, and how it chose them."""

    indices: np.ndarray
    total: int
    run: int  # points per run; 1: every point kept

    def words(self) -> str:
        """What a reader is told: every point, or how many of how many (two a run; a run whose lowest and highest
        are the same point draws one, the same picture)."""
        if self.run <= 1:
            return f"all {self.total:,} points plotted"
        plotted = 2 * math.ceil(self.total / self.run)
        return f"plotted {plotted:,} of {self.total:,} points, the lowest and highest of each run of {self.run:,}"


def thin(values: np.ndarray, max_points: int) -> Thinned:
    """At most `max_points` indices of `values`: every index when it has no more, else the lowest and the
    highest value of each run of consecutive points, in order, so peaks and dips stay on the plot (a min/max
    envelope). NaN is never chosen over a number."""
    total = len(values)
    if total <= max_points:
        return Thinned(np.arange(total), total, 1)
    runs = max(1, max_points // 2)
    run = math.ceil(total / runs)
    padded = np.full(runs * run, np.nan)
    padded[:total] = values
    blocks = padded.reshape(runs, run)
    lows = np.argmin(np.where(np.isnan(blocks), np.inf, blocks), axis=1)
    highs = np.argmax(np.where(np.isnan(blocks), -np.inf, blocks), axis=1)
    base = np.arange(runs) * run
    pairs = np.sort(np.stack([base + lows, base + highs], axis=1), axis=1).ravel()
    keep = np.unique(pairs[pairs < total])  # a run of one point, or a flat one, gives one index
    return Thinned(keep, total, run)

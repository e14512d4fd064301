"""Honest evaluation of a forecaster on the test split, in the target's units, next to two baselines."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from edgeseq.train import ForecastData

RIDGE_ALPHAS = (1e-2, 1e-1, 1.0, 10.0, 100.0, 1e3, 1e4)


def rmse(predicted: np.ndarray, actual: np.ndarray) -> float:
    return float(np.sqrt(np.mean((np.asarray(predicted) - np.asarray(actual)) ** 2)))


def mae(predicted: np.ndarray, actual: np.ndarray) -> float:
    return float(np.mean(np.abs(np.asarray(predicted) - np.asarray(actual))))


def persistence(data: ForecastData, part: str) -> np.ndarray:
    """The trivial forecast: the target's last observed value."""
    return data.last_target(part)


def _design(data: ForecastData, part: str) -> np.ndarray:
    x = data.inputs(part).reshape(len(data.ends[part]), -1).astype(np.float64)
    return np.hstack([x, np.ones((len(x), 1))])


def ridge(data: ForecastData, alphas: Sequence[float] = RIDGE_ALPHAS) -> tuple[dict[str, Any], np.ndarray]:
    """Ridge regression on the flattened, scaled window (same inputs and target as the model).

    Fitted on train by least squares; alpha chosen on validation RMSE; never sees the test part.
    Returns (description, test forecasts in target units).
    """
    a, b = _design(data, "train"), data.targets("train").astype(np.float64)
    gram, rhs = a.T @ a, a.T @ b
    best: tuple[float, float, np.ndarray] | None = None
    for alpha in alphas:
        penalty = alpha * np.eye(len(gram))
        penalty[-1, -1] = 0.0  # the intercept is not shrunk
        weights = np.linalg.solve(gram + penalty, rhs)
        forecast = data.spec.to_target_units(_design(data, "validation") @ weights, data.last_target("validation"))
        score = rmse(forecast, data.actual("validation"))
        if best is None or score < best[0]:
            best = (score, alpha, weights)
    assert best is not None
    score, alpha, weights = best
    test = data.spec.to_target_units(_design(data, "test") @ weights, data.last_target("test"))
    return {"alpha": alpha, "validation_rmse": score}, test


def score_on_test(model_forecast: np.ndarray, data: ForecastData) -> dict[str, Any]:
    """RMSE and MAE on the test windows for the model, persistence and ridge, and the ratios between them."""
    actual = data.actual("test")
    ridge_info, ridge_forecast = ridge(data)
    rows = {
        "model": model_forecast,
        "persistence": persistence(data, "test"),
        "ridge": ridge_forecast,
    }
    metrics: dict[str, Any] = {
        "part": "test",
        "windows": len(actual),
        "windows_are": "those edgeseq run makes on the test period (stride 1, none spans a gap) with a known target",
        "units": data.spec.target,
        **{name: {"rmse": rmse(p, actual), "mae": mae(p, actual)} for name, p in rows.items()},
    }
    metrics["ridge"].update(ridge_info)
    metrics["rmse_ratio_to_persistence"] = metrics["model"]["rmse"] / metrics["persistence"]["rmse"]
    metrics["rmse_ratio_to_ridge"] = metrics["model"]["rmse"] / metrics["ridge"]["rmse"]
    metrics["verdict"] = verdict(metrics)
    return metrics


def verdict(metrics: dict[str, Any]) -> str:
    """One plain sentence: does the LSTM beat ridge and persistence on the test windows?"""
    to_ridge, to_persistence = metrics["rmse_ratio_to_ridge"], metrics["rmse_ratio_to_persistence"]
    if to_ridge >= 1:
        return (
            f"the LSTM does not beat ridge regression: its test RMSE is {to_ridge:.2f}x ridge's "
            f"({to_persistence:.2f}x persistence); ridge on the same windows would serve better"
        )
    if to_persistence >= 1:
        return f"the LSTM does not beat persistence: its test RMSE is {to_persistence:.2f}x persistence's"
    return f"the LSTM beats ridge ({to_ridge:.2f}x its RMSE) and persistence ({to_persistence:.2f}x)"

"""A forecaster scored by its own stream: each forecast paired once with the reading it forecast, as it arrives.

A forecast made at a series' position p (series.Series.position: its grid slot on the time grid, else its row
count) in segment s is for position p + H of the same segment. When that series pushes a reading at p + H, still
in segment s, the two are paired: the forecast, the actual (the target's value as read, never a filled one), the
error, and persistence's forecast for the same target (the target's value in the window's last row). A forecast
whose actual cannot come (a gap, a filled value, the position passed) is counted as missing, never guessed.
These are the windows and targets evaluation uses for the manifest's metrics (`edgeseq.data.series._ends`), so
the RMSE over a test period's scores is the manifest's test RMSE.

Memory is bounded: a series holds at most H pending forecasts at stride 1 (the front is settled at every
reading), the rolling figures are N errors a series, and per-series figures are kept for at most
`ScoreOptions.max_keys` keys (the overall figures count every key).
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass

__all__ = ["Rolling", "ScoreOptions", "Scorer"]


@dataclass(frozen=True)
class ScoreOptions:
    """`edgeseq run --score`'s settings; the defaults are the documented ones."""

    # N and M: on the shipped forecaster's own test period (exported/sensor.csv, 2,920 scored) N = 144 and M = 36 or 72
    # warned of drift 4 times, the model losing to persistence over some single days; N = 288 warned 0 times with M
    # = 36, 72 or 144 (`edgeseq run --stream exported/sensor.csv --score --score-window N --drift-after M`)
    rolling: int = 288  # N: the rolling figures cover the last N scored forecasts (two days of 10-minute readings)
    drift_factor: float = 2.0  # k: drift when the rolling RMSE exceeds k x the manifest's test RMSE ...
    drift_after: int = 36  # M: ... or persistence's rolling RMSE, for M scored forecasts in a row
    max_keys: int = 1000  # series with figures of their own; the overall figures count every series

    def __post_init__(self) -> None:
        if self.rolling < 1 or self.drift_after < 1 or self.max_keys < 0:
            raise ValueError("the rolling window and the drift run must be at least 1, the key cap at least 0")
        if not (math.isfinite(self.drift_factor) and self.drift_factor > 0):
            raise ValueError(f"the drift factor must be a positive number, got {self.drift_factor!r}")


class Rolling:
    """The last N scored forecasts' errors, the model's and persistence's, as running sums; and since the start."""

    __slots__ = ("_errors", "count", "drifting", "in_a_row", "sums", "totals")

    def __init__(self, size: int) -> None:
        self._errors: deque[tuple[float, float]] = deque(maxlen=size)
        self.sums = [0.0, 0.0, 0.0, 0.0]  # over the window: model sq, persistence sq, model abs, persistence abs
        self.totals = [0.0, 0.0, 0.0, 0.0]  # the same since the start
        self.count = 0  # scored since the start
        self.in_a_row = 0  # scored forecasts in a row over the drift bar
        self.drifting = False

    def add(self, error: float, persistence_error: float) -> None:
        errors, sums = self._errors, self.sums
        if len(errors) == errors.maxlen:
            old, old_p = errors[0]
            sums[0] -= old * old
            sums[1] -= old_p * old_p
            sums[2] -= abs(old)
            sums[3] -= abs(old_p)
        errors.append((error, persistence_error))
        parts = (error * error, persistence_error * persistence_error, abs(error), abs(persistence_error))
        for i, part in enumerate(parts):
            sums[i] += part
            self.totals[i] += part
        self.count += 1
        if self.count % 4096 == 0:  # running sums gather rounding: resum the window now and then
            self._resum()

    def _resum(self) -> None:
        errors = self._errors
        self.sums = [
            math.fsum(e * e for e, _ in errors),
            math.fsum(p * p for _, p in errors),
            math.fsum(abs(e) for e, _ in errors),
            math.fsum(abs(p) for _, p in errors),
        ]

    @property
    def full(self) -> bool:
        return len(self._errors) == self._errors.maxlen

    def rolling(self) -> tuple[float, float, float, float, int]:
        """RMSE and MAE of the model and of persistence over the window, and how many it holds (NaN for none)."""
        n = len(self._errors)
        if not n:
            return math.nan, math.nan, math.nan, math.nan, 0
        sq, sq_p, ab, ab_p = (max(v, 0.0) for v in self.sums)  # a running sum may dip a hair below 0
        return math.sqrt(sq / n), math.sqrt(sq_p / n), ab / n, ab_p / n, n

    def overall(self) -> tuple[float, float, float, float, int]:
        """The same since the start."""
        n = self.count
        if not n:
            return math.nan, math.nan, math.nan, math.nan, 0
        sq, sq_p, ab, ab_p = self.totals
        return math.sqrt(sq / n), math.sqrt(sq_p / n), ab / n, ab_p / n, n


class Scorer:
    """Pending forecasts per series, paired with their actuals as they arrive; rolling figures and drift."""

    def __init__(self, horizon: int, options: ScoreOptions = ScoreOptions(), reference_rmse: float | None = None):
        self.horizon, self.options, self.reference_rmse = horizon, options, reference_rmse
        self.pending: dict[str | None, deque[tuple[int, int, float, float]]] = {}
        self.all = Rolling(options.rolling)
        self.keys: dict[str | None, Rolling] = {}
        self.missing = 0  # forecasts whose actual never came: a gap, a filled value, a slot passed
        self.uncapped_keys = 0  # series scored without figures of their own (over max_keys)
        self.warnings: list[str] = []  # drift episodes begun, for the runner to say

    def forecast(self, key: str | None, position: int, segment: int, prediction: float, persistence: float) -> None:
        """A forecast made at `position` of a series' `segment`: pending until the reading H positions on."""
        queue = self.pending.get(key)
        if queue is None:
            queue = self.pending[key] = deque()
        queue.append((position + self.horizon, segment, prediction, persistence))

    def actual(
        self, key: str | None, position: int, segment: int, value: float, observed: bool
    ) -> tuple[float, float] | None:
        """A reading pushed at `position` (`observed`: its target read, not filled): (prediction, persistence) of
        the forecast it settles, or None; forecasts it passes are counted as missing."""
        queue = self.pending.get(key)
        if not queue:
            return None
        while queue and (queue[0][1] != segment or queue[0][0] < position):
            queue.popleft()
            self.missing += 1
        if not queue or queue[0][0] != position:
            return None
        _, _, prediction, persistence = queue.popleft()
        if not observed:
            self.missing += 1
            return None
        self._add(key, prediction - value, persistence - value)
        return prediction, persistence

    def _add(self, key: str | None, error: float, persistence_error: float) -> None:
        self.all.add(error, persistence_error)
        rolling = self.keys.get(key)
        if rolling is None:
            if len(self.keys) >= self.options.max_keys:
                self.uncapped_keys += 1
                return
            rolling = self.keys[key] = Rolling(self.options.rolling)
        rolling.add(error, persistence_error)
        self._judge(key, rolling)

    def _judge(self, key: str | None, rolling: Rolling) -> None:
        """Drift: the rolling RMSE (over a full window) above persistence's, or above k x the manifest's test
        RMSE, for M scored forecasts in a row; said once an episode, which ends at the first forecast under."""
        if not rolling.full:
            return
        model, persistence, *_ = rolling.rolling()
        reference = None if self.reference_rmse is None else self.options.drift_factor * self.reference_rmse
        if model <= (persistence if reference is None else min(persistence, reference)):
            rolling.in_a_row, rolling.drifting = 0, False
            return
        rolling.in_a_row += 1
        if rolling.in_a_row == self.options.drift_after and not rolling.drifting:
            rolling.drifting = True
            whose = "" if key is None else f" for key {key!r}"
            bar = (
                ""
                if reference is None
                else f", {self.options.drift_factor:g} x the manifest's test RMSE is {reference:.4g}"
            )
            self.warnings.append(
                f"warning: the forecasts{whose} may have drifted: over the last {self.options.rolling} scored, "
                f"RMSE {model:.4g} against persistence's {persistence:.4g}{bar}, "
                f"for {self.options.drift_after} forecasts in a row"
            )

    @property
    def drifting(self) -> bool:
        """Some series is in a drift episode now."""
        return any(rolling.drifting for rolling in self.keys.values())

    def overall(self) -> tuple[float, float, int]:
        """The rolling RMSE of the model and of persistence over every series' last N, and how many (metrics)."""
        model, persistence, _, _, n = self.all.rolling()
        return model, persistence, n

    def per_key(self) -> dict[str, tuple[float, float, int]]:
        """Each capped series' rolling RMSE of the model and of persistence, and how many."""
        out = {}
        for key, rolling in self.keys.items():
            model, persistence, _, _, n = rolling.rolling()
            out["" if key is None else key] = (model, persistence, n)
        return out

    def unsettled(self) -> int:
        """Forecasts still waiting for their actual (at the end of a stream, their actual never came)."""
        return sum(map(len, self.pending.values()))

    def words(self) -> str:
        """The figures for the progress and summary lines."""
        model, persistence, mae, mae_p, n = self.all.overall()
        if not n:
            return f"0 scored, {self.missing:,} actuals missing, {self.unsettled():,} awaiting theirs"
        r_model, r_persistence, *_, r_n = self.all.rolling()
        drift = ", drifting" if self.drifting else ""
        return (
            f"{n:,} scored: RMSE {model:.4g} (persistence {persistence:.4g}), MAE {mae:.4g} (persistence {mae_p:.4g}); "
            f"the last {r_n:,}: RMSE {r_model:.4g} (persistence {r_persistence:.4g}){drift}; "
            f"{self.missing:,} actuals missing, {self.unsettled():,} awaiting theirs"
        )

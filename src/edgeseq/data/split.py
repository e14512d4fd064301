"""The time-ordered split: which of train, validation and test each line of a file belongs to.

With a time column the split is by time across all keys (cut times at the given fractions of all rows'
times, or the given dates), so every key has its train, validation and test periods where it has data. Without
one, each key's own rows are split by the fractions. A line whose time or key cannot be read goes with the line
before it: it is a gap in any part.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from edgeseq.errors import DataError

PARTS = ("train", "validation", "test")
DEFAULT_FRACTIONS = (0.70, 0.15, 0.15)


@dataclass(frozen=True)
class SplitPlan:
    """How to split: fractions of the rows, or two cut times (unix seconds) where test and validation start."""

    fractions: tuple[float, float, float] = DEFAULT_FRACTIONS
    cuts: tuple[float, float] | None = None

    def __post_init__(self) -> None:
        finite = all(math.isfinite(f) for f in self.fractions)
        if len(self.fractions) != 3 or not finite or min(self.fractions) <= 0 or abs(sum(self.fractions) - 1) > 1e-6:
            raise DataError(f"--split takes three positive fractions that add up to 1, got {list(self.fractions)}")
        if self.cuts is not None and not self.cuts[0] < self.cuts[1]:
            raise DataError("--split-at takes two dates, the start of validation before the start of test")


def assign_parts(
    plan: SplitPlan, lines: int, times: np.ndarray | None = None, keys: Sequence[str | None] | None = None
) -> np.ndarray:
    """Part index (0 train, 1 validation, 2 test) of each of `lines` lines; `times` is NaN where a time could not
    be read, a key None where a key could not."""
    parts = np.full(lines, -1, dtype=np.int8)
    if times is not None:
        known = times[~np.isnan(times)]
        if plan.cuts is not None:
            cuts = plan.cuts
        elif len(known):
            ordered = np.sort(known)
            a = plan.fractions[0]
            cuts = (
                ordered[int(len(ordered) * a)],
                ordered[min(len(ordered) - 1, int(len(ordered) * (a + plan.fractions[1])))],
            )
        else:
            cuts = (np.inf, np.inf)
        ok = ~np.isnan(times)
        parts[ok] = np.searchsorted(np.asarray(cuts), times[ok], side="right")
    else:
        if plan.cuts is not None:
            raise DataError("--split-at needs a time column (--time-column)")
        groups: dict[str | None, list[int]] = {}
        for i, key in enumerate(keys if keys is not None else [None] * lines):
            groups.setdefault(key, []).append(i)
        a, b = plan.fractions[0], plan.fractions[0] + plan.fractions[1]
        for key, members in groups.items():
            if key is None and keys is not None:
                continue  # no key: goes with the line before
            count = len(members)
            index = np.asarray(members)
            parts[index] = np.searchsorted([int(count * a), int(count * b)], np.arange(count), side="right")
    for i in np.flatnonzero(parts < 0):  # lines whose time or key could not be read
        parts[i] = parts[i - 1] if i > 0 else 0
    return parts

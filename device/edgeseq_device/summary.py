"""A run's counts, and the summary line that reports them."""

from __future__ import annotations

import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

EXIT_OK, EXIT_BAD_ROW, EXIT_USAGE = 0, 1, 2  # and 128 + the signal after SIGINT (130) or SIGTERM (143)


@dataclass
class Stats:
    rows: int = 0
    predictions: int = 0
    skipped: Counter[str] = field(default_factory=Counter)
    filled: int = 0
    time_gaps: int = 0
    time_jumps: int = 0  # jumps back in time (series.JUMP_WINDOWS): each starts a new segment
    slot_taken: int = 0  # on the time grid, readings in a slot that had one (series.SLOT_TAKEN): not used
    slots_filled: int = 0  # on the time grid, empty slots filled (--fill-gaps at training)
    not_finite: int = 0
    model_failed: int = 0
    reopened: int = 0
    keys: int = 0
    scoring: Any = None  # scoring.Scorer with --score: its figures go in the line; metrics.py reads them
    first_row_at: float | None = None
    finished_at: float | None = None

    def line(self, prog: str, final: bool) -> str:
        now = time.monotonic()
        elapsed = (self.finished_at or now) - self.first_row_at if self.first_row_at is not None else 0.0
        rate = self.rows / elapsed if elapsed > 0 else 0.0
        reasons = ", ".join(f"{reason} {n}" for reason, n in sorted(self.skipped.items()))
        skipped = sum(self.skipped.values())
        extra = f", {self.filled} rows filled (--fill-gaps)" if self.filled else ""
        extra += f", {self.slots_filled} empty slots filled (--fill-gaps)" if self.slots_filled else ""
        extra += f", {self.time_gaps} gap{'s' if self.time_gaps != 1 else ''} in time" if self.time_gaps else ""
        jumps = f", {self.time_jumps} jump{'s' if self.time_jumps != 1 else ''} back in time"
        extra += jumps if self.time_jumps else ""
        extra += f", {self.keys} series" if self.keys else ""
        if self.slot_taken:
            extra += (
                f", {self.slot_taken} reading{'s' if self.slot_taken != 1 else ''} in a slot already read (not used)"
            )
        extra += f", {self.not_finite} predictions not finite (not written)" if self.not_finite else ""
        extra += f", the model failed on {self.model_failed} windows (not written)" if self.model_failed else ""
        extra += f", input reopened {self.reopened} times" if self.reopened else ""
        scores = f"; {self.scoring.words()}" if self.scoring is not None else ""
        return (
            f"{prog}: {'done' if final else 'progress'}: {self.rows} rows read, {self.predictions} predictions, "
            f"{skipped} rows skipped{f' ({reasons})' if reasons else ''}{extra}, {elapsed:.2f} s, {rate:,.0f} rows/s"
            f"{scores}"
        )


def stopped(stats: Stats, say: Any, prog: str, what: str, why: str = "--on-bad-row fail") -> None:
    """--on-bad-row fail, or a model failing on every window: say what stopped the run and the summary; exit 1."""
    say(f"{prog}: error: {what}; stopping ({why})")
    stats.finished_at = time.monotonic()
    say(stats.line(prog, final=True))

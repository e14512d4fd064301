"""A messy sensor file built for tests, and an independent reading of it (the csv module and datetime, not
edgeseq): three stations interleaved every 10 minutes, with missing tokens, gaps in time, a duplicated and a
backwards time, a non-numeric value, a short row, an extra column and CRLF line ends."""

from __future__ import annotations

import csv
import itertools
import math
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path

import numpy as np

START = datetime(2026, 3, 1, tzinfo=timezone.utc)
STEP = timedelta(minutes=10)
KEYS = ("north", "south", "east")
FEATURES = ("temp", "hum", "press")
TOKENS = ("", "NA", "N/A", "NaN", "nan", "null", "nil", "None", "-", "?", " na ", "#N/A")


def _stamp(when: datetime) -> str:
    return when.strftime("%Y-%m-%dT%H:%M:%SZ")


def write_messy_csv(path: Path, steps: int = 900, seed: int = 3, constant: bool = False) -> Path:
    """Write the file; with `constant`, a column 'status' that never changes is added."""
    rng = np.random.default_rng(seed)
    header = ["station", "time", *FEATURES, "note"] + (["status"] if constant else [])
    lines = [",".join(header)]
    dropped = {key: set(rng.choice(np.arange(50, steps - 50), 6, replace=False).tolist()) for key in KEYS}
    for k, key in enumerate(KEYS):  # and a gap in each key's test period (the last 15%)
        dropped[key] |= {steps - 50 - 7 * k, steps - 49 - 7 * k}
    missing = {key: set(rng.choice(np.arange(40, steps - 40), len(TOKENS), replace=False).tolist()) for key in KEYS}
    for i in range(steps):
        when = START + i * STEP
        for k, key in enumerate(KEYS):
            if i in dropped[key]:
                continue
            phase = 2 * np.pi * i / 144
            temp = 10 + 3 * k + 4 * math.sin(phase) + rng.normal(0, 0.1)
            hum = 60 - 10 * math.sin(phase + 0.5) + rng.normal(0, 0.5)
            press = 1013.25 + 2 * math.sin(phase / 7 + k) + rng.normal(0, 0.05)
            values = [f"{temp:.3f}", f"{hum:.2f}", f"{press:.2f}"]
            if i in missing[key]:
                token = TOKENS[sorted(missing[key]).index(i)]
                values[(i + k) % 3] = token
            if key == "east" and i == steps - 30:
                values[1] = "NA"  # one in the test period too
            row = [key, _stamp(when), *values, "ok"] + (["1"] if constant else [])
            lines.append(",".join(row))
            if key == "north" and i in (300, steps - 80):
                lines.append(",".join(row))  # the same reading twice: a duplicated time
            if key == "south" and i in (500, steps - 70):
                back = [key, _stamp(when - 3 * STEP), *values, "late"] + (["1"] if constant else [])
                lines.append(",".join(back))  # a reading that arrives late: time goes backwards
            if key == "east" and i == 420:
                lines.append(",".join([key, _stamp(when + STEP // 2), "warm", *values[1:], "bad"]))
            if i == 610 and k == 0:
                lines.append("north,2026")  # a short row: whose it is cannot be known
    path.write_bytes(("\r\n".join(lines) + "\r\n").encode())
    return path


@dataclass(frozen=True)
class Line:
    """One data line as the csv module reads it: key, time, values (None where not a finite number)."""

    number: int  # data line number, 1-based
    key: str | None
    when: datetime | None
    values: tuple[float | None, ...] | None
    timed: bool = False  # of the header's width: the rules look at its time, whatever its values are


def read_independently(path: Path) -> list[Line]:
    with path.open(newline="") as handle:
        rows = list(csv.reader(handle))
    header, body = rows[0], rows[1:]
    out = []
    for number, row in enumerate(body, start=1):
        if len(row) != len(header):
            out.append(Line(number, None, None, None))
            continue
        fields = dict(zip(header, row, strict=True))
        values = []
        for name in FEATURES:
            try:
                value = float(fields[name])
                values.append(value if math.isfinite(value) else None)
            except ValueError:
                values.append(None)
        when = datetime.strptime(fields["time"], "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=timezone.utc)
        out.append(Line(number, fields["station"], when, tuple(values), timed=True))
    return out


def _series(lines: list[Line]) -> dict[str, list[tuple[Line, bool]]]:
    """Each key's lines in file order, each with whether it can be in a window (complete); a repeated, late or
    replayed reading (not later than every time of the key before it) is left out: refused, it is no gap."""
    by_key: dict[str, list[tuple[Line, bool]]] = {}
    newest: dict[str, datetime] = {}
    for line in lines:
        if line.key is None:
            continue
        if line.key in newest and line.when <= newest[line.key]:
            continue
        by_key.setdefault(line.key, []).append((line, line.values is not None and None not in line.values))
        newest[line.key] = line.when
    return by_key


def gaps_in_time(lines: list[Line]) -> int:
    """Steps of more than 1.5 intervals past a key's newest time, over the lines whose time the rules read."""
    newest: dict[str, datetime] = {}
    gaps = 0
    for line in lines:
        if line.key is None or not line.timed:
            continue
        if line.key in newest and line.when - newest[line.key] > 1.5 * STEP:
            gaps += 1
        if line.key not in newest or line.when > newest[line.key]:
            newest[line.key] = line.when
    return gaps


def _run_ok(span: list[tuple[Line, bool]]) -> bool:
    steps = itertools.pairwise(span)
    return all(ok for _, ok in span) and all(b.when - a.when == STEP for (a, _), (b, _) in steps)


def gap_free_windows(lines: list[Line], window: int) -> dict[int, list[Line]]:
    """Data line number -> the `window` lines of its key ending there, for each window with no gap: every line
    usable and each step exactly 10 minutes."""
    windows = {}
    for series in _series(lines).values():
        for j in range(window - 1, len(series)):
            span = series[j - window + 1 : j + 1]
            if _run_ok(span):
                windows[span[-1][0].number] = [line for line, _ in span]
    return windows


def target_after(lines: list[Line], number: int, horizon: int) -> float | None:
    """The temp `horizon` steps after line `number`, if the key's next `horizon` lines are usable and 10
    minutes apart each; else None."""
    for series in _series(lines).values():
        for j, (line, _) in enumerate(series):
            if line.number == number:
                span = series[j : j + horizon + 1]
                return span[-1][0].values[0] if len(span) == horizon + 1 and _run_ok(span) else None
    raise KeyError(number)

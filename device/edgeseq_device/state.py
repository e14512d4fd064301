"""A run's series across a restart (`--state FILE`): what each series' window holds, its clock and the row count
are written when the run ends, whatever ends it, and read when the next run starts.

A stream that cannot be read again needs it: an MQTT subscription delivers each reading once, so without it a
restarted gateway would wait for T new readings of every sensor before its next forecast, and the forecasts of
those windows would be lost. A file saved for another model (other columns, window or key column) is not used:
the run says so and starts afresh. A stateful model's carried state is not kept: it starts from zero.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

from edgeseq_device.errors import InputError

VERSION = 1


def _shape(runner: Any) -> dict[str, Any]:
    return {"features": list(runner.spec.features), "window": runner.spec.window, "key": runner.rules.group_by}


def load(path: str, runner: Any, stats: Any) -> str:
    """Restore the state saved at `path` into `runner` (and the row count into `stats`); what happened, to say."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        return f"no state in {path} yet: starting afresh"
    except OSError as exc:
        raise InputError(f"--state {path}: cannot read it ({exc.strerror or exc})") from None
    try:
        state = json.loads(text)
        if state.get("version") != VERSION or state.get("shape") != _shape(runner):
            return f"the state in {path} was saved for another model or version: starting afresh"
        restored = runner.router.restore(state["series"])
        stats.rows = int(state["rows"])
    except (ValueError, KeyError, TypeError) as exc:
        raise InputError(f"--state {path} is not a state edgeseq saved ({type(exc).__name__}): move it away") from None
    return f"restored {restored:,} series and the row count ({stats.rows:,}) from {path}"


def save(path: str, runner: Any, stats: Any) -> str:
    """Write the state atomically (a crash mid-write leaves the previous one); what was saved, to say."""
    state = {"version": VERSION, "shape": _shape(runner), "rows": stats.rows, "series": runner.router.snapshot()}
    folder = os.path.dirname(os.path.abspath(path))
    with tempfile.NamedTemporaryFile("w", dir=folder, prefix=".edgeseq-state-", delete=False, encoding="utf-8") as out:
        json.dump(state, out)
        out.flush()
        os.fsync(out.fileno())
    os.replace(out.name, path)
    series = state["series"]
    count = len(series.get("keys", {})) if "keys" in series else 1
    return f"saved {count:,} series to {path}"

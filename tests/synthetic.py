"""Small synthetic sensor CSVs for fast tests of the bring-your-own-data path."""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path

import numpy as np

START = datetime(2026, 1, 1)


def write_sensor_csv(path: Path, rows: int = 600, seed: int = 0, quoted: bool = False) -> Path:
    """A room: 'temp' follows 'outside' with a lag, 'hum' drifts, 'noise' is an extra column to ignore."""
    rng = np.random.default_rng(seed)
    t = np.arange(rows)
    outside = 8 + 5 * np.sin(2 * np.pi * t / 144) + rng.normal(0, 0.2, rows)
    temp = 20 + 0.3 * np.roll(outside - 8, 6) + rng.normal(0, 0.05, rows)
    hum = 45 + np.cumsum(rng.normal(0, 0.1, rows))
    noise = rng.normal(size=rows)
    q = '"' if quoted else ""
    lines = [",".join(f"{q}{c}{q}" for c in ("noise", "time", "hum", "temp", "outside"))]
    for i in range(rows):
        when = START + timedelta(minutes=10 * i)
        fields = [f"{noise[i]:.6e}", when.strftime("%Y-%m-%d %H:%M"), f" {hum[i]:.4f}"]
        fields += [f"{temp[i]:.5f}", f"{outside[i]:.5f}"]
        lines.append(",".join(f"{q}{v}{q}" for v in fields))
    path.write_text("\n".join(lines) + "\n")
    return path

"""Forecasts to output records: JSON lines or CSV, one per window, each flushed as it is made."""

from __future__ import annotations

import json
from typing import TextIO


class Writer:
    """One record per line, flushed at once so a pipe downstream sees each as it is made.

    `prediction` is always finite here: the runner reports a non-finite forecast instead of writing it, since
    `inf` and `NaN` are not JSON.
    """

    def __init__(self, sink: TextIO, fmt: str, has_time: bool) -> None:
        self.sink, self.fmt, self.has_time = sink, fmt, has_time
        if fmt == "csv":
            sink.write("row,time,prediction\n" if has_time else "row,prediction\n")
            sink.flush()

    def write(self, row: int, when: str | None, prediction: float) -> None:
        if self.fmt == "jsonl":
            time_part = f', "time": {json.dumps(when)}' if self.has_time else ""
            self.sink.write(f'{{"row": {row}{time_part}, "prediction": {prediction!r}}}\n')
        elif self.has_time:
            quoted = '"' + when.replace('"', '""') + '"' if when and ("," in when or '"' in when) else when
            self.sink.write(f"{row},{quoted},{prediction!r}\n")
        else:
            self.sink.write(f"{row},{prediction!r}\n")
        self.sink.flush()

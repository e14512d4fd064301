"""`edgeseq report`: a run's score records (edgeseq run --score) -> one self-contained HTML page, and its PNGs."""

from __future__ import annotations

import csv
import math
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

import edgeseq
from edgeseq.errors import BadInputError
from edgeseq.report.figures import Figures, table
from edgeseq.report.records import NO_KEY, Scores, read_scores

TABLE_KEYS = 50  # rows of the page's table at most; the CSV beside it has every key


@dataclass(frozen=True)
class ReportConfig:
    keys: int = 3  # keys plotted, the first to appear in the records
    window: int = 288  # scored forecasts in the rolling RMSE, per key
    max_points: int = 2000  # points a plotted line keeps at most (the lowest and highest of each run)
    files: Path | None = None  # where the PNGs and figures.csv go; None: <out stem>_files beside the page
    stream: Path | None = None  # the CSV the run read: its raw target drawn behind the actuals
    model: Path | None = None  # the forecaster that ran: its manifest names the stream's columns
    target: str | None = None  # the stream's target column (else the manifest's)
    time_column: str | None = None  # the stream's time column (else the manifest's)
    key_column: str | None = None  # the stream's key column, for a keyed stream (else the manifest's)


@dataclass(frozen=True)
class Report:
    page: Path
    files: tuple[Path, ...]
    scores: int
    figures: tuple[Figures, ...]
    size: int  # bytes of the page


def files_folder(out: Path, files: Path | None) -> Path:
    return files if files is not None else out.with_name(out.stem + "_files")


def check_out(out: Path, folder: Path) -> None:
    """Refuse an --out or --files that cannot be written before any work is done."""
    for path, what in ((out, "write"), (folder, "make")):
        if not path.parent.is_dir():
            raise BadInputError(f"cannot {what} {path}: folder {path.parent} does not exist")
    if out.is_dir():
        raise BadInputError(f"cannot write {out}: it is a folder")
    if folder.exists() and not folder.is_dir():
        raise BadInputError(f"cannot make {folder}: a file of that name is there")


def _when(seconds: float) -> str:
    return (datetime(1970, 1, 1) + timedelta(seconds=float(seconds))).isoformat(sep=" ")


def _summary(scores: Scores, config: ReportConfig, plotted: list[str]) -> list[str]:
    n = len(scores)
    counted = f"{scores.forecasts:,} forecast records and " if scores.forecasts else ""
    lines = [
        f"{counted}{n:,} score records in {scores.path.name}"
        + (f" ({scores.other_records:,} records of another kind skipped)" if scores.other_records else "")
        + "."
    ]
    if scores.forecasts > n:
        lines.append(
            f"{scores.forecasts - n:,} forecasts have no score: their actual had not arrived when the run ended, "
            "or never did."
        )
    if scores.time_axis:
        lines.append(f"Target times from {_when(scores.x.min())} to {_when(scores.x.max())}.")
    else:
        lines.append(f"Plotted against the row of the actual: {scores.why_rows}.")
    if scores.keys != (NO_KEY,):
        lines.append(
            f"{len(scores.keys):,} keys; plotted: {', '.join(plotted)}"
            + (f" (the first {len(plotted)} to appear)" if len(plotted) < len(scores.keys) else "")
            + "."
        )
    lines.append(f"Rolling RMSE over the last {config.window:,} scored forecasts of a key (fewer at its start).")
    return lines


def _write_csv(path: Path, rows: list[Figures]) -> None:
    fields = ["key", "count", "rmse", "mae", "bias"]
    fields += ["persistence_count", "persistence_rmse", "persistence_mae", "persistence_bias", "skill"]
    with open(path, "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(fields)
        for row in rows:
            values = [getattr(row, field) for field in fields]
            writer.writerow(["" if isinstance(v, float) and math.isnan(v) else v for v in values])


def write_report(records: Path, out: Path, config: ReportConfig = ReportConfig(), command: str = "") -> Report:
    """Read `records` (edgeseq run --score's JSON lines) and write the page `out` and, into `config.files`, its PNGs
    and figures.csv. The figures are computed on every score record; long series are thinned on the plots only,
    and the page says how. BadInputError for a file that cannot be read or scored, or an `out` that cannot be
    written."""
    from edgeseq import frameworks

    frameworks.require_extra("report", "edgeseq report needs")
    out, records = Path(out), Path(records)
    folder = files_folder(out, config.files)
    check_out(out, folder)
    columns = None
    if config.stream is not None:
        from edgeseq.report.stream import read_stream, stream_columns

        columns = stream_columns(config.model, config.target, config.time_column, config.key_column)
    scores = read_scores(records)
    from edgeseq.report import charts, page

    rows = table(scores)
    chosen = list(range(min(config.keys, len(scores.keys))))
    streams = {} if columns is None else read_stream(config.stream, columns, scores)
    series = []
    for k in chosen:
        mask = scores.key == k
        name = scores.keys[k]
        series.append(
            charts.Series(
                name,
                scores.x[mask],
                scores.prediction[mask],
                scores.actual[mask],
                scores.persistence[mask],
                streams.get(name),
            )
        )
    units = columns.target if columns else ""
    made = [charts.forecast_chart(series, scores.time_axis, config.max_points, units)]
    captions = [
        "The forecast for each target time beside the actual that arrived for it, and the persistence forecast."
    ]
    if any(len(one.x) > config.max_points for one in series):
        # a thinned line shows the envelope of a long run; the last stretch, every point, shows the forecasts
        last = min(config.window, config.max_points)
        made.append(
            charts.forecast_chart(
                [charts.recent(one, last) for one in series],
                scores.time_axis,
                config.max_points,
                units,
                "forecast_recent.png",
                f"The last {last:,} scored forecasts, every point",
            )
        )
        captions.append(f"The end of the run up close: each key's last {last:,} scored forecasts (the rolling window).")
    made += [
        charts.error_chart(series, scores.time_axis, config.max_points, config.window),
        charts.histogram_chart(scores.prediction - scores.actual, scores.persistence - scores.actual),
    ]
    captions += [
        "Each scored forecast's error, and the RMSE of the model and of persistence over a rolling window.",
        "How often each error occurred, for the model and for persistence, over the same bins.",
    ]
    written = [folder / chart.name for chart in made] + [folder / "figures.csv"]
    try:
        folder.mkdir(exist_ok=True)
        for chart, path in zip(made, written, strict=False):
            path.write_bytes(chart.png)
        _write_csv(written[-1], rows)
    except OSError as exc:
        raise BadInputError(f"cannot write into {folder}: {exc.strerror or exc}") from None
    shown_rows = rows[:-1][:TABLE_KEYS] + rows[-1:]
    plotted = [scores.keys[k] for k in chosen]
    html = page.render(
        f"Forecast report: {records.name}",
        _summary(scores, config, plotted),
        page.figures_table(shown_rows, min(TABLE_KEYS, len(rows) - 1), len(rows) - 1, f"{folder.name}/figures.csv"),
        [page.chart_section(chart, caption) for chart, caption in zip(made, captions, strict=True)],
        f"Made by edgeseq {edgeseq.__version__}" + (f" with: {command}" if command else "") + ".",
    )
    try:
        out.write_text(html, encoding="utf-8")
    except OSError as exc:
        raise BadInputError(f"cannot write {out}: {exc.strerror or exc}") from None
    return Report(out, tuple(written), len(scores), tuple(rows), out.stat().st_size)

"""The report as one self-contained HTML page: the table of figures, and each plot as an inline PNG (a data URI),
so the file needs no network, no other file and no script to show."""

from __future__ import annotations

import base64
import math
from collections.abc import Sequence
from html import escape

from edgeseq.report.charts import Chart
from edgeseq.report.figures import Figures

STYLE = """
body { font-family: system-ui, sans-serif; margin: 2em auto; max-width: 1140px; color: #222; padding: 0 1em; }
h1 { font-size: 1.6em; margin-bottom: 0.2em; }
h2 { font-size: 1.2em; margin-top: 1.6em; }
table { border-collapse: collapse; font-variant-numeric: tabular-nums; }
th, td { padding: 0.25em 0.7em; border-bottom: 1px solid #ddd; text-align: right; }
th:first-child, td:first-child { text-align: left; }
thead th { border-bottom: 2px solid #888; }
tr.all td { font-weight: bold; border-top: 2px solid #888; }
.better { color: #1a7f37; } .worse { color: #c62828; }
img { max-width: 100%; height: auto; display: block; }
p.note, ul.note, footer { color: #666; font-size: 0.9em; }
"""

COLUMNS = (
    ("count", "scored forecasts"),
    ("rmse", "RMSE"),
    ("mae", "MAE"),
    ("bias", "bias"),
    ("persistence_rmse", "RMSE"),
    ("persistence_mae", "MAE"),
    ("persistence_bias", "bias"),
    ("skill", "skill"),
)


def number(value: float) -> str:
    """A figure as the table shows it: four significant digits, thousands separated; an em dash for none."""
    if isinstance(value, int):
        return f"{value:,}"
    if math.isnan(value):
        return "—"
    return f"{value:,.4g}" if abs(value) < 1e6 else f"{value:.4g}"  # 1.235e+06, not 25 digits of 1e24


def _cell(row: Figures, field: str) -> str:
    value = getattr(row, field)
    exact = repr(value) if isinstance(value, int) or not math.isnan(value) else ""
    css = ""
    if field == "skill" and not math.isnan(value):
        css = ' class="better"' if value > 0 else ' class="worse"' if value < 0 else ""
    return f'<td data-field="{field}" data-value="{exact}"{css}>{number(value)}</td>'


def figures_table(rows: Sequence[Figures], shown_keys: int, total_keys: int, csv_name: str) -> str:
    head = (
        '<thead><tr><th rowspan="2">key</th><th rowspan="2">scored forecasts</th>'
        '<th colspan="3">model</th><th colspan="3">persistence</th><th rowspan="2">skill</th></tr>'
        "<tr>" + "".join(f"<th>{name}</th>" for name in ("RMSE", "MAE", "bias") * 2) + "</tr></thead>"
    )
    body = []
    for row in rows:
        css = ' class="all"' if row is rows[-1] else ""
        cells = "".join(_cell(row, field) for field, _ in COLUMNS)
        body.append(f'<tr{css} data-key="{escape(row.key)}"><td>{escape(row.key)}</td>{cells}</tr>')
    notes = [
        f"{row.key}: {row.persistence_count:,} of {row.count:,} score records carry a persistence forecast; "
        "persistence's figures (and so skill) are over those."
        for row in rows
        if row.persistence_count < row.count
    ]
    if shown_keys < total_keys:
        notes.append(f"The table shows the first {shown_keys:,} of {total_keys:,} keys; {csv_name} has them all.")
    note = "".join(f'<p class="note">{escape(line)}</p>' for line in notes)
    return f'<table id="figures">{head}<tbody>{"".join(body)}</tbody></table>{note}'


def chart_section(chart: Chart, caption: str) -> str:
    data = base64.b64encode(chart.png).decode("ascii")
    notes = "".join(f"<li>{escape(note)}</li>" for note in chart.notes)
    return (
        f"<section><h2>{escape(chart.title)}</h2><p>{escape(caption)}</p>"
        f'<img src="data:image/png;base64,{data}" alt="{escape(chart.title)}">'
        f'<ul class="note">{notes}</ul></section>'
    )


def render(title: str, summary: Sequence[str], table_html: str, sections: Sequence[str], footer: str) -> str:
    paragraphs = "".join(f"<p>{escape(line)}</p>" for line in summary)
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{escape(title)}</title><style>{STYLE}</style></head><body>"
        f"<h1>{escape(title)}</h1>{paragraphs}"
        f"<h2>Figures</h2>"
        "<p>Error is forecast - actual. Persistence forecasts the target's last value at forecast time. Bias is the "
        "mean error (above 0: too high). Skill is 1 - RMSE(model) / RMSE(persistence): above 0 the model beats "
        "persistence, 1 is perfect. Computed on every score record.</p>"
        f"{table_html}{''.join(sections)}<footer><p>{escape(footer)}</p></footer></body></html>\n"
    )

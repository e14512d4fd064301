"""`edgeseq report`: the page's figures against an independent computation, the page as a real headless Chromium
shows it, a million records in a page of bounded size, and the CLI's refusals."""

from __future__ import annotations

import json
import math
import re
import shutil
import subprocess
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from edgeseq.cli import app
from tests.helpers import assert_drawn_png, require_in_ci

runner = CliRunner()

# k1 and k2: scored forecasts with numbers chosen by hand; k2's last score has no persistence; k3 has forecasts only
SCORES = {
    "k1": [  # (target_time, prediction, actual, persistence)
        ("2016-05-20 11:00:00", 21.43, 21.50, 21.38),
        ("2016-05-20 11:10:00", 21.60, 21.40, 21.45),
        ("2016-05-20 11:20:00", 21.00, 21.75, 21.50),
        ("2016-05-20 11:30:00", 22.25, 22.00, 21.20),
    ],
    "k2": [
        ("2016-05-20 11:00:00", 5.0, 4.0, 3.0),
        ("2016-05-20 11:10:00", 6.5, 7.0, 5.0),
        ("2016-05-20 11:20:00", 7.0, 7.0, None),
    ],
}


def write_fixture(path: Path) -> None:
    """A run's records as `edgeseq run --score` writes them: forecasts, then each score as its actual arrives."""
    lines = []
    for key, scores in SCORES.items():
        for row, (target, prediction, actual, persistence) in enumerate(scores):
            lines.append(
                {
                    "row": row,
                    "time": f"2016-05-20 10:{row}0:00",
                    "key": key,
                    "prediction": prediction,
                    "target_time": target,
                }
            )
            score = {"kind": "score", "row": row + 6, "time": target, "key": key, "target_time": target}
            score |= {"prediction": prediction, "actual": actual, "error": prediction - actual}
            if persistence is not None:
                score |= {"persistence": persistence, "persistence_error": persistence - actual}
            lines.append(score)
    lines.append({"row": 9, "time": "2016-05-20 10:40:00", "key": "k1", "prediction": 22.0})  # no actual yet
    lines.append({"row": 0, "time": "2016-05-20 10:00:00", "key": "k3", "prediction": 1.0})
    path.write_text("".join(json.dumps(line) + "\n" for line in lines) + "\n")  # a blank line at the end


def expected_figures(scores: list[tuple]) -> dict[str, float]:
    """RMSE, MAE and bias of the model and of persistence, and skill, in plain Python."""
    errors = [prediction - actual for _, prediction, actual, _ in scores]
    persistence = [p - actual for _, _, actual, p in scores if p is not None]
    figures = {"count": len(errors)}
    for prefix, values in (("", errors), ("persistence_", persistence)):
        figures[prefix + "rmse"] = math.sqrt(sum(e * e for e in values) / len(values))
        figures[prefix + "mae"] = sum(abs(e) for e in values) / len(values)
        figures[prefix + "bias"] = sum(values) / len(values)
    figures["skill"] = 1 - figures["rmse"] / figures["persistence_rmse"]
    return figures


class TableReader(HTMLParser):
    """The page's table of figures: key -> field -> (the exact value in data-value, the text shown)."""

    def __init__(self) -> None:
        super().__init__()
        self.rows: dict[str, dict[str, tuple[str, str]]] = {}
        self._key: str | None = None
        self._cell: tuple[str, str] | None = None

    def handle_starttag(self, tag: str, attrs: list) -> None:
        attrs = dict(attrs)
        if tag == "tr" and "data-key" in attrs:
            self._key = attrs["data-key"]
            self.rows[self._key] = {}
        if tag == "td" and "data-field" in attrs:
            self._cell = (attrs["data-field"], attrs["data-value"])

    def handle_data(self, data: str) -> None:
        if self._cell is not None:
            field, exact = self._cell
            self.rows[self._key][field] = (exact, data)
            self._cell = None


def table_of(page: Path) -> dict[str, dict[str, tuple[str, str]]]:
    reader = TableReader()
    reader.feed(page.read_text(encoding="utf-8"))
    return reader.rows


def report(*args: object):
    return runner.invoke(app, ["report", *(str(a) for a in args)])


def test_the_figures_in_the_page_are_the_ones_computed_from_the_records(tmp_path: Path):
    records, out = tmp_path / "run.jsonl", tmp_path / "report.html"
    write_fixture(records)
    result = report("--records", records, "--out", out)
    assert result.exit_code == 0, result.output
    table = table_of(out)
    everything = [score for scores in SCORES.values() for score in scores]
    expected = {"k1": expected_figures(SCORES["k1"]), "k2": expected_figures(SCORES["k2"])}
    expected["all keys"] = expected_figures(everything)
    assert list(table) == ["k1", "k2", "all keys"]  # keys in order of first appearance; k3 was never scored
    for key, figures in expected.items():
        assert set(table[key]) == set(figures)
        for field, value in figures.items():
            exact, shown = table[key][field]
            assert math.isclose(float(exact), value, rel_tol=1e-12, abs_tol=1e-12), (key, field, exact, value)
            # what a reader sees: four significant digits of the same number
            assert shown == (f"{value:,}" if field == "count" else f"{value:,.4g}"), (key, field, shown)
    page = out.read_text()
    assert "9 forecast records and 7 score records in run.jsonl" in page
    assert "2 forecasts have no score" in page
    assert "k2: 2 of 3 score records carry a persistence forecast; persistence&#x27;s figures (and so skill)" in page
    # figures.csv has the same numbers, for every key
    lines = (tmp_path / "report_files" / "figures.csv").read_text().splitlines()
    assert lines[0].split(",")[:3] == ["key", "count", "rmse"]
    assert [line.split(",")[0] for line in lines[1:]] == ["k1", "k2", "all keys"]
    assert math.isclose(float(lines[1].split(",")[2]), expected["k1"]["rmse"], rel_tol=1e-12)
    for name in ("forecast.png", "error.png", "errors.png"):
        assert_drawn_png(tmp_path / "report_files" / name, colours=("tab:blue", "tab:orange"))


def test_rolling_rmse_is_the_rmse_of_the_last_n():
    from edgeseq.report.figures import rolling_rmse

    errors = [0.5, -1.0, 2.0, float("nan"), 0.25, -3.0, 1.5]
    got = rolling_rmse(np.array(errors), 3)
    for i in range(len(errors)):
        last = [e for e in errors[max(0, i - 2) : i + 1] if e == e]
        assert math.isclose(got[i], math.sqrt(sum(e * e for e in last) / len(last)), rel_tol=1e-12), i


def test_thinning_keeps_each_runs_lowest_and_highest():
    from edgeseq.report.figures import thin

    values = np.sin(np.arange(100_003) / 300.0)
    values[70_001] = 9.0  # a spike every-k-th sampling would likely miss
    values[12_345] = np.nan
    kept = thin(values, 1000)
    assert len(kept.indices) <= 1000 and kept.run == math.ceil(100_003 / 500)
    assert 70_001 in kept.indices and np.nanargmin(values) in kept.indices
    assert not np.isnan(values[kept.indices]).any()
    assert np.all(np.diff(kept.indices) > 0)
    assert kept.words() == "plotted 996 of 100,003 points, the lowest and highest of each run of 201"  # 497 x 201 + 106
    assert thin(values[:50], 1000).words() == "all 50 points plotted"


def test_records_without_keys_or_iso_times_are_plotted_against_rows(tmp_path: Path):
    records, out = tmp_path / "run.jsonl", tmp_path / "report.html"
    lines = [{"row": 3, "time": "1.24", "prediction": 1.0}]  # a model exported with its own time column
    lines += [
        {"kind": "score", "row": 3 + i, "time": f"{1.24 + i:.2f}", "target_time": f"{1.24 + i:.2f}"}
        | {"prediction": 1.0 + i, "actual": 1.5 + i, "persistence": 2.0 + i}
        for i in range(1, 4)
    ]
    records.write_text("".join(json.dumps(line) + "\n" for line in lines))
    result = report("--records", records, "--out", out)
    assert result.exit_code == 0, result.output
    page = out.read_text()
    assert "Plotted against the row of the actual: line 2 has target_time &#x27;2.24&#x27;, not ISO 8601." in page
    table = table_of(out)
    assert list(table) == ["all keys"]  # a stream without keys: one row
    assert table["all keys"]["rmse"] == ("0.5", "0.5") and table["all keys"]["skill"] == ("0.0", "0")
    assert "each line: all 3 points plotted" in page


JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=30),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3),
    max_leaves=6,
)
FIELDS = ("kind", "row", "time", "key", "target_time", "prediction", "actual", "persistence")
RECORDS = st.fixed_dictionaries(
    {},
    optional={
        "kind": st.sampled_from(["score", "other"]) | JSON_VALUES,
        **{field: JSON_VALUES for field in FIELDS[1:]},
        "target_time": st.sampled_from(["2016-05-20 11:00:00", "2016-05-20T11:00:00+02:00", "24:00"]) | JSON_VALUES,
        "prediction": st.floats() | st.integers() | JSON_VALUES,
    },
)
LINES = st.lists(
    st.one_of(
        RECORDS.map(lambda r: json.dumps(r, allow_nan=True)), st.text(max_size=40).map(lambda t: t.replace("\n", " "))
    ),
    max_size=8,
)


@settings(max_examples=400, deadline=None)
@given(LINES)
@example(['{"kind": "score", "prediction": 1' + "0" * 400 + ', "actual": 1.0}'])  # too large for a float
@example(['{"kind": "score", "prediction": 1.0, "actual": 2.0, "row": 1' + "0" * 400 + ', "target_time": 7}'])
def test_any_records_file_is_read_or_refused_in_one_line(lines: list[str]):
    """Whatever a file holds, reading it gives score arrays or a BadInputError, never another exception."""
    import tempfile

    from edgeseq.errors import BadInputError
    from edgeseq.report.records import read_scores

    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "run.jsonl"
        path.write_text("\n".join(lines) + "\n", encoding="utf-8", errors="surrogatepass")
        try:
            scores = read_scores(path)
        except BadInputError as exc:
            assert "\n" not in str(exc)
            return
    assert len(scores) == len(scores.actual) == len(scores.key) == len(scores.x) > 0
    assert np.isfinite(scores.prediction).all() and np.isfinite(scores.actual).all()


@pytest.mark.parametrize(
    ("records", "said"),
    [
        (['"target_time": "0001-01-01 00:00:00"', '"target_time": "9999-12-31 23:59:59"'], "too near year 1 or 9999"),
        (['"persistence": 1e-300, "key": 7', '"key": [1]'], "line 1 has no target_time"),
        (['"target_time": "2020-01-01 00:00:00"'] * 2, "Target times from 2020-01-01 00:00:00 to 2020-01-01 00:00:00"),
        (['"target_time": "2020-01-01T00:00:00Z"'], "Target times from 2020-01-01 00:00:00 to 2020-01-01 00:00:00"),
    ],
    ids=["the ends of time", "odd keys, no times", "one time", "a zone"],
)
def test_odd_but_valid_records_still_make_a_page(tmp_path: Path, records: list[str], said: str):
    path, out = tmp_path / "run.jsonl", tmp_path / "report.html"
    numbers = ['"prediction": 1e300, "actual": -1e300', '"prediction": 1, "actual": 2']
    path.write_text("".join(f'{{"kind": "score", {n}, {r}}}\n' for n, r in zip(numbers, records, strict=False)))
    result = report("--records", path, "--out", out)
    assert result.exit_code == 0 and result.stderr == "", result.output
    assert said in out.read_text()


def test_a_real_scored_run_of_the_sample_reports_the_manifests_test_figures(tmp_path: Path):
    """`edgeseq run --score` on the shipped sample, then `edgeseq report` with its stream and model: the page's
    overall RMSE and MAE, model and persistence, are the manifest's test figures (the same 2,920 windows)."""
    from tests.conftest import EXPORTED

    manifest = json.loads((EXPORTED / "sensor_lstm.json").read_text())
    records, out = tmp_path / "scored.jsonl", tmp_path / "report.html"
    sample, model = EXPORTED / "sensor.csv", EXPORTED / "sensor_lstm.onnx"
    ran = runner.invoke(
        app, ["run", "--stream", str(sample), "--model", str(model), "--score", "--output", str(records)]
    )
    assert ran.exit_code == 0, ran.output
    result = report("--records", records, "--out", out, "--stream", sample, "--model", model)
    assert result.exit_code == 0, result.output
    overall = table_of(out)["all keys"]
    assert int(overall["count"][0]) == manifest["metrics"]["windows"] == 2920
    for figure in ("model", "persistence"):
        for name in ("rmse", "mae"):
            field = name if figure == "model" else f"persistence_{name}"
            # another CPU's float32 kernels round forecasts differently in their last bits (tests/test_time_grid.py)
            expected = manifest["metrics"][figure][name]
            assert float(overall[field][0]) == pytest.approx(expected, rel=1e-6), field
    assert "each line: plotted 1,948 of 2,920 points" in out.read_text()
    for name in ("forecast.png", "forecast_recent.png", "error.png", "errors.png"):
        assert_drawn_png(tmp_path / "report_files" / name, colours=("tab:blue", "tab:orange"))


def chromium() -> str:
    found = shutil.which("chromium")
    if found is None:
        require_in_ci("chromium is not installed: apt-get install chromium (as root; .ci/run does it under CI)")
    return found


def screenshot(page: Path, png: Path, profile: Path, height: int) -> None:
    """Chromium, headless, shows `page` and saves what it shows; any network request would go to a closed port."""
    args = [
        chromium(),
        "--headless",
        "--no-sandbox",  # as root (CI)
        "--disable-gpu",
        "--hide-scrollbars",
        "--proxy-server=127.0.0.1:9",  # the page needs no network: nothing may load from it
        f"--user-data-dir={profile}",
        f"--screenshot={png}",
        f"--window-size=1200,{height}",
        page.as_uri(),
    ]
    proc = subprocess.run(args, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0 and png.exists(), proc.stderr[-2000:]


def test_headless_chromium_shows_the_page_and_its_plots(tmp_path: Path):
    records, out = tmp_path / "run.jsonl", tmp_path / "report.html"
    write_many(records, 6_000, keys=("a", "b", "c", "d"))
    result = report("--records", records, "--out", out)
    assert result.exit_code == 0, result.output
    html = out.read_text()
    assert not re.search(r"""(src|href)=["'](?!data:)""", html), "the page refers to something outside itself"
    assert html.count('<img src="data:image/png;base64,') == 3
    shot = tmp_path / "shot.png"
    screenshot(out, shot, tmp_path / "profile", 3400)
    pixels = pixels_of(shot)
    assert pixels.shape == (3400, 1200, 3)
    assert colours(pixels) > 100  # not blank (a blank page has 1 colour)
    for colour in ("tab:blue", "tab:orange"):  # the forecast's and persistence's lines and bars
        assert near(pixels, colour) > 5000, colour
    rows_with_plots = coloured_rows(pixels)
    # 3 forecast panels, 3 error panels and the histogram: about 1,300 of the 3,400 rows show their colours
    assert rows_with_plots > 1000, rows_with_plots
    # the same page with its images broken shows none of them
    (tmp_path / "broken.html").write_text(re.sub(r"base64,[^\"]+", "base64,AAAA", html))
    screenshot(tmp_path / "broken.html", shot, tmp_path / "profile", 3400)
    broken = pixels_of(shot)
    assert coloured_rows(broken) < 100  # text; the skill column's green figures


def pixels_of(png: Path) -> np.ndarray:
    from PIL import Image

    with Image.open(png) as image:
        return np.asarray(image.convert("RGB"), dtype=np.int32)


def colours(pixels: np.ndarray) -> int:
    """Distinct colours (packed into one integer each: np.unique over rows of 4 million pixels takes seconds)."""
    return len(np.unique(pixels[..., 0] << 16 | pixels[..., 1] << 8 | pixels[..., 2]))


def near(pixels: np.ndarray, colour: str) -> int:
    """Pixels within 24 levels of a matplotlib colour."""
    from matplotlib.colors import to_rgb

    return int((np.abs(pixels - np.round(np.array(to_rgb(colour)) * 255)).max(axis=2) <= 24).sum())


def coloured_rows(pixels: np.ndarray) -> int:
    """Rows of a screenshot with at least 20 coloured pixels: the plots' lines and bars (the page's text is black
    and grey, and only the skill column is coloured)."""
    coloured = pixels.max(axis=2) - pixels.min(axis=2) > 40
    return int((coloured.sum(axis=1) >= 20).sum())


def write_many(path: Path, n: int, keys: tuple[str, ...] = ("a", "b"), seed: int = 0) -> dict[str, np.ndarray]:
    """`n` score records, the keys taking turns, every 10 minutes of target time per key; numbers as written."""
    rng = np.random.default_rng(seed)
    i = np.arange(n)
    actual = np.round(20 + 3 * np.sin(i / 500) + rng.normal(0, 0.2, n), 3)
    prediction = np.round(actual + rng.normal(0.05, 0.3, n), 3)
    persistence = np.round(actual + rng.normal(0, 0.4, n), 3)
    when = (np.datetime64("2016-05-20T00:00:00") + (i // len(keys)) * np.timedelta64(600, "s")).astype(str)
    key = np.array(keys)[i % len(keys)]
    with open(path, "w") as f:
        f.writelines(
            f'{{"kind": "score", "row": {r}, "key": "{k}", "target_time": "{t[:10]} {t[11:]}", "prediction": {p}, '
            f'"actual": {a}, "persistence": {q}}}\n'
            for r, k, t, p, a, q in zip(
                i.tolist(),
                key.tolist(),
                when.tolist(),
                prediction.tolist(),
                actual.tolist(),
                persistence.tolist(),
                strict=True,
            )
        )
    return {"prediction": prediction, "actual": actual, "persistence": persistence}


PAGE_BOUND = 1_500_000  # bytes: 3 keys of at most 2,000 points a line, whatever the number of records


def test_a_million_records_make_a_page_of_bounded_size_that_says_it_thinned(tmp_path: Path):
    records, out = tmp_path / "big.jsonl", tmp_path / "report.html"
    values = write_many(records, 1_000_000)
    result = report("--records", records, "--out", out)
    assert result.exit_code == 0, result.output
    assert out.stat().st_size < PAGE_BOUND, out.stat().st_size
    page = out.read_text()
    said = "each line: plotted 2,000 of 500,000 points, the lowest and highest of each run of 500"
    assert page.count(said) == 4  # keys a and b, on the forecast plot and the error plot
    assert "all 1,000,000 score records" in page  # the histogram
    assert page.count("each line: all 288 points plotted") == 2  # and the last 288 of each key, up close
    assert page.count('<img src="data:image/png;base64,') == 4
    assert (tmp_path / "report_files" / "forecast_recent.png").exists()
    # the table is computed on every record, not on what was plotted
    overall = table_of(out)["all keys"]
    errors = values["prediction"] - values["actual"]
    assert int(overall["count"][0]) == 1_000_000
    assert math.isclose(float(overall["rmse"][0]), float(np.sqrt(np.mean(errors**2))), rel_tol=1e-9)


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (None, "records file not found: {path}"),
        ("", "{path} has no score records (no records): run with edgeseq run --score"),
        (
            '{"row": 1, "prediction": 2.0}\n{"row": 2, "prediction": 2.5}\n',
            "{path} has no score records (2 forecast records): run with edgeseq run --score",
        ),
        (
            '{"row": 1, "prediction": 2.0}\n\n{"row": 2, "predic',
            '{path} line 3: not a JSON object: \'{{"row": 2, "predic\'',
        ),
        ("[1, 2]\n", "{path} line 1: not a JSON object: '[1, 2]'"),
        (
            "row,time,prediction\n36,2016-05-07 10:30:00,28.6\n",
            "{path} line 1: not a JSON object: 'row,time,prediction' (a CSV record file? edgeseq report reads the "
            "JSON lines of edgeseq run --score, --format jsonl)",
        ),
        (
            '{"kind": "score", "row": 7, "prediction": null, "actual": 2.0}\n',
            "{path} line 1: a score record whose 'prediction' is 'null', not a finite number",
        ),
        (
            '{"kind": "score", "row": 7, "prediction": 1.0, "actual": NaN}\n',
            "{path} line 1: a score record whose 'actual' is 'NaN', not a finite number",
        ),
        (b"\xff\xfe{}\n", "{path} line 1: not UTF-8 text (invalid start byte)"),
    ],
    ids=[
        "missing",
        "empty",
        "no scores",
        "not JSON",
        "not an object",
        "CSV records",
        "no prediction",
        "NaN actual",
        "not UTF-8",
    ],
)
def test_records_that_cannot_be_reported_are_one_line_and_exit_2(tmp_path: Path, content, message: str):
    records, out = tmp_path / "run.jsonl", tmp_path / "report.html"
    if isinstance(content, bytes):
        records.write_bytes(content)
    elif content is not None:
        records.write_text(content)
    result = report("--records", records, "--out", out)
    assert result.exit_code == 2, result.output
    assert result.stderr == f"edgeseq: error: {message.format(path=records)}\n"
    assert not out.exists() and not (tmp_path / "report_files").exists()


def test_an_out_in_a_missing_folder_is_refused_before_reading(tmp_path: Path):
    records = tmp_path / "run.jsonl"
    write_fixture(records)
    out = tmp_path / "nowhere" / "report.html"
    result = report("--records", records, "--out", out)
    assert result.exit_code == 2
    assert result.stderr == f"edgeseq: error: cannot write {out}: folder {out.parent} does not exist\n"


def test_files_in_a_missing_folder_or_over_a_file_are_refused_before_reading(tmp_path: Path):
    records, out = tmp_path / "run.jsonl", tmp_path / "report.html"
    write_fixture(records)
    files = tmp_path / "nowhere" / "pngs"
    result = report("--records", records, "--out", out, "--files", files)
    assert result.exit_code == 2
    assert result.stderr == f"edgeseq: error: cannot make {files}: folder {files.parent} does not exist\n"
    (tmp_path / "report_files").write_text("a file")
    result = report("--records", records, "--out", out)
    assert result.exit_code == 2
    assert result.stderr == f"edgeseq: error: cannot make {tmp_path / 'report_files'}: a file of that name is there\n"
    assert not out.exists()


def test_options_the_parser_refuses_exit_2(tmp_path: Path):
    result = report("--records", tmp_path / "run.jsonl", "--keys", "0")
    assert result.exit_code == 2 and "Invalid value for '--keys'" in result.output


def test_without_matplotlib_the_error_gives_the_install_command(tmp_path: Path, monkeypatch):
    import importlib.util

    from edgeseq.frameworks import install_command

    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "matplotlib" else real_find_spec(name, *a)
    )
    records = tmp_path / "run.jsonl"
    write_fixture(records)
    result = report("--records", records, "--out", tmp_path / "report.html")
    assert result.exit_code == 2
    assert result.stderr == (
        f"edgeseq: error: edgeseq report needs matplotlib, which is not installed: {install_command('report')}\n"
    )


def stream_pixels(png: Path) -> int:
    """Pixels of the stream's faint colour (grid lines and antialiased edges have some too)."""
    from edgeseq.report.charts import STREAM

    return near(assert_drawn_png(png), STREAM)


def test_the_stream_is_drawn_faintly_behind_the_actuals(tmp_path: Path):
    records, stream = tmp_path / "run.jsonl", tmp_path / "sensor.csv"
    write_fixture(records)
    # k1's raw readings every minute over its target times, a bad row and another key's row among them
    rows = ["# logger 7", "date;key;T2"] + [
        f"2016-05-20 11:{m:02d}:00;k1;{21 + m / 10:.2f}".replace(".", ",") for m in range(31)
    ]
    rows[12] = "2016-05-20 11:10:00;k1;oops"
    rows.append("2016-05-20 11:15:00;k9;99,0")
    stream.write_text("\n".join(rows) + "\n")
    out = tmp_path / "report.html"
    result = report(
        "--records",
        records,
        "--out",
        out,
        "--stream",
        stream,
        "--target",
        "T2",
        "--time-column",
        "date",
        "--key-column",
        "key",
    )
    assert result.exit_code == 0, result.output
    assert (
        "key k1, each line: all 4 points plotted; the stream&#x27;s raw target: all 30 points plotted"
        in out.read_text()
    )
    with_stream = stream_pixels(tmp_path / "report_files" / "forecast.png")
    without = report("--records", records, "--out", out)
    assert without.exit_code == 0
    assert with_stream > 2 * stream_pixels(tmp_path / "report_files" / "forecast.png") + 500
    refused = report("--records", records, "--out", out, "--stream", stream)
    assert refused.exit_code == 2
    assert refused.stderr == (
        "edgeseq: error: --stream needs the stream's target and time columns: --target NAME and --time-column NAME, "
        "or --model FILE, a forecaster whose manifest names them\n"
    )


def test_the_models_manifest_names_the_streams_columns(tmp_path: Path):
    import csv

    from tests.conftest import EXPORTED

    with open(EXPORTED / "sensor.csv", newline="") as f:
        rows = [(row["date"], float(row["T2"])) for row, _ in zip(csv.DictReader(f), range(101), strict=False)]
    records, out = tmp_path / "run.jsonl", tmp_path / "report.html"
    lines = [
        {"kind": "score", "row": 36 + i, "time": when, "target_time": when}
        | {"prediction": t2 + 0.1, "actual": t2, "persistence": rows[i - 1][1]}
        for i, (when, t2) in enumerate(rows)
        if i
    ]
    records.write_text("".join(json.dumps(line) + "\n" for line in lines))
    sample, model = EXPORTED / "sensor.csv", EXPORTED / "sensor_lstm.onnx"
    result = report("--records", records, "--out", out, "--stream", sample, "--model", model)
    assert result.exit_code == 0, result.output
    assert "each line: all 100 points plotted; the stream&#x27;s raw target: all 100 points plotted" in out.read_text()

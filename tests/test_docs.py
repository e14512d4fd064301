"""The docs match the code: commands documented, the README's commands are the ones CI runs, lint clean."""

import json
import re
import subprocess
import sys

import pytest
from typer.testing import CliRunner

from edgeseq.cli import app
from tests.conftest import REPO

README = (REPO / "README.md").read_text()
COMMANDS = sorted(c.name or c.callback.__name__ for c in app.registered_commands) + [
    f"{group.name} {c.name or c.callback.__name__}"
    for group in app.registered_groups
    for c in group.typer_instance.registered_commands
]


def readme_shell_blocks() -> list[str]:
    return re.findall(r"```sh\n(.*?)```", README, flags=re.S)


def test_there_are_commands():
    assert {"export", "letters", "info", "train forecaster"} <= set(COMMANDS)


@pytest.mark.parametrize("command", COMMANDS)
def test_every_command_has_help_and_a_readme_section(command):
    result = CliRunner().invoke(app, [*command.split(), "--help"])
    assert result.exit_code == 0
    assert len(result.stdout.strip().splitlines()) > 3
    assert f"### `edgeseq {command}`" in README


def test_setup_is_two_commands_and_ci_runs_the_test_one():
    install_and_run, install_and_test = (block.strip() for block in readme_shell_blocks()[:2])
    assert "\n" not in install_and_run and "\n" not in install_and_test
    assert "pip install ." in install_and_run and "edgeseq " in install_and_run
    assert "pytest" in install_and_test
    ci = (REPO / ".ci" / "run").read_text()
    assert install_and_test in ci.splitlines()


def test_ruff_check_and_format_are_clean():
    for args in (["check", "."], ["format", "--check", "."]):
        proc = subprocess.run([sys.executable, "-m", "ruff", *args], cwd=REPO, capture_output=True, text=True)
        assert proc.returncode == 0, proc.stdout + proc.stderr


def test_changelog_has_an_unreleased_section():
    assert "## Unreleased" in (REPO / "CHANGELOG.md").read_text()


def _in_a_fresh_directory(tmp_path):
    """An empty directory where `exported/` is the repository's (read-only use): snippets write only here."""
    (tmp_path / "exported").symlink_to(REPO / "exported")
    return tmp_path


def _without_section(text: str, title: str) -> str:
    before, section = text.split(f"## {title}\n", 1)
    return before + section.split("\n## ", 1)[1]


def test_the_readme_python_snippets_run(tmp_path):
    # the walk-through and the programs that use the model without edgeseq have their own tests
    rest = _without_section(_without_section(README, "Your own Keras model"), "Using the model without edgeseq")
    blocks = re.findall(r"```python\n(.*?)```", rest, flags=re.S)
    assert blocks
    cwd = _in_a_fresh_directory(tmp_path)
    for block in blocks:
        proc = subprocess.run([sys.executable, "-c", block], cwd=cwd, capture_output=True, text=True, timeout=120)
        assert proc.returncode == 0, block + proc.stderr


def test_the_your_own_keras_model_walk_through_runs_as_written(tmp_path):
    section = README.split("## Your own Keras model", 1)[1].split("\n## ", 1)[0]
    (script,) = re.findall(r"```python\n(.*?)```", section, flags=re.S)
    commands = [c.strip() for block in re.findall(r"```sh\n(.*?)```", section, flags=re.S) for c in block.splitlines()]
    assert [c.split()[:2] for c in commands] == [["edgeseq", "export"], ["edgeseq", "run"]]
    proc = subprocess.run([sys.executable, "-c", script], cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    printed = []
    for command in commands:
        args = [sys.executable, "-m", "edgeseq", *command.split()[1:]]
        proc = subprocess.run(args, cwd=tmp_path, capture_output=True, text=True, timeout=300)
        assert proc.returncode == 0, command + proc.stderr
        printed.append(proc.stdout)
    # the summary line as the README shows it; its size figure is for a Keras file at /tmp/walk/activity.keras
    shown = re.search(r"\n    (activity: .*)\n", section).group(1)
    said = next(line for line in printed[0].splitlines() if line.startswith("activity: "))
    number = r"\(([\d,]+) bytes\), parity max abs diff ([\d.e+-]+) over (\d+) windows"
    (size, diff, windows), (readme_size, _, readme_windows) = (re.search(number, t).groups() for t in (said, shown))
    assert re.sub(number + r".*", "", said) == re.sub(number + r".*", "", shown)
    assert windows == readme_windows and float(diff) <= 1e-5
    expected = (
        int(readme_size.replace(",", "")) + len(str(tmp_path / "activity.keras")) - len("/tmp/walk/activity.keras")
    )
    assert abs(int(size.replace(",", "")) - expected) <= 0.01 * expected, (size, expected)  # Keras/tf2onnx versions
    records = [json.loads(line) for line in (tmp_path / "activity.jsonl").read_text().splitlines()]
    assert len(records) == 300 - 32 + 1 == int(re.search(r"\b(\d+) records, one per window", section).group(1))
    assert records[0] == {**records[0], "row": 32, "time": "1.24"}
    manifest = json.loads((tmp_path / "exported" / "activity.json").read_text())
    assert manifest["fusion"]["found_fused"] == {"GRU (bidirectional)": 1, "LSTM": 1}
    # the recording is 100 rows still, 100 walking, 100 running: the stretches well inside each are named right
    labels = {r["row"]: r["label"] for r in records}
    assert [labels[90], labels[190], labels[290]] == ["still", "walk", "run"]


PLACEHOLDER = re.compile(r"^[A-Z][A-Z0-9_|,.\-\[\]]*$")


def _synopsis_options() -> list[tuple[str, str, str]]:
    """(command, option, value) for every `[--option VALUE]` in the README's synopsis blocks."""
    found = []
    for command in COMMANDS:
        section = README.split(f"### `edgeseq {command}`", 1)[1].split("\n### ", 1)[0]
        block = re.search(r"```sh\n(.*?)```", section, flags=re.S).group(1)
        synopsis = " ".join(line.strip() for line in block.splitlines() if not line.startswith("#"))
        synopsis = synopsis.split(f"edgeseq {command} ", 1)[1] if f"edgeseq {command} " in synopsis else ""
        found += [(command, opt, value) for opt, value in re.findall(r"\[(--[\w-]+) ([^\]\s]+)\]", synopsis)]
    return found


def test_synopsis_values_are_defaults_or_placeholders():
    # `[--time-column date]` read like a default, but the option has none: a value in a synopsis is the
    # option's default, a list of choices that holds it, or an upper-case placeholder.
    import typer.main

    group = typer.main.get_command(app)
    options = _synopsis_options()
    assert len(options) > 20
    for command, opt, value in options:
        cmd = group
        for part in command.split():
            cmd = cmd.commands[part]
        param = next(p for p in cmd.params if opt in p.opts)
        default = getattr(param.default, "value", param.default)
        if PLACEHOLDER.match(value):
            continue
        if "|" in value:
            assert str(default) in value.split("|"), (command, opt, value, default)
        else:
            assert default is not None and value == str(default), (command, opt, value, default)


def test_the_bench_extra_size_in_the_readme_is_what_it_installs():
    import importlib.metadata as md
    import os

    from packaging.requirements import Requirement

    seen: set[str] = set()
    todo = [("edgeseq", ("bench",))]
    while todo:
        name, extras = todo.pop()
        key = re.sub(r"[-_.]+", "-", name).lower() + str(sorted(extras))
        if key in seen:
            continue
        seen.add(key)
        try:
            dist = md.distribution(name)
        except md.PackageNotFoundError:
            continue
        for text in dist.requires or []:
            req = Requirement(text)
            if req.marker is None or any(req.marker.evaluate({"extra": e}) for e in (*extras, "")):
                todo.append((req.name, tuple(req.extras)))
    names = {k.split("[")[0] for k in seen}
    total = 0
    for name in names:
        dist = md.distribution(name)
        total += sum(os.path.getsize(dist.locate_file(f)) for f in dist.files or [] if dist.locate_file(f).exists())
    claimed = re.search(r"about ([\d.]+) GB installed: the files of the (\d+) distributions", README)
    assert claimed, "the README states the bench extra's size"
    assert float(claimed.group(1)) == pytest.approx(total / 1e9, rel=0.15), total
    assert int(claimed.group(2)) == pytest.approx(len(names), abs=5)


def test_the_training_on_your_own_data_example_runs_and_its_data_figures_hold(tmp_path):
    """The worked example's two commands, as written but for a 1-epoch tiny LSTM (its RMSE figures come from
    the full run and depend on the CPU; the figures about reading the file do not, and are checked here)."""
    section = README.split("## Training on your own data", 1)[1].split("\n## ", 1)[0]
    commands = [c.strip() for block in re.findall(r"```sh\n(.*?)```", section, flags=re.S) for c in block.splitlines()]
    assert [c.split()[:3] for c in commands] == [["edgeseq", "train", "forecaster"], ["edgeseq", "run", "--model"]]
    data = REPO / "src" / "edgeseq" / "datasets" / "nyc_airport_weather.csv.xz"
    fast = ["--epochs", "1", "--units", "4,4"]
    for command, extra in zip(commands, (fast, []), strict=True):
        # the bundled file by its absolute path, as the commands run in a scratch folder
        command = command.replace("src/edgeseq/datasets/nyc_airport_weather.csv.xz", str(data))
        args = [sys.executable, "-m", "edgeseq", *command.split()[1:], *extra]
        proc = subprocess.run(args, cwd=tmp_path, capture_output=True, text=True, timeout=600)
        assert proc.returncode == 0, command + proc.stderr
    manifest = json.loads((tmp_path / "exported" / "airport_temp.json").read_text())
    report, split = manifest["data"], manifest["split"]
    assert report["keys"] == 3 and report["gaps_in_time"] == 11 and report["rows_filled"] == 2063
    assert report["empty_slots_filled"] == 33 and manifest["series"]["grid_origin"] == "1970-01-01 00:00:00"
    assert report["missing_values"] == {"temp": 1, "dewp": 1, "humid": 1, "pressure": 2729, "wind_speed": 4}
    assert report["rows_dropped"] == {"missing value": {"rows": 669, "first_lines": [379, 381, 383, 384, 386]}}
    assert manifest["series"]["interval_seconds"] == 3600.0
    assert [split[p]["windows"] for p in ("train", "validation", "test")] == [13271, 3291, 2689]
    assert all(split[p]["keys"] == 3 for p in ("train", "validation", "test"))
    for figure in ("2,729", "2,063", "669", "11 gaps in time", "33 empty hourly slots", "13,271 / 3,291 / 2,689"):
        assert figure in section
    records = [json.loads(line) for line in (tmp_path / "airport.jsonl").read_text().splitlines()]
    first = re.search(
        r'\{"row": (\d+), "time": "([^"]+)", "key":\s+"(\w+)", "prediction": \.\.\., "target_time": "([^"]+)"\}',
        section,
    )
    assert (records[0]["row"], records[0]["time"], records[0]["key"]) == (int(first[1]), first[2], first[3])
    assert records[0]["target_time"] == first[4]
    assert {r["key"] for r in records} == {"EWR", "JFK", "LGA"}
    assert f"writes {len(records):,} records, one per gap-free" in section
    refused = subprocess.run(
        [
            *args[:3], "train", "forecaster", "--data", str(data), "--features", "temp,wind_gust", "--target", "temp",
            "--time-column", "time_hour", "--group-by", "origin", "--fill-gaps", "2", "--out", str(tmp_path / "x"),
        ],
        cwd=tmp_path, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert refused.returncode == 2 and "'wind_gust' in 14,399 of 18,280 (79%)" in refused.stderr
    assert "missing in 79% of the training rows" in section


def test_the_programs_without_edgeseq_in_the_readme_are_the_tested_examples():
    """tests/test_bindings.py runs examples/without_edgeseq/; the README shows those files, verbatim."""
    section = README.split("## Using the model without edgeseq\n", 1)[1].split("\n## ", 1)[0]
    blocks = dict(re.findall(r"```(python|js|c)\n(.*?)```", section, flags=re.S))
    examples = REPO / "examples" / "without_edgeseq"
    assert blocks == {
        "python": (examples / "forecast.py").read_text(),
        "js": (examples / "forecast.mjs").read_text(),
        "c": (examples / "forecast.c").read_text(),
    }

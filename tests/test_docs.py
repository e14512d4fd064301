"""The docs match the code: commands documented, the README's commands are the ones CI runs, lint clean."""

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

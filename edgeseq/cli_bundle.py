"""`edgeseq bundle`: exported models, their runner and its wheels in one folder for a box with no network."""

from __future__ import annotations

import sys
from enum import Enum
from pathlib import Path

import typer

from edgeseq.cli_output import EXPORTED, RichProgress, user_errors


class Platform(str, Enum):
    linux_aarch64 = "linux-aarch64"
    linux_x86_64 = "linux-x86_64"


def bundle(
    model: list[Path] = typer.Option(
        [EXPORTED / "sensor_lstm.dynamic-int8.onnx"],
        "--model",
        metavar="FILE",
        help="An exported model (its manifest beside it); repeat for several. The first is the one the service "
        "and install.sh's smoke test run.",
    ),
    platform: Platform = typer.Option(..., "--platform", help="The box: an ARM64 board or an x86-64 PC."),
    python: str = typer.Option(
        "3.11", "--python", metavar="X.Y", help="The box's Python (3.11, 3.12 or 3.13): the wheels are built for it."
    ),
    out: Path = typer.Option(
        ..., "--out", metavar="DIR|FILE.tar.gz", help="A new folder, or a tarball when the name ends in .tar.gz."
    ),
    sample: Path | None = typer.Option(
        None,
        "--sample",
        metavar="FILE",
        help="A CSV for install.sh's smoke test (default: the sample recorded in the first model's manifest).",
    ),
) -> None:
    """Bundle models, the device runtime and its wheels for an offline install on an edge box.

    The folder (or tarball) holds wheels/ (edgeseq-device built from this tree, with numpy and onnxruntime at
    the versions installed here, as binary wheels for --platform and --python, fetched with pip download:
    this needs the network, the box does not), models/ (each model with its manifest, and a sample stream),
    install.sh (checks SHA256SUMS, makes a venv, pip install --no-index, runs the first model on the sample
    and prints the first forecast), a systemd unit with its settings (edgeseq.service.in, edgeseq.env.in:
    a followed file or a FIFO in, JSON lines out, restarted on failure, SIGTERM a clean stop with exit 143,
    reload = SIGHUP), a README for the box and SHA256SUMS. Copy it over, run ./install.sh there.
    """
    progress = RichProgress()
    with user_errors():
        from edgeseq.bundle import make_bundle

        command = "edgeseq " + " ".join(sys.argv[1:]) if sys.argv[1:2] == ["bundle"] else "edgeseq bundle"
        try:
            result = make_bundle(
                list(model), platform.value, out, python=python, sample=sample, command=command, progress=progress
            )
        finally:
            progress.close()
        typer.echo(
            f"{result.path}: {result.files} files, {result.size / 1e6:.1f} MB, for {platform.value}, Python {python} "
            f"({result.seconds:.1f} s); on the box: ./install.sh"
        )

"""`edgeseq bundle`: exported models, their runner and its wheels in one folder for a box with no network."""

from __future__ import annotations

import sys
from pathlib import Path

import typer

from edgeseq.cli_output import EXPORTED, RichProgress, choice, user_errors


def bundle(
    model: list[Path] = typer.Option(
        [EXPORTED / "sensor_lstm.dynamic-int8.onnx"],
        "--model",
        metavar="FILE",
        help="An exported model (its manifest beside it); repeat for several. The first is the one the service "
        "and install.sh's smoke test run.",
    ),
    platform: str = typer.Option(
        ...,
        "--platform",
        parser=choice("linux-aarch64", "linux-x86_64"),
        metavar="PLATFORM",
        help="The box: linux-aarch64 (an ARM64 board) or linux-x86_64 (a PC).",
    ),
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
    sign_key: Path | None = typer.Option(
        None,
        "--sign-key",
        metavar="KEY",
        help="Sign the bundle with this private key (PEM, elliptic curve): each model (models/<name>.sig, OMS), "
        "SHA256SUMS (SHA256SUMS.sig) and a tarball (<out>.sig beside it). On the box, install.sh --trust "
        "PUBLIC.pem installs it only if the signature verifies, and the service runs with that trust.",
    ),
) -> None:
    """Bundle models, the device runtime and its wheels for an offline install on an edge box.

    The folder (or tarball) holds wheels/ (edgeseq-device, the runtime installed here, with numpy and onnxruntime at
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
                list(model),
                platform,
                out,
                python=python,
                sample=sample,
                command=command,
                progress=progress,
                sign_key=sign_key,
            )
        finally:
            progress.close()
        size = f"{result.size / 1e6:.1f} MB" + (
            f" unpacked, {result.archive_size / 1e6:.1f} MB as a tarball" if result.archive_size is not None else ""
        )
        typer.echo(
            f"{result.path}: {result.files} files, {size}, for {platform}, Python {python} ({result.seconds:.1f} s)"
        )
        typer.echo(f"on the box, as root: {result.on_the_box()}")
        if result.signed_by is not None:
            typer.echo(
                f"signed by key {result.signed_by[:16]}…: give the box its public half, not from the bundle "
                "(install.sh --trust PUBLIC.pem, or /etc/edgeseq/trusted/)"
            )

"""The `edgeseq` command: a thin typer front end; the work lives in plain functions it calls."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from enum import Enum
from pathlib import Path
from typing import Any

import typer

import edgeseq
from edgeseq.errors import EdgeseqError
from edgeseq_device.errors import DeviceError

app = typer.Typer(
    name="edgeseq",
    help="Keras sequence models to small, fast, verified ONNX files, run on edge devices.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

EXPORTED = Path("exported")
DEFAULT_LETTER_MODEL = EXPORTED / "letter_rnn.onnx"

# Exit codes: 0 done; 1 the work failed its own checks (parity, training bar); 2 bad input, model or usage;
# 130 interrupted.
EXIT_FAILED, EXIT_BAD_INPUT, EXIT_INTERRUPTED = 1, 2, 130


def _error(message: str) -> None:
    typer.echo(f"edgeseq: error: {message}", err=True)


@contextmanager
def user_errors() -> Iterator[None]:
    """Turn the library's typed errors into one line on stderr and an exit code, never a traceback."""
    try:
        yield
    except DeviceError as exc:
        _error(str(exc))
        raise typer.Exit(EXIT_BAD_INPUT) from None
    except EdgeseqError as exc:
        _error(str(exc))
        raise typer.Exit(EXIT_FAILED) from None
    except KeyboardInterrupt:
        _error("interrupted")
        raise typer.Exit(EXIT_INTERRUPTED) from None


class RichProgress:
    """Progress on stderr: one line per stage, a bar over training epochs."""

    def __init__(self) -> None:
        from rich.console import Console

        self.console = Console(stderr=True)
        self._bar: Any = None

    def step(self, message: str) -> None:
        self.close()
        self.console.print(f"[bold cyan]•[/] {message}")

    def epoch(self, epoch: int, epochs: int, logs: dict[str, float]) -> None:
        if self._bar is None:
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

            self._bar = Progress(
                TextColumn("  epoch"),
                BarColumn(),
                MofNCompleteColumn(),
                TimeElapsedColumn(),
                TextColumn("{task.fields[logs]}"),
                console=self.console,
            )
            self._bar.start()
            self._task = self._bar.add_task("training", total=epochs, logs="")
        shown = " ".join(f"{k} {v:.4g}" for k, v in logs.items())
        self._bar.update(self._task, completed=epoch, logs=shown)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.stop()
            self._bar = None


class ModelChoice(str, Enum):
    all = "all"
    letter_rnn = "letter_rnn"


def _version(value: bool) -> None:
    if value:
        typer.echo(f"edgeseq {edgeseq.__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(False, "--version", callback=_version, is_eager=True, help="Print the version."),
) -> None:
    """Keras sequence models to small, fast, verified ONNX files, run on edge devices."""


@app.command()
def export(
    model: ModelChoice = typer.Option(ModelChoice.all, "--model", help="Which model to build."),
    out: Path = typer.Option(EXPORTED, "--out", help="Directory the artifacts are written to."),
    retrain: bool = typer.Option(False, "--retrain", help="Train again even if a Keras model exists in --out."),
    opset: int = typer.Option(17, "--opset", min=17, help="ONNX opset to convert to."),
) -> None:
    """Train (when no Keras model exists, or with --retrain), convert to ONNX, check parity, write artifacts.

    Writes <name>.keras, <name>.onnx and the JSON manifest <name>.json to --out. Files are moved into place
    only after conversion, the ONNX checker and the Keras-vs-onnxruntime parity check have all passed.
    Needs the training extra: pip install 'edgeseq[train]'.
    """
    progress = RichProgress()
    with user_errors():
        from edgeseq.export import export_letter_rnn

        try:
            result = export_letter_rnn(out, retrain=retrain, opset=opset, progress=progress)
        finally:
            progress.close()
        parity = result.manifest["parity"]["all_sequences"]
        size = result.manifest["files"][result.onnx_path.name]["size"]
        typer.echo(
            f"{result.manifest['name']}: {result.onnx_path} ({size:,} bytes), "
            f"parity max abs diff {parity['max_abs_diff']:.2g} over {parity['compared']}, "
            f"{result.seconds:.1f} s"
        )


@app.command()
def letters(
    sequences: list[str] | None = typer.Argument(
        None,
        help="Sequences of 4 letters from 'abcde'. With none, one per line is read from stdin.",
        show_default=False,
    ),
    model: Path = typer.Option(DEFAULT_LETTER_MODEL, "--model", help="The letter model's ONNX file."),
) -> None:
    """Predict the letter that follows each sequence, through the device runtime (onnxruntime, no Keras).

    Prints 'abcd -> e' per input. A bad input (a letter outside the vocabulary, a wrong length, an empty
    line) stops the run with a one-line error and exit code 2; the inputs before it are still answered.
    """
    from edgeseq_device.letters import LetterPredictor, numbered, predict_each
    from edgeseq_device.model import load_model

    with user_errors():
        predictor = LetterPredictor(load_model(model))
        if sequences:
            inputs = numbered("argument", sequences)
        else:
            if sys.stdin.isatty():
                typer.echo("type one sequence per line; Ctrl-D ends", err=True)
            inputs = numbered("stdin line", sys.stdin)
        for sequence, letter in predict_each(predictor, inputs):
            typer.echo(f"{sequence} -> {letter}")
            sys.stdout.flush()


def _format_info(d: dict[str, Any]) -> str:
    def tensors(specs: list[dict[str, Any]]) -> str:
        return ", ".join(f"{s['name']} {s['dtype']}{s['shape']}" for s in specs)

    ops = d["op_types"]
    lines = [
        f"model       {d['path']}  ({d['size']:,} bytes)",
        f"sha256      {d['sha256']}",
        f"manifest    {d['manifest'] or '-'}  ({d['manifest_check']})",
        f"inputs      {tensors(d['inputs'])}",
        f"outputs     {tensors(d['outputs'])}",
        (
            f"op types    {', '.join(f'{k} {v}' for k, v in ops.items())}  ({sum(ops.values())} nodes)"
            if ops is not None
            else "op types    (install the onnx package to count them: pip install 'edgeseq[train]')"
        ),
    ]
    for key, value in d["metadata"].items():
        lines.append(f"{'metadata' if key == next(iter(d['metadata'])) else '':<12}{key} = {value}")
    for name, figures in (d.get("parity") or {}).items():
        if isinstance(figures, dict):
            lines.append(
                f"parity      {name}: max abs diff {figures['max_abs_diff']:.2g} (atol {figures['atol']:g}) "
                f"over {figures['compared']}"
            )
    return "\n".join(lines)


@app.command()
def info(
    model: Path = typer.Argument(..., help="An ONNX file, e.g. exported/letter_rnn.onnx."),
    as_json: bool = typer.Option(False, "--json", help="Print the description as JSON."),
) -> None:
    """Show a model's inputs and outputs, op-type counts, size, metadata, and whether its manifest matches."""
    from edgeseq.info import describe

    with user_errors():
        description = describe(model)
        typer.echo(json.dumps(description, indent=2) if as_json else _format_info(description))


def main() -> None:
    try:
        app()
    except BrokenPipeError:
        # `edgeseq letters ... | head`: the reader left; what was computed has been written.
        sys.stderr.close()
        sys.exit(0)


if __name__ == "__main__":
    main()

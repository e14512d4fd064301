"""How the CLI speaks: errors as one line and an exit code, progress on stderr, summaries, tables.
No work is done here."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import typer
from typer.core import TyperArgument, TyperCommand

from edgeseq.errors import BadInputError, EdgeseqError, MissingExtraError
from edgeseq.frameworks import install_command
from edgeseq_device.errors import DeviceError

EXPORTED = Path("exported")

# Exit codes: 0 done; 1 the work failed its own checks (parity, training bar); 2 bad input, model or usage,
# or a missing extra (the message gives the pip command); 130 interrupted.
EXIT_FAILED, EXIT_BAD_INPUT, EXIT_INTERRUPTED = 1, 2, 130


def _error(message: str) -> None:
    from edgeseq_device.messages import Messages

    Messages(sys.stderr).say(f"edgeseq: error: {message}")


@contextmanager
def user_errors() -> Iterator[None]:
    """Turn the library's typed errors into one line on stderr and an exit code, never a traceback."""
    try:
        yield
    except (DeviceError, BadInputError, MissingExtraError) as exc:
        _error(str(exc))
        raise typer.Exit(EXIT_BAD_INPUT) from None
    except EdgeseqError as exc:
        _error(str(exc))
        raise typer.Exit(EXIT_FAILED) from None
    except KeyboardInterrupt:
        _error("interrupted")
        raise typer.Exit(EXIT_INTERRUPTED) from None


class _PlainArgument(TyperArgument):
    def display_type_rich(self, ctx: Any) -> str | None:
        return None  # the metavar names it (FILE); typer 0.29 adds '<path>'

    def _usage_display_name(self) -> str:
        name = self.display_name_raw if self.required else f"[{self.display_name_raw}]"
        return name + ("..." if self.nargs != 1 else "")


class PlainArguments(TyperCommand):
    """A command whose arguments show in help as click and most tools show them: FILE when required,
    [SEQUENCE]... when optional and repeated, with no type after a metavar that names them (typer 0.29 shows
    {FILE}, 'FILE <path>' and 'SEQUENCE... <list[str]>')."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        for param in self.params:
            if type(param) is TyperArgument:
                param.__class__ = _PlainArgument


def choice(*names: str):
    """A typer `parser` for an option that takes one of `names`: its refusal names the value and the choices
    ("Invalid value for '--format': 'json': choose jsonl or csv"), where an Enum gets pydantic's wording."""

    def parse(value: str) -> str:
        if value not in names:
            raise typer.BadParameter(f"{value!r}: choose {', '.join(names[:-1])} or {names[-1]}")
        return value

    return parse


def floats(text: str | None, option: str) -> tuple[float, ...] | None:
    """Comma-separated numbers of an option, or a usage error naming it."""
    if text is None:
        return None
    try:
        return tuple(float(v) for v in text.split(","))
    except ValueError:
        raise typer.BadParameter(f"expected comma-separated numbers, got {text!r}", param_hint=option) from None


class RichProgress:
    """Progress on stderr: one line per stage, a bar over training epochs."""

    def __init__(self) -> None:
        from rich.console import Console

        self.console = Console(stderr=True)
        self._bar: Any = None

    def step(self, message: str) -> None:
        from rich.markup import escape

        self.close()
        # Messages carry user paths: 'room[train].csv' is a file name, never markup.
        self.console.print(f"[bold cyan]•[/] {escape(message)}", soft_wrap=True)

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


def export_summary(result: Any) -> str:
    manifest = result.manifest
    size = manifest["files"][result.onnx_path.name]["size"]
    line = f"{manifest['name']}: {result.onnx_path} ({size:,} bytes)"
    for figures in manifest["parity"].values():
        if isinstance(figures, dict):
            line += f", parity max abs diff {figures['max_abs_diff']:.2g} over {figures['compared']}"
    if "metrics" in manifest:
        m = manifest["metrics"]
        line += (
            f", test RMSE on {m['windows']:,} windows: LSTM {m['model']['rmse']:.4g} {m['units']}, ridge "
            f"{m['ridge']['rmse']:.4g}, persistence {m['persistence']['rmse']:.4g}"
        )
    line += f", {result.seconds:.1f} s"
    if "metrics" in manifest and "verdict" in manifest["metrics"]:
        m = manifest["metrics"]
        beaten = m["rmse_ratio_to_ridge"] >= 1 or m["rmse_ratio_to_persistence"] >= 1
        line += f"\n{'warning: ' if beaten else ''}{m['verdict']}"
    entry = manifest.get("batched", {}).get(result.onnx_path.name)
    return line + (f"\n{result.onnx_path.name}: {batched_summary(entry)}" if entry else "")


def variant_summary(variant: Path) -> str:
    from edgeseq_device.manifest import Manifest, manifest_path_for

    manifest = Manifest.load(manifest_path_for(variant)).data
    row = next(v for v in manifest["variants"].values() if v["file"] == variant.name)
    if "test_rmse" in row:
        metric = f"test RMSE {row['test_rmse']:.4g} {row['units']}"
    elif "accuracy_5_patterns" in row:
        metric = f"{row['accuracy_5_patterns']:.0%} on the 5 patterns"
    else:
        metric = f"max abs diff {row['max_abs_diff_vs_fp32']:.2g} from fp32 on {row['compared_on']}"
    line = f"{variant} ({row['size']:,} bytes, {row['size_ratio']:.0%} of fp32), {metric}"
    entry = manifest.get("batched", {}).get(variant.name)
    return line + (f"\n{variant.name}: {batched_summary(entry)}" if entry else "")


def print_bench(result: dict[str, Any]) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(
        title=f"{result['model']}: {result['windows']} windows x {result['rounds']} rounds, {result['threads']} thread"
    )
    for column in ("path", "p50 ms", "p99 ms", "file", "load s", "max abs diff vs Keras"):
        table.add_column(column, justify="left" if column == "path" else "right")
    for row in result["paths"]:
        table.add_row(
            row["path"],
            f"{row['p50_ms']:.4f}",
            f"{row['p99_ms']:.4f}",
            f"{row['file_size']:,}" if row["file_size"] else "-",
            f"{row['load_s']:.3f}",
            f"{row['max_abs_diff_vs_keras']:.2g}" + ("" if row["agrees"] else " !"),
        )
    console = Console()
    console.print(table)
    for name, reason in result.get("failed_paths", {}).items():
        console.print(f"{name} did not run: {reason}", markup=False)
    for label, bar in result["bars"].items():
        console.print(f"{label}: {bar['speedup']:.2f}x (bar {bar['bar']:g}x: {'met' if bar['met'] else 'NOT met'})")
    if result["runner"]:
        console.print(f"edgeseq runner end to end: {result['runner']['rows_per_s']:,.0f} rows/s")
    console.print("peak RSS: " + ", ".join(f"{k} {v:.0f} MB" for k, v in result["peak_rss_mb"].items()))
    batched = result.get("batched")
    if batched and batched["paths"]:
        sizes = [str(size) for size in batched["batch_sizes"]]
        table = Table(title=f"batched: microseconds per window over {batched['windows']} windows, by batch")
        for column in ("path", "one window a call", *(f"batch {size}" for size in sizes)):
            table.add_column(column, justify="left" if column == "path" else "right")
        for name, row in batched["paths"].items():
            us = row["us_per_window"]
            single = f"{us['single-window file']:.1f}" if "single-window file" in us else "-"
            table.add_row(name, single, *(f"{us[size]:.1f}" for size in sizes))
        console.print(table)
    for name, reason in result.get("batched_failed", {}).items():
        console.print(f"{name} not batched: {reason}", markup=False)


def signed_summary(signed: dict[str, Any] | None, path: str) -> str:
    if signed is None:
        return "no (no signature beside it: edgeseq sign --key PRIVATE.pem " + path + ")"
    if "error" in signed:
        return f"{signed['file']}, unreadable: {signed['error']}"
    key = f"by key {signed['key']}" if signed["key"] else "naming no key"
    check = signed.get("check", "not checked here: give --trust PUBLIC.pem")
    return f"{signed['file']}, {key}  ({check})"


def format_info(d: dict[str, Any]) -> str:
    def tensors(specs: list[dict[str, Any]]) -> str:
        return ", ".join(f"{s['name']} {s['dtype']}{s['shape']}" for s in specs)

    ops = d["op_types"]
    lines = [
        f"model       {d['path']}  ({d['size']:,} bytes)",
        f"sha256      {d['sha256']}",
        f"manifest    {d['manifest'] or '-'}  ({d['manifest_check']})",
        f"inputs      {tensors(d['inputs'])}",
        f"outputs     {tensors(d['outputs'])}",
        f"processing  {d['processing']}",
        f"signed      {signed_summary(d['signed'], d['path'])}",
        (
            f"op types    {', '.join(f'{k} {v}' for k, v in ops.items())}  ({sum(ops.values())} nodes)"
            if ops is not None
            else f"op types    (install the onnx package to count them: {install_command('train')})"
        ),
    ]
    for key, value in d["metadata"].items():
        lines.append(f"{'metadata' if key == next(iter(d['metadata'])) else '':<12}{key} = {value}")
    series = d.get("series")
    if series:
        from edgeseq_device.series import SeriesRules
        from edgeseq_device.series import describe as describe_rules

        lines.append(f"series      {describe_rules(SeriesRules.from_json(series))}")
    if d.get("csv"):
        from edgeseq_device.rows import describe_dialect

        lines.append(f"csv         {describe_dialect(d['csv'])}")
    fusion = d.get("fusion")
    if fusion:
        expected = ", ".join(f"{op} x{n}" for op, n in fusion["expected_fused"].items()) or "no recurrent layers"
        found = ", ".join(f"{op} x{n}" for op, n in {**fusion["found_fused"], **fusion["unfused_ops"]}.items())
        verdict = "all fused" if fusion["fused"] else "NOT fused: " + "; ".join(fusion.get("not_fused_because") or [])
        layers = ", ".join(fusion["recurrent_layers"])
        lines.append(f"fusion      {verdict} (layers {layers}; expected {expected}, found {found})")
    for name, figures in (d.get("parity") or {}).items():
        if isinstance(figures, dict):
            lines.append(
                f"parity      {name}: max abs diff {figures['max_abs_diff']:.2g} (atol {figures['atol']:g}) "
                f"over {figures['compared']}"
            )
    if d.get("batched"):
        lines.append(f"batched     {batched_summary(d['batched'])}")
    return "\n".join(lines)


def batched_summary(entry: dict[str, Any]) -> str:
    """One line on a file's batched companion, from its manifest entry: the file, its batch axis, its parity."""
    if "file" not in entry:
        return f"no batched companion: {entry.get('none')}"
    whose = f"the batched companion of {entry['companion_of']}: " if "companion_of" in entry else ""
    sizes = ", ".join(map(str, entry["batch_sizes_checked"]))
    if entry["bit_identical"]:
        parity = f"bit-identical to a window a call at batch {sizes} on {entry['windows']:,} windows"
    else:
        units = f" {entry['units']}" if entry.get("units") else ""
        parity = (
            f"max abs diff {entry['max_abs_diff']:.2g}{units} (median {entry['median_abs_diff']:.2g}) from a window a "
            f"call at batch {sizes} on {entry['windows']:,} windows"
        )
    return f"{whose}{entry['file']}, batch {entry['batch']}, {parity}"

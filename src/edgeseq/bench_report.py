"""How `edgeseq bench` results are kept and shown: the markdown table, the latency plot, the JSON file."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any


def render_markdown(result: dict[str, Any], command: str) -> str:
    lines = [
        "| path | p50 ms | p99 ms | file | load s | max abs diff vs Keras |",
        "|---|---|---|---|---|---|",
    ]
    for row in result["paths"]:
        size = f"{row['file_size']:,} B" if row["file_size"] else "-"
        agrees = "" if row["agrees"] else " (over tolerance)"
        lines.append(
            f"| {row['path']} | {row['p50_ms']:.4f} | {row['p99_ms']:.4f} | {size} | {row['load_s']:.3f} | "
            f"{row['max_abs_diff_vs_keras']:.2g}{agrees} |"
        )
    out = "\n".join(lines)
    for name, reason in result.get("failed_paths", {}).items():
        out += f"\n\n{name} did not run: {reason}"
    if result["bars"]:
        out += "\n\n| bar | speedup | required | met |\n|---|---|---|---|\n"
        out += "\n".join(
            f"| {label} | {r['speedup']:.2f}x | >= {r['bar']:g}x | {'yes' if r['met'] else '**no**'} |"
            for label, r in result["bars"].items()
        )
    if result["runner"]:
        r = result["runner"]
        out += f"\n\nedgeseq runner end to end: {r['rows_per_s']:,.0f} rows/s ({r['rows']:,} rows of sensor.csv)."
    rss = ", ".join(f"{k} {v:.0f} MB" for k, v in result["peak_rss_mb"].items())
    out += f"\n\nPeak RSS of a minimal process that loads and runs the model: {rss}."
    out += render_batched(result)
    m = result["machine"]
    out += (
        f"\n\nMachine: {m['cpu']} ({', '.join(m['cpu_flags'])}), {m['cores']} cores, Python {m['python']}; "
        + ", ".join(f"{k} {v}" for k, v in m["packages"].items())
        + f".\n\nCommand: `{command}`"
    )
    return out


def render_batched(result: dict[str, Any]) -> str:
    """The batched throughput table: microseconds per window by batch size, each file beside its single-window
    file, and the max abs diff from one window a call; then what could not run batched."""
    batched = result.get("batched")
    out = ""
    if batched and batched["paths"]:
        sizes = [str(size) for size in batched["batch_sizes"]]
        out += (
            f"\n\nBatched: microseconds per window over {batched['windows']} windows (median of the rounds), "
            "through each file's batched companion.\n\n"
            f"| path | file | one window a call | {' | '.join(f'batch {size}' for size in sizes)} | max abs diff |\n"
            f"|---|---|---|{'---|' * len(sizes)}---|"
        )
        for name, row in batched["paths"].items():
            us = row["us_per_window"]
            single = f"{us['single-window file']:.1f}" if "single-window file" in us else "-"
            worst = max(row["max_abs_diff_vs_one_window"].values())
            out += (
                f"\n| {name} | {row['file']} | {single} | {' | '.join(f'{us[size]:.1f}' for size in sizes)} | "
                f"{worst:.2g} |"
            )
    for name, reason in result.get("batched_failed", {}).items():
        out += f"\n\n{name} not batched: {reason}"
    return out


def plot(result: dict[str, Any], path: Path) -> None:
    from edgeseq.plots import _pyplot

    plt = _pyplot()
    rows = result["paths"]
    fig, ax = plt.subplots(figsize=(9, 4.5), dpi=100)
    colors = {"Keras": "tab:gray", "LiteRT": "tab:orange", "edgeseq": "tab:blue"}
    ax.barh([r["path"] for r in rows], [r["p50_ms"] for r in rows], color=[colors[r["family"]] for r in rows])
    ax.set_xscale("log")
    ax.invert_yaxis()
    ax.set(xlabel="p50 latency per window, ms (log scale)", title=f"{result['model']}, {result['threads']} thread")
    for i, r in enumerate(rows):
        ax.text(r["p50_ms"], i, f" {r['p50_ms']:.3g}", va="center", fontsize=8)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def save_json(result: dict[str, Any], path: Path) -> None:
    path.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")

"""The batched companion beside each exported file (`<stem>.batched.onnx`): made by edgeseq.convert.batched,
checked on the task's real windows, and recorded in the manifest: its sha256 and size under "files", its figures
under "batched", keyed by the single-window file's name ({"none": why} for a file that has none)."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from edgeseq.convert.batched import BATCH_SIZES, NotBatchable, batched, check

SUFFIX = ".batched.onnx"


@dataclass(frozen=True)
class TaskWindows:
    """The windows a model's companions are checked on, as its files take them, with the bar and what they are."""

    windows: np.ndarray
    atol: float
    what: str
    units: str | None = None


def companion_path(model_path: Path) -> Path:
    """exported/sensor_lstm.dynamic-int8.onnx -> exported/sensor_lstm.dynamic-int8.batched.onnx"""
    return model_path.with_name(model_path.name.removesuffix(".onnx") + SUFFIX)


def is_companion(path: Path) -> bool:
    return path.name.endswith(SUFFIX)


def make_companion(
    model_path: Path, task: TaskWindows, sizes: tuple[int, ...] = BATCH_SIZES
) -> tuple[Path | None, dict[str, Any]]:
    """Write the companion of `model_path` beside it when its graph can take a batch and the companion computes
    every window of `task` as the file does; return its path (None when there is none) and its manifest entry."""
    import onnx

    content = model_path.read_bytes()
    made = None
    try:
        made = batched(onnx.load_from_string(content))
        companion = made.proto.SerializeToString()
        figures = check(content, companion, task.windows, atol=task.atol, sizes=sizes)
    except NotBatchable as exc:
        tried = f"; rewrites tried: {'; '.join(made.rewrites)}" if made is not None and made.rewrites else ""
        try:  # the rewrites may be what failed: a graph traced with its batch unknown needs none
            if not tried:
                raise
            made = batched(onnx.load_from_string(content), rewrite=False)
            companion = made.proto.SerializeToString()
            figures = check(content, companion, task.windows, atol=task.atol, sizes=sizes)
        except NotBatchable:
            companion_path(model_path).unlink(missing_ok=True)  # one written for an earlier file of that name
            return None, {"none": f"{exc}{tried}"}
    path = companion_path(model_path)
    path.write_bytes(companion)
    entry = {"file": path.name, **figures, "compared_on": f"{task.what}, against {model_path.name} a window a call"}
    if task.units:
        entry["units"] = task.units
    entry["rewrites"] = list(made.rewrites)
    return path, entry


def record(manifest: dict[str, Any], model_name: str, companion: Path | None, entry: dict[str, Any]) -> None:
    """Put the companion of `model_name` into `manifest` (in memory): its file entry, and its figures or why none."""
    from edgeseq.export.artifacts import file_entry

    if companion is not None:
        manifest["files"][companion.name] = asdict(file_entry(companion))
    else:
        manifest["files"].pop(companion_path(Path(model_name)).name, None)
    manifest.setdefault("batched", {})[model_name] = entry


def task_windows(manifest: dict[str, Any]) -> TaskWindows:
    """The windows export checked the model's file on (the forecaster's test windows, the letter model's 625
    sequences, a user's model's parity windows), and export's parity bar, for the companions `quantize` makes."""
    from edgeseq.quant_report import task_inputs

    inputs = task_inputs(manifest)
    atol = min(float(f["atol"]) for f in manifest["parity"].values() if isinstance(f, dict) and "atol" in f)
    if inputs["kind"] == "forecaster":
        return TaskWindows(inputs["x"], atol, f"the {len(inputs['x'])} test windows", manifest["target"])
    if inputs["kind"] == "letters":
        return TaskWindows(inputs["x"], atol, f"all {len(inputs['x'])} one-hot sequences")
    return TaskWindows(inputs["x"], atol, inputs["what"])


def add_companions(model_path: Path, variants: list[Path]) -> list[Path]:
    """Write the companions of `variants` (files `quantize` made from `model_path`) and record them in the manifest,
    with the fp32 file's first when the manifest has none (a file exported before companions). A variant has one
    only when its fp32 file has: the fp32 check compares every window with its output alone, which a dynamically
    quantized one cannot. Returns the companions written."""
    import json

    from edgeseq.errors import EdgeseqError
    from edgeseq.export.artifacts import write_json
    from edgeseq_device.manifest import manifest_path_for

    manifest_path = manifest_path_for(model_path)
    manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
    entries = manifest.setdefault("batched", {})
    todo = ([] if model_path.name in entries else [model_path]) + list(variants)
    try:
        task = task_windows(manifest)
    except EdgeseqError as exc:  # the data the windows come from is gone
        for path in todo:
            record(manifest, path.name, None, {"none": f"not checked: {exc}"})
        write_json(manifest_path, manifest)
        return []
    written = []
    for path in todo:
        fp32 = entries.get(model_path.name, {})
        if path != model_path and "file" not in fp32:
            record(manifest, path.name, None, {"none": f"{model_path.name} has none: {fp32.get('none')}"})
            continue
        companion, entry = make_companion(path, task)
        record(manifest, path.name, companion, entry)
        written += [companion] if companion is not None else []
    write_json(manifest_path, manifest)
    return written

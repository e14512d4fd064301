"""Parity between the source Keras model and onnxruntime, and the check that conversion left Keras unchanged."""

from __future__ import annotations

from typing import Any

import numpy as np

from edgeseq.errors import ParityError

PARITY_ATOL = 1e-5


def parity_figures(
    reference: np.ndarray, candidate: np.ndarray, *, atol: float, output: str, what: str, argmax: bool
) -> dict[str, Any]:
    """Compare Keras (`reference`) with onnxruntime (`candidate`); raise ParityError carrying the numbers."""
    diff = np.abs(reference.astype(np.float64) - candidate.astype(np.float64))
    max_abs = float(diff.max())
    max_rel = float((diff / np.maximum(np.abs(reference), 1e-12)).max())
    figures: dict[str, Any] = {
        "compared": what,
        "count": int(reference.shape[0]),
        "max_abs_diff": max_abs,
        "max_rel_diff": max_rel,
        "atol": atol,
    }
    problems = []
    if not max_abs <= atol:
        problems.append(f"max abs diff {max_abs:.3g} > atol {atol:g}")
    if argmax:
        mismatches = int(np.sum(reference.argmax(axis=1) != candidate.argmax(axis=1)))
        figures["argmax_mismatches"] = mismatches
        if mismatches:
            problems.append(f"argmax differs on {mismatches} of {reference.shape[0]}")
    if problems:
        raise ParityError(f"onnxruntime vs Keras on output '{output}' over {what}: {'; '.join(problems)}")
    return figures


def keras_unchanged(before: np.ndarray, after: np.ndarray, name: str) -> None:
    """Raise ParityError unless re-running Keras after conversion gives bit-identical outputs."""
    if not np.array_equal(before, after):
        diff = float(np.max(np.abs(before - after)))
        raise ParityError(f"converting {name} changed the Keras model: its outputs moved by up to {diff:.3g}")

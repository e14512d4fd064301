"""Shared paths and helpers for the test suite."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from tests.brokers import brokers  # noqa: F401 (the fixture, for every test module: real mosquitto brokers)

REPO = Path(__file__).resolve().parents[1]
EXPORTED = REPO / "exported"
LETTER_ONNX = EXPORTED / "letter_rnn.onnx"
LETTER_KERAS = EXPORTED / "letter_rnn.keras"
LETTER_MANIFEST = EXPORTED / "letter_rnn.json"


@pytest.fixture
def letter_copy(tmp_path: Path) -> Path:
    """A private copy of the committed letter model and its manifest, safe to tamper with."""
    for src in (LETTER_ONNX, LETTER_KERAS, LETTER_MANIFEST):
        shutil.copy(src, tmp_path / src.name)
    return tmp_path / LETTER_ONNX.name

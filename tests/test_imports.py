"""The device side never loads a training framework: checked in fresh subprocesses with -X importtime."""

import subprocess
import sys

import pytest

from tests.conftest import EXPORTED, LETTER_ONNX, REPO

SENSOR_ONNX = EXPORTED / "sensor_lstm.onnx"
SENSOR_HEAD = EXPORTED / "sensor.csv"

TRAINING = ("tensorflow", "tf_keras", "tf2onnx", "keras")


def imported_modules(*args: str) -> set[str]:
    """Top-level names of every module a fresh `python -X importtime ARGS` imported."""
    proc = subprocess.run(
        [sys.executable, "-X", "importtime", *args], cwd=REPO, capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    names = set()
    for line in proc.stderr.splitlines():
        if line.startswith("import time:") and "|" in line:
            names.add(line.rsplit("|", 1)[1].strip().split(".")[0])
    return names


@pytest.mark.parametrize(
    "args",
    [
        ("-c", "from edgeseq_device import LetterPredictor, load_model; import edgeseq_device.runner"),
        ("-m", "edgeseq", "letters", "--model", str(LETTER_ONNX), "abcd"),
        ("-m", "edgeseq", "info", str(LETTER_ONNX)),
        ("-m", "edgeseq", "run", "--stream", str(SENSOR_HEAD), "--model", str(SENSOR_ONNX)),
        ("-m", "edgeseq_device", "run", "--stream", str(SENSOR_HEAD), "--model", str(SENSOR_ONNX)),
    ],
    ids=["import edgeseq_device", "edgeseq letters", "edgeseq info", "edgeseq run", "python -m edgeseq_device run"],
)
def test_no_training_framework_is_imported(args):
    names = imported_modules(*args)
    assert "onnxruntime" in names  # the probe sees real imports
    assert not names & set(TRAINING), sorted(names & set(TRAINING))


def test_device_runtime_never_imports_edgeseq():
    names = imported_modules("-c", "import edgeseq_device, edgeseq_device.letters, edgeseq_device.model")
    assert "edgeseq" not in names

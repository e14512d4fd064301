"""The aarch64 harness of tests/emulation.py: Debian's arm64 CPython under qemu-user as a Cortex-A72 makes venvs,
installs the pinned aarch64 wheels offline and runs the exported model with onnxruntime, given an ARM /proc/cpuinfo."""

from __future__ import annotations

import math
import signal
from pathlib import Path

import numpy as np
import onnxruntime
import pytest

from tests.conftest import EXPORTED, REPO
from tests.emulation import PYTHON, WHEELS, aarch64_unavailable, aarch64_venv, require_in_ci, run_aarch64

SENSOR_ONNX = EXPORTED / "sensor_lstm.onnx"
PINS = ["numpy==2.4.6", "onnxruntime==1.32.0"]  # those of .ci/arm64-sysroot.sh, whose wheels are in WHEELS
IMPORT = "import onnxruntime; print(onnxruntime.__version__)"
FORECAST = f"""
import numpy as np, onnxruntime
session = onnxruntime.InferenceSession({str(SENSOR_ONNX.relative_to(REPO))!r})
(forecast,) = session.run(None, {{"window": np.zeros((1, 36, 5), dtype=np.float64)}})
print(repr(float(forecast.item())))
"""


@pytest.fixture(scope="module", autouse=True)
def emulation() -> None:
    reason = aarch64_unavailable()
    if reason is not None:
        require_in_ci(reason)


@pytest.fixture(scope="module")
def venv_python(tmp_path_factory) -> Path:
    """An emulated venv with numpy and onnxruntime installed from the aarch64 wheels, offline."""
    python = aarch64_venv(tmp_path_factory.mktemp("arm64") / "venv")
    result = run_aarch64(
        [python, "-m", "pip", "install", "--disable-pip-version-check", "--no-index", "--find-links", WHEELS, *PINS]
    )
    assert result.returncode == 0, result.stdout + result.stderr
    return python


def test_the_emulated_python_is_an_aarch64_cortex_a72():
    code = "import platform; print(platform.machine()); print(open('/proc/cpuinfo').read())"
    result = run_aarch64([PYTHON, "-c", code])
    assert result.returncode == 0, result.stderr
    machine, cpuinfo = result.stdout.split("\n", 1)
    assert machine == "aarch64"
    assert cpuinfo.count("CPU part\t: 0xd08") == 4  # the Cortex-A72's part number, once per core


def test_onnxruntime_forecasts_under_emulation_as_on_this_host(venv_python: Path):
    result = run_aarch64([venv_python, "-c", FORECAST], cwd=REPO)
    assert result.returncode == 0, result.stderr
    forecast = float(result.stdout)
    assert math.isfinite(forecast)
    (host,) = onnxruntime.InferenceSession(SENSOR_ONNX).run(None, {"window": np.zeros((1, 36, 5))})
    # The graph computes in float32, and the aarch64 build's kernels round otherwise than the x86_64 ones: measured
    # 0.015893382505459363 here against 0.015893374231584628 on the host (8.3e-9 apart). ATOL of test_bindings.py.
    assert forecast == pytest.approx(host.item(), abs=1e-5)


def test_onnxruntime_needs_an_arm_cpuinfo(venv_python: Path, tmp_path: Path):
    """With the host's x86 /proc/cpuinfo, onnxruntime's CPU probe crashes the import (SIGSEGV under qemu 7.2)."""
    with_arm = run_aarch64([venv_python, "-c", IMPORT], cwd=tmp_path)
    assert with_arm.returncode == 0, with_arm.stderr
    assert with_arm.stdout.strip() == "1.32.0"
    with_host = run_aarch64([venv_python, "-c", IMPORT], cwd=tmp_path, cpuinfo=False)
    assert with_host.returncode == -signal.SIGSEGV, (with_host.returncode, with_host.stderr)

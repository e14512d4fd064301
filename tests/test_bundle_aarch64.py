"""`edgeseq bundle --platform linux-aarch64` on an emulated Raspberry Pi 4 (Cortex-A72, qemu-user): its own
install.sh installs its own aarch64 wheels offline into Debian's arm64 Python, and its runner reproduces the
x86-64 forecasts. Skips on a machine without the emulator (`tests/emulation.py` says how to get it); fails
under CI instead."""

import json

import numpy as np
import pytest

from tests.emulation import PYTHON, aarch64_unavailable, require_in_ci, run_aarch64
from tests.helpers import bundle_of_the_forecaster
from tests.streams import LINES, records, run, write_lines

FP32 = "sensor_lstm.onnx"
INT8 = "sensor_lstm.dynamic-int8.onnx"
ROWS = 240  # streamed rows: 205 forecasts at a window of 36
# fp32: the same float32 LSTM arithmetic on both CPUs, summed in other orders (FMA, vector widths): the issue's
# 1e-5 deg C holds (measured under emulation: see the closing note and the README).
# dynamic-int8: onnxruntime quantizes each call's activations to int8 from float32 values that already differ
# in their last bits between the CPUs, and its int8 kernels differ (AVX512-VNNI here, NEON on the Cortex-A72): an
# activation on a rounding boundary moves one int8 step, and that window's forecast with it. Measured under
# emulation over the 205 forecasts: most within 1e-7, the largest 7.1e-4 deg C. The bar is 5e-3 deg C, 7x that:
# a tenth of the variant's own difference from fp32 (0.044 deg C on the test windows, quantization.json) and 1.2%
# of its test RMSE, so a wrong kernel, wheel or input order (which moves forecasts by the quantization error or
# more) fails it. And the typical forecast must agree as fp32 does: median difference <= 1e-5.
ATOL = {FP32: 1e-5, INT8: 5e-3}
MEDIAN_ATOL = 1e-5


@pytest.fixture(scope="module")
def pi(tmp_path_factory):
    """The aarch64 bundle, installed by its own install.sh under emulation, with no network."""
    why = aarch64_unavailable()
    if why is not None:
        require_in_ci(why)
    where = tmp_path_factory.mktemp("pi")
    env, _ = bundle_of_the_forecaster("linux-aarch64", where / "edge")
    folder = where / "edge"
    # install.sh is a host shell script; the python it is given, and every aarch64 program that starts, runs
    # under qemu as a Cortex-A72 (tests/emulation.py)
    installed = run_aarch64(["./install.sh"], cwd=folder, env={**env, "PYTHON": str(PYTHON)}, timeout=900)
    assert installed.returncode == 0, installed.stdout + installed.stderr
    return folder, installed


def test_the_wheels_are_aarch64_and_install_sh_ran_the_smoke_test(pi):
    folder, installed = pi
    assert json.loads((folder / "bundle.json").read_text())["platform"] == "linux-aarch64"
    binary = [p.name for p in (folder / "wheels").iterdir() if not p.name.endswith("-none-any.whl")]
    assert binary and all("aarch64" in name for name in binary), binary
    assert "first forecast: " in installed.stdout
    machine = run_aarch64([folder / "venv" / "bin" / "python", "-c", "import platform; print(platform.machine())"])
    assert machine.stdout.strip() == "aarch64", machine.stderr


@pytest.mark.parametrize("model", [FP32, INT8])
def test_the_emulated_runner_reproduces_the_x86_64_forecasts(pi, model, tmp_path):
    folder, _ = pi
    part = write_lines(tmp_path / "part.csv", LINES[: ROWS + 1])
    emulated = run_aarch64(
        [folder / "venv" / "bin" / "python", "-m", "edgeseq_device", "run", "--stream", part,
         "--model", folder / "models" / model],
        timeout=600,
    )  # fmt: skip
    assert emulated.returncode == 0, emulated.stderr
    ours = records(emulated.stdout)
    reference = records(run("--stream", part, "--model", f"exported/{model}").stdout)
    assert len(ours) == len(reference) == ROWS - 36 + 1
    assert [r["row"] for r in ours] == [r["row"] for r in reference]
    diff = np.abs(np.array([r["prediction"] for r in ours]) - np.array([r["prediction"] for r in reference]))
    figures = f"{model}: max abs diff {diff.max():.3g}, median {np.median(diff):.3g} deg C over {len(diff)} forecasts"
    print(figures)
    assert diff.max() <= ATOL[model] and np.median(diff) <= MEDIAN_ATOL, figures

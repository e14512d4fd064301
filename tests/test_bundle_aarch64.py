"""`edgeseq bundle --platform linux-aarch64` on an emulated Raspberry Pi 4 (Cortex-A72, qemu-user): its own
install.sh installs its own aarch64 wheels offline into Debian's arm64 Python, and its runner reproduces the
x86-64 forecasts. Skips on a machine without the emulator (`tests/emulation.py` says how to get it); fails
under CI instead."""

import json
import signal
import time

import numpy as np
import pytest

from tests.brokers import Collector, publish
from tests.emulation import PYTHON, aarch64_unavailable, require_in_ci, run_aarch64, start_aarch64
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


def test_the_emulated_runner_reads_and_publishes_mqtt(pi, brokers):
    """The bundle's own runner and MQTT client (its paho-mqtt wheel) on the emulated Pi, against a real broker on
    this machine's loopback: readings in, forecasts out, equal to x86-64's within the fp32 bar."""
    folder, _ = pi
    broker = brokers(tls=False, persistence=False)
    gateway = [folder / "venv" / "bin" / "python", "-m", "edgeseq_device", "run",
               "--stream", broker.url("sensors/+/readings"), "--output", broker.url("forecasts/{key}"),
               "--model", folder / "models" / FP32, "--mqtt-credentials", broker.credentials_file,
               "--mqtt-client-id", "pi"]  # fmt: skip
    header = LINES[0].replace('"', "").split(",")
    rows = [dict(zip(header, line.replace('"', "").split(","), strict=True)) for line in LINES[1 : 36 + 5]]
    with Collector(broker, "forecasts/#") as out, Collector(broker, "edgeseq/pi/status") as status:
        proc = start_aarch64(gateway)
        deadline = time.monotonic() + 120  # emulated: seconds to start
        while not status.messages and time.monotonic() < deadline:
            assert proc.poll() is None, proc.communicate()
            time.sleep(0.1)
        publish(broker, [("sensors/pi/readings", json.dumps(row)) for row in rows])
        got = out.wait_for(5, timeout=120)
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=60)
    assert proc.returncode == 143 and "5 predictions" in err, err
    reference = records(run("--stream", write_lines(folder.parent / "mqtt.csv", LINES[: 36 + 5]),
                            "--model", f"exported/{FP32}").stdout)  # fmt: skip
    ours = [json.loads(payload) for _, payload, _ in got]
    assert [r["time"] for r in ours] == [r["time"] for r in reference] and {r["key"] for r in ours} == {"pi"}
    assert max(abs(a["prediction"] - b["prediction"]) for a, b in zip(ours, reference, strict=True)) <= ATOL[FP32]

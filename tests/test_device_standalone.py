"""device/ installs and runs on its own, in a venv that holds only numpy and onnxruntime."""

import re
import subprocess
import venv
from pathlib import Path

from tests.conftest import EXPORTED, REPO

README = (REPO / "README.md").read_text()


def test_device_package_installs_alone_and_predicts(tmp_path: Path):
    env_dir = tmp_path / "venv"
    venv.create(env_dir, with_pip=True)
    python = env_dir / "bin" / "python"
    install = subprocess.run(
        [python, "-m", "pip", "install", "-q", str(REPO / "device")], capture_output=True, text=True, timeout=600
    )
    assert install.returncode == 0, install.stdout[-2000:] + install.stderr[-2000:]
    freeze = subprocess.run([python, "-m", "pip", "freeze"], capture_output=True, text=True).stdout.lower()
    for absent in ("tensorflow", "tf-keras", "tf2onnx", "typer", "edgeseq=="):
        assert absent not in freeze
    # The README says what `pip install ./device` brings; it said "nothing else" while three more came.
    installed = {re.split(r"[=@ ]", line)[0] for line in freeze.splitlines() if line and not line.startswith("#")}
    installed -= {"pip", "setuptools", "edgeseq-device", "edgeseq_device"}
    readme_line = next(line for line in README.splitlines() if line.startswith("pip install ./device"))
    assert installed and all(name in readme_line for name in installed), (installed, readme_line)
    script = (
        "from edgeseq_device import LetterPredictor, load_model\n"
        "p = LetterPredictor(load_model('letter_rnn.onnx'))\n"
        "print(' '.join(p.predict(s) for s in ['abcd', 'bcde', 'cdea', 'deab', 'eabc']))\n"
    )
    run = subprocess.run([python, "-c", script], cwd=EXPORTED, capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    assert run.stdout.strip() == "e a b c d"

    stream = subprocess.run(
        [python, "-m", "edgeseq_device", "run", "--stream", "sensor.csv", "--model", "sensor_lstm.onnx"],
        cwd=EXPORTED, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert stream.returncode == 0, stream.stderr
    records = stream.stdout.splitlines()
    assert len(records) == len((EXPORTED / "sensor.csv").read_text().splitlines()) - 1 - 36 + 1
    assert '"row": 36' in records[0] and "rows read" in stream.stderr

"""examples/without_edgeseq: the exported model forecasts with onnxruntime alone, in Python, Node.js and C, as
`edgeseq run` does (its records are the reference)."""

import csv
import json
import platform
import shutil
import subprocess
import sys
from collections import deque
from pathlib import Path

import pytest

from tests.conftest import EXPORTED, REPO
from tests.helpers import require_in_ci
from tests.streams import LINES, MANIFEST, SENSOR_CSV, SENSOR_ONNX, T, records, run

EXAMPLES = REPO / "examples" / "without_edgeseq"
MODELS = [SENSOR_ONNX, EXPORTED / "sensor_lstm.dynamic-int8.onnx"]
# .ci/run installs these, pinned, from the npm registry into git-ignored folders.
CI_RUN = (REPO / ".ci" / "run").read_text()
NODE_MODULES = REPO / ".cache" / "node" / "node_modules"
NODE_INSTALL = "in the repository's root, " + next(
    line for line in CI_RUN.splitlines() if line.startswith("npm install --prefix .cache/node ")
)
ORT_C = REPO / ".cache" / "onnxruntime-c"
C_INSTALL = "run the lines of .ci/run that fill .cache/onnxruntime-c (npm pack, then tar keeps the header and library)"
ATOL = 1e-5  # T2 in deg C; every example runs the same file through onnxruntime on this CPU, as `edgeseq run` does


def missing(what: str, how: str) -> None:
    """Skip a check whose dependency is absent, saying how to install it; under CI, which installs it, fail."""
    require_in_ci(f"{what} is missing; to install it: {how}")


@pytest.fixture(scope="module")
def reference(tmp_path_factory) -> dict[Path, list[float]]:
    """`edgeseq run` over the whole sample for each model file: one forecast per window, in order."""
    found = {}
    for model in MODELS:
        out = tmp_path_factory.mktemp("reference") / "out.jsonl"
        result = run("--model", model, "--stream", SENSOR_CSV, "--output", out)
        assert result.exit_code == 0, result.output
        recs = records(out.read_text())
        # the sample has no gaps: one window per row from the T-th on, the last one ending on the file's last row
        assert [r["row"] for r in recs] == list(range(T, len(LINES))), model.name
        found[model] = [r["prediction"] for r in recs]
    return found


def last_window() -> str:
    """The last T rows of the sample's feature columns, found by name, one row a line: the C example's stdin."""
    with SENSOR_CSV.open(newline="") as f:
        rows = deque(csv.DictReader(f), maxlen=T)
    return "".join(" ".join(row[name].strip() for name in MANIFEST["features"]) + "\n" for row in rows)


def max_abs_diff(actual: list[float], expected: list[float]) -> float:
    assert len(actual) == len(expected)
    return max(abs(a - e) for a, e in zip(actual, expected, strict=True))


@pytest.mark.parametrize("model", MODELS, ids=lambda m: m.name)
def test_python_example_prints_the_forecast_of_the_last_window(model: Path, reference):
    proc = subprocess.run(
        [sys.executable, EXAMPLES / "forecast.py", model, SENSOR_CSV],
        cwd=REPO, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    diff = max_abs_diff([float(proc.stdout)], reference[model][-1:])
    # measured: 0.0 for both files, the same float64 bits (the venv's onnxruntime 1.32.0, as in `edgeseq run`)
    assert diff <= ATOL, f"forecast.py printed {proc.stdout.strip()}, edgeseq run {reference[model][-1]}: {diff:.3g}"


@pytest.mark.parametrize("model", MODELS, ids=lambda m: m.name)
def test_node_example_forecasts_every_window_as_edgeseq_run(model: Path, reference, tmp_path: Path):
    node = shutil.which("node")
    if node is None:
        missing("node", "apt-get install nodejs")
    if not (NODE_MODULES / "onnxruntime-node").is_dir():
        missing(f"onnxruntime-node in {NODE_MODULES.relative_to(REPO)}", NODE_INSTALL)
    # Node resolves an ES module's imports beside the script, never through NODE_PATH: run a copy that has the cached
    # node_modules beside it (a symlinked script would resolve from its real place).
    script = tmp_path / "forecast.mjs"
    shutil.copy(EXAMPLES / "forecast.mjs", script)
    (tmp_path / "node_modules").symlink_to(NODE_MODULES)
    proc = subprocess.run(
        [node, script, model, SENSOR_CSV, "--all"], cwd=REPO, capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == 0, proc.stderr
    printed = [float(line) for line in proc.stdout.split()]
    expected = reference[model]
    assert len(printed) == len(expected), f"node printed {len(printed)} forecasts, edgeseq run made {len(expected)}"
    diff = max_abs_diff(printed, expected)
    # measured: 0.0 for both files, all 2926 windows bit-identical (onnxruntime-node 1.30.0 against `edgeseq run`'s
    # onnxruntime 1.32.0, on an AVX-512 Xeon)
    assert diff <= ATOL, f"max abs diff over {len(expected)} windows of {model.name}: {diff:.3g} deg C"


@pytest.fixture(scope="module")
def c_example(tmp_path_factory) -> Path:
    gcc = shutil.which("gcc")
    if gcc is None:
        missing("gcc", "apt-get install gcc")
    if not (ORT_C / "include" / "onnxruntime_c_api.h").is_file() or not (ORT_C / "lib" / "libonnxruntime.so").is_file():
        missing(f"the onnxruntime C header and library in {ORT_C.relative_to(REPO)}", C_INSTALL)
    if platform.machine() != "x86_64":
        pytest.skip(f"the cached libonnxruntime.so is for x86_64, this machine is {platform.machine()}")
    exe = tmp_path_factory.mktemp("c") / "forecast"
    lib = ORT_C / "lib"
    build = subprocess.run(
        [gcc, "-std=c99", "-O2", "-Wall", "-Wextra", "-Werror", EXAMPLES / "forecast.c", "-I", ORT_C / "include",
         "-L", lib, "-lonnxruntime", f"-Wl,-rpath,{lib}", "-o", exe],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert build.returncode == 0, build.stderr
    return exe


@pytest.mark.parametrize("model", MODELS, ids=lambda m: m.name)
def test_c_example_prints_the_forecast_of_the_last_window(model: Path, reference, c_example: Path):
    features = MANIFEST["features"]
    proc = subprocess.run(
        [c_example, model, str(T), str(len(features))], input=last_window(), capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 0, proc.stderr
    diff = max_abs_diff([float(proc.stdout)], reference[model][-1:])
    # measured: 0.0 for both files, the same float64 bits (the C library of onnxruntime 1.29.0)
    assert diff <= ATOL, f"forecast.c printed {proc.stdout.strip()}, edgeseq run {reference[model][-1]}: {diff:.3g}"


def test_c_example_reports_an_onnxruntime_error_and_exits_1(c_example: Path):
    """Every OrtStatus is checked: a window of the wrong width is refused by onnxruntime, and said so."""
    narrow = "\n".join(" ".join(line.split()[:-1]) for line in last_window().splitlines())
    proc = subprocess.run(
        [c_example, SENSOR_ONNX, str(T), str(len(MANIFEST["features"]) - 1)],
        input=narrow, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert proc.returncode == 1 and proc.stdout == ""
    assert proc.stderr.startswith("onnxruntime: ") and "window" in proc.stderr, proc.stderr


def test_the_examples_read_the_same_features_and_window_as_the_manifest():
    """forecast.py reads the ONNX metadata, forecast.mjs the manifest: the two agree for every file they are given."""
    import onnxruntime as ort

    for model in MODELS:
        meta = ort.InferenceSession(model, providers=["CPUExecutionProvider"]).get_modelmeta().custom_metadata_map
        assert json.loads(meta["features"]) == MANIFEST["features"] and int(meta["window"]) == MANIFEST["window"]

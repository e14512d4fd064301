"""What a user installs is what the tests test.

The wheels (edgeseq's, built from its sdist as a release would be; device/'s own; the one `edgeseq bundle`
writes) hold every module and data file of the tree; the suite imports the installed package (under CI a
non-editable wheel install: the src/ layout keeps the checkout off sys.path); and the installed `edgeseq`
command runs, in the venv the suite runs in and in a fresh venv with the base install only.
"""

from __future__ import annotations

import base64
import csv
import hashlib
import io
import json
import os
import shutil
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

import pytest
from packaging.requirements import Requirement

from edgeseq.frameworks import command_for
from tests.conftest import EXPORTED, REPO

PACKAGES = {"edgeseq": REPO / "src" / "edgeseq", "edgeseq_device": REPO / "device" / "edgeseq_device"}
EDGESEQ = Path(sys.executable).parent / "edgeseq"  # the console script pip wrote beside this Python


def tree_files(*packages: str) -> set[str]:
    """Every file of the packages in the checkout, as paths inside a wheel (caches left out)."""
    return {
        f"{package}/{path.relative_to(PACKAGES[package]).as_posix()}"
        for package in packages
        for path in PACKAGES[package].rglob("*")
        if path.is_file() and "__pycache__" not in path.parts
    }


def wheel_files(wheel: Path) -> set[str]:
    return {name for name in zipfile.ZipFile(wheel).namelist() if ".dist-info/" not in name}


def metadata(wheel: Path) -> dict[str, list[str]]:
    with zipfile.ZipFile(wheel) as archive:
        (name,) = [n for n in archive.namelist() if n.endswith(".dist-info/METADATA")]
        text = archive.read(name).decode()
    fields: dict[str, list[str]] = {}
    for line in text.split("\n\n", 1)[0].splitlines():
        key, _, value = line.partition(": ")
        fields.setdefault(key, []).append(value)
    return fields


def device_requirements() -> list[Requirement]:
    """edgeseq-device's requirements as its wheels must declare them: the base, then each extra's, marked."""
    found = []
    for path in sorted(PACKAGES["edgeseq_device"].glob("requirements*.txt")):
        extra = path.stem.removeprefix("requirements").removeprefix("-")
        for line in map(str.strip, path.read_text().splitlines()):
            if line and not line.startswith("#"):
                found.append(Requirement(f'{line}; extra == "{extra}"' if extra else line))
    return sorted(found, key=str)


def requires(wheel: Path) -> list[Requirement]:
    return sorted((Requirement(text) for text in metadata(wheel)["Requires-Dist"]), key=str)


def _build(args: list[str], cwd: Path) -> None:
    proc = subprocess.run(args, cwd=cwd, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]


@pytest.fixture(scope="module")
def release(tmp_path_factory) -> dict[str, Path]:
    """edgeseq's sdist, and its wheel built from that sdist, as `python -m build` makes a release; from a copy
    of the tree, so the build leaves nothing in the checkout."""
    root = tmp_path_factory.mktemp("release")
    source = root / "source"
    source.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(REPO / name, source / name)
    for name in ("src", "device"):
        shutil.copytree(REPO / name, source / name, ignore=shutil.ignore_patterns("__pycache__", "*.egg-info", "build"))
    _build([sys.executable, "-m", "build", "--no-isolation", "--outdir", str(root / "dist"), str(source)], root)
    (sdist,) = (root / "dist").glob("edgeseq-*.tar.gz")
    (wheel,) = (root / "dist").glob("edgeseq-*.whl")
    return {"sdist": sdist, "wheel": wheel}


def test_the_suite_imports_the_installed_package_and_ci_a_wheel_install():
    import edgeseq
    import edgeseq_device

    recorded = [
        json.loads(text)
        for dist in __import__("importlib.metadata").metadata.distributions(name="edgeseq")
        if (text := dist.read_text("direct_url.json"))
    ]
    editable = bool(recorded) and recorded[0].get("dir_info", {}).get("editable", False)
    for module in (edgeseq, edgeseq_device):
        parents = Path(module.__file__).resolve().parents  # the venv may be in the checkout too (.venv/)
        from_the_tree = any(source.parent in parents for source in PACKAGES.values())
        assert from_the_tree == editable, f"{module.__name__} imported from {module.__file__}"
    if os.environ.get("CI"):
        assert not editable, "CI must run the suite against a non-editable (wheel) install, as users have it"


def test_the_wheel_built_from_the_sdist_holds_every_module_and_data_file(release):
    expected = tree_files("edgeseq", "edgeseq_device")
    assert {"edgeseq/convert/lstm.py", "edgeseq/datasets/appliances_energy.csv.xz",
            "edgeseq_device/requirements.txt"} <= expected  # fmt: skip
    in_wheel = wheel_files(release["wheel"])
    assert in_wheel == expected, f"missing {sorted(expected - in_wheel)}, extra {sorted(in_wheel - expected)}"
    with tarfile.open(release["sdist"]) as sdist:
        names = {name.split("/", 1)[1] for name in sdist.getnames() if "/" in name}
    for path in expected:
        package, rest = path.split("/", 1)
        assert f"{PACKAGES[package].relative_to(REPO).as_posix()}/{rest}" in names, path
    for requirement in device_requirements():  # the toolkit carries the runtime's requirements, extras and all
        assert requirement in requires(release["wheel"]), requirement


def test_the_device_projects_own_wheel_holds_every_module(tmp_path):
    stale = shutil.ignore_patterns(
        "__pycache__", "build", "*.egg-info"
    )  # a build/ of an earlier build holds old modules
    source = shutil.copytree(REPO / "device", tmp_path / "device", ignore=stale)
    pip = [sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--no-build-isolation"]
    _build([*pip, "--wheel-dir", str(tmp_path / "dist"), str(source)], tmp_path)
    (wheel,) = (tmp_path / "dist").glob("edgeseq_device-*.whl")
    assert wheel_files(wheel) == tree_files("edgeseq_device")
    fields = metadata(wheel)
    assert requires(wheel) == device_requirements()
    import edgeseq_device

    assert fields["Version"] == [edgeseq_device.__version__]


def test_the_bundles_device_wheel_is_the_installed_runtime_and_installs(tmp_path):
    from edgeseq.bundle.wheelhouse import build_device_wheel

    wheel = build_device_wheel(tmp_path)
    assert wheel_files(wheel) == tree_files("edgeseq_device")
    with zipfile.ZipFile(wheel) as archive:  # RECORD lists every member with its sha256 (PEP 376/427)
        names = archive.namelist()
        (record_name,) = [n for n in names if n.endswith(".dist-info/RECORD")]
        rows = list(csv.reader(io.StringIO(archive.read(record_name).decode())))
        assert sorted(row[0] for row in rows) == sorted(names)
        for name, digest, size in rows:
            if name == record_name:
                assert digest == size == ""
                continue
            data = archive.read(name)
            expected = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
            assert (digest, int(size)) == (f"sha256={expected}", len(data)), name
    assert requires(wheel) == device_requirements()
    # pip takes it: the installed runtime is the file, under its own name and version
    venv = tmp_path / "venv"
    _build([sys.executable, "-m", "venv", str(venv)], tmp_path)
    python = venv / "bin" / "python"
    _build([str(python), "-m", "pip", "install", "--quiet", "--no-deps", "--no-index", str(wheel)], tmp_path)
    show = "import importlib.metadata as m, edgeseq_device; print(m.version('edgeseq-device'), edgeseq_device.__file__)"
    proc = subprocess.run([python, "-c", show], cwd=tmp_path, capture_output=True, text=True, timeout=60)
    release, where = proc.stdout.split()
    assert release == metadata(wheel)["Version"][0] and str(venv) in where


def _edgeseq(*args: str, cwd: Path, command: Path = EDGESEQ, timeout: float = 600) -> subprocess.CompletedProcess:
    return subprocess.run([str(command), *map(str, args)], cwd=cwd, capture_output=True, text=True, timeout=timeout)


def test_the_installed_command_runs_each_subcommand(tmp_path):
    assert EDGESEQ.exists(), f"no console script beside {sys.executable}"
    top = _edgeseq("--help", cwd=tmp_path)
    assert top.returncode == 0
    commands = ["export", "quantize", "bundle", "train", "train forecaster", "bench", "letters", "run", "info", "sign",
                "report"]  # fmt: skip
    for command in commands:
        assert command.split()[0] in top.stdout
        helped = _edgeseq(*command.split(), "--help", cwd=tmp_path)
        assert helped.returncode == 0 and helped.stdout.startswith("Usage: edgeseq "), (command, helped.stderr)
    info = _edgeseq("info", EXPORTED / "sensor_lstm.onnx", cwd=tmp_path)
    assert info.returncode == 0 and "(ok: sha256" in info.stdout, info.stderr
    bad_out = _edgeseq("bundle", "--platform", "linux-x86_64", "--out", "no good!", cwd=tmp_path)
    assert bad_out.returncode == 2
    assert bad_out.stderr == "edgeseq: error: --out no good!: name the bundle with letters, digits, '.', '_' and '-'\n"
    script = (
        "import keras, numpy as np\n"
        "m = keras.Sequential([keras.Input((8, 2)), keras.layers.LSTM(3), keras.layers.Dense(1)])\n"
        "m.save('tiny.keras')\n"
    )
    made = subprocess.run([sys.executable, "-c", script], cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert made.returncode == 0, made.stderr
    export = _edgeseq("export", "--keras", "tiny.keras", "--features", "a,b", "--target", "y", "--out", "out",
                      cwd=tmp_path)  # fmt: skip
    assert export.returncode == 0, export.stderr
    manifest = json.loads((tmp_path / "out" / "tiny.json").read_text())
    assert manifest["fusion"]["found_fused"] == {"LSTM": 1}


def test_a_base_install_from_the_wheel_runs_and_names_the_extra_it_lacks(tmp_path, release):
    """`pip install .` (here: the release wheel) with no extra, in a fresh venv whose requirements come from
    the package index: the runtime commands work, and a training command is one line saying how to install
    the extra, in a form that works for how edgeseq was installed (the wheel's own path)."""
    venv = tmp_path / "venv"
    _build([sys.executable, "-m", "venv", str(venv)], tmp_path)
    _build([str(venv / "bin" / "python"), "-m", "pip", "install", "--quiet", str(release["wheel"])], tmp_path)
    command = venv / "bin" / "edgeseq"
    ran = _edgeseq("run", "--stream", EXPORTED / "sensor.csv", "--model", EXPORTED / "sensor_lstm.onnx",
                   cwd=tmp_path, command=command)  # fmt: skip
    assert ran.returncode == 0 and len(ran.stdout.splitlines()) == 2926, ran.stderr
    wheel_hint = f"pip install '{release['wheel']}[train]'"
    train = _edgeseq("train", "forecaster", "--data", EXPORTED / "sensor.csv", "--features", "T2,RH_2",
                     "--target", "T2", cwd=tmp_path, command=command)  # fmt: skip
    assert train.returncode == 2
    assert train.stderr == (
        "edgeseq: error: training and export need tensorflow, tf-keras, tf2onnx, onnx, which are not installed: "
        f"{wheel_hint}\n"
    )
    export = _edgeseq("export", "--keras", "x.keras", "--features", "a", cwd=tmp_path, command=command)
    assert export.returncode == 2 and export.stderr.endswith(f"{wheel_hint}\n"), export.stderr
    bench = _edgeseq("bench", cwd=tmp_path, command=command)  # names its own extra at once, not train first
    assert bench.returncode == 2 and bench.stderr.endswith(f"pip install '{release['wheel']}[bench]'\n")
    assert "ai-edge-litert" in bench.stderr
    report = _edgeseq("report", "--records", "run.jsonl", cwd=tmp_path, command=command)  # the extra, at once
    assert report.returncode == 2 and report.stderr == (
        f"edgeseq: error: edgeseq report needs matplotlib, which is not installed: pip install "
        f"'{release['wheel']}[report]'\n"
    ), report.stderr
    info = _edgeseq("info", EXPORTED / "sensor_lstm.onnx", cwd=tmp_path, command=command)
    assert info.returncode == 0 and f"to count them: {wheel_hint})" in info.stdout, info.stderr
    sign = _edgeseq("sign", "--key", "key.pem", EXPORTED / "sensor_lstm.onnx", cwd=tmp_path, command=command)
    assert sign.returncode == 2 and sign.stderr.endswith(f"pip install '{release['wheel']}[sign]'\n"), sign.stderr
    trusting = _edgeseq("run", "--stream", EXPORTED / "sensor.csv", "--model", EXPORTED / "sensor_lstm.onnx",
                        "--trust", "key.pem", cwd=tmp_path, command=command)  # fmt: skip
    assert trusting.returncode == 2 and "needs the 'cryptography' package" in trusting.stderr, trusting.stderr


@pytest.mark.parametrize(
    ("origin", "expected"),
    [
        (None, "pip install 'edgeseq[train]'"),  # from the package index
        ({"url": "file:///src/edgeseq", "dir_info": {}}, "pip install '/src/edgeseq[train]'"),
        ({"url": "file:///src/edgeseq", "dir_info": {"editable": True}}, "pip install -e '/src/edgeseq[train]'"),
        ({"url": "file:///w/edgeseq-0.2.0-py3-none-any.whl", "archive_info": {}},
         "pip install '/w/edgeseq-0.2.0-py3-none-any.whl[train]'"),
        ({"url": "file:///my%20clone/edgeseq", "dir_info": {}}, "pip install '/my clone/edgeseq[train]'"),
        ({"url": "file:///it's/edgeseq", "dir_info": {}}, "pip install '/it'\"'\"'s/edgeseq[train]'"),
        ({"url": "https://example.org/e.whl", "archive_info": {}},
         "pip install 'edgeseq[train] @ https://example.org/e.whl'"),
        ({"url": "file:///gone/edgeseq", "dir_info": {}},
         "pip install 'edgeseq[train]' (from a clone of edgeseq: pip install '.[train]' in its folder)"),
    ],
)  # fmt: skip
def test_the_install_command_fits_how_edgeseq_was_installed(origin, expected):
    present = {"/src/edgeseq", "/w/edgeseq-0.2.0-py3-none-any.whl", "/my clone/edgeseq", "/it's/edgeseq"}
    assert command_for(origin, "train", exists=present.__contains__) == expected

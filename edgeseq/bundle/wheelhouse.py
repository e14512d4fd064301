"""The bundle's wheels: edgeseq-device built from this tree, and numpy, onnxruntime and what they need, as
binary wheels for the target platform and Python, fetched with `pip download`.

All are pinned to the versions installed here, the ones edgeseq's own checks ran on, after checking that
edgeseq-device's requirements admit them.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
from importlib.metadata import version
from pathlib import Path

import tomllib

import edgeseq
from edgeseq.errors import BadInputError, EdgeseqError

# pip's platform tags for each target, newest first: a wheel with any of them installs on the target
PLATFORM_TAGS = {
    f"linux-{arch}": tuple(
        f"{tag}_{arch}" for tag in ("manylinux_2_28", "manylinux_2_27", "manylinux_2_17", "manylinux2014")
    )
    for arch in ("aarch64", "x86_64")
}
PYTHONS = ("3.11", "3.12", "3.13")
# edgeseq-device's dependencies and theirs, pinned to what is installed here: the versions the checks ran on
PINNED = ("numpy", "onnxruntime", "protobuf", "flatbuffers", "packaging")


def device_source() -> Path:
    """The device runtime's own project folder (device/ beside the edgeseq package, in a checkout)."""
    source = Path(edgeseq.__file__).resolve().parents[1] / "device"
    if not (source / "pyproject.toml").exists():
        raise EdgeseqError(
            f"edgeseq bundle builds edgeseq-device from its source tree, and {source} is not there: "
            "run it from a checkout of edgeseq (pip install -e .)"
        )
    return source


def _pip(args: list[str], what: str, hint: str = "") -> None:
    proc = subprocess.run([sys.executable, "-m", "pip", *args], capture_output=True, text=True)
    if proc.returncode != 0:
        lines = [line.strip() for line in proc.stderr.splitlines() if line.strip()]
        errors = [line for line in lines if line.startswith("ERROR") and line != "ERROR: Exception:"]
        detail = " ".join((errors or lines)[-2:])[:500]
        raise EdgeseqError(f"{what} failed: {detail or f'pip exit status {proc.returncode}'}{hint}")


def check_pins() -> list[str]:
    """The pins, after checking that edgeseq-device's own requirements admit them (a bundle whose wheels its
    runtime refuses would fail only on the box)."""
    from packaging.requirements import Requirement

    pins = {name: version(name) for name in PINNED}
    project = tomllib.loads((device_source() / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    for requirement in map(Requirement, project["dependencies"]):
        installed = pins.get(requirement.name)
        if installed is not None and installed not in requirement.specifier:
            raise EdgeseqError(
                f"{requirement.name} {installed} is installed here, but edgeseq-device needs {requirement}: "
                "install a matching version, whose wheels the bundle would carry"
            )
    return [f"{name}=={pin}" for name, pin in pins.items()]


def build_device_wheel(wheels: Path) -> Path:
    """edgeseq-device as a wheel, from this tree (pure Python: one wheel serves every platform), built from a
    fresh copy: setuptools' build/ folder in the tree would carry modules deleted since."""
    with tempfile.TemporaryDirectory(prefix="edgeseq-device-") as scratch:
        source = Path(scratch) / "device"
        shutil.copytree(device_source(), source, ignore=shutil.ignore_patterns("build", "*.egg-info", "__pycache__"))
        _pip(
            ["wheel", "--no-deps", "--quiet", "--wheel-dir", str(wheels), str(source)],
            "building the edgeseq-device wheel",
            " (pip fetches setuptools to build it: it needs the network)",
        )
    built = sorted(wheels.glob("edgeseq_device-*.whl"))
    if len(built) != 1:
        raise EdgeseqError(f"building the edgeseq-device wheel left {len(built)} wheels in {wheels}")
    return built[0]


def download_dependencies(wheels: Path, platform: str, python: str) -> list[Path]:
    """numpy, onnxruntime and their dependencies, pinned, as wheels for `platform` and CPython `python`;
    nothing built from source."""
    if platform not in PLATFORM_TAGS:
        raise BadInputError(f"--platform {platform}: choose {' or '.join(PLATFORM_TAGS)}")
    if python not in PYTHONS:
        raise BadInputError(
            f"--python {python}: choose one of {', '.join(PYTHONS)} (edgeseq-device needs 3.11 or newer)"
        )
    before = set(wheels.iterdir())
    tags = [arg for tag in PLATFORM_TAGS[platform] for arg in ("--platform", tag)]
    abi = "cp" + python.replace(".", "")
    pins = check_pins()
    _pip(
        ["download", "--quiet", "--only-binary=:all:", *tags, "--python-version", python, "--implementation", "cp",
         "--abi", abi, "--abi", "abi3", "--abi", "none", "--dest", str(wheels), *pins],
        f"downloading {', '.join(pins)} for {platform}, Python {python}",
        " (pip download needs the network, or a pip configuration with --find-links)",
    )  # fmt: skip
    return sorted(set(wheels.iterdir()) - before)

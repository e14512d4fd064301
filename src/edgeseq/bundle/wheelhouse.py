"""The bundle's wheels: edgeseq-device written from the installed runtime, and numpy, onnxruntime and what they need, as
binary wheels for the target platform and Python, fetched with `pip download`.

All are pinned to the versions installed here, the ones edgeseq's own checks ran on, after checking that
edgeseq-device's requirements admit them.
"""

from __future__ import annotations

import base64
import hashlib
import subprocess
import sys
import zipfile
from importlib import resources
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

import edgeseq_device
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


def _pip(args: list[str], what: str, hint: str = "") -> None:
    proc = subprocess.run([sys.executable, "-m", "pip", *args], capture_output=True, text=True)
    if proc.returncode != 0:
        lines = [line.strip() for line in proc.stderr.splitlines() if line.strip()]
        errors = [line for line in lines if line.startswith("ERROR") and line != "ERROR: Exception:"]
        detail = " ".join((errors or lines)[-2:])[:500]
        raise EdgeseqError(f"{what} failed: {detail or f'pip exit status {proc.returncode}'}{hint}")


def device_requirements(extra: str | None = None) -> list[str]:
    """edgeseq-device's requirements (or those of an extra: `mqtt`), from the installed runtime (the files
    device/pyproject.toml reads too)."""
    name = "requirements.txt" if extra is None else f"requirements-{extra}.txt"
    text = (resources.files("edgeseq_device") / name).read_text(encoding="utf-8")
    return [line.strip() for line in text.splitlines() if line.strip() and not line.lstrip().startswith("#")]


EXTRAS = ("mqtt", "trust", "metrics")  # edgeseq-device's extras; a bundle carries their wheels too


def check_pins() -> list[str]:
    """The pins: the versions installed here (the ones edgeseq's own checks ran on), after checking that
    edgeseq-device's requirements, its extras' included, admit them (a bundle whose wheels its runtime refuses
    would fail only on the box); a requirement not installed here goes as the requirement itself (pip downloads
    the newest it admits)."""
    from packaging.requirements import Requirement

    wanted = [Requirement(text) for extra in (None, *EXTRAS) for text in device_requirements(extra)]
    pins = {name: version(name) for name in PINNED}
    for requirement in wanted:
        try:
            installed = pins.get(requirement.name) or version(requirement.name)
        except PackageNotFoundError:
            continue
        if installed not in requirement.specifier:
            raise EdgeseqError(
                f"{requirement.name} {installed} is installed here, but edgeseq-device needs {requirement}: "
                "install a matching version, whose wheels the bundle would carry"
            )
        pins[requirement.name] = installed
    return [f"{name}=={pin}" for name, pin in pins.items()] + [str(r) for r in wanted if r.name not in pins]


def _record_hash(data: bytes) -> str:
    return "sha256=" + base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()


def build_device_wheel(wheels: Path) -> Path:
    """edgeseq-device as a pure-Python wheel (PEP 427; one serves every platform), written from the installed
    `edgeseq_device` package, so it holds exactly the runtime this edgeseq runs, from a checkout or a wheel
    install alike, and needs neither setuptools nor the network. Files are sorted and dated 1980-01-01, so the
    same runtime gives the same bytes."""
    package = Path(edgeseq_device.__file__).parent
    release = edgeseq_device.__version__
    dist_info = f"edgeseq_device-{release}.dist-info"
    metadata = "\n".join(
        [
            "Metadata-Version: 2.1",
            "Name: edgeseq-device",
            f"Version: {release}",
            f"Summary: {(edgeseq_device.__doc__ or '').splitlines()[0]}",
            "Requires-Python: >=3.11",
            *(f"Requires-Dist: {requirement}" for requirement in device_requirements()),
            *(f"Provides-Extra: {extra}" for extra in EXTRAS),
            *(
                f'Requires-Dist: {requirement}; extra == "{extra}"'
                for extra in EXTRAS
                for requirement in device_requirements(extra)
            ),
            "",
        ]
    )
    wheel_file = "Wheel-Version: 1.0\nGenerator: edgeseq bundle\nRoot-Is-Purelib: true\nTag: py3-none-any\n"
    members = {
        f"edgeseq_device/{path.relative_to(package).as_posix()}": path.read_bytes()
        for path in sorted(package.rglob("*"))
        if path.is_file() and "__pycache__" not in path.parts and path.suffix not in (".pyc", ".pyo")
    }
    members[f"{dist_info}/METADATA"] = metadata.encode()
    members[f"{dist_info}/WHEEL"] = wheel_file.encode()
    record = [f"{name},{_record_hash(data)},{len(data)}" for name, data in members.items()]
    members[f"{dist_info}/RECORD"] = ("\n".join([*record, f"{dist_info}/RECORD,,"]) + "\n").encode()
    target = wheels / f"edgeseq_device-{release}-py3-none-any.whl"
    with zipfile.ZipFile(target, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, data in members.items():
            entry = zipfile.ZipInfo(name, date_time=(1980, 1, 1, 0, 0, 0))
            entry.external_attr = 0o644 << 16
            entry.compress_type = zipfile.ZIP_DEFLATED
            archive.writestr(entry, data)
    return target


def check_target(platform: str, python: str) -> None:
    """BadInputError for a platform or Python the bundle cannot be made for, before any work starts."""
    if platform not in PLATFORM_TAGS:
        raise BadInputError(f"--platform {platform}: choose {' or '.join(PLATFORM_TAGS)}")
    if python not in PYTHONS:
        raise BadInputError(
            f"--python {python}: choose one of {', '.join(PYTHONS)} (edgeseq-device needs 3.11 or newer)"
        )


def download_dependencies(wheels: Path, platform: str, python: str) -> list[Path]:
    """numpy, onnxruntime and their dependencies, pinned, as wheels for `platform` and CPython `python`;
    nothing built from source."""
    check_target(platform, python)
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

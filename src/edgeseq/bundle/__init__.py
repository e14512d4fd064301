"""`edgeseq bundle`: one folder (or tarball) that installs and runs exported models on a box with no network.

    wheelhouse.py   edgeseq-device (the installed runtime), numpy and onnxruntime for the target platform and Python
    scripts.py      install.sh, the systemd unit and its settings, the README for the box

The folder holds wheels/, models/ (each model with its manifest and its batched companion, and a sample stream),
install.sh, edgeseq.service.in, edgeseq.env.in, README.md, bundle.json (what was bundled, for whom) and SHA256SUMS.
"""

from __future__ import annotations

import io
import json
import os
import re
import shutil
import tarfile
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import edgeseq
from edgeseq.bundle import scripts
from edgeseq.bundle.wheelhouse import build_device_wheel, check_target, download_dependencies
from edgeseq.errors import BadInputError
from edgeseq.progress import Progress, Silent
from edgeseq_device.manifest import Manifest, manifest_path_for, sha256_of
from edgeseq_device.model import load_model
from edgeseq_device.runner import RunOptions, run_stream
from edgeseq_device.sources.lines import LineSource, Reopened, TooLong

MACHINES = {"linux-aarch64": "aarch64", "linux-x86_64": "x86_64"}
SMOKE_FORECASTS = 5
SMOKE_SEARCH_ROWS = 20_000  # the first rows of the sample looked through for the smoke test's forecasts
SMOKE_FILE = "smoke.csv"
TARBALL_SUFFIXES = (".tar.gz", ".tgz")
# Names are written into install.sh and the unit: plain ones only, so no quoting can go wrong
SAFE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")


@dataclass(frozen=True)
class BundleResult:
    path: Path  # the folder, or the tarball
    name: str  # the folder's name, which the tarball unpacks into
    files: int
    size: int  # bytes of every file in the folder, unpacked
    archive_size: int | None  # bytes of the tarball, when one was written
    seconds: float
    first_forecast: str  # the smoke test's first record, on this machine
    signed_by: str | None = None  # the signing key's fingerprint, when signed

    def on_the_box(self) -> str:
        """The commands that install it on the box, from where it was copied to."""
        if self.archive_size is None:
            return f"cd {self.name} && ./install.sh"
        return f"{unpack_command(self.path.name)} && cd /opt/{self.name} && ./install.sh"


def unpack_command(tarball: str) -> str:
    """As root: files owned by root whoever built the bundle, and no mode of the archive's kept (umask)."""
    return f"tar xzf {tarball} --no-same-owner --no-same-permissions -C /opt"


def _sample_of(model: Path, manifest: dict, sample: Path | None) -> Path:
    if sample is not None:
        if not sample.is_file():
            raise BadInputError(f"--sample {sample}: no such file")
        return sample
    recorded = manifest.get("sample", {}).get("file")
    if recorded and (model.parent / recorded).is_file():
        return model.parent / recorded
    raise BadInputError(
        f"{model.name} records no sample stream beside it: give --sample FILE (a CSV with its columns), which "
        "install.sh runs as its smoke test"
    )


def companion_of(model: Path, manifest: Manifest) -> Path | None:
    """The batched companion the manifest lists for `model`, checked as the box will check it (its sha256, its
    signature with a dynamic batch axis, its metadata); None when the model has none."""
    entry = manifest.data.get("batched", {}).get(model.name)
    if not isinstance(entry, dict) or "file" not in entry:
        return None
    companion = model.with_name(entry["file"])
    if not companion.exists():  # copied without it: the box runs a window a call, as the runner does here
        return None
    load_model(companion, require_manifest=True)
    return companion


def _first_lines(sample: Path, rows: int) -> list[str]:
    """The header and the first `rows` lines of the sample, as text (the sample may be compressed)."""
    kept: list[str] = []
    source = LineSource(str(sample))
    try:
        for line in source:
            if isinstance(line, (Reopened, TooLong)):
                continue
            kept.append(line)
            if len(kept) > rows:
                break
    finally:
        source.close()
    return kept


def _run_here(model: Path, stream: Path) -> tuple[int, list[str], str]:
    records, messages = io.StringIO(), io.StringIO()
    code = run_stream(RunOptions(stream=str(stream), model=model), records, messages, prog="smoke test")
    if code in (130, 143):  # Ctrl-C or SIGTERM while it ran: the bundle is abandoned, not the sample blamed
        raise KeyboardInterrupt
    said = " ".join(line for line in messages.getvalue().splitlines() if "done:" not in line)[:300]
    return code, records.getvalue().splitlines(), said


def write_smoke_test(model: Path, sample: Path, smoke: Path) -> str:
    """Write to `smoke` the sample's first lines, as many as `model` needs for its first SMOKE_FORECASTS
    forecasts (a keyed stream needs a window per key), after running them here through the device runtime as
    install.sh will on the box; return the first record. BadInputError when they give no forecast."""
    lines = _first_lines(sample, SMOKE_SEARCH_ROWS)
    smoke.write_text("".join(f"{line}\n" for line in lines), encoding="utf-8")
    code, records, said = _run_here(model, smoke)
    if records:  # cut after the row of the last forecast wanted (rows count the data lines read)
        last = json.loads(records[min(SMOKE_FORECASTS, len(records)) - 1])["row"]
        smoke.write_text("".join(f"{line}\n" for line in lines[: last + 1]), encoding="utf-8")
        code, records, said = _run_here(model, smoke)
    if code != 0 or not records:
        raise BadInputError(
            f"the sample's first {len(lines) - 1:,} rows give {model.name} no forecast{': ' + said if said else ''}: "
            "give --sample FILE with the model's columns"
        )
    return records[0]


def write_requirements(folder: Path) -> None:
    """requirements.txt: every wheel in wheels/ pinned to its version with its sha256, for pip's hash-checking
    mode (`--require-hashes`): pip then installs these files and nothing else, and never resolves a bare name
    to whatever wheel lies beside them."""
    lines = []
    for wheel in sorted((folder / "wheels").glob("*.whl")):
        name, release = wheel.name.split("-")[:2]
        lines.append(f"{name.replace('_', '-').lower()}=={release} --hash=sha256:{sha256_of(wheel.read_bytes())}")
    (folder / "requirements.txt").write_text("\n".join(lines) + "\n", encoding="utf-8")


def _plain_modes(folder: Path) -> None:
    """Folders 0755, install.sh 0755, other files 0644: no mode of a source file (a setuid bit, a file others
    may write) reaches the box."""
    for path in [folder, *folder.rglob("*")]:
        path.chmod(0o755 if path.is_dir() or path.name == "install.sh" else 0o644)


def _as_root(member: tarfile.TarInfo) -> tarfile.TarInfo:
    """A tarball member owned by root, whoever built it: extracted as root with GNU tar's defaults, the files
    are root's, so no user of the build machine's uid owns a root service's files on the box."""
    member.uid = member.gid = 0
    member.uname = member.gname = "root"
    member.mode &= 0o755
    return member


def write_sha256sums(folder: Path) -> None:
    """SHA256SUMS in `sha256sum -c` form: every file under `folder` but itself, sorted."""
    lines = [
        f"{sha256_of(path.read_bytes())}  {path.relative_to(folder).as_posix()}"
        for path in sorted(folder.rglob("*"))
        if path.is_file() and path.name != "SHA256SUMS"
    ]
    (folder / "SHA256SUMS").write_text("\n".join(lines) + "\n", encoding="utf-8")


def _fill(template: str, values: dict[str, str]) -> str:
    for key, value in values.items():
        template = template.replace(f"@{key}@", value)
    return template


def _destination(out: Path) -> tuple[str, bool]:
    """The bundle's folder name and whether `out` is a tarball; BadInputError for what cannot be written."""
    tarball = out.name.endswith(TARBALL_SUFFIXES)
    name = out.name
    for suffix in TARBALL_SUFFIXES:
        name = name.removesuffix(suffix) if tarball else name
    if not SAFE_NAME.fullmatch(name):
        raise BadInputError(f"--out {out}: name the bundle with letters, digits, '.', '_' and '-'")
    if out.exists() and (tarball or not out.is_dir() or any(out.iterdir())):
        raise BadInputError(f"--out {out} already exists: give a new folder or tarball name")
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=out.parent, prefix=".edgeseq-bundle-"):
            pass
    except OSError as exc:
        raise BadInputError(f"--out {out}: cannot write there ({exc.strerror or exc})") from None
    return name, tarball


def make_bundle(
    models: list[Path],
    platform: str,
    out: Path,
    *,
    python: str = "3.11",
    sample: Path | None = None,
    command: str = "edgeseq bundle",
    progress: Progress = Silent(),
    sign_key: Path | None = None,
) -> BundleResult:
    """Write the bundle for `models` (exported ONNX files, each checked against its manifest first) to `out`:
    a folder, or a tarball when `out` ends in .tar.gz or .tgz. The first model is the one the service and the
    smoke test run; the smoke test runs here first. `out` appears whole or not at all.

    With `sign_key`, each model is signed as bundled (models/<name>.sig, OMS, for `run --trust` on the box),
    SHA256SUMS by a detached signature (SHA256SUMS.sig, for install.sh and openssl), and a tarball too
    (<out>.sig beside it, to check before unpacking)."""
    started = time.perf_counter()
    check_target(platform, python)
    if sign_key is not None:
        from edgeseq.sign import ready_to_sign

        ready_to_sign(sign_key)
    if not models:
        raise BadInputError("give at least one --model")
    out = Path(out)
    name, tarball = _destination(out)
    checked, shipped, companions = [], {}, {}
    for model in map(Path, models):
        loaded = load_model(model, require_manifest=True)  # sha256 and signature, as on the box
        checked.append((model, loaded.manifest))
        companion = companion_of(model, loaded.manifest)
        if companion is not None:
            companions[model.name] = companion
    stream = _sample_of(checked[0][0], checked[0][1].data, sample)
    files = [path for model, _ in checked for path in (model, manifest_path_for(model))]
    for source in [*files, *companions.values(), stream]:
        if not SAFE_NAME.fullmatch(source.name) or source.name == SMOKE_FILE:
            raise BadInputError(
                f"{source}: bundled files need plain names (letters, digits, '.', '_' and '-'), other than {SMOKE_FILE}"
            )
        other = shipped.setdefault(source.name, source)
        if other.resolve() != source.resolve() and other.read_bytes() != source.read_bytes():
            raise BadInputError(f"{other} and {source} would both be models/{source.name}: bundle them separately")

    with tempfile.TemporaryDirectory(prefix="edgeseq-bundle-") as scratch:
        folder = Path(scratch) / name
        (folder / "wheels").mkdir(parents=True)
        (folder / "models").mkdir()
        smoke = folder / "models" / SMOKE_FILE
        progress.step(f"smoke test here: {checked[0][0].name} on the first rows of {stream.name}")
        for source in shipped.values():
            shutil.copy2(source, folder / "models" / source.name)
        first_forecast = write_smoke_test(folder / "models" / checked[0][0].name, stream, smoke)
        signer = None
        if sign_key is not None:
            from edgeseq.sign import sign_model

            progress.step("signing the models as bundled")
            signatures = {model.name.split(".", 1)[0]: model.name for model, _ in checked}  # one per manifest
            signed = [sign_model(folder / "models" / name, sign_key) for name in signatures.values()]
            signer = signed[0].fingerprint
        progress.step("writing the edgeseq-device wheel from the installed runtime")
        build_device_wheel(folder / "wheels")
        progress.step(f"downloading numpy and onnxruntime wheels for {platform}, Python {python}")
        download_dependencies(folder / "wheels", platform, python)
        values = {
            "DIR": "@DIR@",  # filled on the box by install.sh
            "NAME": name,
            "UNPACK": unpack_command(f"{name}.tar.gz"),
            "MODEL": checked[0][0].name,
            "MODELS": ", ".join(model.name for model, _ in checked),
            "SAMPLE": stream.name,
            "PLATFORM": platform,
            "MACHINE": MACHINES[platform],
            "PYTHON": python,
            "COMMAND": command,
            "VERSION": edgeseq.__version__,
            "BUILT": time.strftime("%Y-%m-%d", time.gmtime()),
        }
        install = folder / "install.sh"
        install.write_text(_fill(scripts.INSTALL_SH, values), encoding="utf-8")
        install.chmod(0o755)
        (folder / "edgeseq.service.in").write_text(_fill(scripts.SERVICE, values), encoding="utf-8")
        (folder / "edgeseq.env.in").write_text(_fill(scripts.ENV, values), encoding="utf-8")
        (folder / "edgeseq-mqtt.conf").write_text(scripts.MQTT_DROPIN, encoding="utf-8")
        (folder / "README.md").write_text(_fill(scripts.README, values), encoding="utf-8")
        described = {
            "platform": platform,
            "python": python,
            "models": [model.name for model, _ in checked],
            "batched_companions": {name: path.name for name, path in companions.items()},
            "service_model": checked[0][0].name,
            "sample": stream.name,
            "smoke": {"file": f"models/{SMOKE_FILE}", "first_forecast_here": json.loads(first_forecast)},
            "wheels": sorted(path.name for path in (folder / "wheels").iterdir()),
            "edgeseq_version": edgeseq.__version__,
            "command": command,
            "signed_by": signer,  # the sha256 of the signing key's public PEM, or None
        }
        (folder / "bundle.json").write_text(json.dumps(described, indent=2) + "\n", encoding="utf-8")
        write_requirements(folder)
        _plain_modes(folder)
        write_sha256sums(folder)
        (folder / "SHA256SUMS").chmod(0o644)
        if sign_key is not None:
            from edgeseq.sign import sign_detached

            sign_detached(folder / "SHA256SUMS", sign_key).chmod(0o644)
        files = [path for path in folder.rglob("*") if path.is_file()]
        size = sum(path.stat().st_size for path in files)
        progress.step(f"writing {out}")
        _publish(folder, out, name, tarball)
    if tarball and sign_key is not None:
        from edgeseq.sign import sign_detached

        sign_detached(out, sign_key)
    archive_size = out.stat().st_size if tarball else None
    seconds = time.perf_counter() - started
    return BundleResult(out, name, len(files), size, archive_size, seconds, first_forecast, signer)


def _publish(folder: Path, out: Path, name: str, tarball: bool) -> None:
    """Move the finished bundle to `out` under a temporary name first, so an interrupted or failed write
    leaves nothing that a second run would take for a bundle."""
    partial = out.with_name(f".{out.name}.partial-{os.getpid()}")
    try:
        if tarball:
            with tarfile.open(partial, "w:gz") as archive:
                archive.add(folder, arcname=name, filter=_as_root)
        else:
            shutil.copytree(folder, partial)
        if out.is_dir():  # an empty folder given as --out
            out.rmdir()
        os.replace(partial, out)
    except OSError as exc:
        raise BadInputError(f"--out {out}: cannot write the bundle ({exc.strerror or exc})") from None
    finally:
        if partial.is_dir():
            shutil.rmtree(partial, ignore_errors=True)
        elif partial.exists():
            partial.unlink()

"""Signed bundles (issue 25): `edgeseq bundle --sign-key` signs SHA256SUMS, the models and the tarball;
`install.sh --trust PUBLIC.pem` installs nothing unless SHA256SUMS.sig verifies with a key of the box (by the box's
openssl), and the service it writes runs with that trust."""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import tarfile
from pathlib import Path

import pytest
from typer.testing import CliRunner

from edgeseq.cli import app
from edgeseq.sign import sign_detached
from edgeseq_device.manifest import sha256_of
from edgeseq_device.model import load_model
from edgeseq_device.trust import Trust
from tests.helpers import bundle_of_the_forecaster
from tests.test_bundle import _network_free
from tests.test_signing import flip_byte

INT8 = "sensor_lstm.dynamic-int8.onnx"

pytestmark = pytest.mark.skipif(shutil.which("openssl") is None, reason="install.sh checks signatures with openssl")


@pytest.fixture(scope="module")
def signed_bundle(tmp_path_factory, keys):
    """The signed x86-64 tarball of the fp32 and dynamic-int8 forecasters, unpacked (not yet installed)."""
    where = tmp_path_factory.mktemp("signed")
    sign = ("--sign-key", str(keys["owner"][0]))
    env, printed = bundle_of_the_forecaster("linux-x86_64", where / "edge.tar.gz", *sign)
    with tarfile.open(where / "edge.tar.gz") as archive:
        archive.extractall(where / "box", filter="data")
    return where, where / "box" / "edge", env, printed


@pytest.fixture(scope="module")
def installed(signed_bundle, keys):
    _, folder, env, _ = signed_bundle
    proc = install(folder, "--trust", keys["owner"][1], env=env)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return folder, proc


def install(folder: Path, *args, env=None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [*_network_free(), "./install.sh", *map(str, args)], cwd=folder, capture_output=True, text=True, timeout=600,
        env=env,
    )  # fmt: skip


def copy_of(folder: Path, where: Path) -> Path:
    made_on_the_box = shutil.ignore_patterns("venv", "edgeseq.env", "edgeseq.service", "smoke.jsonl")
    return Path(shutil.copytree(folder, where, ignore=made_on_the_box))


def refused(copy: Path, *args, says: str, code: int = 1) -> None:
    """install.sh stops before anything is installed or run, saying why (exit 1; 2 for bad usage)."""
    proc = install(copy, *args)
    assert proc.returncode == code, proc.stdout + proc.stderr
    assert says in proc.stderr, proc.stderr
    assert not (copy / "venv").exists() and not (copy / "smoke.jsonl").exists()


def rewrite_sha256sums(folder: Path) -> None:
    """SHA256SUMS made again for the folder as it now is: what an attacker who changed files would do."""
    names = [line.split("  ", 1)[1] for line in (folder / "SHA256SUMS").read_text().splitlines()]
    lines = [f"{sha256_of((folder / name).read_bytes())}  {name}" for name in names]
    (folder / "SHA256SUMS").write_text("\n".join(lines) + "\n")


def test_the_signed_bundle_installs_with_trust_and_the_service_runs_with_it(signed_bundle, installed, keys):
    where, folder, _, printed = signed_bundle
    _, proc = installed
    assert f"SHA256SUMS signed by {keys['owner'][1]}" in proc.stderr
    assert "first forecast: {" in proc.stdout
    fingerprint = hashlib.sha256(keys["owner"][1].read_bytes()).hexdigest()
    assert f"signed by key {fingerprint[:16]}…" in printed
    assert json.loads((folder / "bundle.json").read_text())["signed_by"] == fingerprint
    unit = (folder / "edgeseq.service").read_text()
    assert f'--output ${{EDGESEQ_SINK}} --trust "{keys["owner"][1]}" $EDGESEQ_OPTIONS' in unit
    # each model signed as bundled (fp32 and int8 share one manifest, so one signature), and the tarball
    assert sorted(p.name for p in (folder / "models").glob("*.sig")) == ["sensor_lstm.sig"]
    signed = load_model(folder / "models" / INT8, trust=Trust.load([keys["owner"][1]])).signed
    assert sorted(signed.digests) == [
        "sensor_lstm.batched.onnx", "sensor_lstm.dynamic-int8.batched.onnx", INT8, "sensor_lstm.json",
        "sensor_lstm.onnx",
    ]  # fmt: skip
    tarball = where / "edge.tar.gz"
    check = ["openssl", "dgst", "-sha256", "-verify", keys["owner"][1], "-signature", f"{tarball}.sig", tarball]
    assert subprocess.run(check, capture_output=True).returncode == 0


def test_the_installed_runner_refuses_a_model_changed_after_install(installed, keys, tmp_path):
    """What the service runs: the venv's runner with the unit's --trust."""
    folder, _ = installed
    models = Path(shutil.copytree(folder / "models", tmp_path / "models"))
    stream = models / "smoke.csv"
    runner = [folder / "venv" / "bin" / "python", "-m", "edgeseq_device", "run", "--stream", stream]
    args = [*map(str, runner), "--model", str(models / INT8), "--trust", str(keys["owner"][1])]
    assert subprocess.run(args, capture_output=True, text=True, timeout=120).returncode == 0
    flip_byte(models / INT8)
    manifest = json.loads((models / "sensor_lstm.json").read_text())
    manifest["files"][INT8]["sha256"] = sha256_of((models / INT8).read_bytes())
    (models / "sensor_lstm.json").write_text(json.dumps(manifest))
    proc = subprocess.run(args, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and proc.stdout == ""
    assert proc.stderr.strip().splitlines() == [proc.stderr.strip()] and "was changed after signing" in proc.stderr


def test_a_bundle_whose_model_and_sha256sums_were_changed_consistently_is_refused(signed_bundle, tmp_path, keys):
    _, folder, _, _ = signed_bundle
    copy = copy_of(folder, tmp_path / "copy")
    flip_byte(copy / "models" / INT8)
    manifest = json.loads((copy / "models" / "sensor_lstm.json").read_text())
    manifest["files"][INT8]["sha256"] = sha256_of((copy / "models" / INT8).read_bytes())
    (copy / "models" / "sensor_lstm.json").write_text(json.dumps(manifest))
    rewrite_sha256sums(copy)
    says = f"SHA256SUMS.sig is not a signature of SHA256SUMS by a key in {keys['owner'][1]}"
    refused(copy, "--trust", keys["owner"][1], says=says)
    # and re-signed with the attacker's own key, which this box does not trust
    sign_detached(copy / "SHA256SUMS", keys["other"][0])
    refused(copy, "--trust", keys["owner"][1], says=says)
    # without trust, the consistent change goes through install.sh's own check: it cannot tell
    without = install(copy)
    assert without.returncode == 0 and "no key is trusted here, so it is not checked" in without.stderr


def test_install_sh_trusts_no_key_from_the_bundle_and_no_unsigned_bundle(signed_bundle, tmp_path, keys):
    _, folder, _, _ = signed_bundle
    copy = copy_of(folder, tmp_path / "copy")
    shutil.copy(keys["owner"][1], copy / "models" / "owner.pem")  # even the right key, when it came in the bundle
    refused(copy, "--trust", copy / "models" / "owner.pem", says="is in this bundle: the key must be one this box")
    (copy / "models" / "owner.pem").unlink()
    (copy / "SHA256SUMS.sig").unlink()
    refused(copy, "--trust", keys["owner"][1], says="this bundle is not signed (no SHA256SUMS.sig)")
    refused(copy, "--trust", tmp_path / "absent.pem", says="no public key (PEM) there")
    refused(copy, "--trust", says="--trust needs a public key", code=2)


def test_a_trusted_folder_rotates_keys(signed_bundle, tmp_path, keys):
    _, folder, _, _ = signed_bundle
    trusted = tmp_path / "trusted"
    trusted.mkdir()
    shutil.copy(keys["other"][1], trusted / "new.pem")
    copy = copy_of(folder, tmp_path / "copy")
    refused(copy, "--trust", trusted, says="is not a signature of SHA256SUMS by a key in")
    shutil.copy(keys["owner"][1], trusted / "old.pem")
    proc = install(copy, "--trust", trusted)
    assert proc.returncode == 0, proc.stderr
    assert f"SHA256SUMS signed by {trusted / 'old.pem'}" in proc.stderr
    assert f'--trust "{trusted}"' in (copy / "edgeseq.service").read_text()


def test_bundle_sign_key_refuses_a_bad_key_before_any_work(tmp_path, keys):
    args = ["bundle", "--platform", "linux-x86_64", "--out", str(tmp_path / "b"), "--sign-key", str(keys["owner"][1])]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 2 and "is a public key: sign with its private half" in result.output
    assert not (tmp_path / "b").exists()

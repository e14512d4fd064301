"""`edgeseq bundle` on x86-64: installed offline from its own wheels into a fresh venv, its runner equal to
`edgeseq run`, its checksums, its refusals, and its systemd unit run as systemd would run it."""

import hashlib
import json
import os
import re
import shlex
import shutil
import signal
import subprocess
import tarfile
import time
import zipfile
from pathlib import Path

import onnx
import pytest
from typer.testing import CliRunner

import edgeseq.bundle as bundle_module
from edgeseq.bundle import write_smoke_test
from edgeseq.cli import app
from edgeseq_device.manifest import sha256_of
from tests.conftest import EXPORTED, REPO
from tests.helpers import bundle_of_the_forecaster, require_in_ci
from tests.streams import LINES, SENSOR_CSV, records, run
from tests.test_watchdog import Manager

FP32 = "sensor_lstm.onnx"
INT8 = "sensor_lstm.dynamic-int8.onnx"
FP32_BATCHED, INT8_BATCHED = "sensor_lstm.batched.onnx", "sensor_lstm.dynamic-int8.batched.onnx"


def _network_free() -> list[str]:
    """A prefix that runs a command with no network at all (a new, empty network namespace), where we can."""
    if os.geteuid() == 0 and shutil.which("unshare"):
        probe = subprocess.run(["unshare", "-n", "true"], capture_output=True)
        if probe.returncode == 0:
            return ["unshare", "-n"]
    return []


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    """The x86-64 bundle of the fp32 and dynamic-int8 files, as a tarball, unpacked and installed by its own
    install.sh with no network."""
    where = tmp_path_factory.mktemp("bundle")
    env, printed = bundle_of_the_forecaster("linux-x86_64", where / "edge.tar.gz")
    with tarfile.open(where / "edge.tar.gz") as archive:
        archive.extractall(where / "box", filter="data")
    folder = where / "box" / "edge"
    proc = subprocess.run(
        [*_network_free(), "./install.sh"], cwd=folder, capture_output=True, text=True, timeout=600,
        env=env,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return folder, proc, printed


def test_the_summary_gives_both_sizes_and_the_commands_on_the_box_match_the_layout(installed):
    folder, _, printed = installed
    tarball = folder.parents[1] / "edge.tar.gz"
    with tarfile.open(tarball) as archive:  # one folder, named as the tarball is
        assert {member.name.split("/", 1)[0] for member in archive.getmembers()} == {"edge"}
    listed = [line.split("  ", 1)[1] for line in (folder / "SHA256SUMS").read_text().splitlines()]
    unpacked = sum((folder / name).stat().st_size for name in [*listed, "SHA256SUMS"])
    summary, commands = printed.splitlines()[-2:]
    assert f", {unpacked / 1e6:.1f} MB unpacked, {tarball.stat().st_size / 1e6:.1f} MB as a tarball, " in summary
    on_the_box = "tar xzf edge.tar.gz --no-same-owner --no-same-permissions -C /opt && cd /opt/edge && ./install.sh"
    assert commands == f"on the box, as root: {on_the_box}"
    readme = (folder / "README.md").read_text()  # the box's README says the same
    assert "`tar xzf edge.tar.gz --no-same-owner --no-same-permissions -C /opt` makes `/opt/edge`" in readme
    assert "`cd /opt/edge && ./install.sh`" in readme


def test_the_bundle_holds_wheels_models_scripts_and_checksums(installed):
    folder, *_ = installed
    described = json.loads((folder / "bundle.json").read_text())
    assert described["platform"] == "linux-x86_64" and described["python"] == "3.11"
    assert described["models"] == [FP32, INT8] and described["service_model"] == FP32
    assert described["batched_companions"] == {FP32: FP32_BATCHED, INT8: INT8_BATCHED}
    wheels = sorted(p.name.split("-")[0] for p in (folder / "wheels").iterdir())
    assert {"edgeseq_device", "numpy", "onnxruntime", "protobuf", "flatbuffers", "packaging"} <= set(wheels)
    assert all("x86_64" in p.name or "none-any" in p.name for p in (folder / "wheels").iterdir())
    models = {FP32, INT8, FP32_BATCHED, INT8_BATCHED, "sensor_lstm.json", "sensor.csv", "smoke.csv"}
    assert {p.name for p in (folder / "models").iterdir()} == models
    assert (folder / "models" / "smoke.csv").read_text().splitlines() == LINES[: 36 + 4 + 1]  # 5 windows
    listed = dict(reversed(line.split("  ", 1)) for line in (folder / "SHA256SUMS").read_text().splitlines())
    # every file the tarball holds is listed, with the sha256 of its bytes there, and nothing else is
    with tarfile.open(folder.parents[1] / "edge.tar.gz") as archive:
        packed = {
            member.name.removeprefix("edge/"): hashlib.sha256(archive.extractfile(member).read()).hexdigest()
            for member in archive.getmembers()
            if member.isfile() and member.name != "edge/SHA256SUMS"
        }
    assert listed == packed
    shipped = {"README.md", "bundle.json", "install.sh", "edgeseq.service.in", "edgeseq.env.in", "requirements.txt",
               "edgeseq-mqtt.conf"}  # fmt: skip
    wheel_files = {f"wheels/{p.name}" for p in (folder / "wheels").iterdir()}
    assert set(listed) == shipped | {f"models/{name}" for name in models} | wheel_files  # every file, no other
    check = subprocess.run(["sha256sum", "--strict", "-c", "SHA256SUMS"], cwd=folder, capture_output=True, text=True)
    assert check.returncode == 0, check.stdout + check.stderr
    # requirements.txt pins every wheel, by the digest of its file, and nothing else
    pins = {}
    for line in (folder / "requirements.txt").read_text().splitlines():
        pin, digest = re.fullmatch(r"(\S+==\S+) --hash=sha256:([0-9a-f]{64})", line).groups()
        pins[pin] = digest
    for wheel in (folder / "wheels").iterdir():
        name, release = wheel.name.split("-")[:2]
        pin = f"{name.replace('_', '-').lower()}=={release}"
        assert pins.pop(pin) == hashlib.sha256(wheel.read_bytes()).hexdigest()
    assert pins == {}


def test_install_sh_installs_offline_and_prints_the_first_forecast_of_the_sample(installed):
    folder, proc, _ = installed
    first = [line for line in proc.stdout.splitlines() if line.startswith("first forecast: ")]
    assert first, proc.stdout
    reference = records(run("--stream", SENSOR_CSV, "--model", f"exported/{FP32}").stdout)[0]
    printed = json.loads(first[0].removeprefix("first forecast: "))
    assert printed["row"] == reference["row"] and abs(printed["prediction"] - reference["prediction"]) <= 1e-6
    here = json.loads((folder / "bundle.json").read_text())["smoke"]["first_forecast_here"]
    assert here["row"] == reference["row"] and abs(here["prediction"] - reference["prediction"]) <= 1e-6
    assert (folder / "venv" / "bin" / "python").exists()
    assert "edgeseq.service" in proc.stdout and "journalctl -u edgeseq" in proc.stdout


@pytest.mark.parametrize("model", [FP32, INT8])
def test_the_bundles_runner_equals_edgeseq_run_on_the_whole_sample(installed, model):
    folder, *_ = installed
    proc = subprocess.run(
        [folder / "venv" / "bin" / "python", "-m", "edgeseq_device", "run", "--stream", "models/sensor.csv",
         "--model", f"models/{model}"],
        cwd=folder, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    ours = records(proc.stdout)
    reference = records(run("--stream", SENSOR_CSV, "--model", f"exported/{model}").stdout)
    assert len(ours) == len(reference) == len(LINES) - 36
    worst = max(abs(a["prediction"] - b["prediction"]) for a, b in zip(ours, reference, strict=True))
    assert worst <= 1e-6, worst
    assert [(a["row"], a["time"]) for a in ours] == [(b["row"], b["time"]) for b in reference]


@pytest.mark.parametrize("companion", [FP32_BATCHED, INT8_BATCHED])
def test_the_bundles_runtime_loads_each_batched_companion_through_its_manifests_checks(installed, companion):
    folder, *_ = installed
    script = "import sys; from edgeseq_device.model import load_model; print(load_model(sys.argv[1]).inputs[0])"
    proc = subprocess.run(
        [folder / "venv" / "bin" / "python", "-c", script, f"models/{companion}"],
        cwd=folder, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "window float64[-1, 36, 5]"


def test_a_changed_file_is_refused_by_install_sh(installed, tmp_path):
    folder, *_ = installed
    copy = tmp_path / "copy"
    shutil.copytree(folder, copy, ignore=shutil.ignore_patterns("venv"))
    with (copy / "models" / "sensor.csv").open("a") as handle:
        handle.write("tampered\n")
    proc = subprocess.run(["./install.sh"], cwd=copy, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 1
    assert "  models/sensor.csv: changed\n" in proc.stderr and "not the bundle as it was built" in proc.stderr
    assert not (copy / "venv").exists()


def _copy(folder: Path, where: Path) -> Path:
    shutil.copytree(
        folder, where, ignore=shutil.ignore_patterns("venv", "edgeseq.env", "edgeseq.service", "smoke.jsonl")
    )
    return where


def _refused(copy: Path, *lines: str) -> None:
    """install.sh stops before anything is installed, naming each problem."""
    proc = subprocess.run(["./install.sh"], cwd=copy, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    for line in lines:
        assert line in proc.stderr, proc.stderr
    assert not (copy / "venv").exists() and not (copy / "smoke.jsonl").exists()


def test_an_unlisted_wheel_is_refused_and_never_installed_or_run(installed, tmp_path):
    # Before: edgeseq_device-9.9.9-py3-none-any.whl dropped into wheels/ was installed (pip took the newest
    # version of the bare name) and its code ran as root; SHA256SUMS still checked out.
    folder, *_ = installed
    copy = _copy(folder, tmp_path / "copy")
    evil = copy / "wheels" / "edgeseq_device-9.9.9-py3-none-any.whl"
    shutil.copy(next((copy / "wheels").glob("edgeseq_device-*.whl")), evil)
    _refused(copy, "  wheels/edgeseq_device-9.9.9-py3-none-any.whl: not in SHA256SUMS")


def test_a_listed_file_removed_from_the_list_and_an_empty_list_are_refused(installed, tmp_path):
    folder, *_ = installed
    dropped = _copy(folder, tmp_path / "dropped")
    sums = dropped / "SHA256SUMS"
    sums.write_text("".join(line for line in sums.read_text().splitlines(True) if "numpy" not in line))
    _refused(dropped, ": not in SHA256SUMS")
    empty = _copy(folder, tmp_path / "empty")
    (empty / "SHA256SUMS").write_text("")
    _refused(empty, "SHA256SUMS does not name every file a bundle has")


def test_pip_installs_only_the_pinned_hashes(installed, tmp_path):
    # a wheel of the same name and version but other bytes, listed consistently in SHA256SUMS (as an attacker
    # who can rewrite the list would): requirements.txt's hash still refuses it
    folder, *_ = installed
    copy = _copy(folder, tmp_path / "copy")
    (wheel,) = (copy / "wheels").glob("edgeseq_device-*.whl")
    with zipfile.ZipFile(wheel, "a") as archive:
        archive.writestr("edgeseq_device/payload.py", "print('not the runtime that was built')\n")
    lines = (copy / "SHA256SUMS").read_text().splitlines()
    name = f"wheels/{wheel.name}"
    (copy / "SHA256SUMS").write_text(
        "\n".join(f"{sha256_of(wheel.read_bytes())}  {name}" if line.endswith(name) else line for line in lines) + "\n"
    )
    proc = subprocess.run(["./install.sh"], cwd=copy, capture_output=True, text=True, timeout=300)
    assert proc.returncode != 0 and "THESE PACKAGES DO NOT MATCH THE HASHES" in proc.stderr, proc.stderr
    assert not (copy / "smoke.jsonl").exists()


@pytest.mark.skipif(os.geteuid() != 0, reason="the ownership check is for an install as root")
def test_a_tree_others_can_write_to_is_refused_when_installing_as_root(installed, tmp_path):
    folder, *_ = installed
    shared = _copy(folder, tmp_path / "shared")
    (shared / "models").chmod(0o777)
    _refused(shared, f"  {shared / 'models'}: writable by others")
    foreign = _copy(folder, tmp_path / "foreign")
    os.chown(foreign / "install.sh", 1000, 1000)  # a bundle unpacked keeping its builder's owner
    _refused(foreign, f"  {foreign / 'install.sh'}: not owned by root")


def test_a_folder_systemd_cannot_name_is_refused_before_installing(installed, tmp_path):
    # Before: a path with ' gave a unit systemd rejects ("Executable name contains special characters"), and
    # install.sh said it was installed
    folder, *_ = installed
    odd = _copy(folder, tmp_path / "it's here")
    _refused(odd, "a systemd unit cannot name this folder")


def test_the_tarball_is_roots_whoever_built_it_and_keeps_no_special_mode(tmp_path):
    from edgeseq.bundle import _as_root

    setuid = tarfile.TarInfo("edge/models/sensor_lstm.onnx")
    setuid.uid, setuid.gid, setuid.uname, setuid.gname, setuid.mode = 1000, 1000, "builder", "builder", 0o6777
    member = _as_root(setuid)
    assert (member.uid, member.gid, member.uname, member.gname, member.mode) == (0, 0, "root", "root", 0o755)


def test_install_sh_refuses_another_python_by_name(installed, tmp_path):
    folder, *_ = installed
    copy = tmp_path / "copy"
    shutil.copytree(folder, copy, ignore=shutil.ignore_patterns("venv"))
    fake = tmp_path / "python3.12"
    fake.write_text('#!/bin/sh\ncase "$*" in *version_info*) echo 3.12 ;; *) echo x86_64 ;; esac\n')
    fake.chmod(0o755)
    proc = subprocess.run(["./install.sh"], cwd=copy, capture_output=True, text=True, timeout=120,
                          env={**os.environ, "PYTHON": str(fake)})  # fmt: skip
    assert proc.returncode == 1
    assert "wheels are for Python 3.11 on x86_64" in proc.stderr and "Python 3.12 on x86_64" in proc.stderr
    assert "edgeseq bundle --platform linux-x86_64 --python 3.12" in proc.stderr


def test_installing_again_makes_the_venv_afresh_and_keeps_the_settings(installed, tmp_path):
    folder, *_ = installed
    copy = tmp_path / "again"
    shutil.copytree(folder, copy, symlinks=True)
    stale = next((copy / "venv" / "lib").glob("python3*/site-packages/edgeseq_device")) / "stale_module.py"
    stale.write_text("# from an older bundle's runtime\n")
    settings = copy / "edgeseq.env"
    settings.write_text(settings.read_text() + "# edited on the box\n")
    proc = subprocess.run(["./install.sh"], cwd=copy, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr
    assert not stale.exists() and settings.read_text().endswith("# edited on the box\n")


def test_a_folder_with_spaces_percent_and_ampersand_gets_a_unit_systemd_accepts(installed, tmp_path):
    folder, *_ = installed
    odd = tmp_path / "edge box & 100%"
    shutil.copytree(folder, odd, ignore=shutil.ignore_patterns("venv", "edgeseq.env", "edgeseq.service"))
    proc = subprocess.run(["./install.sh"], cwd=odd, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr
    unit = (odd / "edgeseq.service").read_text()
    assert f'ExecStart="{str(odd).replace("%", "%%")}/venv/bin/python"' in unit
    assert f"EDGESEQ_MODEL={odd}/models/{FP32}" in (odd / "edgeseq.env").read_text()
    if not shutil.which("systemd-analyze"):
        require_in_ci("systemd-analyze is not installed here: the unit was written but not verified")
    verify = subprocess.run(["systemd-analyze", "verify", str(odd / "edgeseq.service")], capture_output=True, text=True)
    assert verify.returncode == 0 and not verify.stderr.strip(), verify.stderr


def test_sha256sums_lists_every_file_of_the_bundle_with_the_hash_of_its_bytes(tmp_path, monkeypatch):
    # The download is not what is checked here: two small files stand in for the dependencies' wheels.
    def download(wheels: Path, platform: str, python: str) -> list[Path]:
        made = [
            wheels / "numpy-2.0.0-cp311-cp311-manylinux_2_17_x86_64.whl",
            wheels / "packaging-24.0-py3-none-any.whl",
        ]
        for number, path in enumerate(made):
            path.write_bytes(b"a wheel, %d" % number)
        return made

    monkeypatch.setattr(bundle_module, "download_dependencies", download)
    bundle_module.make_bundle([EXPORTED / FP32], "linux-x86_64", tmp_path / "edge")
    folder = tmp_path / "edge"
    on_disk = {
        path.relative_to(folder).as_posix(): hashlib.sha256(path.read_bytes()).hexdigest()
        for path in folder.rglob("*")
        if path.is_file() and path.name != "SHA256SUMS"
    }
    lines = (folder / "SHA256SUMS").read_text().splitlines()
    listed = dict(reversed(line.split("  ", 1)) for line in lines)
    assert listed == on_disk, f"not listed: {sorted(set(on_disk) - set(listed))}"
    assert lines == sorted(lines, key=lambda line: line.split("  ", 1)[1])  # sorted by name, as written
    wheels = {name for name in on_disk if name.startswith("wheels/")}
    assert len(wheels) == 3 and "wheels/numpy-2.0.0-cp311-cp311-manylinux_2_17_x86_64.whl" in wheels
    assert any(name.startswith("wheels/edgeseq_device-") for name in wheels)


def test_the_smoke_rows_are_as_many_as_the_first_five_forecasts_need(tmp_path):
    # 50 bad rows first (a logger starting up): the smoke test looks past them, and stops after 5 forecasts
    sample = tmp_path / "late.csv"
    bad = ",".join(["x"] * len(LINES[0].split(",")))
    sample.write_text("\n".join([LINES[0], *[bad] * 50, *LINES[1:200]]) + "\n")
    smoke = tmp_path / "smoke.csv"
    first = json.loads(write_smoke_test(Path("exported") / FP32, sample, smoke))
    assert smoke.read_text().splitlines() == [LINES[0], *[bad] * 50, *LINES[1:41]]
    assert first["row"] == 50 + 36
    assert len(records(run("--stream", smoke, "--model", f"exported/{FP32}").stdout)) == 5


def test_bundle_refusals_are_one_line_each(tmp_path):
    def bundle(*args):
        return CliRunner().invoke(app, ["bundle", *map(str, args)])

    existing = tmp_path / "there"
    existing.mkdir()
    (existing / "x").write_text("x")
    cases = [
        (["--platform", "linux-x86_64", "--out", existing], "already exists"),
        (["--platform", "linux-x86_64", "--out", tmp_path / "a", "--python", "3.9"], "--python 3.9: choose one of"),
        (["--platform", "linux-x86_64", "--out", tmp_path / "b", "--model", tmp_path / "none.onnx"], "none.onnx"),
        (["--platform", "linux-x86_64", "--out", tmp_path / "c", "--sample", tmp_path / "no.csv"], "--sample"),
        (["--platform", "windows", "--out", tmp_path / "d"],
         "Invalid value for '--platform': 'windows': choose linux-aarch64 or linux-x86_64"),
        # the Python is refused before any work: here the smoke test would fail (a sample that gives no forecast)
        (["--platform", "linux-x86_64", "--out", tmp_path / "g", "--python", "3.10", "--model",
          "exported/letter_rnn.onnx", "--sample", "exported/sensor.csv"], "--python 3.10: choose one of"),
        (["--platform", "linux-x86_64", "--out", "/proc/edgeseq.tar.gz"], "cannot write there"),
        (["--platform", "linux-x86_64", "--out", tmp_path / ".tar.gz"], "name the bundle with letters"),
        # a sample that does not fit the model is found here, not on the box
        (["--platform", "linux-x86_64", "--out", tmp_path / "e", "--model", "exported/letter_rnn.onnx",
          "--sample", "exported/sensor.csv"], "give letter_rnn.onnx no forecast"),
        # two files that would both be models/sensor_lstm.onnx
        (["--platform", "linux-x86_64", "--out", tmp_path / "f", "--model", "exported/sensor_lstm.onnx",
          "--model", old_copy(tmp_path)], "would both be models/sensor_lstm.onnx"),
    ]  # fmt: skip
    for args, message in cases:
        result = bundle(*args)
        assert result.exit_code == 2, (args, result.output)
        assert message in result.output and "Traceback" not in result.output, (args, result.output)
    assert not any((tmp_path / name).exists() for name in "abcefg")
    assert not [p for p in tmp_path.iterdir() if ".partial" in p.name or p.name.startswith(".edgeseq-bundle")]


def old_copy(tmp_path: Path) -> Path:
    """Another sensor_lstm.onnx with its manifest: the shipped one, re-saved (other bytes, its own sha256)."""
    other = tmp_path / "other"
    other.mkdir(exist_ok=True)
    manifest = json.loads(Path("exported/sensor_lstm.json").read_text())
    proto = onnx.load("exported/sensor_lstm.onnx")
    proto.doc_string = "another export"
    (other / "sensor_lstm.onnx").write_bytes(proto.SerializeToString())
    written = (other / "sensor_lstm.onnx").read_bytes()
    manifest["files"] = {"sensor_lstm.onnx": {"sha256": sha256_of(written), "size": len(written)}}
    (other / "sensor_lstm.json").write_text(json.dumps(manifest))
    return other / "sensor_lstm.onnx"


def _unit(folder: Path) -> dict[str, str]:
    """The [Service] settings of the installed unit, continuation lines joined, as systemd reads them."""
    text = (folder / "edgeseq.service").read_text().replace("\\\n", " ")
    return dict(line.split("=", 1) for line in text.splitlines() if "=" in line and not line.startswith(("#", "[")))


def _exec_start(folder: Path, settings: dict[str, str], env: dict[str, str]) -> list[str]:
    """ExecStart with systemd's substitutions: ${VAR} is one word, $VAR splits on whitespace."""
    words = []
    for word in shlex.split(settings["ExecStart"]):
        if word.startswith("${") and word.endswith("}"):
            words.append(env[word[2:-1]])
        elif word.startswith("$"):
            words.extend(env[word[1:]].split())
        else:
            words.append(word)
    return words


def test_systemd_accepts_the_unit(installed):
    folder, *_ = installed
    if not shutil.which("systemd-analyze"):
        require_in_ci("systemd-analyze is not installed here (Debian: apt-get install systemd)")
        return
    proc = subprocess.run(
        ["systemd-analyze", "verify", str(folder / "edgeseq.service")], capture_output=True, text=True
    )
    assert proc.returncode == 0 and not proc.stderr.strip(), proc.stderr
    settings = _unit(folder)
    assert settings["SuccessExitStatus"] == "143" and settings["KillSignal"] == "SIGTERM"
    assert settings["Restart"] == "on-failure" and settings["ExecReload"] == "/bin/kill -HUP $MAINPID"
    # READY=1 and WATCHDOG=1 from the runner itself (tests/test_watchdog.py reads them as systemd would)
    assert settings["Type"] == "notify" and settings["NotifyAccess"] == "main" and settings["WatchdogSec"] == "30"


def test_the_service_is_hardened_to_an_exposure_of_at_most_3_5(installed):
    folder, *_ = installed
    if not shutil.which("systemd-analyze"):
        require_in_ci("systemd-analyze is not installed here (Debian: apt-get install systemd)")
        return
    proc = subprocess.run(
        ["systemd-analyze", "security", "--offline=true", str(folder / "edgeseq.service")],
        capture_output=True, text=True,
    )  # fmt: skip
    exposure = float(re.search(r"Overall exposure level for edgeseq\.service: ([\d.]+)", proc.stdout).group(1))
    assert exposure <= 3.5, proc.stdout  # 9.6 UNSAFE before; the README gives the figure
    settings = _unit(folder)
    assert settings["DynamicUser"] == "yes" and settings["NoNewPrivileges"] == "yes"
    assert settings["ProtectSystem"] == "strict" and settings["StateDirectory"] == "edgeseq"
    assert settings["RestrictAddressFamilies"] == "AF_UNIX" and settings["CapabilityBoundingSet"] == ""
    readme = (REPO / "README.md").read_text()
    assert f"`systemd-analyze security --offline=true`: {exposure}" in " ".join(readme.split())


def test_the_mqtt_drop_in_opens_only_the_network_and_stays_hardened(installed, tmp_path):
    folder, *_ = installed
    if not shutil.which("systemd-analyze"):
        require_in_ci("systemd-analyze is not installed here (Debian: apt-get install systemd)")
        return
    units = tmp_path / "root" / "etc" / "systemd" / "system"
    (units / "edgeseq.service.d").mkdir(parents=True)
    shutil.copy(folder / "edgeseq.service", units / "edgeseq.service")
    shutil.copy(folder / "edgeseq-mqtt.conf", units / "edgeseq.service.d" / "mqtt.conf")
    proc = subprocess.run(
        ["systemd-analyze", "security", "--offline=true", f"--root={tmp_path / 'root'}", "edgeseq.service"],
        capture_output=True, text=True,
    )  # fmt: skip
    exposure = float(re.search(r"Overall exposure level for edgeseq\.service: ([\d.]+)", proc.stdout).group(1))
    assert exposure <= 3.5, proc.stdout
    assert re.search(r"PrivateNetwork=\s+Service has access to the host's network", proc.stdout)  # it was read
    dropin = (folder / "edgeseq-mqtt.conf").read_text()
    assert "LoadCredential=mqtt:/etc/edgeseq/mqtt-credentials" in dropin and "IPAddressAllow=localhost" in dropin
    readme = (REPO / "README.md").read_text()
    assert "1.2 with the MQTT drop-in" in " ".join(readme.split()) and exposure == 1.2


def test_the_units_command_follows_a_file_and_sigterm_is_a_clean_stop(installed, tmp_path):
    """ExecStart as systemd runs it, with the settings pointed at a file a logger appends to: the rows appended
    become forecasts, SIGTERM (systemctl stop) writes every one, then the summary, then exits with a status the
    unit lists as success."""
    folder, *_ = installed
    settings = _unit(folder)
    env = dict(line.split("=", 1) for line in (folder / "edgeseq.env").read_text().splitlines() if "=" in line)
    source, sink = tmp_path / "sensor.csv", tmp_path / "forecasts.jsonl"
    env.update(EDGESEQ_SOURCE=str(source), EDGESEQ_SINK=str(sink))
    source.write_text("\n".join(LINES[:40]) + "\n")
    manager = Manager(str(tmp_path / "notify"))  # systemd's end of Type=notify, with the unit's WatchdogSec
    watchdog = {"NOTIFY_SOCKET": manager.address, "WATCHDOG_USEC": str(int(settings["WatchdogSec"]) * 1_000_000)}
    proc = subprocess.Popen(_exec_start(folder, settings, env), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, env={**os.environ, **env, **watchdog})  # fmt: skip
    try:
        deadline = time.monotonic() + 60
        while (not sink.exists() or len(sink.read_text().splitlines()) < 4) and time.monotonic() < deadline:
            time.sleep(0.05)
        with source.open("a") as handle:
            handle.write("\n".join(LINES[40:60]) + "\n")
        while len(sink.read_text().splitlines()) < 24 and time.monotonic() < deadline:
            time.sleep(0.05)
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=30)
    finally:
        proc.kill()
    written = sink.read_text()
    assert written.endswith("\n") and len(written.splitlines()) == 59 - 36 + 1  # 59 data rows, windows of 36
    assert proc.returncode == int(settings["SuccessExitStatus"]) == 143, err
    assert "stopped by SIGTERM" in err and "24 predictions" in err and "Traceback" not in err
    time.sleep(0.1)
    manager.close()
    states = manager.states()
    assert states[0] == "READY=1" and states[1] == "WATCHDOG=1" and states[-1] == "STOPPING=1", states

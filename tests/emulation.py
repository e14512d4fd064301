"""Run aarch64 programs here, as on a Raspberry Pi 4 (Cortex-A72), under qemu-user: the harness for the tests and CI.

`bash .ci/arm64-sysroot.sh .cache/arm64` (as root) fills `.cache/arm64` (git-ignored): Debian bookworm's arm64
python3.11 unpacked into `sysroot/`, a Cortex-A72 `cpuinfo`, and pinned aarch64 `wheels/` of numpy and onnxruntime.

`run_aarch64(argv)` starts argv in a namespace of its own (`unshare --user --map-root-user --mount`), where:

- a binfmt_misc instance private to that user namespace (one of its own since Linux 6.7; seen here on 6.18)
  registers `qemu-aarch64-static` for aarch64 ELF files, with QEMU_LD_PREFIX=SYSROOT (qemu's `-L`) and
  QEMU_CPU=cortex-a72 (qemu's `-cpu`) in the environment. So an aarch64 program runs under qemu when any process in
  there executes it: argv[0] itself, and every child it starts. The host's binfmt_misc is left alone (it is not even
  mounted on these machines), and nothing outside the namespace runs aarch64 files.
- the Cortex-A72 cpuinfo is bind-mounted over /proc/cpuinfo. onnxruntime's CPU probe reads /proc/cpuinfo, which
  qemu-user 7.2 passes through from the x86 host, and `import onnxruntime` then dies of SIGSEGV
  (tests/test_emulation.py shows both).

Why binfmt_misc rather than `qemu-aarch64-static -L SYSROOT PROGRAM` alone: qemu-user emulates one process; when the
emulated program executes another aarch64 program, the host kernel gets it and refuses it (`OSError: [Errno 8] Exec
format error`). `python -m venv` runs ensurepip, and ensurepip runs pip, each as a child process: so a venv with pip
needs the kernel to hand aarch64 files to qemu. A venv's `bin/python` is a symlink
to the `sys.executable` of the Python that made it: here `SYSROOT/usr/bin/python3.11` by its host path (not
/usr/bin/python3.11, the host's x86 Python), since that is the path qemu was given; its pyvenv.cfg `home` is
`SYSROOT/usr/bin`. So `aarch64_venv` makes an ordinary venv (symlinks, pip included) and its python is aarch64.

Needs, checked by `aarch64_unavailable()`: qemu-aarch64-static on PATH, the complete sysroot (its marker holds the
setup script's sha256), and user and mount namespaces with binfmt_misc in them (root, or unprivileged user
namespaces, on Linux 6.7+). Only the setup script needs root.
"""

from __future__ import annotations

import functools
import hashlib
import os
import shutil
import subprocess
from collections.abc import Mapping, Sequence
from pathlib import Path

from tests.conftest import REPO
from tests.helpers import require_in_ci

__all__ = [
    "ARM64", "PYTHON", "SYSROOT", "WHEELS", "aarch64_unavailable", "aarch64_venv", "require_in_ci", "run_aarch64",
]  # fmt: skip

ARM64 = REPO / ".cache" / "arm64"
SYSROOT = ARM64 / "sysroot"
PYTHON = SYSROOT / "usr" / "bin" / "python3.11"  # Debian bookworm's arm64 CPython 3.11
CPUINFO = ARM64 / "cpuinfo"  # a Raspberry Pi 4's /proc/cpuinfo: 4 Cortex-A72 cores
WHEELS = ARM64 / "wheels"  # aarch64 wheels for CPython 3.11: numpy 2.4.6, onnxruntime 1.32.0 and its dependencies
SETUP_SCRIPT = REPO / ".ci" / "arm64-sysroot.sh"
SETUP = "bash .ci/arm64-sysroot.sh .cache/arm64"
MARKER = ARM64 / "complete"  # written last by SETUP_SCRIPT: its own sha256
QEMU = "qemu-aarch64-static"
CPU = "cortex-a72"

# binfmt_misc's "M" rule for aarch64 ELF executables, as in Debian's /usr/lib/binfmt.d/qemu-aarch64.conf; the flag F
# opens qemu when the rule is registered, so it is found in any mount namespace or chroot.
_MAGIC = r"\x7f\x45\x4c\x46\x02\x01\x01\x00\x00\x00\x00\x00\x00\x00\x00\x00\x02\x00\xb7\x00"
_MASK = r"\xff\xff\xff\xff\xff\xff\xff\x00\xff\xff\xff\xff\xff\xff\xff\xff\xfe\xff\xff\xff"
# In the new namespaces: $1 the binfmt rule, $2 the cpuinfo file to bind over /proc/cpuinfo ("" for none), then argv.
_ENTER = """set -e
mount -t binfmt_misc binfmt_misc /proc/sys/fs/binfmt_misc
printf '%s' "$1" > /proc/sys/fs/binfmt_misc/register
if [ -n "$2" ]; then mount --bind "$2" /proc/cpuinfo; fi
shift 2
exec "$@"
"""


def _setup_stamp() -> str:
    return hashlib.sha256(SETUP_SCRIPT.read_bytes()).hexdigest()


def run_aarch64(
    argv: Sequence[str | os.PathLike[str]],
    *,
    cwd: str | os.PathLike[str] | None = None,
    env: Mapping[str, str] | None = None,
    timeout: float = 600,
    input: str | None = None,
    cpuinfo: bool = True,
) -> subprocess.CompletedProcess[str]:
    """Run argv as on a Cortex-A72 and capture its output as text; it does not raise on a non-zero exit.

    argv[0] is an aarch64 executable by its path, such as `PYTHON` or a venv's python from `aarch64_venv`. It and
    every aarch64 program that it starts run under `qemu-aarch64-static -L SYSROOT -cpu cortex-a72`; a host program
    (a shell script, say) runs natively. `env` replaces os.environ, as in subprocess.run; the QEMU_ variables are
    added to either. `cpuinfo=False` leaves the host's x86 /proc/cpuinfo in place: only to show what that breaks.
    A program killed by a signal has returncode minus the signal number (-11 for SIGSEGV).
    """
    command, environment = _emulated(argv, env, cpuinfo)
    return subprocess.run(
        command, cwd=cwd, env=environment, timeout=timeout, input=input, capture_output=True, text=True
    )


def start_aarch64(
    argv: Sequence[str | os.PathLike[str]], *, env: Mapping[str, str] | None = None, cpuinfo: bool = True
) -> subprocess.Popen[str]:
    """`run_aarch64` in the background, with text pipes for stdout and stderr: a service to signal. unshare and
    the shell exec into the emulated program, so the process's pid is the program's, and a signal sent to it
    reaches the emulated program (qemu-user passes it on)."""
    command, environment = _emulated(argv, env, cpuinfo)
    return subprocess.Popen(command, env=environment, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _emulated(
    argv: Sequence[str | os.PathLike[str]], env: Mapping[str, str] | None, cpuinfo: bool
) -> tuple[list[str], dict[str, str]]:
    qemu = shutil.which(QEMU)
    if qemu is None:
        raise FileNotFoundError(f"{QEMU} is not on PATH; to install it: {SETUP}")
    rule = f":qemu-aarch64:M::{_MAGIC}:{_MASK}:{qemu}:F"
    environment = {**(os.environ if env is None else env), "QEMU_LD_PREFIX": str(SYSROOT), "QEMU_CPU": CPU}
    command = ["unshare", "--user", "--map-root-user", "--mount", "sh", "-c", _ENTER, "sh", rule]
    return [*command, str(CPUINFO) if cpuinfo else "", *map(str, argv)], environment


def aarch64_venv(path: str | os.PathLike[str], *, timeout: float = 600) -> Path:
    """Make a venv at path with the emulated Python, pip included (ensurepip, from the sysroot's wheels: no network);
    return its python (an aarch64 executable for `run_aarch64`). Install with `run_aarch64([python, "-m", "pip",
    ...])`: the venv's `bin/pip` script would start the same python, so it works too, but only inside `run_aarch64`."""
    path = Path(path).absolute()
    result = run_aarch64([PYTHON, "-m", "venv", path], timeout=timeout)
    if result.returncode != 0:
        raise RuntimeError(f"python3.11 -m venv {path} under emulation failed ({result.returncode}):\n{result.stderr}")
    return path / "bin" / "python"


@functools.cache
def _probe() -> str | None:
    """None when the emulated Python runs and reports aarch64; else why not."""
    try:
        result = run_aarch64([PYTHON, "-c", "import platform; print(platform.machine())"], timeout=120)
    except (OSError, subprocess.TimeoutExpired) as error:
        return f"cannot run aarch64 Python: {error}"
    if result.returncode == 0 and result.stdout.strip() == "aarch64":
        return None
    last = (result.stderr.strip().splitlines() or [f"exit status {result.returncode}"])[-1]
    return (
        f"cannot run aarch64 Python here ({last}): it needs `unshare --user --mount` (root, or unprivileged user "
        "namespaces) and binfmt_misc inside a user namespace (Linux 6.7+)"
    )


def aarch64_unavailable() -> str | None:
    """None when aarch64 programs can run here through `run_aarch64`; otherwise a one-line reason and how to fix it."""
    if shutil.which(QEMU) is None:
        return f"{QEMU} is not on PATH; to install it and the arm64 sysroot, as root in the repository: {SETUP}"
    if not MARKER.is_file():
        return f"the arm64 sysroot {ARM64} is missing or incomplete; to make it, as root in the repository: {SETUP}"
    if MARKER.read_text().strip() != _setup_stamp():
        return f"{ARM64} was made by another .ci/arm64-sysroot.sh; to remake it, as root in the repository: {SETUP}"
    return _probe()

#!/usr/bin/env bash
# Usage, as root, in the repository's root: bash .ci/arm64-sysroot.sh CACHE_DIR   (CI: .cache/arm64, git-ignored)
#
# What tests/emulation.py needs to run aarch64 CPython on this x86_64 machine, as on a Raspberry Pi 4 (Cortex-A72):
#   - the host's qemu-user-static (Debian's, qemu 7.2; no binfmt-support: tests/emulation.py registers qemu in a
#     binfmt_misc of its own, inside a private user namespace, and never touches the host's);
#   - CACHE_DIR/sysroot: Debian bookworm's arm64 python3.11, with venv and ensurepip, and the libraries its modules
#     load, each .deb `apt-get download`ed into CACHE_DIR/debs and unpacked with `dpkg -x` (nothing is installed);
#   - CACHE_DIR/cpuinfo: a Cortex-A72's /proc/cpuinfo, 4 cores. onnxruntime's CPU probe reads /proc/cpuinfo, and
#     under qemu-user that is the host's x86 one: `import onnxruntime` then dies of SIGSEGV. The tests bind-mount
#     this file over /proc/cpuinfo in a private mount namespace;
#   - CACHE_DIR/wheels: aarch64 wheels of onnxruntime and numpy for CPython 3.11 from PyPI, all pinned, so that
#     tests install them with `pip install --no-index --find-links` and need no network.
# Idempotent: CACHE_DIR/complete holds this script's sha256 once all of it is done; while it matches (and qemu is
# on PATH), the script does nothing. Any change to this file rebuilds the cache from scratch.
set -euo pipefail

cache=${1:?usage: bash .ci/arm64-sysroot.sh CACHE_DIR}
script=$(realpath "${BASH_SOURCE[0]}")
stamp=$(sha256sum "$script" | cut -d' ' -f1)
mkdir -p "$cache"
cache=$(realpath "$cache")
marker=$cache/complete
if [ -f "$marker" ] && [ "$(cat "$marker")" = "$stamp" ] && command -v qemu-aarch64-static >/dev/null; then
    echo "arm64 sysroot: $cache is complete"
    exit 0
fi
if [ "$(id -u)" != 0 ]; then
    echo "arm64 sysroot: run as root (it installs qemu-user-static and adds the arm64 architecture to apt)" >&2
    exit 1
fi
start=$SECONDS
rm -f "$marker"
rm -rf "$cache/debs" "$cache/sysroot" "$cache/wheels" "$cache/cpuinfo"
mkdir -p "$cache/debs" "$cache/sysroot" "$cache/wheels"

# Host side. Adding the arm64 architecture only lets apt see arm64 packages: none is installed on the host.
if ! dpkg --print-foreign-architectures | grep -qx arm64; then
    dpkg --add-architecture arm64
fi
apt-get update -q
DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends qemu-user-static

# arm64 python3.11 and what its extension modules link to (the check below imports every one of them). Debian
# bookworm's python3.11 has libmpdec built in (there is no libmpdec3 in bookworm). libtirpc3 (for the nis module)
# needs the Kerberos libraries. python3.11-venv depends on python3-distutils (and that on python3-lib2to3).
arm64=(
    python3.11 python3.11-minimal libpython3.11-minimal libpython3.11-stdlib python3.11-venv
    libc6 libgcc-s1 libstdc++6 libexpat1 zlib1g libssl3 libffi8 libbz2-1.0 liblzma5 libsqlite3-0 libncursesw6
    libtinfo6 libreadline8 libuuid1 libdb5.3 libgdbm6 libnsl2 libtirpc3 libcrypt1
    libgssapi-krb5-2 libkrb5-3 libk5crypto3 libkrb5support0 libcom-err2 libkeyutils1
)
all=(python3-pip-whl python3-setuptools-whl python3-distutils python3-lib2to3 media-types)
# APT::Sandbox::User=root: _apt may not write into CACHE_DIR, and apt would say so before doing the same.
(cd "$cache/debs" && apt-get download -q -o APT::Sandbox::User=root "${arm64[@]/%/:arm64}" "${all[@]}")
for deb in "$cache"/debs/*.deb; do
    dpkg -x "$deb" "$cache/sysroot"
done

# Every stdlib extension module imports, and so do venv and ensurepip (a failure names the missing library).
qemu-aarch64-static -L "$cache/sysroot" "$cache/sysroot/usr/bin/python3.11" -W ignore::DeprecationWarning -c '
import importlib, os, platform, sys
dynload = os.path.join(sys.prefix, "lib", "python3.11", "lib-dynload")
names = sorted(f.split(".")[0] for f in os.listdir(dynload))
for name in [*names, "venv", "ensurepip", "ssl", "sqlite3", "ctypes", "decimal", "lzma", "bz2", "readline"]:
    importlib.import_module(name)
assert platform.machine() == "aarch64", platform.machine()
print(f"arm64 sysroot: Python {platform.python_version()} on {platform.machine()}, {len(names)} extension modules")
'

# A Raspberry Pi 4's /proc/cpuinfo under its 64-bit kernel: 4 Cortex-A72 cores (implementer 0x41 Arm, part 0xd08).
for cpu in 0 1 2 3; do
    printf 'processor\t: %d\nBogoMIPS\t: 108.00\nFeatures\t: fp asimd evtstrm crc32 cpuid\n' "$cpu"
    printf 'CPU implementer\t: 0x41\nCPU architecture: 8\nCPU variant\t: 0x0\nCPU part\t: 0xd08\nCPU revision\t: 3\n\n'
done >"$cache/cpuinfo"
printf 'Hardware\t: BCM2835\nRevision\t: d03114\nModel\t\t: Raspberry Pi 4 Model B Rev 1.4\n' >>"$cache/cpuinfo"

# The aarch64 wheels, downloaded by the host's pip (none of them is built: --only-binary). The pins are those of
# the project's own venv; onnxruntime's dependencies are pinned too, so the set never changes under the tests.
python3 -m pip download -q --disable-pip-version-check --only-binary=:all: \
    --platform manylinux_2_28_aarch64 --platform manylinux2014_aarch64 \
    --python-version 3.11 --implementation cp --abi cp311 -d "$cache/wheels" \
    numpy==2.4.6 onnxruntime==1.32.0 protobuf==7.36.2 flatbuffers==25.12.19 packaging==26.4

echo "$stamp" >"$marker"
echo "arm64 sysroot: $cache ready in $((SECONDS - start)) s:" \
    "$(du -sh "$cache/debs" | cut -f1) debs, $(du -sh "$cache/sysroot" | cut -f1) sysroot," \
    "$(du -sh "$cache/wheels" | cut -f1) wheels"

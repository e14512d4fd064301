"""The text files of a bundle: install.sh, the systemd unit and its settings, and the README for the box.

`@DIR@` in the unit and the settings is the bundle's folder on the box; install.sh fills it in.
"""

from __future__ import annotations

INSTALL_SH = r"""#!/bin/sh
# Install the edgeseq runner from this bundle with no network, then run the model on the sample's first rows.
#   ./install.sh            uses python3; PYTHON=/usr/bin/python3.11 ./install.sh picks another
#   ./install.sh --trust /etc/edgeseq/trusted/owner.pem   (or a folder of *.pem; default /etc/edgeseq/trusted
#                           when it exists): install only a bundle whose SHA256SUMS.sig is by a trusted key, and
#                           run the service with the same trust (its models must be signed too)
# Running it again makes venv/ afresh (a newer bundle's runtime replaces an older one's) and keeps edgeseq.env.
set -eu
cd "$(dirname "$0")"
here=$(pwd)
python=${PYTHON:-python3}
trust=
while [ $# -gt 0 ]; do
    case $1 in
        --trust)
            if [ $# -lt 2 ] || [ -z "$2" ]; then
                echo "install.sh: --trust needs a public key (PEM) or a folder of them" >&2
                exit 2
            fi
            trust=$2
            shift 2 ;;
        *)
            echo "usage: ./install.sh [--trust PUBLIC.pem|DIR]   (default: /etc/edgeseq/trusted, when it exists)" >&2
            exit 2 ;;
    esac
done
if [ -z "$trust" ] && [ -d /etc/edgeseq/trusted ]; then
    trust=/etc/edgeseq/trusted
fi

if ! command -v "$python" >/dev/null 2>&1; then
    echo "install.sh: $python not found: install Python @PYTHON@ (Debian: apt install python3 python3-venv)" >&2
    exit 1
fi
have=$("$python" -c 'import sys; print("%d.%d" % sys.version_info[:2])')
machine=$("$python" -c 'import platform, struct; print(platform.machine() if struct.calcsize("P") == 8 else "32-bit")')
if [ "$have" != "@PYTHON@" ] || [ "$machine" != "@MACHINE@" ]; then
    echo "install.sh: this bundle's wheels are for Python @PYTHON@ on @MACHINE@;" \
        "$python is Python $have on $machine:" >&2
    echo "  build one for this box: edgeseq bundle --platform linux-$machine --python $have" >&2
    exit 1
fi
# With trust, SHA256SUMS is the builder's: SHA256SUMS.sig verifies with a key of this box (never one of the
# bundle's), by the box's openssl, before any other file of the bundle is used. The check below then holds
# every file to that list.
if [ -n "$trust" ]; then
    trust=$(TRUST="$trust" HERE="$here" "$python" - <<'PY'
import os, pathlib, shutil, subprocess, sys
given, here = pathlib.Path(os.environ["TRUST"]), pathlib.Path(os.environ["HERE"]).resolve()
trust = given.resolve()
if trust == here or here in trust.parents:
    sys.exit(f"install.sh: --trust {given} is in this bundle: the key must be one this box already has")
keys = sorted(p for p in trust.glob("*.pem") if p.is_file()) if trust.is_dir() else [trust]
if not keys or not all(key.is_file() for key in keys):
    sys.exit(f"install.sh: --trust {given}: no public key (PEM) there")
if not pathlib.Path("SHA256SUMS.sig").is_file():
    sys.exit(f"install.sh: this bundle is not signed (no SHA256SUMS.sig), and this box trusts only bundles signed "
             f"by a key in {given}: nothing was installed")
openssl = shutil.which("openssl")
if openssl is None:
    sys.exit("install.sh: checking SHA256SUMS.sig needs openssl (Debian: apt install openssl): nothing was installed")
for key in keys:
    check = [openssl, "dgst", "-sha256", "-verify", str(key), "-signature", "SHA256SUMS.sig", "SHA256SUMS"]
    if subprocess.run(check, capture_output=True).returncode == 0:
        print(f"SHA256SUMS signed by {key}", file=sys.stderr)
        print(trust)
        sys.exit(0)
sys.exit(f"install.sh: SHA256SUMS.sig is not a signature of SHA256SUMS by a key in {given} (another key's, or "
         "SHA256SUMS or its signature was changed): nothing was installed")
PY
)
elif [ -f SHA256SUMS.sig ]; then
    echo "note: this bundle is signed (SHA256SUMS.sig) but no key is trusted here, so it is not checked:" \
        "./install.sh --trust PUBLIC.pem, or keys in /etc/edgeseq/trusted/" >&2
fi
# The bundle is exactly what was built (in Python: BusyBox's sha256sum lacks GNU's options, and some boxes lack
# it): every file SHA256SUMS names is there with its digest, and every file here is named, but for what this
# script makes (venv/, edgeseq.service, edgeseq.env, smoke.jsonl). Run as root, the tree must be root's alone: a
# user who can write to it could swap a file between this check and its use.
if ! "$python" - <<'PY'
import hashlib, os, pathlib, stat, sys
MADE_HERE = {"venv", "edgeseq.service", "edgeseq.env", "smoke.jsonl", "SHA256SUMS", "SHA256SUMS.sig"}
problems = []
listed = {}
for number, line in enumerate(pathlib.Path("SHA256SUMS").read_text().splitlines(), start=1):
    digest, sep, name = line.partition("  ")
    parts = pathlib.PurePosixPath(name).parts
    if not sep or len(digest) != 64 or not parts or name.startswith("/") or ".." in parts or name in listed:
        sys.exit(f"install.sh: SHA256SUMS line {number} is not a sha256 and a file of this bundle")
    listed[name] = digest
needed = {"install.sh", "requirements.txt", "bundle.json", "edgeseq.service.in", "edgeseq.env.in"}
if not needed <= set(listed) or not any(name.startswith("wheels/") for name in listed):
    sys.exit("install.sh: SHA256SUMS does not name every file a bundle has: copy the bundle again")
here = pathlib.Path(".")
found = set()
for path in sorted(here.rglob("*")):
    name = path.as_posix()
    if name.split("/", 1)[0] in MADE_HERE:
        continue
    if path.is_symlink() or not (path.is_file() or path.is_dir()):
        problems.append(f"{name}: not a plain file or folder")
    elif path.is_file():
        found.add(name)
        if name not in listed:
            problems.append(f"{name}: not in SHA256SUMS (left from another bundle, or put here by someone else)")
for name, digest in listed.items():
    path = pathlib.Path(name)
    if not path.is_file() or path.is_symlink():
        problems.append(f"{name}: missing")
    elif hashlib.sha256(path.read_bytes()).hexdigest() != digest:
        problems.append(f"{name}: changed")
if os.geteuid() == 0:
    folder = pathlib.Path.cwd()
    inside = [path for path in folder.rglob("*") if path.relative_to(folder).parts[0] != "venv"]
    for path in [*reversed(folder.parents), folder, *inside]:
        info = path.lstat()
        shared = info.st_mode & 0o022 and not (path.is_dir() and info.st_mode & stat.S_ISVTX and path != folder)
        if info.st_uid != 0 or shared:
            problems.append(f"{path}: {'not owned by root' if info.st_uid != 0 else 'writable by others'}")
print("\n".join(f"  {problem}" for problem in problems[:20]), file=sys.stderr)
sys.exit(1 if problems else 0)
PY
then
    echo "install.sh: this folder is not the bundle as it was built (above): nothing was installed." >&2
    echo "  Unpack the bundle into a new folder as root (tar xzf ... --no-same-owner --no-same-permissions)," >&2
    echo "  and copy edgeseq.env over from an older install if you want its settings." >&2
    exit 1
fi
# The unit names this folder: a name systemd's command lines can hold, checked before anything is installed
nameable='import re, sys; sys.exit(0 if re.fullmatch(r"[A-Za-z0-9 /._+%&,@=:~-]+", sys.argv[1]) else 1)'
if ! "$python" -c "$nameable" "$here"; then
    echo "install.sh: a systemd unit cannot name this folder ($here): move the bundle to a folder whose path" \
        "has letters, digits, spaces and / . _ + % & , @ = : ~ - only" >&2
    exit 1
fi
if [ -n "$trust" ] && ! "$python" -c "$nameable" "$trust"; then
    echo "install.sh: a systemd unit cannot name the trusted keys ($trust): keep them in /etc/edgeseq/trusted/" >&2
    exit 1
fi
case $trust in
    /home/* | /root/* | /tmp/* | /var/tmp/*)
        echo "note: the service cannot read $trust (ProtectHome, PrivateTmp): keep keys in /etc/edgeseq/trusted/" >&2 ;;
esac

echo "creating $here/venv"
if ! "$python" -m venv --clear venv; then
    echo "install.sh: $python cannot create a venv (Debian: apt install python3-venv)" >&2
    exit 1
fi
echo "installing edgeseq-device from wheels/ (no network; exactly the pins and hashes of requirements.txt)"
venv/bin/python -m pip install --quiet --disable-pip-version-check --no-index --find-links wheels \
    --require-hashes -r requirements.txt

# The unit and its settings with this folder's path: systemd takes a quoted path with spaces, and "%%" for "%";
# with trust, the service runs only models signed by the keys the bundle was checked with
venv/bin/python - "$here" "$trust" <<'PY'
import pathlib, sys
here, trust = sys.argv[1], sys.argv[2]
option = f'--trust "{trust.replace("%", "%%")}"' if trust else ""
unit = pathlib.Path("edgeseq.service.in").read_text().replace("@DIR@", here.replace("%", "%%"))
unit = unit.replace("@TRUST@", option)
pathlib.Path("edgeseq.service").write_text(unit)
settings = pathlib.Path("edgeseq.env")
if not settings.exists():  # a second install keeps the settings made for the first
    settings.write_text(pathlib.Path("edgeseq.env.in").read_text().replace("@DIR@", here))
PY

if command -v systemd-analyze >/dev/null 2>&1 && ! systemd-analyze verify "$here/edgeseq.service" >&2; then
    echo "install.sh: systemd refuses the unit written for this folder (above): it would not start" >&2
    exit 1
fi
echo "smoke test: models/@MODEL@ on models/smoke.csv, the first rows of @SAMPLE@"
venv/bin/python -m edgeseq_device run --stream models/smoke.csv --model "models/@MODEL@" --output smoke.jsonl \
    ${trust:+--trust "$trust"}
if [ ! -s smoke.jsonl ]; then
    echo "install.sh: the smoke test made no forecast" >&2
    exit 1
fi
echo "first forecast: $(head -n 1 smoke.jsonl)"
echo "installed. To run it as a service (as root):"
echo "  cp '$here/edgeseq.service' /etc/systemd/system/ && systemctl daemon-reload && systemctl enable --now edgeseq"
echo "  settings (source, sink, model): $here/edgeseq.env; log: journalctl -u edgeseq -f"
"""

SERVICE = """[Unit]
Description=edgeseq runner: forecasts from a sensor stream (@DIR@)
After=local-fs.target

[Service]
# The runner says READY=1 once its model is loaded and checked and its input open, then WATCHDOG=1 from its own
# loop (never a thread) as it reads or waits for input: a run stuck (a model call that never returns, a reader of
# its forecasts that takes nothing) stops pinging and systemd restarts it (Restart=on-failure). WatchdogSec=30:
# the loop's longest pass measured on a PC (a 64 KiB read of rows, run) was under 0.21 s, so 30 s leaves room for a
# box 100 times slower, a slow SD card or a busy CPU, and a hung run is back within a minute. The runner pings at
# most every 10 s (a third of it). Only the runner itself may notify (NotifyAccess=main).
Type=notify
NotifyAccess=main
WatchdogSec=30
# What it reads, writes and runs: edit @DIR@/edgeseq.env, then systemctl restart edgeseq
EnvironmentFile=@DIR@/edgeseq.env
StateDirectory=edgeseq
ExecStart="@DIR@/venv/bin/python" -m edgeseq_device run --model ${EDGESEQ_MODEL} --stream ${EDGESEQ_SOURCE} \\
    --output ${EDGESEQ_SINK} @TRUST@ $EDGESEQ_OPTIONS
# systemctl reload: SIGHUP, logged; the followed file is looked at again at the next poll, as after a rotation
ExecReload=/bin/kill -HUP $MAINPID
# systemctl stop sends SIGTERM: the runner stops reading, writes and flushes every forecast computed, prints
# its summary and exits with 143, which is a clean stop here, not a failure
KillSignal=SIGTERM
SuccessExitStatus=143
TimeoutStopSec=20
# A crash, and a start that fails (exit 2: the source not there yet, a model or header it refuses), are tried
# again every 5 s; the log says why each time
Restart=on-failure
RestartSec=5

# Hardening: `systemd-analyze security --offline=true edgeseq.service` rates this unit 0.4 (SAFE; 9.6 UNSAFE
# without it). It runs as a user systemd makes for it (DynamicUser), who can read what others may read and write
# only its state directory, /var/lib/edgeseq (the forecasts). A sensor file of another user must be readable by
# it: mode 0644, or a group the file has added with `systemctl edit edgeseq`: [Service] SupplementaryGroups=NAME.
# No network (the file and FIFO sources need none), no devices, no privileges, system calls of a service only.
DynamicUser=yes
UMask=0027
NoNewPrivileges=yes
CapabilityBoundingSet=
AmbientCapabilities=
ProtectSystem=strict
ProtectHome=yes
PrivateTmp=yes
PrivateDevices=yes
PrivateNetwork=yes
PrivateUsers=yes
PrivateMounts=yes
IPAddressDeny=any
RestrictAddressFamilies=AF_UNIX
ProtectHostname=yes
ProtectClock=yes
ProtectKernelTunables=yes
ProtectKernelModules=yes
ProtectKernelLogs=yes
ProtectControlGroups=yes
ProtectProc=invisible
RestrictNamespaces=yes
RestrictRealtime=yes
RestrictSUIDSGID=yes
LockPersonality=yes
RemoveIPC=yes
DevicePolicy=closed
SystemCallArchitectures=native
SystemCallFilter=@system-service
SystemCallErrorNumber=EPERM

[Install]
WantedBy=multi-user.target
"""

MQTT_DROPIN = """# edgeseq.service in MQTT mode: readings from, and forecasts to, a broker on this box (mosquitto, say).
# As root:
#   mkdir -p /etc/systemd/system/edgeseq.service.d /etc/edgeseq
#   cp edgeseq-mqtt.conf /etc/systemd/system/edgeseq.service.d/mqtt.conf
#   (umask 077; echo 'USERNAME:PASSWORD' > /etc/edgeseq/mqtt-credentials)
# then in edgeseq.env:
#   EDGESEQ_SOURCE=mqtt://127.0.0.1:1883/sensors/+/readings
#   EDGESEQ_SINK=mqtt://127.0.0.1:1883/forecasts/{key}
#   EDGESEQ_OPTIONS=--mqtt-credentials /run/credentials/edgeseq.service/mqtt --state /var/lib/edgeseq/state.json
# and: systemctl daemon-reload && systemctl restart edgeseq
[Service]
# The network, for the broker's address only (a broker on another box: its address, and mqtts:// with
# --mqtt-ca in EDGESEQ_OPTIONS). systemd-analyze security --offline=true: 1.2 with this file, 0.4 without.
PrivateNetwork=no
RestrictAddressFamilies=AF_UNIX AF_INET AF_INET6
IPAddressDeny=any
IPAddressAllow=localhost
# The credentials: systemd reads the root-only file and gives the service its own copy, which only the service
# can read (/run/credentials/edgeseq.service/mqtt); the password is never in the unit, the environment or ps.
LoadCredential=mqtt:/etc/edgeseq/mqtt-credentials
"""

ENV = """# Settings of edgeseq.service; after a change: systemctl restart edgeseq
# The model file (its manifest .json beside it).
EDGESEQ_MODEL=@DIR@/models/@MODEL@
# Where rows come from, with --follow (below): a CSV file with a header that a logger appends to (read like
# tail -F, reopened after a rotation), or a FIFO (mkfifo) a reader writes to (reopened for its next writer).
# The service runs as a user of its own: the file (or FIFO) and its folders must be readable by others, or by a
# group given to the service (systemctl edit edgeseq: [Service] SupplementaryGroups=GROUP); not under /home.
EDGESEQ_SOURCE=/var/lib/edgeseq/sensor.csv
# Where forecasts go, one JSON line each. Each start reads the source from its first row and writes this
# file afresh, so it always holds the forecasts of the whole source.
EDGESEQ_SINK=/var/lib/edgeseq/forecasts.jsonl
# More options of `python -m edgeseq_device run` (--stride N, --format csv, --threads N).
EDGESEQ_OPTIONS=--follow
"""

README = """# edgeseq bundle: @MODELS@ for @PLATFORM@, Python @PYTHON@

Built by `@COMMAND@` with edgeseq @VERSION@ on @BUILT@. Everything here installs with no network.

| path | what |
|---|---|
| `wheels/` | edgeseq-device and its dependencies (numpy, onnxruntime, ...) for @PLATFORM@, CPython @PYTHON@ |
| `models/` | the models with their manifests and batched companions, `@SAMPLE@` and `smoke.csv` (its first rows) |
| `install.sh` | checks `SHA256SUMS`, makes `venv/`, installs the wheels, runs the model on the sample |
| `requirements.txt` | every wheel pinned with its sha256: pip installs these and nothing else |
| `edgeseq.service.in`, `edgeseq.env.in` | the systemd unit and its settings (install.sh fills in this folder) |
| `edgeseq-mqtt.conf` | a drop-in for the unit: readings from and forecasts to an MQTT broker |
| `SHA256SUMS` | the sha256 of every other file (`sha256sum -c SHA256SUMS`) |
| `SHA256SUMS.sig`, `models/*.sig` | with `--sign-key`: the builder's signatures of `SHA256SUMS` and of each model |

## Signed bundles
A bundle built with `edgeseq bundle --sign-key` is checked with a public key this box already has, never one
that came with the bundle: `./install.sh --trust /etc/edgeseq/trusted/owner.pem` (or a folder of `*.pem`; with
no `--trust`, `/etc/edgeseq/trusted/` when it exists) installs nothing unless `SHA256SUMS.sig` verifies with it
(the box's `openssl`), and the service then runs only models signed by those keys. install.sh is itself a file
of the bundle: to trust nothing of it before it is checked, check by hand first, with the box's own tools:
`openssl dgst -sha256 -verify /etc/edgeseq/trusted/owner.pem -signature SHA256SUMS.sig SHA256SUMS &&
sha256sum -c SHA256SUMS` (and a tarball before unpacking it, with the `.sig` written beside it).

## On the box
1. Unpack it where it will stay, as root: `@UNPACK@` makes `/opt/@NAME@` (a bundle
   made as a folder: copy the folder there).
2. `cd /opt/@NAME@ && ./install.sh`: it checks that the folder is the bundle as built (every file listed in
   `SHA256SUMS` with its digest, no file that is not, all of it root's when run as root), installs exactly the
   pinned, hashed wheels of `requirements.txt`, and prints the first forecast of the sample (`bundle.json` has
   the one the build machine made: int8 models can differ in the last digits between CPUs). It needs Python
   @PYTHON@ with venv (Debian, Raspberry Pi OS: `apt install python3-venv`). A newer bundle goes in a new
   folder (an older bundle's files left among its own are refused); copy `edgeseq.env` over to keep its
   settings, then run its `install.sh`.
3. Readings over MQTT instead of a file: see `edgeseq-mqtt.conf`, a drop-in for the unit that opens the
   network to the broker and hands the service its credentials (`LoadCredential=`), with the settings it
   needs in `edgeseq.env`.
4. Point the service at your data in `edgeseq.env`: `EDGESEQ_SOURCE` (a CSV a logger appends to, or a FIFO;
   both read with `--follow`; the service's own user must be able to read it: see the file's comments),
   `EDGESEQ_SINK` (the forecasts, JSON lines), `EDGESEQ_MODEL`.
5. As root: `cp edgeseq.service /etc/systemd/system/ && systemctl daemon-reload && systemctl enable --now edgeseq`.
6. Its output: `tail -f /var/lib/edgeseq/forecasts.jsonl`; its log (start, skipped rows, progress, summary):
   `journalctl -u edgeseq -f`.

`systemctl stop edgeseq` sends SIGTERM: the runner writes every forecast it computed, prints its summary and
exits with 143, which the unit counts as a clean stop. `systemctl reload edgeseq` sends SIGHUP, which is
logged: the followed file is looked at again at the next poll (0.2 s), as after a log rotation. On a crash,
or a failed start (the source not there yet), the service tries again every 5 s. The unit is `Type=notify`: the
runner says it is ready once its model and input are checked, then pings systemd's watchdog from its loop as it
reads or waits for rows; a run stuck for 30 s (`WatchdogSec=30`) is killed and started again. It runs as a user systemd
makes for it, with no network, no devices and no privileges, writing only `/var/lib/edgeseq`
(`systemd-analyze security --offline=true edgeseq.service`: 0.4, SAFE).

Run by hand: `venv/bin/python -m edgeseq_device run --stream FILE --model models/@MODEL@` (`--help` for more).
"""

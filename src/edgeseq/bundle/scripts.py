"""The text files of a bundle: install.sh, the systemd unit and its settings, and the README for the box.

`@DIR@` in the unit and the settings is the bundle's folder on the box; install.sh fills it in.
"""

from __future__ import annotations

INSTALL_SH = r"""#!/bin/sh
# Install the edgeseq runner from this bundle with no network, then run the model on the sample's first rows.
#   ./install.sh            uses python3; PYTHON=/usr/bin/python3.11 ./install.sh picks another
# Running it again makes venv/ afresh (a newer bundle's runtime replaces an older one's) and keeps edgeseq.env.
set -eu
cd "$(dirname "$0")"
here=$(pwd)
python=${PYTHON:-python3}

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
# Every file as it was built (in Python: BusyBox's sha256sum lacks GNU's options, and some boxes lack it)
if ! "$python" - <<'PY'
import hashlib, pathlib, sys
bad = []
for line in pathlib.Path("SHA256SUMS").read_text().splitlines():
    digest, name = line.split("  ", 1)
    path = pathlib.Path(name)
    if not path.is_file() or hashlib.sha256(path.read_bytes()).hexdigest() != digest:
        bad.append(name)
print("\n".join(f"{name}: FAILED" for name in bad), file=sys.stderr)
sys.exit(1 if bad else 0)
PY
then
    echo "install.sh: files differ from SHA256SUMS: copy the bundle again" >&2
    exit 1
fi

echo "creating $here/venv"
if ! "$python" -m venv --clear venv; then
    echo "install.sh: $python cannot create a venv (Debian: apt install python3-venv)" >&2
    exit 1
fi
echo "installing edgeseq-device from wheels/ (no network)"
venv/bin/python -m pip install --quiet --no-index --find-links wheels edgeseq-device

# The unit and its settings with this folder's path: systemd takes a quoted path with spaces, and "%%" for "%"
venv/bin/python - "$here" <<'PY'
import pathlib, sys
here = sys.argv[1]
if any(c in here for c in '"\\\n'):
    sys.exit(f"install.sh: the unit cannot name a folder with quotes, backslashes or line breaks: {here!r}")
unit = pathlib.Path("edgeseq.service.in").read_text().replace("@DIR@", here.replace("%", "%%"))
pathlib.Path("edgeseq.service").write_text(unit)
settings = pathlib.Path("edgeseq.env")
if not settings.exists():  # a second install keeps the settings made for the first
    settings.write_text(pathlib.Path("edgeseq.env.in").read_text().replace("@DIR@", here))
PY

echo "smoke test: models/@MODEL@ on models/smoke.csv, the first rows of @SAMPLE@"
venv/bin/python -m edgeseq_device run --stream models/smoke.csv --model "models/@MODEL@" --output smoke.jsonl
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
Type=simple
# What it reads, writes and runs: edit @DIR@/edgeseq.env, then systemctl restart edgeseq
EnvironmentFile=@DIR@/edgeseq.env
StateDirectory=edgeseq
ExecStart="@DIR@/venv/bin/python" -m edgeseq_device run --model ${EDGESEQ_MODEL} --stream ${EDGESEQ_SOURCE} \\
    --output ${EDGESEQ_SINK} $EDGESEQ_OPTIONS
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

[Install]
WantedBy=multi-user.target
"""

ENV = """# Settings of edgeseq.service; after a change: systemctl restart edgeseq
# The model file (its manifest .json beside it).
EDGESEQ_MODEL=@DIR@/models/@MODEL@
# Where rows come from, with --follow (below): a CSV file with a header that a logger appends to (read like
# tail -F, reopened after a rotation), or a FIFO (mkfifo) a reader writes to (reopened for its next writer).
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
| `models/` | the model files with their manifests, `@SAMPLE@` (a sample stream) and `smoke.csv` (its first rows) |
| `install.sh` | checks `SHA256SUMS`, makes `venv/`, installs the wheels, runs the model on the sample |
| `edgeseq.service.in`, `edgeseq.env.in` | the systemd unit and its settings (install.sh fills in this folder) |
| `SHA256SUMS` | the sha256 of every other file (`sha256sum -c SHA256SUMS`) |

## On the box
1. Unpack it where it will stay, as root: `@UNPACK@` makes `/opt/@NAME@` (a bundle
   made as a folder: copy the folder there).
2. `cd /opt/@NAME@ && ./install.sh`: it prints the first forecast of the sample (`bundle.json` has the one
   the build machine made: int8 models can differ in the last digits between CPUs). It needs Python @PYTHON@ with venv
   (Debian, Raspberry Pi OS: `apt install python3-venv`). Run it again after copying a newer bundle over:
   it makes `venv/` afresh and keeps `edgeseq.env`.
3. Point the service at your data in `edgeseq.env`: `EDGESEQ_SOURCE` (a CSV a logger appends to, or a FIFO;
   both read with `--follow`),
   `EDGESEQ_SINK` (the forecasts, JSON lines), `EDGESEQ_MODEL`.
4. As root: `cp edgeseq.service /etc/systemd/system/ && systemctl daemon-reload && systemctl enable --now edgeseq`.
5. Its output: `tail -f /var/lib/edgeseq/forecasts.jsonl`; its log (start, skipped rows, progress, summary):
   `journalctl -u edgeseq -f`.

`systemctl stop edgeseq` sends SIGTERM: the runner writes every forecast it computed, prints its summary and
exits with 143, which the unit counts as a clean stop. `systemctl reload edgeseq` sends SIGHUP, which is
logged: the followed file is looked at again at the next poll (0.2 s), as after a log rotation. On a crash,
or a failed start (the source not there yet), the service tries again every 5 s. It runs as root: add
`User=` to the unit to run it as another user who can read the bundle and the source.

Run by hand: `venv/bin/python -m edgeseq_device run --stream FILE --model models/@MODEL@` (`--help` for more).
"""

"""What an `edgeseq bundle` costs on each platform: size, install time, start to first forecast, peak RSS.

    python benchmarks/bundle_report.py [--model exported/sensor_lstm.dynamic-int8.onnx] [--rows 240] [--json FILE]

linux-x86_64 is measured natively here. linux-aarch64 runs under qemu-user as a Cortex-A72 (tests/emulation.py;
`bash .ci/arm64-sysroot.sh .cache/arm64` as root first): its timings are EMULATED, qemu translating every
instruction on this x86 machine, and say nothing about a real Raspberry Pi's speed; its peak RSS is the qemu
process's, translation buffers included. Each bundle is built as a tarball, unpacked into a fresh folder and
installed by its own install.sh with no network (`unshare -n` where it can). Run it from the repository root.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from edgeseq.bundle import make_bundle  # noqa: E402
from tests.emulation import PYTHON, aarch64_unavailable, run_aarch64  # noqa: E402

# Host programs, run natively in either case: the shell times the first line, GNU time reports peak RSS (KB).
_FIRST = 'start=$(date +%s.%N); "$@" | { IFS= read -r first; end=$(date +%s.%N); echo "$start $end"; cat >/dev/null; }'


def _run(argv: list[str], emulated: bool, cwd: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    if emulated:
        return run_aarch64(argv, cwd=cwd, env=env, timeout=1800)
    return subprocess.run(argv, cwd=cwd, env=env, capture_output=True, text=True, timeout=1800)


def _offline() -> list[str]:
    probe = subprocess.run(["unshare", "-n", "true"], capture_output=True) if os.geteuid() == 0 else None
    return ["unshare", "-n"] if probe is not None and probe.returncode == 0 else []


def measure(target: str, model: Path, rows: int, scratch: Path) -> dict:
    emulated = target == "linux-aarch64"
    tarball = scratch / f"{target}.tar.gz"
    started = time.perf_counter()
    make_bundle([model], target, tarball)
    build_s = time.perf_counter() - started
    with tarfile.open(tarball) as archive:
        archive.extractall(scratch / target, filter="data")
    folder = scratch / target / target
    unpacked = sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())
    env = {k: v for k, v in os.environ.items() if k not in ("VIRTUAL_ENV", "PYTHONPATH")}
    if emulated:
        env["PYTHON"] = str(PYTHON)
    started = time.perf_counter()
    installed = _run([*(_offline() if not emulated else []), "./install.sh"], emulated, folder, env)
    install_s = time.perf_counter() - started
    if installed.returncode != 0:
        sys.exit(f"{target}: install.sh failed:\n{installed.stdout}{installed.stderr}")
    sample = folder / "models" / json.loads((folder / "bundle.json").read_text())["sample"]
    part = scratch / f"{target}.part.csv"
    part.write_text("".join(sample.open().readlines()[: rows + 1]))
    runner = [str(folder / "venv" / "bin" / "python"), "-m", "edgeseq_device", "run", "--stream", str(part),
              "--model", str(folder / "models" / model.name)]  # fmt: skip
    first = _run(["sh", "-c", _FIRST, "sh", *runner], emulated, folder)
    start, end = map(float, first.stdout.split()[-2:])
    timed = _run(["/usr/bin/time", "-f", "%M", *runner, "--output", os.devnull], emulated, folder)
    rate = re.search(r"([\d,]+) rows/s", timed.stderr)
    return {
        "platform": target,
        "emulated": emulated,
        "cpu": "Cortex-A72 (qemu-user on this x86-64 machine)" if emulated else platform.processor() or "x86_64",
        "bundle_bytes": tarball.stat().st_size,
        "unpacked_bytes": unpacked,
        "build_s": build_s,
        "install_s": install_s,
        "start_to_first_forecast_s": end - start,
        "peak_rss_mb": int(timed.stderr.strip().splitlines()[-1]) / 1024,
        "rows": rows,
        "rows_per_s": float(rate.group(1).replace(",", "")) if rate else None,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", type=Path, default=REPO / "exported" / "sensor_lstm.dynamic-int8.onnx")
    parser.add_argument("--rows", type=int, default=240, help="rows streamed for the RSS and rate figures")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    targets = ["linux-x86_64"]
    why = aarch64_unavailable()
    if why is None:
        targets.append("linux-aarch64")
    else:
        print(f"linux-aarch64 not measured: {why}", file=sys.stderr)
    with tempfile.TemporaryDirectory() as scratch:
        results = [measure(target, args.model.resolve(), args.rows, Path(scratch)) for target in targets]
    print(f"model {args.model.name}, {args.rows} rows streamed")
    print("| platform | bundle (tar.gz) | unpacked | install.sh | start to first forecast | peak RSS | rows/s |")
    print("|---|---|---|---|---|---|---|")
    for r in results:
        tag = " (emulated)" if r["emulated"] else ""
        print(
            f"| {r['platform']}{tag} | {r['bundle_bytes'] / 1e6:.1f} MB | {r['unpacked_bytes'] / 1e6:.1f} MB | "
            f"{r['install_s']:.1f} s | {r['start_to_first_forecast_s']:.2f} s | {r['peak_rss_mb']:.0f} MB | "
            f"{r['rows_per_s'] or 0:,.0f} |"
        )
    if args.json:
        command = "python benchmarks/bundle_report.py " + " ".join(sys.argv[1:])
        args.json.write_text(json.dumps({"command": command.strip(), "results": results}, indent=2) + "\n")


if __name__ == "__main__":
    main()

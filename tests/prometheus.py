"""A real Prometheus for the metrics tests: started by the test on a free 127.0.0.1 port, stopped by its own pid.

`start_prometheus(folder, targets)` writes a config that scrapes each `HOST:PORT` in `targets` every second, and
starts Debian's `prometheus` with its storage in `folder` (nothing outside it is written, and the system's
prometheus service is never touched); it returns a `Prometheus` once its /-/ready answers. `query(expr)` asks its
HTTP API (/api/v1/query) and returns the instant vector's samples. `stop()` is a SIGTERM to that pid, then SIGKILL
after STOP_TIMEOUT. With CI set, a missing prometheus fails the test (tests.helpers.require_in_ci); .ci/run
installs it.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

from tests.brokers import HOST, free_port
from tests.helpers import require_in_ci, terminate

INSTALL = "apt-get install prometheus (as root; .ci/run does it under CI)"
START_TIMEOUT = 30.0  # its first start on a busy 2-core machine: a few seconds (the TSDB, the web UI)
STOP_TIMEOUT = 10.0


class PrometheusError(RuntimeError):
    """prometheus did not start, or did not answer; the message ends with its log."""


def prometheus_binary() -> str | None:
    return shutil.which("prometheus") or ("/usr/bin/prometheus" if Path("/usr/bin/prometheus").exists() else None)


def require_prometheus() -> str:
    binary = prometheus_binary()
    if binary is None:
        require_in_ci(f"prometheus is not installed: {INSTALL}")
    return binary  # type: ignore[return-value]


class Prometheus:
    """One prometheus child process, its folder (config, storage, log) and port."""

    def __init__(self, folder: Path, port: int, process: subprocess.Popen) -> None:
        self.folder, self.port, self._process = folder, port, process
        self.log_file = folder / "prometheus.log"

    @property
    def pid(self) -> int:
        return self._process.pid

    @property
    def log(self) -> str:
        return self.log_file.read_text(errors="replace") if self.log_file.exists() else ""

    def get(self, path: str, **params: str) -> dict:
        url = f"http://{HOST}:{self.port}{path}" + (f"?{urllib.parse.urlencode(params)}" if params else "")
        with urllib.request.urlopen(url, timeout=5) as response:
            return json.loads(response.read())

    def query(self, expr: str) -> list[tuple[dict[str, str], float]]:
        """The instant vector of `expr` now: (labels, value) per series."""
        answer = self.get("/api/v1/query", query=expr)
        if answer.get("status") != "success":
            raise PrometheusError(f"query {expr!r}: {answer}")
        return [(sample["metric"], float(sample["value"][1])) for sample in answer["data"]["result"]]

    def wait_for(self, expr: str, wanted: float, timeout: float = 30.0) -> list[tuple[dict[str, str], float]]:
        """The samples of `expr` once its one value equals `wanted`; PrometheusError with the last ones if never."""
        deadline, samples = time.monotonic() + timeout, []
        while time.monotonic() < deadline:
            samples = self.query(expr)
            if len(samples) == 1 and samples[0][1] == wanted:
                return samples
            time.sleep(0.25)
        targets = self.get("/api/v1/targets")["data"]["activeTargets"]
        raise PrometheusError(f"{expr} is {samples}, not {wanted}, after {timeout} s; targets: {targets}")

    def stop(self) -> int | None:
        """SIGTERM to its own pid, a wait, then SIGKILL; its exit status."""
        return terminate(self._process, STOP_TIMEOUT)

    def __enter__(self) -> Prometheus:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def start_prometheus(folder: Path, targets: list[str], binary: str | None = None) -> Prometheus:
    """Write a config scraping `targets` (HOST:PORT, at /metrics) every second and start prometheus on a free
    loopback port, its storage in `folder`; return once it is ready."""
    binary = binary or prometheus_binary()
    if binary is None:
        raise PrometheusError(f"prometheus is not installed: {INSTALL}")
    folder = Path(folder).absolute()
    (folder / "data").mkdir(parents=True, exist_ok=True)
    config = folder / "prometheus.yml"
    config.write_text(
        "# written by tests/prometheus.py: one Prometheus of one test\n"
        "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n  evaluation_interval: 1s\n"
        "scrape_configs:\n  - job_name: edgeseq\n    static_configs:\n"
        f"      - targets: [{', '.join(repr(t) for t in targets)}]\n"
    )
    for _ in range(5):
        port = free_port()
        with (folder / "prometheus.log").open("ab") as log:
            process = subprocess.Popen(
                [
                    binary, f"--config.file={config}", f"--storage.tsdb.path={folder / 'data'}",
                    f"--web.listen-address={HOST}:{port}", "--log.level=info",
                ],
                stdin=subprocess.DEVNULL, stdout=log, stderr=log, cwd=folder,
            )  # fmt: skip
        server = Prometheus(folder, port, process)
        deadline = time.monotonic() + START_TIMEOUT
        while process.poll() is None and time.monotonic() < deadline:
            try:
                with urllib.request.urlopen(f"http://{HOST}:{port}/-/ready", timeout=2) as response:
                    if response.status == 200:
                        return server
            except (urllib.error.URLError, OSError):
                pass
            time.sleep(0.1)
        server.stop()
        if "address already in use" not in server.log:  # another process took the port: try another
            raise PrometheusError(f"prometheus did not start (status {process.returncode}):\n{server.log[-3000:]}")
    raise PrometheusError(f"no free port after 5 attempts:\n{server.log[-3000:]}")

"""Load and soak helpers: the proxy as its own process (console script), its RSS/FDs, latency stats.

`ProxyProcess(env)` runs `prom-keycloak-proxy serve` with `PROXY_*` variables on free loopback
ports, so memory and file descriptors measured with psutil are the proxy's alone (not the test
runner's, which also hosts the Keycloak emulator and the client).
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import psutil
import requests

from tests.support.proxy_server import free_port


def proxy_command() -> list[str]:
    """The console script next to this interpreter, else `python -m proxy`."""
    script = Path(sys.executable).with_name("prom-keycloak-proxy")
    if script.exists():
        return [str(script), "serve"]
    found = shutil.which("prom-keycloak-proxy")
    return [found, "serve"] if found else [sys.executable, "-m", "proxy", "serve"]


class ProxyProcess:
    """`prom-keycloak-proxy serve` in a child process, stopped with SIGTERM."""

    def __init__(self, env: Mapping[str, str], log_path: Path) -> None:
        self.port = free_port()
        self.metrics_port = free_port()
        self.base_url = f"http://127.0.0.1:{self.port}"
        self.metrics_url = f"http://127.0.0.1:{self.metrics_port}"
        self.log_path = log_path
        self.env = {
            **{k: v for k, v in os.environ.items() if not k.startswith("PROXY_")},
            "PROXY_LOG_LEVEL": "warning",
            **env,
            "PROXY_LISTEN": f"127.0.0.1:{self.port}",
            "PROXY_METRICS_LISTEN": f"127.0.0.1:{self.metrics_port}",
        }
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def pid(self) -> int:
        """The child's process id."""
        assert self._proc is not None
        return self._proc.pid

    def start(self, timeout: float = 30) -> ProxyProcess:
        """Start and wait for `/readyz` (JWKS fetched)."""
        with self.log_path.open("ab") as log:
            self._proc = subprocess.Popen(
                proxy_command(), env=self.env, stdout=log, stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                raise RuntimeError(f"proxy exited {self._proc.returncode}: {self.log_tail()}")
            try:
                if requests.get(f"{self.metrics_url}/readyz", timeout=2).status_code == 200:
                    return self
            except requests.RequestException:
                pass
            time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"proxy not ready after {timeout}s: {self.log_tail()}")

    def log_tail(self, lines: int = 30) -> str:
        """The end of the proxy's log."""
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def sample(self) -> tuple[int, int]:
        """(RSS bytes, open file descriptors) of the proxy process."""
        proc = psutil.Process(self.pid)
        return proc.memory_info().rss, proc.num_fds()

    def stop(self) -> None:
        """SIGTERM, then SIGKILL after 10 s."""
        if self._proc is None or self._proc.poll() is not None:
            return
        self._proc.send_signal(signal.SIGTERM)
        try:
            self._proc.wait(10)
        except subprocess.TimeoutExpired:
            self._proc.kill()
            self._proc.wait(5)


def percentile(values: Sequence[float], q: float) -> float:
    """The q-quantile (0..1) by nearest rank; 0 for no values."""
    if not values:
        return 0.0
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))]


@dataclass
class Window:
    """Counters of one reporting interval."""

    latencies: list[float] = field(default_factory=list)
    statuses: dict[int, int] = field(default_factory=dict)
    errors: int = 0
    unexpected: list[str] = field(default_factory=list)

    def record(self, status: int, seconds: float) -> None:
        """Count one answer."""
        self.latencies.append(seconds)
        self.statuses[status] = self.statuses.get(status, 0) + 1

    @property
    def count(self) -> int:
        """Requests answered (any status) in the window."""
        return len(self.latencies)


@dataclass(frozen=True)
class Sample:
    """One report line: time since start, throughput, latency, errors and the proxy's resources."""

    at: float
    rps: float
    p50_ms: float
    p99_ms: float
    errors: int
    statuses: Mapping[int, int]
    rss_mib: float
    fds: int

    def line(self) -> str:
        """A human-readable report line."""
        codes = " ".join(f"{k}:{v}" for k, v in sorted(self.statuses.items()))
        return (
            f"t={self.at:6.0f}s rps={self.rps:7.1f} p50={self.p50_ms:7.1f}ms "
            f"p99={self.p99_ms:7.1f}ms errors={self.errors} rss={self.rss_mib:6.1f}MiB "
            f"fds={self.fds} [{codes}]"
        )


def plateaued(values: Sequence[float], *, tolerance: float, absolute: float) -> tuple[bool, str]:
    """Whether the second half's peak stays within tolerance of the first half's peak."""
    if len(values) < 2:
        return True, "too few samples to judge"
    half = len(values) // 2
    first, second = max(values[:half]), max(values[half:])
    allowed = first * (1 + tolerance) + absolute
    why = f"first-half peak {first:.1f}, second-half peak {second:.1f}, allowed {allowed:.1f}"
    return second <= allowed, why

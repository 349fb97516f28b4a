"""The proxy as a separate process started through its console script (for RSS, signals, exit codes)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from collections.abc import Mapping
from pathlib import Path

import requests

from tests.support.logscan import LOG_SCAN
from tests.support.proxy_server import free_port


def console_script(name: str = "prom-keycloak-proxy", module: str = "proxy") -> list[str]:
    """The console script `name` of this environment, else `python -m module`."""
    script = Path(sys.executable).with_name(name)
    if script.exists():
        return [str(script)]
    found = shutil.which(name)
    return [found] if found else [sys.executable, "-m", module]


class ProxyProcess:
    """`prom-keycloak-proxy serve` with the given `PROXY_*` environment on free loopback ports."""

    def __init__(self, environ: Mapping[str, str], log_path: Path) -> None:
        self.port, self.metrics_port = free_port(), free_port()
        self.base_url = f"http://127.0.0.1:{self.port}"
        self.metrics_url = f"http://127.0.0.1:{self.metrics_port}"
        self.log_path = log_path
        env = {k: v for k, v in os.environ.items() if not k.startswith("PROXY_")}
        env.update(environ)
        env["PROXY_LISTEN"] = f"127.0.0.1:{self.port}"
        env["PROXY_METRICS_LISTEN"] = f"127.0.0.1:{self.metrics_port}"
        self._log = log_path.open("wb")
        self.proc = subprocess.Popen(
            [*console_script(), "serve"], env=env, stdout=self._log, stderr=subprocess.STDOUT
        )

    def wait_ready(self, timeout: float = 30.0) -> ProxyProcess:
        """Block until `/readyz` answers 200; raise with the log tail otherwise."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                break
            try:
                if requests.get(self.metrics_url + "/readyz", timeout=1).status_code == 200:
                    return self
            except requests.RequestException:
                pass
            time.sleep(0.1)
        raise RuntimeError(f"proxy not ready; log:\n{self.log_path.read_text()[-3000:]}")

    def stop(self) -> int:
        """SIGTERM and wait; returns the exit code."""
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=40)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._log.close()
        LOG_SCAN.feed_file(self.log_path)  # the subprocess's log lines face the secret scan too
        return int(self.proc.returncode)

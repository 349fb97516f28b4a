"""What the dashboard replay runs beside the proxy: the realm, the emulator, memcached, counters."""

from __future__ import annotations

import contextlib
import json
import re
import subprocess
import sys
import time
import urllib.request
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import psutil
import yaml

from bench.dashboard_data import CLUSTER, PROJECT
from proxy_demo.policy import DEMO_POLICY
from proxy_demo.prometheus import PrometheusServer, free_port
from tests.support import cacheservers

REALM, CLIENT = "nerc", "grafana"
EMULATOR_BIN = Path(sys.executable).parent / "keycloak-emulator"
COUNTED = ('handler="/api/v1/query"', 'handler="/api/v1/query_range"')
# the proxy's own counts of what the results cache and coalescing did (docs/caching.md)
OUTCOMES = {
    "prom_keycloak_proxy_results_cache_requests_total": "result",
    "prom_keycloak_proxy_coalesced_requests_total": "",
    "prom_keycloak_proxy_results_cache_errors_total": "kind",
}


def policy_file(workdir: Path, users: int) -> Path:
    """The demo policies plus `users` viewers, each holding project team-a on nerc-ocp-prod."""
    doc: dict[str, Any] = yaml.safe_load(DEMO_POLICY.read_text(encoding="utf-8"))
    for i in range(users):
        name = viewer(i)
        doc["users"].append(
            {"username": name, "password": f"{name}-password", "email": f"{name}@example.org"}
        )
        doc["grants"].append({"user": name, "projects": {CLUSTER: [PROJECT]}})
    path = workdir / "dashboard-policy.yaml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False), encoding="utf-8")
    return path


def viewer(i: int) -> str:
    """The user name of viewer `i`."""
    return f"viewer-{i:02d}"


@contextlib.contextmanager
def _process(cmd: list[str], log: Path, ready: Any, what: str) -> Iterator[subprocess.Popen[bytes]]:
    """Run `cmd` until the block ends, once `ready()` is true (30 s at most)."""
    with log.open("ab") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 30
        while not ready():
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"{what} did not start ({proc.poll()}), see {log}")
            time.sleep(0.05)
        yield proc
    finally:
        proc.terminate()
        proc.wait(10)


@contextlib.contextmanager
def emulator(policy: Path, workdir: Path) -> Iterator[str]:
    """The Keycloak emulator in its own process (not sharing the load's interpreter); its URL."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    discovery = f"{url}/realms/{REALM}/.well-known/openid-configuration"
    cmd = [str(EMULATOR_BIN), str(policy), "--port", str(port)]
    with _process(cmd, workdir / "emulator.log", lambda: _answers(discovery), "the emulator"):
        yield url


def _answers(url: str) -> bool:
    """True when the loopback `url` answers 200."""
    try:
        with urllib.request.urlopen(url, timeout=2) as r:  # noqa: S310 - loopback http
            return bool(r.status == 200)
    except OSError:
        return False


def mint(kc_url: str, user: str) -> str:
    """A signed access token of `user` from the emulator's mint control (as Grafana holds it)."""
    body = json.dumps({"user": user, "client": CLIENT, "lifetime": 3600}).encode()
    request = urllib.request.Request(  # noqa: S310 - loopback http
        f"{kc_url}/_emulator/realms/{REALM}/mint", data=body, headers={"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(request, timeout=10) as r:  # noqa: S310
        return str(json.loads(r.read())["access_token"])


@contextlib.contextmanager
def memcached() -> Iterator[str]:
    """Debian `memcached` on loopback, plain (the tests' server); yields `host:port`."""
    server = cacheservers.memcached().start()
    try:
        yield server.address
    finally:
        server.stop()


class Upstream:
    """Counts the queries Prometheus served, from its own `/metrics` (over mTLS)."""

    def __init__(self, prom: PrometheusServer) -> None:
        """Count on `prom`."""
        self.url = f"{prom.base_url}/metrics"
        self.ctx = prom.ssl_context()

    async def __call__(self) -> int:
        """`prometheus_http_requests_total` of the query and query_range handlers."""
        async with aiohttp.ClientSession() as session, session.get(self.url, ssl=self.ctx) as resp:
            text = await resp.text()
        return sum(
            int(float(line.rsplit(" ", 1)[1]))
            for line in text.splitlines()
            if line.startswith("prometheus_http_requests_total{") and any(c in line for c in COUNTED)
        )


async def outcomes(metrics_url: str) -> Counter[str]:
    """The proxy's results-cache outcomes, coalesced requests and cache errors so far."""
    async with aiohttp.ClientSession() as session, session.get(metrics_url) as resp:
        text = await resp.text()
    out: Counter[str] = Counter()
    for line in text.splitlines():
        name, _, rest = line.partition("{")
        if name not in OUTCOMES:
            continue
        labels = dict(re.findall(r'(\w+)="([^"]*)"', rest))
        key = labels.get(OUTCOMES[name], "?") if OUTCOMES[name] else "coalesced"
        out[key] += int(float(line.rsplit(" ", 1)[1]))
    return out


def cpu_seconds(proc: psutil.Process | None) -> float:
    """User + system CPU seconds of the process and its children (the proxy's workers)."""
    if proc is None:
        return 0.0
    with contextlib.suppress(psutil.NoSuchProcess):
        return sum(sum(p.cpu_times()[:2]) for p in (proc, *proc.children(recursive=True)))
    return 0.0

"""The real console script as a subprocess: SIGTERM drains in-flight requests, workers share the port."""

from __future__ import annotations

import asyncio
import signal
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest
import requests
from aiohttp import web
from prometheus_client.parser import text_string_to_metric_families

from keycloak_emulator import ThreadedEmulatorServer
from tests.support.logscan import LOG_SCAN
from tests.support.loopback import LoopbackServer
from tests.support.proc import ProxyProcess
from tests.support.stack import POLICY, REALM, TokenFor

QUERY = 'DCGM_FI_DEV_GPU_UTIL{cluster="nerc-ocp-prod",namespace="team-a"}'
SLOW_SECONDS = 2.0
SHUTDOWN_TIMEOUT = 6.0


class SlowUpstream(LoopbackServer):
    """A plain-HTTP upstream on loopback whose query endpoint answers after SLOW_SECONDS."""

    def __init__(self) -> None:
        super().__init__()
        self.received = threading.Event()

    async def _query(self, request: web.Request) -> web.Response:
        self.received.set()
        await asyncio.sleep(SLOW_SECONDS)
        return web.json_response({"status": "success", "data": {"resultType": "vector", "result": []}})

    def add_routes(self, app: web.Application) -> None:
        """Only the query endpoint, answering slowly."""
        app.router.add_route("*", "/api/v1/query", self._query)


@pytest.fixture
def slow_upstream() -> Iterator[SlowUpstream]:
    """The slow upstream, stopped after the test."""
    server = SlowUpstream().start()
    yield server
    server.stop()


def environ(upstream: SlowUpstream, keycloak: ThreadedEmulatorServer, **extra: str) -> dict[str, str]:
    """`PROXY_*` for the console script in front of the slow upstream and the emulator."""
    env = {
        "PROXY_PROMETHEUS_BASE_URL": upstream.base_url,
        "PROXY_AUTH_BASE_URL": keycloak.base_url,
        "PROXY_AUTH_REALM": REALM,
        "PROXY_AUTH_CLIENT_ID": POLICY["resource_server"]["client_id"],
        "PROXY_AUTH_CLIENT_SECRET": POLICY["resource_server"]["secret"],
        "PROXY_ACM_HUB": POLICY["hub"],
        "PROXY_SHUTDOWN_TIMEOUT": f"{SHUTDOWN_TIMEOUT:g}s",
        "PROXY_LOG_LEVEL": "debug",
    }
    env.update(extra)
    return env


def refused(port: int) -> bool:
    """True when a new TCP connection to the port is refused."""
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
    except ConnectionRefusedError:
        return True
    return False


def events(log: Path) -> list[str]:
    """The `event` values of the JSON lines in a proxy log."""
    import json

    return [
        json.loads(line).get("event", "") for line in log.read_text().splitlines() if line.startswith("{")
    ]


def test_sigterm_drains_in_flight_and_refuses_new_connections(
    slow_upstream: SlowUpstream,
    emulator_server: ThreadedEmulatorServer,
    token_for: TokenFor,
    tmp_path: Path,
) -> None:
    """A slow request started before SIGTERM completes with 200; new connections are refused
    after it; the process exits 0 within PROXY_SHUTDOWN_TIMEOUT."""
    log = tmp_path / "proxy.log"
    proc = ProxyProcess(environ(slow_upstream, emulator_server), log).wait_ready()
    answer: dict[str, requests.Response] = {}

    def slow_request() -> None:
        answer["r"] = requests.get(
            proc.base_url + "/api/v1/query",
            params={"query": QUERY},
            headers={"Authorization": f"Bearer {token_for('alice')}"},
            timeout=30,
        )

    client = threading.Thread(target=slow_request)
    try:
        client.start()
        assert slow_upstream.received.wait(10), log.read_text()[-2000:]
        proc.proc.send_signal(signal.SIGTERM)
        signalled = time.monotonic()
        time.sleep(0.3)
        assert refused(proc.port)
        client.join(timeout=20)
        assert answer["r"].status_code == 200, answer["r"].text
        assert proc.proc.wait(timeout=SHUTDOWN_TIMEOUT + 5) == 0
        assert time.monotonic() - signalled < SHUTDOWN_TIMEOUT
    finally:
        proc.stop()
        LOG_SCAN.feed_file(log)
    seen = events(log)
    assert {"draining", "stopped"} <= set(seen)
    assert seen.index("request") < seen.index("stopped")


def worker_samples(metrics_url: str) -> tuple[str, float]:
    """(worker index, requests answered on route "root") from one scrape on a fresh connection."""
    text = requests.get(metrics_url + "/metrics", headers={"Connection": "close"}, timeout=5).text
    worker, root = "", 0.0
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == "prom_keycloak_proxy_worker_info":
                worker = sample.labels["worker"]
            if sample.name == "prom_keycloak_proxy_requests_total" and sample.labels["route"] == "root":
                root += sample.value
    return worker, root


def test_two_workers_share_the_port_and_stop_cleanly(
    slow_upstream: SlowUpstream, emulator_server: ThreadedEmulatorServer, tmp_path: Path
) -> None:
    """PROXY_WORKERS=2: two processes (distinct PIDs) both answer on the same port, each with its
    own metrics, and all exit 0 on SIGTERM."""
    log = tmp_path / "proxy.log"
    env = environ(slow_upstream, emulator_server, PROXY_WORKERS="2", PROXY_ROOT_ANONYMOUS="true")
    proc = ProxyProcess(env, log).wait_ready()
    try:
        workers = [
            p
            for p in psutil.Process(proc.proc.pid).children()
            if "resource_tracker" not in " ".join(p.cmdline())
        ]
        assert len({p.pid for p in workers}) == 2
        answered: dict[str, float] = {}
        deadline = time.monotonic() + 30
        # Under load the second worker may bind later than the first answers /readyz: keep
        # sending new connections until both have served some.
        while time.monotonic() < deadline and (len(answered) < 2 or not all(answered.values())):
            for _ in range(20):
                assert (
                    requests.get(proc.base_url + "/", headers={"Connection": "close"}, timeout=5).status_code
                    == 200
                )
            try:  # a worker may still be binding its metrics listener
                worker, root = worker_samples(proc.metrics_url)
            except requests.RequestException:
                continue
            answered[worker] = root
        assert {"0", "1"} == set(answered), answered
        assert all(v > 0 for v in answered.values()), answered
        proc.proc.send_signal(signal.SIGTERM)
        assert proc.proc.wait(timeout=SHUTDOWN_TIMEOUT + 5) == 0
        assert not any(p.is_running() and p.status() != psutil.STATUS_ZOMBIE for p in workers)
    finally:
        proc.stop()
        LOG_SCAN.feed_file(log)
    assert events(log).count("stopped") == 2

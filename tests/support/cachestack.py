"""The results-cache tests' stack (docs/caching.md): multi-day data, a recording relay, outcome counts.

Fixtures (registered in `tests/conftest.py`):
- `cache_series` (session): `tests.support.cachedata`'s three days of series, built at session start.
- `cache_prometheus` (session): a real Prometheus (mTLS, no rules) holding them.
- `relay_factory` (function): `Relay`s in front of a Prometheus; stopped after the test.

Helpers judge the proxy only through its contract: HTTP answers, `/proxy/v1/explain`'s forwarded
text sent straight to Prometheus, and `prom_keycloak_proxy_results_cache_requests_total` on the
metrics port.
"""

from __future__ import annotations

import asyncio
import json
import ssl
import time
from collections import Counter
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import pytest
import requests
from aiohttp import web
from prometheus_client.parser import text_string_to_metric_families

from proxy_demo.dataset import Series
from proxy_demo.prometheus import Binaries, PrometheusServer
from tests.support.cachedata import build_cache_dataset
from tests.support.loopback import LoopbackServer
from tests.support.proxy_server import ProxyServer
from tests.support.stub_upstream import Seen

OUTCOMES = "prom_keycloak_proxy_results_cache_requests"
RANGE = "/api/v1/query_range"
INSTANT = "/api/v1/query"
# fair-use limits out of the way: these tests send many requests as one subject
GENEROUS = {
    "PROXY_RATE_PER_SUBJECT": "100000",
    "PROXY_RATE_BURST_PER_SUBJECT": "100000",
    "PROXY_MAX_CONCURRENT_PER_SUBJECT": "1000",
}

# (seen request, upstream status, upstream body) → (status, body) the relay answers instead
Rewrite = Callable[[Seen, int, bytes], tuple[int, bytes]]


@dataclass
class CacheData:
    """The cache dataset and the instant it was built around (unix seconds)."""

    series: list[Series]
    built_at: float


@pytest.fixture(scope="session")
def cache_series() -> CacheData:
    """Three days of series ending an hour after session start (built once)."""
    now = time.time()
    return CacheData(build_cache_dataset(now), now)


@pytest.fixture(scope="session")
def cache_prometheus(
    tmp_path_factory: pytest.TempPathFactory,
    pki: Any,
    cache_series: CacheData,
    prometheus_binaries: Binaries,
) -> Iterator[PrometheusServer]:
    """A real Prometheus (mTLS, no rules: answers never change) over the cache dataset."""
    server = PrometheusServer(
        tmp_path_factory.mktemp("prometheus-cache"),
        pki,
        cache_series.series,
        rules=None,
        binaries=prometheus_binaries,
    )
    server.start()
    try:
        yield server
    finally:
        server.stop()


@dataclass
class Relay(LoopbackServer):
    """A TLS upstream relaying every request to a real Prometheus, recording what it was sent.

    `rewrite` replaces answers (warnings, errors, versioned values); `delay` holds each answer,
    so that concurrent identical requests overlap in flight.
    """

    scheme = "https"

    target: PrometheusServer
    delay: float = 0.0
    rewrite: Rewrite | None = None
    seen: list[Seen] = field(default_factory=list)

    def __post_init__(self) -> None:
        LoopbackServer.__init__(self)

    async def _start(self) -> None:
        # port 0: the kernel picks a port no other worker can take between choosing and binding
        app = web.Application()
        self.add_routes(app)
        self._runner = web.AppRunner(app, access_log=None, handle_signals=False, shutdown_timeout=0.1)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", 0, ssl_context=self.ssl_context()).start()
        self.port = int(self._runner.addresses[0][1])
        self.base_url = f"{self.scheme}://127.0.0.1:{self.port}"

    def add_routes(self, app: web.Application) -> None:
        """Every path is relayed."""
        app.router.add_route("*", "/{tail:.*}", self._handle)

    def ssl_context(self) -> ssl.SSLContext:
        """TLS requiring a client certificate from the target's CA, like the real Prometheus."""
        ctx = self.target.pki.server_context()
        ctx.verify_mode = ssl.CERT_REQUIRED
        ctx.load_verify_locations(str(self.target.pki.ca_cert))
        return ctx

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        body = await request.read()
        seen = Seen(request.method, request.path, request.query_string, dict(request.headers), body)
        self.seen.append(seen)
        headers = {"Accept": "application/json"}
        if body:
            headers["Content-Type"] = request.headers.get("Content-Type", "application/x-www-form-urlencoded")
        url = self.target.base_url + request.path_qs
        async with (
            aiohttp.ClientSession() as session,
            session.request(
                request.method, url, data=body or None, headers=headers, ssl=self.target.ssl_context()
            ) as upstream,
        ):
            status, answer = upstream.status, await upstream.read()
        if self.delay:
            await asyncio.sleep(self.delay)
        if self.rewrite is not None:
            status, answer = self.rewrite(seen, status, answer)
        return web.Response(status=status, body=answer, content_type="application/json")

    def count(self, path: str = RANGE) -> int:
        """How many requests for `path` reached this upstream so far."""
        return sum(1 for s in self.seen if s.path == path)

    def env(self) -> dict[str, str]:
        """`PROXY_PROMETHEUS_*` pointing a proxy at this relay with the target's client certificate."""
        return {
            "PROXY_PROMETHEUS_BASE_URL": self.base_url,
            "PROXY_PROMETHEUS_CA_CERT": str(self.target.pki.ca_cert),
            "PROXY_PROMETHEUS_TLS_CERT": str(self.target.pki.client_cert),
            "PROXY_PROMETHEUS_TLS_KEY": str(self.target.pki.client_key),
        }


RelayFactory = Callable[..., Relay]


@pytest.fixture
def relay_factory() -> Iterator[RelayFactory]:
    """Start relays (`Relay(target, ...)` arguments); all stopped after the test."""
    started: list[Relay] = []

    def make(target: PrometheusServer, **kwargs: Any) -> Relay:
        relay = Relay(target, **kwargs).start()
        started.append(relay)
        return relay

    yield make
    for relay in started:
        relay.stop()


def versioned(seen: Seen, status: int, body: bytes, version: int, **extra: Any) -> tuple[int, bytes]:
    """A query answer whose every sample value is replaced by `version` (plus `extra` envelope keys)."""
    doc = json.loads(body)
    if status == 200 and isinstance(doc.get("data"), dict):
        data = doc["data"]
        for item in data.get("result") or []:
            if "values" in item:
                item["values"] = [[t, str(version)] for t, _ in item["values"]]
            if "value" in item:
                item["value"] = [item["value"][0], str(version)]
    doc.update(extra)
    return status, json.dumps(doc).encode()


# ---------------------------------------------------------------------------------------- asking


def ask(
    proxy: ProxyServer,
    auth: Mapping[str, str],
    path: str,
    params: Mapping[str, str],
    *,
    headers: Mapping[str, str] | None = None,
    base: str = "",
) -> requests.Response:
    """A GET through the proxy (`base` is a hub prefix such as `/innabox-dev`)."""
    return requests.get(
        f"{proxy.base_url}{base}{path}",
        params=dict(params),
        headers={**auth, **(headers or {})},
        timeout=60,
    )


def forwarded(
    proxy: ProxyServer, auth: Mapping[str, str], query: str, path: str = RANGE, base: str = ""
) -> list[str]:
    """The texts the proxy would forward for `query` on `path` (its explain endpoint)."""
    r = ask(proxy, auth, "/proxy/v1/explain", {"query": query, "path": path}, base=base)
    assert r.status_code == 200, r.text
    doc = r.json()
    assert doc["decision"] in ("allowed", "narrowed"), doc
    return list(doc["forwarded"])


def direct(upstream: PrometheusServer, path: str, params: Mapping[str, str]) -> tuple[int, Any]:
    """The same request straight to Prometheus: (status, envelope)."""
    status, body = upstream.request("GET", path, dict(params))
    return status, json.loads(body)


def outcomes(proxy: ProxyServer) -> Counter[tuple[str, str]]:
    """`results_cache_requests_total` by (hub, result), read from the proxy's metrics port."""
    text = requests.get(f"{proxy.metrics_url}/metrics", timeout=10).text
    found: Counter[tuple[str, str]] = Counter()
    for family in text_string_to_metric_families(text):
        if family.name == OUTCOMES:
            for sample in family.samples:
                if sample.name.endswith("_total"):
                    found[(sample.labels["hub"], sample.labels["result"])] += int(sample.value)
    return found


def by_result(counts: Counter[tuple[str, str]], hub: str | None = None) -> Counter[str]:
    """Sum outcome counts over hubs (or keep one hub's)."""
    out: Counter[str] = Counter()
    for (h, result), n in counts.items():
        if hub is None or h == hub:
            out[result] += int(n)
    return out


def delta(
    before: Counter[tuple[str, str]], after: Counter[tuple[str, str]], hub: str | None = None
) -> Counter[str]:
    """Outcomes counted between two readings (per result)."""
    b, a = by_result(before, hub), by_result(after, hub)
    return Counter({k: a[k] - b[k] for k in a if a[k] - b[k]})


def seconds(ms: int) -> str:
    """A Prometheus time parameter with millisecond precision."""
    return f"{ms // 1000}.{ms % 1000:03d}"

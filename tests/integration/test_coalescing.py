"""Coalescing through the real proxy (docs/caching.md#coalescing): a slow recording TLS upstream on
loopback receives identical concurrent requests once; scopes, hubs and encodings never share;
overflow, disconnects, errors, scheduler slots, audit events and per-caller rule filtering; and
the real Prometheus behind a slow link."""

from __future__ import annotations

import asyncio
import gzip
import json
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import requests
from prometheus_client.parser import text_string_to_metric_families

from keycloak_emulator import ThreadedEmulatorServer
from proxy.services import SERVICES
from proxy_demo.certs import Pki
from proxy_demo.prometheus import PrometheusServer
from tests.support.faults import FaultProxy
from tests.support.hubs import hub_entry, hubs_config, hubs_environ
from tests.support.proxy_server import ProxyServer, make_settings
from tests.support.stack import ProxyFactory, TokenFor
from tests.support.stub_upstream import StubUpstream

pytestmark = pytest.mark.filterwarnings("error::pytest.PytestUnhandledThreadExceptionWarning")

HUB = "moc"
GPU = "DCGM_FI_DEV_GPU_UTIL"
SCOPED = {"query": f'{GPU}{{cluster="nerc-ocp-prod",exported_namespace="team-a"}}'}
QUERY = "/api/v1/query"
DELAY = 1.0  # every burst reaches the proxy well within it, even on a loaded machine
Reply = tuple[int, bytes]
Calls = list[tuple[str, dict[str, str]]]
Stubs = Callable[..., StubUpstream]
Proxies = Callable[..., ProxyServer]


@pytest.fixture
def stubs(pki_factory: Callable[[], Pki]) -> Iterator[Stubs]:
    """Recording TLS upstreams answering every request after DELAY seconds (StubUpstream
    options as keywords); all stopped after the test."""
    started: list[StubUpstream] = []

    def make(**options: Any) -> StubUpstream:
        server = StubUpstream(pki_factory(), **{"delay": DELAY, **options}).start()
        started.append(server)
        return server

    yield make
    for server in started:
        server.stop()


@pytest.fixture
def stub(stubs: Stubs) -> StubUpstream:
    """One slow recording upstream answering an empty vector."""
    return stubs()


@pytest.fixture
def proxies(tmp_path: Path, hubs_emulator_server: ThreadedEmulatorServer) -> Iterator[Proxies]:
    """Proxies in front of stubs: `make(stub, **env)` for hub moc alone, `make(*stubs, hubs=…)`
    for one hub per name; all stopped after the test."""
    started: list[ProxyServer] = []

    def make(*upstreams: StubUpstream, hubs: tuple[str, ...] = (HUB,), **env: str) -> ProxyServer:
        entries = [hub_entry(name, upstream) for name, upstream in zip(hubs, upstreams, strict=True)]
        config = hubs_config(tmp_path, entries, default_hub=hubs[0])
        environ = hubs_environ(hubs_emulator_server.base_url, config, **env)
        server = ProxyServer(make_settings(environ)).start()
        started.append(server)
        return server

    yield make
    for server in started:
        server.stop()


def _seen(stub: StubUpstream, endpoint: str) -> int:
    """Requests the stub received for one API endpoint."""
    return sum(1 for s in stub.seen if s.path.endswith("/api/v1/" + endpoint))


async def _together(
    url: str, calls: Calls, params: dict[str, str], hang_up: Callable[[], bool] | None = None
) -> list[Reply | None]:
    """One GET per (token, extra headers), all at once; with `hang_up`, every caller hangs up as
    soon as it returns true (None for those)."""
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as session:

        async def one(token: str, extra: dict[str, str]) -> Reply:
            headers = {"Authorization": f"Bearer {token}", **extra}
            async with session.get(url, params=params, headers=headers) as r:
                return r.status, await r.read()

        tasks = [asyncio.create_task(one(token, extra)) for token, extra in calls]
        if hang_up is not None:
            await _until(hang_up)
            for task in tasks:
                task.cancel()
        done = await asyncio.gather(*tasks, return_exceptions=True)
        return [d if isinstance(d, tuple) else None for d in done]


def _burst(
    proxy: ProxyServer,
    token: str,
    count: int,
    params: dict[str, str] = SCOPED,
    path: str = QUERY,
    hang_up: Callable[[], bool] | None = None,
) -> list[Reply | None]:
    """`count` identical GETs of one caller at once."""
    return asyncio.run(_together(proxy.base_url + path, [(token, {})] * count, params, hang_up))


async def _until(ready: Callable[[], bool]) -> None:
    """Poll until `ready()` (the test fails after 20 s)."""
    deadline = time.monotonic() + 20.0
    while not ready():
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.01)


def _metric(proxy: ProxyServer, name: str, labels: dict[str, str]) -> float:
    """A sample of the proxy's /metrics (0 when absent)."""
    text = requests.get(proxy.metrics_url + "/metrics", timeout=10).text
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items()):
                return float(sample.value)
    return 0.0


def _warm(proxy: ProxyServer, token: str, path: str = QUERY, **params: str) -> None:
    """One request first, so that authentication and decisions are cached."""
    r = requests.get(
        proxy.base_url + path,
        params=params or SCOPED,
        headers={"Authorization": f"Bearer {token}"},
        timeout=30,
    )
    assert r.status_code == 200, r.text


def _audit_events(proxy: ProxyServer, log: Path, count: int) -> list[dict[str, Any]]:
    """The audit events with a request id once at least `count` were written."""
    assert proxy.app is not None
    writer = proxy.app[SERVICES].audit
    assert writer is not None
    deadline = time.monotonic() + 10
    while not (writer.flush() and writer.written >= count) and time.monotonic() < deadline:
        time.sleep(0.05)
    events = [json.loads(line) for line in log.read_text().splitlines()]
    return [e for e in events if e.get("request_id")]


def _statuses(replies: list[Reply | None]) -> list[int | None]:
    """Each caller's status (None: hung up)."""
    return [r[0] if r is not None else None for r in replies]


def test_identical_concurrent_queries_reach_the_upstream_once(
    stub: StubUpstream, proxies: Proxies, tmp_path: Path, hubs_token_for: TokenFor
) -> None:
    """Ten identical queries at once: one upstream request, ten identical 200 answers, nine
    counted as coalesced, and ten audit events (nine marked coalesced) with their forwarded text."""
    log = tmp_path / "audit.log"
    proxy = proxies(stub, PROXY_AUDIT_LOG=str(log))
    token = hubs_token_for("alice")
    _warm(proxy, token)
    before = _metric(proxy, "prom_keycloak_proxy_coalesced_requests_total", {"hub": HUB})
    replies = _burst(proxy, token, 10)
    after = _metric(proxy, "prom_keycloak_proxy_coalesced_requests_total", {"hub": HUB})
    events = _audit_events(proxy, log, 11)
    assert _seen(stub, "query") == 2  # the warm-up and one for the ten
    assert len(set(replies)) == 1 and _statuses(replies) == [200] * 10
    assert after - before == 9
    burst = events[1:]
    assert len(burst) == 10 and len({e["request_id"] for e in burst}) == 10
    assert [e["result_cache"] for e in burst].count("coalesced") == 9
    assert all(e["upstream_status"] == 200 and e["forwarded"] and e["subject"] for e in burst)


def test_coalescing_off_sends_every_request(
    stub: StubUpstream, proxies: Proxies, hubs_token_for: TokenFor
) -> None:
    """PROXY_COALESCE=false: identical concurrent queries are each sent upstream."""
    proxy = proxies(stub, PROXY_COALESCE="false")
    token = hubs_token_for("alice")
    _warm(proxy, token)
    assert _statuses(_burst(proxy, token, 4)) == [200] * 4
    assert _seen(stub, "query") == 5


def test_different_scopes_and_encodings_are_sent_separately(
    stub: StubUpstream, proxies: Proxies, hubs_token_for: TokenFor
) -> None:
    """The same original query from callers of different scopes, and from one caller with
    different Accept-Encoding, are separate upstream requests (each forwarded text once)."""
    proxy = proxies(stub)
    alice, bob = hubs_token_for("alice"), hubs_token_for("bob")
    for token in (alice, bob):
        _warm(proxy, token, query=GPU)
    gzipped, plain = {"Accept-Encoding": "gzip"}, {"Accept-Encoding": "identity"}
    calls = [(alice, gzipped), (alice, gzipped), (alice, plain), (bob, gzipped)]
    replies = asyncio.run(_together(proxy.base_url + QUERY, calls, {"query": GPU}))
    assert _statuses(replies) == [200] * 4
    burst = stub.seen[2:]
    assert len(burst) == 3
    forwarded = {(s.query, s.headers.get("Accept-Encoding")) for s in burst}
    assert len(forwarded) == 3 and len({q for q, _ in forwarded}) == 2


def test_the_same_forwarded_request_on_two_hubs_is_sent_for_each(
    stub: StubUpstream, proxies: Proxies, hubs_token_for: TokenFor
) -> None:
    """Two hubs in front of the same upstream URL with the same credentials: a hub-wide caller's
    identical query on both at once is sent once per hub, never shared across hubs."""
    hubs = (HUB, "innabox-dev")
    proxy = proxies(stub, stub, hubs=hubs)
    frank = hubs_token_for("frank")
    for hub in hubs:
        _warm(proxy, frank, f"/{hub}{QUERY}", query=GPU)

    async def at_once() -> list[list[Reply | None]]:
        calls: Calls = [(frank, {})] * 2
        return await asyncio.gather(
            *(_together(f"{proxy.base_url}/{hub}{QUERY}", calls, {"query": GPU}) for hub in hubs)
        )

    replies = [r for rs in asyncio.run(at_once()) for r in rs]
    assert _statuses(replies) == [200] * 4
    burst = stub.seen[2:]
    assert len(burst) == 2 and burst[0].query == burst[1].query


def test_overflow_makes_followers_send_their_own_and_everyone_gets_the_whole_answer(
    stubs: Stubs, proxies: Proxies, hubs_token_for: TokenFor
) -> None:
    """A 1 MiB answer over a 64 KiB coalescing buffer: followers re-issue their own requests and
    every caller gets the full, identical answer."""
    stub = stubs(mode="big", big_mb=1)
    proxy = proxies(stub, PROXY_COALESCE_MAX_BYTES="65536")
    token = hubs_token_for("alice")
    _warm(proxy, token)
    assert _burst(proxy, token, 4) == [(200, b"x" * (1 << 20))] * 4
    assert _seen(stub, "query") == 5


def test_the_leader_hanging_up_leaves_the_followers_their_answer(
    stubs: Stubs, proxies: Proxies, hubs_token_for: TokenFor
) -> None:
    """The first caller disconnects mid-flight, after a second joined it: the upstream request is
    not abandoned and the second caller gets the answer, from that one upstream request."""
    stub = stubs(delay=3.0)
    proxy = proxies(stub)
    url = proxy.base_url + QUERY
    token = hubs_token_for("alice")
    _warm(proxy, token)
    joined = asyncio.Event()

    async def run() -> Reply | None:
        leader = asyncio.create_task(_together(url, [(token, {})], SCOPED, hang_up=joined.is_set))
        await _until(lambda: _seen(stub, "query") == 2)  # the leader's request is upstream
        follower = asyncio.create_task(_together(url, [(token, {})], SCOPED))
        await asyncio.sleep(1.0)  # the follower joins the flight (the upstream answers at 3 s)
        joined.set()
        assert await leader == [None]
        return (await follower)[0]

    reply = asyncio.run(run())
    assert reply is not None and reply[0] == 200
    assert _seen(stub, "query") == 2 and stub.abandoned == 0


def test_the_upstream_request_is_abandoned_when_every_caller_hung_up(
    stubs: Stubs, proxies: Proxies, hubs_token_for: TokenFor
) -> None:
    """Three identical callers all disconnect once their request is upstream: that one upstream
    request is cancelled (the proxy closes its connection before the answer)."""
    stub = stubs(delay=1.5)
    proxy = proxies(stub)
    token = hubs_token_for("alice")
    _warm(proxy, token)
    replies = _burst(proxy, token, 3, hang_up=lambda: _seen(stub, "query") == 2)
    assert replies == [None] * 3
    asyncio.run(_until(lambda: stub.abandoned > 0))
    assert _seen(stub, "query") == 2 and stub.abandoned == 1


def test_an_upstream_error_reaches_every_waiter(
    stubs: Stubs, proxies: Proxies, hubs_token_for: TokenFor
) -> None:
    """The upstream refusing the proxy's credentials: each of five identical callers gets the
    502, from one upstream request."""
    stub = stubs(mode="unauthorized")
    replies = _burst(proxies(stub), hubs_token_for("alice"), 5)
    assert _statuses(replies) == [502] * 5
    assert all(r is not None and b"credentials" in r[1] for r in replies)
    assert _seen(stub, "query") == 1


def test_followers_take_no_scheduler_slot(
    stub: StubUpstream, proxies: Proxies, hubs_token_for: TokenFor
) -> None:
    """One slot per subject: ten identical queries of one subject at once are all answered from
    one admission (nobody queued behind the leader)."""
    proxy = proxies(stub, PROXY_MAX_CONCURRENT_PER_SUBJECT="1")
    token = hubs_token_for("alice")
    _warm(proxy, token)
    name = "prom_keycloak_proxy_scheduler_wait_seconds_count"
    before = _metric(proxy, name, {"hub": HUB})
    replies = _burst(proxy, token, 10)
    assert _metric(proxy, name, {"hub": HUB}) - before == 1
    assert _statuses(replies) == [200] * 10
    assert _seen(stub, "query") == 2


def _rules_answer() -> bytes:
    """A gzip `/api/v1/rules` answer with one alert per (cluster, namespace)."""
    alerts = [
        {"labels": {"alertname": "Hot", "cluster": c, "namespace": ns}, "state": "firing", "value": "1"}
        for c, ns in (("nerc-ocp-prod", "team-a"), ("nerc-ocp-prod", "team-b"), ("nerc-ocp-test", "team-x"))
    ]
    rule = {
        "name": "Hot",
        "type": "alerting",
        "query": "x > 0",
        "labels": {},
        "alerts": alerts,
        "state": "firing",
        "health": "ok",
    }
    doc = {
        "status": "success",
        "data": {"groups": [{"name": "g", "file": "r.yml", "interval": 30, "rules": [rule]}]},
    }
    return gzip.compress(json.dumps(doc).encode())


def test_coalesced_rules_are_filtered_per_caller(
    stubs: Stubs, proxies: Proxies, hubs_token_for: TokenFor
) -> None:
    """Alice and bob ask for the rules at once: one upstream request, and each sees only the
    alerts of their own scope."""
    stub = stubs(mode="canned", canned=_rules_answer())
    proxy = proxies(stub)
    alice, bob = hubs_token_for("alice"), hubs_token_for("bob")
    for token in (alice, bob):
        _warm(proxy, token, "/api/v1/rules", type="alert")
    calls: Calls = [(alice, {}), (bob, {}), (alice, {})]
    replies = asyncio.run(_together(proxy.base_url + "/api/v1/rules", calls, {}))
    seen = []
    for reply in replies:
        assert reply is not None and reply[0] == 200
        (rule,) = json.loads(reply[1])["data"]["groups"][0]["rules"]
        seen.append([(a["labels"]["cluster"], a["labels"]["namespace"]) for a in rule["alerts"]])
    prod_a, test_x = [("nerc-ocp-prod", "team-a")], [("nerc-ocp-test", "team-x")]
    assert seen == [prod_a, test_x, prod_a]
    assert _seen(stub, "rules") == 3  # two warm-ups, then one for the three


def test_every_follower_gets_its_warnings_spliced_once(
    stub: StubUpstream, proxies: Proxies, hubs_token_for: TokenFor
) -> None:
    """A narrowed query with a warning, three callers at once: one upstream request, and every
    answer (the leader's streamed one and the followers' buffered ones) carries the warning once."""
    proxy = proxies(stub)
    named_drop = {"query": f'{GPU}{{exported_namespace=~"team-a|team-b"}}'}
    token = hubs_token_for("alice")
    _warm(proxy, token, **named_drop)
    for reply in _burst(proxy, token, 3, named_drop):
        assert reply is not None and reply[0] == 200
        doc = json.loads(reply[1])
        assert doc["status"] == "success" and len(doc["warnings"]) == 1 and "team-b" in doc["warnings"][0]
    assert _seen(stub, "query") == 2


@pytest.mark.prometheus
def test_coalesced_answers_from_the_real_prometheus_equal_a_single_request(
    proxy_factory: ProxyFactory, token_for: TokenFor, prometheus: PrometheusServer
) -> None:
    """The real Prometheus (mTLS, slowed by a fault proxy): eight identical range queries at once
    get one answer between them (seven coalesced), equal to the same query asked alone."""
    slow = FaultProxy(prometheus.port).start()
    slow.set("latency", delay=0.3)
    try:
        proxy = proxy_factory(PROXY_CACHE="off", PROXY_PROMETHEUS_BASE_URL=f"https://{slow.url}")
        token = token_for("alice")
        end = int(time.time()) // 60 * 60
        params = {**SCOPED, "start": str(end - 3600), "end": str(end), "step": "60"}
        _warm(proxy, token, "/api/v1/query_range", **params)
        before = _metric(proxy, "prom_keycloak_proxy_coalesced_requests_total", {})
        replies = _burst(proxy, token, 8, params, "/api/v1/query_range")
        coalesced = _metric(proxy, "prom_keycloak_proxy_coalesced_requests_total", {}) - before
        (alone,) = _burst(proxy, token, 1, params, "/api/v1/query_range")
    finally:
        slow.stop()
    assert alone is not None and alone[0] == 200
    assert json.loads(alone[1])["data"]["result"], "the answer has series"
    assert replies == [alone] * 8
    assert coalesced == 7

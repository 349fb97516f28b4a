"""Results cache and coalescing red-team rows on the real stack (docs/caching.md).

The cache stores raw upstream answers keyed by the forwarded request, so it must never hand one
scope's or one hub's answer to another, never keep an answer it may not keep (errors, warnings,
fresh data, `PROXY_CACHE=off`, `Cache-Control: no-cache`), and the per-caller filters of rules,
alerts and metadata must still run after a shared (coalesced) upstream answer. Judged only through
HTTP: answers compared with Prometheus asked directly, a recording relay counting what reaches
the upstream (and replacing its answers), and the outcome counter on the metrics port.
"""

from __future__ import annotations

import json
import secrets
import socket
import threading
import time
import urllib.parse
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import requests
from prometheus_client.parser import text_string_to_metric_families

from keycloak_emulator import ThreadedEmulatorServer
from proxy_demo.dataset import Series
from proxy_demo.prometheus import PrometheusServer
from tests.support.cachedata import COUNTER, GAUGE, HISTOGRAM
from tests.support.cacheservers import CacheServer, memcached
from tests.support.cachestack import (
    GENEROUS,
    INSTANT,
    RANGE,
    CacheData,
    Relay,
    RelayFactory,
    ask,
    delta,
    direct,
    forwarded,
    outcomes,
    seconds,
    versioned,
)
from tests.support.hubs import FIRST_HUB, SECOND_HUB, two_hubs_proxy
from tests.support.identities import GRANTS, auth_header
from tests.support.oracle import Grant, diff_results, visible, visible_series
from tests.support.proxy_server import ProxyServer, free_port
from tests.support.stack import ProxyFactory, TokenFor
from tests.support.stub_upstream import Seen

pytestmark = pytest.mark.prometheus

DAY_MS = 86_400_000
HOUR_MS = 3_600_000
FRESHNESS_MS = 600_000
SCOPED = ("alice", "bob", "carol", "researcher-team-a")  # four different scopes on hub moc
SCOPE_QUERIES = (f"sum by (cluster, namespace) (rate({COUNTER}[5m]))", GAUGE)


def _old_window(built_at: float, step_ms: int = 300_000) -> dict[str, str]:
    """An aligned range well outside the freshness window, over a midnight of the cache dataset."""
    midnight = int(built_at * 1000) // DAY_MS * DAY_MS - DAY_MS
    start = midnight - 6 * HOUR_MS
    return {"start": seconds(start), "end": seconds(start + 12 * HOUR_MS), "step": str(step_ms // 1000)}


def _data(r: requests.Response) -> dict[str, Any]:
    assert r.status_code == 200, r.text
    doc = r.json()
    assert doc["status"] == "success", doc
    return dict(doc["data"])


def _assert_same(got: Mapping[str, Any], expected: Mapping[str, Any], what: str) -> None:
    diffs = diff_results(got, expected)
    assert not diffs, f"{what}: {diffs[:10]}"


def _keys(data: Mapping[str, Any]) -> set[tuple[tuple[str, str], ...]]:
    return {tuple(sorted(item["metric"].items())) for item in data["result"]}


# ------------------------------------------------------------------------------- scopes and hubs


@pytest.mark.parametrize("order", ["forward", "reverse"])
@pytest.mark.parametrize("query", SCOPE_QUERIES)
def test_scopes_never_share_an_entry(
    cache_series: CacheData,
    cache_prometheus: PrometheusServer,
    proxy_factory: ProxyFactory,
    token_for: TokenFor,
    order: str,
    query: str,
) -> None:
    """Four scopes ask one query, cold then warm, either order: each gets exactly its own series."""
    proxy = proxy_factory(cache_prometheus, PROXY_CACHE="memory", **GENEROUS)
    callers = SCOPED if order == "forward" else tuple(reversed(SCOPED))
    params = {"query": query, **_old_window(cache_series.built_at)}
    hub_wide = _data(ask(proxy, auth_header("dave", token_for), RANGE, params))
    before = outcomes(proxy)
    for _ in ("cold", "warm"):
        for who in callers:
            auth = auth_header(who, token_for)
            got = _data(ask(proxy, auth, RANGE, params))
            assert got["result"], f"{who} sees some series"
            status, expected = direct(
                cache_prometheus, RANGE, {**params, "query": forwarded(proxy, auth, query)[0]}
            )
            assert status == 200
            _assert_same(got, expected["data"], who)
            for item in got["result"]:
                assert visible(item["metric"], GRANTS[who]), (who, item["metric"])
            if query == GAUGE:  # a plain selector: exactly the hub-wide answer's visible series
                mine = [i for i in hub_wide["result"] if visible(i["metric"], GRANTS[who])]
                _assert_same(got, {"resultType": "matrix", "result": mine}, f"{who} vs hub-wide")
    seen = delta(before, outcomes(proxy))
    assert seen["hit"] >= len(callers), seen  # the warm round was served from the cache


@pytest.fixture(scope="module")
def hubs_cache_proxy(
    tmp_path_factory: pytest.TempPathFactory,
    prometheus: PrometheusServer,
    second_hub_prometheus: PrometheusServer,
    hubs_emulator_server: ThreadedEmulatorServer,
) -> Iterator[ProxyServer]:
    """One proxy with the in-process cache serving moc and innabox-dev (both have a `nerc-ocp-prod`)."""
    server = two_hubs_proxy(
        tmp_path_factory.mktemp("cache-hubs"),
        prometheus,
        second_hub_prometheus,
        hubs_emulator_server.base_url,
        PROXY_CACHE="memory",
    )
    yield server
    server.stop()


HUB_ROWS = (
    ("frank", "sum by (cluster, exported_namespace) (DCGM_FI_DEV_GPU_UTIL)"),
    ("frank", 'DCGM_FI_DEV_GPU_UTIL{cluster="nerc-ocp-prod"}'),
    ("researcher-team-a", 'DCGM_FI_DEV_GPU_UTIL{cluster="nerc-ocp-prod",exported_namespace="team-a"}'),
)


@pytest.mark.parametrize("order", ["moc-first", "innabox-first"])
@pytest.mark.parametrize(("who", "query"), HUB_ROWS)
def test_hubs_never_share_an_entry(
    hubs_cache_proxy: ProxyServer,
    hubs_token_for: Callable[[str], str],
    prometheus: PrometheusServer,
    second_hub_prometheus: PrometheusServer,
    who: str,
    query: str,
    order: str,
) -> None:
    """The same forwarded text on two hubs (same cluster name) gets each hub's own answer, cold and warm."""
    upstreams = {FIRST_HUB: prometheus, SECOND_HUB: second_hub_prometheus}
    hubs = [FIRST_HUB, SECOND_HUB] if order == "moc-first" else [SECOND_HUB, FIRST_HUB]
    auth = auth_header(who, hubs_token_for)
    # a window of its own per row and order (a cold start), old enough to be cached
    now = int(time.time() * 1000) // 60_000 * 60_000
    shift = (HUB_ROWS.index((who, query)) * 2 + hubs.index(FIRST_HUB)) * 60_000
    params = {
        "query": query,
        "start": seconds(now - 90 * 60_000 - shift),
        "end": seconds(now - 20 * 60_000),
        "step": "60",
    }
    texts = {hub: forwarded(hubs_cache_proxy, auth, query, base=f"/{hub}") for hub in hubs}
    assert texts[FIRST_HUB] == texts[SECOND_HUB] and len(texts[FIRST_HUB]) == 1, texts
    before = outcomes(hubs_cache_proxy)
    answers: dict[str, dict[str, Any]] = {}
    for _ in ("cold", "warm"):
        for hub in hubs:
            got = _data(ask(hubs_cache_proxy, auth, RANGE, params, base=f"/{hub}"))
            status, expected = direct(upstreams[hub], RANGE, {**params, "query": texts[hub][0]})
            assert status == 200
            _assert_same(got, expected["data"], f"{who} on {hub}")
            answers[hub] = got
    assert answers[FIRST_HUB]["result"] and answers[SECOND_HUB]["result"]
    assert diff_results(answers[FIRST_HUB], answers[SECOND_HUB]), "the hubs' data differ"
    after = outcomes(hubs_cache_proxy)
    for hub in hubs:
        assert delta(before, after, hub)["hit"] >= 1, (hub, delta(before, after, hub))


# ------------------------------------------------------------------ what must never be kept


def _versions(data: Mapping[str, Any]) -> set[int]:
    return {int(v) for item in data["result"] for _, v in item["values"]}


def _counting(extra: Mapping[str, Any] | None = None) -> Callable[[Seen, int, bytes], tuple[int, bytes]]:
    """A relay rewrite: every range answer's values become the number of range requests so far."""
    count = [0]

    def rewrite(seen: Seen, status: int, body: bytes) -> tuple[int, bytes]:
        if seen.path != RANGE:
            return status, body
        count[0] += 1
        return versioned(seen, status, body, count[0], **(extra or {}))

    return rewrite


@pytest.fixture
def relayed(
    cache_prometheus: PrometheusServer, relay_factory: RelayFactory, proxy_factory: ProxyFactory
) -> Callable[..., tuple[ProxyServer, Any]]:
    """A proxy (`PROXY_*` overrides) before a relay (`Relay` options) to the cache dataset."""

    def make(relay: Mapping[str, Any] | None = None, **env: str) -> tuple[ProxyServer, Any]:
        upstream = relay_factory(cache_prometheus, **(relay or {}))
        proxy = proxy_factory(
            cache_prometheus, **{"PROXY_CACHE": "memory", **GENEROUS, **upstream.env(), **env}
        )
        return proxy, upstream

    return make


def test_no_cache_header_reaches_the_upstream(
    cache_series: CacheData, relayed: Callable[..., tuple[ProxyServer, Any]], token_for: TokenFor
) -> None:
    """A repeat is a hit (the upstream sees nothing); `Cache-Control: no-cache` goes to the upstream again."""
    proxy, relay = relayed({"rewrite": _counting()})
    auth = auth_header("alice", token_for)
    params = {"query": GAUGE, **_old_window(cache_series.built_at)}
    first = _data(ask(proxy, auth, RANGE, params))
    sent = relay.count()
    assert sent >= 1 and _versions(first)
    again = _data(ask(proxy, auth, RANGE, params))
    assert relay.count() == sent and again == first  # served from the cache
    fresh = _data(ask(proxy, auth, RANGE, params, headers={"Cache-Control": "no-cache"}))
    assert relay.count() > sent
    assert min(_versions(fresh)) > max(_versions(first)), "no-cache answer came from the upstream"


def test_cache_off_never_caches(
    cache_series: CacheData, relayed: Callable[..., tuple[ProxyServer, Any]], token_for: TokenFor
) -> None:
    """With `PROXY_CACHE=off` every repeat reaches the upstream and no outcome is a hit."""
    proxy, relay = relayed({"rewrite": _counting()}, PROXY_CACHE="off")
    auth = auth_header("alice", token_for)
    params = {"query": GAUGE, **_old_window(cache_series.built_at)}
    before = outcomes(proxy)
    newest = 0
    for i in range(3):
        got = _data(ask(proxy, auth, RANGE, params))
        assert relay.count() == i + 1
        assert min(_versions(got)) > newest
        newest = max(_versions(got))
    seen = delta(before, outcomes(proxy))
    assert seen["hit"] == 0 and seen["partial"] == 0, seen


class BadWhileOn:
    """A relay rewrite answering range requests badly (`kind`) while `on`, versioned otherwise."""

    def __init__(self, kind: str) -> None:
        self.kind, self.on = kind, True
        self._good = _counting()

    def __call__(self, seen: Seen, status: int, body: bytes) -> tuple[int, bytes]:
        """The rewritten answer."""
        if seen.path != RANGE or not self.on:
            return self._good(seen, status, body)
        if self.kind == "503":
            return 503, b"upstream overloaded"
        if self.kind == "422":
            doc = {"status": "error", "errorType": "execution", "error": "query timed out"}
            return 422, json.dumps(doc).encode()
        note = "metric might not be a counter" if self.kind == "infos" else "partial answer"
        return versioned(seen, status, body, 0, **{self.kind: [note]})


@pytest.mark.parametrize("kind", ["503", "422", "warnings", "infos"])
def test_errors_and_warnings_are_never_cached(
    cache_series: CacheData, relayed: Callable[..., tuple[ProxyServer, Any]], token_for: TokenFor, kind: str
) -> None:
    """A non-200 or warnings/infos answer is passed on but not kept: the next ask reaches the upstream."""
    bad = BadWhileOn(kind)
    proxy, relay = relayed({"rewrite": bad})
    auth = auth_header("dave", token_for)
    params = {"query": GAUGE, **_old_window(cache_series.built_at, 600_000)}
    first = ask(proxy, auth, RANGE, params)
    bad.on = False
    if kind in ("503", "422"):
        assert first.status_code >= 400, first.text
    else:
        assert first.status_code == 200 and _versions(first.json()["data"]) == {0}, first.text
        if kind == "warnings":
            assert "partial answer" in first.json()["warnings"], "the upstream's warning reaches the caller"
    sent = relay.count()
    second = _data(ask(proxy, auth, RANGE, params))
    assert relay.count() > sent and 0 not in _versions(second), "the bad answer was not kept"
    sent = relay.count()
    assert _data(ask(proxy, auth, RANGE, params)) == second and relay.count() == sent  # the good one is


def test_answers_over_the_item_limit_are_never_kept(
    cache_series: CacheData, relayed: Callable[..., tuple[ProxyServer, Any]], token_for: TokenFor
) -> None:
    """An answer larger than `PROXY_CACHE_MAX_ITEM_BYTES` is answered whole from the upstream every time."""
    proxy, relay = relayed({"rewrite": _counting()}, PROXY_CACHE_MAX_ITEM_BYTES="1024")
    auth = auth_header("dave", token_for)
    params = {"query": GAUGE, **_old_window(cache_series.built_at)}
    before = outcomes(proxy)
    shapes = []
    for _ in range(2):
        sent = relay.count()
        got = _data(ask(proxy, auth, RANGE, params))
        assert relay.count() > sent and len(json.dumps(got)) > 1024
        shapes.append([(i["metric"], [t for t, _ in i["values"]]) for i in got["result"]])
    assert shapes[0] == shapes[1] and len(shapes[0]) == 6  # every project's series, every point
    assert delta(before, outcomes(proxy))["hit"] == 0


def _asked(seen: Seen) -> tuple[float, float]:
    """The start and end a range request sent upstream asked for (seconds)."""
    params = {**urllib.parse.parse_qs(seen.query), **urllib.parse.parse_qs(seen.body.decode())}
    return float(params["start"][0]), float(params["end"][0])


def test_partial_hits_fetch_only_what_is_missing(
    cache_series: CacheData, relayed: Callable[..., tuple[ProxyServer, Any]], token_for: TokenFor
) -> None:
    """A window overlapping a stored one asks the upstream only for the stretch not stored yet."""
    proxy, relay = relayed()
    auth = auth_header("carol", token_for)
    start = (int(cache_series.built_at) // 86400 - 2) * 86400 + 2 * 3600  # seconds, on the 5 min grid
    window = {"query": f"rate({COUNTER}[5m])", "step": "300"}
    _data(ask(proxy, auth, RANGE, {**window, "start": str(start), "end": str(start + 10 * 3600)}))
    sent = relay.count()
    _data(ask(proxy, auth, RANGE, {**window, "start": str(start + 5 * 3600), "end": str(start + 15 * 3600)}))
    fetched = [_asked(s) for s in relay.seen if s.path == RANGE][sent:]
    assert fetched, "the stretch not stored was fetched"
    for first, last in fetched:
        assert start + 10 * 3600 < first <= last <= start + 15 * 3600, (first, last)


def test_fresh_points_come_from_the_upstream(
    relayed: Callable[..., tuple[ProxyServer, Any]], token_for: TokenFor
) -> None:
    """Points newer than now − freshness are fetched again on every ask, never served from the cache."""
    proxy, relay = relayed({"rewrite": _counting()})
    auth = auth_header("alice", token_for)
    now = int(time.time() * 1000)
    start = (now - 40 * 60_000) // 60_000 * 60_000
    params = {"query": GAUGE, "start": seconds(start), "end": seconds(now), "step": "60"}
    first = _data(ask(proxy, auth, RANGE, params))
    sent_first = relay.count()
    assert sent_first >= 1
    second = _data(ask(proxy, auth, RANGE, params))
    fresh = [int(v) for item in second["result"] for t, v in item["values"] if t * 1000 > now - FRESHNESS_MS]
    assert fresh and min(fresh) > sent_first, "fresh points were re-read from the upstream"
    assert first["result"]


def test_fresh_instants_always_reach_the_upstream(
    cache_series: CacheData, relayed: Callable[..., tuple[ProxyServer, Any]], token_for: TokenFor
) -> None:
    """Instants reading the last 10 min (or without `time`) go upstream every time; old ones once."""
    proxy, relay = relayed()
    auth = auth_header("bob", token_for)
    now = time.time()
    old = {"query": f"{GAUGE} offset 1h", "time": seconds(int((now - 3600) * 1000))}
    rows = (
        ({"query": GAUGE, "time": seconds(int((now - 60) * 1000))}, 2),
        ({"query": GAUGE}, 2),
        ({"query": f"max_over_time({GAUGE}[1h])", "time": seconds(int((now - 900) * 1000))}, 1),
        (old, 1),
    )
    for params, upstream_asks in rows:
        sent = relay.count(INSTANT)
        for _ in range(2):
            assert _data(ask(proxy, auth, INSTANT, params))["result"]
        assert relay.count(INSTANT) - sent == upstream_asks, params


# ------------------------------------------------------- filters after a shared upstream answer


def _demo_metadata(series: list[Series]) -> bytes:
    names = sorted({s.name for s in series})
    data = {n: [{"type": "gauge", "help": f"{n} help", "unit": ""}] for n in names}
    return json.dumps({"status": "success", "data": data}).encode()


def _alert_keys(alerts: list[dict[str, Any]]) -> list[tuple[tuple[str, str], ...]]:
    return sorted(tuple(sorted(a["labels"].items())) for a in alerts)


FILTERED = ("/api/v1/rules", "/api/v1/alerts", "/api/v1/metadata")
FILTER_CALLERS = ("alice", "bob", "carol", "dave")


def test_rules_alerts_metadata_filtered_after_a_shared_answer(
    prometheus: PrometheusServer,
    demo_series: list[Series],
    relay_factory: RelayFactory,
    proxy_factory: ProxyFactory,
    token_for: TokenFor,
) -> None:
    """Four scopes asking rules/alerts/metadata at once share upstream answers, each sees only its own."""
    canned = _demo_metadata(demo_series)

    def rewrite(seen: Seen, status: int, body: bytes) -> tuple[int, bytes]:
        return (200, canned) if seen.path == "/api/v1/metadata" else (status, body)

    relay = relay_factory(prometheus, delay=0.5, rewrite=rewrite)
    proxy = proxy_factory(prometheus, PROXY_CACHE="memory", **GENEROUS, **relay.env())
    auths = {who: auth_header(who, token_for) for who in FILTER_CALLERS}
    for who in FILTER_CALLERS:  # visible metric names are looked up (and kept) per caller first
        _data(ask(proxy, auths[who], "/api/v1/metadata", {"metric": "no_such_metric"}))
    sent = {path: relay.count(path) for path in FILTERED}
    answers: dict[tuple[str, str, int], requests.Response] = {}
    gate = threading.Barrier(len(FILTERED) * len(FILTER_CALLERS) * 2)

    def one(path: str, who: str, i: int) -> None:
        gate.wait(timeout=30)
        answers[(path, who, i)] = ask(proxy, auths[who], path, {})

    threads = [
        threading.Thread(target=one, args=(path, who, i))
        for path in FILTERED
        for who in FILTER_CALLERS
        for i in range(2)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    upstream_alerts = prometheus.api("/api/v1/alerts")["alerts"]
    for (path, who, _), r in sorted(answers.items()):
        grant: Grant = GRANTS[who]
        data = _data(r)
        if path == "/api/v1/alerts":
            expected = [a for a in upstream_alerts if visible(a["labels"], grant)]
            assert _alert_keys(data["alerts"]) == _alert_keys(expected), who
        elif path == "/api/v1/rules":
            rules = [rule for group in data["groups"] for rule in group["rules"]]
            assert rules, who
            for rule in rules:
                assert all(visible(a["labels"], grant) for a in rule.get("alerts", [])), (who, rule["name"])
                if not grant.hub_wide:
                    assert rule["type"] == "alerting", (who, rule["name"])
        else:
            names = {s.name for s in visible_series(demo_series, grant)}
            assert set(data) == names, (who, set(data) ^ names)
    assert len(answers) == len(threads)
    for path in FILTERED:
        shared = relay.count(path) - sent[path]
        assert shared < len(FILTER_CALLERS) * 2, f"{path}: {shared} upstream requests for 8 concurrent asks"


# ------------------------------------------------------------------ forged shared-cache entries


class SharedCache:
    """A memcached or Redis of `tests.support.cacheservers` that an attacker reaches with its plain protocol.

    Redis runs without the ACL user of the shared `redis()` server here: the attacker may list keys.
    """

    def __init__(self, kind: str, workdir: Path) -> None:
        if kind == "memcached":
            self.server = memcached()
        else:
            port = free_port()
            argv = ["redis-server", *f"--bind 127.0.0.1 --port {port} --appendonly no".split()]
            self.server = CacheServer("redis", [*argv, "--save", "", "--dir", str(workdir)], port)
        self.server.start()
        self.kind, self.port = kind, self.server.port

    @property
    def address(self) -> str:
        """host:port for `PROXY_CACHE_ADDRESS`."""
        return self.server.address

    def _talk(self, payload: bytes, until: bytes) -> bytes:
        with socket.create_connection(("127.0.0.1", self.port), timeout=5) as s:
            s.sendall(payload)
            out = b""
            while not out.endswith(until):
                chunk = s.recv(1 << 16)
                if not chunk:
                    break
                out += chunk
            return out

    def keys(self) -> list[bytes]:
        """Every key stored now."""
        if self.kind == "memcached":
            dump = self._talk(b"lru_crawler metadump all\r\n", b"END\r\n")
            lines = [line for line in dump.split(b"\r\n") if line.startswith(b"key=")]
            return [urllib.parse.unquote_to_bytes(line.split(b" ")[0][4:]) for line in lines]
        reply = self._resp(b"KEYS", b"*")
        return list(reply)

    def overwrite(self, key: bytes, value: bytes) -> None:
        """Store `value` under `key` (an attacker who reaches the shared cache)."""
        if self.kind == "memcached":
            head = b"set %s 0 0 %d\r\n" % (key, len(value))
            assert self._talk(head + value + b"\r\n", b"\r\n") == b"STORED\r\n"
        else:
            assert self._resp(b"SET", key, value) == b"OK"

    def read(self, key: bytes) -> bytes:
        """The value stored under `key`."""
        if self.kind == "memcached":
            raw = self._talk(b"get %s\r\n" % key, b"END\r\n")
            head, _, rest = raw.partition(b"\r\n")
            return rest[: int(head.split(b" ")[3])]
        value = self._resp(b"GET", key)
        assert isinstance(value, bytes)
        return value

    def _resp(self, *parts: bytes) -> Any:
        command = b"*%d\r\n" % len(parts) + b"".join(b"$%d\r\n%s\r\n" % (len(p), p) for p in parts)
        with socket.create_connection(("127.0.0.1", self.port), timeout=5) as s:
            s.sendall(command)
            reader = s.makefile("rb")
            return _read_resp(reader)

    def stop(self) -> None:
        """Terminate the server."""
        self.server.stop()


def _read_resp(reader: Any) -> Any:
    line = reader.readline().rstrip(b"\r\n")
    kind, rest = line[:1], line[1:]
    if kind == b"+":
        return rest
    if kind == b"-":
        raise AssertionError(rest)
    if kind == b":":
        return int(rest)
    if kind == b"$":
        n = int(rest)
        return None if n < 0 else reader.read(n + 2)[:-2]
    return [_read_resp(reader) for _ in range(int(rest))]


@pytest.fixture(params=["memcached", "redis"])
def shared_cache(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[SharedCache]:
    """A memcached or Redis server of its own for one test."""
    server = SharedCache(request.param, tmp_path)
    yield server
    server.stop()


@dataclass
class Sharing:
    """A numbering relay to the cache dataset and a maker of proxies sharing one cache through it."""

    relay: Relay
    proxy: Callable[..., ProxyServer]  # `PROXY_*` overrides; a fresh HMAC key unless given


@pytest.fixture
def sharing(
    cache_prometheus: PrometheusServer,
    relay_factory: RelayFactory,
    proxy_factory: ProxyFactory,
    shared_cache: SharedCache,
) -> Sharing:
    """Proxies in front of one relay, all using `shared_cache`."""
    relay = relay_factory(cache_prometheus, rewrite=_counting())
    common = {**GENEROUS, **relay.env(), "PROXY_CACHE": shared_cache.kind}
    common["PROXY_CACHE_ADDRESS"] = shared_cache.address

    def make(**env: str) -> ProxyServer:
        return proxy_factory(
            cache_prometheus, **{**common, "PROXY_CACHE_HMAC_KEY": secrets.token_hex(24), **env}
        )

    return Sharing(relay, make)


def _stored(cache: SharedCache) -> list[bytes]:
    """The shared cache's keys, waiting briefly for a write that may finish after the answer."""
    deadline = time.monotonic() + 3
    while not (keys := cache.keys()) and time.monotonic() < deadline:
        time.sleep(0.05)
    return keys


def _forged_count(proxy: ProxyServer, backend: str) -> float:
    text = requests.get(f"{proxy.metrics_url}/metrics", timeout=10).text
    total = 0.0
    for family in text_string_to_metric_families(text):
        if family.name == "prom_keycloak_proxy_results_cache_errors":
            for sample in family.samples:
                if sample.labels.get("backend") == backend and sample.labels.get("kind") == "forged":
                    total += sample.value
    return total


def test_entries_sealed_with_another_key_are_ignored(
    cache_series: CacheData, sharing: Sharing, shared_cache: SharedCache, token_for: TokenFor
) -> None:
    """Proxies sharing a cache under different HMAC keys never serve each other's entries (forged)."""
    relay, mine, theirs = sharing.relay, sharing.proxy(), sharing.proxy()  # two HMAC keys
    auth = auth_header("alice", token_for)
    params = {"query": GAUGE, **_old_window(cache_series.built_at)}
    first = _data(ask(mine, auth, RANGE, params))
    sent = relay.count()
    assert _stored(shared_cache), "the answer was stored in the shared cache"
    assert _data(ask(mine, auth, RANGE, params)) == first and relay.count() == sent  # a hit
    forged = _forged_count(mine, shared_cache.kind)
    other = _data(ask(theirs, auth, RANGE, params))
    assert relay.count() > sent and not _versions(other) & _versions(first), "another key's entry was used"
    assert _forged_count(mine, shared_cache.kind) > forged
    sent = relay.count()
    again = _data(ask(mine, auth, RANGE, params))
    assert not _versions(again) & _versions(other), "an entry sealed by the other key was served"


def test_tampered_entries_are_ignored(
    cache_series: CacheData, sharing: Sharing, shared_cache: SharedCache, token_for: TokenFor
) -> None:
    """Stored values altered in place (one byte, or garbage) are misses: the upstream answers again."""
    relay, proxy = sharing.relay, sharing.proxy()
    auth = auth_header("bob", token_for)
    params = {"query": f"sum by (namespace) (rate({COUNTER}[5m]))", **_old_window(cache_series.built_at)}
    first = _data(ask(proxy, auth, RANGE, params))
    for round_ in ("flip", "garbage"):
        keys = _stored(shared_cache)
        assert keys, "the answer was stored in the shared cache"
        for key in keys:
            value = shared_cache.read(key)
            forged = value[:-1] + bytes([value[-1] ^ 1]) if round_ == "flip" else b"\x00" * len(value)
            shared_cache.overwrite(key, forged)
        sent = relay.count()
        got = _data(ask(proxy, auth, RANGE, params))
        assert relay.count() > sent, f"{round_}: a tampered entry was served"
        assert [i["metric"] for i in got["result"]] == [i["metric"] for i in first["result"]]


def test_a_shared_cache_going_down_costs_only_upstream_asks(
    cache_series: CacheData, sharing: Sharing, shared_cache: SharedCache, token_for: TokenFor
) -> None:
    """With memcached/Redis stopped after a hit, asks are still answered (from the upstream), quickly."""
    relay, proxy = sharing.relay, sharing.proxy()
    auth = auth_header("researcher-team-a", token_for)
    params = {
        "query": f"histogram_quantile(0.5, rate({HISTOGRAM}_bucket[10m]))",
        **_old_window(cache_series.built_at),
    }
    first = _data(ask(proxy, auth, RANGE, params))
    assert _stored(shared_cache)
    shared_cache.stop()
    for _ in range(2):
        sent, began = relay.count(), time.monotonic()
        got = _data(ask(proxy, auth, RANGE, params))
        assert relay.count() > sent and time.monotonic() - began < 10
        assert [i["metric"] for i in got["result"]] == [i["metric"] for i in first["result"]]


# ------------------------------------------------------------------ parameters that change answers

VARIANTS = (
    ("lookback_delta", "1m", "3m"),
    ("partial_response", "true", "false"),
    ("dedup", "true", "false"),
    ("max_source_resolution", "5m", "1h"),
    ("engine", "thanos", "prometheus"),
    ("x_unknown", "a", "b"),
)


@pytest.mark.parametrize(("name", "one", "other"), VARIANTS)
def test_forwarded_parameters_split_entries(
    cache_series: CacheData,
    relayed: Callable[..., tuple[ProxyServer, Any]],
    token_for: TokenFor,
    name: str,
    one: str,
    other: str,
) -> None:
    """A forwarded parameter that may change the answer (Thanos', lookback_delta, unknown) keys the entry."""
    proxy, relay = relayed({"rewrite": _counting()})
    auth = auth_header("alice", token_for)
    params = {"query": GAUGE, **_old_window(cache_series.built_at)}
    first = _data(ask(proxy, auth, RANGE, {**params, name: one}))
    assert all(f"{name}={one}" in s.query for s in relay.seen if s.path == RANGE), "forwarded as sent"
    sent = relay.count()
    assert _data(ask(proxy, auth, RANGE, {**params, name: one})) == first
    assert relay.count() == sent, "the same parameters are a hit"
    changed = _data(ask(proxy, auth, RANGE, {**params, name: other}))
    assert relay.count() > sent and not _versions(changed) & _versions(first), "another value, another entry"
    without = _data(ask(proxy, auth, RANGE, params))
    assert not _versions(without) & _versions(first), "an answer with the parameter served without it"


def test_upstream_credentials_split_shared_entries(
    cache_series: CacheData, sharing: Sharing, shared_cache: SharedCache, token_for: TokenFor
) -> None:
    """Replicas sharing a cache share entries only when they send the upstream the same credentials."""
    relay, key = sharing.relay, secrets.token_hex(24)  # one HMAC key: the replicas of one deployment
    tenant_a = sharing.proxy(PROXY_CACHE_HMAC_KEY=key, PROXY_PROMETHEUS_TOKEN="tenant-a-token")
    replica_a = sharing.proxy(PROXY_CACHE_HMAC_KEY=key, PROXY_PROMETHEUS_TOKEN="tenant-a-token")
    tenant_b = sharing.proxy(PROXY_CACHE_HMAC_KEY=key, PROXY_PROMETHEUS_TOKEN="tenant-b-token")
    auth = auth_header("carol", token_for)
    start = int(cache_series.built_at * 1000) // DAY_MS * DAY_MS - 2 * DAY_MS + 3 * HOUR_MS
    params = {"query": GAUGE, "start": seconds(start), "end": seconds(start + 5 * HOUR_MS), "step": "120"}
    first = _data(ask(tenant_a, auth, RANGE, params))
    assert {s.headers.get("Authorization") for s in relay.seen} == {"Bearer tenant-a-token"}
    sent = relay.count()
    assert _stored(shared_cache)
    assert _data(ask(replica_a, auth, RANGE, params)) == first, "the same credentials share the entry"
    assert relay.count() == sent
    other = _data(ask(tenant_b, auth, RANGE, params))
    assert relay.count() > sent and not _versions(other) & _versions(first), "another credential's entry"


@pytest.mark.parametrize("cache", ["off", "memory"])
def test_concurrent_scopes_never_share_a_flight(
    cache_series: CacheData,
    cache_prometheus: PrometheusServer,
    relayed: Callable[..., tuple[ProxyServer, Any]],
    token_for: TokenFor,
    cache: str,
) -> None:
    """Four scopes asking one query at the same moment (twice each) share flights only within a scope."""
    proxy, relay = relayed({"delay": 0.5}, PROXY_CACHE=cache)
    query = f"sum by (cluster, namespace) (rate({COUNTER}[5m]))"
    params = {"query": query, **_old_window(cache_series.built_at, 600_000)}
    auths = {who: auth_header(who, token_for) for who in SCOPED}
    texts = {who: forwarded(proxy, auths[who], query)[0] for who in SCOPED}
    assert len(set(texts.values())) == len(SCOPED)
    answers: dict[tuple[str, int], requests.Response] = {}
    gate = threading.Barrier(2 * len(SCOPED))

    def one(who: str, i: int) -> None:
        gate.wait(timeout=30)
        answers[(who, i)] = ask(proxy, auths[who], RANGE, params)

    threads = [threading.Thread(target=one, args=(who, i)) for who in SCOPED for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert len(answers) == len(threads)
    for (who, _), r in answers.items():
        status, expected = direct(cache_prometheus, RANGE, {**params, "query": texts[who]})
        assert status == 200
        _assert_same(_data(r), expected["data"], who)
    if cache == "off":  # (with the cache, how many pieces one ask fetches is the cache's business)
        assert relay.count() == len(SCOPED), "each scope's two concurrent asks were sent once"


def _effective(name: str) -> Callable[[Seen, int, bytes], tuple[int, bytes]]:
    """A relay rewrite: range values become `name`'s value as the upstream reads it (body first)."""

    def rewrite(seen: Seen, status: int, body: bytes) -> tuple[int, bytes]:
        if seen.path != RANGE:
            return status, body
        form = urllib.parse.parse_qs(seen.body.decode()) if seen.body else {}
        url = urllib.parse.parse_qs(seen.query)
        return versioned(seen, status, body, int((form.get(name) or url.get(name) or ["0"])[0]))

    return rewrite


def test_url_and_body_parameters_never_share_an_entry(
    cache_series: CacheData, relayed: Callable[..., tuple[ProxyServer, Any]], token_for: TokenFor
) -> None:
    """URL `x=1` with body `x=2` (the upstream reads 2) and URL `x=1&x=2` (it reads 1) are two entries."""
    proxy, _ = relayed({"rewrite": _effective("x_unknown")})
    auth = auth_header("alice", token_for)
    form = {"query": GAUGE, **_old_window(cache_series.built_at)}
    url = f"{proxy.base_url}{RANGE}"
    split = requests.post(f"{url}?x_unknown=1", data={**form, "x_unknown": "2"}, headers=auth, timeout=60)
    assert _versions(_data(split)) == {2}
    in_url = requests.post(f"{url}?x_unknown=1&x_unknown=2", data=form, headers=auth, timeout=60)
    assert _versions(_data(in_url)) == {1}, "an answer to another parameter placement was served"

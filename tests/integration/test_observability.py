"""Operators' view (docs/operations.md): per-request log lines, bounded metrics, tracing, readiness."""

from __future__ import annotations

import json
import random
import string
import time
from collections.abc import Iterator
from typing import Any

import pytest
import requests
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind
from prometheus_client.parser import text_string_to_metric_families

from proxy import logs, tracing
from proxy.routes import API_ROUTES
from proxy_demo.certs import Pki
from tests.support.proxy_server import ProxyServer, free_port
from tests.support.stack import ProxyFactory, TokenFor
from tests.support.stub_upstream import StubUpstream

ALICE_QUERY = 'DCGM_FI_DEV_GPU_UTIL{cluster="nerc-ocp-prod",exported_namespace="team-a"}'
PREFIX = "prom_keycloak_proxy_"


class Lines:
    """Request log lines written while the test runs, by request id."""

    def __init__(self) -> None:
        self.raw: list[str] = []

    def __call__(self, text: str) -> None:
        """Tap: keep what the pipeline wrote."""
        self.raw.append(text)

    def request(self, request_id: str) -> dict[str, Any]:
        """The one `request` line of `request_id` (written just after a streamed answer ends)."""
        deadline = time.monotonic() + 5
        while True:
            found = [
                doc
                for doc in (json.loads(t) for t in list(self.raw) if t.lstrip().startswith("{"))
                if doc.get("event") == "request" and doc.get("request_id") == request_id
            ]
            if found or time.monotonic() > deadline:
                break
            time.sleep(0.02)
        assert len(found) == 1, found
        line: dict[str, Any] = found[0]
        return line

    def events(self, name: str) -> list[dict[str, Any]]:
        """Every line of event `name`."""
        docs = (json.loads(t) for t in self.raw if t.lstrip().startswith("{"))
        return [d for d in docs if d.get("event") == name]


@pytest.fixture
def captured() -> Iterator[Lines]:
    """Every rendered log line of this test."""
    lines = Lines()
    remove = logs.add_tap(lines)
    yield lines
    remove()


def get(server: ProxyServer, path: str, token: str | None = None, **kw: Any) -> requests.Response:
    """GET through the proxy, with a bearer token when given."""
    headers = dict(kw.pop("headers", {}))
    if token:
        headers["Authorization"] = f"Bearer {token}"
    return requests.get(server.base_url + path, headers=headers, timeout=30, **kw)


def scrape(url: str) -> dict[str, list[tuple[dict[str, str], float]]]:
    """`/metrics` as {sample name: [(labels, value)]}."""
    text = requests.get(url + "/metrics", timeout=10).text
    out: dict[str, list[tuple[dict[str, str], float]]] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            out.setdefault(sample.name, []).append((dict(sample.labels), sample.value))
    return out


def test_request_line_has_the_operator_fields(
    proxy_server: ProxyServer, token_for: TokenFor, captured: Lines
) -> None:
    """One JSON line per request: id, subject, route, reach, decision, status, durations, caches."""
    r = get(
        proxy_server,
        "/api/v1/query",
        token_for("alice"),
        params={"query": ALICE_QUERY},
        headers={"X-Request-Id": "obs-line-1"},
    )
    assert r.status_code == 200, r.text
    assert r.headers["X-Request-Id"] == "obs-line-1"
    line = captured.request("obs-line-1")
    assert {k: line[k] for k in ("method", "route", "status", "subject")} == {
        "method": "GET",
        "route": "query",
        "status": 200,
        "subject": "alice",
    }
    assert line["clusters"] == ["nerc-ocp-prod"]
    assert line["namespaces"] == ["team-a"]
    assert line["decision"] in ("allowed", "narrowed")
    assert line["duration_ms"] > 0 and line["upstream_ms"] > 0
    assert line["cache_resource"] == "hit" or line["cache_resource"] == "miss"
    assert line["cache_token"] in ("hit", "miss") and isinstance(line["cache_hit"], bool)
    assert line["authn_ms"] >= 0 and line["authz_ms"] >= 0 and line["hub"]


def test_repeat_request_hits_the_caches_and_ids_are_generated(
    proxy_server: ProxyServer, token_for: TokenFor, captured: Lines
) -> None:
    """The second identical request is answered from the caches; without an id one is made up."""
    token = token_for("alice")
    get(proxy_server, "/api/v1/query", token, params={"query": ALICE_QUERY})
    r = get(proxy_server, "/api/v1/query", token, params={"query": ALICE_QUERY})
    generated = r.headers["X-Request-Id"]
    assert 16 <= len(generated) <= 64
    line = captured.request(generated)
    assert line["cache_hit"] is True, line
    assert "keycloak_ms" not in line


def test_refusals_carry_their_reason_and_no_secret(
    proxy_server: ProxyServer, token_for: TokenFor, captured: Lines
) -> None:
    """401/403/400 lines say why; the credential itself never appears."""
    token = token_for("eve")
    get(
        proxy_server,
        "/api/v1/query",
        token,
        params={"query": ALICE_QUERY},
        headers={"X-Request-Id": "obs-403"},
    )
    get(
        proxy_server,
        "/api/v1/query",
        "not-a-jwt-at-all",
        params={"query": "up"},
        headers={"X-Request-Id": "obs-401"},
    )
    get(proxy_server, "/api/v1/query", token, params={"query": "sum("}, headers={"X-Request-Id": "obs-400"})
    denied, unauth, bad = (captured.request(f"obs-{n}") for n in (403, 401, 400))
    assert (denied["status"], denied["decision"]) == (403, "denied")
    assert (unauth["status"], unauth["decision"]) == (401, "unauthenticated")
    assert (bad["status"], bad["decision"]) == (400, "refused")
    assert all(line.get("error") for line in (denied, unauth, bad))
    assert not any(token in raw or "not-a-jwt-at-all" in raw for raw in captured.raw)


def test_metrics_names_and_bounded_labels(proxy_server: ProxyServer, token_for: TokenFor) -> None:
    """A scripted mix of requests shows up under the documented names with bounded labels."""
    alice = token_for("alice")
    get(proxy_server, "/api/v1/query", alice, params={"query": ALICE_QUERY})
    get(proxy_server, "/api/v1/query", alice, params={"query": "sum(("})
    get(proxy_server, "/api/v1/query", token_for("eve"), params={"query": ALICE_QUERY})
    get(proxy_server, "/api/v1/query", params={"query": "up"})
    get(proxy_server, "/api/v1/series", alice, params={"match[]": "DCGM_FI_DEV_GPU_UTIL"})
    get(proxy_server, "/no/such/path")
    m = scrape(proxy_server.metrics_url)
    requests_total = {(s["route"], s["code"]) for s, _ in m[PREFIX + "requests_total"]}
    assert {
        ("query", "200"),
        ("query", "400"),
        ("query", "403"),
        ("query", "401"),
        ("series", "200"),
        ("unmatched", "404"),
    } <= requests_total
    outcomes = {s["outcome"] for s, _ in m[PREFIX + "authz_decisions_total"]}
    assert {"denied", "refused", "unauthenticated"} <= outcomes and outcomes & {"allowed", "narrowed"}
    assert {"syntax"} <= {s["reason"] for s, _ in m[PREFIX + "query_rejections_total"]}
    assert {"200"} <= {s["code"] for s, _ in m[PREFIX + "upstream_request_duration_seconds_count"]}
    assert m[PREFIX + "keycloak_request_duration_seconds_count"]
    assert {"hit", "miss"} <= {s["result"] for s, _ in m[PREFIX + "cache_events_total"]}
    assert m[PREFIX + "cache_entries"]
    assert m[PREFIX + "in_flight_requests"] == [({}, 0.0)]  # the scrape itself is on the other port
    assert m["process_start_time_seconds"]
    allowed_routes = {r.name for r in API_ROUTES} | {"unmatched"}
    for name, samples in m.items():
        if name.startswith(PREFIX):
            for labels, _ in samples:
                assert "subject" not in labels and "user" not in labels and "path" not in labels
                assert labels.get("route", "query") in allowed_routes


def test_random_paths_add_no_label_values(proxy_server: ProxyServer) -> None:
    """1000 random paths are all counted under route="unmatched"; no new label value appears."""
    before = {s["route"] for s, _ in scrape(proxy_server.metrics_url)[PREFIX + "requests_total"]}
    rng = random.Random(8)
    with requests.Session() as session:
        for _ in range(1000):
            path = "/" + "/".join(
                "".join(rng.choices(string.ascii_letters + string.digits, k=rng.randint(1, 12)))
                for _ in range(rng.randint(1, 4))
            )
            assert session.get(proxy_server.base_url + path, timeout=10).status_code == 404
    after = {s["route"] for s, _ in scrape(proxy_server.metrics_url)[PREFIX + "requests_total"]}
    assert after - before <= {"unmatched"}
    assert after <= {r.name for r in API_ROUTES} | {"unmatched"}


@pytest.fixture
def spans() -> Iterator[InMemorySpanExporter]:
    """Tracing on, into memory, for proxies built during the test."""
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracing.install(provider)
    yield exporter
    tracing.uninstall()
    provider.shutdown()


def finished_spans(exporter: InMemorySpanExporter, kind: SpanKind) -> list[ReadableSpan]:
    """Finished spans, once one of `kind` is among them (a streamed answer ends before its span)."""
    deadline = time.monotonic() + 5
    while not any(s.kind == kind for s in exporter.get_finished_spans()) and time.monotonic() < deadline:
        time.sleep(0.02)
    return list(exporter.get_finished_spans())


@pytest.fixture
def stub(pki: Pki) -> Iterator[StubUpstream]:
    """A recording TLS upstream."""
    server = StubUpstream(pki).start()
    yield server
    server.stop()


def test_tracing_is_off_by_default(proxy_server: ProxyServer) -> None:
    """Without OTEL_EXPORTER_OTLP_ENDPOINT nothing is set up: no middleware, no trace configs."""
    assert not tracing.setup({})
    assert not tracing.enabled()
    assert tracing.client_trace_configs("upstream") == []
    assert proxy_server.app is not None
    assert len(proxy_server.app.middlewares) == 2


def test_server_and_client_spans_and_traceparent_upstream(
    spans: InMemorySpanExporter, proxy_factory: ProxyFactory, stub: StubUpstream, token_for: TokenFor
) -> None:
    """A server span continues the caller's trace; Keycloak and upstream calls are client spans;
    the upstream receives a `traceparent` of the same trace."""
    server = proxy_factory(**stub.env())
    trace_id = "4bf92f3577b34da6a3ce929d0e0e4736"
    caller = f"00-{trace_id}-00f067aa0ba902b7-01"
    r = get(
        server,
        "/api/v1/query",
        token_for("alice"),
        params={"query": ALICE_QUERY},
        headers={"traceparent": caller},
    )
    assert r.status_code == 200, r.text
    finished = finished_spans(spans, SpanKind.SERVER)
    (srv,) = [s for s in finished if s.kind == SpanKind.SERVER]
    assert trace_id == format(srv.context.trace_id, "032x")
    assert srv.parent is not None and srv.parent.span_id == 0x00F067AA0BA902B7
    assert srv.name == "GET /api/v1/query"
    attributes = dict(srv.attributes or {})
    assert attributes["http.response.status_code"] == 200
    assert attributes["proxy.subject"] == "alice"
    sent = stub.seen[-1].headers
    assert sent["traceparent"].split("-")[1] == trace_id
    # Start-up calls (discovery, JWKS) have traces of their own; the request's are in the caller's.
    clients = [
        s for s in finished if s.kind == SpanKind.CLIENT and s.context.trace_id == srv.context.trace_id
    ]
    assert {"GET upstream"} <= {s.name for s in clients}
    assert any(s.name.endswith(" keycloak") for s in clients)
    for span in clients:
        assert span.parent is not None and srv.context.span_id == span.parent.span_id
        assert "?" not in str(dict(span.attributes or {})["url.full"])
    (up,) = [s for s in clients if s.name == "GET upstream"]
    assert sent["traceparent"] == f"00-{trace_id}-{up.context.span_id:016x}-01"


def test_readiness_waits_for_jwks(proxy_factory: ProxyFactory) -> None:
    """With Keycloak unreachable at start, /readyz is 503 on both ports; the proxy still answers."""
    server = proxy_factory(keycloak_url=f"http://127.0.0.1:{free_port()}")
    for base in (server.base_url, server.metrics_url):
        r = requests.get(base + "/readyz", timeout=10)
        assert r.status_code == 503 and r.json()["status"] == "not ready"
    assert requests.get(server.base_url + "/healthz", timeout=10).status_code == 200


def test_upstream_outage_is_not_readiness(
    proxy_factory: ProxyFactory, token_for: TokenFor, captured: Lines
) -> None:
    """Upstream down: still ready, JSON 502s, the failure logged with its cause, up gauge 0."""
    port = free_port()
    server = proxy_factory(PROXY_PROMETHEUS_BASE_URL=f"https://127.0.0.1:{port}")
    assert requests.get(server.metrics_url + "/readyz", timeout=10).status_code == 200
    r = get(
        server,
        "/api/v1/query",
        token_for("alice"),
        params={"query": ALICE_QUERY},
        headers={"X-Request-Id": "obs-502"},
    )
    assert r.status_code == 502 and r.headers["Content-Type"].split(";")[0] == "application/json"
    line = captured.request("obs-502")
    assert line["error"] and line["cause"]
    assert captured.events("upstream_unreachable")
    assert scrape(server.metrics_url)[PREFIX + "upstream_up"] == [({}, 0.0)]


def test_keycloak_outage_is_logged_with_cause(
    proxy_factory: ProxyFactory, token_for: TokenFor, captured: Lines
) -> None:
    """A Keycloak call failing mid-flight gives 503 and a line naming the call and the reason."""
    server = proxy_factory(keycloak_url=f"http://127.0.0.1:{free_port()}")
    r = get(
        server,
        "/api/v1/query",
        token_for("alice"),
        params={"query": ALICE_QUERY},
        headers={"X-Request-Id": "obs-503"},
    )
    assert r.status_code in (401, 503), r.text
    failures = captured.events("keycloak_call_failed")
    assert failures and {"call", "reason"} <= set(failures[0])
    line = captured.request("obs-503")
    assert line["error"]

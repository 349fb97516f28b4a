"""The handler pipeline, route by route: what reaches the upstream, what the caller gets back.

Modelled on prom-label-proxy's table-driven `routes_test.go`: each case names a route, a method,
a caller and parameters, and asserts the status and exactly what was forwarded.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest

from proxy import metrics
from tests.unit.handlers.conftest import HUB, Make, bearer

ALICE_SCOPE = 'up{cluster="c1",namespace="team-a"}'
ALICE_ALL = '{__name__=~".+",cluster="c1",namespace="team-a"}'
ALL_SERIES = '{__name__=~".+"}'


@dataclass(frozen=True)
class Case:
    """One request and its expected outcome."""

    id: str
    path: str
    subject: str | None
    params: tuple[tuple[str, str], ...] = ()
    method: str = "GET"
    mode: str = "narrow"
    status: int = 200
    decision: str | None = "allowed"
    # what the upstream must have received: (method, path, {name: [values]}) — None: nothing sent
    forwarded: tuple[str, str, dict[str, list[str]]] | None = None
    # Keycloak questions asked, in order: None = "everything held", else the clusters named
    asked: tuple[frozenset[str] | None, ...] | None = None
    error: str | None = field(default=None)


def q(**kw: str) -> tuple[tuple[str, str], ...]:
    """Parameters from keywords (`match` for `match[]`)."""
    return tuple(("match[]" if k == "match" else k, v) for k, v in kw.items())


C1 = frozenset({"c1"})
QUERY_CASES = [
    case
    for route in ("query", "query_exemplars")
    for method in ("GET", "POST")
    for case in (
        Case(f"{route}-{method}-granted-exact", f"/api/v1/{route}", "alice", q(query=ALICE_SCOPE), method,
             forwarded=(method, f"/api/v1/{route}", {"query": [ALICE_SCOPE]}), asked=(C1,)),
        Case(f"{route}-{method}-hubwide-falls-back", f"/api/v1/{route}", "admin", q(query=ALICE_SCOPE),
             method,
             forwarded=(method, f"/api/v1/{route}", {"query": [ALICE_SCOPE]}), asked=(C1, None)),
        Case(f"{route}-{method}-unbounded-narrowed", f"/api/v1/{route}", "alice", q(query="up"), method,
             decision="narrowed", forwarded=(method, f"/api/v1/{route}", {"query": [ALICE_SCOPE]}),
             asked=(None,)),
        Case(f"{route}-{method}-cluster-narrowed", f"/api/v1/{route}", "alice", q(query='up{cluster="c1"}'),
             method, decision="narrowed", forwarded=(method, f"/api/v1/{route}", {"query": [ALICE_SCOPE]}),
             asked=(C1, None)),
        Case(f"{route}-{method}-unbounded-deny-mode", f"/api/v1/{route}", "alice", q(query="up"), method,
             mode="deny", status=403, decision="denied", asked=(None,), error="not limited to a cluster"),
        Case(f"{route}-{method}-other-cluster", f"/api/v1/{route}", "alice", q(query='up{cluster="c2"}'),
             method, status=403, decision="denied", asked=(frozenset({"c2"}), None)),
        Case(f"{route}-{method}-holds-nothing", f"/api/v1/{route}", "nobody", q(query="up"), method,
             status=403, decision="denied"),
        Case(f"{route}-{method}-no-token", f"/api/v1/{route}", None, q(query="up"), method,
             status=401, decision="unauthenticated", asked=()),
        Case(f"{route}-{method}-syntax", f"/api/v1/{route}", "alice", q(query="sum("), method,
             status=400, decision="refused", asked=()),
        Case(f"{route}-{method}-missing-query", f"/api/v1/{route}", "alice", (), method,
             status=400, decision=None, asked=(), error="missing parameter 'query'"),
    )
]  # fmt: skip

SELECTOR_CASES = [
    case
    for method in ("GET", "POST")
    for case in (
        # series and federate select nothing without match[]: the scope is always injected
        Case(f"series-{method}-injected", "/api/v1/series", "alice", (), method,
             decision="narrowed", forwarded=(method, "/api/v1/series", {"match[]": [ALICE_ALL]})),
        Case(f"series-{method}-hubwide-all", "/api/v1/series", "admin", (), method,
             forwarded=(method, "/api/v1/series", {"match[]": [ALL_SERIES]})),
        Case(f"labels-{method}-hubwide-untouched", "/api/v1/labels", "admin", q(start="1"), method,
             forwarded=(method, "/api/v1/labels", {"start": ["1"]})),
        Case(f"labels-{method}-injected", "/api/v1/labels", "alice", (), method,
             decision="narrowed", forwarded=(method, "/api/v1/labels", {"match[]": [ALICE_ALL]})),
        Case(f"series-{method}-explicit-granted", "/api/v1/series", "alice", q(match=ALICE_SCOPE), method,
             forwarded=(method, "/api/v1/series", {"match[]": [ALICE_SCOPE]}), asked=(C1,)),
        Case(f"series-{method}-explicit-other", "/api/v1/series", "alice", q(match='up{cluster="c2"}'),
             method, status=403, decision="denied"),
        Case(f"series-{method}-not-a-selector", "/api/v1/series", "alice", q(match="sum(up)"), method,
             status=400, decision="refused"),
        # Prometheus serves label values and federate with GET only: a POST goes up as GET
        Case(f"label_values-{method}-get-upstream", "/api/v1/label/job/values", "alice", q(start="5"), method,
             decision="narrowed", forwarded=("GET", "/api/v1/label/job/values",
                                             {"start": ["5"], "match[]": [ALICE_ALL]})),
        Case(f"label_values-{method}-bad-name", "/api/v1/label/1bad/values", "alice", (), method,
             status=400, decision=None, error="invalid label name"),
        Case(f"federate-{method}-hubwide-all", "/federate", "admin", (), method,
             forwarded=("GET", "/federate", {"match[]": [ALL_SERIES]})),
        Case(f"federate-{method}-explicit", "/federate", "alice", q(match=ALICE_SCOPE), method,
             forwarded=("GET", "/federate", {"match[]": [ALICE_SCOPE]})),
    )
]  # fmt: skip

PASSTHROUGH_CASES = [
    Case("buildinfo-GET", "/api/v1/status/buildinfo", "alice", decision="passthrough",
         forwarded=("GET", "/api/v1/status/buildinfo", {}), asked=()),
    Case("format_query-POST", "/api/v1/format_query", "alice", q(query="up"), "POST",
         decision="passthrough", forwarded=("POST", "/api/v1/format_query", {"query": ["up"]}), asked=()),
    Case("parse_query-no-token", "/api/v1/parse_query", None, q(query="up"), status=401,
         decision="unauthenticated", asked=()),
]  # fmt: skip

CAP_CASES = [
    Case("range-points-cap", "/api/v1/query_range", "alice",
         q(query=ALICE_SCOPE, start="0", end="12000", step="1"), status=400, decision=None,
         error="maximum resolution of 11000 points", asked=()),
    Case("range-90-days-answered", "/api/v1/query_range", "alice",
         q(query=ALICE_SCOPE, start="0", end=str(90 * 86400), step="3600"),
         forwarded=("GET", "/api/v1/query_range",
                    {"query": [ALICE_SCOPE], "start": ["0"], "end": [str(90 * 86400)], "step": ["3600"]})),
    Case("range-within-caps", "/api/v1/query_range", "alice",
         q(query=ALICE_SCOPE, start="0", end="3600", step="30"),
         forwarded=("GET", "/api/v1/query_range",
                    {"query": [ALICE_SCOPE], "start": ["0"], "end": ["3600"], "step": ["30"]})),
    Case("timeout-capped", "/api/v1/query", "alice", q(query=ALICE_SCOPE, timeout="10m"),
         forwarded=("GET", "/api/v1/query", {"query": [ALICE_SCOPE], "timeout": ["120000ms"]})),
    Case("timeout-kept", "/api/v1/query", "alice", q(query=ALICE_SCOPE, timeout="5s"), "POST",
         forwarded=("POST", "/api/v1/query", {"query": [ALICE_SCOPE], "timeout": ["5s"]})),
    Case("duplicate-query", "/api/v1/query", "alice", (("query", "up"), ("query", "up")), status=400,
         decision=None, error="given 2 times", asked=()),
    Case("query-too-long", "/api/v1/query", "alice", q(query="up" + " " * 70000), "POST", status=400,
         decision="refused", asked=()),
]  # fmt: skip


@pytest.mark.parametrize(
    "case", QUERY_CASES + SELECTOR_CASES + PASSTHROUGH_CASES + CAP_CASES, ids=lambda c: c.id
)
async def test_route(make_proxy: Make, case: Case) -> None:
    """Status, decision, Keycloak questions and exactly what the upstream received, per case."""
    proxy = await make_proxy(PROXY_ENFORCE_MODE=case.mode)
    headers = bearer(case.subject) if case.subject else {}
    if case.method == "GET":
        response = await proxy.client.get(case.path, params=list(case.params), headers=headers)
    else:
        response = await proxy.client.post(case.path, data=list(case.params), headers=headers)
    body = await response.json()
    assert response.status == case.status, body
    if case.status >= 400:
        assert body["status"] == "error"
        if case.error:
            assert case.error in body["error"]
    ctx = proxy.done[-1]
    assert (ctx.decision, ctx.status, ctx.hub) == (case.decision, case.status, HUB)
    if case.asked is not None:
        assert [clusters for _, clusters in proxy.authz.asked] == list(case.asked)
    if case.forwarded is None:
        assert proxy.upstream.seen == []
        return
    method, path, params = case.forwarded
    seen = proxy.upstream.last
    got: dict[str, list[str]] = {}
    for k, v in seen.query + (seen.form or []):
        got.setdefault(k, []).append(v)
    assert (seen.method, seen.path, got) == (method, path, params)
    assert (seen.form is not None) == (method == "POST" and bool(case.params))
    assert "Authorization" not in seen.headers  # the caller's credentials never go upstream


RULES = {
    "status": "success",
    "data": {
        "groups": [
            {"name": "g", "rules": [
                {"type": "alerting", "name": "a1", "labels": {"cluster": "c1", "namespace": "team-a"},
                 "alerts": [{"labels": {"cluster": "c1", "namespace": "team-a"}, "state": "firing"}]},
                {"type": "alerting", "name": "a2", "labels": {"cluster": "c2", "namespace": "team-b"},
                 "alerts": [{"labels": {"cluster": "c2", "namespace": "team-b"}, "state": "firing"}]},
            ]},
        ]
    },
}  # fmt: skip
ALERTS = {
    "status": "success",
    "data": {"alerts": [a for r in RULES["data"]["groups"][0]["rules"] for a in r["alerts"]]},  # type: ignore[index]
}


@pytest.mark.parametrize("gzipped", [False, True])
@pytest.mark.parametrize(
    ("subject", "status", "rules", "alerts"),
    [("alice", 200, ["a1"], ["c1"]), ("admin", 200, ["a1", "a2"], ["c1", "c2"]), ("nobody", 403, [], [])],
)
async def test_rules_and_alerts_filtered(
    make_proxy: Make, subject: str, status: int, rules: list[str], alerts: list[str], gzipped: bool
) -> None:
    """Rules and alerts are cut to the caller's grant (gzip answers decoded); no grant is 403."""
    proxy = await make_proxy()
    proxy.upstream.gzipped = gzipped
    proxy.upstream.answers = {"/api/v1/rules": (200, RULES), "/api/v1/alerts": (200, ALERTS)}
    r = await proxy.client.get("/api/v1/rules", headers=bearer(subject))
    a = await proxy.client.get("/api/v1/alerts", headers=bearer(subject))
    assert (r.status, a.status) == (status, status)
    if status != 200:
        assert proxy.upstream.seen == [] and proxy.done[-1].decision == "denied"
        return
    groups = (await r.json())["data"]["groups"]
    assert [rule["name"] for g in groups for rule in g["rules"]] == rules
    assert [x["labels"]["cluster"] for x in (await a.json())["data"]["alerts"]] == alerts
    assert proxy.upstream.last.headers["Accept-Encoding"] == "gzip"
    assert proxy.done[-1].decision == "filtered"


async def test_upstream_errors_pass_through_filters(make_proxy: Make) -> None:
    """An upstream error answer on a filtered route reaches the caller unchanged."""
    proxy = await make_proxy()
    doc = {"status": "error", "errorType": "internal", "error": "boom"}
    proxy.upstream.answers = {"/api/v1/rules": (500, doc)}
    r = await proxy.client.get("/api/v1/rules", headers=bearer("alice"))
    assert (r.status, await r.json()) == (500, doc)


async def test_metadata_limited_to_visible_names_and_cached(make_proxy: Make) -> None:
    """Metadata keeps the metric names the caller's scope lists; the name list is asked once."""
    proxy = await make_proxy()
    names = {"status": "success", "data": ["m1"]}
    meta = {"status": "success", "data": {"m1": [{"type": "gauge"}], "m2": [{"type": "gauge"}]}}
    proxy.upstream.answers = {"/api/v1/label/__name__/values": (200, names), "/api/v1/metadata": (200, meta)}
    for _ in range(2):
        r = await proxy.client.get("/api/v1/metadata", headers=bearer("alice"))
        assert (await r.json())["data"] == {"m1": [{"type": "gauge"}]}
    listed = [s for s in proxy.upstream.seen if s.path == "/api/v1/label/__name__/values"]
    assert len(listed) == 1 and listed[0].query == [("match[]", ALICE_ALL)]
    assert proxy.done[-1].caches["metric_names"] == "hit"
    r = await proxy.client.get("/api/v1/metadata", headers=bearer("admin"))
    assert set((await r.json())["data"]) == {"m1", "m2"}


async def test_metadata_name_list_failure_is_502(make_proxy: Make) -> None:
    """When the upstream cannot list metric names, metadata fails closed (502), never unfiltered."""
    proxy = await make_proxy()
    proxy.upstream.answers = {"/api/v1/label/__name__/values": (500, {"status": "error"})}
    r = await proxy.client.get("/api/v1/metadata", headers=bearer("alice"))
    assert r.status == 502 and (await r.json())["errorType"] == "unavailable"


@pytest.mark.parametrize("status", [401, 403])
async def test_upstream_refusing_the_proxy_is_502(make_proxy: Make, status: int) -> None:
    """The upstream refusing the proxy's own credentials is the proxy's fault: 502, not 401/403."""
    proxy = await make_proxy()
    proxy.upstream.answers = {"/api/v1/query": (status, {"status": "error"})}
    r = await proxy.client.get("/api/v1/query", params={"query": ALICE_SCOPE}, headers=bearer("alice"))
    assert r.status == 502 and "credentials" in (await r.json())["error"]


async def test_upstream_unreachable_is_502_with_cause(make_proxy: Make) -> None:
    """A dead upstream is 502; the cause's type is on the request context (log line)."""
    proxy = await make_proxy(PROXY_PROMETHEUS_BASE_URL="http://127.0.0.1:9")
    r = await proxy.client.get("/api/v1/query", params={"query": ALICE_SCOPE}, headers=bearer("alice"))
    assert r.status == 502
    ctx = proxy.done[-1]
    assert ctx.error == "upstream is unreachable" and ctx.cause is not None


@pytest.mark.parametrize(
    ("method", "path", "status", "error_type"),
    [("GET", "/nope", 404, "not_found"), ("PUT", "/api/v1/query", 405, "method_not_allowed"),
     ("POST", "/api/v1/rules", 405, "method_not_allowed")],
)  # fmt: skip
async def test_framework_errors_use_the_envelope(
    make_proxy: Make, method: str, path: str, status: int, error_type: str
) -> None:
    """Unknown paths and methods answer in Prometheus' error envelope (405 with Allow)."""
    proxy = await make_proxy()
    r = await proxy.client.request(method, path, headers=bearer("alice"))
    assert (r.status, (await r.json())["errorType"]) == (status, error_type)
    if status == 405:
        assert "GET" in r.headers["Allow"]


async def test_unexpected_error_is_500_without_detail(make_proxy: Make) -> None:
    """A bug in a step is a 500 with a generic message: nothing internal reaches the caller."""
    proxy = await make_proxy()

    async def broken(*_: object) -> None:
        raise RuntimeError("secret internals")

    proxy.authz.holdings = broken  # type: ignore[method-assign,assignment]
    r = await proxy.client.get("/api/v1/query", params={"query": ALICE_SCOPE}, headers=bearer("alice"))
    assert (r.status, (await r.json())["error"]) == (500, "internal error")


async def test_rejections_counted_and_context_complete(make_proxy: Make) -> None:
    """A syntax error counts a query rejection; a finished request's context has everything the
    log line and the audit hook need (id, subject, reach, timings, decision)."""
    proxy = await make_proxy()
    name, labels = "prom_keycloak_proxy_query_rejections_total", {"reason": "syntax"}
    before = metrics.REGISTRY.get_sample_value(name, labels)
    await proxy.client.get("/api/v1/query", params={"query": "sum("}, headers=bearer("alice"))
    after = metrics.REGISTRY.get_sample_value(name, labels)
    assert (after or 0) == (before or 0) + 1
    r = await proxy.client.get(
        "/api/v1/query", params={"query": ALICE_SCOPE}, headers={**bearer("alice"), "X-Request-Id": "rid-1"}
    )
    assert r.headers["X-Request-Id"] == "rid-1"
    ctx = proxy.done[-1]
    fields = ctx.log_fields()
    assert (ctx.request_id, ctx.route, ctx.subject) == ("rid-1", "query", "alice")
    assert (fields["clusters"], fields["namespaces"]) == (["c1"], ["team-a"])
    assert {"authn_ms", "authz_ms", "upstream_ms"} <= set(fields)


async def test_one_admission_per_request_on_every_upstream_route(make_proxy: Make) -> None:
    """Every route that reaches the upstream takes one admission (the rate bucket counts it), and a
    request making two upstream calls (metadata: names, then metadata) takes only one."""
    proxy = await make_proxy(PROXY_RATE_PER_SUBJECT="0.001", PROXY_RATE_BURST_PER_SUBJECT="1")
    proxy.upstream.answers = {"/api/v1/label/__name__/values": (200, {"status": "success", "data": []})}
    first = await proxy.client.get("/api/v1/metadata", headers=bearer("alice"))
    assert first.status == 200 and len(proxy.upstream.seen) == 2
    for path in ("/api/v1/rules", "/api/v1/status/buildinfo", "/api/v1/series"):
        r = await proxy.client.get(path, params={"match[]": ALICE_SCOPE}, headers=bearer("alice"))
        assert r.status == 429 and "Retry-After" in r.headers
    assert (await proxy.client.get("/api/v1/rules", headers=bearer("admin"))).status == 200
    assert "queue_ms" in proxy.done[-1].log_fields()

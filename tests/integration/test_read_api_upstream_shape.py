"""What the proxy sends upstream for read-API requests (docs/http.md: built, never copied).

A recording stub upstream (plain HTTP on loopback, canned answers) shows the method, path, query
string, body and headers of each forwarded request: GET-only routes get GET, parameters stay
where they arrived, credentials never travel, duplicate `query` never leaves the proxy. Metadata
filtering is checked against a canned metadata answer the real (backfilled) Prometheus lacks.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl, urlencode

import pytest
import requests
from aiohttp import web

from tests.support.loopback import LoopbackServer
from tests.support.proxy_server import ProxyServer
from tests.support.stack import ProxyFactory, TokenFor

NAMES = ["DCGM_FI_DEV_GPU_UTIL", "kube_pod_info"]
METADATA = {
    "DCGM_FI_DEV_GPU_UTIL": [{"type": "gauge", "help": "GPU utilization (in %).", "unit": ""}],
    "kube_pod_info": [{"type": "gauge", "help": "Information about pod.", "unit": ""}],
    "up": [{"type": "gauge", "help": "Target up.", "unit": ""}],
    "tenant_secret_metric": [{"type": "counter", "help": "Someone else's.", "unit": ""}],
}
Pairs = list[tuple[str, str]]


@dataclass
class Seen:
    """One forwarded request as the stub received it."""

    method: str
    path: str
    query: Pairs
    body: Pairs
    headers: dict[str, str]


@dataclass
class RecordingUpstream(LoopbackServer):
    """A plain-HTTP stub Prometheus recording every request, answering from canned data."""

    seen: list[Seen] = field(default_factory=list)

    def __post_init__(self) -> None:
        LoopbackServer.__init__(self)

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        raw = await request.read()
        self.seen.append(
            Seen(
                request.method,
                request.path,
                parse_qsl(request.query_string, keep_blank_values=True),
                parse_qsl(raw.decode(), keep_blank_values=True),
                dict(request.headers),
            )
        )
        data: Any = []
        if request.path == "/api/v1/label/__name__/values":
            data = NAMES
        elif request.path == "/api/v1/metadata":
            metric = request.query.get("metric")
            data = {k: v for k, v in METADATA.items() if metric in (None, k)}
        elif request.path.startswith("/api/v1/query"):
            data = {"resultType": "vector", "result": []}
        return web.json_response({"status": "success", "data": data})

    def add_routes(self, app: web.Application) -> None:
        """Every path is recorded by `_handle`."""
        app.router.add_route("*", "/{tail:.*}", self._handle)

    def last(self, path: str) -> Seen:
        """The most recent request to `path`."""
        matching = [s for s in self.seen if s.path == path]
        assert matching, f"nothing sent to {path}; saw {[s.path for s in self.seen]}"
        return matching[-1]


@pytest.fixture
def upstream() -> Iterator[RecordingUpstream]:
    """A fresh recording stub per test."""
    stub = RecordingUpstream().start()
    yield stub
    stub.stop()


@pytest.fixture
def proxy(proxy_factory: ProxyFactory, upstream: RecordingUpstream) -> ProxyServer:
    """The proxy (narrow mode) in front of the recording stub."""
    return proxy_factory(PROXY_PROMETHEUS_BASE_URL=upstream.base_url)


def send(
    proxy: ProxyServer,
    token: str,
    method: str,
    path: str,
    url: Sequence[tuple[str, str]] = (),
    form: Sequence[tuple[str, str]] | None = None,
    headers: dict[str, str] | None = None,
) -> requests.Response:
    """One request through the proxy with URL pairs and an optional form body."""
    target = f"{proxy.base_url}{path}" + (f"?{urlencode(list(url))}" if url else "")
    all_headers = {"Authorization": f"Bearer {token}", **(headers or {})}
    data = None
    if form is not None:
        all_headers["Content-Type"] = "application/x-www-form-urlencoded"
        data = urlencode(list(form))
    return requests.request(method, target, data=data, headers=all_headers, timeout=30)


def values(pairs: Pairs, name: str) -> list[str]:
    """Every value of `name` in a pair list."""
    return [v for k, v in pairs if k == name]


@pytest.mark.parametrize("path", ["/api/v1/label/namespace/values", "/federate"])
def test_get_only_routes_go_upstream_as_get(
    proxy: ProxyServer, upstream: RecordingUpstream, token_for: TokenFor, path: str
) -> None:
    """A POST to label values or federate is sent upstream as GET with every parameter in the URL."""
    r = send(
        proxy,
        token_for("dave"),
        "POST",
        path,
        url=[("limit", "1000")],
        form=[("match[]", "kube_pod_info"), ("start", "1"), ("end", "2")],
    )
    assert r.status_code == 200, r.text
    seen = upstream.last(path)
    assert seen.method == "GET"
    assert seen.body == []
    assert values(seen.query, "match[]") == ["kube_pod_info"]
    assert values(seen.query, "limit") == ["1000"] and values(seen.query, "start") == ["1"]


def test_series_post_keeps_parameters_in_place(
    proxy: ProxyServer, upstream: RecordingUpstream, token_for: TokenFor
) -> None:
    """`series` POST: enforced match[] in the body where it arrived, URL extras untouched in the URL."""
    r = send(
        proxy,
        token_for("bob"),
        "POST",
        "/api/v1/series",
        url=[("dedup", "false")],
        form=[("match[]", "kube_pod_info"), ("limit", "40000")],
    )
    assert r.status_code == 200, r.text
    seen = upstream.last("/api/v1/series")
    assert seen.method == "POST"
    assert seen.query == [("dedup", "false")]
    assert values(seen.body, "limit") == ["40000"]
    assert values(seen.body, "match[]") == ['kube_pod_info{cluster="nerc-ocp-test"}']


def test_label_values_scope_injection_for_project_holder(
    proxy: ProxyServer, upstream: RecordingUpstream, token_for: TokenFor
) -> None:
    """Without match[], alice's scope is injected: one match[] per narrowing branch, from her grant only."""
    r = send(proxy, token_for("alice"), "GET", "/api/v1/label/__name__/values")
    assert r.status_code == 200, r.text
    matches = values(upstream.last("/api/v1/label/__name__/values").query, "match[]")
    assert len(matches) == 2, matches
    assert all('cluster="nerc-ocp-prod"' in m for m in matches)
    assert sorted(bool(re.search(r'[{,]namespace="team-a"', m)) for m in matches) == [False, True]
    assert sorted(bool(re.search(r'[{,]exported_namespace="team-a"', m)) for m in matches) == [False, True]


def test_query_post_with_grafana_url_parameters(
    proxy: ProxyServer, upstream: RecordingUpstream, token_for: TokenFor
) -> None:
    """Grafana's POST form plus URL custom parameters: query rewritten in the body, extras where they were."""
    r = send(
        proxy,
        token_for("bob"),
        "POST",
        "/api/v1/query_range",
        url=[("dedup", "false"), ("partial_response", "true")],
        form=[("end", "1000"), ("query", "sum(up)"), ("start", "100"), ("step", "15"), ("timeout", "60s")],
    )
    assert r.status_code == 200, r.text
    seen = upstream.last("/api/v1/query_range")
    assert seen.method == "POST"
    assert seen.query == [("dedup", "false"), ("partial_response", "true")]
    assert [q.replace(" ", "") for q in values(seen.body, "query")] == ['sum(up{cluster="nerc-ocp-test"})']
    assert [k for k, _ in seen.body if k != "query"] == ["end", "start", "step", "timeout"]


def test_portal_extra_parameters_pass_untouched(
    proxy: ProxyServer, upstream: RecordingUpstream, token_for: TokenFor
) -> None:
    """The portal's 13 non-Prometheus parameters reach the upstream unchanged and in order."""
    extras = [
        ("startDate", "Mon Dec 01 2025 05:00:00 GMT+0000"),
        ("stepMillis", "86400000"),
        ("timeZone", "America/New_York"),
    ]
    r = send(
        proxy,
        token_for("bob"),
        "GET",
        "/api/v1/query_range",
        url=[
            ("query", 'up{cluster="nerc-ocp-test"}'),
            ("start", "100"),
            ("end", "1000"),
            ("step", "100"),
            *extras,
        ],
    )
    assert r.status_code == 200, r.text
    seen = upstream.last("/api/v1/query_range")
    assert [p for p in seen.query if p[0] not in ("query", "start", "end", "step")] == extras


def test_credentials_and_tenancy_headers_never_forwarded(
    proxy: ProxyServer, upstream: RecordingUpstream, token_for: TokenFor
) -> None:
    """Authorization, X-Id-Token, Cookie and tenancy headers stay at the proxy; allow-listed ones pass."""
    headers = {
        "X-Id-Token": "id",
        "Cookie": "grafana_session=x",
        "X-Scope-OrgID": "other",
        "THANOS-TENANT": "other",
        "X-Grafana-User": "alice",
        "User-Agent": "Grafana/12.0.0",
        "X-Request-Id": "req-123",
    }
    r = send(proxy, token_for("bob"), "GET", "/api/v1/labels", url=[("match[]", "up")], headers=headers)
    assert r.status_code == 200, r.text
    sent = {k.lower(): v for k, v in upstream.last("/api/v1/labels").headers.items()}
    for name in ("authorization", "x-id-token", "cookie", "x-scope-orgid", "thanos-tenant", "x-grafana-user"):
        assert name not in sent, name
    assert sent["user-agent"] == "Grafana/12.0.0"
    assert sent["x-request-id"] == "req-123"


@pytest.mark.parametrize("path", ["/api/v1/query", "/api/v1/query_range", "/api/v1/query_exemplars"])
@pytest.mark.parametrize(
    ("url", "form"),
    [
        ([("query", "up")], [("query", "up")]),
        ([("query", "up"), ("query", "up")], None),
        ([], [("query", "up"), ("query", "sum(up)")]),
    ],
    ids=["url-and-body", "repeated-in-url", "repeated-in-body"],
)
def test_duplicate_query_is_400_and_not_forwarded(
    proxy: ProxyServer,
    upstream: RecordingUpstream,
    token_for: TokenFor,
    path: str,
    url: Pairs,
    form: Pairs | None,
) -> None:
    """A `query` in both URL and body, or repeated, is refused with 400 before anything goes upstream."""
    r = send(proxy, token_for("dave"), "POST" if form is not None else "GET", path, url=url, form=form)
    assert r.status_code == 400, r.text
    assert r.json()["errorType"] == "bad_data"
    assert "query" in r.json()["error"]
    assert not [s for s in upstream.seen if s.path == path]


def test_metadata_filtered_to_visible_names(
    proxy: ProxyServer, upstream: RecordingUpstream, token_for: TokenFor
) -> None:
    """alice's metadata lists only names her scope's `label/__name__/values` returns."""
    r = send(proxy, token_for("alice"), "GET", "/api/v1/metadata", url=[("limit", "40000")])
    assert r.status_code == 200, r.text
    assert r.json()["data"] == {k: METADATA[k] for k in NAMES}
    lookup = upstream.last("/api/v1/label/__name__/values")
    assert lookup.method == "GET" and len(values(lookup.query, "match[]")) == 2
    assert values(upstream.last("/api/v1/metadata").query, "limit") == ["40000"]


@pytest.mark.parametrize("metric", ["up", "tenant_secret_metric"])
def test_metadata_for_invisible_metric_is_empty_object(
    proxy: ProxyServer, token_for: TokenFor, metric: str
) -> None:
    """`metric=` naming a metric outside the caller's scope answers 200 with `{}`."""
    r = send(proxy, token_for("alice"), "GET", "/api/v1/metadata", url=[("metric", metric)])
    assert r.status_code == 200, r.text
    assert r.json() == {"status": "success", "data": {}}


def test_metadata_hub_wide_unfiltered(
    proxy: ProxyServer, upstream: RecordingUpstream, token_for: TokenFor
) -> None:
    """A hub-wide holder gets the upstream metadata unchanged, without a name lookup."""
    r = send(proxy, token_for("dave"), "GET", "/api/v1/metadata")
    assert r.status_code == 200, r.text
    assert r.json()["data"] == METADATA
    assert not [s for s in upstream.seen if s.path == "/api/v1/label/__name__/values"]

"""Answers on the HTTP surface (docs/http.md): warnings both ways on every query and match[]
endpoint, the fan-out taken for bare range selectors only, prometheus-api-client's range calls
for project holders, and /proxy/v1/whoami and /proxy/v1/explain for every identity kind —
never reaching the upstream and never telling an unknown project from another tenant's."""

from __future__ import annotations

import statistics
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import parse_qsl

import pytest
import requests
from aiohttp import web
from prometheus_api_client import PrometheusConnect

from tests.support.identities import auth_header
from tests.support.loopback import LoopbackServer
from tests.support.oracle import Grant, assert_same_result, leaked_series
from tests.support.prometheus import OraclePrometheusFactory
from tests.support.proxy_server import ProxyServer
from tests.support.stack import CLIENT_SECRETS, ProxyFactory, TokenFor

pytestmark = pytest.mark.prometheus

PROD, TEST = "nerc-ocp-prod", "nerc-ocp-test"
CLIENT = "researcher-team-a"
GRANTS = {
    "alice": Grant.of_projects(PROD, "team-a"),
    CLIENT: Grant(projects={PROD: {"team-a"}, TEST: {"team-a"}}),
}
DCGM = "DCGM_FI_DEV_GPU_UTIL"


def get(proxy: ProxyServer, token_for: TokenFor, who: str, route: str, **params: Any) -> requests.Response:
    """GET through the proxy as `who`."""
    return requests.get(
        f"{proxy.base_url}{route}", params=params, headers=auth_header(who, token_for), timeout=60
    )


def post(proxy: ProxyServer, token_for: TokenFor, who: str, route: str, **form: Any) -> requests.Response:
    """POST a form through the proxy as `who`."""
    return requests.post(
        f"{proxy.base_url}{route}", data=form, headers=auth_header(who, token_for), timeout=60
    )


def success(r: requests.Response) -> dict[str, Any]:
    """The whole 200 success envelope."""
    assert r.status_code == 200, r.text
    doc: dict[str, Any] = r.json()
    assert doc["status"] == "success", doc
    return doc


def at() -> float:
    """A grid-aligned instant five minutes ago."""
    return float(int(time.time() // 30 * 30 - 300))


# ----------------------------------------------------------------------------- warnings

NAMED_DROP = f'{DCGM}{{exported_namespace=~"team-a|team-b"}}'


@pytest.mark.parametrize("method", ["GET", "POST"])
def test_warning_when_a_named_project_is_dropped_on_query_and_query_range(
    proxy_server: ProxyServer, token_for: TokenFor, method: str
) -> None:
    """team-b named by a team-a holder: 200 with its series and a warning naming team-b."""
    send = get if method == "GET" else post
    t = at()
    for path, params in (
        ("/api/v1/query", {"time": t}),
        ("/api/v1/query_range", {"start": t - 600, "end": t, "step": 60}),
    ):
        doc = success(send(proxy_server, token_for, "alice", path, query=NAMED_DROP, **params))
        assert doc["data"]["result"]
        assert {s["metric"]["exported_namespace"] for s in doc["data"]["result"]} == {"team-a"}
        assert doc["warnings"] == [
            f"team-b on {PROD} is not among your grants; results cover team-a on {PROD}"
        ]


def test_warning_on_a_fanned_out_range_selector(proxy_server: ProxyServer, token_for: TokenFor) -> None:
    """The merged matrix carries the warning too."""
    doc = success(
        get(proxy_server, token_for, "alice", "/api/v1/query", query=f"{NAMED_DROP}[5m]", time=at())
    )
    assert doc["data"]["resultType"] == "matrix" and doc["data"]["result"]
    assert "team-b" in doc["warnings"][0]


@pytest.mark.parametrize(
    "path", ["/api/v1/series", "/api/v1/labels", "/api/v1/label/exported_namespace/values"]
)
def test_warning_on_match_endpoints_both_ways(
    proxy_server: ProxyServer, token_for: TokenFor, path: str
) -> None:
    """match[] naming team-b warns; the injected scope and fully granted selectors do not."""
    named = success(get(proxy_server, token_for, "alice", path, **{"match[]": NAMED_DROP}))
    assert "team-b" in named["warnings"][0]
    assert "team-b" not in str(named["data"])
    assert "warnings" not in success(get(proxy_server, token_for, "alice", path))
    scoped = f'{DCGM}{{cluster="{PROD}",exported_namespace="team-a"}}'
    assert "warnings" not in success(get(proxy_server, token_for, "alice", path, **{"match[]": scoped}))


@pytest.mark.parametrize(
    ("who", "q"),
    [
        ("alice", DCGM),
        ("alice", "sum(rate(vllm:request_success_total[5m]))"),
        ("alice", f"{DCGM}[5m]"),
        (CLIENT, f'{DCGM}{{exported_namespace="team-a"}}'),
        ("dave", f'{DCGM}{{exported_namespace=~"team-a|team-b"}}'),
        ("bob", f'{DCGM}{{exported_namespace=~"team-a|team-b"}}'),
    ],
)
def test_no_warning_when_nothing_named_was_dropped(
    proxy_server: ProxyServer, token_for: TokenFor, who: str, q: str
) -> None:
    """Unscoped queries narrowed to holdings, and granted ones, carry no warnings key."""
    assert "warnings" not in success(get(proxy_server, token_for, who, "/api/v1/query", query=q, time=at()))


def test_warning_keeps_gzip_callers_working(proxy_server: ProxyServer, token_for: TokenFor) -> None:
    """A caller asking for gzip still gets a valid (spliced) JSON answer."""
    r = requests.get(
        f"{proxy_server.base_url}/api/v1/query",
        params={"query": NAMED_DROP, "time": str(at())},
        headers={**auth_header("alice", token_for), "Accept-Encoding": "gzip"},
        timeout=60,
    )
    assert "team-b" in success(r)["warnings"][0]


# ----------------------------------------------------------------------------- prometheus-api-client


def connect(proxy: ProxyServer, who: str, token_for: TokenFor) -> PrometheusConnect:
    """PAC as a researcher writes it: bearer for users, `auth=` for the client."""
    if who == CLIENT:
        return PrometheusConnect(url=proxy.base_url, auth=(CLIENT, CLIENT_SECRETS[CLIENT]), disable_ssl=True)
    return PrometheusConnect(
        url=proxy.base_url, headers={"Authorization": f"Bearer {token_for(who)}"}, disable_ssl=True
    )


@pytest.mark.parametrize("who", sorted(GRANTS))
def test_pac_get_metric_range_data_returns_exactly_their_series(
    proxy_server: ProxyServer,
    token_for: TokenFor,
    oracle_prometheus_factory: OraclePrometheusFactory,
    who: str,
) -> None:
    """`get_metric_range_data(metric)` — an unscoped top-level range selector — equals the oracle."""
    pc = connect(proxy_server, who, token_for)
    end = datetime.fromtimestamp(at(), tz=UTC)
    start = end - timedelta(minutes=20)
    got = pc.get_metric_range_data(DCGM, start_time=start, end_time=end)
    seconds = round(end.timestamp()) - round(start.timestamp())
    expected = oracle_prometheus_factory.query(
        GRANTS[who], f"{DCGM}[{seconds}s]", time=round(start.timestamp()) + seconds
    )
    assert got and not leaked_series([s["metric"] for s in got], GRANTS[who])
    assert_same_result({"resultType": "matrix", "result": got}, expected)


@pytest.mark.parametrize("who", sorted(GRANTS))
def test_pac_custom_query_range_and_current_value(
    proxy_server: ProxyServer,
    token_for: TokenFor,
    oracle_prometheus_factory: OraclePrometheusFactory,
    who: str,
) -> None:
    """`custom_query`, `custom_query_range` and `get_current_metric_value` see exactly their series."""
    pc = connect(proxy_server, who, token_for)
    t = at()
    got = pc.custom_query(f"{DCGM}[5m]", params={"time": t})
    assert_same_result(
        {"resultType": "matrix", "result": got},
        oracle_prometheus_factory.query(GRANTS[who], f"{DCGM}[5m]", time=t),
    )
    ranged = pc.custom_query_range(
        DCGM,
        start_time=datetime.fromtimestamp(t - 1800, tz=UTC),
        end_time=datetime.fromtimestamp(t, tz=UTC),
        step="60",
    )
    expected = oracle_prometheus_factory.query_range(GRANTS[who], DCGM, start=t - 1800, end=t, step=60)
    assert ranged and not leaked_series([s["metric"] for s in ranged], GRANTS[who])
    assert_same_result({"resultType": "matrix", "result": ranged}, expected)
    current = pc.get_current_metric_value(DCGM)
    assert current and not leaked_series([s["metric"] for s in current], GRANTS[who])
    visible = {
        tuple(sorted(s.labels.items()))
        for s in oracle_prometheus_factory.visible(GRANTS[who])
        if s.name == DCGM
    }
    assert {tuple(sorted(s["metric"].items())) for s in current} == visible


# ----------------------------------------------------------------------------- a recording upstream


@dataclass
class Recording(LoopbackServer):
    """A plain-HTTP stub Prometheus that records requests and answers an empty matrix."""

    seen: list[tuple[str, dict[str, str]]] = field(default_factory=list)

    def __post_init__(self) -> None:
        LoopbackServer.__init__(self)

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        form = dict(parse_qsl((await request.read()).decode(), keep_blank_values=True))
        self.seen.append((request.path, {**dict(request.query), **form}))
        return web.json_response({"status": "success", "data": {"resultType": "matrix", "result": []}})

    def add_routes(self, app: web.Application) -> None:
        """Every path is recorded."""
        app.router.add_route("*", "/{tail:.*}", self._handle)


@pytest.fixture
def recording() -> Iterator[Recording]:
    """A fresh recording stub per test."""
    stub = Recording().start()
    yield stub
    stub.stop()


@pytest.fixture
def stub_proxy(proxy_factory: ProxyFactory, recording: Recording) -> ProxyServer:
    """The proxy (narrow mode) in front of the recording stub."""
    return proxy_factory(PROXY_PROMETHEUS_BASE_URL=recording.base_url)


@pytest.mark.parametrize(
    ("q", "upstream_calls"),
    [
        (f"{DCGM}[5m]", 2),
        (f"({DCGM}[5m] offset 1m)", 2),
        (f"{DCGM}[5m] @ 1700000000", 2),
        (DCGM, 1),
        (f"rate({DCGM}[5m])", 1),
        (f"count({DCGM})", 1),
        (f"sum by (cluster) ({DCGM})", 1),
        (f"topk(1, {DCGM})", 1),
        (f"scalar(sum({DCGM}))", 1),
        (f"{DCGM} * 2", 1),
        (f"{DCGM}[10m:1m]", 1),
        (f"absent({DCGM})", 1),
        (f"absent_over_time({DCGM}[5m])", 1),
        (f"timestamp({DCGM})", 1),
    ],
)
def test_fan_out_only_for_bare_range_selectors(
    stub_proxy: ProxyServer, recording: Recording, token_for: TokenFor, q: str, upstream_calls: int
) -> None:
    """Only a (parenthesised) top-level range selector is asked once per branch, at one time."""
    success(get(stub_proxy, token_for, "alice", "/api/v1/query", query=q))
    assert len(recording.seen) == upstream_calls, recording.seen
    times = {params.get("time") for _, params in recording.seen}
    assert len(times) == 1 and None not in times if upstream_calls > 1 else True


# ----------------------------------------------------------------------------- whoami / explain

IDENTITY_KINDS = {
    "alice": ("bearer", {"hub_wide": False, "clusters": [], "projects": {PROD: ["team-a"]}}),
    CLIENT: ("basic", {"hub_wide": False, "clusters": [], "projects": {PROD: ["team-a"], TEST: ["team-a"]}}),
    "dave": ("bearer", {"hub_wide": True, "clusters": [], "projects": {}}),
    "eve": ("bearer", {"hub_wide": False, "clusters": [], "projects": {}}),
}


@pytest.mark.parametrize("who", sorted(IDENTITY_KINDS))
def test_whoami_for_every_identity_kind(
    stub_proxy: ProxyServer, recording: Recording, token_for: TokenFor, who: str
) -> None:
    """whoami lists the caller's own grants per hub and never calls the upstream."""
    r = get(stub_proxy, token_for, who, "/proxy/v1/whoami")
    assert r.status_code == 200, r.text
    doc = r.json()
    auth, holdings = IDENTITY_KINDS[who]
    assert doc["auth"] == auth and set(doc) == {"subject", "username", "client", "auth", "expires_at", "hubs"}
    assert list(doc["hubs"].values()) == [holdings]
    assert recording.seen == []


def test_whoami_needs_credentials(stub_proxy: ProxyServer) -> None:
    """Without credentials whoami is a 401."""
    assert requests.get(f"{stub_proxy.base_url}/proxy/v1/whoami", timeout=30).status_code == 401


@pytest.mark.parametrize(
    ("who", "q", "decision"),
    [
        ("alice", f'{DCGM}{{cluster="{PROD}",exported_namespace="team-a"}}', "allowed"),
        ("alice", NAMED_DROP, "narrowed"),
        ("alice", f"{DCGM}[5m]", "narrowed"),
        ("alice", f'{DCGM}{{cluster="{TEST}"}}', "denied"),
        (CLIENT, DCGM, "narrowed"),
        ("dave", DCGM, "allowed"),
        ("eve", DCGM, "denied"),
        ("alice", "sum(", "invalid"),
    ],
)
@pytest.mark.parametrize("method", ["GET", "POST"])
def test_explain_for_every_identity_kind(
    stub_proxy: ProxyServer,
    recording: Recording,
    token_for: TokenFor,
    who: str,
    q: str,
    decision: str,
    method: str,
) -> None:
    """explain answers 200 with the decision in the body and never reaches the upstream."""
    send = get if method == "GET" else post
    r = send(stub_proxy, token_for, who, "/proxy/v1/explain", query=q)
    assert r.status_code == 200, r.text
    doc = r.json()
    assert set(doc) == {"decision", "reason", "needs", "missing", "forwarded", "warnings"}
    assert doc["decision"] == decision, doc
    assert recording.seen == []
    if decision == "narrowed" and q.endswith("[5m]"):
        assert len(doc["forwarded"]) == 2


def test_explain_match_and_path(stub_proxy: ProxyServer, recording: Recording, token_for: TokenFor) -> None:
    """match[] lists and an explicit path are explained too; a path of the wrong kind is 400."""
    doc = get(stub_proxy, token_for, "alice", "/proxy/v1/explain", **{"match[]": NAMED_DROP}).json()
    assert doc["decision"] == "narrowed" and "team-b" in doc["warnings"][0]
    ranged = get(
        stub_proxy, token_for, "alice", "/proxy/v1/explain", query=f"{DCGM}[5m]", path="/api/v1/query_range"
    )
    assert ranged.json()["decision"] == "invalid"
    assert (
        get(stub_proxy, token_for, "alice", "/proxy/v1/explain", query=DCGM, path="/api/v1/rules").status_code
        == 400
    )
    assert recording.seen == []


def test_explain_unknown_and_other_tenants_project_look_identical(
    stub_proxy: ProxyServer, token_for: TokenFor
) -> None:
    """An unknown project and team-b (exists, another tenant's) give the same status, body shape
    (up to the name) and timing."""

    def ask(project: str) -> tuple[int, str, float]:
        q = f'{DCGM}{{cluster="{PROD}",exported_namespace="{project}"}}'
        started = time.perf_counter()
        r = get(stub_proxy, token_for, "alice", "/proxy/v1/explain", query=q)
        return r.status_code, r.text.replace(project, "X"), time.perf_counter() - started

    ask("team-b"), ask("no-such-team")  # warm both
    foreign, unknown = [], []
    for _ in range(15):
        foreign.append(ask("team-b"))
        unknown.append(ask("no-such-team"))
    assert {(s, b) for s, b, _ in foreign} == {(s, b) for s, b, _ in unknown}
    assert foreign[0][0] == 200 and '"denied"' in foreign[0][1]
    gap = abs(statistics.median(t for *_, t in foreign) - statistics.median(t for *_, t in unknown))
    assert gap < 0.02, gap


# ----------------------------------------------------------------------------- deny mode, bounds


def test_deny_mode_is_unchanged(proxy_factory: ProxyFactory, token_for: TokenFor) -> None:
    """PROXY_ENFORCE_MODE=deny: no fan-out, no absent shape, no warnings — 403 naming what is
    missing and the project label of the metric; explain says denied."""
    proxy = proxy_factory(PROXY_ENFORCE_MODE="deny")
    for q in (f"{DCGM}[5m]", f"absent({DCGM})", NAMED_DROP):
        r = get(proxy, token_for, "alice", "/api/v1/query", query=q)
        assert r.status_code == 403, r.text
        assert "exported_namespace" in r.json()["error"] or "team-b" in r.json()["error"]
    doc = get(proxy, token_for, "alice", "/proxy/v1/explain", query=f"{DCGM}[5m]").json()
    assert doc["decision"] == "denied" and doc["forwarded"] == []


def test_rewrite_bytes_bound_is_a_400_naming_it(proxy_factory: ProxyFactory, token_for: TokenFor) -> None:
    """A narrowed query over PROXY_MAX_REWRITE_BYTES is a 400 naming the bound."""
    proxy = proxy_factory(PROXY_MAX_REWRITE_BYTES="100")
    r = get(proxy, token_for, CLIENT, "/api/v1/query", query=f"sum({DCGM}) + sum(vllm:num_requests_running)")
    assert r.status_code == 400, r.text
    assert "PROXY_MAX_REWRITE_BYTES" in r.json()["error"]


def test_hint_names_the_trusted_project_label(proxy_factory: ProxyFactory, token_for: TokenFor) -> None:
    """With exported_namespace trusted for DCGM_*, a refusal's hint for DCGM names exported_namespace
    alone, and for kube-state series namespace."""
    proxy = proxy_factory(PROXY_ENFORCE_MODE="deny", PROXY_PROJECT_LABEL_METRICS="exported_namespace=DCGM_.*")
    dcgm = get(proxy, token_for, "alice", "/api/v1/query", query=DCGM).json()["error"]
    assert 'exported_namespace="<namespace>"' in dcgm and ' namespace="<namespace>"' not in dcgm
    kube = get(proxy, token_for, "alice", "/api/v1/query", query="kube_pod_info").json()["error"]
    assert ' namespace="<namespace>"' in kube and "exported_namespace" not in kube

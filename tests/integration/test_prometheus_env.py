"""The real Prometheus test environment: backfilled data over mTLS, refusals, rules, the oracle.

Needs the fixtures of `tests.support.fixtures` (registered by `tests/conftest.py`).
"""

from __future__ import annotations

import http.client
import socket
import ssl
import time
from collections.abc import Callable
from typing import Any

import pytest

from proxy_demo.certs import Pki
from proxy_demo.dataset import CLUSTERS, Series
from proxy_demo.prometheus import PrometheusServer
from tests.support.oracle import Grant, assert_same_result, filter_visible, visible
from tests.support.prometheus import OraclePrometheusFactory

pytestmark = pytest.mark.prometheus

PROD, TEST = CLUSTERS
DATASET_METRICS = '{__name__=~"DCGM_.*|kube_.*|vllm:.*|cluster:cpu_cores:sum|up"}'


def _now_on_grid() -> float:
    # a sample timestamp, so "latest sample at or before t" is unambiguous on both servers
    return float(int(time.time()) // 30 * 30)


def _series_value(series: Series, t: float) -> float:
    return dict(series.samples)[t]


def test_starts_fast(prometheus: PrometheusServer) -> None:
    """Backfill plus start plus the first rule evaluation take well under 10 s."""
    assert prometheus.running
    assert prometheus.startup_seconds < 10


def test_instant_query_now_over_mtls(prometheus: PrometheusServer, demo_series: list[Series]) -> None:
    """`count(DCGM_FI_DEV_GPU_UTIL)` at now counts every backfilled GPU series."""
    expected = sum(1 for s in demo_series if s.name == "DCGM_FI_DEV_GPU_UTIL")
    data = prometheus.query("count(DCGM_FI_DEV_GPU_UTIL)")
    assert data["resultType"] == "vector"
    assert float(data["result"][0]["value"][1]) == expected


def test_values_are_the_backfilled_ones(prometheus: PrometheusServer, demo_series: list[Series]) -> None:
    """An instant query at a grid instant returns exactly the dataset's value for each series."""
    t = _now_on_grid()
    data = prometheus.query("DCGM_FI_DEV_POWER_USAGE", time=t)
    by_labels = {s.key(): s for s in demo_series}
    assert len(data["result"]) == sum(1 for s in demo_series if s.name == "DCGM_FI_DEV_POWER_USAGE")
    for r in data["result"]:
        series = by_labels[tuple(sorted(r["metric"].items()))]
        assert float(r["value"][1]) == _series_value(series, t)


def test_query_range_over_the_last_3h(prometheus: PrometheusServer, demo_series: list[Series]) -> None:
    """A 3 h range query at 30 s steps returns every point of every backfilled series."""
    end = _now_on_grid()
    start = end - 3 * 3600 + 60
    data = prometheus.query_range("vllm:num_requests_running", start, end, 30)
    assert data["resultType"] == "matrix"
    wanted = {s.key(): s for s in demo_series if s.name == "vllm:num_requests_running"}
    assert len(data["result"]) == len(wanted)
    for r in data["result"]:
        series = wanted[tuple(sorted(r["metric"].items()))]
        points = [(float(t), float(v)) for t, v in r["values"]]
        assert len(points) == (end - start) // 30 + 1
        assert all(_series_value(series, t) == v for t, v in points)


def test_future_samples_are_served(prometheus: PrometheusServer) -> None:
    """Samples backfilled ahead of now answer queries at now + 2 h (long runs keep working)."""
    data = prometheus.query("count(kube_pod_info)", time=time.time() + 2 * 3600)
    assert float(data["result"][0]["value"][1]) > 0
    data = prometheus.query("count(kube_pod_info)", time=time.time() + 4 * 3600)
    assert data["result"] == []  # nothing after the dataset's end (+3 h, 5 min lookback)


def test_series_and_label_endpoints(prometheus: PrometheusServer, demo_series: list[Series]) -> None:
    """Series and label-values endpoints list what was backfilled."""
    assert set(prometheus.label_values("cluster")) == set(CLUSTERS)
    got = prometheus.series_labels(["DCGM_FI_DEV_FB_USED"])
    assert {tuple(sorted(g.items())) for g in got} == {
        s.key() for s in demo_series if s.name == "DCGM_FI_DEV_FB_USED"
    }


def _raw_get(server: PrometheusServer, ctx: ssl.SSLContext) -> int:
    conn = http.client.HTTPSConnection(server.host, server.port, context=ctx, timeout=5)
    try:
        conn.request("GET", "/api/v1/query?query=up")
        return conn.getresponse().status
    finally:
        conn.close()


def _refused(server: PrometheusServer, ctx: ssl.SSLContext) -> bool:
    try:
        _raw_get(server, ctx)
    except (ssl.SSLError, ConnectionError, http.client.HTTPException, OSError):
        return True
    return False


def test_refuses_a_client_without_certificate(prometheus: PrometheusServer, pki: Pki) -> None:
    """TLS without a client certificate gets no answer (RequireAndVerifyClientCert)."""
    ctx = ssl.create_default_context(cafile=str(pki.ca_cert))
    assert _refused(prometheus, ctx)


def test_refuses_a_client_cert_from_another_ca(prometheus: PrometheusServer, pki: Pki) -> None:
    """A client certificate issued by an unrelated CA gets no answer."""
    ctx = pki.client_context(cert=pki.other_client_cert, key=pki.other_client_key)
    assert _refused(prometheus, ctx)


def test_refuses_plain_http(prometheus: PrometheusServer) -> None:
    """Plain HTTP on the TLS port gets an HTTP 400, never data."""
    conn = http.client.HTTPConnection(prometheus.host, prometheus.port, timeout=5)
    try:
        conn.request("GET", "/api/v1/query?query=up")
        status = conn.getresponse().status
    except (ConnectionError, http.client.HTTPException):
        status = 0
    finally:
        conn.close()
    assert status != 200


def test_our_client_is_accepted(prometheus: PrometheusServer, pki: Pki) -> None:
    """The session client certificate is accepted (positive control for the refusals)."""
    assert _raw_get(prometheus, pki.client_context()) == 200


def test_rules_are_healthy_and_alerts_fire(prometheus: PrometheusServer) -> None:
    """Every rule evaluates cleanly (no `out of bounds`), and alerts fire across the hub."""
    groups = prometheus.api("/api/v1/rules")["groups"]
    rules = [r for g in groups for r in g["rules"]]
    assert {r["type"] for r in rules} == {"alerting", "recording"}
    assert all(r["health"] == "ok" for r in rules), [r.get("lastError") for r in rules]
    states = {r["name"]: r["state"] for r in rules if r["type"] == "alerting"}
    assert states["GpuBusy"] == "firing"
    assert states["GpuPowerHighForLong"] == "pending"
    assert states["GpuMemoryExhausted"] == "inactive"
    alerts = prometheus.api("/api/v1/alerts")["alerts"]
    firing = [a["labels"] for a in alerts if a["state"] == "firing"]
    assert {a.get("cluster") for a in firing} >= {PROD, TEST, None}
    assert {a.get("exported_namespace") for a in firing} >= {"team-a", "team-b", "team-c"}
    assert any(a.get("namespace") == "team-a" and a["alertname"] == "VllmServing" for a in firing)


def test_rule_outputs_are_stored(prometheus: PrometheusServer) -> None:
    """Recording rules and ALERTS land in the TSDB despite blocks reaching into the future."""
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        rec = prometheus.query("count(gpu:fb_used:gib)")["result"]
        alerts = prometheus.query('count(ALERTS{alertstate="firing"})')["result"]
        if rec and alerts:
            break
        time.sleep(0.5)
    assert rec and alerts


def test_restart_keeps_port_and_data(
    prometheus_factory: Callable[..., PrometheusServer], demo_series: list[Series]
) -> None:
    """stop() then start() serves the same data on the same port (for upstream-outage tests)."""
    server = prometheus_factory(series=demo_series[:5], rules=None)
    port = server.port
    before = server.query('count({__name__!=""})')["result"][0]["value"][1]
    server.stop()
    assert not server.running
    assert _refused(server, server.ssl_context())
    server.start()
    assert server.port == port
    assert server.query('count({__name__!=""})')["result"][0]["value"][1] == before


def test_rotated_server_certificate_is_served_without_restart(
    prometheus_factory: Callable[..., PrometheusServer],
    pki_factory: Callable[[], Pki],
    demo_series: list[Series],
) -> None:
    """Prometheus re-reads the web config's certificate files: rotation shows up live."""
    pki = pki_factory()
    server = prometheus_factory(pki=pki, series=demo_series[:1], rules=None)

    def served_cert() -> bytes | None:
        with (
            socket.create_connection((server.host, server.port)) as raw,
            pki.client_context().wrap_socket(raw, server_hostname=server.host) as tls,
        ):
            return tls.getpeercert(binary_form=True)

    before = served_cert()
    pki.rotate_server()
    assert served_cert() != before
    pki.rotate_client()
    assert server.query("vector(1)")["result"][0]["value"][1] == "1"


GRANTS = [
    Grant.of_projects(PROD, "team-a"),
    Grant.of_projects(PROD, "team-b", "team-c"),
    Grant(clusters={TEST}, projects={PROD: {"team-a"}}),
    Grant.of_clusters(PROD),
    Grant.nothing(),
]


@pytest.mark.parametrize("grant", GRANTS, ids=[g.slug() for g in GRANTS])
def test_oracle_holds_exactly_the_visible_series(
    grant: Grant,
    prometheus: PrometheusServer,
    oracle_prometheus_factory: OraclePrometheusFactory,
) -> None:
    """The oracle's answer equals the full server's answer filtered by the visibility rule."""
    t = _now_on_grid()
    full = prometheus.query(DATASET_METRICS, time=t)
    oracle = oracle_prometheus_factory.query(grant, DATASET_METRICS, time=t)
    assert_same_result(oracle, filter_visible(full, grant))
    # rule outputs: same label sets (values are evaluated at different instants)
    for q in ("ALERTS", "gpu:fb_used:gib", "namespace:vllm_num_requests_running:sum"):
        now = time.time()
        got = {
            tuple(sorted(r["metric"].items()))
            for r in oracle_prometheus_factory.query(grant, q, time=now)["result"]
        }
        want = {
            tuple(sorted(r["metric"].items()))
            for r in prometheus.query(q, time=now)["result"]
            if visible(r["metric"], grant)
        }
        assert got == want, q


def test_oracle_servers_are_cached_per_grant(
    oracle_prometheus_factory: OraclePrometheusFactory, prometheus: PrometheusServer
) -> None:
    """The same grant gets the same server; hub-wide grants reuse the full server."""
    g = Grant.of_projects(TEST, "team-b")
    assert oracle_prometheus_factory.get(g) is oracle_prometheus_factory.get(
        Grant(projects={TEST: {"team-b"}})
    )
    assert oracle_prometheus_factory.get(Grant.hub()) is prometheus


def test_oracle_range_query_compare(
    prometheus: PrometheusServer, oracle_prometheus_factory: OraclePrometheusFactory
) -> None:
    """A hand-narrowed range query on the full server equals the same query on the oracle."""
    grant = Grant.of_projects(PROD, "team-a")
    end = _now_on_grid()
    kw: dict[str, Any] = {"start": end - 3600, "end": end, "step": 60}
    q = "rate(vllm:request_success_total[5m])"
    narrowed = (
        'rate(vllm:request_success_total{cluster="nerc-ocp-prod",namespace="team-a"}[5m]) or '
        'rate(vllm:request_success_total{cluster="nerc-ocp-prod",exported_namespace="team-a"}[5m])'
    )
    actual = prometheus.query_range(narrowed, kw["start"], kw["end"], kw["step"])
    assert actual["result"]
    oracle_prometheus_factory.assert_query_matches(actual, grant, q, **kw)
    unnarrowed = prometheus.query_range(q, kw["start"], kw["end"], kw["step"])
    with pytest.raises(AssertionError):
        oracle_prometheus_factory.assert_query_matches(unnarrowed, grant, q, **kw)

"""prometheus-api-client (PAC v0.7.2) through the proxy: ordinary calls work, see only the caller's series.

`PrometheusConnect(url, headers={"Authorization": "Bearer …"}, disable_ssl=True)` as researchers
write it; answers are compared with the caller's oracle Prometheus (docs/testing.md).
"""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from prometheus_api_client import PrometheusConnect
from prometheus_api_client.exceptions import PrometheusApiClientException

from tests.support.oracle import Grant, assert_same_result, leaked_series, visible
from tests.support.prometheus import OraclePrometheusFactory
from tests.support.proxy_server import ProxyServer
from tests.support.stack import CLIENT_SECRETS, TokenFor

pytestmark = pytest.mark.prometheus

CLIENT = "researcher-team-a"
GRANTS = {
    "alice": Grant.of_projects("nerc-ocp-prod", "team-a"),
    "bob": Grant.of_clusters("nerc-ocp-test"),
    "carol": Grant(clusters={"nerc-ocp-prod"}, projects={"nerc-ocp-test": {"team-b"}}),
    CLIENT: Grant(projects={"nerc-ocp-prod": {"team-a"}, "nerc-ocp-test": {"team-a"}}),
}
IDENTITIES = sorted(GRANTS)


def connect(proxy: ProxyServer, who: str, token_for: TokenFor, method: str = "GET") -> PrometheusConnect:
    """A client as a researcher builds it: bearer header for users, `auth=` tuple for the client."""
    if who == CLIENT:
        return PrometheusConnect(
            url=proxy.base_url, auth=(CLIENT, CLIENT_SECRETS[CLIENT]), disable_ssl=True, method=method
        )
    return PrometheusConnect(
        url=proxy.base_url,
        headers={"Authorization": f"Bearer {token_for(who)}"},
        disable_ssl=True,
        method=method,
    )


def instant() -> int:
    """A grid-aligned instant five minutes ago."""
    return int(time.time() // 60 * 60) - 300


def vector(result: list[dict[str, Any]]) -> dict[str, Any]:
    """PAC returns `data.result`; wrap it back into a vector answer for comparison."""
    return {"resultType": "vector", "result": result}


def test_check_prometheus_connection(proxy_server: ProxyServer, token_for: TokenFor) -> None:
    """`check_prometheus_connection()` (GET /) is True with valid credentials, False with wrong ones."""
    assert connect(proxy_server, "alice", token_for).check_prometheus_connection()
    assert connect(proxy_server, CLIENT, token_for).check_prometheus_connection()
    wrong = PrometheusConnect(url=proxy_server.base_url, auth=(CLIENT, "wrong-secret"), disable_ssl=True)
    assert not wrong.check_prometheus_connection()
    assert not PrometheusConnect(url=proxy_server.base_url, disable_ssl=True).check_prometheus_connection()


@pytest.mark.parametrize("who", IDENTITIES)
@pytest.mark.parametrize("method", ["GET", "POST"])
def test_custom_query_equals_oracle(
    proxy_server: ProxyServer,
    token_for: TokenFor,
    oracle_prometheus_factory: OraclePrometheusFactory,
    who: str,
    method: str,
) -> None:
    """`custom_query` (GET, or POST with the query in the URL and an empty body) sees only visible series."""
    pc = connect(proxy_server, who, token_for, method)
    t = instant()
    for q in ("DCGM_FI_DEV_GPU_UTIL", "sum by (cluster, exported_namespace) (DCGM_FI_DEV_GPU_UTIL)"):
        got = pc.custom_query(q, params={"time": t})
        oracle_prometheus_factory.assert_query_matches(vector(got), GRANTS[who], q, time=t)
        assert got, q


@pytest.mark.parametrize("who", IDENTITIES)
def test_custom_query_range_equals_oracle(
    proxy_server: ProxyServer,
    token_for: TokenFor,
    oracle_prometheus_factory: OraclePrometheusFactory,
    who: str,
) -> None:
    """`custom_query_range` returns the oracle's matrix for the caller."""
    pc = connect(proxy_server, who, token_for)
    end = instant()
    start = end - 3600
    q = "sum by (cluster, namespace) (rate(vllm:request_success_total[5m]))"
    got = pc.custom_query_range(
        q,
        start_time=datetime.fromtimestamp(start, tz=UTC),
        end_time=datetime.fromtimestamp(end, tz=UTC),
        step="60",
    )
    expected = oracle_prometheus_factory.query_range(GRANTS[who], q, start=start, end=end, step=60)
    assert_same_result({"resultType": "matrix", "result": got}, expected)


@pytest.mark.parametrize("who", IDENTITIES)
def test_label_values_and_all_metrics_equal_oracle(
    proxy_server: ProxyServer,
    token_for: TokenFor,
    oracle_prometheus_factory: OraclePrometheusFactory,
    who: str,
) -> None:
    """`get_label_values`, `all_metrics` and `get_label_names` list only what the caller's series carry."""
    pc = connect(proxy_server, who, token_for)
    oracle = oracle_prometheus_factory.get(GRANTS[who])
    for name in ("exported_namespace", "namespace", "cluster"):
        assert sorted(pc.get_label_values(name)) == sorted(oracle.label_values(name))
    metrics = pc.all_metrics()
    assert metrics and sorted(metrics) == sorted(oracle.label_values("__name__"))
    assert sorted(pc.get_label_names()) == sorted(oracle.api("/api/v1/labels"))


@pytest.mark.parametrize("who", IDENTITIES)
def test_get_series_and_current_value(
    proxy_server: ProxyServer,
    token_for: TokenFor,
    who: str,
) -> None:
    """`get_series` (float timestamps) and `get_current_metric_value` (single quotes) see no other tenant."""
    pc = connect(proxy_server, who, token_for)
    now = datetime.now(tz=UTC)
    series = pc.get_series(now - timedelta(hours=1), now, params={"match[]": "DCGM_FI_DEV_GPU_UTIL"})
    assert series
    assert not leaked_series(series, GRANTS[who])
    current = pc.get_current_metric_value("kube_pod_info", label_config={"job": "kube-state-metrics"})
    assert current
    assert all(visible(s["metric"], GRANTS[who]) for s in current)


def test_metric_range_data_with_explicit_scope(proxy_server: ProxyServer, token_for: TokenFor) -> None:
    """`get_metric_range_data` (a range selector per chunk, scope in label_config) works for alice."""
    pc = connect(proxy_server, "alice", token_for)
    end = datetime.now(tz=UTC) - timedelta(minutes=1)
    frames = pc.get_metric_range_data(
        "DCGM_FI_DEV_GPU_UTIL",
        label_config={"cluster": "nerc-ocp-prod", "exported_namespace": "team-a"},
        start_time=end - timedelta(minutes=20),
        end_time=end,
        chunk_size=timedelta(minutes=10),
    )
    assert frames
    assert {f["metric"]["exported_namespace"] for f in frames} == {"team-a"}


def test_lower_case_bearer_scheme_is_accepted(proxy_server: ProxyServer, token_for: TokenFor) -> None:
    """PAC's docstring spells the scheme `bearer`; the auth scheme is case-insensitive."""
    pc = PrometheusConnect(
        url=proxy_server.base_url,
        headers={"Authorization": f"bearer {token_for('alice')}"},
        disable_ssl=True,
    )
    assert pc.custom_query("vector(1)")


def test_caller_without_grant_gets_403_exception(proxy_server: ProxyServer, token_for: TokenFor) -> None:
    """PAC raises with the 403 status for a caller who holds nothing."""
    pc = connect(proxy_server, "eve", token_for)
    with pytest.raises(PrometheusApiClientException, match="403"):
        pc.custom_query("DCGM_FI_DEV_GPU_UTIL")

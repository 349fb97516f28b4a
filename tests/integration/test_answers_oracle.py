"""Answer, don't refuse (docs/authorization.md): on the real Prometheus, for single-project, multi-project
across clusters (a Basic client), mixed, cluster-wide and hub-wide grants, every shape a caller
may send — top-level range selectors (fanned out), absent, absent_over_time, subqueries,
timestamp and every function of Prometheus 2.42 over a narrowed selector — answers 200 equal to
a Prometheus holding only the caller's visible series, or 400 only where that Prometheus refuses.
"""

from __future__ import annotations

import json
import time
from typing import Any

import pytest
import requests
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.support.identities import auth_header
from tests.support.oracle import Grant, diff_results
from tests.support.prometheus import OraclePrometheusFactory
from tests.support.proxy_server import ProxyServer
from tests.support.stack import TokenFor

pytestmark = pytest.mark.prometheus

PROD, TEST = "nerc-ocp-prod", "nerc-ocp-test"
GRANTS = {
    "alice": Grant.of_projects(PROD, "team-a"),  # single project
    "researcher-team-a": Grant(projects={PROD: {"team-a"}, TEST: {"team-a"}}),  # across clusters
    "carol": Grant(clusters={PROD}, projects={TEST: {"team-b"}}),  # mixed
    "bob": Grant.of_clusters(TEST),  # cluster-wide
    "dave": Grant.hub(),  # hub-wide
}
WHO = sorted(GRANTS)
S = "DCGM_FI_DEV_GPU_UTIL"  # project in exported_namespace
C = "vllm:request_success_total"  # a counter, project in namespace
R = f"{S}[10m]"
P = "DCGM_FI_DEV_POWER_USAGE"  # fractional values: no ties for topk/bottomk

# Prometheus 2.42's function list, each over a narrowed selector (functions of 3.x included: the
# real Prometheus refuses them, and so must the proxy).
FUNCTIONS = (
    f"abs({S})", f"absent({S})", "absent(nonexistent_metric)", f"absent_over_time({R})",
    "absent_over_time(nonexistent_metric[5m])", f"ceil({S})", f"changes({R})",
    f"clamp({S}, 10, 50)", f"clamp_max({S}, 50)", f"clamp_min({S}, 10)", f"day_of_month({S})",
    f"day_of_week({S})", f"day_of_year({S})", f"days_in_month({S})", f"delta({R})", f"deriv({R})",
    f"exp({S} / 100)", f"floor({S})", f"histogram_count({S})", f"histogram_sum({S})",
    f"histogram_fraction(0, 50, {S})", f"histogram_quantile(0.9, {S})",
    f"holt_winters({R}, 0.5, 0.5)", f"hour({S})", f"idelta({R})", f"increase({C}[10m])",
    f"irate({C}[10m])", f'label_join({S}, "x", "-", "cluster", "gpu")',
    f'label_replace({S}, "x", "$1", "cluster", "(.*)")', f"last_over_time({R})", f"ln({S} + 1)",
    f"log10({S} + 1)", f"log2({S} + 1)", f"minute({S})", f"month({S})", f"predict_linear({R}, 60)",
    f"present_over_time({R})", f"quantile_over_time(0.5, {R})", f"rate({C}[10m])",
    f"resets({C}[10m])", f"round({S}, 5)", f"scalar(sum({S}))", f"sgn({S} - 50)", f"sort({S})",
    f"sort_desc({S})", f"sqrt({S})", f"stddev_over_time({R})", f"stdvar_over_time({R})",
    f"sum_over_time({R})", f"avg_over_time({R})", f"min_over_time({R})", f"max_over_time({R})",
    f"count_over_time({R})", "time()", f"timestamp({S})", f"timestamp(({S}))", "vector(1)",
    f"year({S})", f"acos({S} / 101)", f"acosh({S} + 1)", f"asin({S} / 101)", f"asinh({S})",
    f"atan({S})", f"atanh({S} / 101)", f"cos({S})", f"cosh({S} / 100)", f"sin({S})",
    f"sinh({S} / 100)", f"tan({S})", f"tanh({S})", f"deg({S})", f"rad({S})", "pi()",
    f'sort_by_label({S}, "gpu")', f"mad_over_time({R})", f"double_exponential_smoothing({R}, 0.5, 0.5)",
    f"sum({S})", f"avg by (cluster) ({S})", f"min({S})", f"max({S})", f"count({S})",
    f"stddev({S})", f"stdvar({S})", f"topk(2, {P})", f"bottomk(2, {P})", f"quantile(0.5, {S})",
    f'count_values("v", round({S}))', f"group({S})", f"limitk(1, {P})",
)  # fmt: skip
RANGE_SELECTORS = (
    f"{S}[5m]",
    f'kube_pod_info{{cluster=~"{PROD}|{TEST}"}}[5m]',
    f"({S}[5m] offset 10m)",
    f'(({C}{{cluster=~"{PROD}|{TEST}"}}[5m]))',
)
SUBQUERIES = (
    f"{S}[10m:1m]",
    f"max_over_time({S}[10m:1m])",
    f"rate({C}[5m])[10m:1m]",
    f"timestamp({S})",
    f"timestamp({S} offset 5m)",
    f"absent_over_time({S}[10m:1m])",
    f"absent(sum({S}))",
    f"absent({S}) or vector(0)",
    f"absent_over_time(rate({C}[5m])[10m:1m])",
)


def at() -> float:
    """A grid-aligned instant five minutes ago: inside every server's dataset window."""
    return float(int(time.time() // 30 * 30 - 300))


def through(proxy: ProxyServer, token_for: TokenFor, who: str, path: str, **params: str) -> requests.Response:
    """A request through the proxy as `who` (bearer user or Basic client)."""
    return requests.get(
        f"{proxy.base_url}{path}", params=params, headers=auth_header(who, token_for), timeout=60
    )


def oracle(factory: OraclePrometheusFactory, who: str, path: str, **params: str) -> tuple[int, Any]:
    """The same request straight to `who`'s oracle Prometheus: (status, envelope)."""
    status, body = factory.get(GRANTS[who]).request("GET", path, params)
    return status, json.loads(body)


def compare(
    proxy: ProxyServer,
    token_for: TokenFor,
    factory: OraclePrometheusFactory,
    who: str,
    path: str,
    **params: str,
) -> str | None:
    """None when the proxy answers as the oracle (or both refuse), else what differs."""
    r = through(proxy, token_for, who, path, **params)
    status, expected = oracle(factory, who, path, **params)
    label = f"{who} {path} {params.get('query')!r}"
    if status != 200:
        if r.status_code in (400, 422) and r.json()["status"] == "error":
            return None
        return f"{label}: oracle {status}, proxy {r.status_code} {r.text[:200]}"
    if r.status_code != 200:
        return f"{label}: proxy {r.status_code} {r.text[:300]}"
    diffs = diff_results(r.json(), expected)
    return f"{label}: {diffs[:3]}" if diffs else None


def instant(
    proxy: ProxyServer, token_for: TokenFor, factory: OraclePrometheusFactory, who: str, q: str
) -> str | None:
    """Compare one instant query at a fixed time."""
    return compare(proxy, token_for, factory, who, "/api/v1/query", query=q, time=str(at()))


def ranged(
    proxy: ProxyServer, token_for: TokenFor, factory: OraclePrometheusFactory, who: str, q: str
) -> str | None:
    """Compare one range query over the last half hour."""
    end = at()
    return compare(
        proxy, token_for, factory, who, "/api/v1/query_range",
        query=q, start=str(end - 1800), end=str(end), step="60",
    )  # fmt: skip


def no_failures(results: list[str | None]) -> None:
    """Assert every comparison agreed, listing those that did not."""
    failures = [r for r in results if r is not None]
    assert not failures, "\n".join(failures)


@pytest.mark.parametrize("who", WHO)
def test_top_level_range_selectors_equal_oracle(
    proxy_server: ProxyServer,
    token_for: TokenFor,
    oracle_prometheus_factory: OraclePrometheusFactory,
    who: str,
) -> None:
    """Range selectors (plain, cluster matcher, offset, parenthesised, @) are answered exactly."""
    t = int(at())
    shapes = [*RANGE_SELECTORS, f"{S}[5m] @ {t}", f"({S}[5m] @ {t} offset 1m)"]
    no_failures([instant(proxy_server, token_for, oracle_prometheus_factory, who, q) for q in shapes])


@pytest.mark.parametrize("who", ["alice", "researcher-team-a"])
def test_range_selector_without_time_is_pinned_once(
    proxy_server: ProxyServer,
    token_for: TokenFor,
    oracle_prometheus_factory: OraclePrometheusFactory,
    who: str,
) -> None:
    """Without `time` every branch is evaluated at one pinned instant (`@` makes it comparable)."""
    q = f"{S}[5m] @ {int(at())}"
    r = through(proxy_server, token_for, who, "/api/v1/query", query=q)
    assert r.status_code == 200, r.text
    _, expected = oracle(oracle_prometheus_factory, who, "/api/v1/query", query=q)
    assert not diff_results(r.json(), expected)
    assert r.json()["data"]["result"], "the caller's own series are there"


@pytest.mark.parametrize("who", WHO)
def test_range_selector_on_query_range_is_refused_like_prometheus(
    proxy_server: ProxyServer,
    token_for: TokenFor,
    oracle_prometheus_factory: OraclePrometheusFactory,
    who: str,
) -> None:
    """query_range refuses a matrix for every caller, as Prometheus does."""
    assert ranged(proxy_server, token_for, oracle_prometheus_factory, who, f"{S}[5m]") is None
    assert through(proxy_server, token_for, who, "/api/v1/query_range", query=f"{S}[5m]",
                   start="1", end="2", step="1").status_code == 400  # fmt: skip


@pytest.mark.parametrize("who", WHO)
def test_absent_subqueries_and_timestamp_equal_oracle(
    proxy_server: ProxyServer,
    token_for: TokenFor,
    oracle_prometheus_factory: OraclePrometheusFactory,
    who: str,
) -> None:
    """absent/absent_over_time (present and missing metrics), subqueries and timestamp, both APIs."""
    shapes = [
        f"absent({S})",
        "absent(nonexistent_metric)",
        f'absent({S}{{cluster=~"{PROD}|{TEST}"}})',
        f"absent_over_time({R})",
        "absent_over_time(nonexistent_metric[5m] offset 1m)",
        *SUBQUERIES,
    ]
    args = (proxy_server, token_for, oracle_prometheus_factory, who)
    # top-level subqueries are matrices: query_range refuses them on both sides
    no_failures([instant(*args, q) for q in shapes] + [ranged(*args, q) for q in shapes])


@pytest.mark.parametrize("who", WHO)
def test_every_function_instant_equals_oracle(
    proxy_server: ProxyServer,
    token_for: TokenFor,
    oracle_prometheus_factory: OraclePrometheusFactory,
    who: str,
) -> None:
    """Every function over a narrowed selector, as an instant query."""
    args = (proxy_server, token_for, oracle_prometheus_factory, who)
    no_failures([instant(*args, q) for q in FUNCTIONS])


@pytest.mark.parametrize("who", WHO)
def test_every_function_range_equals_oracle(
    proxy_server: ProxyServer,
    token_for: TokenFor,
    oracle_prometheus_factory: OraclePrometheusFactory,
    who: str,
) -> None:
    """Every function over a narrowed selector, as a range query."""
    args = (proxy_server, token_for, oracle_prometheus_factory, who)
    no_failures([ranged(*args, q) for q in FUNCTIONS])


_SEL = st.sampled_from(
    [S, C, "kube_pod_info", f'{S}{{cluster="{PROD}"}}', 'kube_pod_info{namespace=~"team-a|team-b"}']
)
_MOD = st.sampled_from(["", " offset 5m", " offset 1m30s"])


@st.composite
def shapes(draw: st.DrawFn) -> str:
    """A random PromQL shape over a narrowed selector."""
    sel = draw(_SEL)
    rng = f"{sel}[{draw(st.sampled_from(['1m', '5m', '10m']))}]{draw(_MOD)}"
    inner = draw(st.sampled_from([
        sel, f"{sel}{draw(_MOD)}", f"rate({rng})", f"max_over_time({rng})", f"timestamp({sel})",
        f"sum by (cluster) ({sel})", f"sort_desc({sel})", f"count({sel})", f"absent({sel})",
        f"absent_over_time({rng})", f"{sel} * 2", f"-{sel}", f"({sel})",
    ]))  # fmt: skip
    return draw(st.sampled_from([
        inner, rng, f"({rng})", f"{inner}[10m:1m]", f"max_over_time({inner}[10m:2m])",
        f"sum({inner})", f"{inner} > bool 0", f"scalar(count({inner}))", f"absent({inner})",
    ]))  # fmt: skip


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(q=shapes(), who=st.sampled_from(["alice", "researcher-team-a", "carol"]))
def test_generated_shapes_equal_oracle(
    proxy_server: ProxyServer,
    token_for: TokenFor,
    oracle_prometheus_factory: OraclePrometheusFactory,
    q: str,
    who: str,
) -> None:
    """Hypothesis: random shapes over narrowed selectors equal the oracle (or both refuse)."""
    no_failures([instant(proxy_server, token_for, oracle_prometheus_factory, who, q)])


@pytest.mark.parametrize("who", ["alice", "researcher-team-a", "carol"])
def test_query_exemplars_of_range_selectors_equal_oracle(
    proxy_server: ProxyServer,
    token_for: TokenFor,
    oracle_prometheus_factory: OraclePrometheusFactory,
    who: str,
) -> None:
    """query_exemplars accepts a range selector as Prometheus does (fanned out, merged)."""
    end = at()
    for q in (f"{S}[5m]", S, f"rate({C}[5m])"):
        r = through(proxy_server, token_for, who, "/api/v1/query_exemplars", query=q,
                    start=str(end - 600), end=str(end))  # fmt: skip
        status, expected = oracle(oracle_prometheus_factory, who, "/api/v1/query_exemplars",
                                  query=q, start=str(end - 600), end=str(end))  # fmt: skip
        assert (r.status_code, status) == (200, 200), r.text
        assert sorted(map(str, r.json()["data"])) == sorted(map(str, expected["data"]))

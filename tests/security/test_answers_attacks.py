"""Red-team rows against the answer paths (fan-out, absent rewrite, warnings, explain, whoami) on the
real Prometheus over mTLS: every row either equals the caller's oracle Prometheus (only their
visible series) or is refused, and nothing said back depends on another tenant's data existing.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

import pytest
import requests

from proxy_demo.certs import Pki
from proxy_demo.dataset import Series
from proxy_demo.prometheus import Binaries
from tests.support.identities import auth_header
from tests.support.oracle import Grant, diff_results
from tests.support.prometheus import OraclePrometheusFactory
from tests.support.proxy_server import ProxyServer
from tests.support.stack import ProxyFactory, TokenFor

pytestmark = pytest.mark.prometheus

PROD, TEST = "nerc-ocp-prod", "nerc-ocp-test"
GRANTS = {
    "alice": Grant.of_projects(PROD, "team-a"),
    "carol": Grant(clusters={PROD}, projects={TEST: {"team-b"}}),
    "bob": Grant.of_clusters(TEST),
}
S = "DCGM_FI_DEV_GPU_UTIL"  # project in exported_namespace
C = "vllm:request_success_total"  # project in namespace
REFUSED = (400, 403, 422)


def _at() -> int:
    return int(time.time() // 30 * 30 - 300)


def _attacks(t: int) -> list[str]:
    """Fan-out, absent and regex shapes that name unheld projects/clusters or probe existence."""
    return [
        # fan-out of top-level range selectors with offset/@/parens/regex naming unheld projects;
        # rule outputs (ALERTS, recorded `a:b` series) are kept out of name-regex rows: they exist
        # only since each server started, so the upstream and a fresh oracle differ by
        # construction (docs/testing.md)
        f'{S}{{exported_namespace=~"team-a|team-b"}}[5m]',
        f'{S}{{exported_namespace=~"team-.*"}}[5m] offset 1m',
        f'((({S}{{exported_namespace!="team-a"}}[5m] @ {t})))',
        f'({S}{{cluster=~".+"}}[5m] offset 2m @ {t})',
        f'{C}{{namespace=~"team-b|team-a",cluster=~"{PROD}|{TEST}"}}[5m]',
        '{__name__=~"DCGM_FI_DEV_GPU_UTIL|vllm:request_success_total"}[5m]',
        '{__name__=~".+",__name__!~"ALERTS.*|.*:.*",exported_namespace="team-b"}[1m]',
        f'{S}{{namespace="team-a",exported_namespace="team-b"}}[5m]',
        f'{S}{{exported_namespace=~"(?i)TEAM-B"}}[5m]',
        # absent over label sets crafted to reveal another tenant's series
        f'absent({S}{{exported_namespace="team-b"}})',
        f'absent({S}{{exported_namespace="team-b",cluster="{PROD}"}})',
        f'absent({S}{{exported_namespace=~"team-b|nope"}})',
        f'absent({S}{{exported_namespace!="team-a"}})',
        f'absent({C}{{namespace="team-b"}} offset 5m)',
        f'absent({C}{{namespace="team-b"}} @ {t})',
        f'absent_over_time({S}{{exported_namespace="team-b"}}[10m])',
        f'absent_over_time({S}{{exported_namespace=~"team-[bc]"}}[10m] offset 1m)',
        f'absent(sum by (exported_namespace) ({S}{{exported_namespace="team-b"}}))',
        f'absent(({S}{{exported_namespace="team-b"}}))',
        f'absent({S}{{exported_namespace="team-b"}} * 2)',
        f'absent({S}{{exported_namespace="team-b"}}) * on() group_left vector(1)',
        f'absent(label_replace({S}{{exported_namespace="team-b"}}, "x", "1", "", ""))',
        'absent({__name__=~".+",__name__!~"ALERTS.*|.*:.*",exported_namespace="team-b"})',
        f'absent(nonexistent_metric{{namespace="team-b"}}) or absent({S}{{exported_namespace="team-b"}})',
        f'absent_over_time({S}{{exported_namespace="team-b"}}[10m:1m])',
        f'absent(absent({S}{{exported_namespace="team-b"}}))',
        f'count(absent({S}{{exported_namespace="team-b"}}))',
        f'absent({S}{{exported_namespace="team-b"}}) and on() absent({S}{{exported_namespace="team-a"}})',
        # label sets matching the empty value (series lacking the project or cluster label)
        f'absent({S}{{exported_namespace=""}})',
        f'absent({S}{{exported_namespace=~"|team-a"}})',
        f'absent({S}{{cluster=""}})',
        f'absent(nonexistent_metric{{cluster="{PROD}",namespace="team-a"}})',
        f'absent({C}{{cluster=~"{PROD}|",namespace=~"team-a|team-b"}})',
        f'absent_over_time({S}{{exported_namespace=~"team-a|",cluster="{PROD}"}}[10m])',
        f'{S}{{exported_namespace=~"|team-a|team-b"}}[5m]',
        # whole-tenant probes through other aggregations
        f'count({S}{{exported_namespace="team-b"}}) or vector(0)',
        f'group(present_over_time({S}{{exported_namespace="team-b"}}[10m]))',
    ]


def _through(
    proxy: ProxyServer, token_for: TokenFor, who: str, path: str, **params: str
) -> requests.Response:
    return requests.get(
        f"{proxy.base_url}{path}", params=params, headers=auth_header(who, token_for), timeout=60
    )


def _oracle(factory: OraclePrometheusFactory, who: str, path: str, **params: str) -> tuple[int, Any]:
    status, body = factory.get(GRANTS[who]).request("GET", path, params)
    return status, json.loads(body)


def _leak(
    proxy: ProxyServer,
    token_for: TokenFor,
    factory: OraclePrometheusFactory,
    who: str,
    path: str,
    **params: str,
) -> str | None:
    """None when the proxy answers as the oracle or refuses; else the difference."""
    r = _through(proxy, token_for, who, path, **params)
    if r.status_code in REFUSED:
        return None
    status, expected = _oracle(factory, who, path, **params)
    label = f"{who} {path} {params.get('query')!r}"
    if r.status_code != 200 or status != 200:
        return f"{label}: proxy {r.status_code} {r.text[:200]}, oracle {status}"
    diffs = diff_results(r.json(), expected)
    return f"{label}: {diffs[:3]}" if diffs else None


@pytest.mark.parametrize("who", sorted(GRANTS))
def test_attack_rows_equal_oracle_or_refused(
    proxy_server: ProxyServer,
    token_for: TokenFor,
    oracle_prometheus_factory: OraclePrometheusFactory,
    who: str,
) -> None:
    """Every attack row, instant and range: the oracle's answer over visible series, or a refusal."""
    t = _at()
    out: list[str | None] = []
    for q in _attacks(t):
        out.append(
            _leak(
                proxy_server, token_for, oracle_prometheus_factory, who, "/api/v1/query", query=q, time=str(t)
            )
        )
        out.append(_leak(proxy_server, token_for, oracle_prometheus_factory, who, "/api/v1/query_range",
                         query=q, start=str(t - 1200), end=str(t), step="60"))  # fmt: skip
    failures = [f for f in out if f]
    assert not failures, "\n".join(failures)
    if who != "alice":  # alice names unheld projects in most rows: those are refused for her
        answered = [
            q for q in _attacks(t)
            if _through(proxy_server, token_for, who, "/api/v1/query", query=q, time=str(t)).ok
        ]  # fmt: skip
        assert len(answered) >= 20, "the rows must mostly be answered, not refused"


def _scrub(text: str, *names: str) -> str:
    for name in names:
        text = text.replace(name, "NAME")
    return text


# (query with NAME, an existing unheld value, a value that exists nowhere), asked as alice
EXISTENCE = [
    (f'{S}{{exported_namespace="NAME"}}', "team-b", "zz-nothing"),
    (f'{S}{{exported_namespace="NAME"}}[5m]', "team-b", "zz-nothing"),
    (f'absent({S}{{exported_namespace="NAME"}})', "team-b", "zz-nothing"),
    (f'{S}{{cluster="NAME"}}', TEST, "zz-nothing"),
    (f'absent({S}{{cluster="NAME"}})', TEST, "zz-nothing"),
    (f'{S}{{cluster="{PROD}",exported_namespace=~"team-a|NAME"}}[5m]', "team-b", "zz-nothing"),
    (f'sum({C}{{namespace="NAME"}}) or vector(0)', "team-b", "zz-nothing"),
]


@pytest.mark.parametrize("path", ["/api/v1/query", "/proxy/v1/explain"])
def test_existing_and_nonexistent_unheld_names_answer_alike(
    proxy_server: ProxyServer, token_for: TokenFor, path: str
) -> None:
    """Status, warnings, explain and data for an existing unheld name equal those of a name that
    exists nowhere (after renaming): nothing reveals another tenant's project or cluster."""
    t = str(_at())
    for shape, real, fake in EXISTENCE:
        a = _through(proxy_server, token_for, "alice", path, query=shape.replace("NAME", real), time=t)
        b = _through(proxy_server, token_for, "alice", path, query=shape.replace("NAME", fake), time=t)
        assert a.status_code == b.status_code, (shape, a.text, b.text)
        assert _scrub(a.text, real, fake) == _scrub(b.text, real, fake), shape


def test_warnings_name_only_the_query_and_holdings(proxy_server: ProxyServer, token_for: TokenFor) -> None:
    """Warnings of narrowed answers name only what the query wrote and what the caller holds."""
    t = str(_at())
    for q in (S, f"{S}[5m]", f"absent({S})", f'{S}{{cluster=~".+"}}', f'rate({C}{{namespace!="x"}}[5m])'):
        r = _through(proxy_server, token_for, "alice", "/api/v1/query", query=q, time=t)
        assert r.status_code == 200, r.text
        text = json.dumps(r.json().get("warnings", []))
        for other in ("team-b", "team-c", TEST):
            assert other not in text, (q, text)


def test_whoami_lists_only_own_grants(proxy_server: ProxyServer, token_for: TokenFor) -> None:
    """whoami for a single-project holder names only that project and cluster."""
    r = _through(proxy_server, token_for, "alice", "/proxy/v1/whoami")
    assert r.status_code == 200, r.text
    hubs = r.json()["hubs"]
    (doc,) = hubs.values()
    assert doc == {"hub_wide": False, "clusters": [], "projects": {PROD: ["team-a"]}}
    assert TEST not in r.text and "team-b" not in r.text


def _matches() -> list[str]:
    """More match[] than one enforcement chunk (8), repeated across chunks, regexes over unheld names."""
    base = [
        f'{S}{{exported_namespace=~"team-a|team-b"}}',
        '{__name__=~"DCGM_.*"}',
        f'{C}{{namespace=~".+"}}',
        f'{S}{{cluster=~"{PROD}|{TEST}"}}',
        f'{S}{{exported_namespace=~"(?i)TEAM-B"}}',
        f'{C}{{namespace!="team-a"}}',
        "kube_pod_info",
        '{__name__=~".+",__name__!~"ALERTS.*|.*:.*",cluster=~".+"}',
    ]
    return base + base[::-1] + base[:3]


@pytest.mark.parametrize("who", sorted(GRANTS))
@pytest.mark.parametrize(
    "path",
    [
        "/api/v1/series",
        "/api/v1/labels",
        "/api/v1/label/namespace/values",
        "/api/v1/label/exported_namespace/values",
        "/api/v1/label/cluster/values",
    ],
)
def test_chunked_match_lists_equal_oracle(
    proxy_server: ProxyServer,
    token_for: TokenFor,
    oracle_prometheus_factory: OraclePrometheusFactory,
    who: str,
    path: str,
) -> None:
    """19 match[] (three enforcement chunks, repeats across chunks) answer exactly the oracle's
    series, names and values: chunking and output dedup drop no selector's enforcement."""
    t = _at()
    params = {"match[]": _matches(), "start": str(t - 600), "end": str(t)}
    r = requests.get(
        f"{proxy_server.base_url}{path}", params=params, headers=auth_header(who, token_for), timeout=60
    )
    status, body = oracle_prometheus_factory.get(GRANTS[who]).request("GET", path, params)
    assert (r.status_code, status) == (200, 200), r.text[:300]
    got, expected = r.json()["data"], json.loads(body)["data"]
    assert sorted(map(json.dumps, got)) == sorted(map(json.dumps, expected))


@pytest.mark.parametrize("who", ["alice", "carol"])
def test_capped_cold_decisions_answer_no_more_than_the_grant(
    proxy_factory: ProxyFactory,
    token_for: TokenFor,
    oracle_prometheus_factory: OraclePrometheusFactory,
    who: str,
) -> None:
    """With one cold decision a minute (then decisions come from the holdings call) and one name per
    UMA call (many names fall back to the holdings call too), every row still equals the oracle or is
    refused: the fallback answers exactly the grant, never more."""
    proxy = proxy_factory(PROXY_AUTH_COLD_DECISIONS_PER_MINUTE="1", PROXY_MAX_UMA_NAMES="1")
    t = _at()
    rows = [
        *_attacks(t),
        f'{S}{{cluster="{PROD}",exported_namespace=~"team-a|team-b|team-c"}}',
        f'{S}{{cluster=~"{PROD}|{TEST}",exported_namespace=~"team-a|team-b"}}',
        f'sum by (cluster) ({C}{{cluster="{TEST}",namespace="team-b"}})',
        f'{C}{{cluster="{TEST}"}}',
    ]
    out = [
        _leak(proxy, token_for, oracle_prometheus_factory, who, "/api/v1/query", query=q, time=str(t))
        for q in rows
    ]
    failures = [f for f in out if f]
    assert not failures, "\n".join(failures)


TRUSTED = {"exported_namespace": "DCGM_.*"}


@pytest.fixture(scope="module")
def trusted_oracles(
    tmp_path_factory: pytest.TempPathFactory,
    pki: Pki,
    demo_series: list[Series],
    prometheus_binaries: Binaries,
) -> Iterator[OraclePrometheusFactory]:
    """Oracles where `exported_namespace` names a project only for DCGM metrics."""
    factory = OraclePrometheusFactory(
        tmp_path_factory.mktemp("trusted-oracles"), pki, demo_series,
        binaries=prometheus_binaries, project_label_metrics=TRUSTED,
    )  # fmt: skip
    try:
        yield factory
    finally:
        factory.close()


@pytest.mark.parametrize("who", ["alice", "carol"])
def test_trusted_project_label_rows_equal_oracle(
    proxy_factory: ProxyFactory, token_for: TokenFor, trusted_oracles: OraclePrometheusFactory, who: str
) -> None:
    """With PROXY_PROJECT_LABEL_METRICS=exported_namespace=DCGM_.*, fan-out and absent over
    name regexes and spoofable `exported_namespace` values still equal the oracle or are refused."""
    proxy = proxy_factory(PROXY_PROJECT_LABEL_METRICS="exported_namespace=DCGM_.*")
    t = _at()
    rows = [
        *_attacks(t),
        '{__name__=~".+",__name__!~"ALERTS.*|.*:.*",exported_namespace="team-a"}[5m]',
        '{__name__=~"vllm.*|DCGM.*",exported_namespace=~"team-a|team-b"}[5m]',
        f'absent({C}{{exported_namespace="team-a"}})',
        'absent({__name__=~"vllm.*",exported_namespace="team-a"})',
        'absent_over_time({__name__=~"kube.*",exported_namespace=~"team-a"}[5m])',
        f'count({C}{{exported_namespace=~"team-.*"}}) or vector(0)',
    ]
    out = [_leak(proxy, token_for, trusted_oracles, who, "/api/v1/query", query=q, time=str(t)) for q in rows]
    failures = [f for f in out if f]
    assert not failures, "\n".join(failures)

"""`/api/v1/rules`, `/api/v1/alerts`, `/api/v1/metadata` and the pass-through endpoints (docs/http.md).

Rules and alerts from the real Prometheus (DEMO_RULES) are filtered per docs/http.md#filtering; the expected
answer is computed here from the unfiltered upstream answer with the oracle's own visibility
rule, independently of `proxy.filters`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pytest
import requests

from proxy_demo.prometheus import PrometheusServer
from tests.support.oracle import Grant, visible
from tests.support.proxy_server import ProxyServer
from tests.support.stack import TokenFor

pytestmark = pytest.mark.prometheus

GRANTS = {
    "alice": Grant.of_projects("nerc-ocp-prod", "team-a"),
    "bob": Grant.of_clusters("nerc-ocp-test"),
    "carol": Grant(clusters={"nerc-ocp-prod"}, projects={"nerc-ocp-test": {"team-b"}}),
    "dave": Grant.hub(),
}
IDENTITIES = sorted(GRANTS)
AlertKey = tuple[tuple[str, str], ...]


def get(proxy: ProxyServer, token: str, path: str, **params: str) -> requests.Response:
    """GET through the proxy with a bearer token."""
    return requests.get(
        f"{proxy.base_url}{path}", params=params, headers={"Authorization": f"Bearer {token}"}, timeout=30
    )


def data_of(response: requests.Response) -> Any:
    """The `data` of a 200 success envelope."""
    assert response.status_code == 200, response.text
    doc = response.json()
    assert doc["status"] == "success", doc
    return doc["data"]


def alert_key(alert: Mapping[str, Any]) -> AlertKey:
    """An alert identified by its label set."""
    return tuple(sorted(alert["labels"].items()))


def summarise(data: Mapping[str, Any]) -> list[tuple[str, list[tuple[str, str, str, list[AlertKey]]]]]:
    """Groups → rules as (name, type, state, sorted alert label sets): what filtering decides."""
    out = []
    for group in data["groups"]:
        rules = [
            (
                rule["name"],
                rule["type"],
                rule.get("state", ""),
                sorted(alert_key(a) for a in rule.get("alerts", [])),
            )
            for rule in group["rules"]
        ]
        out.append((group["name"], rules))
    return out


def expected_rules(
    data: Mapping[str, Any], grant: Grant
) -> list[tuple[str, list[tuple[str, str, str, list[AlertKey]]]]]:
    """docs/http.md#filtering applied to the unfiltered answer: the rules a caller holding `grant` may see."""
    out = []
    for group in data["groups"]:
        rules = []
        for rule in group["rules"]:
            own = visible(rule.get("labels") or {}, grant)
            if rule["type"] == "alerting":
                alerts = [a for a in rule.get("alerts", []) if visible(a["labels"], grant)]
                if not (own or alerts):
                    continue
                states = {a["state"] for a in alerts}
                state = next((s for s in ("firing", "pending") if s in states), "inactive")
                rules.append((rule["name"], "alerting", state, sorted(alert_key(a) for a in alerts)))
            elif grant.hub_wide or own:
                rules.append((rule["name"], "recording", "", []))
        if rules:
            out.append((group["name"], rules))
    return out


@pytest.mark.parametrize("who", IDENTITIES)
def test_rules_filtered_per_spec(
    proxy_server: ProxyServer, token_for: TokenFor, prometheus: PrometheusServer, who: str
) -> None:
    """Rules: visible alerting rules, only visible alerts, state recomputed; recording rules hub-wide."""
    got = data_of(get(proxy_server, token_for(who), "/api/v1/rules"))
    upstream = prometheus.api("/api/v1/rules")
    assert summarise(got) == expected_rules(upstream, GRANTS[who])


def test_rules_examples_for_alice(proxy_server: ProxyServer, token_for: TokenFor) -> None:
    """alice sees VllmServing by its labels, GpuBusy with her alerts only, and no recording rules."""
    got = data_of(get(proxy_server, token_for("alice"), "/api/v1/rules"))
    rules = {r["name"]: r for g in got["groups"] for r in g["rules"]}
    assert "gpu:fb_used:gib" not in rules and "namespace:vllm_num_requests_running:sum" not in rules
    assert "VllmServing" in rules
    assert "HubComponentUp" not in rules and "VllmBacklog" not in rules
    busy = rules["GpuBusy"]
    assert busy["alerts"] and busy["state"] == "firing"
    assert {a["labels"]["exported_namespace"] for a in busy["alerts"]} == {"team-a"}
    assert {a["labels"]["cluster"] for a in busy["alerts"]} == {"nerc-ocp-prod"}
    assert all(g["rules"] for g in got["groups"])


def test_rules_hub_wide_sees_everything(
    proxy_server: ProxyServer, token_for: TokenFor, prometheus: PrometheusServer
) -> None:
    """A hub-wide holder gets every group and rule, recording rules included."""
    got = data_of(get(proxy_server, token_for("dave"), "/api/v1/rules"))
    names = {r["name"] for g in got["groups"] for r in g["rules"]}
    upstream = {r["name"] for g in prometheus.api("/api/v1/rules")["groups"] for r in g["rules"]}
    assert names == upstream


@pytest.mark.parametrize("who", ["alice", "bob"])
def test_rules_filtered_whatever_the_parameters(
    proxy_server: ProxyServer, token_for: TokenFor, who: str
) -> None:
    """Filtering applies to `type=record` / `type=alert` answers too (parameters pass through)."""
    record = data_of(get(proxy_server, token_for(who), "/api/v1/rules", type="record"))
    assert record["groups"] == []
    alert = data_of(get(proxy_server, token_for(who), "/api/v1/rules", type="alert"))
    for group in alert["groups"]:
        for rule in group["rules"]:
            assert rule["type"] == "alerting"
            assert all(visible(a["labels"], GRANTS[who]) for a in rule["alerts"])


@pytest.mark.parametrize("who", IDENTITIES)
def test_alerts_filtered_to_visible(
    proxy_server: ProxyServer, token_for: TokenFor, prometheus: PrometheusServer, who: str
) -> None:
    """`/api/v1/alerts` lists exactly the alerts whose labels the caller may see."""
    got = data_of(get(proxy_server, token_for(who), "/api/v1/alerts"))
    upstream = prometheus.api("/api/v1/alerts")["alerts"]
    expected = sorted(alert_key(a) for a in upstream if visible(a["labels"], GRANTS[who]))
    assert sorted(alert_key(a) for a in got["alerts"]) == expected
    assert expected, "every demo identity has at least one visible alert"


@pytest.mark.parametrize("path", ["/api/v1/rules", "/api/v1/alerts", "/api/v1/metadata"])
def test_eve_gets_403_on_filtered_endpoints(
    proxy_server: ProxyServer, token_for: TokenFor, path: str
) -> None:
    """A caller holding nothing gets 403, not an empty list that hides the misconfiguration."""
    r = get(proxy_server, token_for("eve"), path)
    assert r.status_code == 403, r.text
    assert r.json()["errorType"] == "forbidden"


@pytest.mark.parametrize("who", IDENTITIES)
def test_metadata_is_200_and_limited(proxy_server: ProxyServer, token_for: TokenFor, who: str) -> None:
    """`/api/v1/metadata` answers 200 with only visible metric names (the backfilled TSDB has none)."""
    data = data_of(get(proxy_server, token_for(who), "/api/v1/metadata", limit="40000"))
    assert isinstance(data, dict)


@pytest.mark.parametrize("metric", ["up", "kube_node_info", "no_such_metric"])
def test_metadata_for_invisible_metric_is_empty(
    proxy_server: ProxyServer, token_for: TokenFor, metric: str
) -> None:
    """`metric=` naming a metric alice cannot see → 200 with `{}` data."""
    assert data_of(get(proxy_server, token_for("alice"), "/api/v1/metadata", metric=metric)) == {}


@pytest.mark.parametrize("who", IDENTITIES)
def test_buildinfo_passes_through(proxy_server: ProxyServer, token_for: TokenFor, who: str) -> None:
    """`status/buildinfo` is the upstream's, for any authenticated caller (GET and POST)."""
    data = data_of(get(proxy_server, token_for(who), "/api/v1/status/buildinfo"))
    assert data["version"].startswith("2.42")
    r = requests.post(
        f"{proxy_server.base_url}/api/v1/status/buildinfo",
        headers={"Authorization": f"Bearer {token_for(who)}"},
        timeout=30,
    )
    assert r.status_code in (200, 405), r.text  # Prometheus serves buildinfo on GET only


def test_format_query_passes_through(proxy_server: ProxyServer, token_for: TokenFor) -> None:
    """`format_query` returns Prometheus' formatting of the text, GET and POST."""
    token = token_for("alice")
    data = data_of(get(proxy_server, token, "/api/v1/format_query", query="sum(rate(x[5m]))by(a)"))
    assert data == "sum by (a) (rate(x[5m]))"
    r = requests.post(
        f"{proxy_server.base_url}/api/v1/format_query",
        data={"query": "foo{a='b'}"},
        headers={"Authorization": f"Bearer {token}"},
        timeout=30,
    )
    assert data_of(r) == 'foo{a="b"}'


def test_parse_query_404_passes_through(proxy_server: ProxyServer, token_for: TokenFor) -> None:
    """Prometheus 2.42 has no `parse_query`: its 404 reaches the caller."""
    r = get(proxy_server, token_for("alice"), "/api/v1/parse_query", query="up")
    assert r.status_code == 404, r.text


@pytest.mark.parametrize(
    "path",
    [
        "/api/v1/status/buildinfo",
        "/api/v1/format_query",
        "/api/v1/rules",
        "/api/v1/alerts",
        "/api/v1/metadata",
    ],
)
def test_unauthenticated_is_401(proxy_server: ProxyServer, path: str) -> None:
    """Every data-free endpoint still needs authentication: 401 envelope with a Bearer challenge."""
    r = requests.get(f"{proxy_server.base_url}{path}", timeout=30)
    assert r.status_code == 401, r.text
    assert r.headers["WWW-Authenticate"].startswith("Bearer")
    assert r.json() == {"status": "error", "errorType": "unauthorized", "error": r.json()["error"]}

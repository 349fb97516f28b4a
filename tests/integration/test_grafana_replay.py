"""Grafana's real request sequence, replayed through the proxy (docs/http.md).

Health check, dashboard load (POST form bodies, custom parameters appended to the URL, exemplar
companions), template variables, metric browser, series/labels lookups without a usable match[],
metadata, rules and the exemplar probe — with a forwarded user token and with Basic client
credentials. Every answer is 200 and equals what the identity's oracle Prometheus (only the
visible series) answers to the same request, so nothing leaks (docs/http.md, docs/testing.md).
"""

from __future__ import annotations

import base64
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

import pytest
import requests

from proxy_demo.prometheus import PrometheusServer
from tests.support.oracle import Grant, assert_same_result, leaked_label_names, leaked_series, visible
from tests.support.prometheus import OraclePrometheusFactory
from tests.support.proxy_server import ProxyServer
from tests.support.stack import CLIENT_SECRETS, TokenFor

pytestmark = pytest.mark.prometheus

CLIENT = "researcher-team-a"
GRANTS = {
    "alice": Grant.of_projects("nerc-ocp-prod", "team-a"),
    "carol": Grant(clusters={"nerc-ocp-prod"}, projects={"nerc-ocp-test": {"team-b"}}),
    "dave": Grant.hub(),
    CLIENT: Grant(projects={"nerc-ocp-prod": {"team-a"}, "nerc-ocp-test": {"team-a"}}),
}
Pairs = Sequence[tuple[str, str]]

# Headers Grafana puts on its upstream requests besides Authorization (clients.md §2.4).
GRAFANA_HEADERS = {
    "User-Agent": "Grafana/12.0.0 (linux; amd64) grafana-prometheus-datasource/12.0.0",
    "X-Grafana-Org-Id": "1",
    "X-Dashboard-Uid": "k8s_views_ns",
    "X-Panel-Id": "46",
    "X-Query-Group-Id": "3f1c6a2e-8d7b-4b5e-9c0a-1d2e3f4a5b6c",
    "X-Datasource-Uid": "prom-keycloak",
    "X-Grafana-Cache": "private, max-age=60",
    "Accept-Encoding": "gzip, deflate, br",
}

PANELS = (
    'sum(rate(vllm:request_success_total{namespace=~"(team-a|team-b)", cluster="nerc-ocp-prod"}[1m0s]))'
    " by (pod)",
    'sum(DCGM_FI_DEV_GPU_UTIL{cluster="nerc-ocp-prod"}) by (cluster, exported_namespace)',
    'sum(kube_pod_info{namespace=~"(team-a|team-b)", cluster="nerc-ocp-prod"} and on(namespace, pod) '
    'max by (namespace, pod) (kube_pod_info{namespace=~"(team-a|team-b)", cluster="nerc-ocp-prod"} == 1))',
    "topk(5, sum by (exported_namespace) (DCGM_FI_DEV_GPU_UTIL))",
    "avg(DCGM_FI_DEV_POWER_USAGE)",
)


@dataclass(frozen=True)
class Step:
    """One Grafana request: method, path, URL pairs, form pairs (None: no body) and how to check it."""

    name: str
    method: str
    path: str
    url: Pairs
    form: Pairs | None
    check: str  # health | buildinfo | query | range | exemplars | values | series | labels | metadata | rules


def window() -> tuple[int, int]:
    """Grafana's range: start and end floored to the 60 s step, the last hour."""
    end = int(time.time() // 60 * 60) - 60
    return end - 3600, end


def grafana_steps() -> list[Step]:
    """Grafana's recorded request sequence (docs/http.md), with current timestamps."""
    start, end = window()
    s, e = str(start), str(end)
    steps = [
        Step("health", "POST", "/api/v1/query", (), (("query", "1+1"), ("time", "4")), "health"),
        Step("buildinfo", "GET", "/api/v1/status/buildinfo", (), None, "buildinfo"),
        Step(
            "exemplar-probe",
            "POST",
            "/api/v1/query_exemplars",
            (),
            (("query", "test"), ("start", f"{start}345"), ("end", f"{end}345")),
            "exemplars",
        ),
        Step("rules", "GET", "/api/v1/rules", (), None, "rules"),
    ]
    for i, q in enumerate(PANELS):
        url: Pairs = (("dedup", "false"), ("partial_response", "true")) if i == len(PANELS) - 1 else ()
        form: Pairs = (("end", e), ("query", q), ("start", s), ("step", "60"))
        if url:
            form = (*form, ("timeout", "60s"))
        steps.append(Step(f"panel-{i}", "POST", "/api/v1/query_range", url, form, "range"))
        steps.append(
            Step(
                f"panel-{i}-exemplars",
                "POST",
                "/api/v1/query_exemplars",
                (),
                (("end", e), ("query", q), ("start", s)),
                "exemplars",
            )
        )
    steps += [
        Step(
            "instant-gauge",
            "POST",
            "/api/v1/query",
            (),
            (("query", PANELS[1]), ("time", e)),
            "query",
        ),
        Step(
            "range-get",
            "GET",
            "/api/v1/query_range",
            (("end", e), ("query", PANELS[4]), ("start", s), ("step", "60")),
            None,
            "range",
        ),
        Step(
            "var-cluster",
            "GET",
            "/api/v1/label/cluster/values",
            (("limit", "40000"), ("start", s), ("end", e), ("match[]", "kube_node_info")),
            None,
            "values",
        ),
        Step(
            "var-namespace",
            "GET",
            "/api/v1/label/namespace/values",
            (
                ("limit", "40000"),
                ("start", s),
                ("end", e),
                ("match[]", 'kube_pod_info{cluster="nerc-ocp-prod"}'),
            ),
            None,
            "values",
        ),
        Step(
            "var-query-result",
            "POST",
            "/api/v1/query",
            (),
            (
                (
                    "query",
                    'topk(5, sum by (exported_namespace) (DCGM_FI_DEV_GPU_UTIL{cluster="nerc-ocp-prod"}))',
                ),
                ("time", e),
            ),
            "query",
        ),
        Step(
            "metric-names",
            "GET",
            "/api/v1/label/__name__/values",
            (("limit", "40000"), ("start", s), ("end", e)),
            None,
            "values",
        ),
        Step(
            "label-names-post",
            "POST",
            "/api/v1/labels",
            (),
            (("limit", "40000"), ("start", s), ("end", e)),
            "labels",
        ),
        Step(
            "label-names-get",
            "GET",
            "/api/v1/labels",
            (("limit", "40000"), ("start", s), ("end", e)),
            None,
            "labels",
        ),
        Step(
            "series-match-all",
            "POST",
            "/api/v1/series",
            (),
            (("start", s), ("end", e), ("match[]", '{__name__!=""}'), ("limit", "40000")),
            "series",
        ),
        Step(
            "series-variable",
            "POST",
            "/api/v1/series",
            (),
            (("match[]", 'kube_pod_info{namespace="team-a"}'), ("start", s), ("end", e)),
            "series",
        ),
        Step(
            "series-get-fallback",
            "GET",
            "/api/v1/series",
            (("start", s), ("end", e), ("match[]", '{__name__!=""}'), ("limit", "40000")),
            None,
            "series",
        ),
        Step("metadata", "GET", "/api/v1/metadata", (("limit", "40000"),), None, "metadata"),
        Step(
            "suggestions-post-label-values",
            "POST",
            "/api/v1/label/namespace/values",
            (
                ("match[]", 'kube_pod_info{cluster="nerc-ocp-prod"}'),
                ("start", s),
                ("end", e),
                ("limit", "1000"),
            ),
            (),
            "values",
        ),
    ]
    return steps


STEP_NAMES = [step.name for step in grafana_steps()]


def authorization(who: str, token_for: TokenFor) -> str:
    """Forwarded OAuth identity for users; datasource Basic auth for the researcher client."""
    if who == CLIENT:
        return "Basic " + base64.b64encode(f"{CLIENT}:{CLIENT_SECRETS[CLIENT]}".encode()).decode()
    return f"Bearer {token_for(who)}"


def send(proxy: ProxyServer, auth: str, step: Step) -> requests.Response:
    """Send one step as Grafana does: URL pairs in the query string, form pairs as the body."""
    target = f"{proxy.base_url}{step.path}" + (f"?{urlencode(list(step.url))}" if step.url else "")
    headers = {**GRAFANA_HEADERS, "Authorization": auth, "X-Id-Token": "id-token-never-forwarded"}
    data = None
    if step.form is not None:
        headers["Content-Type"] = "application/x-www-form-urlencoded"
        data = urlencode(list(step.form))
    return requests.request(step.method, target, data=data, headers=headers, timeout=60)


def merged(step: Step) -> dict[str, list[str]]:
    """URL and form pairs as one GET parameter mapping (for asking the oracle directly)."""
    out: dict[str, list[str]] = {}
    for k, v in (*step.url, *(step.form or ())):
        out.setdefault(k, []).append(v)
    return out


def oracle_data(server: PrometheusServer, step: Step) -> Any:
    """The oracle's `data` for the same request (read APIs sent as GET, queries as POST)."""
    params: Mapping[str, Sequence[str]] = merged(step)
    return server.api(step.path, params, method="POST" if "query" in step.path else "GET")


def check(step: Step, doc: Any, grant: Grant, server: PrometheusServer) -> None:
    """Assert the proxy's answer for `step` is what `grant` may see, compared with the oracle."""
    assert doc["status"] == "success", doc
    data = doc["data"]
    if step.check == "health":
        assert data == {"resultType": "scalar", "result": [4, "2"]}
    elif step.check == "buildinfo":
        assert data["version"].startswith("2.")
    elif step.check in ("query", "range"):
        assert data["result"], "every replayed panel has data for every identity here"
        assert_same_result(data, oracle_data(server, step))
    elif step.check == "exemplars":
        assert data == oracle_data(server, step)
    elif step.check == "values":
        assert sorted(data) == sorted(oracle_data(server, step))
        assert data or step.name == "var-cluster", "only kube_node_info lacks project labels"
    elif step.check == "labels":
        assert sorted(data) == sorted(oracle_data(server, step))
        assert not leaked_label_names(data, server.series_labels(['{__name__=~".+"}']))
    elif step.check == "series":
        assert not leaked_series(data, grant)
        expected = oracle_data(server, step)
        # rule outputs exist only since each server started (docs/testing.md): compared by the rest
        assert sorted(map(sorted_items, recorded_out(data))) == sorted(
            map(sorted_items, recorded_out(expected))
        )
    elif step.check == "metadata":
        names = {ls["__name__"] for ls in server.series_labels(['{__name__=~".+"}'])}
        assert set(data) <= names
    elif step.check == "rules":
        for group in data["groups"]:
            assert group["rules"], group
            for rule in group["rules"]:
                for alert in rule.get("alerts", []):
                    assert visible(alert["labels"], grant), alert
    else:  # pragma: no cover - a typo in the step table
        raise AssertionError(step.check)


def recorded_out(series: Sequence[Mapping[str, str]]) -> list[Mapping[str, str]]:
    """The series that are not rule outputs (`ALERTS*`, recorded `a:b` names)."""
    return [s for s in series if ":" not in s["__name__"] and not s["__name__"].startswith("ALERTS")]


def sorted_items(labels: Mapping[str, str]) -> list[tuple[str, str]]:
    """A label set as a sorted list (comparable, order-free)."""
    return sorted(labels.items())


@pytest.mark.parametrize("who", sorted(GRANTS))
@pytest.mark.parametrize("name", STEP_NAMES)
def test_grafana_request_sequence(
    proxy_server: ProxyServer,
    token_for: TokenFor,
    oracle_prometheus_factory: OraclePrometheusFactory,
    who: str,
    name: str,
) -> None:
    """Each Grafana request is 200 for token and Basic identities and equals the oracle's answer."""
    step = next(s for s in grafana_steps() if s.name == name)
    grant = GRANTS[who]
    r = send(proxy_server, authorization(who, token_for), step)
    assert r.status_code == 200, f"{step.name}: {r.text}"
    assert r.headers["Content-Type"].startswith("application/json")
    check(step, r.json(), grant, oracle_prometheus_factory.get(grant))


def test_grafana_health_check_fails_cleanly_for_eve(proxy_server: ProxyServer, token_for: TokenFor) -> None:
    """A caller holding nothing gets a 403 envelope on the health check (Grafana shows the status)."""
    step = grafana_steps()[0]
    r = send(proxy_server, f"Bearer {token_for('eve')}", step)
    assert r.status_code == 403, r.text
    assert r.json()["errorType"] == "forbidden"


def test_grafana_without_token_gets_401_bearer_challenge(proxy_server: ProxyServer) -> None:
    """Alert evaluation without a user token and no datasource credentials: 401, never a Basic popup."""
    r = requests.post(
        f"{proxy_server.base_url}/api/v1/query",
        data={"query": "1+1", "time": "4"},
        headers=GRAFANA_HEADERS,
        timeout=30,
    )
    assert r.status_code == 401, r.text
    assert r.headers["WWW-Authenticate"].startswith("Bearer")
    assert r.json()["errorType"] == "unauthorized"


def test_grafana_post_to_get_fallback_gets_same_answer(
    proxy_server: ProxyServer, token_for: TokenFor
) -> None:
    """Grafana's POST-then-GET retry of `series`/`labels` sees the same answer either way."""
    auth = f"Bearer {token_for('alice')}"
    steps = {s.name: s for s in grafana_steps()}
    post = send(proxy_server, auth, steps["series-match-all"]).json()["data"]
    get = send(proxy_server, auth, steps["series-get-fallback"]).json()["data"]
    assert sorted(map(sorted_items, post)) == sorted(map(sorted_items, get))
    post = send(proxy_server, auth, steps["label-names-post"]).json()["data"]
    get = send(proxy_server, auth, steps["label-names-get"]).json()["data"]
    assert post == get

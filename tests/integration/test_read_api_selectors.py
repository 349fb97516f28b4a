"""`series`, `labels`, `label/<name>/values`, `federate` through the proxy vs the oracle.

See docs/http.md and docs/testing.md.

Every answer is compared with the same request sent straight to a Prometheus holding only the
caller's visible series: equal sets (so nothing leaks and nothing visible is lost), for GET and
POST, with `match[]` in the URL, the body, both, or not at all (scope injection).
"""

from __future__ import annotations

import base64
import re
from collections.abc import Mapping, Sequence
from typing import Any
from urllib.parse import urlencode

import pytest
import requests

from proxy_demo.prometheus import PrometheusServer
from tests.support.oracle import Grant, leaked_label_values, leaked_series
from tests.support.prometheus import OraclePrometheusFactory
from tests.support.proxy_server import ProxyServer
from tests.support.stack import CLIENT_SECRETS, TokenFor

pytestmark = pytest.mark.prometheus

CLIENT = "researcher-team-a"
GRANTS = {
    "alice": Grant.of_projects("nerc-ocp-prod", "team-a"),
    "bob": Grant.of_clusters("nerc-ocp-test"),
    "carol": Grant(clusters={"nerc-ocp-prod"}, projects={"nerc-ocp-test": {"team-b"}}),
    "dave": Grant.hub(),
    CLIENT: Grant(projects={"nerc-ocp-prod": {"team-a"}, "nerc-ocp-test": {"team-a"}}),
}
ALL = '{__name__=~".+"}'
LABELS = ("__name__", "cluster", "namespace", "exported_namespace", "pod", "alertname")
Pairs = Sequence[tuple[str, str]]


def authorization(who: str, token_for: TokenFor) -> str:
    """Bearer token for a user; Basic client id/secret for the researcher client."""
    if who == CLIENT:
        raw = f"{CLIENT}:{CLIENT_SECRETS[CLIENT]}".encode()
        return "Basic " + base64.b64encode(raw).decode()
    return f"Bearer {token_for(who)}"


def send(
    proxy: ProxyServer,
    auth: str,
    method: str,
    path: str,
    url: Pairs = (),
    form: Pairs | None = None,
) -> requests.Response:
    """One request through the proxy: `url` pairs in the query string, `form` as a form body."""
    target = f"{proxy.base_url}{path}" + (f"?{urlencode(list(url))}" if url else "")
    headers = {"Authorization": auth}
    data = None
    if form is not None:
        headers["Content-Type"] = "application/x-www-form-urlencoded"
        data = urlencode(list(form))
    return requests.request(method, target, data=data, headers=headers, timeout=60)


def data_of(response: requests.Response) -> Any:
    """The `data` of a 200 success envelope."""
    assert response.status_code == 200, response.text
    doc = response.json()
    assert doc["status"] == "success", doc
    return doc["data"]


def key(labels: Mapping[str, str]) -> tuple[tuple[str, str], ...]:
    """A label set as a hashable, order-free key."""
    return tuple(sorted(labels.items()))


_FEDERATE_LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"')


def federate_series(text: str) -> set[tuple[tuple[str, str], ...]]:
    """Label sets of a `/federate` text-format answer (empty label values dropped)."""
    out: set[tuple[tuple[str, str], ...]] = set()
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        name, _, rest = line.partition("{")
        labels = {"__name__": name.split(" ")[0]}
        if rest:
            labels.update(_FEDERATE_LABEL.findall(rest.rsplit("}", 1)[0]))
        out.add(key({k: v for k, v in labels.items() if v}))
    return out


class Oracle:
    """The identity's oracle Prometheus, asked the same read-API questions directly."""

    def __init__(self, factory: OraclePrometheusFactory, who: str) -> None:
        self.grant = GRANTS[who]
        self.server: PrometheusServer = factory.get(self.grant)

    def series(self, match: Sequence[str]) -> set[tuple[tuple[str, str], ...]]:
        """Label sets of `/api/v1/series`."""
        return {key(ls) for ls in self.server.series_labels(match)}

    def labels(self, match: Sequence[str]) -> set[str]:
        """`/api/v1/labels`."""
        return set(self.server.api("/api/v1/labels", {"match[]": list(match)} if match else None))

    def values(self, name: str, match: Sequence[str] = ()) -> set[str]:
        """`/api/v1/label/<name>/values`."""
        return set(self.server.label_values(name, match))

    def federate(self, match: Sequence[str]) -> set[tuple[tuple[str, str], ...]]:
        """Label sets of `/federate`."""
        status, body = self.server.request("GET", "/federate", {"match[]": list(match)})
        assert status == 200, body
        return federate_series(body.decode())


IDENTITIES = sorted(GRANTS)


@pytest.mark.parametrize("who", IDENTITIES)
@pytest.mark.parametrize("name", LABELS)
@pytest.mark.parametrize("method", ["GET", "POST"])
def test_label_values_without_match_is_scoped(
    proxy_server: ProxyServer,
    token_for: TokenFor,
    oracle_prometheus_factory: OraclePrometheusFactory,
    who: str,
    name: str,
    method: str,
) -> None:
    """`label/<name>/values` without match[] returns exactly the values of the caller's series."""
    oracle = Oracle(oracle_prometheus_factory, who)
    form: Pairs | None = [] if method == "POST" else None
    r = send(proxy_server, authorization(who, token_for), method, f"/api/v1/label/{name}/values", form=form)
    got = set(data_of(r))
    assert got == oracle.values(name)
    visible = oracle.server.series_labels([ALL])
    assert not leaked_label_values(name, got, visible)


@pytest.mark.parametrize("who", IDENTITIES)
@pytest.mark.parametrize("where", ["url", "body", "both"])
def test_label_values_with_match_anywhere(
    proxy_server: ProxyServer,
    token_for: TokenFor,
    oracle_prometheus_factory: OraclePrometheusFactory,
    who: str,
    where: str,
) -> None:
    """match[] in URL, POST body or both (their union) is enforced; POST reaches Prometheus as GET."""
    oracle = Oracle(oracle_prometheus_factory, who)
    first, second = "kube_pod_info", 'DCGM_FI_DEV_GPU_UTIL{exported_namespace!=""}'
    auth = authorization(who, token_for)
    path = "/api/v1/label/namespace/values"
    if where == "url":
        r = send(proxy_server, auth, "GET", path, url=[("match[]", first), ("match[]", second)])
    elif where == "body":
        r = send(proxy_server, auth, "POST", path, form=[("match[]", first), ("match[]", second)])
    else:
        r = send(proxy_server, auth, "POST", path, url=[("match[]", first)], form=[("match[]", second)])
    assert set(data_of(r)) == oracle.values("namespace", [first, second])


@pytest.mark.parametrize("who", IDENTITIES)
@pytest.mark.parametrize(
    ("method", "where"),
    [("GET", "url"), ("GET", "none"), ("POST", "url"), ("POST", "body"), ("POST", "both"), ("POST", "none")],
)
def test_series_equals_oracle(
    proxy_server: ProxyServer,
    token_for: TokenFor,
    oracle_prometheus_factory: OraclePrometheusFactory,
    who: str,
    method: str,
    where: str,
) -> None:
    """`/api/v1/series` returns exactly the caller's visible series, whatever carries match[]."""
    oracle = Oracle(oracle_prometheus_factory, who)
    first, second = "kube_pod_info", "vllm:num_requests_running"
    auth = authorization(who, token_for)
    url: list[tuple[str, str]] = []
    form: list[tuple[str, str]] | None = [] if method == "POST" else None
    expected_match = [first, second]
    if where == "url":
        url = [("match[]", first), ("match[]", second)]
    elif where == "body":
        form = [("match[]", first), ("match[]", second)]
    elif where == "both":
        url, form = [("match[]", first)], [("match[]", second)]
    else:
        expected_match = [ALL]
    got = data_of(send(proxy_server, auth, method, "/api/v1/series", url=url, form=form))
    assert not leaked_series(got, oracle.grant)
    assert {key(s) for s in got} == oracle.series(expected_match)


@pytest.mark.parametrize("who", IDENTITIES)
@pytest.mark.parametrize("match", [(), ('{__name__!=""}',), ("DCGM_FI_DEV_GPU_UTIL", "kube_node_info")])
@pytest.mark.parametrize("method", ["GET", "POST"])
def test_labels_equals_oracle(
    proxy_server: ProxyServer,
    token_for: TokenFor,
    oracle_prometheus_factory: OraclePrometheusFactory,
    who: str,
    match: tuple[str, ...],
    method: str,
) -> None:
    """`/api/v1/labels` lists exactly the label names of the caller's (matching) series."""
    oracle = Oracle(oracle_prometheus_factory, who)
    pairs = [("match[]", m) for m in match]
    auth = authorization(who, token_for)
    if method == "GET":
        r = send(proxy_server, auth, "GET", "/api/v1/labels", url=pairs)
    else:
        r = send(proxy_server, auth, "POST", "/api/v1/labels", form=pairs)
    assert set(data_of(r)) == oracle.labels(list(match))


@pytest.mark.parametrize("who", IDENTITIES)
@pytest.mark.parametrize("method", ["GET", "POST"])
@pytest.mark.parametrize("match", [(), ('{__name__=~"DCGM_.*"}',), ("kube_pod_info", "up")])
def test_federate_equals_oracle(
    proxy_server: ProxyServer,
    token_for: TokenFor,
    oracle_prometheus_factory: OraclePrometheusFactory,
    who: str,
    method: str,
    match: tuple[str, ...],
) -> None:
    """`/federate` (POST sent upstream as GET) exposes exactly the caller's visible series."""
    oracle = Oracle(oracle_prometheus_factory, who)
    pairs = [("match[]", m) for m in match]
    auth = authorization(who, token_for)
    if method == "GET":
        r = send(proxy_server, auth, "GET", "/federate", url=pairs)
    else:
        r = send(proxy_server, auth, "POST", "/federate", form=pairs)
    assert r.status_code == 200, r.text
    got = federate_series(r.text)
    assert not leaked_series([dict(k) for k in got], oracle.grant)
    assert got == oracle.federate(list(match) or [ALL])


@pytest.mark.parametrize(
    ("who", "match"),
    [
        ("alice", 'kube_pod_info{cluster="nerc-ocp-test"}'),
        ("alice", 'kube_pod_info{cluster="nerc-ocp-prod",namespace="team-b"}'),
        ("bob", 'DCGM_FI_DEV_GPU_UTIL{cluster="nerc-ocp-prod"}'),
        (CLIENT, 'kube_pod_info{namespace="team-c"}'),
    ],
)
@pytest.mark.parametrize(
    "path", ["/api/v1/series", "/api/v1/labels", "/api/v1/label/pod/values", "/federate"]
)
def test_explicit_other_tenant_match_is_403(
    proxy_server: ProxyServer, token_for: TokenFor, who: str, match: str, path: str
) -> None:
    """A match[] naming only what the caller does not hold is refused on every selector endpoint."""
    r = send(proxy_server, authorization(who, token_for), "GET", path, url=[("match[]", match)])
    assert r.status_code == 403, r.text
    assert r.json()["errorType"] == "forbidden"


@pytest.mark.parametrize(
    "path", ["/api/v1/series", "/api/v1/labels", "/api/v1/label/__name__/values", "/federate"]
)
def test_eve_gets_403_on_selector_endpoints(
    proxy_server: ProxyServer, token_for: TokenFor, path: str
) -> None:
    """A caller holding nothing gets 403 even without match[] (no empty scope injected)."""
    r = send(proxy_server, f"Bearer {token_for('eve')}", "GET", path)
    assert r.status_code == 403, r.text
    assert r.json()["errorType"] == "forbidden"


@pytest.mark.parametrize("name", ["1abc", "a-b", "a.b", "%C3%A9t%C3%A9"])
def test_invalid_label_name_is_400(proxy_server: ProxyServer, token_for: TokenFor, name: str) -> None:
    """`label/<name>/values` with a name that is not a valid label name is 400 bad_data."""
    r = send(proxy_server, f"Bearer {token_for('dave')}", "GET", f"/api/v1/label/{name}/values")
    assert r.status_code == 400, r.text
    assert r.json()["errorType"] == "bad_data"

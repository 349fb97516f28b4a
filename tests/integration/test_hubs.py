"""Several hubs behind one proxy, on the real stack (docs: several hubs).

Two real Prometheus servers with unrelated CAs and different data (hub `moc`: the demo dataset;
hub `innabox-dev`: another seed, `nerc-ocp-test` renamed `innabox-gpu`, `nerc-ocp-prod` a
different cluster of the same name), one Keycloak emulator realm naming both hubs, one proxy
configured with a YAML `hubs:` list. Grants per hub (demo.yaml + demo-innabox.yaml):
alice: moc team-a only; bob: moc cluster test, innabox-gpu/team-c; carol: moc prod + test/team-b,
all of innabox-dev; dave: HUB-moc; frank: HUB (every hub); researcher-team-a: projects on both.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import requests

from keycloak_emulator import ThreadedEmulatorServer
from proxy_demo.prometheus import PrometheusServer
from tests.support.hubs import FIRST_HUB, SECOND_HUB, two_hubs_proxy
from tests.support.oracle import Grant, assert_same_result
from tests.support.prometheus import OraclePrometheusFactory
from tests.support.proxy_server import ProxyServer

pytestmark = pytest.mark.prometheus

MOC, INNABOX = FIRST_HUB, SECOND_HUB
PROD, TEST, GPU = "nerc-ocp-prod", "nerc-ocp-test", "innabox-gpu"
# What each identity may see, per hub (None: nothing at all on that hub).
GRANTS: dict[str, dict[str, Grant | None]] = {
    "alice": {MOC: Grant.of_projects(PROD, "team-a"), INNABOX: None},
    "bob": {MOC: Grant.of_clusters(TEST), INNABOX: Grant.of_projects(GPU, "team-c")},
    "carol": {MOC: Grant(clusters={PROD}, projects={TEST: {"team-b"}}), INNABOX: Grant.hub()},
    "dave": {MOC: Grant.hub(), INNABOX: None},
    "frank": {MOC: Grant.hub(), INNABOX: Grant.hub()},
    "researcher-team-a": {
        MOC: Grant(projects={PROD: {"team-a"}, TEST: {"team-a"}}),
        INNABOX: Grant.of_projects(PROD, "team-a"),
    },
}
QUERIES = (
    "DCGM_FI_DEV_GPU_UTIL",
    "sum by (cluster, exported_namespace) (DCGM_FI_DEV_GPU_UTIL)",
    "count(kube_pod_info)",
    "rate(vllm:request_success_total[5m])",
    'kube_pod_info{namespace=~"team-a|team-c"}',
)


def at() -> float:
    """A grid-aligned instant five minutes ago, inside every server's dataset window."""
    return float(int(time.time() // 30 * 30 - 300))


@pytest.fixture(scope="module")
def two_hubs(
    tmp_path_factory: pytest.TempPathFactory,
    prometheus: PrometheusServer,
    second_hub_prometheus: PrometheusServer,
    hubs_emulator_server: ThreadedEmulatorServer,
) -> Iterator[ProxyServer]:
    """One proxy serving moc (default) and innabox-dev, each with its own CA and client certificate."""
    server = two_hubs_proxy(
        tmp_path_factory.mktemp("two-hubs"), prometheus, second_hub_prometheus, hubs_emulator_server.base_url
    )
    yield server
    server.stop()


def _get(proxy: ProxyServer, path: str, token: str, **params: Any) -> requests.Response:
    """GET a proxy path with a bearer token."""
    return requests.get(
        proxy.base_url + path, params=params, headers={"Authorization": f"Bearer {token}"}, timeout=30
    )


@pytest.mark.parametrize("who", sorted(GRANTS))
def test_each_hub_answers_exactly_the_callers_grant_there(
    who: str,
    two_hubs: ProxyServer,
    hubs_token_for: Callable[[str], str],
    oracle_prometheus_factory: OraclePrometheusFactory,
    second_hub_oracles: OraclePrometheusFactory,
) -> None:
    """The no-leak oracle per hub: /<hub>/api/v1/query equals that hub's data seen through the
    caller's grant on that hub; a hub where the caller holds nothing answers 403."""
    token = hubs_token_for(who)
    oracles = {MOC: oracle_prometheus_factory, INNABOX: second_hub_oracles}
    when = at()
    for hub, grant in GRANTS[who].items():
        for q in QUERIES:
            response = _get(two_hubs, f"/{hub}/api/v1/query", token, query=q, time=when)
            if grant is None:
                assert response.status_code == 403, (hub, q, response.text)
                assert response.json()["errorType"] == "forbidden"
                continue
            assert response.status_code == 200, (hub, q, response.text)
            oracles[hub].assert_query_matches(response.json()["data"], grant, q, time=when)


def test_default_hub_serves_the_unprefixed_api(
    two_hubs: ProxyServer, hubs_token_for: Callable[[str], str]
) -> None:
    """`/api/v1/query` is the default hub's: the same answer as `/moc/api/v1/query`."""
    token, when = hubs_token_for("carol"), at()
    plain = _get(two_hubs, "/api/v1/query", token, query="DCGM_FI_DEV_GPU_UTIL", time=when)
    prefixed = _get(two_hubs, f"/{MOC}/api/v1/query", token, query="DCGM_FI_DEV_GPU_UTIL", time=when)
    assert plain.status_code == prefixed.status_code == 200
    assert_same_result(plain.json()["data"], prefixed.json()["data"])


def test_hub_wide_holder_sees_both_hubs_data(
    two_hubs: ProxyServer,
    hubs_token_for: Callable[[str], str],
    prometheus: PrometheusServer,
    second_hub_prometheus: PrometheusServer,
) -> None:
    """`HUB` (frank) gets each hub's full answer, and the two hubs' answers differ."""
    token, when, q = hubs_token_for("frank"), at(), "DCGM_FI_DEV_POWER_USAGE"
    answers = {}
    for hub, server in ((MOC, prometheus), (INNABOX, second_hub_prometheus)):
        response = _get(two_hubs, f"/{hub}/api/v1/query", token, query=q, time=when)
        assert response.status_code == 200
        assert_same_result(response.json()["data"], server.query(q, time=when))
        answers[hub] = {
            s["metric"]["cluster"] for s in response.json()["data"]["result"] if "cluster" in s["metric"]
        }
    assert answers == {MOC: {PROD, TEST}, INNABOX: {PROD, GPU}}


def test_selector_endpoints_and_federate_are_per_hub(
    two_hubs: ProxyServer, hubs_token_for: Callable[[str], str], second_hub_oracles: OraclePrometheusFactory
) -> None:
    """`/<hub>/api/v1/label/…/values` and `/<hub>/federate` answer from that hub within the grant."""
    token = hubs_token_for("bob")
    values = _get(two_hubs, f"/{INNABOX}/api/v1/label/cluster/values", token)
    assert values.status_code == 200 and values.json()["data"] == [GPU]
    moc_values = _get(two_hubs, f"/{MOC}/api/v1/label/cluster/values", token)
    assert moc_values.json()["data"] == [TEST]
    federate = _get(two_hubs, f"/{INNABOX}/federate", token, **{"match[]": "DCGM_FI_DEV_GPU_UTIL"})
    assert federate.status_code == 200
    assert 'cluster="innabox-gpu"' in federate.text and "nerc-ocp" not in federate.text


def test_unknown_hub_prefix_is_404(two_hubs: ProxyServer, hubs_token_for: Callable[[str], str]) -> None:
    """A path under a hub that is not configured is not found."""
    response = _get(two_hubs, "/nowhere/api/v1/query", hubs_token_for("frank"), query="up")
    assert response.status_code == 404
    assert response.json()["status"] == "error"


def test_requests_and_decisions_are_counted_per_hub(
    two_hubs: ProxyServer, hubs_token_for: Callable[[str], str]
) -> None:
    """The hub is a label of the request, decision and upstream metrics."""
    token = hubs_token_for("frank")
    for hub in (MOC, INNABOX):
        assert _get(two_hubs, f"/{hub}/api/v1/query", token, query="up").status_code == 200
    text = requests.get(two_hubs.metrics_url + "/metrics", timeout=10).text
    for hub in (MOC, INNABOX):
        assert f'hub="{hub}"' in text
        assert any(
            line.startswith("prom_keycloak_proxy_requests_total{")
            and f'hub="{hub}"' in line
            and 'route="query"' in line
            for line in text.splitlines()
        ), hub


def test_whoami_lists_every_hub_from_one_holdings_call(
    two_hubs: ProxyServer, hubs_token_for: Callable[[str], str], hubs_emulator_server: ThreadedEmulatorServer
) -> None:
    """`/proxy/v1/whoami` shows the caller's holdings on each hub; one UMA call serves both hubs."""
    token = hubs_token_for("carol")
    before = hubs_emulator_server.emulator.stats("nerc")["token.uma"]
    doc = _get(two_hubs, "/proxy/v1/whoami", token).json()
    assert doc["hubs"] == {
        MOC: {"hub_wide": False, "clusters": [PROD], "projects": {TEST: ["team-b"]}},
        INNABOX: {"hub_wide": True, "clusters": [], "projects": {}},
    }
    assert hubs_emulator_server.emulator.stats("nerc")["token.uma"] - before == 1
    alice = _get(two_hubs, "/proxy/v1/whoami", hubs_token_for("alice")).json()["hubs"]
    assert alice[INNABOX] == {"hub_wide": False, "clusters": [], "projects": {}}
    assert alice[MOC]["projects"] == {PROD: ["team-a"]}


def test_explain_takes_the_hub_from_the_path(
    two_hubs: ProxyServer, hubs_token_for: Callable[[str], str]
) -> None:
    """The same question explained under each hub's path follows that hub's grants."""
    token = hubs_token_for("alice")
    q = 'DCGM_FI_DEV_GPU_UTIL{cluster="nerc-ocp-prod",exported_namespace="team-a"}'
    on_moc = _get(two_hubs, f"/{MOC}/proxy/v1/explain", token, query=q).json()
    on_innabox = _get(two_hubs, f"/{INNABOX}/proxy/v1/explain", token, query=q).json()
    assert on_moc["decision"] == "allowed"
    assert on_innabox["decision"] == "denied"
    assert on_innabox["missing"]
    assert all(name.startswith(f"HUB-{INNABOX}") for name in on_innabox["missing"])

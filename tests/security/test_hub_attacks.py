"""Cross-hub red-team rows on the real stack: two hubs sharing a cluster name (`nerc-ocp-prod` on
both), a caller's grants on one hub never answer on the other — bounded names (targeted UMA),
unbounded ones (holdings split by prefix), selector endpoints, explain, and capped cold decisions.
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
from tests.support.oracle import Grant
from tests.support.prometheus import OraclePrometheusFactory
from tests.support.proxy_server import ProxyServer

pytestmark = pytest.mark.prometheus

MOC, INNABOX = FIRST_HUB, SECOND_HUB
PROD, TEST, GPU = "nerc-ocp-prod", "nerc-ocp-test", "innabox-gpu"
S = "DCGM_FI_DEV_GPU_UTIL"
# Callers holding something on moc and nothing on innabox-dev (alice: moc prod/team-a; dave: HUB-moc).
NOTHING_THERE = ("alice", "dave")


@pytest.fixture(scope="module", params=["", "1"], ids=["uncapped", "cold-cap-1"])
def hubs_proxy(
    request: pytest.FixtureRequest,
    tmp_path_factory: pytest.TempPathFactory,
    prometheus: PrometheusServer,
    second_hub_prometheus: PrometheusServer,
    hubs_emulator_server: ThreadedEmulatorServer,
) -> Iterator[ProxyServer]:
    """moc (default) and innabox-dev behind one proxy; once more with one cold decision a minute."""
    extra = {"PROXY_AUTH_COLD_DECISIONS_PER_MINUTE": request.param} if request.param else {}
    server = two_hubs_proxy(
        tmp_path_factory.mktemp("hub-attacks"),
        prometheus,
        second_hub_prometheus,
        hubs_emulator_server.base_url,
        **extra,
    )
    yield server
    server.stop()


def _get(proxy: ProxyServer, path: str, token: str, **params: Any) -> requests.Response:
    return requests.get(
        proxy.base_url + path, params=params, headers={"Authorization": f"Bearer {token}"}, timeout=30
    )


def _at() -> float:
    return float(int(time.time() // 30 * 30 - 300))


# Shapes naming the first hub's grants of alice/dave (bounded and not), asked on the second hub.
CROSS = (
    f'{S}{{cluster="{PROD}",exported_namespace="team-a"}}',
    f'{S}{{cluster="{PROD}"}}',
    f'{S}{{cluster="{PROD}",exported_namespace="team-a"}}[5m]',
    f'absent({S}{{cluster="{PROD}",exported_namespace="team-a"}})',
    f'absent_over_time({S}{{cluster="{PROD}"}}[5m])',
    S,
    f"absent({S})",
    f"{S}[5m]",
    f'count({{__name__=~".+",cluster=~"{PROD}|{TEST}"}})',
)


@pytest.mark.parametrize("who", NOTHING_THERE)
def test_grants_on_one_hub_answer_nothing_on_another(
    hubs_proxy: ProxyServer, hubs_token_for: Callable[[str], str], who: str
) -> None:
    """alice (a moc project) and dave (HUB-moc) get 403 for every shape on innabox-dev, on every
    endpoint, and explain says denied; the same shapes on moc are answered."""
    token = hubs_token_for(who)
    when = _at()
    for q in CROSS:
        there = _get(hubs_proxy, f"/{INNABOX}/api/v1/query", token, query=q, time=when)
        assert there.status_code == 403, (q, there.text)
        assert _get(hubs_proxy, f"/{MOC}/api/v1/query", token, query=q, time=when).status_code in (200, 403)
        doc = _get(hubs_proxy, f"/{INNABOX}/proxy/v1/explain", token, query=q).json()
        assert doc["decision"] == "denied", (q, doc)
    for path in ("/api/v1/series", "/api/v1/labels", "/api/v1/label/cluster/values", "/federate"):
        for match in ([], [f'{S}{{cluster="{PROD}",exported_namespace="team-a"}}'], ["kube_pod_info"]):
            r = _get(hubs_proxy, f"/{INNABOX}{path}", token, **{"match[]": match})
            assert r.status_code == 403, (path, match, r.text)


def test_same_cluster_name_answers_only_the_hub_held(
    hubs_proxy: ProxyServer,
    hubs_token_for: Callable[[str], str],
    oracle_prometheus_factory: OraclePrometheusFactory,
    second_hub_oracles: OraclePrometheusFactory,
) -> None:
    """bob holds moc's cluster nerc-ocp-test and innabox-gpu/team-c on innabox-dev: naming moc's
    cluster on innabox-dev is refused, unbounded shapes there equal innabox-dev's oracle for team-c."""
    token = hubs_token_for("bob")
    when = _at()
    refused = _get(hubs_proxy, f"/{INNABOX}/api/v1/query", token, query=f'{S}{{cluster="{TEST}"}}', time=when)
    assert refused.status_code == 403, refused.text
    grant = Grant.of_projects(GPU, "team-c")
    for q in (S, f'sum by (cluster) ({S}{{cluster=~".+"}})', f'count({S}{{cluster=~"{TEST}|{GPU}"}})'):
        r = _get(hubs_proxy, f"/{INNABOX}/api/v1/query", token, query=q, time=when)
        assert r.status_code == 200, (q, r.text)
        second_hub_oracles.assert_query_matches(r.json()["data"], grant, q, time=when)
    r = _get(hubs_proxy, f"/{MOC}/api/v1/query", token, query=S, time=when)
    oracle_prometheus_factory.assert_query_matches(r.json()["data"], Grant.of_clusters(TEST), S, time=when)

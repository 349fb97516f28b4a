"""The event-loop budget for a caller with many grants (docs/operations.md): planning and
verifying a narrowed query once read the whole held-projects regex per held project (quadratic);
with 1,000 project grants a first, uncached simple query must block the proxy's loop ≤ 100 ms,
answering exactly what a caller holding only the projects with data sees."""

from __future__ import annotations

import copy
import time
from pathlib import Path

import pytest
import requests
import yaml

from bench.fairness import lag_buckets
from keycloak_emulator import Emulator, EmulatorServer
from proxy_demo.prometheus import PrometheusServer
from tests.support.identities import PROD
from tests.support.soak import ProxyProcess
from tests.support.stack import POLICY, TokenFor, proxy_environ

pytestmark = [pytest.mark.prometheus]

MANY = [f"proj-{i:04d}" for i in range(999)]  # with team-a: 1,000 project grants


def realm_with_many_grants(path: Path) -> Path:
    """The demo realm plus user `many`: team-a and 999 data-less projects of one cluster."""
    doc = copy.deepcopy(POLICY)
    doc["clusters"][PROD]["projects"] = [*doc["clusters"][PROD]["projects"], *MANY]
    doc["users"].append({"username": "many", "password": "many-password", "email": "m@example.org"})
    doc["grants"].append({"user": "many", "projects": {PROD: ["team-a", *MANY]}})
    path.write_text(yaml.safe_dump(doc), encoding="utf-8")
    return path


def test_a_caller_with_1000_grants_plans_uncached_queries_within_the_budget(
    prometheus: PrometheusServer, token_for: TokenFor, tmp_path: Path
) -> None:
    """1,000 project grants, 10 never-seen simple queries: no event-loop block over 100 ms, and
    each answer equals alice's (team-a only, the one held project with data)."""
    emu = Emulator.from_files([realm_with_many_grants(tmp_path / "realm.yaml")])
    keycloak = EmulatorServer.start_in_thread(emu)
    env = proxy_environ(prometheus, keycloak.base_url, PROXY_LOG_LEVEL="error")
    proxy = ProxyProcess(env, tmp_path / "proxy.log").start()
    try:
        many = emu.password_token(POLICY["realm"], "many", "many-password")["access_token"]
        alice = emu.password_token(POLICY["realm"], "alice", "alice-password")["access_token"]
        url = f"{proxy.base_url}/api/v1/query"
        at = str(int(time.time()))  # one instant for both callers

        def ask(token: str, query: str) -> requests.Response:
            form = {"query": query, "time": at}
            return requests.post(url, data=form, headers={"Authorization": f"Bearer {token}"}, timeout=60)

        ask(many, "up")  # warm the token and holdings caches: what is measured is planning
        queries = [f'sum by (namespace) (DCGM_FI_DEV_GPU_UTIL{{gpu!="{i}"}})' for i in range(10)]
        before = lag_buckets(proxy.metrics_url)["blocked"]
        answers = [ask(many, q) for q in queries]
        after = lag_buckets(proxy.metrics_url)["blocked"]
        expected = [ask(alice, q) for q in queries]
    finally:
        proxy.stop()
        keycloak.close()
    blocked = {le: n - before.get(le, 0.0) for le, n in after.items()}
    print(f"\n1,000 grants, 10 uncached queries: blocked histogram {blocked}")
    assert [a.status_code for a in answers] == [200] * 10, answers[0].text
    assert [a.json()["data"] for a in answers] == [e.json()["data"] for e in expected]
    assert answers[0].json()["data"]["result"], "team-a has GPU series: the comparison is not vacuous"
    assert blocked["0.1"] == max(blocked.values()), blocked

"""The proxy with Keycloak (emulator) under concurrency, outages and key rotation."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import requests
import yaml

from keycloak_emulator import Emulator, EmulatorServer, ThreadedEmulatorServer
from proxy_demo.policy import DEMO_POLICY
from proxy_demo.prometheus import PrometheusServer
from tests.support.identities import PROD, TEST
from tests.support.oracle import Grant, visible
from tests.support.stack import PASSWORDS, POLICY, REALM, ProxyFactory

QUERY = f'DCGM_FI_DEV_GPU_UTIL{{cluster="{PROD}",exported_namespace="team-a"}}'
SHAPES: list[tuple[dict[str, Any], Grant]] = [
    ({"projects": {PROD: ["team-a"]}}, Grant.of_projects(PROD, "team-a")),
    ({"projects": {PROD: ["team-b"]}}, Grant.of_projects(PROD, "team-b")),
    ({"projects": {PROD: ["team-c"]}}, Grant.of_projects(PROD, "team-c")),
    ({"projects": {TEST: ["team-a"]}}, Grant.of_projects(TEST, "team-a")),
    ({"projects": {TEST: ["team-b", "team-c"]}}, Grant.of_projects(TEST, "team-b", "team-c")),
    ({"clusters": [PROD]}, Grant.of_clusters(PROD)),
    ({"clusters": [TEST]}, Grant.of_clusters(TEST)),
    (
        {"clusters": [PROD], "projects": {TEST: ["team-a"]}},
        Grant(clusters=frozenset({PROD}), projects={TEST: frozenset({"team-a"})}),
    ),
    ({"hub": True}, Grant.hub()),
    (
        {"projects": {PROD: ["team-a"], TEST: ["team-c"]}},
        Grant(projects={PROD: frozenset({"team-a"}), TEST: frozenset({"team-c"})}),
    ),
]


@pytest.fixture
def own_keycloak() -> Iterator[ThreadedEmulatorServer]:
    """A private emulator with the demo realm, free to stop, restart and rotate."""
    server = EmulatorServer.start_in_thread(Emulator.from_files([DEMO_POLICY]))
    yield server
    server.close()


@pytest.fixture
def twenty_users(tmp_path: Path) -> Iterator[tuple[ThreadedEmulatorServer, dict[str, Grant]]]:
    """An emulator whose realm has 20 users over 10 different grant shapes."""
    policy = dict(POLICY)
    users, grants, expected = [], [], {}
    for i in range(20):
        name = f"user{i:02d}"
        shape, grant = SHAPES[i % len(SHAPES)]
        users.append({"username": name, "password": f"{name}-pw", "email": f"{name}@example.org"})
        grants.append({"user": name, **shape})
        expected[name] = grant
    policy["users"], policy["grants"] = users, grants
    path = tmp_path / "twenty.yaml"
    path.write_text(yaml.safe_dump(policy))
    server = EmulatorServer.start_in_thread(Emulator.from_files([path]))
    yield server, expected
    server.close()


def _series_key(metric: dict[str, str]) -> tuple[tuple[str, str], ...]:
    return tuple(sorted(metric.items()))


def test_200_concurrent_requests_from_20_users_get_their_own_answers(
    twenty_users: tuple[ThreadedEmulatorServer, dict[str, Grant]],
    proxy_factory: ProxyFactory,
    prometheus: PrometheusServer,
) -> None:
    """Ten concurrent unscoped queries per user, 20 users: each answer is exactly that user's series."""
    kc, grants = twenty_users
    proxy = proxy_factory(keycloak_url=kc.base_url)
    emu = kc.emulator
    tokens = {u: emu.password_token(REALM, u, f"{u}-pw")["access_token"] for u in grants}
    everything = prometheus.query("kube_pod_info")["result"]
    expected = {
        u: {_series_key(s["metric"]) for s in everything if visible(s["metric"], g)}
        for u, g in grants.items()
    }

    async def one(session: aiohttp.ClientSession, user: str) -> tuple[str, int, set[Any]]:
        async with session.post(
            f"{proxy.base_url}/api/v1/query",
            data={"query": "kube_pod_info"},
            headers={"Authorization": f"Bearer {tokens[user]}"},
        ) as r:
            body = await r.json()
            got = {_series_key(s["metric"]) for s in body.get("data", {}).get("result", [])}
            return user, r.status, got

    async def run() -> list[tuple[str, int, set[Any]]]:
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=120)) as session:
            return await asyncio.gather(*(one(session, u) for u in list(grants) * 10))

    results = asyncio.run(run())
    assert len(results) == 200
    for user, status, got in results:
        assert status == 200, user
        assert got == expected[user], user
    assert all(expected[u] for u in grants)


def test_uma_calls_collapse_and_cache(
    own_keycloak: ThreadedEmulatorServer, proxy_factory: ProxyFactory
) -> None:
    """50 concurrent identical requests make 1 UMA call; 100 sequential ones within the TTL, 1 in all."""
    proxy = proxy_factory(keycloak_url=own_keycloak.base_url)
    emu = own_keycloak.emulator
    token = emu.password_token(REALM, "alice", PASSWORDS["alice"])["access_token"]
    headers = {"Authorization": f"Bearer {token}"}
    emu.reset_stats()

    async def burst() -> list[int]:
        async with aiohttp.ClientSession() as session:

            async def one() -> int:
                async with session.get(
                    f"{proxy.base_url}/api/v1/query", params={"query": QUERY}, headers=headers
                ) as r:
                    await r.read()
                    return r.status

            return await asyncio.gather(*(one() for _ in range(50)))

    assert asyncio.run(burst()) == [200] * 50
    assert emu.stats(REALM)["token.uma"] == 1
    with requests.Session() as session:
        for _ in range(100):
            r = session.get(
                f"{proxy.base_url}/api/v1/query", params={"query": QUERY}, headers=headers, timeout=10
            )
            assert r.status_code == 200
    assert emu.stats(REALM)["token.uma"] == 1


def test_keycloak_down_is_503_then_recovers(
    own_keycloak: ThreadedEmulatorServer, proxy_factory: ProxyFactory
) -> None:
    """Keycloak stopped: 503 in the envelope within the timeout; restarted: 200 without a proxy restart."""
    proxy = proxy_factory(keycloak_url=own_keycloak.base_url, PROXY_AUTH_TIMEOUT="2s")
    emu = own_keycloak.emulator
    url = f"{proxy.base_url}/api/v1/query"
    token = emu.password_token(REALM, "bob", PASSWORDS["bob"])["access_token"]
    own_keycloak.stop()
    started = time.monotonic()
    r = requests.get(
        url,
        params={"query": f'up{{cluster="{TEST}"}}'},
        headers={"Authorization": f"Bearer {token}"},
        timeout=30,
    )
    assert r.status_code == 503, r.text
    assert r.json()["errorType"] == "unavailable"
    assert time.monotonic() - started < 5
    own_keycloak.start()
    r = requests.get(
        url,
        params={"query": f'up{{cluster="{TEST}"}}'},
        headers={"Authorization": f"Bearer {token}"},
        timeout=30,
    )
    assert r.status_code == 200, r.text


def test_rotated_key_is_picked_up(own_keycloak: ThreadedEmulatorServer, proxy_factory: ProxyFactory) -> None:
    """After Keycloak rotates its signing key, tokens signed with the new key are accepted."""
    proxy = proxy_factory(keycloak_url=own_keycloak.base_url)
    emu = own_keycloak.emulator
    url = f"{proxy.base_url}/api/v1/query"
    old = emu.password_token(REALM, "alice", PASSWORDS["alice"])["access_token"]
    assert (
        requests.get(
            url, params={"query": QUERY}, headers={"Authorization": f"Bearer {old}"}, timeout=10
        ).status_code
        == 200
    )
    emu.rotate_key(REALM)
    new = emu.password_token(REALM, "alice", PASSWORDS["alice"])["access_token"]
    r = requests.get(url, params={"query": QUERY}, headers={"Authorization": f"Bearer {new}"}, timeout=10)
    assert r.status_code == 200, r.text


@pytest.mark.parametrize("version", ["26.6.4", "24"], ids=["keycloak-400", "keycloak-401"])
def test_disabled_users_token_is_401_not_503(proxy_factory: ProxyFactory, version: str) -> None:
    """Issue #17: a disabled user's validly signed token on an uncached scope is 401 with the
    Bearer challenge, whether Keycloak says 400 `invalid_grant` (26.6+) or 401 (before)."""
    server = EmulatorServer.start_in_thread(Emulator.from_files([DEMO_POLICY], keycloak_version=version))
    try:
        proxy = proxy_factory(keycloak_url=server.base_url)
        emu = server.emulator
        token = emu.password_token(REALM, "carol", PASSWORDS["carol"])["access_token"]
        headers = {"Authorization": f"Bearer {token}"}
        url = f"{proxy.base_url}/api/v1/query"
        assert requests.get(url, params={"query": f'up{{cluster="{PROD}"}}'}, headers=headers, timeout=10).ok
        emu.set_user_enabled(REALM, "carol", False)
        r = requests.get(url, params={"query": f'up{{cluster="{TEST}"}}'}, headers=headers, timeout=10)
        assert r.status_code == 401, r.text
        assert r.headers["WWW-Authenticate"].startswith("Bearer ")
        assert emu.stats(REALM)["token.uma"] == 2
    finally:
        server.close()


def test_introspection_without_audience_mappers_is_401_with_mappers_200(proxy_factory: ProxyFactory) -> None:
    """Issue #17, documented outcome (docs/keycloak.md): with introspection on against Keycloak
    26.6.2+, tokens lacking the proxy's client in `aud` are 401 (and the proxy warned at start);
    tokens carrying it (the audience mapper) are served."""
    server = EmulatorServer.start_in_thread(Emulator.from_files([DEMO_POLICY]))
    try:
        proxy = proxy_factory(keycloak_url=server.base_url, PROXY_AUTH_INTROSPECT="true")
        emu = server.emulator
        url = f"{proxy.base_url}/api/v1/query"
        with_mapper = emu.password_token(REALM, "alice", PASSWORDS["alice"])["access_token"]
        without = emu.mint(REALM, {"aud": "account"}, user="alice", client="grafana")
        ok = requests.get(
            url, params={"query": QUERY}, headers={"Authorization": f"Bearer {with_mapper}"}, timeout=10
        )
        refused = requests.get(
            url, params={"query": QUERY}, headers={"Authorization": f"Bearer {without}"}, timeout=10
        )
        assert ok.status_code == 200, ok.text
        assert refused.status_code == 401, refused.text
    finally:
        server.close()

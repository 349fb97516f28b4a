"""A grant that ends while the proxy runs stops working within PROXY_AUTHZ_CACHE_TTL, through the
decision, holdings, metric-name and whoami caches alike (the emulator evaluates the time policy
as Keycloak does)."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import requests
import yaml

from keycloak_emulator import Emulator, EmulatorServer, ThreadedEmulatorServer
from tests.support.stack import POLICY, ProxyFactory

TTL = 1.0
SCOPED = 'DCGM_FI_DEV_GPU_UTIL{cluster="nerc-ocp-prod",exported_namespace="team-a"}'


@pytest.fixture
def ending(tmp_path: Path) -> Iterator[tuple[ThreadedEmulatorServer, datetime]]:
    """An emulator where alice's grant ends (inclusive) four seconds from now; the exclusive end."""
    until = (datetime.now(UTC) + timedelta(seconds=4)).replace(microsecond=0)
    grants: list[dict[str, Any]] = [
        {**g, "until": until.isoformat()} if g.get("user") == "alice" else g for g in POLICY["grants"]
    ]
    path = tmp_path / "ending.yaml"
    path.write_text(yaml.safe_dump({**POLICY, "grants": grants}))
    handle = EmulatorServer.start_in_thread(Emulator.from_files([path]), host="127.0.0.1", port=0)
    yield handle, until + timedelta(seconds=1)
    handle.close()


def _ask(base: str, token: str, path: str, **params: str) -> requests.Response:
    return requests.get(
        f"{base}{path}", params=params, headers={"Authorization": f"Bearer {token}"}, timeout=30
    )


def test_grant_ends_within_cache_ttl(
    ending: tuple[ThreadedEmulatorServer, datetime], proxy_factory: ProxyFactory
) -> None:
    """Before the end: scoped, narrowed, metric-name and whoami answers; TTL after it: none left."""
    handle, end = ending
    proxy = proxy_factory(keycloak_url=handle.base_url, PROXY_AUTHZ_CACHE_TTL=f"{int(TTL)}s")
    token = handle.emulator.password_token("nerc", "alice", "alice-password")["access_token"]
    base = proxy.base_url
    before = [
        _ask(base, token, "/api/v1/query", query=SCOPED),
        _ask(base, token, "/api/v1/query", query="DCGM_FI_DEV_GPU_UTIL"),
        _ask(base, token, "/api/v1/label/__name__/values"),
    ]
    assert datetime.now(UTC) < end, "the set-up took longer than the grant lasted"
    assert [r.status_code for r in before] == [200, 200, 200], [r.text for r in before]
    assert before[0].json()["data"]["result"] and before[2].json()["data"]
    me = _ask(base, token, "/proxy/v1/whoami")
    assert me.status_code == 200 and "team-a" in json.dumps(me.json()["hubs"]), me.text
    time.sleep(max(0.0, (end - datetime.now(UTC)).total_seconds()) + TTL + 0.5)
    after = [
        _ask(base, token, "/api/v1/query", query=SCOPED),
        _ask(base, token, "/api/v1/query", query="DCGM_FI_DEV_GPU_UTIL"),
        _ask(base, token, "/api/v1/label/__name__/values"),
    ]
    assert [r.status_code for r in after] == [403, 403, 403], [r.text for r in after]
    me = _ask(base, token, "/proxy/v1/whoami")
    assert "team-a" not in json.dumps(me.json().get("hubs", {})), me.text

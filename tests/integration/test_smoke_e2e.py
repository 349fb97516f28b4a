"""End-to-end smoke: a demo user's query through the proxy reaches the real Prometheus over mTLS."""

from __future__ import annotations

import requests

from tests.support.proxy_server import ProxyServer
from tests.support.stack import TokenFor


def test_scoped_query_returns_backfilled_data(proxy_server: ProxyServer, token_for: TokenFor) -> None:
    """alice's query for her own namespace comes back 200 with real series."""
    r = requests.get(
        f"{proxy_server.base_url}/api/v1/query",
        params={"query": 'DCGM_FI_DEV_GPU_UTIL{cluster="nerc-ocp-prod",exported_namespace="team-a"}'},
        headers={"Authorization": f"Bearer {token_for('alice')}"},
        timeout=30,
    )
    assert r.status_code == 200, r.text
    result = r.json()["data"]["result"]
    assert result
    assert all(s["metric"]["exported_namespace"] == "team-a" for s in result)

"""Every error leaves in Prometheus' envelope with `Content-Type: application/json` (docs/http.md)."""

from __future__ import annotations

from typing import Any

import pytest
import requests

from tests.support.proxy_server import ProxyServer
from tests.support.stack import TokenFor

pytestmark = pytest.mark.prometheus


def assert_envelope(r: requests.Response, status: int, error_type: str | None = None) -> dict[str, Any]:
    """Assert the status and Prometheus' error envelope; return the decoded body."""
    assert r.status_code == status, r.text
    assert r.headers["Content-Type"].startswith("application/json"), r.headers
    doc: dict[str, Any] = r.json()
    assert set(doc) == {"status", "errorType", "error"}, doc
    assert doc["status"] == "error"
    assert isinstance(doc["error"], str) and doc["error"]
    if error_type is not None:
        assert doc["errorType"] == error_type, doc
    return doc


def test_missing_credentials_401(proxy_server: ProxyServer) -> None:
    """No Authorization: 401 `unauthorized` with a Bearer challenge, never Basic."""
    r = requests.get(f"{proxy_server.base_url}/api/v1/query", params={"query": "up"}, timeout=30)
    assert_envelope(r, 401, "unauthorized")
    assert r.headers["WWW-Authenticate"].startswith("Bearer realm=")


def test_garbage_token_401(proxy_server: ProxyServer) -> None:
    """An invalid bearer token: 401 envelope."""
    r = requests.get(
        f"{proxy_server.base_url}/api/v1/labels", headers={"Authorization": "Bearer not.a.jwt"}, timeout=30
    )
    assert_envelope(r, 401, "unauthorized")


def test_forbidden_403(proxy_server: ProxyServer, token_for: TokenFor) -> None:
    """Another tenant's namespace: 403 `forbidden` naming it."""
    r = requests.get(
        f"{proxy_server.base_url}/api/v1/query",
        params={"query": 'up{cluster="nerc-ocp-prod",namespace="team-c"}'},
        headers={"Authorization": f"Bearer {token_for('alice')}"},
        timeout=30,
    )
    doc = assert_envelope(r, 403, "forbidden")
    assert "team-c" in doc["error"]


@pytest.mark.parametrize("q", ["sum(", 'up{a="b"', "up[5m", ""])
def test_unparseable_query_400(proxy_server: ProxyServer, token_for: TokenFor, q: str) -> None:
    """Unparseable or empty PromQL: 400 `bad_data` (Grafana shows the text in the panel)."""
    r = requests.post(
        f"{proxy_server.base_url}/api/v1/query",
        data={"query": q},
        headers={"Authorization": f"Bearer {token_for('alice')}"},
        timeout=30,
    )
    assert_envelope(r, 400, "bad_data")


def test_missing_query_400(proxy_server: ProxyServer, token_for: TokenFor) -> None:
    """No `query` parameter at all: 400 `bad_data`."""
    r = requests.get(
        f"{proxy_server.base_url}/api/v1/query",
        headers={"Authorization": f"Bearer {token_for('alice')}"},
        timeout=30,
    )
    assert_envelope(r, 400, "bad_data")


def test_unknown_path_404(proxy_server: ProxyServer, token_for: TokenFor) -> None:
    """Paths outside the route table (admin API, status/config): 404 envelope."""
    for path in ("/api/v1/status/config", "/api/v1/admin/tsdb/delete_series", "/api/v1/targets"):
        r = requests.get(
            f"{proxy_server.base_url}{path}",
            headers={"Authorization": f"Bearer {token_for('dave')}"},
            timeout=30,
        )
        assert_envelope(r, 404, "not_found")


def test_wrong_method_405_with_allow(proxy_server: ProxyServer, token_for: TokenFor) -> None:
    """A known path with another method: 405 envelope with `Allow`."""
    headers = {"Authorization": f"Bearer {token_for('alice')}"}
    r = requests.delete(f"{proxy_server.base_url}/api/v1/query", headers=headers, timeout=30)
    assert_envelope(r, 405)
    assert "GET" in r.headers["Allow"] and "POST" in r.headers["Allow"]
    r = requests.post(f"{proxy_server.base_url}/api/v1/rules", headers=headers, timeout=30)
    assert_envelope(r, 405)
    assert "GET" in r.headers["Allow"]


@pytest.mark.parametrize(
    ("content_type", "body"),
    [
        (
            "multipart/form-data; boundary=x",
            b'--x\r\nContent-Disposition: form-data; name="query"\r\n\r\nup\r\n--x--\r\n',
        ),
        ("application/json", b'{"query": "up"}'),
        ("application/x-www-form-urlencoded; charset=cp037", b"query=up"),
    ],
)
def test_foreign_body_415(
    proxy_server: ProxyServer, token_for: TokenFor, content_type: str, body: bytes
) -> None:
    """A non-form body, or a non-UTF-8 charset: 415 envelope, never interpreted."""
    r = requests.post(
        f"{proxy_server.base_url}/api/v1/series",
        data=body,
        headers={"Authorization": f"Bearer {token_for('alice')}", "Content-Type": content_type},
        timeout=30,
    )
    assert_envelope(r, 415)


def test_empty_body_with_any_content_type_is_fine(proxy_server: ProxyServer, token_for: TokenFor) -> None:
    """An empty POST body with a foreign Content-Type is accepted (prometheus-api-client POSTs those)."""
    r = requests.post(
        f"{proxy_server.base_url}/api/v1/query?query=vector(1)",
        data=b"",
        headers={"Authorization": f"Bearer {token_for('alice')}", "Content-Type": "application/json"},
        timeout=30,
    )
    assert r.status_code == 200, r.text


def test_oversized_body_413(proxy_server: ProxyServer, token_for: TokenFor) -> None:
    """A body over PROXY_MAX_BODY_BYTES: 413 envelope."""
    body = b"query=" + b"a" * (proxy_server.settings.max_body_bytes + 10)
    r = requests.post(
        f"{proxy_server.base_url}/api/v1/query",
        data=body,
        headers={
            "Authorization": f"Bearer {token_for('alice')}",
            "Content-Type": "application/x-www-form-urlencoded",
        },
        timeout=30,
    )
    assert_envelope(r, 413)


def test_narrowing_guidance_400(proxy_server: ProxyServer, token_for: TokenFor) -> None:
    """A query whose narrowing would exceed the proxy's union size bound (43 selectors × 3
    branches for a mixed grant): 400 `bad_data` naming the bound."""
    r = requests.get(
        f"{proxy_server.base_url}/api/v1/query",
        params={"query": " + ".join(["DCGM_FI_DEV_GPU_UTIL"] * 43)},
        headers={"Authorization": f"Bearer {token_for('carol')}"},
        timeout=30,
    )
    doc = assert_envelope(r, 400, "bad_data")
    assert "union size bound" in doc["error"]


def test_upstream_error_body_passes_through(proxy_server: ProxyServer, token_for: TokenFor) -> None:
    """An upstream 400 (a bad `step`) passes through in Prometheus' own envelope."""
    r = requests.get(
        f"{proxy_server.base_url}/api/v1/query_range",
        params={"query": "vector(1)", "start": "100", "end": "200", "step": "1M"},
        headers={"Authorization": f"Bearer {token_for('alice')}"},
        timeout=30,
    )
    assert r.status_code == 400, r.text
    doc = r.json()
    assert doc["status"] == "error" and doc["errorType"] == "bad_data"

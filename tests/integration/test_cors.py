"""CORS (docs/http.md#cors): none by default, an allow-list, no `*` with credentials."""

from __future__ import annotations

import pytest
import requests

from tests.support.proxy_server import ProxyServer
from tests.support.stack import ProxyFactory, TokenFor

PORTAL = "https://portal.example.org"
OTHER = "https://evil.example.com"
CORS_HEADERS = (
    "Access-Control-Allow-Origin",
    "Access-Control-Allow-Credentials",
    "Access-Control-Allow-Methods",
    "Access-Control-Allow-Headers",
)


def preflight(proxy: ProxyServer, origin: str, path: str = "/api/v1/query") -> requests.Response:
    """A browser preflight: OPTIONS with Origin and the requested method/headers, no credentials."""
    return requests.options(
        f"{proxy.base_url}{path}",
        headers={
            "Origin": origin,
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "authorization,content-type",
        },
        timeout=30,
    )


def query(proxy: ProxyServer, token: str | None, origin: str) -> requests.Response:
    """A cross-origin instant query (optionally unauthenticated)."""
    headers = {"Origin": origin}
    if token is not None:
        headers["Authorization"] = f"Bearer {token}"
    return requests.get(
        f"{proxy.base_url}/api/v1/query", params={"query": "vector(1)"}, headers=headers, timeout=30
    )


@pytest.fixture
def portal_proxy(proxy_factory: ProxyFactory) -> ProxyServer:
    """A proxy allowing the portal's origin."""
    return proxy_factory(PROXY_CORS_ALLOWED_ORIGINS=PORTAL)


@pytest.fixture
def star_proxy(proxy_factory: ProxyFactory) -> ProxyServer:
    """A proxy configured with the Go proxy's `*`."""
    return proxy_factory(PROXY_CORS_ALLOWED_ORIGINS="*")


def test_no_cors_by_default(proxy_server: ProxyServer, token_for: TokenFor) -> None:
    """Without configuration no response carries CORS headers, and a preflight is not approved."""
    r = query(proxy_server, token_for("alice"), PORTAL)
    assert r.status_code == 200, r.text
    assert not [h for h in CORS_HEADERS if h in r.headers]
    p = preflight(proxy_server, PORTAL)
    assert p.status_code >= 400
    assert "Access-Control-Allow-Origin" not in p.headers
    assert p.json()["status"] == "error"


def test_allowed_origin_gets_headers_on_success_and_errors(
    portal_proxy: ProxyServer, token_for: TokenFor
) -> None:
    """An allowed origin gets its own origin back with credentials, on streamed 200s and on 401s."""
    r = query(portal_proxy, token_for("alice"), PORTAL)
    assert r.status_code == 200, r.text
    assert r.headers["Access-Control-Allow-Origin"] == PORTAL
    assert r.headers["Access-Control-Allow-Credentials"] == "true"
    assert "Origin" in r.headers.get("Vary", "")
    unauthenticated = query(portal_proxy, None, PORTAL)
    assert unauthenticated.status_code == 401
    assert unauthenticated.headers["Access-Control-Allow-Origin"] == PORTAL


def test_other_origin_gets_no_headers(portal_proxy: ProxyServer, token_for: TokenFor) -> None:
    """An origin outside the allow-list gets no CORS headers (the browser blocks the read)."""
    r = query(portal_proxy, token_for("alice"), OTHER)
    assert r.status_code == 200
    assert not [h for h in CORS_HEADERS if h in r.headers]


def test_preflight_answered_without_auth(portal_proxy: ProxyServer) -> None:
    """The preflight of an allowed origin is answered (2xx) without credentials, allowing Authorization."""
    p = preflight(portal_proxy, PORTAL)
    assert 200 <= p.status_code < 300, p.text
    assert p.headers["Access-Control-Allow-Origin"] == PORTAL
    assert "POST" in p.headers["Access-Control-Allow-Methods"]
    assert "authorization" in p.headers["Access-Control-Allow-Headers"].lower()
    assert "WWW-Authenticate" not in p.headers


def test_preflight_from_other_origin_refused(portal_proxy: ProxyServer) -> None:
    """The preflight of an unlisted origin is not approved."""
    p = preflight(portal_proxy, OTHER)
    assert p.status_code >= 400
    assert "Access-Control-Allow-Origin" not in p.headers


def test_star_never_with_credentials(star_proxy: ProxyServer, token_for: TokenFor) -> None:
    """`*` yields `Access-Control-Allow-Origin: *` and never `Allow-Credentials: true`."""
    r = query(star_proxy, token_for("alice"), OTHER)
    assert r.status_code == 200
    assert r.headers["Access-Control-Allow-Origin"] == "*"
    assert r.headers.get("Access-Control-Allow-Credentials") != "true"
    p = preflight(star_proxy, OTHER)
    assert 200 <= p.status_code < 300, p.text
    assert p.headers["Access-Control-Allow-Origin"] == "*"
    assert p.headers.get("Access-Control-Allow-Credentials") != "true"

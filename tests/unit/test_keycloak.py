"""Shared Keycloak plumbing: URLs, session, call errors and metrics, discovery."""

from __future__ import annotations

import asyncio
import socket
import ssl
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from pytest_aiohttp import AiohttpServer

from proxy.config import Settings, load_settings
from proxy.errors import KeycloakUnavailable
from proxy.keycloak import (
    MAX_BODY_BYTES,
    Endpoints,
    Reply,
    call,
    challenge,
    create_session,
    discover,
    same_origin,
    ssl_context,
    unexpected,
)
from proxy.metrics import KEYCLOAK_ERRORS, KEYCLOAK_UP


def settings(**flags: Any) -> Settings:
    """Minimal valid settings, overridable."""
    values: dict[str, Any] = {
        "prometheus_base_url": "http://127.0.0.1:9",
        "auth_base_url": "https://kc.example:8443/",
        "auth_realm": "nerc",
        "auth_client_id": "prom-keycloak-proxy",
        "acm_hub": "moc",
    }
    values.update(flags)
    return load_settings(values, {"PROXY_AUTH_CLIENT_SECRET": "s"})


async def slow(_request: web.Request) -> web.Response:
    """Answers after two seconds."""
    await asyncio.sleep(2)
    return web.json_response({})


async def huge(_request: web.Request) -> web.StreamResponse:
    """Streams more than the body limit."""
    response = web.StreamResponse()
    await response.prepare(_request)
    chunk = b" " * (1024 * 1024)
    for _ in range(MAX_BODY_BYTES // len(chunk) + 2):
        await response.write(chunk)
    return response


async def redirect(_request: web.Request) -> web.Response:
    """Redirects elsewhere."""
    raise web.HTTPFound("/elsewhere")


async def not_json(_request: web.Request) -> web.Response:
    """Answers HTML."""
    return web.Response(text="<html>", content_type="text/html")


async def cookie(_request: web.Request) -> web.Response:
    """Sets a cookie, as Keycloak does on some answers."""
    response = web.json_response({"ok": True})
    response.set_cookie("KC_RESTART", "secret-state")
    return response


async def echo_cookie(request: web.Request) -> web.Response:
    """Reports which cookies arrived."""
    return web.json_response({"cookies": dict(request.cookies)})


@pytest.fixture
async def server(aiohttp_server: AiohttpServer) -> str:
    """A loopback server with misbehaving endpoints; returns its base URL."""
    app = web.Application()
    for path, handler in (("/slow", slow), ("/huge", huge), ("/redirect", redirect),
                          ("/html", not_json), ("/cookie", cookie), ("/echo", echo_cookie)):
        app.router.add_get(path, handler)
    running = await aiohttp_server(app)
    return str(running.make_url("")).rstrip("/")


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    """The real Keycloak session factory's session."""
    async with create_session(settings()) as client:
        yield client


def test_endpoints_derive_from_base_and_realm() -> None:
    """Every URL is the base URL (trailing slash removed) plus Keycloak's fixed paths."""
    urls = Endpoints.from_settings(settings())
    realm = "https://kc.example:8443/realms/nerc"
    assert urls.discovery == f"{realm}/.well-known/openid-configuration"
    assert urls.token == f"{realm}/protocol/openid-connect/token"
    assert urls.introspect == f"{realm}/protocol/openid-connect/token/introspect"
    assert urls.certs == f"{realm}/protocol/openid-connect/certs"
    assert urls.resource_set == f"{realm}/authz/protection/resource_set"


def test_challenge_is_bearer_and_cannot_be_broken_by_quotes() -> None:
    """The 401 challenge is Bearer with the realm, quotes stripped from the realm name."""
    assert challenge("nerc") == {"WWW-Authenticate": 'Bearer realm="nerc"'}
    assert challenge('a"b') == {"WWW-Authenticate": 'Bearer realm="ab"'}


def test_ssl_context_follows_settings() -> None:
    """Verification on by default, off when configured off."""
    assert isinstance(ssl_context(settings()), ssl.SSLContext)
    assert ssl_context(settings(auth_tls_verify=False)) is False


def test_same_origin() -> None:
    """Origins compare scheme, host and port."""
    assert same_origin("https://a:1/x", "https://a:1")
    assert not same_origin("https://a:2/x", "https://a:1")
    assert not same_origin("http://a:1/x", "https://a:1")


async def test_timeout_is_unavailable_and_counted(session: aiohttp.ClientSession, server: str) -> None:
    """A slow answer becomes KeycloakUnavailable after the limit, counted as a timeout."""
    before = KEYCLOAK_ERRORS.labels("probe", "timeout")._value.get()
    started = asyncio.get_running_loop().time()
    with pytest.raises(KeycloakUnavailable):
        await call(session, "probe", "GET", f"{server}/slow", time_limit=0.2)
    assert asyncio.get_running_loop().time() - started < 1
    assert KEYCLOAK_ERRORS.labels("probe", "timeout")._value.get() == before + 1
    assert KEYCLOAK_UP._value.get() == 0


async def test_unreachable_is_unavailable(session: aiohttp.ClientSession) -> None:
    """A closed port becomes KeycloakUnavailable."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    with pytest.raises(KeycloakUnavailable):
        await call(session, "probe", "GET", f"http://127.0.0.1:{port}/", time_limit=1)


async def test_oversized_body_is_refused(session: aiohttp.ClientSession, server: str) -> None:
    """A body over the limit is not buffered."""
    with pytest.raises(KeycloakUnavailable):
        await call(session, "probe", "GET", f"{server}/huge", time_limit=5)


async def test_redirects_are_not_followed(session: aiohttp.ClientSession, server: str) -> None:
    """A 3xx is returned as is, so tokens are never replayed to another address."""
    reply = await call(session, "probe", "GET", f"{server}/redirect", time_limit=1)
    assert reply.status == 302


async def test_non_json_body_is_none(session: aiohttp.ClientSession, server: str) -> None:
    """Non-JSON answers parse to None; the caller decides what that means."""
    reply = await call(session, "probe", "GET", f"{server}/html", time_limit=1)
    assert reply == Reply(200, None)
    assert KEYCLOAK_UP._value.get() == 1


async def test_session_keeps_no_cookies(session: aiohttp.ClientSession, server: str) -> None:
    """Cookies Keycloak sets are never sent back on later calls (no cross-caller state)."""
    await call(session, "probe", "GET", f"{server}/cookie", time_limit=1)
    reply = await call(session, "probe", "GET", f"{server}/echo", time_limit=1)
    assert reply.body == {"cookies": {}}


def test_unexpected_names_status_and_error() -> None:
    """Unexpected answers become 503s naming status and Keycloak's error code."""
    error = unexpected("uma", Reply(400, {"error": "invalid_scope"}))
    assert isinstance(error, KeycloakUnavailable)
    assert "400" in error.message
    assert "invalid_scope" in error.message


async def test_discovery_keeps_same_origin_jwks_uri(
    aiohttp_server: AiohttpServer, session: aiohttp.ClientSession
) -> None:
    """Discovery gives the issuer; a same-origin jwks_uri is used as published."""
    async def well_known(request: web.Request) -> web.Response:
        """A discovery document."""
        base = f"http://{request.host}"
        return web.json_response({"issuer": "https://public/realms/nerc",
                                  "jwks_uri": f"{base}/custom/certs"})

    app = web.Application()
    app.router.add_get("/realms/nerc/.well-known/openid-configuration", well_known)
    running = await aiohttp_server(app)
    base = str(running.make_url("")).rstrip("/")
    found = await discover(session, Endpoints.from_settings(settings(auth_base_url=base)), base, 1)
    assert found.issuer == "https://public/realms/nerc"
    assert found.jwks_uri == f"{base}/custom/certs"


async def test_discovery_without_issuer_is_unavailable(
    aiohttp_server: AiohttpServer, session: aiohttp.ClientSession
) -> None:
    """A discovery document lacking `issuer` cannot be trusted."""
    async def well_known(_request: web.Request) -> web.Response:
        """A discovery document."""
        return web.json_response({"jwks_uri": "x"})

    app = web.Application()
    app.router.add_get("/realms/nerc/.well-known/openid-configuration", well_known)
    running = await aiohttp_server(app)
    base = str(running.make_url("")).rstrip("/")
    with pytest.raises(KeycloakUnavailable):
        await discover(session, Endpoints.from_settings(settings(auth_base_url=base)), base, 1)

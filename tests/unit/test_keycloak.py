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
    same_origin,
    ssl_context,
    unexpected,
)
from proxy.keycloak_client import KeycloakClient
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
    for path, handler in (
        ("/slow", slow),
        ("/huge", huge),
        ("/redirect", redirect),
        ("/html", not_json),
        ("/cookie", cookie),
        ("/echo", echo_cookie),
    ):
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
        return web.json_response({"issuer": "https://public/realms/nerc", "jwks_uri": f"{base}/custom/certs"})

    app = web.Application()
    app.router.add_get("/realms/nerc/.well-known/openid-configuration", well_known)
    running = await aiohttp_server(app)
    base = str(running.make_url("")).rstrip("/")
    found = await KeycloakClient(settings(auth_base_url=base), session).discover()
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
        await KeycloakClient(settings(auth_base_url=base), session).discover()


async def test_discovery_replaces_foreign_jwks_uri(
    aiohttp_server: AiohttpServer, session: aiohttp.ClientSession
) -> None:
    """A jwks_uri on another origin (Keycloak's public hostname) is replaced by the realm's certs URL."""

    async def well_known(_request: web.Request) -> web.Response:
        """A discovery document naming a front-end host."""
        return web.json_response(
            {
                "issuer": "https://public/realms/nerc",
                "jwks_uri": "https://public/realms/nerc/protocol/openid-connect/certs",
            }
        )

    app = web.Application()
    app.router.add_get("/realms/nerc/.well-known/openid-configuration", well_known)
    running = await aiohttp_server(app)
    base = str(running.make_url("")).rstrip("/")
    client = KeycloakClient(settings(auth_base_url=base), session)
    found = await client.discover()
    assert found.jwks_uri == f"{base}/realms/nerc/protocol/openid-connect/certs"
    assert await client.discover() is found  # fetched once


async def test_client_sends_credentials_and_bearers_per_call(
    aiohttp_server: AiohttpServer, session: aiohttp.ClientSession
) -> None:
    """One client: own credentials for its PAT and introspection, caller bearers per UMA call."""
    seen: list[tuple[str, dict[str, str], str | None]] = []

    async def token(request: web.Request) -> web.Response:
        """Record the form and Authorization header; mint `pat-N` for client credentials."""
        form = {k: str(v) for k, v in (await request.post()).items()}
        seen.append((request.path, form, request.headers.get("Authorization")))
        if form.get("grant_type") == "client_credentials":
            return web.json_response({"access_token": f"pat-{len(seen)}", "expires_in": 300})
        return web.json_response([] if "permission" in form else {"active": True})

    app = web.Application()
    app.router.add_post("/realms/nerc/protocol/openid-connect/token", token)
    app.router.add_post("/realms/nerc/protocol/openid-connect/token/introspect", token)
    running = await aiohttp_server(app)
    client = KeycloakClient(settings(auth_base_url=str(running.make_url("")).rstrip("/")), session)
    assert await client.service_token() == "pat-1"
    assert await client.service_token() == "pat-1"  # reused until shortly before expiry
    client.drop_service_token("pat-1")
    assert await client.service_token() == "pat-2"
    await client.introspect("caller-token")
    await asyncio.gather(client.uma("uma", "tok-a", ["X#GET"]), client.uma("uma", "tok-b", ["Y#GET"]))
    mints = [s for s in seen if s[1].get("grant_type") == "client_credentials"]
    assert [(m[1]["client_id"], m[1]["client_secret"], m[2]) for m in mints] == [
        ("prom-keycloak-proxy", "s", None)
    ] * 2
    introspection = seen[2]
    assert introspection[0].endswith("/introspect")
    assert introspection[1] == {
        "token": "caller-token",
        "client_id": "prom-keycloak-proxy",
        "client_secret": "s",
    }
    uma = {s[1]["permission"]: s[2] for s in seen[3:]}
    assert uma == {"X#GET": "Bearer tok-a", "Y#GET": "Bearer tok-b"}
    assert all(s[1]["audience"] == "prom-keycloak-proxy" and "client_secret" not in s[1] for s in seen[3:])

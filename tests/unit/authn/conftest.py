"""Fixtures: a fake realm on loopback, settings pointing at it, and a started authenticator."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Any

import aiohttp
import pytest
from pytest_aiohttp import AiohttpServer

from proxy.authn import Authenticator
from proxy.config import Settings, load_settings
from proxy.keycloak import create_session
from proxy.keycloak_client import KeycloakClient

from .fake_realm import PROXY_CLIENT, PROXY_SECRET, REALM, FakeRealm, SigningKey, new_rsa

_KEYS = [new_rsa(), new_rsa()]

MakeAuthn = Callable[..., Any]


def make_settings(base_url: str, **flags: Any) -> Settings:
    """Settings for the fake realm; `flags` override any field."""
    values: dict[str, Any] = {
        "prometheus_base_url": "http://127.0.0.1:9",
        "auth_base_url": base_url,
        "auth_realm": REALM,
        "auth_client_id": PROXY_CLIENT,
        "acm_hub": "moc",
        "auth_timeout": "1s",
    }
    values.update(flags)
    return load_settings(values, {"PROXY_AUTH_CLIENT_SECRET": PROXY_SECRET})


@pytest.fixture
async def realm(aiohttp_server: AiohttpServer) -> FakeRealm:
    """A running fake realm with one signing key, one encryption key and two clients."""
    fake = FakeRealm(
        keys=[SigningKey("sig-1", _KEYS[0]), SigningKey("enc-1", _KEYS[1], use="enc")],
        clients={PROXY_CLIENT: PROXY_SECRET, "researcher-team-a": "s3cr:et:with:colons"},
    )
    server = await aiohttp_server(fake.app())
    fake.base_url = str(server.make_url("")).rstrip("/")
    return fake


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    """The Keycloak client session (settings only shape TLS and timeouts here)."""
    async with create_session(make_settings("http://127.0.0.1:9")) as client:
        yield client


@pytest.fixture
async def make_authn(realm: FakeRealm, session: aiohttp.ClientSession) -> AsyncIterator[MakeAuthn]:
    """Build and start authenticators for the fake realm; all closed afterwards."""
    made: list[Authenticator] = []

    async def build(**flags: Any) -> Authenticator:
        """A started authenticator with these settings."""
        settings = make_settings(realm.base_url, **flags)
        authn = Authenticator(settings, KeycloakClient(settings, session))
        await authn.start()
        made.append(authn)
        return authn

    yield build
    for authn in made:
        await authn.close()


@pytest.fixture
async def authn(make_authn: MakeAuthn) -> Authenticator:
    """A started authenticator with default settings."""
    result: Authenticator = await make_authn()
    return result

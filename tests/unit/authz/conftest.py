"""Fixtures: a fake UMA/Protection API on loopback and authorizers pointed at it."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Any

import aiohttp
import pytest
from pytest_aiohttp import AiohttpServer

from proxy.authz import Authorizer
from proxy.config import Settings, load_settings
from proxy.keycloak import create_session
from proxy.keycloak_client import KeycloakClient

from .fake_uma import REALM, RS, FakeAuthz

MakeAuthz = Callable[..., Authorizer]


def make_settings(base_url: str, **flags: Any) -> Settings:
    """Settings for the fake; `flags` override any field."""
    values: dict[str, Any] = {
        "prometheus_base_url": "http://127.0.0.1:9",
        "auth_base_url": base_url,
        "auth_realm": REALM,
        "auth_client_id": RS,
        "acm_hub": "moc",
        "auth_timeout": "1s",
    }
    values.update(flags)
    return load_settings(values, {"PROXY_AUTH_CLIENT_SECRET": "secret"})


@pytest.fixture
async def kc(aiohttp_server: AiohttpServer) -> tuple[FakeAuthz, str]:
    """The running fake and its base URL."""
    fake = FakeAuthz()
    server = await aiohttp_server(fake.app())
    return fake, str(server.make_url("")).rstrip("/")


@pytest.fixture
def fake(kc: tuple[FakeAuthz, str]) -> FakeAuthz:
    """The fake's state."""
    return kc[0]


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    """A Keycloak client session."""
    async with create_session(make_settings("http://127.0.0.1:9")) as client:
        yield client


@pytest.fixture
def make_authz(kc: tuple[FakeAuthz, str], session: aiohttp.ClientSession) -> MakeAuthz:
    """Build authorizers against the fake with overridable settings."""

    def build(**flags: Any) -> Authorizer:
        """An authorizer with these settings."""
        settings = make_settings(kc[1], **flags)
        return Authorizer(settings, KeycloakClient(settings, session))

    return build


@pytest.fixture
def authz(make_authz: MakeAuthz) -> Authorizer:
    """An authorizer with default settings."""
    return make_authz()

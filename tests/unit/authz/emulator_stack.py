"""The Keycloak emulator on loopback with a started authenticator and an authorizer (authz tests)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass

import aiohttp

from keycloak_emulator import Emulator, EmulatorServer
from proxy.authn import Authenticator, Identity
from proxy.authz import Authorizer
from proxy.config import load_settings
from proxy.keycloak import create_session
from proxy.keycloak_client import KeycloakClient
from proxy.promql.scope import Holdings

REALM = "nerc"


def held(clusters: set[str] | None = None, projects: dict[str, set[str]] | None = None) -> Holdings:
    """Holdings from plain sets."""
    return Holdings(
        clusters=frozenset(clusters or ()),
        projects={c: frozenset(p) for c, p in (projects or {}).items()},
    )


@dataclass
class Stack:
    """The emulator and the authn/authz pair talking to it over loopback HTTP."""

    emu: Emulator
    authn: Authenticator
    authz: Authorizer

    async def user(self, name: str) -> Identity:
        """A password-grant token of a demo user, authenticated."""
        answer = self.emu.password_token(REALM, name, f"{name}-password")
        return await self.authn.authenticate(f"Bearer {answer['access_token']}")

    def uma_calls(self) -> int:
        """UMA grants the emulator answered so far."""
        return int(self.emu.stats(REALM)["token.uma"])


@asynccontextmanager
async def emulator_stack(emu: Emulator, hubs: Sequence[str] = ("moc",)) -> AsyncIterator[Stack]:
    """Serve `emu` on loopback; an authenticator and an authorizer for `hubs` (the first is
    PROXY_ACM_HUB) pointed at it; everything stopped on exit."""
    server = EmulatorServer(emu, host="127.0.0.1", port=0)
    await server.start()
    flags = {
        "prometheus_base_url": "http://127.0.0.1:9",
        "auth_base_url": server.base_url,
        "auth_realm": REALM,
        "auth_client_id": "prom-keycloak-proxy",
        "acm_hub": hubs[0],
        "auth_timeout": "1s",
    }
    settings = load_settings(flags, {"PROXY_AUTH_CLIENT_SECRET": "prom-keycloak-proxy-secret"})
    session: aiohttp.ClientSession = create_session(settings)
    client = KeycloakClient(settings, session)
    authn = Authenticator(settings, client)
    await authn.start()
    try:
        yield Stack(emu, authn, Authorizer(settings, client, hubs=hubs))
    finally:
        await authn.close()
        await session.close()
        await server.stop()

"""An emulator on loopback plus the proxy's Keycloak client, authenticator and authorizer."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

from keycloak_emulator import Emulator, EmulatorServer
from proxy.authn import Authenticator, Identity
from proxy.authz import Authorizer
from proxy.config import Settings, load_settings
from proxy.keycloak import create_session
from proxy.keycloak_client import KeycloakClient
from proxy_demo.policy import DEMO_POLICY

REALM, RS, PROD, TEST = "nerc", "prom-keycloak-proxy", "nerc-ocp-prod", "nerc-ocp-test"


@dataclass
class Stack:
    """The emulator and the proxy's Keycloak-facing parts, talking over loopback HTTP."""

    emu: Emulator
    settings: Settings
    client: KeycloakClient
    authn: Authenticator
    authz: Authorizer

    def token(self, user: str) -> str:
        """A password-grant token of a demo user (through `grafana`, audience mapper included)."""
        token: str = self.emu.password_token(REALM, user, f"{user}-password")["access_token"]
        return token

    async def user(self, name: str) -> Identity:
        """A demo user's token, authenticated."""
        return await self.authn.authenticate(f"Bearer {self.token(name)}")

    def calls(self, key: str = "token.uma") -> int:
        """Calls of `key` the emulator answered so far."""
        return self.emu.stats(REALM)[key]


@asynccontextmanager
async def keycloak_stack(emu: Emulator | None = None, **flags: Any) -> AsyncIterator[Stack]:
    """Serve `emu` (default: the demo realm, Keycloak 26.6+) and start the proxy's parts."""
    emu = emu or Emulator.from_files([DEMO_POLICY])
    server = EmulatorServer(emu, host="127.0.0.1", port=0)
    await server.start()
    values: dict[str, Any] = {
        "prometheus_base_url": "http://127.0.0.1:9",
        "auth_base_url": server.base_url,
        "auth_realm": REALM,
        "auth_client_id": RS,
        "acm_hub": "moc",
        "auth_timeout": "2s",
        **flags,
    }
    settings = load_settings(values, {"PROXY_AUTH_CLIENT_SECRET": "prom-keycloak-proxy-secret"})
    session = create_session(settings)
    client = KeycloakClient(settings, session)
    authn = Authenticator(settings, client)
    await authn.start()
    authz = Authorizer(settings, client)
    authz.renew = authn.basic.renew  # as the application wires it
    try:
        yield Stack(emu, settings, client, authn, authz)
    finally:
        await authz.close()
        await authn.close()
        await session.close()
        await server.stop()

"""Authentication end to end against the Keycloak emulator loaded from demo/proxy_demo/demo.yaml."""

from __future__ import annotations

import base64
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest

from keycloak_emulator import Emulator, EmulatorServer
from proxy.authn import Authenticator
from proxy.config import Settings, load_settings
from proxy.errors import Unauthorized
from proxy.keycloak import create_session
from proxy.keycloak_client import KeycloakClient
from proxy_demo.policy import DEMO_POLICY

DEMO = DEMO_POLICY
REALM = "nerc"


class FakeClock:
    """A monotonic clock the test moves by hand."""

    def __init__(self) -> None:
        """Start at an arbitrary time."""
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
async def served() -> AsyncIterator[tuple[Emulator, str]]:
    """The demo emulator on loopback and its base URL."""
    emu = Emulator.from_files([DEMO])
    server = EmulatorServer(emu, host="127.0.0.1", port=0)
    await server.start()
    yield emu, server.base_url
    await server.stop()


def settings(base_url: str, **flags: Any) -> Settings:
    """Settings for the emulator's demo realm."""
    values: dict[str, Any] = {
        "prometheus_base_url": "http://127.0.0.1:9",
        "auth_base_url": base_url,
        "auth_realm": REALM,
        "auth_client_id": "prom-keycloak-proxy",
        "acm_hub": "moc",
        "auth_timeout": "1s",
        **flags,
    }
    return load_settings(values, {"PROXY_AUTH_CLIENT_SECRET": "prom-keycloak-proxy-secret"})


@pytest.fixture
async def started(
    served: tuple[Emulator, str],
) -> AsyncIterator[tuple[Emulator, Authenticator, FakeClock]]:
    """A started authenticator (audience-checked, introspecting) on a fake refetch clock."""
    emu, base = served
    clock = FakeClock()
    config = settings(base, auth_audiences="prom-keycloak-proxy", auth_introspect=True)
    async with create_session(config) as session:
        authn = Authenticator(config, KeycloakClient(config, session), key_clock=clock)
        await authn.start()
        yield emu, authn, clock
        await authn.close()


async def test_password_token_of_demo_user(
    started: tuple[Emulator, Authenticator, FakeClock],
) -> None:
    """A user's password-grant token verifies (audience mapper, issuer, keys from discovery)."""
    emu, authn, _ = started
    assert authn.ready
    token = emu.password_token(REALM, "alice", "alice-password")["access_token"]
    identity = await authn.authenticate(f"Bearer {token}")
    assert (identity.subject, identity.client_id) == ("alice", None)


async def test_client_credentials_token_and_basic(
    started: tuple[Emulator, Authenticator, FakeClock],
) -> None:
    """A researcher client is named by its id, by bearer token or by Basic credentials."""
    emu, authn, _ = started
    token = emu.client_token(REALM, "researcher-team-a", "researcher-team-a-secret")
    bearer = await authn.authenticate(f"Bearer {token['access_token']}")
    raw = base64.b64encode(b"researcher-team-a:researcher-team-a-secret").decode()
    basic = await authn.authenticate(f"Basic {raw}")
    assert bearer.subject == basic.subject == basic.client_id == "researcher-team-a"
    with pytest.raises(Unauthorized):
        wrong = base64.b64encode(b"researcher-team-a:nope").decode()
        await authn.authenticate(f"Basic {wrong}")


@pytest.mark.parametrize(
    "forge",
    [
        {"claims": {"exp": 1}},
        {"algorithm": "none"},
        {"kid": "unknown-kid"},
        {"headers": {"jku": "http://127.0.0.1:1/jwks"}},
        {"claims": {"iss": "http://127.0.0.1:1/realms/nerc"}},
        {"claims": {"typ": "ID"}},
        {"claims": {"aud": "account"}},
    ],
)
async def test_emulator_forged_tokens_are_401(
    started: tuple[Emulator, Authenticator, FakeClock], forge: dict[str, Any]
) -> None:
    """Tokens the emulator signs wrongly on purpose are all refused."""
    emu, authn, _ = started
    claims = forge.pop("claims", {})
    token = emu.mint(REALM, claims, user="alice", **forge)
    with pytest.raises(Unauthorized):
        await authn.authenticate(f"Bearer {token}")


async def test_rotation_after_one_refetch(
    started: tuple[Emulator, Authenticator, FakeClock],
) -> None:
    """After `rotate_key` new tokens verify following exactly one more JWKS fetch."""
    emu, authn, clock = started
    emu.reset_stats()
    emu.rotate_key(REALM)
    clock.now += 11
    token = emu.password_token(REALM, "bob", "bob-password")["access_token"]
    assert (await authn.authenticate(f"Bearer {token}")).subject == "bob"
    assert emu.stats(REALM)["certs"] == 1


async def test_revoked_token_refused_by_introspection(
    started: tuple[Emulator, Authenticator, FakeClock],
) -> None:
    """A logged-out session's token is refused when introspection is on."""
    emu, authn, _ = started
    token = emu.password_token(REALM, "carol", "carol-password")["access_token"]
    emu.revoke(REALM, token)
    with pytest.raises(Unauthorized):
        await authn.authenticate(f"Bearer {token}")


async def test_service_token_for_protection_api(
    served: tuple[Emulator, str],
) -> None:
    """The proxy's own client credentials give it a PAT."""
    _, base = served
    config = settings(base)
    async with aiohttp.ClientSession() as session:
        assert await KeycloakClient(config, session).service_token()

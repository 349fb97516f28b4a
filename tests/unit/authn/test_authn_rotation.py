"""Key rotation: new keys are picked up by one refetch; unknown kids cannot force more."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import jwt
import pytest

import proxy.authn.authenticator as authenticator
from proxy.authn import Authenticator
from proxy.errors import Unauthorized
from proxy.keycloak_client import KeycloakClient

from .conftest import MakeAuthn, make_settings
from .fake_realm import FakeRealm, SigningKey, new_rsa


class FakeClock:
    """A monotonic clock the test moves by hand."""

    def __init__(self) -> None:
        """Start at an arbitrary time."""
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
async def clocked(
    realm: FakeRealm, session: aiohttp.ClientSession
) -> AsyncIterator[tuple[Authenticator, FakeClock]]:
    """A started authenticator whose JWKS refetch pacing runs on a fake clock."""
    clock = FakeClock()
    settings = make_settings(realm.base_url)
    authn = Authenticator(settings, KeycloakClient(settings, session), key_clock=clock)
    await authn.start()
    yield authn, clock
    await authn.close()


async def test_rotated_key_is_accepted_after_one_refetch(
    clocked: tuple[Authenticator, FakeClock], realm: FakeRealm
) -> None:
    """A token signed by a newly published key verifies after exactly one JWKS refetch."""
    authn, clock = clocked
    assert realm.calls["jwks"] == 1
    new_key = SigningKey("sig-2", new_rsa())
    realm.keys.append(new_key)
    clock.now += 11
    identity = await authn.authenticate(f"Bearer {realm.mint(key=new_key)}")
    assert identity.subject == "alice"
    assert realm.calls["jwks"] == 2
    await authn.authenticate(f"Bearer {realm.mint(key=new_key)}")
    assert realm.calls["jwks"] == 2


async def test_unknown_kids_force_at_most_one_refetch_per_10s(
    clocked: tuple[Authenticator, FakeClock], realm: FakeRealm
) -> None:
    """A flood of random kids costs Keycloak one JWKS fetch per 10 s, not one per token."""
    authn, clock = clocked
    clock.now += 11

    async def attempt(i: int) -> None:
        """One token with a fresh unknown kid must be refused."""
        token = jwt.encode({"sub": "x"}, realm.keys[0].private, "RS256", headers={"kid": f"k{i}"})
        with pytest.raises(Unauthorized):
            await authn.authenticate(f"Bearer {token}")

    await asyncio.gather(*(attempt(i) for i in range(30)))
    for i in range(30, 60):
        await attempt(i)
    assert realm.calls["jwks"] == 2
    clock.now += 5
    await attempt(99)
    assert realm.calls["jwks"] == 2
    clock.now += 6
    await attempt(100)
    assert realm.calls["jwks"] == 3


async def test_key_rotated_right_after_start_is_fetched_once(
    clocked: tuple[Authenticator, FakeClock], realm: FakeRealm
) -> None:
    """Start-up's fetch does not use up the refetch budget; a second new kid within 10 s waits."""
    authn, clock = clocked
    new_key = SigningKey("sig-3", new_rsa())
    realm.keys.append(new_key)
    assert (await authn.authenticate(f"Bearer {realm.mint(key=new_key)}")).subject == "alice"
    newer = SigningKey("sig-5", new_rsa())
    realm.keys.append(newer)
    token = realm.mint(key=newer)
    with pytest.raises(Unauthorized):
        await authn.authenticate(f"Bearer {token}")
    clock.now += 10
    assert (await authn.authenticate(f"Bearer {token}")).subject == "alice"


async def test_withdrawn_key_stops_verifying_after_refresh(
    clocked: tuple[Authenticator, FakeClock], realm: FakeRealm
) -> None:
    """Once Keycloak drops a key from its JWKS, new tokens signed with it are refused."""
    authn, _ = clocked
    old = realm.keys[0]
    realm.keys[0] = SigningKey("sig-4", new_rsa())
    await authn.keys.refresh()
    with pytest.raises(Unauthorized):
        await authn.authenticate(f"Bearer {realm.mint(key=old)}")


async def test_broken_jwks_keeps_previous_keys(
    clocked: tuple[Authenticator, FakeClock], realm: FakeRealm
) -> None:
    """A JWKS answer without usable keys is an error; the keys already held stay in use."""
    authn, clock = clocked
    bodies: list[Any] = [{"keys": "nope"}, {"keys": [{"kty": "oct", "k": "c2VjcmV0", "kid": "h"}]}, []]
    for body in bodies:
        realm.jwks_body = body
        clock.now += 11
        with pytest.raises(Exception, match="Keycloak"):
            await authn.keys.refresh()
    assert (await authn.authenticate(f"Bearer {realm.mint()}")).subject == "alice"


async def test_start_never_raises_and_retries_in_background(
    realm: FakeRealm, session: aiohttp.ClientSession, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With Keycloak down `start()` returns; readiness follows once Keycloak answers."""
    monkeypatch.setattr(authenticator, "RETRY_MIN", 0.05)
    realm.status["discovery"] = 503
    settings = make_settings(realm.base_url)
    authn = Authenticator(settings, KeycloakClient(settings, session))
    await authn.start()
    assert not authn.ready
    del realm.status["discovery"]
    for _ in range(100):
        if authn.ready:
            break
        await asyncio.sleep(0.05)
    assert authn.ready
    await authn.close()


async def test_foreign_origin_jwks_uri_falls_back_to_back_channel(
    make_authn: MakeAuthn, realm: FakeRealm
) -> None:
    """A discovery `jwks_uri` on another origin is not followed; the realm's certs URL is."""
    realm.jwks_uri = "http://127.0.0.1:1/evil/certs"
    authn = await make_authn()
    assert authn.ready
    assert (await authn.authenticate(f"Bearer {realm.mint()}")).subject == "alice"

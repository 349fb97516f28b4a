"""Optional introspection: inactive tokens refused, answers cached, failures unavailable."""

from __future__ import annotations

import pytest

from proxy.errors import KeycloakUnavailable, Unauthorized

from .conftest import MakeAuthn
from .fake_realm import FakeRealm


async def test_active_token_passes_and_answer_is_cached(make_authn: MakeAuthn, realm: FakeRealm) -> None:
    """An active token is introspected once, then served from the cache."""
    authn = await make_authn(auth_introspect=True)
    token = realm.mint()
    for _ in range(5):
        assert (await authn.authenticate(f"Bearer {token}")).subject == "alice"
    assert realm.calls["introspect"] == 1


async def test_revoked_token_is_refused(make_authn: MakeAuthn, realm: FakeRealm) -> None:
    """A correctly signed token Keycloak reports inactive (logout, revocation) is a 401."""
    authn = await make_authn(auth_introspect=True)
    token = realm.mint()
    realm.inactive.add(token)
    with pytest.raises(Unauthorized):
        await authn.authenticate(f"Bearer {token}")


async def test_introspection_failure_is_unavailable(make_authn: MakeAuthn, realm: FakeRealm) -> None:
    """An introspection endpoint answering 5xx gives 503, never a guess."""
    authn = await make_authn(auth_introspect=True)
    realm.status["introspect"] = 502
    with pytest.raises(KeycloakUnavailable):
        await authn.authenticate(f"Bearer {realm.mint()}")


async def test_introspection_off_by_default(make_authn: MakeAuthn, realm: FakeRealm) -> None:
    """Without auth_introspect the endpoint is never called."""
    authn = await make_authn()
    await authn.authenticate(f"Bearer {realm.mint()}")
    assert realm.calls["introspect"] == 0

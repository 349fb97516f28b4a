"""Bearer JWT verification: valid tokens, identities, the attack table, caching and limits."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

import jwt
import pytest

import proxy.authn.bearer as bearer
from proxy.authn import Authenticator
from proxy.errors import KeycloakUnavailable, Unauthorized

from .conftest import MakeAuthn
from .fake_realm import FakeRealm
from .forge import ATTACKS

CHALLENGE = 'Bearer realm="nerc"'


async def test_valid_user_token_gives_username_identity(authn: Authenticator, realm: FakeRealm) -> None:
    """A realm-signed access token authenticates as its preferred_username."""
    token = realm.mint()
    identity = await authn.authenticate(f"Bearer {token}")
    assert identity.subject == "alice"
    assert identity.client_id is None
    assert identity.token == token
    assert identity.claims["azp"] == "grafana"


async def test_service_account_token_is_named_by_client_id(authn: Authenticator, realm: FakeRealm) -> None:
    """A client-credentials token is named by its client id, without `service-account-`."""
    identity = await authn.authenticate(f"Bearer {realm.service_token('researcher-team-a')}")
    assert identity.subject == "researcher-team-a"
    assert identity.client_id == "researcher-team-a"


async def test_service_account_without_client_id_claim_strips_prefix(
    authn: Authenticator, realm: FakeRealm
) -> None:
    """Older service-account tokens without client_id fall back to azp."""
    token = realm.mint({"preferred_username": "service-account-ops", "azp": "ops"})
    identity = await authn.authenticate(f"Bearer {token}")
    assert (identity.subject, identity.client_id) == ("ops", "ops")


async def test_scheme_is_case_insensitive(authn: Authenticator, realm: FakeRealm) -> None:
    """`bearer` in any case is accepted, as Keycloak does."""
    identity = await authn.authenticate(f"bEaReR {realm.mint()}")
    assert identity.subject == "alice"


@pytest.mark.parametrize("attack", sorted(ATTACKS))
async def test_attack_table_is_401_with_bearer_challenge(
    authn: Authenticator, realm: FakeRealm, attack: str
) -> None:
    """Every forged, stale, foreign or misused token is a 401 carrying the Bearer challenge."""
    token = ATTACKS[attack](realm)
    with pytest.raises(Unauthorized) as caught:
        await authn.authenticate(f"Bearer {token}")
    assert caught.value.headers == {"WWW-Authenticate": CHALLENGE}


@pytest.mark.parametrize(
    "header",
    [None, "", "Bearer", "Bearer ", "Token abc", "Negotiate abc", "Basic", "Digest x=y"],
)
async def test_missing_or_unknown_credentials_are_401_never_basic(
    authn: Authenticator, header: str | None
) -> None:
    """No usable credentials: 401 with a Bearer challenge, never a Basic one (browser pop-ups)."""
    with pytest.raises(Unauthorized) as caught:
        await authn.authenticate(header)
    assert caught.value.headers["WWW-Authenticate"] == CHALLENGE


async def test_oversized_token_is_refused_before_parsing(
    authn: Authenticator, realm: FakeRealm, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A token over 16 KB is refused without its header ever being decoded."""

    def explode(*_args: Any, **_kwargs: Any) -> None:
        """Fail the test if the token is parsed."""
        raise AssertionError("parsed an oversized token")

    monkeypatch.setattr(jwt, "get_unverified_header", explode)
    with pytest.raises(Unauthorized):
        await authn.authenticate(f"Bearer {realm.mint({'pad': 'x' * 17000})}")


async def test_verified_tokens_are_cached_until_exp(
    authn: Authenticator, realm: FakeRealm, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The hot path does no signature verification: a token is verified once."""
    decodes: list[str] = []
    original: Callable[..., Any] = bearer._decode

    def counting(token: str, *args: Any) -> Any:
        """Count verifications, then verify."""
        decodes.append(token)
        return original(token, *args)

    monkeypatch.setattr(bearer, "_decode", counting)
    token = realm.mint()
    for _ in range(20):
        await authn.authenticate(f"Bearer {token}")
    assert len(decodes) == 1


async def test_cached_token_is_refused_after_exp(authn: Authenticator, realm: FakeRealm) -> None:
    """A cached identity does not outlive its token."""
    token = realm.mint(lifetime=1)
    await authn.authenticate(f"Bearer {token}")
    await asyncio.sleep(1.2)
    with pytest.raises(Unauthorized):
        await authn.authenticate(f"Bearer {token}")


async def test_nbf_within_leeway_is_accepted(authn: Authenticator, realm: FakeRealm) -> None:
    """`nbf` up to 30 s ahead (clock skew) is tolerated."""
    identity = await authn.authenticate(f"Bearer {realm.mint({'nbf': int(time.time()) + 20})}")
    assert identity.subject == "alice"


async def test_audience_allow_list(make_authn: MakeAuthn, realm: FakeRealm) -> None:
    """With audiences configured, `aud` (string or list) must contain one of them."""
    authn = await make_authn(auth_audiences="prom-keycloak-proxy")
    ok = realm.mint({"aud": ["account", "prom-keycloak-proxy"]})
    assert (await authn.authenticate(f"Bearer {ok}")).subject == "alice"
    with pytest.raises(Unauthorized):
        await authn.authenticate(f"Bearer {realm.mint({'aud': 'account'})}")
    with pytest.raises(Unauthorized):
        await authn.authenticate(f"Bearer {realm.mint({'aud': None})}")


async def test_azp_allow_list(make_authn: MakeAuthn, realm: FakeRealm) -> None:
    """With allowed azp configured, tokens of other clients are refused."""
    authn = await make_authn(auth_allowed_azp="grafana,portal")
    assert (await authn.authenticate(f"Bearer {realm.mint()}")).subject == "alice"
    with pytest.raises(Unauthorized):
        await authn.authenticate(f"Bearer {realm.mint({'azp': 'evil-app'})}")


async def test_configured_issuer_overrides_discovery(make_authn: MakeAuthn, realm: FakeRealm) -> None:
    """`auth_issuer` (the public URL) is what `iss` must equal, not discovery's value."""
    public = "https://sso.example.org/realms/nerc"
    authn = await make_authn(auth_issuer=public)
    assert (await authn.authenticate(f"Bearer {realm.mint({'iss': public})}")).subject == "alice"
    with pytest.raises(Unauthorized):
        await authn.authenticate(f"Bearer {realm.mint()}")


async def test_token_without_any_name_is_refused(authn: Authenticator, realm: FakeRealm) -> None:
    """A token naming no subject at all cannot be attributed, so it is refused."""
    token = realm.mint({"sub": None, "preferred_username": None})
    with pytest.raises(Unauthorized):
        await authn.authenticate(f"Bearer {token}")


async def test_keys_not_loaded_is_unavailable_not_401(make_authn: MakeAuthn, realm: FakeRealm) -> None:
    """Before any JWKS was fetched a valid token gets 503, not a misleading 401."""
    realm.status["discovery"] = 503
    authn = await make_authn()
    assert not authn.ready
    with pytest.raises(KeycloakUnavailable):
        await authn.authenticate(f"Bearer {realm.mint()}")

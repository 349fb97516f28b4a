"""Basic callers against Keycloak 26.6+ (issue #17): the secret method is learned per client id,
ids and secrets survive RFC 6749 §2.3.1 encoding, and a refused minted token is minted once more."""

from __future__ import annotations

import base64

import pytest
from structlog.testing import capture_logs

from keycloak_emulator import Emulator
from keycloak_emulator.realm_import import add_client, ensure_service_account
from proxy.errors import Unauthorized
from proxy_demo.policy import DEMO_POLICY

from .stack import PROD, REALM, RS, keycloak_stack

ODD_ID, ODD_SECRET = "script+a%b", "s3+cr%t:with:colons"


def basic_only(emu: Emulator, client_id: str = ODD_ID, secret: str = ODD_SECRET) -> None:
    """A confidential client registered with `token_endpoint_auth_method=client_secret_basic`,
    holding project team-a on prod through a client policy."""
    realm = emu.realm(REALM)
    client = add_client(
        realm,
        {
            "clientId": client_id,
            "secret": secret,
            "serviceAccountsEnabled": True,
            "standardFlowEnabled": False,
            "attributes": {"token.endpoint.auth.method": "client_secret_basic"},
        },
    )
    ensure_service_account(realm, client)
    rs = realm.client_by_client_id(RS)
    assert rs is not None and rs.authz is not None
    policy = rs.authz.policy_named("client-researcher-team-a")
    assert policy is not None
    policy.clients.append(client.id)


def header(client_id: str, secret: str) -> str:
    """What a caller sends the proxy: `Basic base64(id:secret)`."""
    return "Basic " + base64.b64encode(f"{client_id}:{secret}".encode()).decode()


async def test_a_basic_only_client_with_odd_characters_authenticates() -> None:
    """A `client_secret_basic`-only client whose id and secret hold `+`, `%` and `:`: the form
    post is refused, the header (form-urlencoded inside) works, and the method is remembered."""
    emu = Emulator.from_files([DEMO_POLICY])
    basic_only(emu)
    async with keycloak_stack(emu) as stack:
        who = await stack.authn.authenticate(header(ODD_ID, ODD_SECRET))
        assert who.subject == ODD_ID
        assert (await stack.authz.holdings(who, None, {})).holds_project(PROD, "team-a")
        first = stack.calls("token.client_credentials")  # post refused, header, the proxy's PAT
        stack.authn.basic._tokens.clear()  # force a new mint: the learned method goes first
        await stack.authn.authenticate(header(ODD_ID, ODD_SECRET))
        assert (first, stack.calls("token.client_credentials")) == (3, 4)


async def test_a_wrong_secret_counts_one_failure_per_attempt() -> None:
    """Both methods refused in one attempt are one failure for the Basic throttle, and 401."""
    emu = Emulator.from_files([DEMO_POLICY])
    basic_only(emu)
    async with keycloak_stack(emu) as stack:
        with capture_logs() as logs, pytest.raises(Unauthorized):
            await stack.authn.authenticate(header(ODD_ID, "wrong"))
    assert [e["event"] for e in logs].count("basic_auth_failed") == 1
    assert stack.calls("token.client_credentials") == 2
    refused = next(e for e in logs if e["event"] == "basic_mint_refused")
    assert (refused["status"], refused["error"]) == (401, "unauthorized_client")


async def test_a_refused_minted_token_is_minted_once_more() -> None:
    """Keycloak refuses the token it minted (session gone, `invalid_grant`): dropped, minted once
    more and the question answered; when the new one is refused too, 401."""
    async with keycloak_stack() as stack:
        creds = header("researcher-team-a", "researcher-team-a-secret")
        who = await stack.authn.authenticate(creds)
        stack.emu.revoke(REALM, who.token)
        held = await stack.authz.holdings(who, frozenset({PROD}), {PROD: frozenset({"team-a"})})
        assert held.holds_project(PROD, "team-a")
        assert stack.calls("token.client_credentials") == 3  # the first mint, the PAT, the re-mint
        again = await stack.authn.authenticate(creds)
        assert again.token != who.token  # the re-minted token is the cached one now
        stack.emu.set_user_enabled(REALM, "service-account-researcher-team-a", False)
        with pytest.raises(Unauthorized):
            await stack.authz.holdings(again, frozenset({PROD}), {PROD: frozenset({"team-b"})})

"""Introspection and userinfo behave as Keycloak's endpoints (docs/keycloak.md)."""

from __future__ import annotations

from keycloak_emulator import Emulator
from tests.unit.emulator.support import RESEARCHER, Keycloak

INTROSPECT = "/realms/nerc/protocol/openid-connect/token/introspect"
USERINFO = "/realms/nerc/protocol/openid-connect/userinfo"
RS_AUTH = [("client_id", "prom-keycloak-proxy"), ("client_secret", "prom-keycloak-proxy-secret")]


async def test_active_token_is_described(kc: Keycloak) -> None:
    """§2.4 AccessTokenIntrospectionProvider: claims plus client_id, username, token_type, active."""
    answer = await kc.post(INTROSPECT, [("token", kc.user_token("alice")), *RS_AUTH])
    assert answer.status == 200
    assert answer.body["active"] is True
    assert (answer.body["username"], answer.body["client_id"], answer.body["token_type"]) == (
        "alice",
        "grafana",
        "Bearer",
    )


async def test_anything_invalid_is_active_false(kc: Keycloak, emu: Emulator) -> None:
    """§2.4: bad signature, expiry, revoked session → 200 {"active": false}, never 401."""
    revoked = kc.user_token("bob")
    emu.revoke("nerc", revoked)
    for token in ("garbage", emu.mint("nerc", {}, user="bob", lifetime=-1), revoked):
        answer = await kc.post(INTROSPECT, [("token", token), *RS_AUTH])
        assert (answer.status, answer.body) == (200, {"active": False})


async def test_introspection_caller_errors(kc: Keycloak) -> None:
    """§2.4: public caller → 403 "Client not allowed."; no token → 400 "Token not provided."."""
    public = await kc.post(INTROSPECT, [("token", "x"), ("client_id", "grafana")])
    missing = await kc.post(INTROSPECT, RS_AUTH)
    assert (public.status, public.body["error_description"]) == (403, "Client not allowed.")
    assert (missing.status, missing.body["error_description"]) == (400, "Token not provided.")


async def test_rpt_hint_reduces_the_answer(kc: Keycloak) -> None:
    """§2.4 RPTIntrospectionProvider: with the Go proxy's hint only a few claims remain."""
    answer = await kc.post(
        INTROSPECT,
        [("token", kc.user_token("alice")), ("token_type_hint", "requesting_party_token"), *RS_AUTH],
    )
    assert answer.body["active"] is True and "preferred_username" not in answer.body


async def test_userinfo_needs_openid_scope(kc: Keycloak, emu: Emulator) -> None:
    """§2.5 (KC ≥ 20): no `openid` scope → 403 insufficient_scope with WWW-Authenticate."""
    plain = kc.user_token("alice")
    answer = await kc.get(USERINFO, {"Authorization": f"Bearer {plain}"})
    assert answer.status == 403
    assert 'error="insufficient_scope"' in answer.headers["WWW-Authenticate"]
    with_openid = emu.password_token("nerc", "alice", "alice-password", scope="openid")["access_token"]
    ok = await kc.get(USERINFO, {"Authorization": f"Bearer {with_openid}"})
    assert (ok.status, ok.body["preferred_username"]) == (200, "alice")


async def test_userinfo_rejects_invalid_tokens(kc: Keycloak) -> None:
    """§2.5: an invalid token → 401 invalid_token."""
    answer = await kc.get(USERINFO, {"Authorization": "Bearer nope"})
    assert (answer.status, answer.body["error"]) == (401, "invalid_token")


async def test_service_account_token_introspects_with_client_id(kc: Keycloak, emu: Emulator) -> None:
    """§2.4/§2.8: a client-credentials token's `client_id` is its azp."""
    token = emu.client_token("nerc", *RESEARCHER)["access_token"]
    answer = await kc.post(INTROSPECT, [("token", token), *RS_AUTH])
    assert answer.body["client_id"] == "researcher-team-a"

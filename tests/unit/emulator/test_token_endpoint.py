"""Password, client-credentials and refresh grants answer like Keycloak (docs/keycloak.md)."""

from __future__ import annotations

import base64
from typing import Any

import jwt
import pytest

from keycloak_emulator import Emulator, EmulatorError
from tests.unit.emulator.support import DEMO, RESEARCHER, Keycloak


def claims_of(token: str) -> dict[str, Any]:
    """Decode without verifying (the shape is under test here, not the signature)."""
    decoded: dict[str, Any] = jwt.decode(token, options={"verify_signature": False})
    return decoded


async def test_password_grant_answer_and_claims(kc: Keycloak) -> None:
    """§2.2/§2.3/§2.8: refresh token + session; claims iss/sub/azp/typ/sid/preferred_username."""
    answer = await kc.post(
        kc.token_url,
        [
            ("grant_type", "password"),
            ("client_id", "grafana"),
            ("username", "alice"),
            ("password", "alice-password"),
        ],
    )
    assert answer.status == 200
    assert {"access_token", "refresh_token", "session_state"} <= set(answer.body)
    assert answer.body["token_type"] == "Bearer" and answer.body["expires_in"] == 300
    claims = claims_of(answer.body["access_token"])
    assert claims["iss"] == f"{kc.server.base_url}/realms/nerc"
    assert (claims["azp"], claims["typ"], claims["preferred_username"]) == ("grafana", "Bearer", "alice")
    assert claims["aud"] == ["account", "prom-keycloak-proxy"]  # audience mapper of the demo file
    assert claims["scope"] == "profile email" and "sid" in claims and "client_id" not in claims
    header = jwt.get_unverified_header(answer.body["access_token"])
    assert header["alg"] == "RS256" and header["typ"] == "JWT" and header["kid"]


async def test_openid_scope_adds_an_id_token(kc: Keycloak) -> None:
    """§2.2: `scope=openid` → `id_token` in the answer and `openid` in the scope claim."""
    answer = await kc.post(
        kc.token_url,
        [
            ("grant_type", "password"),
            ("client_id", "grafana"),
            ("username", "bob"),
            ("password", "bob-password"),
            ("scope", "openid"),
        ],
    )
    assert claims_of(answer.body["id_token"])["typ"] == "ID"
    assert claims_of(answer.body["access_token"])["scope"] == "openid profile email"


async def test_wrong_password_is_400_invalid_grant(kc: Keycloak) -> None:
    """§0.0 / PR keycloak#46528 (`changes-26_6_0.adoc`): wrong password → 400 invalid_grant."""
    answer = await kc.post(
        kc.token_url,
        [("grant_type", "password"), ("client_id", "grafana"), ("username", "bob"), ("password", "nope")],
    )
    assert (answer.status, answer.body) == (
        400,
        {"error": "invalid_grant", "error_description": "Invalid user credentials"},
    )


def test_wrong_password_was_401_before_26_6() -> None:
    """§2.2: Keycloak 24–26.5 answered a wrong password with 401 invalid_grant."""
    emu = Emulator.from_files([DEMO], keycloak_version="26.5.7")
    with pytest.raises(EmulatorError) as caught:
        emu.password_token("nerc", "bob", "nope")
    assert (caught.value.status, caught.value.body["error"]) == (401, "invalid_grant")


async def test_direct_access_disabled_client_refuses_password_grant(kc: Keycloak) -> None:
    """§2.2: directAccessGrantsEnabled=false → 400 unauthorized_client."""
    answer = await kc.post(
        kc.token_url,
        [
            ("grant_type", "password"),
            ("username", "bob"),
            ("password", "bob-password"),
            ("client_id", RESEARCHER[0]),
            ("client_secret", RESEARCHER[1]),
        ],
    )
    assert (answer.status, answer.body["error_description"]) == (
        400,
        "Client not allowed for direct access grants",
    )


async def test_client_credentials_via_basic_and_form(kc: Keycloak) -> None:
    """§2.1: Basic or form auth; stateless SA token with client_id, no refresh token, no sid."""
    basic = base64.b64encode(":".join(RESEARCHER).encode()).decode()
    by_basic = await kc.post(
        kc.token_url, [("grant_type", "client_credentials")], {"Authorization": f"Basic {basic}"}
    )
    by_form = await kc.post(
        kc.token_url,
        [
            ("grant_type", "client_credentials"),
            ("client_id", RESEARCHER[0]),
            ("client_secret", RESEARCHER[1]),
        ],
    )
    for answer in (by_basic, by_form):
        assert answer.status == 200 and "refresh_token" not in answer.body
        assert answer.body["refresh_expires_in"] == 0
        claims = claims_of(answer.body["access_token"])
        assert claims["client_id"] == claims["azp"] == "researcher-team-a"
        assert claims["preferred_username"] == "service-account-researcher-team-a"
        assert "sid" not in claims


async def test_client_authentication_errors(kc: Keycloak) -> None:
    """§2.1: bad secret → 401 unauthorized_client; no client_id → 400 invalid_client."""
    bad = await kc.post(
        kc.token_url,
        [("grant_type", "client_credentials"), ("client_id", RESEARCHER[0]), ("client_secret", "wrong")],
    )
    missing = await kc.post(kc.token_url, [("grant_type", "client_credentials")])
    assert (bad.status, bad.body) == (
        401,
        {"error": "unauthorized_client", "error_description": "Invalid client or Invalid client credentials"},
    )
    assert (missing.status, missing.body) == (
        400,
        {"error": "invalid_client", "error_description": "Missing client_id parameter"},
    )


async def test_public_client_cannot_use_client_credentials(kc: Keycloak) -> None:
    """§2.1 ClientCredentialsGrantType: public client → 401 unauthorized_client."""
    answer = await kc.post(kc.token_url, [("grant_type", "client_credentials"), ("client_id", "grafana")])
    assert (answer.status, answer.body["error_description"]) == (
        401,
        "Public client not allowed to retrieve service account",
    )


async def test_grant_type_errors(kc: Keycloak) -> None:
    """§2.3: missing grant_type → invalid_request; unknown → unsupported_grant_type."""
    missing = await kc.post(kc.token_url, [("client_id", "grafana")])
    unknown = await kc.post(kc.token_url, [("grant_type", "magic"), ("client_id", "grafana")])
    assert missing.body["error_description"] == "Missing form parameter: grant_type"
    assert (unknown.status, unknown.body["error"]) == (400, "unsupported_grant_type")


async def test_refresh_grant_issues_new_tokens_for_the_same_session(kc: Keycloak, emu: Emulator) -> None:
    """§2.3: a refresh token of the client gives a new access token with the same `sid`."""
    first = emu.password_token("nerc", "carol", "carol-password")
    answer = await kc.post(
        kc.token_url,
        [
            ("grant_type", "refresh_token"),
            ("client_id", "grafana"),
            ("refresh_token", first["refresh_token"]),
        ],
    )
    assert answer.status == 200
    assert claims_of(answer.body["access_token"])["sid"] == claims_of(first["access_token"])["sid"]


async def test_user_without_profile_fields_is_not_fully_set_up(emu: Emulator) -> None:
    """§2.2 KC ≥ 24 gotcha: a user lacking email/first/last name → 400 "Account is not fully set up"."""
    from keycloak_emulator import EmulatorError

    user = emu.realm("nerc").user_by_username("bob")
    assert user is not None
    user.email = None
    try:
        emu.password_token("nerc", "bob", "bob-password")
    except EmulatorError as exc:
        assert (exc.status, exc.body["error_description"]) == (400, "Account is not fully set up")
    else:
        raise AssertionError("password grant should have failed")

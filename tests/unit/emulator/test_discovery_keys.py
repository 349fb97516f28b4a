"""Discovery, JWKS and key rotation (docs/keycloak.md)."""

from __future__ import annotations

import jwt

from keycloak_emulator import Emulator
from tests.unit.emulator.support import Keycloak


async def test_discovery_document_points_at_this_server(kc: Keycloak) -> None:
    """§2.6: issuer = {base}/realms/{realm}; token, certs, introspection, userinfo endpoints."""
    answer = await kc.get("/realms/nerc/.well-known/openid-configuration")
    issuer = f"{kc.server.base_url}/realms/nerc"
    assert answer.body["issuer"] == issuer
    assert answer.body["token_endpoint"] == f"{issuer}/protocol/openid-connect/token"
    assert answer.body["jwks_uri"] == f"{issuer}/protocol/openid-connect/certs"
    assert answer.body["introspection_endpoint"].endswith("/token/introspect")


async def test_uma2_document_adds_protection_endpoints(kc: Keycloak) -> None:
    """§2.6: uma2-configuration has resource_registration_endpoint and both introspection keys."""
    body = (await kc.get("/realms/nerc/.well-known/uma2-configuration")).body
    assert body["resource_registration_endpoint"].endswith("/authz/protection/resource_set")
    assert body["token_introspection_endpoint"] == body["introspection_endpoint"]


async def test_unknown_realm_is_404(kc: Keycloak) -> None:
    """Keycloak answers 404 "Realm does not exist" for unknown realms."""
    answer = await kc.get("/realms/nope/.well-known/openid-configuration")
    assert (answer.status, answer.body["error"]) == (404, "Realm does not exist")


async def test_jwks_verifies_issued_tokens(kc: Keycloak) -> None:
    """§2.7: RS256 `sig` keys whose kid matches the token header verify the signature."""
    token = kc.user_token("alice")
    keys = jwt.PyJWKSet.from_dict((await kc.get("/realms/nerc/protocol/openid-connect/certs")).body)
    key = next(k for k in keys.keys if k.key_id == jwt.get_unverified_header(token)["kid"])
    claims = jwt.decode(token, key.key, algorithms=["RS256"], options={"verify_aud": False})
    assert claims["preferred_username"] == "alice"


async def test_rotation_keeps_old_key_until_retired(kc: Keycloak, emu: Emulator) -> None:
    """Rotation: new tokens use the new kid; old tokens verify until the old key is retired."""
    old = kc.user_token("dave")
    new_kid = emu.rotate_key("nerc")
    new = kc.user_token("dave")
    certs = (await kc.get("/realms/nerc/protocol/openid-connect/certs")).body
    assert jwt.get_unverified_header(new)["kid"] == new_kid
    assert [k["use"] for k in certs["keys"]] == ["sig", "sig", "enc"]
    assert (await kc.uma(old, "HUB-moc#GET")).status == 200
    emu.retire_keys("nerc")
    assert (await kc.uma(old, "HUB-moc#GET")).status == 400  # invalid_grant, 26.6+
    assert (await kc.uma(new, "HUB-moc#GET")).status == 200


async def test_realm_summary_has_public_key(kc: Keycloak) -> None:
    """§2.6: GET /realms/{realm} carries `public_key` (python-keycloak public_key())."""
    body = (await kc.get("/realms/nerc")).body
    assert body["realm"] == "nerc" and len(body["public_key"]) > 300

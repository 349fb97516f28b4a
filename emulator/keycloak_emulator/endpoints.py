"""Introspection, userinfo and the Protection API `resource_set` (reference §2.4, §2.5, §4.2)."""

from __future__ import annotations

from typing import Any

from keycloak_emulator import tokens
from keycloak_emulator.errors import KeycloakError
from keycloak_emulator.form import Form
from keycloak_emulator.grants import TokenCall, authenticate_client
from keycloak_emulator.store import Realm, Resource, ResourceServer

HINTS = {"access_token", "refresh_token", "id_token", "requesting_party_token"}
RPT_KEYS = ("jti", "acr", "typ", "exp", "iat", "aud", "nbf")


def introspect(call: TokenCall) -> dict[str, Any]:
    """Token introspection: confidential callers only; anything invalid is `active:false`."""
    client = authenticate_client(call)
    if client.public:
        raise KeycloakError(403, "invalid_request", "Client not allowed.")
    if any(len(call.form.getall(k)) > 1 for k in ("token", "token_type_hint")):
        raise KeycloakError(400, "invalid_request", "duplicated parameter")
    token = call.form.get("token")
    if not token:
        raise KeycloakError(400, "invalid_request", "Token not provided.")
    hint = call.form.get("token_type_hint")
    if hint and hint not in HINTS:
        raise KeycloakError(400, "invalid_request", "Unsupported token type.")
    typ = "Refresh" if hint == "refresh_token" else "Bearer"
    verified = tokens.verify(call.realm, call.issuer, token, typ=typ, now=call.now)
    if verified is None:
        return {"active": False}
    claims = verified.claims
    if hint == "requesting_party_token":
        out = {k: claims[k] for k in RPT_KEYS if k in claims}
        perms = (claims.get("authorization") or {}).get("permissions")
        if perms is not None:
            out["permissions"] = [
                {**p, "resource_id": p.get("rsid"), "resource_scopes": p.get("scopes", [])} for p in perms
            ]
        out["active"] = True
        return out
    return {
        **claims,
        "client_id": claims.get("azp"),
        "username": claims.get("preferred_username"),
        "token_type": claims.get("typ"),
        "active": True,
    }


def userinfo(realm: Realm, issuer: str, authorization: str | None, now: int) -> dict[str, Any]:
    """UserInfo: needs a valid bearer token carrying the `openid` scope (KC ≥ 20)."""
    auth = authorization or ""
    token = auth[7:].strip() if auth[:7].lower() == "bearer " else ""
    verified = tokens.verify(realm, issuer, token, now=now) if token else None
    if verified is None:
        header = _challenge(realm, "invalid_token", "Token verification failed")
        raise KeycloakError(
            401, "invalid_token", "Token verification failed", headers={"WWW-Authenticate": header}
        )
    if "openid" not in str(verified.claims.get("scope", "")).split():
        header = _challenge(realm, "insufficient_scope", "Missing openid scope")
        raise KeycloakError(
            403, "insufficient_scope", "Missing openid scope", headers={"WWW-Authenticate": header}
        )
    keys = ("sub", "email_verified", "name", "preferred_username", "given_name", "family_name", "email")
    return {k: verified.claims[k] for k in keys if k in verified.claims}


def protection_server(realm: Realm, issuer: str, authorization: str | None, now: int) -> ResourceServer:
    """The resource server whose PAT (service-account token with `uma_protection`) was sent."""
    auth = authorization or ""
    token = auth[7:].strip() if auth[:7].lower() == "bearer " else ""
    verified = tokens.verify(realm, issuer, token, now=now) if token else None
    if verified is None:
        raise KeycloakError(401, "invalid_bearer_token", "Could not obtain bearer access_token from request.")
    client = verified.client
    if client.authz is None:
        raise KeycloakError(
            403,
            "invalid_clientId",
            f"Client application with id [{client.client_id}] is not a resource server.",
        )
    roles = (verified.claims.get("resource_access") or {}).get(client.client_id, {}).get("roles", [])
    if "uma_protection" not in roles:
        raise KeycloakError(403, "invalid_scope", "Requires uma_protection scope.")
    return client.authz


def find_resources(rs: ResourceServer, query: Form) -> list[Resource]:
    """`GET resource_set` filters: name (substring, or exact with `exactName=true`), type, owner."""
    found = list(rs.resources.values())
    name = (query.get("name") or "").strip()
    if name:
        exact = (query.get("exactName") or "").lower() == "true"
        found = [r for r in found if (r.name == name if exact else name.lower() in r.name.lower())]
    if query.get("type"):
        found = [r for r in found if r.type == query.get("type")]
    if query.get("_id"):
        found = [r for r in found if r.id == query.get("_id")]
    first = int(query.get("first") or 0)
    maximum = int(query.get("max") or 100)
    return found[first:] if maximum < 0 else found[first : first + maximum]


def resource_json(rs: ResourceServer, resource: Resource, owner_name: str) -> dict[str, Any]:
    """A ResourceRepresentation as the admin and protection APIs return it."""
    rep = {
        "name": resource.name,
        "type": resource.type,
        "owner": {"id": resource.owner, "name": owner_name},
        "ownerManagedAccess": resource.owner_managed_access,
        "displayName": resource.display_name,
        "attributes": resource.attributes,
        "_id": resource.id,
        "uris": resource.uris,
        "scopes": [{"id": s, "name": rs.scopes[s].name} for s in resource.scope_ids if s in rs.scopes],
    }
    # Keycloak's JSON mapper leaves out nulls.
    return {k: v for k, v in rep.items() if v is not None}


def _challenge(realm: Realm, error: str, description: str) -> str:
    return f'Bearer realm="{realm.name}", error="{error}", error_description="{description}"'

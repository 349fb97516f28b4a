"""Introspection, userinfo and the Protection API `resource_set` (docs/keycloak.md)."""

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
    if verified is None or not _audience_allows(call, client.client_id, verified.claims):
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


def _audience_allows(call: TokenCall, client_id: str, claims: dict[str, Any]) -> bool:
    """26.6.2+: the introspecting client must be in the token's `aud` (`changes-26_6_2.adoc`
    "Token introspection now validates audience claim", PR keycloak#51681)."""
    if not (call.version.introspection_checks_audience and call.introspection_audience_check):
        return True
    if claims.get("typ") != "Bearer":
        return True  # the check is the access-token provider's
    aud = claims.get("aud")
    audiences = aud if isinstance(aud, list) else [aud]
    return client_id in audiences


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


def find_resources(realm: Realm, rs: ResourceServer, query: Form) -> list[Resource]:
    """`GET resource_set` as `ResourceSetService.find` filters it (docs/keycloak.md).

    `name` is a case-insensitive LIKE, or with `exactName=true` `lower(name) = lower(value)`;
    `owner` is a clientId (turned into the client's internal id), else a username (the user's
    id); `scope` keeps resources having a scope whose name is LIKE the value; results are
    sorted by name and paged with `first`/`max` (default 100).
    """
    found = list(rs.resources.values())
    name = (query.get("name") or "").strip().lower()
    if name:
        exact = (query.get("exactName") or "").lower() == "true"
        found = [r for r in found if (r.name.lower() == name if exact else name in r.name.lower())]
    owner = query.get("owner")
    if owner:
        owner_id = _owner_id(realm, owner)
        found = [r for r in found if r.owner == owner_id]
    scope = (query.get("scope") or "").lower()
    if scope:
        like = {sid for sid, sc in rs.scopes.items() if scope in sc.name.lower()}
        found = [r for r in found if like & set(r.scope_ids)]
    if query.get("type"):
        found = [r for r in found if r.type == query.get("type")]
    if query.get("_id"):
        found = [r for r in found if r.id == query.get("_id")]
    found.sort(key=lambda r: r.name)
    first = int(query.get("first") or 0)
    maximum = int(query.get("max") or 100)
    return found[first:] if maximum < 0 else found[first : first + maximum]


def _owner_id(realm: Realm, owner: str) -> str:
    """`owner=`: a clientId first (its internal id), else a username (the user's id), else as given."""
    client = realm.client_by_client_id(owner)
    if client is not None:
        return client.id
    user = realm.user_by_username(owner)
    return user.id if user is not None else owner


def owner_name(realm: Realm, rs: ResourceServer, resource: Resource) -> str:
    """`owner.name` of a deep representation: the clientId, or the owning user's real username."""
    if resource.owner == rs.id and rs.id in realm.clients:
        return realm.clients[rs.id].client_id
    user = realm.users.get(resource.owner)
    return user.username if user is not None else resource.owner


def resource_json(realm: Realm, rs: ResourceServer, resource: Resource) -> dict[str, Any]:
    """A ResourceRepresentation as the admin and protection APIs return it (`ModelToRepresentation`)."""
    rep = {
        "name": resource.name,
        "type": resource.type,
        "owner": {"id": resource.owner, "name": owner_name(realm, rs, resource)},
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

"""Access/refresh tokens with the claims Keycloak 24–26 issues (docs/keycloak.md), and their checks."""

from __future__ import annotations

import secrets
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import jwt

from keycloak_emulator.keys import SigningKey
from keycloak_emulator.store import Client, Realm, User

DEFAULT_SCOPE = "profile email"
REFRESH_LIFETIME = 1800
ACCOUNT_ROLES = ["manage-account", "manage-account-links", "view-profile"]


@dataclass(frozen=True)
class Verified:
    """A token that passed the checks Keycloak's bearer authenticator makes."""

    claims: dict[str, Any]
    user: User
    client: Client


def scope_claim(requested: str | None) -> str:
    """The `scope` claim: the default client scopes plus `openid` when asked for."""
    words = (requested or "").split()
    return ("openid " if "openid" in words else "") + DEFAULT_SCOPE


def user_claims(
    realm: Realm, issuer: str, user: User, client: Client, *, scope: str, session: str, now: int
) -> dict[str, Any]:
    """Claims of a user's access token obtained through `client` (password or code grant)."""
    claims = _base(realm, issuer, user, client, scope=scope, now=now)
    claims["sid"] = session
    claims.update(
        {
            "email_verified": user.email_verified,
            "name": " ".join(p for p in (user.first_name, user.last_name) if p),
            "preferred_username": user.username,
            "given_name": user.first_name or "",
            "family_name": user.last_name or "",
        }
    )
    if user.email:
        claims["email"] = user.email
    return claims


def service_account_claims(
    realm: Realm, issuer: str, client: Client, user: User, *, scope: str, now: int, host: str
) -> dict[str, Any]:
    """Claims of a client-credentials token: no session, `client_id`/`clientHost` present."""
    claims = _base(realm, issuer, user, client, scope=scope, now=now)
    claims.update(
        {
            "email_verified": False,
            "clientHost": host,
            "preferred_username": user.username,
            "clientAddress": host,
            "client_id": client.client_id,
        }
    )
    return claims


def refresh_claims(access: Mapping[str, Any], *, issuer: str, now: int) -> dict[str, Any]:
    """Claims of the refresh token that accompanies a session-bound access token."""
    return {
        "exp": now + REFRESH_LIFETIME,
        "iat": now,
        "jti": str(uuid.uuid4()),
        "iss": issuer,
        "aud": issuer,
        "sub": access["sub"],
        "typ": "Refresh",
        "azp": access["azp"],
        "sid": access.get("sid"),
        "scope": access.get("scope", DEFAULT_SCOPE),
    }


def new_session() -> str:
    """A session id in the 26.5+ form (24 random characters)."""
    return secrets.token_urlsafe(18)[:24]


def sign(claims: Mapping[str, Any], key: SigningKey) -> str:
    """Sign with the realm key; header `{"alg":"RS256","typ":"JWT","kid":…}`."""
    return jwt.encode(dict(claims), key.private_key, algorithm="RS256", headers={"kid": key.kid})


def verify(
    realm: Realm, issuer: str, token: str, *, typ: str = "Bearer", now: int | None = None
) -> Verified | None:
    """Check signature (published keys only), `iss`, `exp`, `typ`, user, client and session."""
    try:
        header = jwt.get_unverified_header(token)
    except jwt.PyJWTError:
        return None
    key = next((k for k in realm.keys if k.kid == header.get("kid")), None)
    if key is None or header.get("alg") != "RS256":
        return None
    try:
        claims: dict[str, Any] = jwt.decode(
            token,
            key.private_key.public_key(),
            algorithms=["RS256"],
            issuer=issuer,
            options={"verify_aud": False, "require": ["exp", "iss", "sub"], "verify_iat": False},
            # Keycloak's TokenVerifier allows no clock skew by default.
            leeway=0,
        )
    except jwt.PyJWTError:
        return None
    if now is not None and int(claims["exp"]) <= now:
        return None
    return _live(realm, claims, typ)


def _live(realm: Realm, claims: dict[str, Any], typ: str) -> Verified | None:
    if claims.get("typ") != typ:
        return None
    if claims.get("jti") in realm.revoked_tokens or claims.get("sid") in realm.revoked_sessions:
        return None
    user = realm.users.get(str(claims.get("sub")))
    client = realm.client_by_client_id(str(claims.get("azp")))
    if user is None or not user.enabled or client is None or not client.enabled:
        return None
    return Verified(claims=claims, user=user, client=client)


def _base(realm: Realm, issuer: str, user: User, client: Client, *, scope: str, now: int) -> dict[str, Any]:
    audiences = ["account", *_mapped_audiences(client)]
    resource_access: dict[str, Any] = {"account": {"roles": list(ACCOUNT_ROLES)}}
    if user.service_account_client == client.id and client.authz is not None:
        # A resource server's service account holds `uma_protection`: the PAT of docs/keycloak.md.
        resource_access[client.client_id] = {"roles": ["uma_protection"]}
    claims: dict[str, Any] = {
        "exp": now + realm.token_lifespan,
        "iat": now,
        "jti": str(uuid.uuid4()),
        "iss": issuer,
        "aud": audiences[0] if len(audiences) == 1 else audiences,
        "sub": user.id,
        "typ": "Bearer",
        "azp": client.client_id,
        "acr": "1",
        "allowed-origins": ["/*"],
        "realm_access": {"roles": ["offline_access", f"default-roles-{realm.name}", "uma_authorization"]},
        "resource_access": resource_access,
        "scope": scope,
    }
    claims.update(_group_claims(realm, user, client))
    return claims


def _mapped_audiences(client: Client) -> list[str]:
    return [
        m["config"]["included.client.audience"]
        for m in client.protocol_mappers
        if m.get("protocolMapper") == "oidc-audience-mapper"
        and m.get("config", {}).get("access.token.claim", "true") == "true"
        and m.get("config", {}).get("included.client.audience")
    ]


def _group_claims(realm: Realm, user: User, client: Client) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for mapper in client.protocol_mappers:
        if mapper.get("protocolMapper") != "oidc-group-membership-mapper":
            continue
        config = mapper.get("config", {})
        full = config.get("full.path", "true") == "true"
        values = [
            realm.group_path(g) if full else realm.groups[g].name for g in user.group_ids if g in realm.groups
        ]
        out[config.get("claim.name", "groups")] = values
    return out

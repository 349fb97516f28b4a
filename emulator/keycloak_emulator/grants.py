"""The token endpoint's grants: password, client_credentials, refresh_token, UMA (docs/keycloak.md)."""

from __future__ import annotations

import base64
import binascii
import time
import uuid
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import unquote_plus

from keycloak_emulator import tokens, uma
from keycloak_emulator.errors import KeycloakError
from keycloak_emulator.evaluation import identity_of
from keycloak_emulator.form import Form
from keycloak_emulator.store import Client, Realm, User
from keycloak_emulator.versions import CURRENT, Version

UMA_GRANT = "urn:ietf:params:oauth:grant-type:uma-ticket"
BAD_CLIENT = "Invalid client or Invalid client credentials"


@dataclass(frozen=True)
class TokenCall:
    """One token-endpoint request, already parsed."""

    realm: Realm
    issuer: str
    form: Form
    authorization: str | None
    host: str
    now: int
    version: Version = CURRENT
    # The server option `allow-token-introspection-without-audience-check` (false by default).
    introspection_audience_check: bool = True
    # Resources evaluated by this call (the cost model charges time per resource).
    evaluated: list[int] = field(default_factory=lambda: [0])

    def invalid_grant(self, description: str) -> KeycloakError:
        """`invalid_grant`: 400 since Keycloak 26.6.0 (PR keycloak#46528), 401 before."""
        return KeycloakError(400 if self.version.invalid_grant_is_400 else 401, "invalid_grant", description)


def grant_key(form: Form) -> str:
    """Counter name for a token call: `token.password`, `token.uma`, …"""
    grant = form.get("grant_type") or "missing"
    return "token.uma" if grant == UMA_GRANT else f"token.{grant}"


def token(call: TokenCall) -> Any:
    """Answer the token endpoint; raise `KeycloakError` with Keycloak's body on failure."""
    grant = call.form.get("grant_type")
    if not grant:
        raise KeycloakError(400, "invalid_request", "Missing form parameter: grant_type")
    if grant == "password":
        return password_grant(call)
    if grant == "client_credentials":
        return client_credentials_grant(call)
    if grant == "refresh_token":
        return refresh_grant(call)
    if grant == UMA_GRANT:
        return uma_grant(call)
    raise KeycloakError(400, "unsupported_grant_type", "Unsupported grant_type")


def authenticate_client(call: TokenCall) -> Client:
    """Client authentication: Basic header or `client_id`/`client_secret` in the form.

    The Basic header carries id and secret form-urlencoded (RFC 6749 §2.3.1; Keycloak's
    `BasicAuthHelper.RFC6749.parseHeader` URL-decodes both, so `+` reads as a space). Since 26.6.0
    a client registered for `client_secret_basic` accepts only the header and one registered for
    `client_secret_post` only the form (`changes-26_6_0.adoc`); clients without a registered
    method (migrated ones) accept both.
    """
    client_id, secret = call.form.get("client_id"), call.form.get("client_secret")
    auth = call.authorization or ""
    method = "client_secret_post" if secret is not None else None
    if auth[:6].lower() == "basic ":
        try:
            decoded = base64.b64decode(auth[6:].strip(), validate=True).decode()
            raw_id, _, raw_secret = decoded.partition(":")
        except (binascii.Error, UnicodeDecodeError) as exc:
            raise KeycloakError(400, "invalid_client", "Missing client_id parameter") from exc
        client_id, secret, method = unquote_plus(raw_id), unquote_plus(raw_secret), "client_secret_basic"
    if not client_id:
        raise KeycloakError(400, "invalid_client", "Missing client_id parameter")
    client = call.realm.client_by_client_id(client_id)
    if client is None or not client.enabled:
        raise KeycloakError(401, "invalid_client", BAD_CLIENT)
    if client.public:
        return client
    registered = client.secret_method
    if call.version.enforces_secret_method and registered and method and method != registered:
        raise KeycloakError(401, "unauthorized_client", BAD_CLIENT)
    if not secret:
        raise KeycloakError(401, "unauthorized_client", "Client secret not provided in request")
    if secret != client.secret:
        raise KeycloakError(401, "unauthorized_client", BAD_CLIENT)
    return client


def password_grant(call: TokenCall) -> dict[str, Any]:
    """Resource-owner password grant (`ResourceOwnerPasswordCredentialsGrantType`)."""
    client = authenticate_client(call)
    if not client.direct_access:
        raise KeycloakError(400, "unauthorized_client", "Client not allowed for direct access grants")
    user = call.realm.user_by_username(call.form.get("username") or "")
    if user is None or user.service_account_client or user.password is None:
        raise call.invalid_grant("Invalid user credentials")
    if user.password != (call.form.get("password") or ""):
        raise call.invalid_grant("Invalid user credentials")
    if not user.enabled:
        raise KeycloakError(400, "invalid_grant", "Account disabled")
    if not (user.email and user.first_name and user.last_name):
        # KC ≥ 24's user profile requires email, first and last name (docs/keycloak.md).
        raise KeycloakError(400, "invalid_grant", "Account is not fully set up")
    return session_response(call, user, client, tokens.new_session(), call.form.get("scope"))


def session_response(
    call: TokenCall, user: User, client: Client, session: str, scope: str | None
) -> dict[str, Any]:
    """Access, refresh and (with `openid`) ID token of a session-bound login."""
    scope_value = tokens.scope_claim(scope)
    key = call.realm.active_key
    access = tokens.user_claims(
        call.realm, call.issuer, user, client, scope=scope_value, session=session, now=call.now
    )
    refresh = tokens.refresh_claims(access, issuer=call.issuer, now=call.now)
    body: dict[str, Any] = {
        "access_token": tokens.sign(access, key),
        "expires_in": call.realm.token_lifespan,
        "refresh_expires_in": tokens.REFRESH_LIFETIME,
        "refresh_token": tokens.sign(refresh, key),
        "token_type": "Bearer",
        "not-before-policy": 0,
        "session_state": session,
        "scope": scope_value,
    }
    if "openid" in scope_value.split():
        id_claims = {**access, "typ": "ID", "aud": client.client_id, "jti": str(uuid.uuid4())}
        for claim in ("scope", "realm_access", "resource_access", "allowed-origins"):
            id_claims.pop(claim, None)
        body["id_token"] = tokens.sign(id_claims, key)
    return body


def client_credentials_grant(call: TokenCall) -> dict[str, Any]:
    """Client-credentials grant: a stateless service-account token, no refresh token (§2.1)."""
    client = authenticate_client(call)
    if client.public:
        raise KeycloakError(
            401, "unauthorized_client", "Public client not allowed to retrieve service account"
        )
    if not client.service_accounts:
        raise KeycloakError(401, "unauthorized_client", "Client not enabled to retrieve service account")
    user = call.realm.service_account(client)
    if user is None:
        raise KeycloakError(
            401, "invalid_request", "The associated service account for the client does not exist"
        )
    scope_value = tokens.scope_claim(call.form.get("scope"))
    claims = tokens.service_account_claims(
        call.realm, call.issuer, client, user, scope=scope_value, now=call.now, host=call.host
    )
    return {
        "access_token": tokens.sign(claims, call.realm.active_key),
        "expires_in": call.realm.token_lifespan,
        "refresh_expires_in": 0,
        "token_type": "Bearer",
        "not-before-policy": 0,
        "scope": scope_value,
    }


def refresh_grant(call: TokenCall) -> dict[str, Any]:
    """Refresh-token grant: the refresh token must belong to the authenticated client."""
    client = authenticate_client(call)
    verified = tokens.verify(
        call.realm, call.issuer, call.form.get("refresh_token") or "", typ="Refresh", now=call.now
    )
    if verified is None or verified.client.id != client.id:
        raise KeycloakError(400, "invalid_grant", "Invalid refresh token")
    session = str(verified.claims.get("sid") or tokens.new_session())
    return session_response(call, verified.user, client, session, verified.claims.get("scope"))


def uma_grant(call: TokenCall) -> Any:
    """The UMA grant with the checks in `PermissionGrantType`/ATS order (docs/keycloak.md)."""
    verified = _uma_identity(call)
    # The emulator's clock counts whole seconds; Keycloak's `new Date()` has milliseconds.
    identity = identity_of(verified.user, verified.client, verified.claims, call.now + time.time() % 1.0)
    audience = call.form.get("audience")
    if not audience:
        raise KeycloakError(400, "invalid_request", "You must provide the issuedFor")
    rs_client = call.realm.client_by_client_id(audience)
    if rs_client is None:
        raise KeycloakError(400, "invalid_request", f"Unknown resource server id: [{audience}]")
    rs = rs_client.authz
    if rs is None:
        raise KeycloakError(400, "invalid_request", "Client does not support permissions")
    permissions = call.form.getall("permission")
    extra = (call.form.get("scope") or "").split()
    if permissions:
        asked = uma.requested(call.realm, rs, identity, permissions, extra)
    else:
        asked = uma.everything(rs, identity)
    granted = uma.decide(call.realm, rs, identity, asked)
    call.evaluated[0] += len(asked)
    limit = call.form.get("response_permissions_limit")
    if limit and limit.isdigit():
        granted = granted[: int(limit)]
    if not granted:
        raise KeycloakError(403, "access_denied", "not_authorized")
    mode = call.form.get("response_mode")
    include_name = (call.form.get("response_include_resource_name") or "true").lower() != "false"
    if mode == "permissions":
        return [g.as_json(include_name) for g in granted]
    if mode == "decision":
        return {"result": True}
    if mode is not None:
        raise KeycloakError(400, "invalid_request", "Invalid response_mode")
    return _rpt(call, verified.claims, rs_client, [g.as_json(include_name) for g in granted])


def _uma_identity(call: TokenCall) -> tokens.Verified:
    auth = call.authorization or ""
    if auth.lower().startswith("bearer"):
        verified = tokens.verify(call.realm, call.issuer, auth[6:].strip(), now=call.now)
        if verified is None:
            raise call.invalid_grant("Invalid bearer token")
        return verified
    client = authenticate_client(call)
    subject = call.form.get("subject_token")
    if subject:
        verified = tokens.verify(call.realm, call.issuer, subject, now=call.now)
        if verified is None:
            raise KeycloakError(400, "unauthorized_client", "Invalid identity")
        return verified
    # No bearer: Keycloak evaluates a temporary token of the client's service account.
    user = call.realm.service_account(client)
    if user is None:
        raise KeycloakError(400, "unauthorized_client", "Invalid identity")
    claims = tokens.service_account_claims(
        call.realm,
        call.issuer,
        client,
        user,
        scope=tokens.DEFAULT_SCOPE,
        now=call.now,
        host=call.host,
    )
    return tokens.Verified(claims=claims, user=user, client=client)


def _rpt(
    call: TokenCall, claims: dict[str, Any], rs_client: Client, perms: list[dict[str, Any]]
) -> dict[str, Any]:
    aud = claims.get("aud", [])
    audiences = list(aud) if isinstance(aud, list) else [aud]
    if rs_client.client_id not in audiences:
        audiences.append(rs_client.client_id)
    rpt = {
        **claims,
        "jti": str(uuid.uuid4()),
        "iat": call.now,
        "exp": call.now + call.realm.token_lifespan,
        "aud": audiences[0] if len(audiences) == 1 else audiences,
        "authorization": {"permissions": perms},
    }
    return {
        "upgraded": False,
        "access_token": tokens.sign(rpt, call.realm.active_key),
        "expires_in": call.realm.token_lifespan,
        "refresh_expires_in": 0,
        "token_type": "Bearer",
        "not-before-policy": 0,
    }

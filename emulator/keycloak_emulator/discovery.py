"""OIDC and UMA discovery documents and the realm summary (docs/keycloak.md)."""

from __future__ import annotations

from typing import Any

from keycloak_emulator.store import Realm


def openid_configuration(issuer: str) -> dict[str, Any]:
    """`/.well-known/openid-configuration` with the fields Keycloak publishes."""
    oidc = f"{issuer}/protocol/openid-connect"
    return {
        "issuer": issuer,
        "authorization_endpoint": f"{oidc}/auth",
        "token_endpoint": f"{oidc}/token",
        "introspection_endpoint": f"{oidc}/token/introspect",
        "userinfo_endpoint": f"{oidc}/userinfo",
        "end_session_endpoint": f"{oidc}/logout",
        "jwks_uri": f"{oidc}/certs",
        "check_session_iframe": f"{oidc}/login-status-iframe.html",
        "registration_endpoint": f"{issuer}/clients-registrations/openid-connect",
        "grant_types_supported": [
            "authorization_code",
            "implicit",
            "refresh_token",
            "password",
            "client_credentials",
            "urn:openid:params:grant-type:ciba",
            "urn:ietf:params:oauth:grant-type:device_code",
        ],
        "response_types_supported": [
            "code",
            "none",
            "id_token",
            "token",
            "id_token token",
            "code id_token",
            "code token",
            "code id_token token",
        ],
        "subject_types_supported": ["public", "pairwise"],
        "id_token_signing_alg_values_supported": ["RS256"],
        "token_endpoint_auth_methods_supported": [
            "private_key_jwt",
            "client_secret_basic",
            "client_secret_post",
            "tls_client_auth",
            "client_secret_jwt",
        ],
        "scopes_supported": [
            "openid",
            "profile",
            "email",
            "roles",
            "web-origins",
            "acr",
            "basic",
            "offline_access",
            "address",
            "phone",
            "microprofile-jwt",
            "organization",
        ],
        "claims_supported": [
            "aud",
            "sub",
            "iss",
            "auth_time",
            "name",
            "given_name",
            "family_name",
            "preferred_username",
            "email",
            "acr",
        ],
        "code_challenge_methods_supported": ["plain", "S256"],
    }


def uma2_configuration(issuer: str) -> dict[str, Any]:
    """`/.well-known/uma2-configuration`: the endpoints plus the Protection API ones."""
    doc = openid_configuration(issuer)
    protection = f"{issuer}/authz/protection"
    doc.update(
        {
            "token_introspection_endpoint": doc["introspection_endpoint"],
            "resource_registration_endpoint": f"{protection}/resource_set",
            "permission_endpoint": f"{protection}/permission",
            "policy_endpoint": f"{protection}/uma-policy",
        }
    )
    return doc


def realm_summary(realm: Realm, issuer: str) -> dict[str, Any]:
    """`GET /realms/{realm}`: what python-keycloak's `public_key()` reads."""
    return {
        "realm": realm.name,
        "public_key": realm.active_key.public_base64(),
        "token-service": f"{issuer}/protocol/openid-connect",
        "account-service": f"{issuer}/account",
        "tokens-not-before": 0,
    }

"""Who a verified caller is: the `Identity` every later layer works with."""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

SERVICE_ACCOUNT_PREFIX = "service-account-"


class TokenRejected(Exception):
    """A credential the proxy will not accept; the authenticator turns it into a 401."""


@dataclass(frozen=True)
class Identity:
    """A verified caller: log name, the bearer token for Keycloak, its hash and expiry."""

    subject: str
    token: str = field(repr=False)
    token_hash: str
    exp: float
    claims: Mapping[str, Any] = field(repr=False)
    client_id: str | None = None


def token_hash(token: str) -> str:
    """SHA-256 of a token, the only form in which tokens are used as cache keys."""
    return hashlib.sha256(token.encode()).hexdigest()


def _text(claims: Mapping[str, Any], name: str) -> str | None:
    """A non-empty string claim, or None."""
    value = claims.get(name)
    return value if isinstance(value, str) and value else None


def service_client(claims: Mapping[str, Any]) -> str | None:
    """The client id of a service-account (client-credentials) token; None for people."""
    username = _text(claims, "preferred_username")
    # Keycloak names the claim `client_id` since 26.1 and `clientId` before.
    client = _text(claims, "client_id") or _text(claims, "clientId")
    if username and username.startswith(SERVICE_ACCOUNT_PREFIX):
        return client or _text(claims, "azp") or username[len(SERVICE_ACCOUNT_PREFIX) :]
    return client


def identity_from_claims(token: str, digest: str, claims: Mapping[str, Any]) -> Identity:
    """Build the identity of verified claims; a token naming nobody is rejected."""
    client = service_client(claims)
    subject = client or _text(claims, "preferred_username") or _text(claims, "sub")
    if subject is None:
        raise TokenRejected("token names no subject")
    return Identity(
        subject=subject,
        token=token,
        token_hash=digest,
        exp=float(claims["exp"]),
        claims=MappingProxyType(dict(claims)),
        client_id=client,
    )

"""Local verification of Keycloak access tokens (JWTs), with verified tokens cached until `exp`."""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import jwt
import structlog
from cachetools import TLRUCache

from proxy import caches
from proxy.authn.identity import Identity, TokenRejected, identity_from_claims, token_hash
from proxy.authn.jwks import KeyStore, VerifyKey
from proxy.errors import KeycloakUnavailable

log = structlog.get_logger(__name__)

MAX_TOKEN_BYTES = 16 * 1024
NBF_LEEWAY = 30.0
# Header parameters that name or carry keys, or demand extensions: Keycloak sets none of them,
# and honouring any would let the token choose its own verification key.
FORBIDDEN_HEADERS = frozenset({"jku", "x5u", "jwk", "x5c", "crit"})
_SEGMENT = re.compile(r"[A-Za-z0-9_-]+")
WRONG_ISSUER = "wrong issuer"
ISSUER_LOG_EVERY = 60.0


class IssuerMismatchLog:
    """A rate-limited warning naming the expected and the received `iss` of a rejected token.

    With Keycloak's hostname v2 and no fixed `hostname`, `iss` follows each request's host: the
    back channel's discovery then names the internal URL while browser tokens carry the public one,
    and every token is "wrong issuer" with no other hint (docs/keycloak.md, PROXY_AUTH_ISSUER).
    """

    def __init__(self, every: float = ISSUER_LOG_EVERY, clock: Callable[[], float] = time.monotonic) -> None:
        """At most one warning per `every` seconds; the others are counted into the next one."""
        self._every = every
        self._clock = clock
        self._last: float | None = None
        self._suppressed = 0

    def warn(self, expected: str, token: str) -> None:
        """Log (or count) one mismatch; the received issuer is read without trusting the token."""
        now = self._clock()
        if self._last is not None and now - self._last < self._every:
            self._suppressed += 1
            return
        try:
            received = jwt.decode(token, options={"verify_signature": False}).get("iss")
        except jwt.PyJWTError:
            received = None
        self._last, suppressed, self._suppressed = now, self._suppressed, 0
        log.warning(
            "token_issuer_mismatch",
            expected=expected,
            received=str(received)[:200] if received is not None else None,
            suppressed=suppressed,
            hint="set PROXY_AUTH_ISSUER to the issuer browser tokens carry",
        )


@dataclass(frozen=True)
class TokenPolicy:
    """What a token must satisfy beyond its signature."""

    audiences: frozenset[str] = frozenset()
    allowed_azp: frozenset[str] = frozenset()


def _expiry(_key: str, identity: Identity, _now: float) -> float:
    """Cached identities expire with their token."""
    return identity.exp


class BearerVerifier:
    """Verify JWTs against the realm's keys; cache verified identities by token hash."""

    def __init__(
        self,
        keys: KeyStore,
        issuer: Callable[[], str | None],
        policy: TokenPolicy,
        *,
        maxsize: int = 10000,
        clock: Callable[[], float] = time.time,
    ) -> None:
        """`issuer()` gives the required `iss`, None while discovery has not answered yet."""
        self._keys = keys
        self._issuer = issuer
        self._policy = policy
        self._clock = clock
        self._cache: TLRUCache[str, Identity] = TLRUCache(maxsize, ttu=_expiry, timer=clock)
        self._issuer_log = IssuerMismatchLog()

    def cached(self, token: str) -> Identity | None:
        """The identity of a token verified before and not yet expired, without any I/O."""
        if len(token) > MAX_TOKEN_BYTES:
            return None
        hit = self._cache.get(token_hash(token))
        if hit is not None:
            caches.TOKEN.lookup(True)
        return hit

    async def verify(self, token: str) -> Identity:
        """The identity of a valid token; TokenRejected otherwise."""
        if len(token) > MAX_TOKEN_BYTES:
            raise TokenRejected("token too large")
        digest = token_hash(token)
        cached = self._cache.get(digest)
        if cached is not None:
            caches.TOKEN.lookup(True)
            return cached
        caches.TOKEN.lookup(False)
        claims = await self._claims(token)
        identity = identity_from_claims(token, digest, claims)
        self._cache[digest] = identity
        caches.TOKEN.entries = len(self._cache)
        return identity

    async def _claims(self, token: str) -> dict[str, Any]:
        """Check structure, header, signature and claims; return the verified claims."""
        parts = token.split(".")
        if len(parts) != 3 or not all(_SEGMENT.fullmatch(part) for part in parts):
            raise TokenRejected("malformed token")
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError:
            raise TokenRejected("malformed token header") from None
        key = await self._key_for(header)
        issuer = self._issuer()
        if issuer is None:
            raise KeycloakUnavailable("the realm's issuer is not known yet (discovery pending)")
        try:
            claims = _decode(token, key, issuer)
        except TokenRejected as exc:
            if str(exc) == WRONG_ISSUER:
                self._issuer_log.warn(issuer, token)
            raise
        self._check_claims(claims)
        return claims

    async def _key_for(self, header: Mapping[str, Any]) -> VerifyKey:
        """The JWKS key named by `kid`, whose algorithm the token must use."""
        if FORBIDDEN_HEADERS & set(header):
            raise TokenRejected("token header names its own key")
        kid, alg = header.get("kid"), header.get("alg")
        if not isinstance(kid, str) or not kid or len(kid) > 256:
            raise TokenRejected("token has no usable kid")
        key = await self._keys.get(kid)
        if key is None:
            if not self._keys.ready:
                raise KeycloakUnavailable("the realm's signing keys are not loaded yet")
            raise TokenRejected("unknown signing key")
        if alg != key.algorithm:
            raise TokenRejected("token algorithm does not match its key")
        return key

    def _check_claims(self, claims: Mapping[str, Any]) -> None:
        """`exp` (no leeway), `typ`, and the audience/azp allow-lists."""
        exp = claims.get("exp")
        if isinstance(exp, bool) or not isinstance(exp, int | float):
            raise TokenRejected("token has no valid exp")
        if exp <= self._clock():
            raise TokenRejected("token expired")
        # Keycloak's own bearer check requires `typ: Bearer`; ID, refresh and untyped tokens are not
        # access tokens.
        if claims.get("typ") != "Bearer":
            raise TokenRejected("not an access token")
        if self._policy.audiences and not (_audiences(claims) & self._policy.audiences):
            raise TokenRejected("token audience not accepted")
        if self._policy.allowed_azp and claims.get("azp") not in self._policy.allowed_azp:
            raise TokenRejected("token azp not accepted")


def _decode(token: str, key: VerifyKey, issuer: str) -> dict[str, Any]:
    """Signature, `iss`, `nbf`/`iat` (30 s leeway) via PyJWT, pinned to the key's algorithm."""
    try:
        claims: dict[str, Any] = jwt.decode(
            token,
            key.key,
            algorithms=[key.algorithm],
            issuer=issuer,
            leeway=NBF_LEEWAY,
            options={"require": ["exp", "iss"], "verify_exp": False, "verify_aud": False},
        )
    except jwt.InvalidSignatureError:
        raise TokenRejected("bad signature") from None
    except jwt.InvalidIssuerError:
        raise TokenRejected(WRONG_ISSUER) from None
    except jwt.ImmatureSignatureError:
        raise TokenRejected("token not valid yet") from None
    except jwt.PyJWTError:
        raise TokenRejected("invalid token") from None
    return claims


def _audiences(claims: Mapping[str, Any]) -> frozenset[str]:
    """`aud` as a set (Keycloak sends a string for one audience, a list for several)."""
    aud = claims.get("aud")
    if isinstance(aud, str):
        return frozenset({aud})
    if isinstance(aud, list):
        return frozenset(a for a in aud if isinstance(a, str))
    return frozenset()

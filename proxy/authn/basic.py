"""Basic `client_id:client_secret`: a client-credentials token minted on the caller's behalf.

Tokens are cached under SHA-256(id ‖ 0x00 ‖ secret), never the id alone (ids are not secret);
failed mints are remembered per key, and unknown secrets are rate-limited per client id and
overall, so the proxy is no oracle for guessing secrets; a secret that minted a token in the
last 24 h is never throttled, so guessing cannot lock the real client out.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import math
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

import structlog
from cachetools import TLRUCache

from proxy import caches
from proxy.authn.identity import Identity, TokenRejected
from proxy.authn.ratelimit import GuessGuard
from proxy.errors import TooManyRequests
from proxy.keycloak import unexpected
from proxy.keycloak_client import KeycloakClient, minted, reuse_until
from proxy.singleflight import SingleFlight

log = structlog.get_logger(__name__)

# How long a failed (id, secret) pair is answered 401 from memory.
FAILURE_TTL = 60.0
# Overall failures per minute, as a multiple of the per-client limit: spraying many client ids
# must not turn the proxy into a guessing service either.
GLOBAL_FACTOR = 10


@dataclass(frozen=True)
class _Held:
    """A minted identity and when to stop reusing it."""

    identity: Identity
    until: float


@dataclass(frozen=True)
class _Origin:
    """The credentials a cached token was minted with, until the token stops being reused."""

    key: str
    client_id: str
    secret: str = field(repr=False)
    until: float


def parse_basic(credentials: str) -> tuple[str, str]:
    """Split base64 `id:secret` at the first colon (secrets may contain colons)."""
    try:
        raw = base64.b64decode(credentials.strip(), validate=True)
        text = raw.decode("utf-8")
    except (binascii.Error, ValueError):
        raise TokenRejected("malformed Basic credentials") from None
    client_id, sep, secret = text.partition(":")
    if not sep or not client_id or not secret:
        raise TokenRejected("malformed Basic credentials")
    return client_id, secret


def credentials_key(client_id: str, secret: str) -> str:
    """Cache key of a credential pair: SHA-256(id ‖ 0x00 ‖ secret)."""
    return hashlib.sha256(client_id.encode() + b"\x00" + secret.encode()).hexdigest()


class BasicMinter:
    """Mint, cache and rate-limit client-credentials tokens for Basic callers."""

    def __init__(
        self,
        client: KeycloakClient,
        *,
        verify: Callable[[str], Awaitable[Identity]],
        failures_per_minute: int,
        maxsize: int = 10000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        """`verify` turns a minted token into an identity (the bearer checks apply to it too)."""
        self._client = client
        self._verify = verify
        self._clock = clock
        self._tokens: TLRUCache[str, _Held] = caches.until_cache(maxsize, clock)
        self._guard = GuessGuard(
            failures_per_minute,
            overall_factor=GLOBAL_FACTOR,
            failure_ttl=FAILURE_TTL,
            maxkeys=maxsize,
            clock=clock,
        )
        self._flight: SingleFlight[str, Identity] = SingleFlight()
        # Minted token hash → the credentials behind it, for one re-mint when Keycloak refuses
        # the token (`renew`); kept exactly as long as the token itself.
        self._origins: TLRUCache[str, _Origin] = caches.until_cache(maxsize, clock)
        self.mints = 0

    async def authenticate(self, credentials: str) -> Identity:
        """The identity for Basic credentials; TokenRejected, TooManyRequests or unavailable."""
        client_id, secret = parse_basic(credentials)
        if client_id == self._client.client_id:
            raise TokenRejected("the proxy's own client cannot be used by callers")
        key = credentials_key(client_id, secret)
        held = self._tokens.get(key)
        if held is not None:
            caches.TOKEN.lookup(True)
            return held.identity
        caches.TOKEN.lookup(False)
        failure = self._guard.remembered_failure(key)
        if failure is not None:
            raise TokenRejected(failure)
        self._check_rate(key, client_id)
        return await self._flight.do(key, lambda: self._mint(key, client_id, secret))

    def _check_rate(self, key: str, client_id: str) -> None:
        """429 with Retry-After for an unknown secret once its client id, or everyone, failed too
        often; a secret that minted a token recently is never throttled."""
        wait = self._guard.retry_after(key, client_id)
        if wait is not None:
            seconds = max(1, math.ceil(wait))
            raise TooManyRequests(
                "too many failed Basic authentications; retry later",
                headers={"Retry-After": str(seconds)},
            )

    async def _mint(self, key: str, client_id: str, secret: str) -> Identity:
        """Ask Keycloak for a token; remember success until shortly before exp, failure for a minute."""
        self.mints += 1
        reply = await self._client.client_credentials(client_id, secret)
        result = minted(reply)
        if result is None and reply.status not in (400, 401):
            raise unexpected("token", reply)
        try:
            if result is None:
                # Keycloak's own words go to the log (never to the caller: no guessing oracle).
                log.info(
                    "basic_mint_refused",
                    client_id=client_id,
                    status=reply.status,
                    error=reply.error,
                    error_description=reply.description,
                )
                raise TokenRejected("client credentials rejected")
            identity = await self._verify(result.token)
        except TokenRejected as exc:
            self._failed(key, client_id, str(exc))
            raise
        identity = _as_client(identity, client_id)
        self._guard.minted(key)
        until = reuse_until(self._clock(), self._mono_exp(identity))
        self._tokens[key] = _Held(identity, until)
        self._origins[identity.token_hash] = _Origin(key, client_id, secret, until)
        caches.BASIC.entries = len(self._tokens)
        return identity

    async def renew(self, identity: Identity) -> Identity | None:
        """Keycloak refused a token minted here (`invalid_grant`): drop it and mint once more.

        None when the identity was not minted here or the new mint is refused too (the caller
        then answers 401); the new identity is cached for the same credentials.
        """
        origin = self._origins.pop(identity.token_hash, None)
        if origin is None:
            return None
        held = self._tokens.get(origin.key)
        if held is not None and held.identity.token_hash == identity.token_hash:
            del self._tokens[origin.key]
        log.info("basic_token_refused_reminting", client_id=origin.client_id)
        try:
            return await self._flight.do(
                origin.key, lambda: self._mint(origin.key, origin.client_id, origin.secret)
            )
        except TokenRejected:
            return None

    def _mono_exp(self, identity: Identity) -> float:
        """The token's `exp` on this minter's clock (exp is wall time)."""
        return self._clock() + (identity.exp - time.time())

    def _failed(self, key: str, client_id: str, reason: str) -> None:
        """Remember and count a failed mint."""
        self._guard.failed(key, client_id, reason)
        log.info("basic_auth_failed", client_id=client_id, reason=reason)


def _as_client(identity: Identity, client_id: str) -> Identity:
    """The minted token's identity, named by the client that authenticated."""
    return Identity(
        subject=identity.client_id or client_id,
        token=identity.token,
        token_hash=identity.token_hash,
        exp=identity.exp,
        claims=identity.claims,
        client_id=client_id,
    )

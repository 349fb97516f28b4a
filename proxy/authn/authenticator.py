"""The authenticator the route layer calls: Authorization header in, `Identity` out."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable

import structlog

from proxy.authn.basic import BasicMinter
from proxy.authn.bearer import MAX_TOKEN_BYTES, BearerVerifier, TokenPolicy
from proxy.authn.identity import Identity, TokenRejected
from proxy.authn.introspect import Introspector, audience_hint
from proxy.authn.jwks import KeyStore, VerifyKey, parse_jwks
from proxy.config import Settings
from proxy.errors import KeycloakUnavailable, Unauthorized
from proxy.keycloak import unexpected
from proxy.keycloak_client import KeycloakClient

log = structlog.get_logger(__name__)

# Background key refresh: retry quickly while nothing works, then re-read keys now and then so
# a key Keycloak withdrew stops being trusted even if no new kid ever shows up.
RETRY_MIN, RETRY_MAX, REFRESH_EVERY = 1.0, 30.0, 300.0
# Basic header overhead over the token itself ("Basic " plus base64 growth) stays well below this.
MAX_HEADER_BYTES = MAX_TOKEN_BYTES + 64


class Authenticator:
    """Bearer JWTs verified locally, Basic client credentials exchanged for tokens."""

    def __init__(
        self,
        settings: Settings,
        client: KeycloakClient,
        *,
        key_clock: Callable[[], float] = time.monotonic,
    ) -> None:
        """Nothing is fetched until `start()`; `key_clock` paces JWKS refetches (tests fake it)."""
        self._settings = settings
        self._client = client
        self._timeout = settings.auth_timeout
        self._keys = KeyStore(self._load_keys, clock=key_clock)
        self._bearer = BearerVerifier(
            self._keys,
            self._issuer,
            TokenPolicy(frozenset(settings.auth_audiences), frozenset(settings.auth_allowed_azp)),
        )
        self._basic = BasicMinter(
            client,
            verify=self._bearer.verify,
            failures_per_minute=settings.basic_auth_failures_per_minute,
        )
        self._introspector = Introspector(client) if settings.auth_introspect else None
        self._task: asyncio.Task[None] | None = None

    @property
    def ready(self) -> bool:
        """True once the realm's signing keys were fetched."""
        return self._keys.ready

    @property
    def keys(self) -> KeyStore:
        """The key store (exposed for readiness details and tests)."""
        return self._keys

    @property
    def basic(self) -> BasicMinter:
        """The Basic-auth minter (exposed for tests and metrics)."""
        return self._basic

    async def start(self) -> None:
        """Discovery and the first JWKS fetch; on failure keep retrying in the background."""
        if not self._settings.auth_audiences and not self._settings.auth_allowed_azp:
            log.warning(
                "token_audience_unchecked",
                hint="set PROXY_AUTH_AUDIENCES or PROXY_AUTH_ALLOWED_AZP to limit accepted tokens",
            )
        audience_hint(
            self._client.client_id, frozenset(self._settings.auth_audiences), self._settings.auth_introspect
        )
        with contextlib.suppress(KeycloakUnavailable):
            await self._keys.refresh()
        if self._task is None:
            self._task = asyncio.create_task(self._maintain())

    async def close(self) -> None:
        """Stop the background key refresh."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def authenticate(self, authorization: str | None) -> Identity:
        """Verify the Authorization header; 401 unless it is a valid Bearer token or Basic pair."""
        if not authorization or len(authorization) > MAX_HEADER_BYTES:
            raise self._unauthorized("missing or oversized credentials")
        scheme, _, credentials = authorization.strip().partition(" ")
        credentials = credentials.strip()
        if self._introspector is None and scheme.lower() == "bearer" and credentials:
            # Warm path: a token verified before needs no I/O, so no timeout timer either.
            hit = self._bearer.cached(credentials)
            if hit is not None:
                return hit
        try:
            async with asyncio.timeout(self._timeout):
                identity = await self._identify(scheme.lower(), credentials)
                if self._introspector is not None:
                    await self._introspector.check(identity)
        except TokenRejected as exc:
            raise self._unauthorized(str(exc)) from None
        except TimeoutError:
            raise KeycloakUnavailable("Keycloak did not answer in time") from None
        return identity

    async def _identify(self, scheme: str, credentials: str) -> Identity:
        """Dispatch on the scheme."""
        if scheme == "bearer" and credentials:
            return await self._bearer.verify(credentials)
        if scheme == "basic" and credentials:
            return await self._basic.authenticate(credentials)
        raise TokenRejected("unsupported authorization scheme")

    def _unauthorized(self, reason: str) -> Unauthorized:
        """A 401 carrying the Bearer challenge."""
        return Unauthorized(f"unauthorized: {reason}", headers=dict(self._client.challenge))

    def _issuer(self) -> str | None:
        """The `iss` tokens must carry: configured, else discovery's."""
        if self._settings.auth_issuer:
            return self._settings.auth_issuer
        discovery = self._client.discovery
        return discovery.issuer if discovery else None

    async def _load_keys(self) -> dict[str, VerifyKey]:
        """Discovery (once) and the JWKS; raise KeycloakUnavailable on anything unusable."""
        reply = await self._client.jwks()
        try:
            keys = parse_jwks(reply.body) if reply.status == 200 else {}
        except ValueError:
            keys = {}
        if not keys:
            raise unexpected("jwks", reply)
        return keys

    async def _maintain(self) -> None:
        """Retry until keys load, then refresh them every few minutes."""
        delay = RETRY_MIN
        while True:
            await asyncio.sleep(REFRESH_EVERY if self.ready else delay)
            try:
                await self._keys.refresh()
                delay = RETRY_MIN
            except KeycloakUnavailable:
                delay = min(delay * 2, RETRY_MAX)

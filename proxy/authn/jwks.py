"""The realm's signing keys: JWKS parsing and a key store refreshed at most once per interval."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any

import jwt
import structlog

log = structlog.get_logger(__name__)

# Asymmetric only: an HMAC "key" would be the public key itself, and `none` is no signature.
ASYMMETRIC = frozenset(
    {"RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "EdDSA"}
)
_EC_DEFAULT = {"P-256": "ES256", "P-384": "ES384", "P-521": "ES512"}
REFETCH_INTERVAL = 10.0


@dataclass(frozen=True)
class VerifyKey:
    """One signing key and the only algorithm tokens signed with it may use."""

    kid: str
    algorithm: str
    key: Any


def _algorithm(jwk: Mapping[str, Any]) -> str | None:
    """The key's algorithm: its own `alg` if asymmetric and fitting its type, else the default."""
    kty, alg, crv = jwk.get("kty"), jwk.get("alg"), jwk.get("crv")
    if kty == "RSA":
        fits = {"RS256", "RS384", "RS512", "PS256", "PS384", "PS512"}
        default: str | None = "RS256"
    elif kty == "EC":
        default = _EC_DEFAULT.get(crv) if isinstance(crv, str) else None
        fits = {default} if default else set()
    elif kty == "OKP":
        default = "EdDSA" if crv in ("Ed25519", "Ed448") else None
        fits = {default} if default else set()
    else:
        return None
    if alg is None:
        return default
    return alg if alg in fits and alg in ASYMMETRIC else None


def _usable(jwk: Mapping[str, Any]) -> bool:
    """A public key meant for signatures (encryption keys and private material are skipped)."""
    if jwk.get("use", "sig") != "sig" or "d" in jwk:
        return False
    ops = jwk.get("key_ops")
    return ops is None or (isinstance(ops, list) and "verify" in ops)


def parse_jwks(document: Any) -> dict[str, VerifyKey]:
    """The usable signing keys of a JWKS document by kid; ValueError if it is no JWKS."""
    keys = document.get("keys") if isinstance(document, dict) else None
    if not isinstance(keys, list):
        raise ValueError("not a JWKS document")
    found: dict[str, VerifyKey] = {}
    duplicated: set[str] = set()
    for jwk in keys:
        if not isinstance(jwk, dict) or not _usable(jwk):
            continue
        kid, alg = jwk.get("kid"), _algorithm(jwk)
        if not isinstance(kid, str) or not kid or alg is None:
            continue
        try:
            key = jwt.PyJWK(jwk, alg).key
        except (jwt.PyJWKError, jwt.InvalidKeyError, ValueError, TypeError):
            log.warning("jwks_key_skipped", kid=kid)
            continue
        if kid in found:
            # Two keys under one kid: which one signed is ambiguous, so neither is trusted.
            duplicated.add(kid)
        found[kid] = VerifyKey(kid, alg, key)
    for kid in duplicated:
        del found[kid]
    return found


class KeyStore:
    """Signing keys by kid; an unknown kid triggers a refetch at most once per interval."""

    def __init__(
        self,
        fetch: Callable[[], Awaitable[dict[str, VerifyKey]]],
        *,
        interval: float = REFETCH_INTERVAL,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        """Keys come from `fetch`, which raises on any failure."""
        self._fetch = fetch
        self._interval = interval
        self._clock = clock
        self._keys: dict[str, VerifyKey] = {}
        # Only refetches forced by unknown kids are rate-limited; start-up and periodic reads are not.
        self._last_attempt: float | None = None
        self._inflight: asyncio.Task[None] | None = None
        self.fetches = 0

    @property
    def ready(self) -> bool:
        """True once keys were fetched successfully at least once."""
        return bool(self._keys)

    async def refresh(self) -> None:
        """Fetch now (joining a fetch already running); raise if it fails, keeping old keys."""
        if self._inflight is None or self._inflight.done():
            self._inflight = asyncio.create_task(self._replace())
            self._inflight.add_done_callback(self._landed)
        await asyncio.shield(self._inflight)

    async def get(self, kid: str) -> VerifyKey | None:
        """The key for `kid`, refetching once if unknown and the interval allows it."""
        key = self._keys.get(kid)
        if key is not None:
            return key
        recent = self._last_attempt is not None and (self._clock() - self._last_attempt < self._interval)
        if recent and (self._inflight is None or self._inflight.done()):
            return None
        if self._inflight is None or self._inflight.done():
            self._last_attempt = self._clock()
        await self.refresh()
        return self._keys.get(kid)

    async def _replace(self) -> None:
        """Swap in a freshly fetched key set."""
        self.fetches += 1
        keys = await self._fetch()
        added = sorted(set(keys) - set(self._keys))
        self._keys = keys
        log.info("jwks_loaded", kids=sorted(keys), new=added)

    def _landed(self, task: asyncio.Task[None]) -> None:
        """Allow the next fetch; mark a failure retrieved even if every waiter left."""
        if self._inflight is task:
            self._inflight = None
        if not task.cancelled():
            task.exception()

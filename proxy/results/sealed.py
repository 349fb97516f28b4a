"""Entries in a shared results cache (memcached, Redis): hashed keys, stored full keys, HMAC,
encrypted values.

Anyone who can write to a shared cache could otherwise serve any answer to every tenant, and two
full keys could share a stored key (a hash collision, or a key truncated by the store). So
(docs/caching.md#backends):

- the stored key is `pkp1:` + sha256(full key) in hex (memcached keys are at most 250 bytes);
- the stored value is `HMAC-SHA256(mac key, nonce ‖ sealed) ‖ nonce ‖ sealed`, where `sealed` is
  AES-256-GCM (enc key, nonce) over `len ‖ full key ‖ payload`, `len` the full key's length in 4
  bytes and `payload` the zlib-compressed answer; the MAC and encryption keys are derived from
  `cache_hmac_key`. Whoever reaches the store reads neither the answers nor the queries in its keys;
- on read the HMAC is checked first (constant time), then the decryption, then the full key: any
  mismatch is a miss, counted as `forged` and logged at most once a minute.

Every store call is bounded by `cache_timeout`; a timeout or an error is a miss (or a skipped
write), counted, and never reaches the request.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import os
import struct
import time
from typing import Protocol

import structlog
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from prometheus_client import Counter

from proxy.results.backends import Counts, pack, unpack

log = structlog.get_logger(__name__)

PREFIX = b"pkp1:"
MAC_BYTES = 32
NONCE_BYTES = 12
_LEN = struct.Struct(">I")
LOG_INTERVAL = 60.0


class TooLarge(Exception):
    """The store refused a value as larger than it keeps (memcached's `-I`, 1 MiB by default)."""


class Store(Protocol):
    """A shared store's raw operations on stored keys and values (they may raise)."""

    async def get(self, key: bytes) -> bytes | None:
        """The value under the stored `key`, or None."""
        ...

    async def set(self, key: bytes, value: bytes, ttl: int) -> None:
        """Store `value` under the stored `key` for `ttl` seconds."""
        ...

    async def close(self) -> None:
        """Close the store's connections."""
        ...


def stored_key(full_key: bytes) -> bytes:
    """The key a shared store holds an entry under: a prefix and the full key's sha256 in hex."""
    return PREFIX + hashlib.sha256(full_key).hexdigest().encode()


def _keys(secret: bytes) -> tuple[bytes, AESGCM]:
    """The MAC key and the cipher derived from the configured secret (one secret, two uses;
    a few microseconds, derived per entry)."""
    mac_key = hmac.digest(secret, b"prom-keycloak-proxy results mac", "sha256")
    enc_key = hmac.digest(secret, b"prom-keycloak-proxy results enc", "sha256")
    return mac_key, AESGCM(enc_key)


def seal(secret: bytes, full_key: bytes, payload: bytes) -> bytes:
    """The stored value: HMAC ‖ nonce ‖ AES-GCM(len ‖ full key ‖ payload)."""
    mac_key, cipher = _keys(secret)
    nonce = os.urandom(NONCE_BYTES)
    body = nonce + cipher.encrypt(nonce, _LEN.pack(len(full_key)) + full_key + payload, None)
    return hmac.digest(mac_key, body, "sha256") + body


def unseal(secret: bytes, full_key: bytes, stored: bytes) -> bytes | None:
    """The payload of a stored value when its HMAC, encryption and full key check out, else None."""
    if len(stored) < MAC_BYTES + NONCE_BYTES + _LEN.size:
        return None
    mac_key, cipher = _keys(secret)
    body = memoryview(stored)[MAC_BYTES:]
    if not hmac.compare_digest(hmac.digest(mac_key, body, "sha256"), stored[:MAC_BYTES]):
        return None
    try:
        plain = cipher.decrypt(bytes(body[:NONCE_BYTES]), bytes(body[NONCE_BYTES:]), None)
    except InvalidTag:
        return None
    if len(plain) < _LEN.size:
        return None
    (length,) = _LEN.unpack_from(plain)
    start = _LEN.size + length
    if length != len(full_key) or plain[_LEN.size : start] != full_key:
        return None  # authentic, but written for another full key under the same stored key
    return plain[start:]


class _Throttled:
    """Logs one event name at most once per interval (a flood of forged entries logs once)."""

    def __init__(self, interval: float = LOG_INTERVAL) -> None:
        """Nothing logged yet."""
        self._interval = interval
        self._last: dict[str, float] = {}

    def warning(self, event: str, **fields: object) -> None:
        """Log `event` unless it was logged less than the interval ago."""
        now = time.monotonic()
        last = self._last.get(event)
        if last is not None and now - last < self._interval:
            return
        self._last[event] = now
        log.warning(event, **fields)


class SharedBackend:
    """A `Backend` over a shared `Store`: sealing, compression, timeouts and counts."""

    def __init__(
        self, name: str, store: Store, secret: bytes, *, ttl: float, timeout: float, max_value_bytes: int
    ) -> None:
        """`store` as backend `name`; values larger than `max_value_bytes` once sealed are not stored."""
        self.name = name
        self.counts = Counts(name)
        self._store = store
        self._secret = secret
        # memcached reads an expiry over 30 days as a Unix time: cap it there.
        self._ttl = max(1, min(int(ttl), 30 * 86400))
        self._timeout = timeout
        self._max_value_bytes = max_value_bytes
        self._log = _Throttled()

    async def get(self, key: bytes) -> bytes | None:
        """The payload for the full `key`: None on a miss, a timeout, an error or a forged entry."""
        try:
            async with asyncio.timeout(self._timeout):
                stored = await self._store.get(stored_key(key))
        except TimeoutError:
            self._failed(self.counts.timeout, "timeout", "get")
            return None
        except Exception as exc:
            self._failed(self.counts.error, type(exc).__name__, "get")
            return None
        if stored is None:
            return None
        sealed = unseal(self._secret, key, stored)
        payload = await unpack(sealed) if sealed is not None else None
        if payload is None:
            self.counts.forged.inc()
            self._log.warning("results_cache_forged_entry", backend=self.name)
        return payload

    async def set(self, key: bytes, value: bytes) -> None:
        """Store `value` for the full `key` (compressed and sealed); failures are counted only."""
        stored = seal(self._secret, key, await pack(value))
        if len(stored) > self._max_value_bytes:
            self.counts.too_large.inc()
            return
        try:
            async with asyncio.timeout(self._timeout):
                await self._store.set(stored_key(key), stored, self._ttl)
        except TimeoutError:
            self._failed(self.counts.timeout, "timeout", "set")
        except TooLarge:
            self.counts.too_large.inc()
        except Exception as exc:
            self._failed(self.counts.error, type(exc).__name__, "set")

    def _failed(self, counter: Counter, reason: str, call: str) -> None:
        """Count a failed call and log it (at most once a minute)."""
        counter.inc()
        self._log.warning("results_cache_unavailable", backend=self.name, call=call, reason=reason)

    async def close(self) -> None:
        """Close the store's connections (errors ignored: the process is stopping)."""
        try:
            async with asyncio.timeout(self._timeout):
                await self._store.close()
        except Exception as exc:
            log.info("results_cache_close_failed", backend=self.name, reason=type(exc).__name__)


__all__ = ["PREFIX", "SharedBackend", "Store", "TooLarge", "seal", "stored_key", "unseal"]

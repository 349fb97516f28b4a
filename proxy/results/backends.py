"""Where the results cache keeps its entries (docs/caching.md#backends).

A backend maps a full key (bytes, from `proxy.results.key`) to a payload (bytes). Every backend
compresses payloads (zlib level 1: answers are repetitive JSON, so stored bytes shrink several
times for little CPU). A backend never raises to its caller: a timeout, an error, a forged or an
oversized entry is a miss (get) or a no-op (set), counted in
`prom_keycloak_proxy_results_cache_errors_total{backend,kind}`.

- `memory`: in-process LRU bounded by stored bytes (`cache_max_bytes`), entries expire after
  `cache_ttl`; each worker process has its own.
- `memcached` / `redis`: shared by replicas; keys hashed, full key stored and compared on read,
  values authenticated with `cache_hmac_key` (`proxy.results.sealed`).
"""

from __future__ import annotations

import asyncio
import time
import zlib
from typing import TYPE_CHECKING, Protocol

from cachetools import TTLCache

from proxy import metrics

if TYPE_CHECKING:
    from proxy.config import Settings

# Per entry, beyond key and value: the cache's dicts and links (measured ≈ 300 bytes in CPython);
# counted so that many tiny entries cannot exceed the bound by far.
ENTRY_OVERHEAD = 256
LEVEL = 1
# Larger payloads are (de)compressed on a worker thread (zlib releases the GIL): ≈ 10 ms per MiB
# compressing would otherwise stall every request on the event loop.
THREAD_BYTES = 256 << 10


class Backend(Protocol):
    """A results-cache store: a miss is None, failures are misses, nothing raises."""

    name: str

    async def get(self, key: bytes) -> bytes | None:
        """The payload stored under the full `key`, or None (miss, timeout, error or forged)."""
        ...

    async def set(self, key: bytes, value: bytes) -> None:
        """Store `value` under the full `key` for `cache_ttl` (best effort, never raises)."""
        ...

    async def close(self) -> None:
        """Release connections (the in-process cache has none)."""
        ...


class Counts:
    """One backend's metric children, resolved once (a labelled lookup per call costs more)."""

    def __init__(self, backend: str) -> None:
        """Children of the results-cache metrics labelled with `backend`."""
        self.bytes = metrics.RESULTS_CACHE_BYTES.labels(backend)
        self.evictions = metrics.RESULTS_CACHE_EVICTIONS.labels(backend)
        self.timeout = metrics.RESULTS_CACHE_ERRORS.labels(backend, "timeout")
        self.error = metrics.RESULTS_CACHE_ERRORS.labels(backend, "error")
        self.forged = metrics.RESULTS_CACHE_ERRORS.labels(backend, "forged")
        self.too_large = metrics.RESULTS_CACHE_ERRORS.labels(backend, "too_large")


def compress(payload: bytes) -> bytes:
    """The stored form of a payload."""
    return zlib.compress(payload, LEVEL)


def decompress(stored: bytes) -> bytes | None:
    """The payload of a stored form, or None when it does not decompress."""
    try:
        return zlib.decompress(stored)
    except zlib.error:
        return None


async def pack(payload: bytes) -> bytes:
    """`compress`, on a worker thread for a large payload."""
    if len(payload) < THREAD_BYTES:
        return compress(payload)
    return await asyncio.to_thread(compress, payload)


async def unpack(stored: bytes) -> bytes | None:
    """`decompress`, on a worker thread for a large stored form (answers shrink ≈ 3-10×)."""
    if len(stored) < THREAD_BYTES // 4:
        return decompress(stored)
    return await asyncio.to_thread(decompress, stored)


class _Entries(TTLCache[bytes, tuple[bytes, int]]):
    """A TTL + LRU cache of (compressed value, stored size) that counts evictions."""

    def __init__(self, max_bytes: int, ttl: float, counts: Counts) -> None:
        """Bounded by the summed stored sizes; entries expire `ttl` seconds after being set."""
        super().__init__(max_bytes, ttl, timer=time.monotonic, getsizeof=lambda entry: entry[1])
        self._counts = counts

    def popitem(self) -> tuple[bytes, tuple[bytes, int]]:
        """Drop the least recently used live entry to make room (an eviction, unlike expiry)."""
        item = super().popitem()
        self._counts.evictions.inc()
        return item


class MemoryBackend:
    """The in-process backend: LRU by stored bytes, entries expire after `ttl` seconds."""

    name = "memory"

    def __init__(self, max_bytes: int, ttl: float) -> None:
        """At most `max_bytes` of keys, compressed values and per-entry overhead."""
        self.counts = Counts(self.name)
        self._entries = _Entries(max_bytes, ttl, self.counts)
        self.counts.bytes.set_function(lambda: self._entries.currsize)

    @property
    def stored_bytes(self) -> int:
        """Bytes counted against the bound now."""
        return int(self._entries.currsize)

    def __len__(self) -> int:
        """Entries held now (expired ones included until they are next touched)."""
        return len(self._entries)

    async def get(self, key: bytes) -> bytes | None:
        """The payload stored under `key`, or None."""
        entry = self._entries.get(key)
        if entry is None:
            return None
        payload = await unpack(entry[0])
        if payload is None:  # cannot happen for what set() stored; a miss all the same
            self.counts.error.inc()
        return payload

    async def set(self, key: bytes, value: bytes) -> None:
        """Store `value` (compressed); one larger than the whole bound is counted `too_large`."""
        stored = await pack(value)
        size = len(key) + len(stored) + ENTRY_OVERHEAD
        if size > self._entries.maxsize:
            self.counts.too_large.inc()
            return
        self._entries[key] = (stored, size)

    async def close(self) -> None:
        """Nothing to release."""
        self._entries.clear()


def build_backend(settings: Settings) -> Backend | None:
    """The backend `settings.cache` names, or None when the results cache is off."""
    if settings.cache == "off":
        return None
    if settings.cache == "memory":
        return MemoryBackend(settings.cache_max_bytes, settings.cache_ttl)
    from proxy.results.remote import shared_backend  # the clients load only when configured

    return shared_backend(settings)


__all__ = ["Backend", "MemoryBackend", "build_backend", "compress", "decompress", "pack", "unpack"]

"""Allow and deny caches of authorization answers, bounded, never outliving the token."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

from cachetools import TLRUCache

from proxy import caches
from proxy.promql.scope import Holdings

# (token hash, (hub, sorted names asked)); (HOLDINGS + hub) for a hub's share of the holdings call
Key = tuple[str, tuple[str, ...]]
HOLDINGS: tuple[str, ...] = ("#GET",)


@dataclass(frozen=True)
class _Decision:
    """An answer and its wall-clock expiry."""

    holdings: Holdings
    until: float


class DecisionCache:
    """Holdings by (token hash, names): granted answers in one cache, empty ones in another."""

    def __init__(
        self,
        allow_ttl: float,
        deny_ttl: float,
        maxsize: int,
        clock: Callable[[], float] = time.time,
    ) -> None:
        """TTLs from settings; `clock` is wall time because token `exp` is."""
        self._ttl = {True: allow_ttl, False: deny_ttl}
        self._clock = clock
        self._caches: dict[bool, TLRUCache[Key, _Decision]] = {
            granted: caches.until_cache(maxsize, clock) for granted in (True, False)
        }

    def get(self, key: Key) -> Holdings | None:
        """A cached answer, or None."""
        for granted, cache in self._caches.items():
            decision = cache.get(key)
            if decision is not None:
                _stats(key, granted).lookup(True)
                return decision.holdings
        _stats(key, True).lookup(False)
        return None

    def put(self, key: Key, holdings: Holdings, token_exp: float) -> None:
        """Remember an answer for its TTL, but never past the token's expiry."""
        granted = holdings.holds_anything()
        until = min(self._clock() + self._ttl[granted], token_exp)
        cache = self._caches[granted]
        cache[key] = _Decision(holdings, until)
        (caches.ALLOW if granted else caches.DENY).entries = len(cache)


def _stats(key: Key, granted: bool) -> caches.CacheStats:
    """The cache a lookup counts under."""
    if key[1][: len(HOLDINGS)] == HOLDINGS:
        return caches.HOLDINGS
    return caches.ALLOW if granted else caches.DENY
